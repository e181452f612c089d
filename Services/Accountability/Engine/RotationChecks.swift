import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// AC-4, AC-5: the daily rotation check of each office (its teams' agents included) at 06:00 in
/// the office's zone, a periodic schedule of the kit, so a day is checked once whatever the
/// replicas or restarts. The check decides and records in its transaction; taking the agent out
/// of rotation in contacts and the e-mails are a job per violation, retried until done, each
/// e-mail sent once (an Idempotency-Key per violation).
struct RotationChecks: Sendable {
    let store: AccountabilityStore
    let jobs: JobQueue
    let peers: PeerClient
    let clock: any ServiceClock
    let logger: Logger

    static let enforceJob = "accountability.enforce"

    var schedule: PeriodicSchedule {
        PeriodicSchedule(name: "accountability.rotation-check", recurrence: .daily(hour: 6, minute: 0), scopes: PeriodicScope.entities([.office])) {
            run, connection, _ in
            try await check(run, on: connection)
        }
    }

    struct EnforceJob: Codable, Sendable {
        var violationId: UUID
    }

    func check(_ run: PeriodicRun, on connection: PostgresConnection) async throws {
        guard let officeId = UUID(uuidString: run.scope), let office = try await store.entity(officeId) else { return }
        // As of when the check runs: a check that ran late (the service was down, the virtual
        // clock jumped) judges the figures of now, not of the hour it was due.
        let now = max(run.dueAt, clock.now)
        let zone = TimeZone(identifier: run.timeZone) ?? .gmt
        let tree = try await store.subtree(of: officeId, on: connection)
        let rules = RuleInheritance.byEntity(try await store.rules(companyId: office.companyId, on: connection).filter { tree[$0.entityId] != nil })
        guard rules.values.contains(where: \.rotation.enabled) else { return }
        let parents = tree.compactMapValues { $0 }
        let agents = try await store.agentsInRotation(of: Array(tree.keys), now: now, on: connection)
        let tasks = try await store.tasks(of: agents.map(\.id), dueSince: now.addingTimeInterval(-RotationCheck.window), on: connection)
        let reinstated = try await store.lastReinstatements(of: agents.map(\.id), on: connection)
        let until = RotationCheck.firstOfNextMonth(after: now, in: zone)
        for agent in agents {
            // The agent's own entities inside this office, nearest first.
            let inside = agent.entityIds.filter { tree[$0] != nil }
            guard let held = RuleInheritance.effective(for: inside, parents: parents, rules: rules) else { continue }
            let broken = RotationCheck.evaluate(agentId: agent.id, rules: held, lastLogin: agent.lastLogin, tasks: tasks[agent.id] ?? [], now: now,
                                                judgedFrom: reinstated[agent.id])
            guard !broken.isEmpty else { continue }
            let violation = Violation(id: UUID.random(), companyId: office.companyId, entityId: held.entityId, agentId: agent.id, agentName: agent.name,
                                      kind: .rotation, period: run.period, figures: broken, removedUntil: until, emailed: [], enforcedAt: nil,
                                      reinstatedBy: nil, reinstatedAt: nil, createdAt: now)
            guard try await store.insert(violation, on: connection) else { continue }
            try await jobs.schedule(kind: Self.enforceJob, payload: EnforceJob(violationId: violation.id), runAt: clock.now,
                                    uniqueKey: "enforce:\(violation.id)", on: connection, logger: logger)
        }
    }

    var enforceHandler: JobHandler {
        JobHandler(kind: Self.enforceJob) { job, connection, _ in
            try await enforce(try job.decode(EnforceJob.self).violationId, on: connection)
        }
    }

    /// Takes the agent out of rotation until the 1st with the reason, then e-mails the agent and
    /// the entity's admins naming the rule, the threshold and the agent's figure.
    func enforce(_ id: UUID, on connection: PostgresConnection) async throws {
        guard var violation = try await store.violation(id, on: connection), violation.enforcedAt == nil, violation.reinstatedAt == nil else { return }
        let reason = violation.figures.map(\.summary).joined(separator: " ")
        struct RotationBody: Encodable {
            var inRotation: Bool
            var until: Date?
            var reason: String?
        }
        let out = try await peers.put(to: .contacts, path: "/v1/users/\(violation.agentId.lowercasedString)/rotation",
                                      body: RotationBody(inRotation: false, until: violation.removedUntil, reason: "Accountability: \(reason)"))
        guard try out.succeeded(from: .contacts, "contacts' rotation") else {
            logger.warning("an agent could not be taken out of rotation", metadata: ["violation": "\(id)", "status": "\(out.status)"])
            return
        }
        let admins = try await store.admins(of: violation.entityId, companyId: violation.companyId, on: connection)
        let recipients = [violation.agentId] + admins.filter { $0 != violation.agentId }
        let untilText = violation.removedUntil.map { RFC3339.string(from: $0) } ?? "further notice"
        let mail = UserMail(messages: recipients.map { userId in
            UserMail.Mail(userId: userId,
                          subject: userId == violation.agentId ? "You are out of lead rotation until \(untilText)"
                              : "\(violation.agentName) is out of lead rotation until \(untilText)",
                          body: (userId == violation.agentId ? "You were" : "\(violation.agentName) was")
                              + " taken out of lead rotation by the accountability rules until \(untilText). \(reason)"
                              + " An admin can put \(userId == violation.agentId ? "you" : "them") back at any time.",
                          reference: "violation:\(id.lowercasedString)")
        })
        try await mail.send(with: peers, key: "accountability-violation-\(id.lowercasedString)")
        violation.emailed = recipients
        violation.enforcedAt = clock.now
        try await store.update(violation, on: connection)
    }

    /// AC-5: an admin puts the agent back; the violation says who and when.
    func reinstate(_ violation: inout Violation, by admin: String) async throws {
        struct RotationBody: Encodable { var inRotation: Bool }
        let back = try await peers.put(to: .contacts, path: "/v1/users/\(violation.agentId.lowercasedString)/rotation",
                                       body: RotationBody(inRotation: true))
        guard try back.succeeded(from: .contacts, "contacts' rotation") else {
            throw APIError.conflict("contacts refused to put the agent back (\(back.status))", code: "reinstatement_refused")
        }
        violation.reinstatedBy = admin
        violation.reinstatedAt = clock.now
        try await store.update(violation)
    }
}
