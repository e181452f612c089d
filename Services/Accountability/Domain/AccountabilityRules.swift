import Foundation
import Models
import ServiceKit

/// One office's or team's accountability rules (SPEC section 4), inherited down the entity tree:
/// a team without rules of its own follows its office's.
struct AccountabilityRules: Codable, Sendable, Hashable {
    /// AC-1 … AC-3: the system calls the agent about each new lead with a phone.
    struct NewLeadCalls: Codable, Sendable, Hashable {
        var enabled: Bool
        /// 1 … 9 calls over the lead's first 3 days.
        var calls: Int
    }

    /// AC-4: checked daily; breaking either takes the agent out of rotation until the 1st.
    struct Rotation: Codable, Sendable, Hashable {
        var enabled: Bool
        /// An agent must log in at least every so many days (nil: not checked).
        var loginIntervalDays: Int?
        /// The least share of calls and tasks due over the last 30 days that must be completed (nil: not checked).
        var minCompletionPercent: Int?
    }

    /// AC-6: a showing request or question unanswered for more than `hours` e-mails the agent and admin.
    struct FollowUp: Codable, Sendable, Hashable {
        var enabled: Bool
        var hours: Int
    }

    var entityId: UUID
    var companyId: UUID
    var newLeadCalls: NewLeadCalls
    var rotation: Rotation
    var followUp: FollowUp
    /// Agents never held to these rules (never taken out of rotation, never e-mailed).
    var excludedAgentIds: [UUID]
    var version: Int
    /// When the rules were last changed: a login interval counts from then at the earliest, so
    /// turning the rule on does not punish days nobody was held to it.
    var updatedAt: Date
}

/// What an admin sends to set an entity's rules; every setting validated with its field named.
struct RulesInput: Decodable, Sendable {
    var newLeadCalls: AccountabilityRules.NewLeadCalls?
    var rotation: AccountabilityRules.Rotation?
    var followUp: AccountabilityRules.FollowUp?
    var excludedAgentIds: [UUID]?

    func validated(entityId: UUID, companyId: UUID, version: Int, now: Date) throws -> AccountabilityRules {
        let calls = newLeadCalls ?? .init(enabled: false, calls: 3)
        guard (1...9).contains(calls.calls) else { throw APIError.validation("newLeadCalls.calls", "newLeadCalls.calls is 1 to 9") }
        let rotation = rotation ?? .init(enabled: false, loginIntervalDays: nil, minCompletionPercent: nil)
        if let days = rotation.loginIntervalDays, !(1...90).contains(days) {
            throw APIError.validation("rotation.loginIntervalDays", "rotation.loginIntervalDays is 1 to 90 days")
        }
        if let percent = rotation.minCompletionPercent, !(0...100).contains(percent) {
            throw APIError.validation("rotation.minCompletionPercent", "rotation.minCompletionPercent is 0 to 100")
        }
        if rotation.enabled, rotation.loginIntervalDays == nil, rotation.minCompletionPercent == nil {
            throw APIError.validation("rotation", "an enabled rotation rule sets loginIntervalDays, minCompletionPercent or both")
        }
        let followUp = followUp ?? .init(enabled: false, hours: 24)
        guard (1...720).contains(followUp.hours) else { throw APIError.validation("followUp.hours", "followUp.hours is more than 0 and at most 720") }
        let excluded = excludedAgentIds ?? []
        guard excluded.count <= 500 else { throw APIError.validation("excludedAgentIds", "at most 500 excluded agents") }
        return AccountabilityRules(entityId: entityId, companyId: companyId, newLeadCalls: calls, rotation: rotation, followUp: followUp,
                                   excludedAgentIds: Array(Set(excluded)).sorted(), version: version, updatedAt: now)
    }
}

enum RuleInheritance {
    /// A company's rules by the entity they are set on.
    static func byEntity(_ rules: [AccountabilityRules]) -> [UUID: AccountabilityRules] {
        Dictionary(rules.map { ($0.entityId, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The rules that hold an agent: those of the nearest entity with rules, walking up from each
    /// of the agent's entities (a team's before its office's); the first of the agent's entities
    /// that finds any wins.
    static func effective(for agentEntities: [UUID], parents: [UUID: UUID], rules: [UUID: AccountabilityRules]) -> AccountabilityRules? {
        for start in agentEntities {
            var current: UUID? = start
            var seen: Set<UUID> = []
            while let id = current, seen.insert(id).inserted {
                if let found = rules[id] { return found }
                current = parents[id]
            }
        }
        return nil
    }
}
