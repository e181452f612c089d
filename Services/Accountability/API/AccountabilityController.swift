import Foundation
import Hummingbird
import Models
import NIOCore
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
    struct Report: ResponseEncodable {
        var entityId: UUID?
        var from: Date
        var to: Date
        var agents: [AgentFigures]
        var total: AgentFigures?
    }
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
        // AC-7: per agent and for the entity over [from, to), as JSON or CSV. An agent gets their
        // own row only.
        group.get("/v1/accountability/analytics") { request, context -> Response in
            let identity = try context.requireIdentity()
            let query = request.uri.queryParameters
            let now = clock.now
            let to = try query["to"].map { try Self.date(String($0), field: "to") } ?? now
            let from = try query["from"].map { try Self.date(String($0), field: "from") } ?? to.addingTimeInterval(-30 * 86_400)
            guard from < to else { throw APIError.validation("from", "from must be before to") }
            guard to.timeIntervalSince(from) <= 400 * 86_400 else { throw APIError.validation("from", "a range is at most 400 days") }
            let format = query["format"].map(String.init) ?? "json"
            guard ["json", "csv"].contains(format) else { throw APIError.validation("format", "format is json or csv") }
            var report: Report
            if identity.role == .agent, let me = identity.userId {
                let name = try await store.agents(of: Array(identity.entityIds)).first { $0.0 == me }?.1 ?? "Me"
                let activity = try await store.activity(of: [(me, name)], from: from, to: to)
                report = Report(entityId: nil, from: from, to: to, agents: activity.map { Analytics.figures($0, from: from, to: to) }, total: nil)
            } else {
                guard let text = query["entityId"], let id = UUID(uuidString: String(text)) else {
                    throw APIError.validation("entityId", "entityId (an office or team you manage) is required")
                }
                let entityId = try await managedEntity(id, identity)
                let agents = try await store.agents(of: try await store.subtreeIds(of: entityId))
                let activity = try await store.activity(of: agents, from: from, to: to)
                let name = try await store.entityName(entityId) ?? "Total"
                report = Report(entityId: entityId, from: from, to: to, agents: activity.map { Analytics.figures($0, from: from, to: to) },
                                total: Analytics.total(activity, entityName: name, from: from, to: to))
            }
            if format == "csv" {
                let total = report.total ?? Analytics.total([], entityName: "Total", from: from, to: to)
                return Response(status: .ok, headers: [.contentType: "text/csv; charset=utf-8",
                                                       .contentDisposition: "attachment; filename=\"accountability.csv\""],
                                body: ResponseBody(byteBuffer: ByteBuffer(string: Analytics.csv(report.agents, total: total))))
            }
            return try report.response(from: request, context: context)
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

    static func date(_ text: String, field: String) throws -> Date {
        guard let date = RFC3339.date(from: text) else { throw APIError.validation(field, "\(field) is an RFC 3339 time such as 2026-11-01T00:00:00Z") }
        return date
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
