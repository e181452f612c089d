import Foundation
import Models

/// AC-7: each agent's figures over a date range, and their sum for the entity.
struct AgentFigures: Codable, Sendable, Hashable {
    var agentId: UUID
    var agentName: String
    /// Outbound calls the agent logged (a completed call task logs one too).
    var callsMade: Int
    /// Call tasks that came due in the range and were not completed by their due time.
    var callsMissed: Int
    var tasksDue: Int
    var tasksCompleted: Int
    var violations: Int
    /// New leads assigned to the agent in the range, and how many the agent has reached out to.
    var newLeads: Int
    var leadsContacted: Int
    /// Minutes from a lead's creation to the agent's first outbound call, text or e-mail.
    var firstContactMedianMinutes: Double?
    var firstContactP90Minutes: Double?
}

/// What the store reads for one agent, before it is summed up.
struct AgentActivity: Sendable, Hashable {
    /// Tasks and call tasks due in the range, counted by kind and by how they were completed (a
    /// year of an office's tasks is summed by the database, not read row by row).
    struct Tasks: Sendable, Hashable {
        var isCall: Bool
        var completed: Bool
        /// Completed by its due time.
        var inTime: Bool
        var count: Int
    }
    var agentId: UUID
    var agentName: String
    var callsMade: Int
    var tasks: [Tasks]
    var violations: Int
    /// Each new lead's minutes to first contact, nil while not contacted.
    var firstContactMinutes: [Double?]
}

enum Analytics {
    static func figures(_ activity: AgentActivity, from: Date, to: Date) -> AgentFigures {
        let due = activity.tasks
        let contacted = activity.firstContactMinutes.compactMap { $0 }.sorted()
        func sum(_ tasks: [AgentActivity.Tasks]) -> Int { tasks.map(\.count).reduce(0, +) }
        return AgentFigures(
            agentId: activity.agentId, agentName: activity.agentName, callsMade: activity.callsMade,
            // A call task not done by its due time is missed, done late or not at all.
            callsMissed: sum(due.filter { $0.isCall && !($0.completed && $0.inTime) }),
            tasksDue: sum(due), tasksCompleted: sum(due.filter(\.completed)), violations: activity.violations,
            newLeads: activity.firstContactMinutes.count, leadsContacted: contacted.count,
            firstContactMedianMinutes: percentile(contacted, 0.5), firstContactP90Minutes: percentile(contacted, 0.9))
    }

    /// The entity's row: counts summed; the percentiles over every agent's leads together.
    static func total(_ activities: [AgentActivity], entityName: String, from: Date, to: Date) -> AgentFigures {
        let rows = activities.map { figures($0, from: from, to: to) }
        let contacted = activities.flatMap { $0.firstContactMinutes.compactMap { $0 } }.sorted()
        return AgentFigures(agentId: UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), agentName: entityName,
                            callsMade: rows.map(\.callsMade).reduce(0, +), callsMissed: rows.map(\.callsMissed).reduce(0, +),
                            tasksDue: rows.map(\.tasksDue).reduce(0, +), tasksCompleted: rows.map(\.tasksCompleted).reduce(0, +),
                            violations: rows.map(\.violations).reduce(0, +), newLeads: rows.map(\.newLeads).reduce(0, +),
                            leadsContacted: contacted.count, firstContactMedianMinutes: percentile(contacted, 0.5),
                            firstContactP90Minutes: percentile(contacted, 0.9))
    }

    /// The nearest-rank percentile of sorted values; nil for none.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    /// The same rows for a spreadsheet: a header, one line per agent, the total last; text
    /// quoted when it holds a comma, a quote or a line break, and never read as a formula.
    static func csv(_ rows: [AgentFigures], total: AgentFigures) -> String {
        var lines = ["Agent,Calls made,Calls missed,Tasks due,Tasks completed,Violations,New leads,Leads contacted,"
                     + "First contact median (min),First contact 90th percentile (min)"]
        for row in rows + [total] {
            let fields = [quote(row.agentName), "\(row.callsMade)", "\(row.callsMissed)", "\(row.tasksDue)", "\(row.tasksCompleted)",
                          "\(row.violations)", "\(row.newLeads)", "\(row.leadsContacted)",
                          row.firstContactMedianMinutes.map { String(format: "%.1f", $0) } ?? "",
                          row.firstContactP90Minutes.map { String(format: "%.1f", $0) } ?? ""]
            lines.append(fields.joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func quote(_ text: String) -> String {
        var safe = text
        if let first = safe.first, "=+-@\t\r".contains(first) { safe = "'" + safe }
        guard safe.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return safe }
        return "\"" + safe.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
