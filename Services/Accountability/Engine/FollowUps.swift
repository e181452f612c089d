import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// AC-6: a showing request or question from the website left without an outbound call, text or
/// e-mail to the contact for more than the rule's hours e-mails the agent and the entity's
/// admins, once. It never touches rotation.
struct FollowUps: Sendable {
    let store: AccountabilityStore
    let jobs: JobQueue
    let peers: PeerClient
    let clock: any ServiceClock
    let logger: Logger

    static let job = "accountability.follow-up"

    struct FollowUpJob: Codable, Sendable {
        var request: ActivityRequested
        var agentId: UUID
        var entityId: UUID
        var hours: Int
    }

    var eventHandler: EventHandler {
        EventHandler(name: "accountability.follow-up", eventType: EventType.activityRequested) { event, connection, _ in
            try await requested(try event.data(ActivityRequested.self), on: connection)
        }
    }

    func requested(_ request: ActivityRequested, on connection: PostgresConnection) async throws {
        guard let contact = try await store.contactSnapshot(request.contactId, on: connection), let agentId = contact.assignedAgentId,
              let agent = try await store.directoryUser(agentId, on: connection) else { return }
        let rules = try await store.rules(companyId: request.companyId, on: connection)
        guard rules.contains(where: \.followUp.enabled) else { return }
        let parents = try await store.companyEntities(request.companyId, on: connection).compactMapValues(\.parentId)
        guard let held = RuleInheritance.effective(for: agent.entityIds, parents: parents,
                                                   rules: RuleInheritance.byEntity(rules)),
              held.followUp.enabled, !held.excludedAgentIds.contains(agentId) else { return }
        let due = max(request.at.addingTimeInterval(Double(held.followUp.hours) * 3600), clock.now)
        try await jobs.schedule(kind: Self.job, payload: FollowUpJob(request: request, agentId: agentId, entityId: held.entityId, hours: held.followUp.hours),
                                runAt: due, uniqueKey: "follow-up:\(request.activityId)", on: connection, logger: logger)
    }

    var jobHandler: JobHandler {
        JobHandler(kind: Self.job) { job, connection, _ in try await check(try job.decode(FollowUpJob.self), on: connection) }
    }

    func check(_ job: FollowUpJob, on connection: PostgresConnection) async throws {
        let request = job.request
        guard let contact = try await store.contactSnapshot(request.contactId, on: connection) else { return }
        guard !(try await store.answered(contactId: request.contactId, since: request.at, on: connection)) else { return }
        let agentId = contact.assignedAgentId ?? job.agentId
        let admins = try await store.admins(of: job.entityId, companyId: request.companyId, on: connection)
        let name = [contact.firstName, contact.lastName].compactMap { $0 }.joined(separator: " ")
        let what = request.kind == "showing_request" ? "showing request" : "question"
        let listing = request.listingId.map { " about listing \($0)" } ?? ""
        let subject = "A \(what) from \(name.isEmpty ? "a lead" : name) is unanswered after \(job.hours) hour\(job.hours == 1 ? "" : "s")"
        let body = "\(name.isEmpty ? "A lead" : name) sent a \(what)\(listing) on \(RFC3339.string(from: request.at))"
            + (request.message.map { ": \"\($0.prefix(500))\"" } ?? "") + ". No call, text or e-mail has reached them since. Please follow up now."
        let recipients = [agentId] + admins.filter { $0 != agentId }
        let reference = "follow-up:\(request.activityId.lowercasedString)"
        try await UserMail(messages: recipients.map { UserMail.Mail(userId: $0, subject: subject, body: body, reference: reference) })
            .send(with: peers, key: "accountability-follow-up-\(request.activityId.lowercasedString)")
    }
}
