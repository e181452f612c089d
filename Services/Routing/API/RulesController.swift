import Foundation
import Hummingbird
import Models
import PostgresNIO
import ServiceKit

extension RoutingRule: ResponseEncodable {}
extension RoutingSettings: ResponseEncodable {}

/// `/v1/routing/rules` per scope (RT-1 … RT-14) and `/v1/routing/settings` (RT-18, RT-19).
struct RulesController {
    let store: RoutingStore
    let peers: PeerClient
    let clock: any ServiceClock

    struct NewRule: Decodable {
        var entityId: UUID
        var name: String
        var criteria: RuleCriteria?
        var recipients: RuleRecipients
        var distribution: Distribution
        var channels: [DeliveryChannel]
        var acceptance: AcceptanceSettings?
        var lenderId: UUID?
    }

    /// A partial change: absent fields stay; `acceptance` and `lenderId` set to null are turned off.
    struct RulePatch: Decodable {
        var name: String?
        var criteria: RuleCriteria?
        var recipients: RuleRecipients?
        var distribution: Distribution?
        var channels: [DeliveryChannel]?
        var acceptance: AcceptanceSettings??
        var lenderId: UUID??

        enum CodingKeys: String, CodingKey { case name, criteria, recipients, distribution, channels, acceptance, lenderId }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decodeIfPresent(String.self, forKey: .name)
            criteria = try container.decodeIfPresent(RuleCriteria.self, forKey: .criteria)
            recipients = try container.decodeIfPresent(RuleRecipients.self, forKey: .recipients)
            distribution = try container.decodeIfPresent(Distribution.self, forKey: .distribution)
            channels = try container.decodeIfPresent([DeliveryChannel].self, forKey: .channels)
            if container.contains(.acceptance) { acceptance = .some(try container.decodeIfPresent(AcceptanceSettings.self, forKey: .acceptance)) }
            if container.contains(.lenderId) { lenderId = .some(try container.decodeIfPresent(UUID.self, forKey: .lenderId)) }
        }
    }

    struct Order: Decodable {
        var entityId: UUID
        var ruleIds: [UUID]
    }

    func register(on group: RouterGroup<AppContext>) {
        group.get("/v1/routing/rules") { request, context -> Page<RoutingRule> in
            let identity = try context.requireIdentity()
            guard let text = request.uri.queryParameters["entityId"], let entityId = UUID(uuidString: String(text)) else {
                throw APIError.validation("entityId", "give the entity (company, office or team) whose rules to list")
            }
            return try await store.client.withConnection { connection in
                let companyId = try await RoutingAccess.manage(entityId, identity, store: store, on: connection)
                try await store.ensureDefaultRule(companyId: companyId, entityId: entityId, now: clock.now, on: connection)
                return Page(items: try await store.rules(entityId: entityId, on: connection), nextCursor: nil)
            }
        }

        group.post("/v1/routing/rules") { request, context -> JSONResponse<RoutingRule> in
            let identity = try context.requireIdentity()
            let input = try await request.decodeJSON(as: NewRule.self, context: context)
            return try await store.client.transaction(logger: store.logger) { connection in
                let companyId = try await RoutingAccess.manage(input.entityId, identity, store: store, on: connection)
                try await store.ensureDefaultRule(companyId: companyId, entityId: input.entityId, now: clock.now, on: connection)
                let existing = try await store.rules(entityId: input.entityId, on: connection).filter { !$0.isDefault }
                guard existing.count < 100 else { throw APIError.validation("entityId", "an entity has at most 100 rules") }
                let now = clock.now
                let rule = RoutingRule(id: UUID.random(), companyId: companyId, entityId: input.entityId, name: input.name, position: (existing.map(\.position).max() ?? 0) + 1,
                                       isDefault: false, criteria: input.criteria ?? RuleCriteria(), recipients: input.recipients, distribution: input.distribution,
                                       channels: input.channels, acceptance: input.acceptance, lenderId: input.lenderId, version: 1, createdAt: now, updatedAt: now)
                let valid = try RuleValidation.validate(rule, directory: try await directory(for: rule, on: connection))
                try await store.save(valid, on: connection)
                return JSONResponse(.created, valid)
            }
        }

        group.get("/v1/routing/rules/{id}") { _, context -> RoutingRule in
            let identity = try context.requireIdentity()
            let id = try context.pathID("id")
            return try await store.client.withConnection { try await rule(id, identity, on: $0) }
        }

        group.patch("/v1/routing/rules/{id}") { request, context -> RoutingRule in
            let identity = try context.requireIdentity()
            let id = try context.pathID("id")
            let patch = try await request.decodeJSON(as: RulePatch.self, context: context)
            return try await store.client.transaction(logger: store.logger) { connection in
                var rule = try await rule(id, identity, on: connection)
                if let name = patch.name { rule.name = name }
                if let criteria = patch.criteria { rule.criteria = criteria }
                if let recipients = patch.recipients { rule.recipients = recipients }
                if let distribution = patch.distribution { rule.distribution = distribution }
                if let channels = patch.channels { rule.channels = channels }
                if let acceptance = patch.acceptance { rule.acceptance = acceptance }
                if let lender = patch.lenderId { rule.lenderId = lender }
                rule.version += 1
                rule.updatedAt = clock.now
                let valid = try RuleValidation.validate(rule, directory: try await directory(for: rule, on: connection))
                try await store.save(valid, on: connection)
                return valid
            }
        }

        group.delete("/v1/routing/rules/{id}") { _, context -> HTTPResponse.Status in
            let identity = try context.requireIdentity()
            let id = try context.pathID("id")
            return try await store.client.transaction(logger: store.logger) { connection in
                let rule = try await rule(id, identity, on: connection)
                // RT-2: every scope keeps its default rule.
                guard !rule.isDefault else { throw APIError.conflict("the default rule cannot be deleted; it always runs last", code: "default_rule") }
                try await store.deleteRule(id, on: connection)
                return .noContent
            }
        }

        group.put("/v1/routing/rules/order") { request, context -> Page<RoutingRule> in
            let identity = try context.requireIdentity()
            let order = try await request.decodeJSON(as: Order.self, context: context)
            return try await store.client.transaction(logger: store.logger) { connection in
                let companyId = try await RoutingAccess.manage(order.entityId, identity, store: store, on: connection)
                try await store.ensureDefaultRule(companyId: companyId, entityId: order.entityId, now: clock.now, on: connection)
                let rules = try await store.rules(entityId: order.entityId, on: connection)
                let movable = rules.filter { !$0.isDefault }
                // RT-3: the new order names every rule but the default, once each.
                guard order.ruleIds.count == movable.count, Set(order.ruleIds) == Set(movable.map(\.id)) else {
                    throw APIError.validation("ruleIds", "list every rule of the entity except the default rule, once each")
                }
                let byId = Dictionary(uniqueKeysWithValues: movable.map { ($0.id, $0) })
                for (index, id) in order.ruleIds.enumerated() {
                    guard var rule = byId[id] else { continue }
                    rule.position = index + 1
                    rule.version += 1
                    rule.updatedAt = clock.now
                    try await store.save(rule, on: connection)
                }
                return Page(items: try await store.rules(entityId: order.entityId, on: connection), nextCursor: nil)
            }
        }

        group.get("/v1/routing/settings") { request, context -> RoutingSettings in
            let identity = try context.requireIdentity()
            let company = try RoutingAccess.company(identity, request: request)
            return try await store.client.withConnection { try await store.settings(companyId: company, on: $0) }
        }

        group.put("/v1/routing/settings") { request, context -> RoutingSettings in
            let identity = try context.requireIdentity()
            guard identity.role == .companyAdmin || identity.isService else { throw APIError.forbidden }
            let company = try RoutingAccess.company(identity, request: request)
            let settings = try await request.decodeJSON(as: RoutingSettings.self, context: context)
            if let minutes = settings.listingAgentTimeoutMinutes, !RoutingSettings.listingTimeouts.contains(minutes) {
                throw APIError.validation("listingAgentTimeoutMinutes", "choose one of \(RoutingSettings.listingTimeouts.map(String.init).joined(separator: ", ")) minutes")
            }
            try await store.client.withConnection { try await store.saveSettings(settings, companyId: company, on: $0) }
            return settings
        }
    }

    private func rule(_ id: UUID, _ identity: Identity, on connection: PostgresConnection) async throws -> RoutingRule {
        guard let company = identity.isService ? nil : identity.companyId, let rule = try await store.rule(id, companyId: company, on: connection) else {
            if identity.isService, let rule = try await ruleForService(id, on: connection) { return rule }
            throw APIError.notFound("rule \(id)")
        }
        do {
            _ = try await RoutingAccess.manage(rule.entityId, identity, store: store, on: connection)
        } catch let error as APIError where error.status == .unprocessableContent {
            throw APIError.notFound("rule \(id)")
        }
        return rule
    }

    private func ruleForService(_ id: UUID, on connection: PostgresConnection) async throws -> RoutingRule? {
        let rows = try await connection.query("SELECT company_id FROM routing_rules WHERE id = \(id)", logger: store.logger)
        guard let company = try await rows.first(UUID.self) else { return nil }
        return try await store.rule(id, companyId: company, on: connection)
    }

    private func directory(for rule: RoutingRule, on connection: PostgresConnection) async throws -> RuleValidation.Directory {
        let agents = try await store.agents(companyId: rule.companyId, on: connection)
        let tree = Set(try await store.entityTree(rule.entityId, on: connection))
        return RuleValidation.Directory(
            agents: Dictionary(agents.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first }),
            lenders: Set(agents.filter { $0.role == .lender && $0.active }.map(\.id)),
            entityAgentCount: agents.filter { $0.active && $0.role == .agent && !tree.isDisjoint(with: $0.entityIds) }.count,
            ponds: rule.recipients.kind == .pond ? try await ponds(companyId: rule.companyId) : [])
    }

    /// Ponds live in contacts; a rule may only name one that exists, or its leads would go nowhere.
    private func ponds(companyId: UUID) async throws -> Set<UUID> {
        struct Listed: Decodable {
            struct Pond: Decodable { var id: UUID }
            var items: [Pond]
        }
        let response = try await peers.get(from: .contacts, path: "/v1/ponds?companyId=\(companyId.lowercasedString)")
        guard response.status == 200, let listed = try? JSONCoding.decoder.decode(Listed.self, from: Data(response.body.utf8)) else {
            throw PeerClient.Unreachable(service: .contacts, underlying: "listing ponds answered \(response.status)")
        }
        return Set(listed.items.map(\.id))
    }
}

/// Who may manage which scope's routing: company admins all of their company, office and team
/// admins their entities and those under them; services every company. Another company's
/// entity is as unknown as a missing one.
enum RoutingAccess {
    @discardableResult
    static func manage(_ entityId: UUID, _ identity: Identity, store: RoutingStore, on connection: PostgresConnection) async throws -> UUID {
        let unknown = APIError.validation("entityId", "entityId names no entity you manage")
        guard let entity = try await store.entity(entityId, on: connection) else { throw unknown }
        if identity.isService { return entity.companyId }
        guard identity.companyId == entity.companyId else { throw unknown }
        switch identity.role {
        case .companyAdmin:
            return entity.companyId
        case .officeAdmin, .teamAdmin:
            for managed in identity.entityIds where try await store.entityTree(managed, on: connection).contains(entityId) {
                return entity.companyId
            }
            throw unknown
        default:
            throw APIError.forbidden
        }
    }

    /// The company a request acts for: the caller's, or for services the `companyId` query parameter.
    static func company(_ identity: Identity, request: Request) throws -> UUID {
        if identity.isService {
            guard let text = request.uri.queryParameters["companyId"], let id = UUID(uuidString: String(text)) else {
                throw APIError.validation("companyId", "services name the company")
            }
            return id
        }
        guard identity.role.isAdmin, let company = identity.companyId else { throw APIError.forbidden }
        return company
    }
}
