import Crypto
import Foundation
import ServiceKit

/// Twilio's request signature (`X-Twilio-Signature`), computed exactly as Twilio does: the full
/// URL it called, then for a form body each parameter sorted by name as name+value, HMAC-SHA1
/// with the account's auth token, base64. A JSON body is instead covered by the URL's
/// `bodySHA256` parameter, the hex SHA-256 of the body.
enum TwilioSignature {
    static func compute(url: String, parameters: [(String, String)], authToken: String) -> String {
        var data = url
        for (name, value) in parameters.sorted(by: { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }) {
            data += name + value
        }
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(data.utf8), using: SymmetricKey(data: Data(authToken.utf8)))
        return Data(mac).base64EncodedString()
    }

    /// Form-encoded webhooks (SMS, voice, status callbacks).
    static func verify(signature: String, url: String, parameters: [(String, String)], authToken: String) -> Bool {
        constantTimeEquals(Array(compute(url: url, parameters: parameters, authToken: authToken).utf8), Array(signature.utf8))
    }

    /// JSON-bodied webhooks: the URL (with its `bodySHA256`) is signed, and the body must hash to it.
    static func verifyJSON(signature: String, url: String, body: [UInt8], authToken: String) -> Bool {
        guard let components = URLComponents(string: url),
              let claimed = components.queryItems?.first(where: { $0.name == "bodySHA256" })?.value else { return false }
        let actual = SHA256.hash(data: body).hexString
        let urlSigned = verify(signature: signature, url: url, parameters: [], authToken: authToken)
        return constantTimeEquals(Array(actual.utf8), Array(claimed.lowercased().utf8)) && urlSigned
    }
}

/// Decodes `application/x-www-form-urlencoded` bodies the way Twilio sends them.
enum FormBody {
    static func parse(_ bytes: [UInt8]) -> [(String, String)] {
        String(decoding: bytes, as: UTF8.self).split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    static func decode(_ text: String) -> String {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? text
    }

    static func encode(_ fields: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return fields.map { name, value in
            "\(name.addingPercentEncoding(withAllowedCharacters: allowed) ?? name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value)"
        }.joined(separator: "&")
    }
}
