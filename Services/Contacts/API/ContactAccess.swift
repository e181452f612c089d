import Foundation
import Models
import ServiceKit

/// Who sees which contacts: agents those assigned to them, lenders those they are the
/// lender of, admins those owned by the entities they manage, services all; never another
/// company's (404).
struct ContactAccess: Sendable {
    let access: Access
    let contacts: ContactStore
    let directory: DirectoryStore

    struct Scope: Sendable {
        var companyId: UUID
        var ownerEntities: Set<UUID>?
        var onlyAssignedTo: UUID?
        var onlyLenderOf: UUID?
    }

    func scope(_ identity: Identity) async throws -> Scope {
        let companyId = try access.companyId(of: identity)
        switch identity.role {
        case .companyAdmin, .officeAdmin, .teamAdmin:
            return Scope(companyId: companyId, ownerEntities: try await access.managedEntities(of: identity))
        case .agent:
            return Scope(companyId: companyId, onlyAssignedTo: identity.userId)
        case .lender:
            return Scope(companyId: companyId, onlyLenderOf: identity.userId)
        default:
            throw APIError.forbidden
        }
    }

    func allows(_ scope: Scope, _ contact: Contact) -> Bool {
        guard contact.companyId == scope.companyId else { return false }
        if let agent = scope.onlyAssignedTo { return contact.assignedAgentId == agent }
        if let lender = scope.onlyLenderOf { return contact.lenderId == lender }
        if let entities = scope.ownerEntities { return entities.contains(contact.ownerEntityId) }
        return true
    }

    /// The contact if the caller may see it; 404 otherwise.
    func visible(_ id: UUID, _ identity: Identity) async throws -> Contact {
        if identity.isService {
            guard let contact = try await contacts.contact(id, companyId: identity.companyId) else { throw APIError.notFound("contact \(id)") }
            return contact
        }
        let scope = try await scope(identity)
        guard let contact = try await contacts.contact(id, companyId: scope.companyId), allows(scope, contact) else {
            throw APIError.notFound("contact \(id)")
        }
        return contact
    }

    /// Lenders read; agents, admins and services (routing's follow-up tasks …) change.
    func requireWriter(_ identity: Identity) throws {
        try identity.require(.agent, .teamAdmin, .officeAdmin, .companyAdmin, .service)
    }

    func actor(_ identity: Identity) async throws -> Actor {
        if identity.isService { return Actor(kind: .service, id: identity.subject) }
        guard let userId = identity.userId, let (user, _) = try await directory.user(userId) else {
            return Actor(kind: .user, id: identity.subject)
        }
        return Actor(kind: .user, id: userId.lowercasedString, name: "\(user.firstName) \(user.lastName)")
    }

    /// An agent the contact may be assigned to: an active user of the company who holds contacts.
    func assignableAgent(_ id: UUID, companyId: UUID, field: String) async throws -> User {
        guard let (user, _) = try await directory.user(id), user.companyId == companyId, user.active,
              [.agent, .teamAdmin, .officeAdmin, .companyAdmin].contains(user.role)
        else { throw APIError.validation(field, "\(field) names no active agent of this company") }
        return user
    }

    /// The entity that owns a new contact: the one asked for if the caller may use it (admins:
    /// what they manage; others: their own entities), else the caller's first entity.
    func ownerEntity(_ requested: UUID?, identity: Identity, scope: Scope) async throws -> UUID {
        let allowed: Set<UUID>? = identity.role.isAdmin ? scope.ownerEntities : identity.entityIds
        if let requested {
            guard try await directory.entity(requested, companyId: scope.companyId) != nil, allowed?.contains(requested) ?? true else {
                throw APIError.validation("ownerEntityId", "ownerEntityId is not an entity you may use")
            }
            return requested
        }
        guard let first = identity.entityIds.sorted().first else {
            throw APIError.validation("ownerEntityId", "ownerEntityId is required")
        }
        return first
    }

    func lender(_ id: UUID, companyId: UUID, field: String) async throws {
        guard let (user, _) = try await directory.user(id), user.companyId == companyId, user.active, user.role == .lender else {
            throw APIError.validation(field, "\(field) names no lender of this company")
        }
    }
}
