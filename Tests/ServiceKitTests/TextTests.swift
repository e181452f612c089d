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

    @Test("the quick character classes answer as Character's own, for every ASCII character and a sample beyond")
    func characterClasses() {
        let beyond: [Character] = ["\u{85}", "\u{A0}", "\u{2003}", "\u{2028}", "é", "e\u{301}", "\r\n", "٣", "Ⅻ", "ß", "中", "🙂", "\u{200B}"]
        for character in (0..<128).map({ Character(Unicode.Scalar(UInt8($0))) }) + beyond {
            #expect(character.isWhitespaceText == character.isWhitespace, "\(character.debugDescription)")
            #expect(character.isLetterText == character.isLetter, "\(character.debugDescription)")
            #expect(character.isNumberText == character.isNumber, "\(character.debugDescription)")
        }
        for value in Array(0..<0x200) + [0x200B, 0x200E, 0x2028, 0xFEFF, 0xE0001] {
            guard let scalar = Unicode.Scalar(value) else { continue }
            #expect(scalar.isControlText == CharacterSet.controlCharacters.contains(scalar), "U+\(String(value, radix: 16))")
        }
        #expect("a..b"[...].utf8.containsRun(of: UInt8(ascii: ".")))
        #expect(!"a.b.c"[...].utf8.containsRun(of: UInt8(ascii: ".")))
        for text in ["new_lead", "no_phone_number", "plain", "", "_", "a__b_", "é_ü_中🙂", "e\u{301}_x"] {
            #expect(text.replacingASCII(UInt8(ascii: "_"), with: UInt8(ascii: " ")) == text.replacingOccurrences(of: "_", with: " "), "\(text)")
        }
        #expect("http.requests.total".replacingASCII(UInt8(ascii: "."), with: UInt8(ascii: "_")) == "http_requests_total")
    }

    @Test("e-mail addresses: the shape local@domain.tld, lower-cased, nothing that breaks a header")
    func emailShapes() {
        for good in ["ann@example.com", " Ann.Lee@Example.CO ", "a+b@mail.example.org", "ann@xn--bcher-kva.de", "ann@bücher.de"] {
            #expect(EmailAddress(good) != nil, "\(good)")
        }
        #expect(EmailAddress(" Ann.Lee@Example.CO ")?.value == "ann.lee@example.co")
        for bad in ["", "ann", "ann@", "@example.com", "ann@example", "ann@example.c", "ann@@example.com", "a@b@example.com",
                    ".ann@example.com", "ann.@example.com", "an..n@example.com", "ann@.example.com", "ann@example.com.",
                    "ann@exa..mple.com", "ann lee@example.com", "ann@exam ple.com", "ann,lee@example.com", "<ann@example.com>",
                    "ann@example.c0m", "ann@exa_mple.com", "ann\u{2003}@example.com", "ann@example.com\n"] {
            #expect(EmailAddress(bad) == nil, "\(bad.debugDescription)")
        }
    }
}
