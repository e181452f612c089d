import Foundation
import Models
import ServiceKit

/// What a contact is made from, whichever door it came in by (API, lead intake, CSV import).
struct ContactDraft: Sendable, Equatable {
    var status: ContactStatus?
    var firstName: String?
    var lastName: String?
    var emails: [EmailAddress] = []
    var phones: [PhoneNumber] = []
    var leadType: LeadType?
    var source: String?
    var tags: [String] = []
    var address: Address?
    var searchInterest: SearchInterest?
    var listing: ListingInterest?
    var assignedAgentId: UUID?
    var lenderId: UUID?
    var behavioralAlerts: Bool?
}

enum ContactRules {
    static let maxTags = 50
    static let maxContactPoints = 10

    /// ST-3: source leads start as new leads; a person entering one by hand chooses; an import
    /// takes the Status column.
    static func initialStatus(_ requested: ContactStatus?, origin: CreationOrigin, field: String = "status") throws -> ContactStatus {
        if let requested { return requested }
        if origin.isSource { return .newLead }
        throw APIError.validation(field, "\(field) is required for a contact entered by hand or imported", code: "missing_field")
    }

    /// Tags are kept as people type them on the site, minus the leading '#', in lower case so
    /// `#Luxury` and `luxury` are one tag.
    static func tag(_ raw: String, field: String = "tags") throws -> String {
        var value = raw.trimmedWhitespace()
        while value.hasPrefix("#") { value.removeFirst() }
        value = value.split(whereSeparator: \.isWhitespaceText).joined(separator: " ").lowercased()
        guard !value.isEmpty, value.count <= 50 else { throw APIError.validation(field, "a tag is 1 to 50 characters") }
        guard value.allSatisfy({ $0.isLetterText || $0.isNumberText || " -_.&'".contains($0) }) else {
            throw APIError.validation(field, "tag '\(raw)' may hold letters, digits, spaces and - _ . & ' only")
        }
        return value
    }

    static func tags(_ raw: [String], field: String = "tags") throws -> [String] {
        var result: [String] = []
        for (index, tag) in raw.enumerated() {
            let value = try self.tag(tag, field: "\(field)[\(index)]")
            if !result.contains(value) { result.append(value) }
        }
        guard result.count <= maxTags else { throw APIError.validation(field, "a contact has at most \(maxTags) tags") }
        return result
    }

    static func optionalText(_ value: String?, field: String, maxLength: Int = 200) throws -> String? {
        guard let value else { return nil }
        let trimmed = value.trimmedWhitespace()
        guard !trimmed.isEmpty else { return nil }
        guard trimmed.count <= maxLength else { throw APIError.validation(field, "\(field) must be at most \(maxLength) characters") }
        guard !trimmed.unicodeScalars.contains(where: { $0.isControlText && $0 != "\n" && $0 != "\t" }) else {
            throw APIError.validation(field, "\(field) must not contain control characters")
        }
        return trimmed
    }

    static func searchInterest(_ interest: SearchInterest?, field: String = "searchInterest") throws -> SearchInterest? {
        guard var interest else { return nil }
        interest.area = try optionalText(interest.area, field: "\(field).area")
        interest.propertyType = try optionalText(interest.propertyType, field: "\(field).propertyType")
        interest.mls = try optionalText(interest.mls, field: "\(field).mls")
        for (name, price) in [("priceMin", interest.priceMin), ("priceMax", interest.priceMax)] {
            if let price, !(0...1_000_000_000).contains(price) {
                throw APIError.validation("\(field).\(name)", "\(name) must be from 0 to 1,000,000,000")
            }
        }
        if let low = interest.priceMin, let high = interest.priceMax, low > high {
            throw APIError.validation("\(field).priceMax", "priceMax must not be below priceMin")
        }
        let empty = SearchInterest()
        return interest == empty ? nil : interest
    }

    static func address(_ address: Address?, field: String = "address") throws -> Address? {
        guard var address else { return nil }
        address.street = try optionalText(address.street, field: "\(field).street")
        address.city = try optionalText(address.city, field: "\(field).city", maxLength: 100)
        address.state = try optionalText(address.state, field: "\(field).state", maxLength: 50)
        address.postalCode = try optionalText(address.postalCode, field: "\(field).postalCode", maxLength: 20)
        return address == Address() ? nil : address
    }

    /// Cleans a draft and checks it names somebody: a name, an e-mail, a phone or (for a seller,
    /// RT-17) an address.
    static func validate(_ draft: ContactDraft) throws -> ContactDraft {
        var draft = draft
        draft.firstName = try optionalText(draft.firstName, field: "firstName", maxLength: 100)
        draft.lastName = try optionalText(draft.lastName, field: "lastName", maxLength: 100)
        draft.source = try optionalText(draft.source, field: "source", maxLength: 100).map { $0.lowercased() }
        draft.emails = unique(draft.emails)
        draft.phones = unique(draft.phones)
        guard draft.emails.count <= maxContactPoints else { throw APIError.validation("emails", "at most \(maxContactPoints) e-mails") }
        guard draft.phones.count <= maxContactPoints else { throw APIError.validation("phones", "at most \(maxContactPoints) phones") }
        draft.tags = try tags(draft.tags)
        draft.address = try address(draft.address)
        draft.searchInterest = try searchInterest(draft.searchInterest)
        if let listing = draft.listing {
            guard !listing.listingId.trimmedSpaces().isEmpty, listing.listingId.count <= 100 else {
                throw APIError.validation("listing.listingId", "listingId must be 1 to 100 characters")
            }
        }
        guard draft.firstName != nil || draft.lastName != nil || !draft.emails.isEmpty || !draft.phones.isEmpty || draft.address != nil else {
            throw APIError.validation("firstName", "a contact needs a name, an e-mail, a phone or an address", code: "empty_contact")
        }
        return draft
    }

    static func unique<T: Hashable>(_ values: [T]) -> [T] {
        var seen = Set<T>()
        return values.filter { seen.insert($0).inserted }
    }

    /// Applies a draft onto a contact that matched it: filled fields win, tags and contact
    /// points are merged, nothing is erased.
    static func merge(_ draft: ContactDraft, into contact: Contact) -> Contact {
        var contact = contact
        if let status = draft.status { contact.status = status }
        if let first = draft.firstName { contact.firstName = first }
        if let last = draft.lastName { contact.lastName = last }
        contact.emails = unique(contact.emails + draft.emails.map(\.value))
        contact.phones = unique(contact.phones + draft.phones.map(\.e164))
        if let leadType = draft.leadType { contact.leadType = leadType }
        if let source = draft.source { contact.source = source }
        contact.tags = unique(contact.tags + draft.tags)
        if let address = draft.address { contact.address = address }
        if let interest = draft.searchInterest { contact.searchInterest = interest }
        if let listing = draft.listing { contact.listing = listing }
        if let behavioral = draft.behavioralAlerts { contact.behavioralAlerts = behavioral }
        return contact
    }

    /// How a status change reads on the timeline (ST-5).
    static func statusSummary(from old: ContactStatus?, to new: ContactStatus, reason: String?) -> String {
        let change = old.map { "Status changed from \(label($0)) to \(label(new))" } ?? "Status set to \(label(new))"
        return reason.map { "\(change): \($0)" } ?? change
    }

    static func label(_ status: ContactStatus) -> String {
        words(status.rawValue)
    }

    /// A snake_case value (`no_answer`) as the words a summary shows.
    static func words(_ value: String) -> String {
        value.replacingASCII(UInt8(ascii: "_"), with: UInt8(ascii: " "))
    }
}
