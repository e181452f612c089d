import Foundation
import Hummingbird
import Models
import NIOPosix
import PostgresNIO
import ServiceKit
import HummingbirdBcrypt

/// Who may see and change what in the directory: company admins their whole company, office and
/// team admins the subtree under their entities, agents only themselves; never another company
/// (404, not 403, so ids of other companies reveal nothing).
struct Access: Sendable {
    let store: DirectoryStore

    /// The company the caller acts in; platform admins must name one.
    func companyId(of identity: Identity) throws -> UUID {
        guard let companyId = identity.companyId else { throw APIError.forbidden }
        return companyId
    }

    /// The entities an admin manages; nil means the whole company.
    func managedEntities(of identity: Identity) async throws -> Set<UUID>? {
        switch identity.role {
        case .companyAdmin, .platformAdmin: return nil
        case .officeAdmin, .teamAdmin:
            return try await store.subtree(of: identity.entityIds, companyId: try companyId(of: identity))
        default:
            throw APIError.forbidden
        }
    }

    func requireAdmin(_ identity: Identity) throws {
        try identity.require(.companyAdmin, .officeAdmin, .teamAdmin)
    }

    /// Loads a user the caller may see, or 404.
    func visibleUser(_ id: UUID, identity: Identity) async throws -> (User, String?) {
        guard let found = try await store.user(id), let companyId = found.0.companyId, companyId == identity.companyId else {
            throw APIError.notFound("user \(id)")
        }
        if identity.userId == id { return found }
        if identity.role.isAdmin {
            if let managed = try await managedEntities(of: identity), managed.isDisjoint(with: found.0.entityIds) {
                throw APIError.notFound("user \(id)")
            }
            return found
        }
        throw APIError.notFound("user \(id)")
    }
}

/// Password hashing off the event loops: bcrypt is slow on purpose.
struct PasswordHasher: Sendable {
    let cost: UInt8
    /// A hash to compare against when no user matched, so a login answers as slowly for an
    /// unknown e-mail as for a wrong password.
    let decoyHash: String

    init(cost: UInt8) async throws {
        self.cost = cost
        decoyHash = try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(UUID.random().uuidString, cost: cost) }
    }

    func hash(_ password: String) async throws -> String {
        let cost = cost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    func verify(_ password: String, hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
    }
}

extension PSQLError {
    var isUniqueViolation: Bool { serverInfo?[.sqlState] == "23505" }
    /// An e-mail or phone another contact of the company holds.
    var isPointTaken: Bool { isUniqueViolation && serverInfo?[.constraintName] == "contact_points_pkey" }
}
