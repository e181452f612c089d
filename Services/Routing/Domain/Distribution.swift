import Foundation
import Models

/// A user as routing decides on them, from the directory replica.
struct Agent: Sendable, Hashable {
    var id: UUID
    var firstName: String
    var lastName: String
    var role: Role
    var entityIds: [UUID]
    var active: Bool
    var inRotation: Bool
    var rotationUntil: Date?
    var prefersPush: Bool
    /// The agent's own lender (RT-6).
    var lenderId: UUID? = nil

    var name: String { "\(firstName) \(lastName)" }
    var holdsLeads: Bool { [.agent, .teamAdmin, .officeAdmin, .companyAdmin].contains(role) }

    /// RT-7. Out of rotation "until" a date means back in once that date has passed.
    func inRotation(at now: Date) -> Bool {
        guard active else { return false }
        if inRotation { return true }
        if let rotationUntil, rotationUntil <= now { return true }
        return false
    }
}

/// The recipients of one lead under one rule, in the order offers go out.
struct Pick: Sendable, Hashable {
    var order: [UUID]
    /// Round robin only: the rule's position after this lead.
    var nextPosition: Int?
}

enum Distributor {
    /// The rule's recipient list as agents, in list order: for "all agents" every user with the
    /// agent role in the entity (and the entities under it) by name, so joiners take part from
    /// their first lead; admins take leads only when a rule names them.
    static func candidates(_ recipients: RuleRecipients, members: [Agent]) -> [UUID] {
        switch recipients.kind {
        case .agents: recipients.agents?.map(\.agentId) ?? []
        case .allAgents: members.filter { $0.role == .agent }.sorted { ($0.lastName, $0.firstName, $0.id) < ($1.lastName, $1.firstName, $1.id) }.map(\.id)
        case .pond: []
        }
    }

    /// RT-8: the next recipient in list order from the persisted position, skipping whoever is
    /// not eligible; then the others after it, cycling. The position moves past the one picked.
    static func roundRobin(_ candidates: [UUID], eligible: Set<UUID>, position: Int) -> Pick? {
        guard !candidates.isEmpty else { return nil }
        let start = ((position % candidates.count) + candidates.count) % candidates.count
        for step in 0..<candidates.count {
            let index = (start + step) % candidates.count
            if eligible.contains(candidates[index]) {
                let rotated = (0..<candidates.count).map { candidates[(index + $0) % candidates.count] }.filter(eligible.contains)
                return Pick(order: rotated, nextPosition: position + step + 1)
            }
        }
        return nil
    }

    /// RT-9: one recipient drawn with the weights' odds among the eligible (their weights keep
    /// their proportions), then the others in list order. `unit` is a uniform draw in [0, 1).
    static func weighted(_ agents: [RecipientAgent], eligible: Set<UUID>, unit: Double) -> Pick? {
        let pool = agents.filter { eligible.contains($0.agentId) && ($0.weight ?? 0) > 0 }
        let total = pool.reduce(0) { $0 + ($1.weight ?? 0) }
        guard total > 0 else { return nil }
        var mark = min(max(unit, 0), 0.999_999_999) * Double(total)
        var chosen = pool[pool.count - 1].agentId
        for agent in pool {
            mark -= Double(agent.weight ?? 0)
            if mark < 0 {
                chosen = agent.agentId
                break
            }
        }
        let rest = agents.map(\.agentId).filter { $0 != chosen && eligible.contains($0) }
        return Pick(order: [chosen] + rest, nextPosition: nil)
    }

    /// RT-10: everyone at once; order is only the list's.
    static func blast(_ candidates: [UUID], eligible: Set<UUID>) -> Pick? {
        let order = candidates.filter(eligible.contains)
        return order.isEmpty ? nil : Pick(order: order, nextPosition: nil)
    }

    /// RT-11, RT-12: how an agent hears of a lead. Outside office hours only e-mail; push
    /// instead of text for agents who prefer it.
    static func channels(_ wanted: [DeliveryChannel], prefersPush: Bool, officeOpen: Bool) -> [DeliveryChannel] {
        guard officeOpen else { return [.email] }
        var result: [DeliveryChannel] = []
        for channel in wanted {
            let actual: DeliveryChannel = channel == .text && prefersPush ? .push : channel
            if !result.contains(actual) { result.append(actual) }
        }
        return result
    }
}
