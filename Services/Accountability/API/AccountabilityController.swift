import Foundation
import Hummingbird
import Models
import PostgresNIO
import ServiceKit

extension AccountabilityRules: ResponseEncodable {}
extension Violation: ResponseEncodable {}

/// Rules per office or team and the violations they caused (AC-4 … AC-6). Admins change rules
/// and reinstate, within the entities they manage; agents read their own violations; nobody
/// another company's (404).
struct AccountabilityController {
    let store: AccountabilityStore
    let checks: RotationChecks
    let clock: any ServiceClock

    struct RulesList: ResponseEncodable { var items: [AccountabilityRules] }
    struct Violations: ResponseEncodable { var items: [Violation] }

    func register(on group: RouterGroup<AppContext>) {
        group.get("/v1/accountability/rules") { _, context -> RulesList in
            let identity = try context.requireIdentity()
            let (companyId, managed) = try await adminScope(identity)
            return RulesList(items: try await store.rules(companyId: companyId).filter { managed?.contains($0.entityId) ?? true })
        }
        group.get("/v1/accountability/rules/{entityId}") { _, context -> AccountabilityRules in
            let identity = try context.requireIdentity()
            let entityId = try await managedEntity(try context.pathID("entityId"), identity)
            guard let rules = try await store.rules(entityId: entityId) else { throw APIError.notFound("rules of entity \(entityId)") }
            return rules
        }
        group.put("/v1/accountability/rules/{entityId}") { request, context -> AccountabilityRules in
            let identity = try context.requireIdentity()
            let entityId = try await managedEntity(try context.pathID("entityId"), identity)
            guard let entity = try await store.entity(entityId), entity.kind == .office || entity.kind == .team else {
                throw APIError.validation("entityId", "accountability rules are set on an office or a team")
            }
            let input = try await request.decodeJSON(as: RulesInput.self, context: context)
            let version = (try await store.rules(entityId: entityId)?.version ?? 0) + 1
            let rules = try input.validated(entityId: entityId, companyId: entity.companyId, version: version, now: clock.now)
            try await store.save(rules)
            return rules
        }
        group.delete("/v1/accountability/rules/{entityId}") { _, context -> Response in
            let identity = try context.requireIdentity()
            let entityId = try await managedEntity(try context.pathID("entityId"), identity)
            guard try await store.deleteRules(entityId: entityId) else { throw APIError.notFound("rules of entity \(entityId)") }
            return Response(status: .noContent)
        }
        group.get("/v1/accountability/violations") { request, context -> Violations in
            let identity = try context.requireIdentity()
            guard let companyId = identity.companyId else { throw APIError.forbidden }
            var agentId: UUID?
            if let text = request.uri.queryParameters["agentId"] {
                guard let id = UUID(uuidString: String(text)) else { throw APIError.validation("agentId", "agentId must be a UUID") }
                agentId = id
            }
            var entities: Set<UUID>?
            if identity.role.isAdmin {
                entities = try await managed(identity)
            } else if identity.role == .agent {
                guard agentId == nil || agentId == identity.userId else { return Violations(items: []) }
                agentId = identity.userId
            } else {
                throw APIError.forbidden
            }
            return Violations(items: try await store.violations(companyId: companyId, agentId: agentId, entities: entities, limit: 200))
        }
        group.get("/v1/accountability/violations/{id}") { _, context -> Violation in
            try await visibleViolation(try context.pathID("id"), try context.requireIdentity())
        }
        group.post("/v1/accountability/violations/{id}/reinstatement") { _, context -> Violation in
            let identity = try context.requireIdentity()
            guard identity.role.isAdmin else { throw APIError.forbidden }
            var violation = try await visibleViolation(try context.pathID("id"), identity)
            guard violation.reinstatedAt == nil else { throw APIError.conflict("the agent was put back already", code: "already_reinstated") }
            try await checks.reinstate(&violation, by: identity.subject)
            return violation
        }
    }

    /// The caller's company and the entities they manage (nil: all of the company); admins only.
    private func adminScope(_ identity: Identity) async throws -> (UUID, Set<UUID>?) {
        guard identity.role.isAdmin, let companyId = identity.companyId else { throw APIError.forbidden }
        return (companyId, try await managed(identity))
    }

    private func managed(_ identity: Identity) async throws -> Set<UUID>? {
        try await store.client.withConnection { connection in
            try await DirectoryReplica.managedEntities(of: identity, on: connection, logger: store.logger)
        }
    }

    /// An entity of the caller's company that the admin manages, or 404.
    private func managedEntity(_ id: UUID, _ identity: Identity) async throws -> UUID {
        let (companyId, managed) = try await adminScope(identity)
        guard let entity = try await store.entity(id), entity.companyId == companyId, managed?.contains(id) ?? true else {
            throw APIError.notFound("entity \(id)")
        }
        return id
    }

    private func visibleViolation(_ id: UUID, _ identity: Identity) async throws -> Violation {
        guard let violation = try await store.violation(id), violation.companyId == identity.companyId else { throw APIError.notFound("violation \(id)") }
        if identity.role == .agent, violation.agentId == identity.userId { return violation }
        if identity.role.isAdmin, try await managed(identity)?.contains(violation.entityId) ?? true { return violation }
        throw APIError.notFound("violation \(id)")
    }
}
