import Foundation
import Models
import ServiceKit
import CSV
import Synchronization

/// ST-4: a CSV of contacts, read with CSV.swift, turned into drafts row by row. A bad row is
/// reported with its number and field and does not stop the good ones.
enum CSVImport {
    struct RowError: Codable, Sendable, Equatable {
        /// 1-based data row (the header is row 0).
        var row: Int
        var field: String
        var message: String
    }

    struct Row: Sendable, Equatable {
        var row: Int
        var draft: ContactDraft
        /// An agent named in the file, by e-mail, resolved against the directory by the store.
        var assignedAgentEmail: String?
    }

    struct Parsed: Sendable {
        var rows: [Row]
        var errors: [RowError]
        var ignoredColumns: [String]
    }

    enum Column: String, CaseIterable {
        case firstName, lastName, name, email, email2, phone, phone2, status, tags, source, leadType
        case street, city, state, postalCode, area, propertyType, mls, priceMin, priceMax, assignedAgent, behavioralAlerts
    }

    /// Header spellings people use, all compared lower-cased without spaces, dashes or underscores.
    static let aliases: [String: Column] = [
        "firstname": .firstName, "first": .firstName, "givenname": .firstName,
        "lastname": .lastName, "last": .lastName, "surname": .lastName, "familyname": .lastName,
        "name": .name, "fullname": .name,
        "email": .email, "emailaddress": .email, "email1": .email, "email2": .email2, "secondaryemail": .email2,
        "phone": .phone, "phonenumber": .phone, "mobile": .phone, "mobilephone": .phone, "cell": .phone, "phone1": .phone,
        "phone2": .phone2, "secondaryphone": .phone2, "homephone": .phone2,
        "status": .status, "contactstatus": .status,
        "tags": .tags, "tag": .tags, "hashtags": .tags,
        "source": .source, "leadsource": .source,
        "leadtype": .leadType, "type": .leadType,
        "street": .street, "address": .street, "streetaddress": .street,
        "city": .city, "state": .state, "zip": .postalCode, "zipcode": .postalCode, "postalcode": .postalCode,
        "area": .area, "propertytype": .propertyType, "mls": .mls,
        "pricemin": .priceMin, "minprice": .priceMin, "pricemax": .priceMax, "maxprice": .priceMax,
        "assignedagent": .assignedAgent, "agent": .assignedAgent, "agentemail": .assignedAgent,
        "behavioralalerts": .behavioralAlerts,
    ]

    static let maxRows = 50_000

    static func key(_ header: String) -> String {
        header.lowercased().filter { !" -_#.".contains($0) }.trimmedSpaces()
    }

    /// Parses the whole file; throws (400) only when the file itself is unreadable or lacks a
    /// Status column, otherwise reports bad rows.
    static func parse(_ text: String) throws -> Parsed {
        let body = text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text
        guard !body.allSatisfy(\.isWhitespace) else {
            throw APIError.badRequest("the CSV is empty", field: "body", code: "malformed_csv")
        }
        // Quotes come in pairs in valid CSV ("" escapes one); an odd count is a quote never closed,
        // which the reader would take for one field running to the end of the file.
        var quotes = 0
        for byte in body.utf8 where byte == UInt8(ascii: "\"") { quotes += 1 }
        guard quotes % 2 == 0 else {
            throw APIError.badRequest("the CSV has a quoted field that is never closed", field: "body", code: "malformed_csv")
        }
        let reader: CSVReader
        do {
            reader = try CSVReader(string: body, hasHeaderRow: true)
        } catch {
            throw APIError.badRequest("the CSV cannot be read: \(describe(error))", field: "body", code: "malformed_csv")
        }
        let header = reader.headerRow ?? []
        var columns: [Int: Column] = [:]
        var ignored: [String] = []
        for (index, name) in header.enumerated() {
            if let column = aliases[key(name)], !columns.values.contains(column) {
                columns[index] = column
            } else if !name.trimmedSpaces().isEmpty {
                ignored.append(name)
            }
        }
        guard columns.values.contains(.status) else {
            throw APIError.badRequest("the CSV needs a Status column", field: "Status", code: "missing_column")
        }
        var records: [(number: Int, fields: [String])] = []
        var errors: [RowError] = []
        var count = 0
        while let fields = reader.next() {
            count += 1
            guard count <= maxRows else { break }
            if fields.count == 1, fields[0].trimmedSpaces().isEmpty { continue }
            if fields.count > header.count {
                errors.append(RowError(row: count, field: "row", message: "row has \(fields.count) fields; the header has \(header.count)"))
                continue
            }
            records.append((count, fields))
        }
        if let error = reader.error {
            throw APIError.badRequest("the CSV cannot be read: \(describe(error))", field: "body", code: "malformed_csv")
        }
        guard count <= maxRows else {
            throw APIError(.contentTooLarge, code: "too_many_rows", message: "one import takes at most \(maxRows) rows", field: "body")
        }
        let (rows, rowErrors) = try drafts(records, columns: columns)
        return Parsed(rows: rows, errors: errors + rowErrors, ignoredColumns: ignored)
    }

    /// The records' drafts, in file order. Checking a row takes several times what reading it
    /// does and one row's check never looks at another's, so the records are split among the
    /// cores.
    private static func drafts(_ records: [(number: Int, fields: [String])], columns: [Int: Column]) throws -> ([Row], [RowError]) {
        typealias Slice = (rows: [Row], errors: [RowError], failure: (any Error)?)
        let slices = min(ProcessInfo.processInfo.activeProcessorCount * 4, (records.count + 999) / 1000)
        let size = slices == 0 ? 0 : (records.count + slices - 1) / slices
        let done = Mutex([Int: Slice]())
        DispatchQueue.concurrentPerform(iterations: slices) { slice in
            var result: Slice = ([], [], nil)
            for index in slice * size..<min(records.count, (slice + 1) * size) where result.failure == nil {
                let (number, fields) = records[index]
                do {
                    result.rows.append(try row(number, fields: fields, columns: columns))
                } catch let error as APIError {
                    result.errors.append(RowError(row: number, field: error.field ?? "row", message: error.message))
                } catch {
                    result.failure = error
                }
            }
            done.withLock { $0[slice] = result }
        }
        let results = done.withLock { slices in slices.sorted { $0.key < $1.key }.map(\.value) }
        if let failure = results.lazy.compactMap(\.failure).first { throw failure }
        return (results.flatMap(\.rows), results.flatMap(\.errors))
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case CSVError.cannotReadHeaderRow: "it has no header row"
        case CSVError.unicodeDecoding: "it is not valid Unicode text"
        default: String(describing: error)
        }
    }

    private static func row(_ number: Int, fields: [String], columns: [Int: Column]) throws -> Row {
        var values: [Column: String] = [:]
        for (index, column) in columns {
            let value = index < fields.count ? fields[index].trimmedWhitespace() : ""
            if !value.isEmpty { values[column] = value }
        }
        var draft = ContactDraft()
        guard let statusText = values[.status] else {
            throw APIError.validation("Status", "Status is empty")
        }
        draft.status = try enumValue(ContactStatus.self, statusText, field: "Status")
        draft.firstName = values[.firstName]
        draft.lastName = values[.lastName]
        if let name = values[.name], draft.firstName == nil, draft.lastName == nil {
            let parts = name.split(separator: " ", maxSplits: 1).map(String.init)
            draft.firstName = parts.first
            draft.lastName = parts.count > 1 ? parts[1] : nil
        }
        for (column, field) in [(Column.email, "Email"), (.email2, "Email 2")] {
            guard let text = values[column] else { continue }
            guard let email = EmailAddress(text) else { throw APIError.validation(field, "'\(text)' is not an e-mail address") }
            draft.emails.append(email)
        }
        for (column, field) in [(Column.phone, "Phone"), (.phone2, "Phone 2")] {
            guard let text = values[column] else { continue }
            guard let phone = PhoneNumber(text) else { throw APIError.validation(field, "'\(text)' is not a phone number") }
            draft.phones.append(phone)
        }
        if let text = values[.leadType] { draft.leadType = try enumValue(LeadType.self, text, field: "Lead Type") }
        draft.source = values[.source]
        if let text = values[.tags] {
            draft.tags = text.split(whereSeparator: { $0 == ";" || $0 == "," || $0 == "|" }).map(String.init)
        }
        if values[.street] != nil || values[.city] != nil || values[.state] != nil || values[.postalCode] != nil {
            draft.address = Address(street: values[.street], city: values[.city], state: values[.state], postalCode: values[.postalCode])
        }
        if values[.area] != nil || values[.propertyType] != nil || values[.mls] != nil || values[.priceMin] != nil || values[.priceMax] != nil {
            draft.searchInterest = SearchInterest(
                area: values[.area], propertyType: values[.propertyType], mls: values[.mls],
                priceMin: try values[.priceMin].map { try price($0, field: "Price Min") },
                priceMax: try values[.priceMax].map { try price($0, field: "Price Max") })
        }
        if let text = values[.behavioralAlerts] {
            switch text.lowercased() {
            case "yes", "true", "on", "1": draft.behavioralAlerts = true
            case "no", "false", "off", "0": draft.behavioralAlerts = false
            default: throw APIError.validation("Behavioral Alerts", "Behavioral Alerts must be yes or no")
            }
        }
        var assigned: String?
        if let text = values[.assignedAgent] {
            guard let email = EmailAddress(text) else { throw APIError.validation("Assigned Agent", "Assigned Agent must be the agent's e-mail") }
            assigned = email.value
        }
        do {
            draft = try ContactRules.validate(draft)
        } catch let error as APIError {
            throw APIError.validation(columnName(for: error.field), error.message)
        }
        // A row is matched to a contact by e-mail or phone; one with neither could not be found
        // by the next import of the same file and would be created again each time. A name alone
        // is no key (two people share one), so such a row is refused and reported.
        guard !draft.emails.isEmpty || !draft.phones.isEmpty else {
            throw APIError.validation("Email", "a row needs an e-mail or a phone, so that importing the file again finds this contact instead of creating it twice")
        }
        return Row(row: number, draft: draft, assignedAgentEmail: assigned)
    }

    /// Accepts `new_lead`, `New Lead`, `new-lead` alike.
    static func enumValue<T: WireEnum>(_ type: T.Type, _ text: String, field: String) throws -> T {
        let normalized = String(String.UnicodeScalarView(text.lowercased().unicodeScalars.map { $0 == " " || $0 == "-" ? "_" : $0 }))
        guard let value = T(rawValue: normalized) else { throw APIError.validation(field, "\(field) \(T.unknownValue(text))") }
        return value
    }

    static func price(_ text: String, field: String) throws -> Int {
        let digits = text.replacingOccurrences(of: "$", with: "").replacingOccurrences(of: ",", with: "").trimmedSpaces()
        guard let value = Double(digits), value.isFinite, value >= 0, value <= 1_000_000_000 else {
            throw APIError.validation(field, "\(field) '\(text)' is not a price")
        }
        return Int(value.rounded())
    }

    /// Names the file's column for an error the shared rules reported by JSON field.
    static func columnName(for field: String?) -> String {
        switch field ?? "" {
        case "firstName": "First Name"
        case "lastName": "Last Name"
        case let field where field.hasPrefix("tags"): "Tags"
        case let field where field.hasPrefix("searchInterest.price"): field.hasSuffix("Max") ? "Price Max" : "Price Min"
        case let field where field.hasPrefix("searchInterest."): String(field.dropFirst("searchInterest.".count))
        case let field where field.hasPrefix("address."): String(field.dropFirst("address.".count))
        case "source": "Source"
        default: field ?? "row"
        }
    }
}
