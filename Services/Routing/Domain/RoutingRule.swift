import Foundation
import Models

/// How a routing notification reaches an agent (RT-11).
enum DeliveryChannel: String, WireEnum {
    case call, text, email, push
}

/// RT-8 … RT-10.
enum Distribution: String, WireEnum {
    case roundRobin = "round_robin"
    case weighted
    case blast
}

/// RT-4: every criterion is optional; an empty rule matches every lead.
struct RuleCriteria: Codable, Sendable, Hashable {
    var sources: [String]?
    var hashtags: [String]?
    var leadTypes: [LeadType]?
    var propertyTypes: [String]?
    var areas: [String]?
    var mls: [String]?
    var priceMin: Int?
    var priceMax: Int?

    var isEmpty: Bool {
        [sources, hashtags, propertyTypes, areas, mls].allSatisfy { $0?.isEmpty ?? true } && (leadTypes?.isEmpty ?? true)
            && priceMin == nil && priceMax == nil
    }
}

struct RecipientAgent: Codable, Sendable, Hashable {
    var agentId: UUID
    /// Percent, for weighted distribution only (RT-9).
    var weight: Int?
}

/// RT-6: who a rule's leads go to.
struct RuleRecipients: Codable, Sendable, Hashable {
    enum Kind: String, WireEnum {
        case agents
        /// Every agent of the rule's entity at the time of each lead, later joiners included.
        case allAgents = "all_agents"
        case pond
    }
    var kind: Kind
    var agents: [RecipientAgent]?
    var pondId: UUID?

    static let allOfEntity = RuleRecipients(kind: .allAgents, agents: nil, pondId: nil)
}

/// RT-13, RT-14: offers that wait for an answer, and who gets the lead when nobody answers.
struct AcceptanceSettings: Codable, Sendable, Hashable {
    /// How long each agent has before the offer moves on.
    var windowMinutes: Int
    /// How long until the timeout agent gets the lead without acceptance.
    var timeoutMinutes: Int
    var timeoutAgentId: UUID
}

struct RoutingRule: Codable, Sendable, Hashable {
    var id: UUID
    var companyId: UUID
    var entityId: UUID
    var name: String
    /// Order within the entity; the default rule is always last whatever its number.
    var position: Int
    var isDefault: Bool
    var criteria: RuleCriteria
    var recipients: RuleRecipients
    var distribution: Distribution
    var channels: [DeliveryChannel]
    var acceptance: AcceptanceSettings?
    var lenderId: UUID?
    var version: Int
    var createdAt: Date
    var updatedAt: Date

    /// RT-2: round robin through all agents of the entity, every lead, always last.
    static func defaultRule(companyId: UUID, entityId: UUID, now: Date) -> RoutingRule {
        RoutingRule(id: UUID.random(), companyId: companyId, entityId: entityId, name: "Default: round robin through all agents", position: Int(Int32.max),
                    isDefault: true, criteria: RuleCriteria(), recipients: .allOfEntity, distribution: .roundRobin,
                    channels: [.text, .email, .push], acceptance: nil, lenderId: nil, version: 1, createdAt: now, updatedAt: now)
    }
}

/// Company-wide routing settings (RT-18, RT-19).
struct RoutingSettings: Codable, Sendable, Hashable {
    var bypassListingAgent: Bool
    /// Minutes the listing agent has to accept; nil: the listing agent is assigned at once.
    var listingAgentTimeoutMinutes: Int?

    static let standard = RoutingSettings(bypassListingAgent: false, listingAgentTimeoutMinutes: nil)
    /// RT-19's choices: 5 m, 15 m, 30 m, 1 h, 2 h, 4 h, 8 h, 24 h, 48 h.
    static let listingTimeouts = [5, 15, 30, 60, 120, 240, 480, 1440, 2880]
}
