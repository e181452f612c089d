import Foundation

/// A phone number in E.164 (`+13125550123`). Parsing accepts what people type: spaces, dots,
/// dashes and brackets; a 10-digit number, or 11 digits starting with 1, is North American.
public struct PhoneNumber: Codable, Sendable, Hashable, CustomStringConvertible {
    public let e164: String

    private static let allowed = Set("+0123456789 ().-".utf8)

    public init?(_ text: String) {
        let trimmed = text.trimmedSpaces()
        guard !trimmed.isEmpty, trimmed.count <= 32 else { return nil }
        guard trimmed.utf8.allSatisfy(Self.allowed.contains) else { return nil }
        let hasPlus = trimmed.hasPrefix("+")
        guard !trimmed.utf8.dropFirst().contains(UInt8(ascii: "+")) else { return nil }
        let digits = trimmed.filter(\.isNumberText)
        if hasPlus {
            guard (8...15).contains(digits.count), digits.first != "0" else { return nil }
            e164 = "+" + digits
        } else if digits.count == 10 {
            guard Self.validNorthAmerican(digits) else { return nil }
            e164 = "+1" + digits
        } else if digits.count == 11, digits.first == "1" {
            guard Self.validNorthAmerican(String(digits.dropFirst())) else { return nil }
            e164 = "+" + digits
        } else {
            return nil
        }
    }

    /// Area code and exchange may not start with 0 or 1 in the North American plan.
    private static func validNorthAmerican(_ tenDigits: String) -> Bool {
        let chars = Array(tenDigits)
        return chars.count == 10 && chars[0] >= "2" && chars[3] >= "2"
    }

    /// The three-digit area code of a North American number.
    public var northAmericanAreaCode: String? {
        guard e164.hasPrefix("+1"), e164.count == 12 else { return nil }
        return String(e164.dropFirst(2).prefix(3))
    }

    public var description: String { e164 }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let parsed = PhoneNumber(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not a phone number")
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(e164)
    }
}

/// An e-mail address, trimmed and lower-cased, checked for the shape `local@domain.tld`.
public struct EmailAddress: Codable, Sendable, Hashable, CustomStringConvertible {
    public let value: String

    public init?(_ text: String) {
        let trimmed = text.trimmedSpaces().lowercased()
        guard trimmed.utf8.count <= 254, let at = trimmed.lastIndex(of: "@") else { return nil }
        let local = trimmed[..<at]
        let domain = trimmed[trimmed.index(after: at)...]
        let dot = UInt8(ascii: ".")
        guard !local.isEmpty, local.utf8.count <= 64, !local.utf8.contains(UInt8(ascii: "@")), !domain.isEmpty,
              !trimmed.contains(where: { $0.isWhitespaceText || $0 == "," || $0 == ";" || $0 == "<" || $0 == ">" }),
              local.utf8.first != dot, local.utf8.last != dot, !local.utf8.containsRun(of: dot),
              domain.utf8.contains(dot), domain.utf8.first != dot, domain.utf8.last != dot, !domain.utf8.containsRun(of: dot),
              domain.allSatisfy({ $0.isLetterText || $0.isNumberText || $0 == "-" || $0 == "." }),
              let tld = domain.split(separator: ".").last, tld.count >= 2, tld.allSatisfy(\.isLetterText)
        else { return nil }
        value = trimmed
    }

    public var description: String { value }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let parsed = EmailAddress(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an e-mail address")
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
