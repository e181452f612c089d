import Crypto
import Foundation
import Models
import ServiceKit

/// The one-click unsubscribe link every automated e-mail carries (CAN-SPAM): the company and the
/// address, signed with HMAC-SHA256, so it works without signing in and cannot be altered to
/// unsubscribe someone else. It does not expire: the law asks that it keep working for 30 days
/// after the e-mail at least, and an old e-mail's link doing what it says is what people expect.
struct UnsubscribeLink: Sendable {
    let key: SymmetricKey

    /// Derived from the service secret for this one purpose.
    init(secret: String) {
        key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Data("notifications.unsubscribe.v1".utf8),
                                                                 using: SymmetricKey(data: Data(secret.utf8))))
    }

    func token(companyId: UUID, address: String) -> String {
        let payload = Data((companyId.lowercasedString + "|" + address.lowercased()).utf8)
        let signature = Data(HMAC<SHA256>.authenticationCode(for: payload, using: key))
        return payload.base64URLEncodedString() + "." + signature.base64URLEncodedString()
    }

    func verify(_ token: String) -> (companyId: UUID, address: String)? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard token.count <= 800, parts.count == 2, let payload = Data(base64URLEncoded: String(parts[0])),
              let signature = Data(base64URLEncoded: String(parts[1])) else { return nil }
        let expected = Data(HMAC<SHA256>.authenticationCode(for: payload, using: key))
        guard constantTimeEquals(Array(expected), Array(signature)) else { return nil }
        let text = String(decoding: payload, as: UTF8.self)
        guard let bar = text.firstIndex(of: "|"), let companyId = UUID(uuidString: String(text[..<bar])) else { return nil }
        let address = String(text[text.index(after: bar)...])
        return address.contains("@") ? (companyId, address) : nil
    }

    /// What an automated e-mail ends with: who sent it, where they are, and how to stop them.
    /// The same footer in an HTML part: before `</body>` when it has one, else at its end.
    static func footer(companyName: String?, postalAddress: String, url: String, into html: String) -> String {
        let sender = [companyName, oneLine(postalAddress)].compactMap { $0 }.map(HTMLText.escape).joined(separator: " · ")
        let footer = """
            <hr><p style="font-size:12px;color:#666">\(sender)<br>You get these e-mails as a contact of \(HTMLText.escape(companyName ?? "this brokerage")). \
            <a href="\(HTMLText.escape(url))">Unsubscribe</a></p>
            """
        guard let close = html.range(of: "</body>", options: [.caseInsensitive, .backwards]) else { return html + footer }
        return html.replacingCharacters(in: close.lowerBound..<close.lowerBound, with: footer)
    }

    /// A postal address on one line (its lines joined by commas), without a string search per e-mail.
    static func oneLine(_ address: String) -> String {
        address.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            .joined(separator: ", ")
    }

    static func footer(companyName: String?, postalAddress: String, url: String) -> String {
        let sender = [companyName, oneLine(postalAddress)].compactMap { $0 }.joined(separator: " · ")
        return "\n\n--\n\(sender)\nYou get these e-mails as a contact of \(companyName ?? "this brokerage"). Unsubscribe: \(url)"
    }
}
