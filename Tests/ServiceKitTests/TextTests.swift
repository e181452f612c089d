import Foundation
import Models
import Testing

@Suite("Trimming without NSString, and without a pass at all for visible ASCII ends (X-2)")
struct TextTests {
    static let samples = ["", " ", "\t\n ", "  Ann Lee  ", "\u{00A0}Ann\u{2003}", "line\n", "\r\nx\r\n", "a b", "é ", "\t42\t", " \u{2028}x",
                          "Ann", "ann@example.com", "a\u{301}", "\u{0600}a", "x ", " x", "x\u{7F}", "\u{7F}x", "x\u{00A0}", "~"]

    @Test("trimmedWhitespace trims what whitespacesAndNewlines trims")
    func whitespaceAndNewlines() {
        for text in Self.samples {
            #expect(text.trimmedWhitespace() == text.trimmingCharacters(in: .whitespacesAndNewlines), "\(text.debugDescription)")
        }
    }

    @Test("trimmedSpaces trims spaces and tabs but keeps line breaks, as whitespaces does")
    func spacesOnly() {
        for text in Self.samples {
            #expect(text.trimmedSpaces() == text.trimmingCharacters(in: .whitespaces), "\(text.debugDescription)")
        }
        #expect(" a@b.co\n".trimmedSpaces() == "a@b.co\n")
    }
}
