import Foundation
import Models
import ServiceKit

/// Validation of the directory's values (names, time zones, office hours, passwords) and who may
/// grant which role. Pure: values in, errors out.
enum DirectoryRules {
    static func name(_ value: String, field: String, maxLength: Int = 100) throws -> String {
        let trimmed = value.trimmedWhitespace()
        guard !trimmed.isEmpty else { throw APIError.validation(field, "\(field) must not be empty") }
        guard trimmed.count <= maxLength else { throw APIError.validation(field, "\(field) must be at most \(maxLength) characters") }
        guard !trimmed.unicodeScalars.contains(where: \.isControlText) else {
            throw APIError.validation(field, "\(field) must not contain control characters")
        }
        return trimmed
    }

    static func timeZone(_ identifier: String, field: String = "timeZone") throws -> String {
        guard identifier.contains("/") || identifier == "UTC", TimeZone(identifier: identifier) != nil else {
            throw APIError.validation(field, "\(field) must be an IANA time zone such as America/Chicago")
        }
        return identifier
    }

    /// One opening per weekday, `HH:MM` on the 24-hour clock, opening before closing.
    static func officeHours(_ days: [OfficeHoursDay], field: String = "officeHours") throws -> [OfficeHoursDay] {
        guard days.count <= 7 else { throw APIError.validation(field, "\(field) has at most one entry per weekday") }
        var seen = Set<Int>()
        for (index, day) in days.enumerated() {
            let path = "\(field)[\(index)]"
            guard (1...7).contains(day.weekday) else {
                throw APIError.validation("\(path).weekday", "weekday must be 1 (Monday) to 7 (Sunday)")
            }
            guard seen.insert(day.weekday).inserted else {
                throw APIError.validation("\(path).weekday", "weekday \(day.weekday) is listed twice")
            }
            guard let open = minutes(day.open) else { throw APIError.validation("\(path).open", "open must be HH:MM") }
            guard let close = minutes(day.close) else { throw APIError.validation("\(path).close", "close must be HH:MM") }
            guard open < close else { throw APIError.validation("\(path).close", "close must be after open") }
        }
        return days.sorted { $0.weekday < $1.weekday }
    }

    static func minutes(_ text: String) -> Int? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
              let hours = Int(parts[0]), let minutes = Int(parts[1]),
              (0...24).contains(hours), (0...59).contains(minutes), hours * 60 + minutes <= 24 * 60
        else { return nil }
        return hours * 60 + minutes
    }

    /// Bcrypt reads at most 72 bytes; a longer password would be silently cut.
    static func password(_ value: String, field: String = "password") throws -> String {
        guard value.count >= 10 else { throw APIError.validation(field, "\(field) must be at least 10 characters") }
        guard value.utf8.count <= 72 else { throw APIError.validation(field, "\(field) must be at most 72 bytes") }
        return value
    }

    /// The roles a caller may give: admins never grant more than they hold.
    static func mayGrant(_ role: Role, caller: Role) -> Bool {
        switch caller {
        case .platformAdmin, .companyAdmin:
            return role != .platformAdmin && role != .service
        case .officeAdmin:
            return [.agent, .lender, .teamAdmin, .officeAdmin].contains(role)
        case .teamAdmin:
            return [.agent, .lender, .teamAdmin].contains(role)
        default:
            return false
        }
    }

    /// Where an entity of `kind` may hang: offices under the company, teams under an office.
    static func allowedParent(for kind: EntityKind) -> EntityKind? {
        switch kind {
        case .company: nil
        case .office: .company
        case .team: .office
        }
    }

    /// CAN-SPAM asks for a valid physical postal address: a street or PO box line and a city, so
    /// at least two parts and a digit; at most 300 characters. An empty text removes it.
    static func postalAddress(_ text: String?) throws -> String? {
        guard let text else { return nil }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return nil }
        guard trimmed.count <= 300, trimmed.contains(where: \.isNumber), trimmed.contains(",") || trimmed.contains("\n") else {
            throw APIError.validation("postalAddress", "postalAddress is a full postal address, such as 100 Main St, Chicago, IL 60601")
        }
        return trimmed
    }
}
