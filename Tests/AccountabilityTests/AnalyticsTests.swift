import Foundation
import Models
import Testing
@testable import Accountability

/// AC-7's figures as pure functions.
@Suite("Accountability analytics (AC-7)")
struct AnalyticsTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static func at(_ hours: Double) -> Date { t0.addingTimeInterval(hours * 3600) }

    @Test("AC-7: tasks due and completed in the range, call tasks not done by their due time missed, time to first contact's median and 90th percentile")
    func figures() {
        let activity = AgentActivity(
            agentId: UUID(), agentName: "Ann Doe", callsMade: 4,
            // Due in the range: a call done in time, one done late, one not done; a task not done.
            tasks: [.init(isCall: true, completed: true, inTime: true, count: 1), .init(isCall: true, completed: true, inTime: false, count: 1),
                    .init(isCall: true, completed: false, inTime: false, count: 1), .init(isCall: false, completed: false, inTime: false, count: 1)],
            violations: 1, firstContactMinutes: [5, 1, nil, 30, 2, 8, 3, 4, 6, 7, 60])
        let row = Analytics.figures(activity, from: Self.t0, to: Self.at(24))
        #expect(row.tasksDue == 4 && row.tasksCompleted == 2 && row.callsMissed == 2, "completed late or not at all")
        #expect(row.newLeads == 11 && row.leadsContacted == 10)
        #expect(row.firstContactMedianMinutes == 5 && row.firstContactP90Minutes == 30)
        let total = Analytics.total([activity, activity], entityName: "North", from: Self.t0, to: Self.at(24))
        #expect(total.tasksDue == 8 && total.callsMade == 8 && total.violations == 2 && total.firstContactMedianMinutes == 5)
        #expect(Analytics.percentile([], 0.5) == nil)
    }

    @Test("AC-7: the CSV has a header, a row per agent and the total, quotes what needs it and is never read as a formula")
    func csv() {
        let row = AgentFigures(agentId: UUID(), agentName: "=HYPERLINK(\"x\"), Bob", callsMade: 1, callsMissed: 0, tasksDue: 2, tasksCompleted: 1,
                               violations: 0, newLeads: 1, leadsContacted: 1, firstContactMedianMinutes: 2.5, firstContactP90Minutes: 2.5)
        let lines = Analytics.csv([row], total: row).split(separator: "\r\n").map(String.init)
        #expect(lines.count == 3 && lines[0].hasPrefix("Agent,Calls made,Calls missed"))
        #expect(lines[1].hasPrefix("\"'=HYPERLINK(\"\"x\"\"), Bob\",1,0,2,1,0,1,1,2.5,2.5"), "\(lines[1])")
    }
}
