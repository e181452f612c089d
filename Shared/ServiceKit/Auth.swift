import Crypto
import Foundation
import Hummingbird
import JWTKit
import Models
import Synchronization

/// The claims of every token this system issues, for people and for services alike.
package struct TokenClaims: JWTPayload, Equatable {
    package var sub: SubjectClaim
    /// The company; absent for platform admins and services.
    package var cid: String?
    package var role: String
    package var ents: [String]
    package var exp: ExpirationClaim
    package var nbf: NotBeforeClaim?
    package var iat: IssuedAtClaim

    package func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf?.verifyNotBefore()
    }
}

/// A verified caller.
package struct Identity: Sendable, Equatable {
    /// A user id, or the calling service's name for `role == .service`.
    package var subject: String
    package var companyId: UUID?
    package var role: Role
    package var entityIds: Set<UUID>

    package init(subject: String, companyId: UUID?, role: Role, entityIds: Set<UUID>) {
        self.subject = subject
        self.companyId = companyId
        self.role = role
        self.entityIds = entityIds
    }

    package var userId: UUID? { role == .service ? nil : UUID(uuidString: subject) }
    package var isService: Bool { role == .service }
    package var isPlatformAdmin: Bool { role == .platformAdmin }

    /// 403 unless the caller has one of `roles`.
    package func require(_ roles: Role...) throws {
        guard roles.contains(role) else { throw APIError.forbidden }
    }
}

/// Tokens already verified, with what they said and the span they are good for. Verifying is
/// stateless (no token is revoked before it expires), so a token seen again needs only its times
/// checked: a service sends the same token for an hour, and the HMAC and two JSON decodes of every
/// request were a twentieth of a message's CPU. Keyed by the whole token, signature included.
final class VerifiedTokens: Sendable {
    private let entries = Mutex<[String: (identity: Identity, notBefore: Date?, expires: Date)]>([:])
    static let capacity = 4096

    func identity(_ token: String, now: Date) -> Identity? {
        guard let entry = entries.withLock({ $0[token] }) else { return nil }
        // JWTKit's own rules: good while now < exp, and once nbf < now.
        guard now < entry.expires, (entry.notBefore ?? .distantPast) < now else { return nil }
        return entry.identity
    }

    func remember(_ token: String, _ identity: Identity, notBefore: Date?, expires: Date) {
        entries.withLock { entries in
            // Forgetting all at once keeps the bound without bookkeeping; the next requests verify again.
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[token] = (identity, notBefore, expires)
        }
    }
}

/// Issues and verifies HS256 tokens with `JWT_SECRET`.
package struct TokenService: Sendable {
    private let keys: JWTKeyCollection
    let verified = VerifiedTokens()

    package init(secret: String) async {
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    package func issue(subject: String, companyId: UUID?, role: Role, entityIds: [UUID], now: Date = Date(), lifetime: TimeInterval = 12 * 3600) async throws -> String {
        let claims = TokenClaims(
            sub: .init(value: subject), cid: companyId?.lowercasedString, role: role.rawValue,
            ents: entityIds.map { $0.lowercasedString }, exp: .init(value: now.addingTimeInterval(lifetime)),
            nbf: .init(value: now.addingTimeInterval(-5)), iat: .init(value: now))
        return try await keys.sign(claims)
    }

    /// The service identity other services accept on `/v1/events` and internal routes.
    package func serviceToken(for service: ServiceName, lifetime: TimeInterval = 3600) async throws -> String {
        try await issue(subject: service.rawValue, companyId: nil, role: .service, entityIds: [], lifetime: lifetime)
    }

    /// Verifies a compact JWT. Only HS256 is accepted: a token naming another algorithm
    /// (`none` above all) is refused before its signature is looked at.
    package func verify(_ token: String) async throws(APIError) -> Identity {
        if let known = verified.identity(token, now: Date()) { return known }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[2].isEmpty,
              let headerData = Data(base64URLEncoded: String(parts[0])),
              let header = try? JSONDecoder().decode(Header.self, from: headerData),
              header.alg == "HS256", header.typ == nil || header.typ == "JWT"
        else { throw APIError.unauthorized }
        let claims: TokenClaims
        do {
            claims = try await keys.verify(token, as: TokenClaims.self)
        } catch {
            throw APIError.unauthorized
        }
        guard let role = Role(rawValue: claims.role) else { throw APIError.unauthorized }
        var companyId: UUID?
        if let cid = claims.cid {
            guard let parsed = UUID(uuidString: cid) else { throw APIError.unauthorized }
            companyId = parsed
        }
        if role != .service && role != .platformAdmin {
            guard companyId != nil, UUID(uuidString: claims.sub.value) != nil else { throw APIError.unauthorized }
        }
        var entities = Set<UUID>()
        for entity in claims.ents {
            guard let id = UUID(uuidString: entity) else { throw APIError.unauthorized }
            entities.insert(id)
        }
        let identity = Identity(subject: claims.sub.value, companyId: companyId, role: role, entityIds: entities)
        verified.remember(token, identity, notBefore: claims.nbf?.value, expires: claims.exp.value)
        return identity
    }

    private struct Header: Decodable {
        var alg: String
        var typ: String?
    }
}

extension Data {
    /// Base64 with the URL-safe alphabet and no padding (cursors, keys).
    /// Byte by byte: Foundation's `replacingOccurrences` (a string search through NSString) was a
    /// fifth of notifications' CPU, which signs an unsubscribe link for every automated e-mail.
    package func base64URLEncodedString() -> String {
        String(decoding: base64EncodedString().utf8.compactMap { byte -> UInt8? in
            switch byte {
            case UInt8(ascii: "+"): UInt8(ascii: "-")
            case UInt8(ascii: "/"): UInt8(ascii: "_")
            case UInt8(ascii: "="): nil
            default: byte
            }
        }, as: UTF8.self)
    }

    package init?(base64URLEncoded text: String) {
        var base64 = text.replacingASCII(UInt8(ascii: "-"), with: UInt8(ascii: "+")).replacingASCII(UInt8(ascii: "_"), with: UInt8(ascii: "/"))
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        self.init(base64Encoded: base64)
    }
}

/// Requires a valid bearer token on every route behind it.
package struct AuthMiddleware: RouterMiddleware {
    package typealias Context = AppContext
    let tokens: TokenService

    package init(tokens: TokenService) {
        self.tokens = tokens
    }

    package func handle(_ request: Request, context: AppContext, next: (Request, AppContext) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.count > 7,
              header.prefix(7).lowercased() == "bearer "
        else { throw APIError.unauthorized }
        var context = context
        context.identity = try await tokens.verify(String(header.dropFirst(7)).trimmedSpaces())
        if let identity = context.identity {
            context.logger[metadataKey: "caller"] = "\(identity.role.rawValue):\(identity.subject)"
        }
        return try await next(request, context)
    }
}

extension Sequence<UInt8> {
    /// Lower-case hex, two digits a byte (checksums, signatures, secrets).
    package var hexString: String {
        // String(format:) per byte went through Foundation's formatter: a tenth of a request's CPU
        // once every request carried a trace id.
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Compares two secrets' bytes in time that depends only on their length, so a forger learns
/// nothing from how fast a wrong signature is refused.
package func constantTimeEquals(_ left: some Collection<UInt8>, _ right: some Collection<UInt8>) -> Bool {
    guard left.count == right.count else { return false }
    return zip(left, right).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
}

/// The signature of our own signed webhooks (transaction management, inbound e-mail): hex
/// HMAC-SHA256 of "<timestamp>.<raw body>" with the shared secret.
package enum WebhookSignature {
    package static func sign(secret: String, timestamp: String, body: [UInt8]) -> String {
        var message = Array(timestamp.utf8)
        message.append(UInt8(ascii: "."))
        message += body
        return HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(secret.utf8))).hexString
    }

    package static func verify(signature: String, secret: String, timestamp: String, body: [UInt8]) -> Bool {
        constantTimeEquals(Array(sign(secret: secret, timestamp: timestamp, body: body).utf8), Array(signature.lowercased().utf8))
    }

    /// How old a signed request may be before it counts as a replay.
    package static let tolerance: TimeInterval = 300

    /// `X-Timestamp` (Unix seconds) and the hex of `X-Signature: sha256=<hex>`; nil when unsigned.
    package static func headers(of request: Request) -> (timestamp: String, signature: String)? {
        guard let timestamp = request.headers[.init("X-Timestamp")!], Int64(timestamp) != nil,
              let signature = request.headers[.init("X-Signature")!], signature.hasPrefix("sha256=") else { return nil }
        return (timestamp, String(signature.dropFirst(7)))
    }

    /// Fresh and signed with `secret`. Freshness is a security check, so it reads the wall
    /// clock, not the service clock.
    package static func verify(_ signed: (timestamp: String, signature: String), secret: String, body: [UInt8]) -> Bool {
        guard let seconds = Double(signed.timestamp), abs(Date().timeIntervalSince1970 - seconds) <= tolerance else { return false }
        return verify(signature: signed.signature, secret: secret, timestamp: signed.timestamp, body: body)
    }
}

/// An API key as it is stored: its SHA-256, never the key (lead sources' keys, sites' keys).
package enum APIKeyHash {
    package static func of(_ key: String) -> [UInt8] { Array(SHA256.hash(data: Data(key.utf8))) }
}

extension UUID {
    /// The same id for the same name, every time (SHA-256, shaped as a version 5 UUID): what a
    /// retried job writes under it (a timeline entry, a log row) is written once.
    package static func derived(from name: String) -> UUID {
        var bytes = Array(SHA256.hash(data: Data(name.utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x50
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}
