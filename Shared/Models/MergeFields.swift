import Foundation

/// The merge fields of message and task templates (SP-4, BA-8): `{contact.first.name}` and the
/// others below, filled from the contact, their agent, their office and company. One list for
/// every service, so a template valid in a plan is valid in a behavior.
public enum MergeField: String, CaseIterable, Sendable, Codable {
    case contactFirstName = "contact.first.name"
    case contactLastName = "contact.last.name"
    case contactFullName = "contact.full.name"
    case contactEmail = "contact.email"
    case contactPhone = "contact.phone"
    case contactStatus = "contact.status"
    case contactLeadType = "contact.lead.type"
    case contactSource = "contact.source"
    case contactStreet = "contact.address.street"
    case contactCity = "contact.address.city"
    case contactState = "contact.address.state"
    case contactPostalCode = "contact.address.postal.code"
    case searchArea = "contact.search.area"
    case searchPropertyType = "contact.search.property.type"
    case searchPriceMin = "contact.search.price.min"
    case searchPriceMax = "contact.search.price.max"
    case agentFirstName = "agent.first.name"
    case agentLastName = "agent.last.name"
    case agentFullName = "agent.full.name"
    case agentEmail = "agent.email"
    case agentPhone = "agent.phone"
    case officeName = "office.name"
    case companyName = "company.name"

    /// What the field holds, for the field list an editor shows.
    public var meaning: String {
        switch self {
        case .contactFirstName: "The contact's first name"
        case .contactLastName: "The contact's last name"
        case .contactFullName: "The contact's first and last name"
        case .contactEmail: "The contact's first e-mail address"
        case .contactPhone: "The contact's first phone number, as (312) 555-0142"
        case .contactStatus: "The contact's status, in words (New lead, Active lead …)"
        case .contactLeadType: "Buyer, seller, renter or agent"
        case .contactSource: "Where the lead came from (Zillow, the website …)"
        case .contactStreet: "The street of the contact's address"
        case .contactCity: "The city of the contact's address"
        case .contactState: "The state of the contact's address"
        case .contactPostalCode: "The ZIP code of the contact's address"
        case .searchArea: "The area the contact searches in"
        case .searchPropertyType: "The property type the contact searches for"
        case .searchPriceMin: "The lowest price the contact searches for, as $450,000"
        case .searchPriceMax: "The highest price the contact searches for, as $600,000"
        case .agentFirstName: "The assigned agent's first name"
        case .agentLastName: "The assigned agent's last name"
        case .agentFullName: "The assigned agent's first and last name"
        case .agentEmail: "The assigned agent's e-mail address"
        case .agentPhone: "The assigned agent's mobile number, as (312) 555-0101"
        case .officeName: "The name of the office that owns the contact"
        case .companyName: "The brokerage's name"
        }
    }
}

/// A template that does not parse: which part of the input, which token, and why.
public struct TemplateProblem: Error, Sendable, Hashable, CustomStringConvertible {
    /// The input field at fault, as the caller named it (`steps[2].body`).
    public var field: String
    public var token: String
    public var message: String
    public var description: String { "\(field): \(message)" }

    public init(field: String, token: String, message: String) {
        self.field = field
        self.token = token
        self.message = message
    }
}

/// A parsed template: literal text and fields, each field with an optional fallback used when the
/// value is missing (`{contact.first.name|there}` → "Hi there" for a contact without a name).
public struct MessageTemplate: Sendable, Hashable {
    public enum Part: Sendable, Hashable {
        case text(String)
        case field(MergeField, fallback: String?)
    }

    public let parts: [Part]

    /// Parses `source`; `field` names the input in a problem. `{{` and `}}` are literal braces.
    public init(_ source: String, field: String) throws(TemplateProblem) {
        var parts: [Part] = []
        var literal = ""
        var index = source.startIndex
        while index < source.endIndex {
            let character = source[index]
            let next = source.index(after: index)
            if character == "{" || character == "}", next < source.endIndex, source[next] == character {
                literal.append(character)
                index = source.index(after: next)
                continue
            }
            if character == "}" {
                throw TemplateProblem(field: field, token: "}", message: "a '}' closes no merge field; write '}}' for a brace")
            }
            guard character == "{" else {
                literal.append(character)
                index = next
                continue
            }
            guard let close = source[next...].firstIndex(of: "}") else {
                throw TemplateProblem(field: field, token: String(source[index...].prefix(40)), message: "a merge field is not closed with '}'")
            }
            let inside = String(source[next..<close])
            let (name, fallback) = inside.firstIndex(of: "|").map { (String(inside[..<$0]), String(inside[inside.index(after: $0)...])) } ?? (inside, nil)
            let trimmed = name.trimmingCharacters(in: .whitespaces).lowercased()
            guard let mergeField = MergeField(rawValue: trimmed) else {
                throw TemplateProblem(field: field, token: "{\(inside)}",
                                      message: "unknown merge field {\(name)}; the fields are " + MergeField.allCases.map { "{\($0.rawValue)}" }.joined(separator: ", "))
            }
            if fallback?.contains("{") == true {
                throw TemplateProblem(field: field, token: "{\(inside)}", message: "a fallback is plain text, without merge fields")
            }
            if !literal.isEmpty { parts.append(.text(literal)) }
            literal = ""
            parts.append(.field(mergeField, fallback: fallback))
            index = source.index(after: close)
        }
        if !literal.isEmpty { parts.append(.text(literal)) }
        self.parts = parts
    }

    public var fields: Set<MergeField> {
        Set(parts.compactMap { if case .field(let field, _) = $0 { field } else { nil } })
    }

    /// The text with every field filled; a missing value is its fallback, else nothing.
    public func render(_ values: MergeValues) -> String {
        parts.map { part in
            switch part {
            case .text(let text): text
            case .field(let field, let fallback): values[field] ?? fallback ?? ""
            }
        }.joined()
    }
}

/// The values a template is filled with, from the contact, their agent, office and company.
public struct MergeValues: Sendable, Hashable {
    public var values: [MergeField: String]

    public init(values: [MergeField: String] = [:]) { self.values = values }

    public subscript(field: MergeField) -> String? {
        guard let value = values[field], !value.isEmpty else { return nil }
        return value
    }

    public init(contact: Contact, agent: User?, officeName: String?, companyName: String?) {
        self.init(contact: .init(firstName: contact.firstName, lastName: contact.lastName, email: contact.emails.first, phone: contact.phones.first,
                                 status: contact.status.rawValue, leadType: contact.leadType?.rawValue, source: contact.source,
                                 address: contact.address, searchInterest: contact.searchInterest),
                  agent: agent.map { .init(firstName: $0.firstName, lastName: $0.lastName, email: $0.email, phone: $0.mobilePhone) },
                  officeName: officeName, companyName: companyName)
    }

    /// What a contact gives its merge fields (statuses and lead types as their wire values).
    public struct ContactFacts: Sendable {
        public var firstName, lastName, email, phone: String?
        public var status: String
        public var leadType, source: String?
        public var address: Address?
        public var searchInterest: SearchInterest?

        public init(firstName: String?, lastName: String?, email: String?, phone: String?, status: String, leadType: String?, source: String?,
                    address: Address?, searchInterest: SearchInterest?) {
            (self.firstName, self.lastName, self.email, self.phone) = (firstName, lastName, email, phone)
            (self.status, self.leadType, self.source, self.address, self.searchInterest) = (status, leadType, source, address, searchInterest)
        }
    }

    /// The same values with another agent's (a team plan's step sent from its role's agent, SP-2).
    public func with(agent: AgentFacts) -> MergeValues {
        let theirs = MergeValues(contact: ContactFacts(firstName: nil, lastName: nil, email: nil, phone: nil, status: "", leadType: nil, source: nil,
                                                       address: nil, searchInterest: nil),
                                 agent: agent, officeName: nil, companyName: nil)
        var copy = self
        for field in [MergeField.agentFirstName, .agentLastName, .agentFullName, .agentEmail, .agentPhone] { copy.values[field] = theirs.values[field] }
        return copy
    }

    /// What the assigned agent gives theirs.
    public struct AgentFacts: Sendable {
        public var firstName, lastName, email, phone: String?

        public init(firstName: String?, lastName: String?, email: String?, phone: String?) {
            (self.firstName, self.lastName, self.email, self.phone) = (firstName, lastName, email, phone)
        }
    }

    public init(contact: ContactFacts, agent: AgentFacts?, officeName: String?, companyName: String?) {
        func join(_ first: String?, _ last: String?) -> String? {
            let name = [first, last].compactMap { $0?.isEmpty == false ? $0 : nil }.joined(separator: " ")
            return name.isEmpty ? nil : name
        }
        var values: [MergeField: String] = [:]
        values[.contactFirstName] = contact.firstName
        values[.contactLastName] = contact.lastName
        values[.contactFullName] = join(contact.firstName, contact.lastName)
        values[.contactEmail] = contact.email
        values[.contactPhone] = contact.phone.map(Self.phone)
        values[.contactStatus] = Self.words(contact.status)
        values[.contactLeadType] = contact.leadType.map(Self.words)
        values[.contactSource] = contact.source
        values[.contactStreet] = contact.address?.street
        values[.contactCity] = contact.address?.city
        values[.contactState] = contact.address?.state
        values[.contactPostalCode] = contact.address?.postalCode
        values[.searchArea] = contact.searchInterest?.area
        values[.searchPropertyType] = contact.searchInterest?.propertyType
        values[.searchPriceMin] = contact.searchInterest?.priceMin.map(Self.dollars)
        values[.searchPriceMax] = contact.searchInterest?.priceMax.map(Self.dollars)
        if let agent {
            values[.agentFirstName] = agent.firstName
            values[.agentLastName] = agent.lastName
            values[.agentFullName] = join(agent.firstName, agent.lastName)
            values[.agentEmail] = agent.email
            values[.agentPhone] = agent.phone.map(Self.phone)
        }
        values[.officeName] = officeName
        values[.companyName] = companyName
        self.values = values.compactMapValues { $0 }
    }

    /// "+13125550142" → "(312) 555-0142"; other numbers as stored.
    static func phone(_ e164: String) -> String {
        let digits = Array(e164.dropFirst(2))
        guard e164.hasPrefix("+1"), digits.count == 10 else { return e164 }
        return "(\(String(digits[0..<3]))) \(String(digits[3..<6]))-\(String(digits[6..<10]))"
    }

    static func dollars(_ amount: Int) -> String {
        let digits = String(abs(amount))
        var grouped = ""
        for (offset, character) in digits.enumerated() {
            if offset > 0 && (digits.count - offset) % 3 == 0 { grouped.append(",") }
            grouped.append(character)
        }
        return (amount < 0 ? "-$" : "$") + grouped
    }

    /// "new_lead" → "New lead".
    static func words(_ raw: String) -> String {
        let spaced = raw.replacingASCII(UInt8(ascii: "_"), with: UInt8(ascii: " "))
        return spaced.prefix(1).uppercased() + spaced.dropFirst()
    }
}
