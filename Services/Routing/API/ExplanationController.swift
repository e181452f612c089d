import Foundation
import Hummingbird
import Models
import ServiceKit

/// `GET /v1/leads/{contactId}/routing` (RT-20): why the lead went where it went, in words and as data.
struct ExplanationController {
    let store: RoutingStore

    struct Event: Codable, Sendable {
        var at: Date
        var round: Int
        var kind: RoutingLogEntry.Kind
        var agentId: UUID?
        var agentName: String?
        var offerId: UUID?
        var channel: DeliveryChannel?
        var messageId: UUID?
        var summary: String
    }

    struct Explanation: ResponseEncodable {
        var contactId: UUID
        var state: RoutingState
        var round: Int
        var summary: String
        var entityId: UUID
        var ruleId: UUID?
        var ruleName: String?
        var assignedAgentId: UUID?
        var assignedAgentName: String?
        var timeoutAgentId: UUID?
        var timeoutAt: Date?
        /// Every rule looked at in the last round, in order, criterion by criterion.
        var rules: [RuleOutcome]
        var offers: [Offer]
        var history: [Event]
    }

    func register(on group: RouterGroup<AppContext>) {
        group.get("/v1/leads/{contactId}/routing") { _, context -> Explanation in
            let identity = try context.requireIdentity()
            let contactId = try context.pathID("contactId")
            return try await store.client.withConnection { connection in
                guard let routing = try await store.routing(contactId, on: connection) else { throw APIError.notFound("routing of lead \(contactId)") }
                if !identity.isService {
                    guard identity.companyId == routing.companyId else { throw APIError.notFound("routing of lead \(contactId)") }
                    if identity.role.isAdmin {
                        do {
                            try await RoutingAccess.manage(routing.entityId, identity, store: store, on: connection)
                        } catch {
                            throw APIError.notFound("routing of lead \(contactId)")
                        }
                    } else {
                        // Agents see the routing of the leads they hold.
                        guard identity.userId != nil, identity.userId == routing.assignedAgentId else { throw APIError.notFound("routing of lead \(contactId)") }
                    }
                }
                let names = Dictionary(try await store.agents(companyId: routing.companyId, on: connection).map { ($0.id, $0.name) },
                                       uniquingKeysWith: { first, _ in first })
                let history = try await store.log(contactId: contactId, on: connection).map {
                    Event(at: $0.at, round: $0.round, kind: $0.kind, agentId: $0.agentId, agentName: $0.agentId.flatMap { names[$0] }, offerId: $0.offerId,
                          channel: $0.channel, messageId: $0.messageId, summary: $0.summary)
                }
                return Explanation(contactId: contactId, state: routing.state, round: routing.round, summary: routing.summary, entityId: routing.entityId,
                                   ruleId: routing.ruleId, ruleName: routing.ruleName, assignedAgentId: routing.assignedAgentId,
                                   assignedAgentName: routing.assignedAgentId.flatMap { names[$0] }, timeoutAgentId: routing.timeoutAgentId,
                                   timeoutAt: routing.timeoutAt, rules: routing.rules,
                                   offers: try await store.offers(contactId: contactId, on: connection), history: history)
            }
        }
    }
}
