import Foundation
import Models
import ServiceKit
import Testing
@testable import Accountability

/// AC-4, AC-5 as pure functions: the daily check of one agent, the month boundary, inheritance
/// and the rules' validation.
@Suite("Accountability rules (AC-4, AC-5)")
struct RotationCheckTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)
    static let agent = UUID()

    static func rules(login: Int? = 7, percent: Int? = 50, excluded: [UUID] = [], enabled: Bool = true) -> AccountabilityRules {
        AccountabilityRules(entityId: UUID(), companyId: UUID(), newLeadCalls: .init(enabled: false, calls: 3),
                            rotation: .init(enabled: enabled, loginIntervalDays: login, minCompletionPercent: percent),
                            followUp: .init(enabled: false, hours: 24), excludedAgentIds: excluded, version: 1, updatedAt: start)
    }

    static func day(_ n: Double) -> Date { start.addingTimeInterval(n * 86_400) }

    @Test("AC-4: a login interval is broken after that many days since the last login, counted from the rule's start at the earliest; the figure names the days")
    func loginInterval() throws {
        let rules = Self.rules(percent: nil)
        #expect(RotationCheck.evaluate(agentId: Self.agent, rules: rules, lastLogin: Self.day(2), tasks: [], now: Self.day(8.5)).isEmpty, "6 days")
        let broken = try #require(RotationCheck.evaluate(agentId: Self.agent, rules: rules, lastLogin: Self.day(1), tasks: [], now: Self.day(8.5)).first)
        #expect(broken.rule == .loginInterval && broken.threshold == 7 && broken.measured == 7)
        #expect(broken.summary == "Minimum login interval is 7 days; the agent last logged in 7 days ago.")
        let never = try #require(RotationCheck.evaluate(agentId: Self.agent, rules: rules, lastLogin: nil, tasks: [], now: Self.day(7)).first)
        #expect(never.measured == 7 && never.summary.hasSuffix("has not logged in for 7 days."), "counted from the rule's start")
        #expect(RotationCheck.evaluate(agentId: Self.agent, rules: rules, lastLogin: Self.day(-30), tasks: [], now: Self.day(6.9)).isEmpty,
                "days before the rule held nobody")
    }

    @Test("AC-4: the share of calls and tasks due in the last 30 days that were completed; none due breaks nothing; tasks due before the window or in the future do not count")
    func completion() throws {
        let rules = Self.rules(login: nil)
        let now = Self.day(40)
        let tasks = [RotationCheck.Task(dueAt: Self.day(20), completedAt: Self.day(21)), .init(dueAt: Self.day(25), completedAt: nil),
                     .init(dueAt: Self.day(30), completedAt: nil), .init(dueAt: Self.day(39), completedAt: nil),
                     .init(dueAt: Self.day(5), completedAt: nil), .init(dueAt: Self.day(41), completedAt: nil)]
        let broken = try #require(RotationCheck.evaluate(agentId: Self.agent, rules: rules, lastLogin: nil, tasks: tasks, now: now).first)
        #expect(broken.rule == .completion && broken.due == 4 && broken.completed == 1 && broken.measured == 25 && broken.threshold == 50)
        #expect(broken.summary.contains("completed 1 of 4 (25%)"))
        #expect(RotationCheck.evaluate(agentId: Self.agent, rules: rules, lastLogin: nil, tasks: [], now: now).isEmpty)
        let kept = tasks.map { RotationCheck.Task(dueAt: $0.dueAt, completedAt: $0.dueAt) }
        #expect(RotationCheck.evaluate(agentId: Self.agent, rules: rules, lastLogin: nil, tasks: kept, now: now).isEmpty)
    }

    @Test("AC-4, AC-5: an excluded agent and a disabled rule break nothing; after an admin puts an agent back they are judged from then")
    func exclusionsAndReinstatement() {
        let late = [RotationCheck.Task(dueAt: Self.day(9), completedAt: nil)]
        #expect(RotationCheck.evaluate(agentId: Self.agent, rules: Self.rules(excluded: [Self.agent]), lastLogin: nil, tasks: late, now: Self.day(10)).isEmpty)
        #expect(RotationCheck.evaluate(agentId: Self.agent, rules: Self.rules(enabled: false), lastLogin: nil, tasks: late, now: Self.day(10)).isEmpty)
        #expect(RotationCheck.evaluate(agentId: Self.agent, rules: Self.rules(), lastLogin: nil, tasks: late, now: Self.day(10)).count == 2)
        #expect(RotationCheck.evaluate(agentId: Self.agent, rules: Self.rules(), lastLogin: nil, tasks: late, now: Self.day(10), judgedFrom: Self.day(9.5)).isEmpty)
    }

    @Test("AC-4: out until 00:00 on the first of the next month in the office's zone, the last evening of a month and December included")
    func firstOfNextMonth() throws {
        let chicago = try #require(TimeZone(identifier: "America/Chicago"))
        let mid = try #require(RFC3339.date(from: "2026-12-15T12:00:00Z"))
        #expect(RotationCheck.firstOfNextMonth(after: mid, in: chicago) == RFC3339.date(from: "2027-01-01T06:00:00Z"))
        let lastEvening = try #require(RFC3339.date(from: "2027-04-01T04:30:00Z")) // 23:30 CDT on March 31st
        #expect(RotationCheck.firstOfNextMonth(after: lastEvening, in: chicago) == RFC3339.date(from: "2027-04-01T05:00:00Z"))
    }

    @Test("AC-4: rules are inherited down the tree, a team's own before its office's")
    func inheritance() {
        let office = UUID(), team = UUID(), other = UUID()
        var officeRules = Self.rules()
        officeRules.entityId = office
        var teamRules = Self.rules(login: 3)
        teamRules.entityId = team
        let parents = [team: office, other: office]
        #expect(RuleInheritance.effective(for: [team], parents: parents, rules: [office: officeRules, team: teamRules]) == teamRules)
        #expect(RuleInheritance.effective(for: [other], parents: parents, rules: [office: officeRules, team: teamRules]) == officeRules)
        #expect(RuleInheritance.effective(for: [other], parents: parents, rules: [team: teamRules]) == nil)
    }

    @Test("AC-4: every setting is validated with its field named")
    func validation() throws {
        func field(_ input: RulesInput) -> String? {
            do {
                _ = try input.validated(entityId: UUID(), companyId: UUID(), version: 1, now: Self.start)
                return nil
            } catch let error as APIError {
                return error.field
            } catch {
                return "?"
            }
        }
        #expect(field(RulesInput(newLeadCalls: .init(enabled: true, calls: 10))) == "newLeadCalls.calls")
        #expect(field(RulesInput(rotation: .init(enabled: true, loginIntervalDays: 0, minCompletionPercent: nil))) == "rotation.loginIntervalDays")
        #expect(field(RulesInput(rotation: .init(enabled: true, loginIntervalDays: nil, minCompletionPercent: 101))) == "rotation.minCompletionPercent")
        #expect(field(RulesInput(rotation: .init(enabled: true, loginIntervalDays: nil, minCompletionPercent: nil))) == "rotation")
        #expect(field(RulesInput(followUp: .init(enabled: true, hours: 0))) == "followUp.hours")
        #expect(field(RulesInput(newLeadCalls: .init(enabled: true, calls: 9), rotation: .init(enabled: true, loginIntervalDays: 7, minCompletionPercent: 0))) == nil)
    }
}
