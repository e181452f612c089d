import Foundation
import Models
import ServiceKit

/// The checks a rule must pass, with the field at fault (RT-4, RT-6, RT-9, RT-14).
enum RuleValidation {
    /// What the checks need to know of the company: its agents and lenders by id, and how
    /// many agents the entity has (for "all agents" recipients).
    struct Directory: Sendable {
        var agents: [UUID: Agent]
        var lenders: Set<UUID>
        var entityAgentCount: Int
        /// The company's ponds, asked of contacts only when a rule sends leads to one.
        var ponds: Set<UUID> = []
    }

    static func validate(_ rule: RoutingRule, directory: Directory) throws -> RoutingRule {
        var rule = rule
        rule.name = rule.name.trimmedWhitespace()
        guard (1...100).contains(rule.name.count) else { throw APIError.validation("name", "name must be 1 to 100 characters") }
        rule.criteria = try criteria(rule.criteria)
        if rule.isDefault {
            guard rule.criteria.isEmpty else { throw APIError.validation("criteria", "the default rule takes every lead: it has no criteria") }
            guard rule.recipients == .allOfEntity, rule.distribution == .roundRobin else {
                throw APIError.validation("recipients", "the default rule is round robin through all agents of the entity")
            }
        }
        try recipients(rule.recipients, distribution: rule.distribution, directory: directory)
        guard !rule.channels.isEmpty else { throw APIError.validation("channels", "give at least one of call, text, email, push") }
        guard Set(rule.channels).count == rule.channels.count else { throw APIError.validation("channels", "a channel is listed twice") }
        if let acceptance = rule.acceptance {
            guard rule.recipients.kind != .pond else {
                throw APIError.validation("acceptance", "leads routed to a pond are not offered: turn acceptance off")
            }
            guard (1...1440).contains(acceptance.windowMinutes) else {
                throw APIError.validation("acceptance.windowMinutes", "windowMinutes must be 1 to 1440")
            }
            guard (1...10_080).contains(acceptance.timeoutMinutes) else {
                throw APIError.validation("acceptance.timeoutMinutes", "timeoutMinutes must be 1 to 10080")
            }
            guard let agent = directory.agents[acceptance.timeoutAgentId], agent.active, agent.holdsLeads else {
                throw APIError.validation("acceptance.timeoutAgentId", "timeoutAgentId names no active agent of this company")
            }
            // RT-14: time enough for every recipient's window.
            let count = rule.recipients.kind == .agents ? (rule.recipients.agents?.count ?? 0) : directory.entityAgentCount
            let needed = max(count, 1) * acceptance.windowMinutes
            guard acceptance.timeoutMinutes >= needed else {
                throw APIError.validation("acceptance.timeoutMinutes",
                                          "the timeout must be at least recipients × window: \(max(count, 1)) × \(acceptance.windowMinutes) = \(needed) minutes")
            }
        }
        if let lender = rule.lenderId, !directory.lenders.contains(lender) {
            throw APIError.validation("lenderId", "lenderId names no active lender of this company")
        }
        return rule
    }

    private static func recipients(_ recipients: RuleRecipients, distribution: Distribution, directory: Directory) throws {
        switch recipients.kind {
        case .agents:
            guard let agents = recipients.agents, (1...200).contains(agents.count) else {
                throw APIError.validation("recipients.agents", "list 1 to 200 agents")
            }
            guard recipients.pondId == nil else { throw APIError.validation("recipients.pondId", "a pond is only for recipients of kind pond") }
            var seen = Set<UUID>()
            for (index, entry) in agents.enumerated() {
                guard let agent = directory.agents[entry.agentId], agent.active, agent.holdsLeads else {
                    throw APIError.validation("recipients.agents[\(index)].agentId", "names no active agent of this company")
                }
                guard seen.insert(entry.agentId).inserted else {
                    throw APIError.validation("recipients.agents[\(index)].agentId", "the agent is listed twice")
                }
                if distribution == .weighted {
                    guard let weight = entry.weight, (1...100).contains(weight) else {
                        throw APIError.validation("recipients.agents[\(index)].weight", "each weight is a percentage from 1 to 100")
                    }
                } else if entry.weight != nil {
                    throw APIError.validation("recipients.agents[\(index)].weight", "weights are only for weighted distribution")
                }
            }
            if distribution == .weighted {
                let total = agents.reduce(0) { $0 + ($1.weight ?? 0) }
                guard total == 100 else { throw APIError.validation("recipients.agents", "weights must sum to exactly 100 (they sum to \(total))") }
            }
        case .allAgents:
            guard recipients.agents == nil, recipients.pondId == nil else {
                throw APIError.validation("recipients", "all_agents takes no agent list and no pond")
            }
            guard distribution != .weighted else { throw APIError.validation("distribution", "weighted distribution needs a list of agents with weights") }
        case .pond:
            guard let pond = recipients.pondId, recipients.agents == nil else { throw APIError.validation("recipients.pondId", "give the pond's id") }
            guard directory.ponds.contains(pond) else { throw APIError.validation("recipients.pondId", "pondId names no pond of this company") }
            guard distribution == .roundRobin else { throw APIError.validation("distribution", "a pond takes leads as they come: use round_robin") }
        }
    }

    private static func criteria(_ criteria: RuleCriteria) throws -> RuleCriteria {
        var clean = criteria
        func texts(_ values: [String]?, _ field: String) throws -> [String]? {
            guard let values else { return nil }
            guard values.count <= 100 else { throw APIError.validation("criteria.\(field)", "at most 100 values") }
            return try values.enumerated().map { index, value in
                let text = value.trimmedWhitespace()
                guard (1...100).contains(text.count) else { throw APIError.validation("criteria.\(field)[\(index)]", "each value is 1 to 100 characters") }
                return text
            }
        }
        clean.sources = try texts(criteria.sources, "sources")
        clean.hashtags = try texts(criteria.hashtags, "hashtags")
        clean.propertyTypes = try texts(criteria.propertyTypes, "propertyTypes")
        clean.areas = try texts(criteria.areas, "areas")
        clean.mls = try texts(criteria.mls, "mls")
        if let types = criteria.leadTypes, types.count > 10 { throw APIError.validation("criteria.leadTypes", "at most 10 lead types") }
        if let low = criteria.priceMin, low < 0 { throw APIError.validation("criteria.priceMin", "priceMin cannot be negative") }
        if let high = criteria.priceMax, high < 0 { throw APIError.validation("criteria.priceMax", "priceMax cannot be negative") }
        if let low = criteria.priceMin, let high = criteria.priceMax, low > high {
            throw APIError.validation("criteria.priceMax", "priceMax must be at least priceMin")
        }
        return clean
    }
}
