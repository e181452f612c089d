import Foundation

extension StringProtocol {
    /// The text without white space and line breaks at either end, as
    /// `trimmingCharacters(in: .whitespacesAndNewlines)` gives it but without the round trip
    /// through NSString, which showed as a tenth of a 10,000-row import's time.
    public func trimmedWhitespace() -> String {
        trimmed(where: \.isWhitespace)
    }

    /// As `trimmingCharacters(in: .whitespaces)`: spaces and tabs only, line breaks kept.
    public func trimmedSpaces() -> String {
        trimmed { $0 == "\t" || $0.unicodeScalars.allSatisfy { $0.properties.generalCategory == .spaceSeparator } }
    }

    private func trimmed(where isTrimmed: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !isTrimmed($0) }), let last = lastIndex(where: { !isTrimmed($0) }) else { return "" }
        return String(self[first...last])
    }
}
