import Foundation

/// Text put inside HTML or XML (pages, TwiML, e-mail designs), and the plain-text alternative of
/// an HTML e-mail.
public enum HTMLText {
    /// Escapes the five characters that could end a text or attribute early.
    public static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }

    /// What a reader without HTML sees: the text of the document, its paragraphs and line breaks
    /// kept, scripts and styles dropped, links followed by their address.
    public static func plainText(_ html: String) -> String {
        var text = html
        for dropped in ["script", "style", "head"] {
            while let open = text.range(of: "<\(dropped)", options: .caseInsensitive),
                  let close = text.range(of: "</\(dropped)>", options: .caseInsensitive, range: open.upperBound..<text.endIndex) {
                text.removeSubrange(open.lowerBound..<close.upperBound)
            }
        }
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            guard text[index] == "<", let end = text[index...].firstIndex(of: ">") else {
                result.append(text[index])
                index = text.index(after: index)
                continue
            }
            let tag = text[text.index(after: index)..<end].lowercased()
            let name = tag.split(whereSeparator: { $0 == " " || $0 == "/" }).first.map(String.init) ?? ""
            if ["br", "p", "/p", "div", "/div", "tr", "/tr", "h1", "h2", "h3", "/h1", "/h2", "/h3", "li", "hr"].contains(name) { result += "\n" }
            if name == "a", let href = tag.range(of: "href=\"") {
                let rest = tag[href.upperBound...]
                if let quote = rest.firstIndex(of: "\"") { result += "[\(rest[..<quote])] " }
            }
            index = text.index(after: end)
        }
        let entities = ["&nbsp;": " ", "&lt;": "<", "&gt;": ">", "&quot;": "\"", "&#39;": "'", "&apos;": "'", "&amp;": "&"]
        for (entity, character) in entities { result = result.replacingOccurrences(of: entity, with: character) }
        let lines = result.split(separator: "\n", omittingEmptySubsequences: false).map { $0.split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        var compact: [String] = []
        for line in lines where !(line.isEmpty && (compact.last?.isEmpty ?? true)) { compact.append(line) }
        return compact.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
