import Foundation

extension StringProtocol {
    /// The text without white space and line breaks at either end, as
    /// `trimmingCharacters(in: .whitespacesAndNewlines)` gives it but without the round trip
    /// through NSString, which showed as a tenth of a 10,000-row import's time.
    public func trimmedWhitespace() -> String {
        trimmed(where: \.isWhitespaceText)
    }

    /// As `trimmingCharacters(in: .whitespaces)`: spaces and tabs only, line breaks kept.
    public func trimmedSpaces() -> String {
        trimmed(where: isSpace)
    }

    fileprivate func trimmed(where isTrimmed: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !isTrimmed($0) }), let last = lastIndex(where: { !isTrimmed($0) }) else { return "" }
        return String(self[first...last])
    }
}

private func isSpace(_ character: Character) -> Bool {
    character == "\t" || character.unicodeScalars.allSatisfy { $0.properties.generalCategory == .spaceSeparator }
}

extension String {
    public func trimmedWhitespace() -> String {
        hasVisibleASCIIEnds ? self : trimmed(where: \.isWhitespaceText)
    }

    public func trimmedSpaces() -> String {
        hasVisibleASCIIEnds ? self : trimmed(where: isSpace)
    }

    /// Most fields start and end with a visible ASCII character, which is never trimmed: a
    /// grapheme cannot continue past one, and none that starts with one is white space.
    private var hasVisibleASCIIEnds: Bool {
        guard let head = utf8.first, let tail = utf8.last else { return false }
        return head > 0x20 && head < 0x7F && tail > 0x20 && tail < 0x7F
    }
}

/// Character classes as `Character.isWhitespace`, `isLetter` and `isNumber` answer them, with
/// ASCII decided by its code: the Unicode property lookup behind those, run on every character of
/// every field, was a sixth of a 10,000-row import's parse. `asciiValue` is that of a single
/// ASCII scalar (and of CR LF, which is white space either way).
extension Character {
    public var isWhitespaceText: Bool {
        guard let ascii = asciiValue else { return isWhitespace }
        return ascii == 0x20 || (0x09...0x0D).contains(ascii)
    }

    public var isLetterText: Bool {
        guard let ascii = asciiValue else { return isLetter }
        return (0x41...0x5A).contains(ascii) || (0x61...0x7A).contains(ascii)
    }

    public var isNumberText: Bool {
        guard let ascii = asciiValue else { return isNumber }
        return (0x30...0x39).contains(ascii)
    }
}

extension Unicode.Scalar {
    /// As `CharacterSet.controlCharacters.contains` (categories Cc and Cf), printable ASCII
    /// answered without the set's lookup.
    public var isControlText: Bool {
        if value >= 0x20 && value < 0x7F { return false }
        return CharacterSet.controlCharacters.contains(self)
    }
}

extension String {
    /// The text with every ASCII `byte` replaced by ASCII `replacement`, as
    /// `replacingOccurrences(of:with:)` gives it for one character but without Foundation's
    /// round trip through NSString, which showed in the profiles of every lead's intake.
    public func replacingASCII(_ byte: UInt8, with replacement: UInt8) -> String {
        guard byte < 0x80, replacement < 0x80, utf8.contains(byte) else { return self }
        return String(decoding: utf8.map { $0 == byte ? replacement : $0 }, as: UTF8.self)
    }
}

extension Substring.UTF8View {
    /// Whether `byte` occurs twice in a row, as `contains("..")` asks it but without Foundation's
    /// string search.
    public func containsRun(of byte: UInt8) -> Bool {
        var previous: UInt8?
        for current in self {
            if current == byte && previous == byte { return true }
            previous = current
        }
        return false
    }
}
