import Crypto
import Foundation
import ServiceKit

/// The signed, expiring link an offer's text or e-mail carries (RT-15): the offer id and an
/// expiry, signed with HMAC-SHA256. Whoever holds the link may answer that one offer, so it
/// names nothing else and cannot be altered or extended.
struct OfferLink: Sendable {
    let key: SymmetricKey

    /// The key is derived from the service secret for this one purpose, so a link's signature
    /// can never serve as anything else's.
    init(secret: String) {
        key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Data("routing.offer-links.v1".utf8), using: SymmetricKey(data: Data(secret.utf8))))
    }

    func token(offerId: UUID, expires: Date) -> String {
        let payload = Self.payload(offerId: offerId, expires: Int64(expires.timeIntervalSince1970.rounded(.up)))
        let signature = Data(HMAC<SHA256>.authenticationCode(for: payload, using: key))
        return payload.base64URLEncodedString() + "." + signature.base64URLEncodedString()
    }

    enum Verdict: Equatable, Sendable {
        case valid(UUID)
        case expired(UUID)
        case invalid
    }

    func verify(_ token: String, now: Date) -> Verdict {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard token.count <= 200, parts.count == 2, let payload = Data(base64URLEncoded: String(parts[0])), payload.count == 24,
              let signature = Data(base64URLEncoded: String(parts[1])) else { return .invalid }
        let expected = Data(HMAC<SHA256>.authenticationCode(for: payload, using: key))
        guard constantTimeEquals(Array(expected), Array(signature)) else { return .invalid }
        let bytes = Array(payload)
        let id = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                             bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
        let expires = bytes[16..<24].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        return Double(expires) > now.timeIntervalSince1970 ? .valid(id) : .expired(id)
    }

    private static func payload(offerId: UUID, expires: Int64) -> Data {
        var data = withUnsafeBytes(of: offerId.uuid) { Data($0) }
        data.append(contentsOf: (0..<8).reversed().map { UInt8(truncatingIfNeeded: expires >> ($0 * 8)) })
        return data
    }
}
