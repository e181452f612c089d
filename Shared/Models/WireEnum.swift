/// A closed set of string values on the wire. An unknown value fails decoding with a message
/// that names the values the field takes, which the services' error answer passes on as it is
/// (`status 'bogus' is not one of sphere, prospect, …`) instead of the Swift type's name.
public protocol WireEnum: RawRepresentable, CaseIterable, Codable, Sendable where RawValue == String {}

extension WireEnum {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Self(rawValue: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: Self.unknownValue(text))
        }
        self = value
    }

    /// The message for a value the type does not take; every such message starts with the quote.
    public static func unknownValue(_ text: String) -> String {
        "'\(text)' is not one of \(allCases.map(\.rawValue).joined(separator: ", "))"
    }
}
