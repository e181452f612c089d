import Foundation
import Models

/// What AC-4 measured of one agent, and what it decided.
struct RotationFigures: Codable, Sendable, Hashable {
    enum Rule: String, Codable, Sendable {
        case loginInterval = "login_interval"
        case completion
    }
    var rule: Rule
    /// The rule's threshold: days between logins, or the least percent completed.
    var threshold: Int
    /// The agent's own figure: days since the last login (or since the rule began), or the percent completed.
    var measured: Int
    /// For completion: tasks and call tasks due in the window and how many of them were completed.
    var due: Int?
    var completed: Int?
    var windowStart: Date
    var windowEnd: Date
    /// The sentence the agent and admins read.
    var summary: String
}

/// AC-4 for one agent at one check, without a database.
enum RotationCheck {
    struct Task: Sendable, Hashable {
        var dueAt: Date
        var completedAt: Date?
    }

    static let window: TimeInterval = 30 * 86_400

    /// The broken rules, login first; empty when the agent keeps both (or the rule is off, or
    /// the agent is excluded). `judgedFrom`: when an admin last put the agent back (AC-5), from
    /// which they are judged afresh, so yesterday's figures do not take them out again tomorrow.
    static func evaluate(agentId: UUID, rules: AccountabilityRules, lastLogin: Date?, tasks: [Task], now: Date,
                         judgedFrom: Date? = nil) -> [RotationFigures] {
        guard rules.rotation.enabled, !rules.excludedAgentIds.contains(agentId) else { return [] }
        var broken: [RotationFigures] = []
        let fresh = max(rules.updatedAt, judgedFrom ?? .distantPast)
        if let interval = rules.rotation.loginIntervalDays {
            // Counted from the rule's start (or the reinstatement) at the earliest: nobody is out for
            // days before it held them.
            let since = max(lastLogin ?? fresh, fresh)
            let days = Int(now.timeIntervalSince(since) / 86_400)
            if days >= interval {
                let last = (lastLogin ?? .distantPast) >= fresh ? "last logged in \(days) days ago" : "has not logged in for \(days) days"
                broken.append(RotationFigures(rule: .loginInterval, threshold: interval, measured: days, windowStart: since, windowEnd: now,
                                              summary: "Minimum login interval is \(interval) day\(interval == 1 ? "" : "s"); the agent \(last)."))
            }
        }
        if let minimum = rules.rotation.minCompletionPercent {
            let start = max(now.addingTimeInterval(-window), judgedFrom ?? .distantPast)
            let due = tasks.filter { $0.dueAt >= start && $0.dueAt <= now }
            let completed = due.filter { $0.completedAt != nil }.count
            if !due.isEmpty {
                let percent = Int((Double(completed) * 100 / Double(due.count)).rounded(.down))
                if percent < minimum {
                    broken.append(RotationFigures(rule: .completion, threshold: minimum, measured: percent, due: due.count, completed: completed,
                                                  windowStart: start, windowEnd: now,
                                                  summary: "At least \(minimum)% of calls and tasks due in the last 30 days must be completed; "
                                                      + "the agent completed \(completed) of \(due.count) (\(percent)%)."))
                }
            }
        }
        return broken
    }

    /// AC-4: out of rotation until 00:00 on the first day of the next month, in the entity's zone.
    static func firstOfNextMonth(after now: Date, in zone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = calendar.dateComponents([.year, .month], from: now)
        let thisMonth = calendar.date(from: DateComponents(year: parts.year, month: parts.month, day: 1)) ?? now
        return calendar.date(byAdding: .month, value: 1, to: thisMonth) ?? now.addingTimeInterval(31 * 86_400)
    }
}
