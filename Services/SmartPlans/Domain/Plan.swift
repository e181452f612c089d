import Foundation
import Models
import ServiceKit

/// SP-1, SP-2: a plan and its steps, as the API takes and gives them.
struct PlanStep: Codable, Sendable, Hashable {
    enum Kind: String, WireEnum {
        case task, call, email, text, delay
        case addToPlan = "add_to_plan"
        case restart
    }

    /// Kept across versions: an enrolled contact continues from the step with its id (SP-10).
    var id: UUID?
    var kind: Kind
    /// text: `automated` (sent through notifications; the default) or `task` (a text task: the
    /// agent is given a task to send it, SP-1).
    enum TextMode: String, WireEnum { case automated, task }
    var mode: TextMode?
    /// task, call, text task: what the task says, its description and priority.
    var title: String?
    var description: String?
    var priority: ContactTask.Priority?
    /// email.
    var subject: String?
    /// email, text; a text's `bodies` give a different message each repetition (dynamic).
    var body: String?
    var bodies: [String]?
    /// email: an HTML e-mail, copied from a saved design (`designId`) when the plan is saved and
    /// editable in the plan from then on; `body`, when given, is its plain-text alternative.
    var designId: UUID?
    var html: String?
    /// task, call, text task: due this many days after it is made. delay: days and hours.
    var days: Int?
    var hours: Int?
    /// add_to_plan.
    var planId: UUID?
    /// restart: 1–6 more runs; absent, unlimited (until the plan's duration ends).
    var times: Int?
    /// SP-2: in a team plan, whose step it is (the team's default agent for the role).
    var role: String?
}

/// SP-8, SP-9: what enrolls a contact by itself. A tag trigger fires when the tag is newly added
/// (a contact created or imported with it, or tagged later; one that had it is not enrolled, and
/// removing it does not unenroll); a status trigger when a contact's status becomes one of
/// `statusBecomes`, or changes to anything but one of `statusIsNot`'s.
struct PlanTriggers: Codable, Sendable, Hashable {
    var tags: [String]?
    var statusBecomes: [ContactStatus]?
    var statusIsNot: [ContactStatus]?

    static let maxTags = 10

    func validate() throws {
        let tags = tags ?? []
        guard tags.count <= Self.maxTags else { throw APIError.validation("triggers.tags", "a plan has at most \(Self.maxTags) tag triggers") }
        for (index, tag) in tags.enumerated() {
            let trimmed = tag.trimmingCharacters(in: .whitespacesAndNewlines)
            guard (1...50).contains(trimmed.count) else { throw APIError.validation("triggers.tags[\(index)]", "a tag is 1 to 50 characters") }
        }
    }

    /// Whether a contact's change enrolls it: the tags it just gained, its status now and before
    /// (nil before: the contact is new).
    func matches(tagsAdded: [String], status: ContactStatus, statusBefore: ContactStatus?, created: Bool) -> Bool {
        let wanted = Set((tags ?? []).map { $0.lowercased() })
        if tagsAdded.contains(where: { wanted.contains($0.lowercased()) }) { return true }
        guard created || (statusBefore != nil && statusBefore != status) else { return false }
        if statusBecomes?.contains(status) == true { return true }
        if let excluded = statusIsNot, !excluded.isEmpty, !excluded.contains(status) { return true }
        return false
    }

    /// SP-8: the triggers after a tag is renamed (or deleted, with nil) in the company's
    /// settings; nil when no trigger names it.
    func replacingTag(_ tag: String, with name: String?) -> PlanTriggers? {
        guard let tags, tags.contains(where: { $0.lowercased() == tag.lowercased() }) else { return nil }
        var result: [String] = []
        for each in tags {
            let kept = each.lowercased() == tag.lowercased() ? name : each
            if let kept, !result.contains(where: { $0.lowercased() == kept.lowercased() }) { result.append(kept) }
        }
        var changed = self
        changed.tags = result.isEmpty ? nil : result
        return changed
    }

    var isEmpty: Bool { (tags ?? []).isEmpty && (statusBecomes ?? []).isEmpty && (statusIsNot ?? []).isEmpty }
}

struct Plan: Codable, Sendable, Hashable {
    enum Owner: String, WireEnum { case personal, team }

    var id: UUID
    var companyId: UUID
    var owner: Owner
    /// personal: the agent; team: the team (entity) and its default agent per role.
    var ownerUserId: UUID?
    var entityId: UUID?
    var roles: [String: UUID]?
    var name: String
    /// SP-1: one day to one year from a contact's enrollment.
    var durationDays: Int
    var active: Bool
    var version: Int
    var steps: [PlanStep]
    var triggers: PlanTriggers?
    var createdAt: Date
    var updatedAt: Date

    /// SP-2: the team's default agent for the role that owns a step, if one does.
    func roleAgent(ofStep index: Int) -> UUID? {
        steps[index].role.flatMap { roles?[$0] }
    }

    /// What a step's text is rendered with: a step its role owns speaks as the role's agent (the
    /// `{agent.*}` fields are theirs), any other as the contact's agent — when it runs and in the preview.
    func values(forStep index: Int, contact: MergeValues, agents: [UUID: MergeValues.AgentFacts]) -> MergeValues {
        guard let agent = roleAgent(ofStep: index).flatMap({ agents[$0] }) else { return contact }
        return contact.with(agent: agent)
    }
}

enum PlanRules {
    static let maxSteps = 100

    /// Every problem names the field (`steps[2].body`); an unknown merge field is SP-4's 422.
    static func validate(name: String, durationDays: Int, steps: [PlanStep], owner: Plan.Owner, roles: [String: UUID]?) throws {
        guard (1...100).contains(name.trimmingCharacters(in: .whitespacesAndNewlines).count) else { throw APIError.validation("name", "name is 1 to 100 characters") }
        guard (1...365).contains(durationDays) else { throw APIError.validation("durationDays", "a plan lasts 1 to 365 days") }
        guard !steps.isEmpty, steps.count <= maxSteps else { throw APIError.validation("steps", "a plan has 1 to \(maxSteps) steps") }
        var delayed = false
        for (index, step) in steps.enumerated() {
            let field = "steps[\(index)]"
            func text(_ value: String?, _ name: String, limit: Int) throws {
                guard let value, !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                    throw APIError.validation("\(field).\(name)", "a \(step.kind.rawValue) step needs its \(name)")
                }
                guard value.count <= limit else { throw APIError.validation("\(field).\(name)", "\(name) is at most \(limit) characters") }
                _ = try TemplatePreviewController.parse(value, field: "\(field).\(name)")
            }
            func task() throws {
                try text(step.title, "title", limit: 200)
                guard let days = step.days, (0...365).contains(days) else { throw APIError.validation("\(field).days", "a task is due 0 to 365 days after it is made") }
                if let description = step.description { try text(description, "description", limit: 5_000) }
            }
            switch step.kind {
            case .task, .call:
                try task()
            case .text where step.mode == .task:
                try task()
                if let body = step.body { try text(body, "body", limit: 1_600) }
            case .email:
                try text(step.subject, "subject", limit: 200)
                if let html = step.html {
                    try text(html, "html", limit: 500_000)
                    if let body = step.body { try text(body, "body", limit: 100_000) }
                } else {
                    try text(step.body, "body", limit: 100_000)
                }
            case .text:
                if let bodies = step.bodies {
                    guard !bodies.isEmpty, bodies.count <= 20 else { throw APIError.validation("\(field).bodies", "a dynamic text has 1 to 20 messages") }
                    for (number, body) in bodies.enumerated() { try text(body, "bodies[\(number)]", limit: 1_600) }
                } else {
                    try text(step.body, "body", limit: 1_600)
                }
            case .delay:
                let days = step.days ?? 0, hours = step.hours ?? 0
                guard (0...365).contains(days), (0...23).contains(hours), days + hours > 0 else {
                    throw APIError.validation("\(field).days", "a delay is 1 hour to 365 days (days 0–365, hours 0–23)")
                }
                delayed = true
            case .addToPlan:
                guard step.planId != nil else { throw APIError.validation("\(field).planId", "an add_to_plan step names the plan") }
            case .restart:
                if let times = step.times, !(1...6).contains(times) { throw APIError.validation("\(field).times", "a restart repeats 1 to 6 times, or without times for ever") }
                // Without a delay before it, a restart would run the plan again at once, for ever.
                guard delayed else { throw APIError.validation("\(field).kind", "a restart needs a delay step before it") }
            }
            if let role = step.role {
                guard owner == .team else { throw APIError.validation("\(field).role", "only a team plan gives steps roles") }
                guard roles?[role] != nil else { throw APIError.validation("\(field).role", "the team names no default agent for the role \(role)") }
            }
        }
    }
}
