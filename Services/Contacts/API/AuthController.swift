import Foundation
import Hummingbird
import Models
import ServiceKit

/// `POST /v1/auth/login`: e-mail and password for a token; every login is recorded.
struct AuthController {
    let store: DirectoryStore
    let tokens: TokenService
    let hasher: PasswordHasher
    let clock: any ServiceClock

    struct Login: Decodable {
        var email: String
        var password: String
    }

    struct Session: ResponseEncodable {
        var token: String
        var expiresAt: Date
        var user: User
    }

    static let tokenLifetime: TimeInterval = 12 * 3600

    func register(open: RouterGroup<AppContext>, authenticated: RouterGroup<AppContext>) {
        open.post("/v1/auth/login") { request, context -> Session in
            let login = try await request.decodeJSON(as: Login.self, context: context)
            guard login.password.utf8.count <= 72, let email = EmailAddress(login.email) else { throw Self.invalid }
            let found = try await store.user(email: email.value)
            let valid = try await hasher.verify(login.password, hash: found?.1 ?? hasher.decoyHash)
            guard let (user, hash) = found, hash != nil, valid, user.active else { throw Self.invalid }
            let issuedAt = Date()
            let token = try await tokens.issue(subject: user.id.lowercasedString, companyId: user.companyId, role: user.role,
                                               entityIds: user.entityIds, now: issuedAt, lifetime: Self.tokenLifetime)
            try await store.recordLogin(user: user, at: clock.now)
            return Session(token: token, expiresAt: issuedAt.addingTimeInterval(Self.tokenLifetime), user: user)
        }
        authenticated.get("/v1/auth/me") { _, context -> User in
            let identity = try context.requireIdentity()
            guard let userId = identity.userId, let (user, _) = try await store.user(userId) else {
                throw APIError.notFound("user \(identity.subject)")
            }
            return user
        }
    }

    static let invalid = APIError(.unauthorized, code: "invalid_credentials", message: "the e-mail or password is wrong")
}

extension User: ResponseEncodable {}
extension Entity: ResponseEncodable {}
