import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// The jobs that carry routing's decisions out: the assignment written in contacts, the
/// notices and offers sent through notifications, windows and timeouts, follow-up tasks.
struct RoutingJobs: Sendable {
    let router: LeadRouter
    let peers: PeerClient
    let links: OfferLink
    /// Where agents open offer pages: this service's public address.
    let publicURL: String

    var store: RoutingStore { router.store }
    var clock: any ServiceClock { router.clock }

    /// A permanent refusal from a peer: retrying cannot help, the job ends and the log says why.
    struct Refused: Error {
        var status: Int
        var body: String
    }

    var handlers: [JobHandler] {
        [
            JobHandler(kind: LeadRouter.assignJob) { job, connection, _ in
                let assignment = try job.decode(LeadRouter.AssignJob.self)
                guard let notice = assignment.notice, job.attempt <= LeadRouter.noticeAttempts else {
                    return try await assign(assignment)
                }
                // Both requests at once; a retry sends the notice again under its key, which
                // notifications answers from the first time.
                async let assigned: Void = assign(assignment)
                try await notify(notice, on: connection)
                try await assigned
            },
            JobHandler(kind: LeadRouter.noticeJob, maxAttempts: LeadRouter.noticeAttempts) { job, connection, _ in
                try await notify(try job.decode(LeadRouter.NoticeJob.self), on: connection)
            },
            JobHandler(kind: LeadRouter.expiryJob) { job, connection, _ in
                try await router.expire(try job.decode(LeadRouter.OfferJob.self), on: connection)
            },
            JobHandler(kind: LeadRouter.timeoutJob) { job, connection, _ in
                try await router.timeout(try job.decode(LeadRouter.RoundJob.self), on: connection)
            },
            JobHandler(kind: LeadRouter.followUpJob) { job, connection, _ in
                try await followUp(try job.decode(FollowUpJob.self), runAt: job.runAt, on: connection)
            },
        ]
    }

    /// 5xx and unreachable peers are retried by the job table; 4xx are final.
    private func check(_ response: PeerClient.Response, from service: ServiceName, _ what: String) throws -> Bool {
        if try response.succeeded(from: service, what) { return true }
        router.logger.warning("\(what) refused", metadata: ["status": "\(response.status)", "body": "\(response.body.prefix(300))"])
        return false
    }

    func assign(_ job: LeadRouter.AssignJob) async throws {
        struct Body: Encodable {
            var agentId: UUID?
            var pondId: UUID?
            var lenderId: UUID?
            var reason: String
        }
        let response = try await peers.post(to: .contacts, path: "/v1/contacts/\(job.contactId.lowercasedString)/assignment",
                                            body: Body(agentId: job.agentId, pondId: job.pondId, lenderId: job.lenderId, reason: job.reason))
        _ = try check(response, from: .contacts, "contacts' assignment")
    }

    /// One notice or offer to one agent on each of its channels (RT-11, RT-13), as one batch: one
    /// request and one transaction in notifications for all of them. A failure that lasts fails
    /// the job, which runs again under the same idempotency key, so nobody is told twice.
    func notify(_ job: LeadRouter.NoticeJob, on connection: PostgresConnection) async throws {
        // ST-7: nobody is told about an archived lead.
        guard let contact = try await store.contact(job.contactId, on: connection), contact.status != .archive else { return }
        var offer: Offer?
        if let id = job.offerId {
            offer = try await store.offer(id, on: connection)
            guard offer?.state == .open else { return }
        }
        let link = offer.map { "\(publicURL)/offers/\(links.token(offerId: $0.id, expires: Self.linkExpiry($0)))" }
        struct NewMessage: Encodable {
            var channel: MessageChannel
            var userId: UUID
            var subject: String?
            var body: String
            var purpose: MessagePurpose
            var gather: GatherSpec?
            var reference: String?
        }
        struct Batch: Encodable { var messages: [NewMessage] }
        let channels = job.allChannels
        let batch = Batch(messages: channels.map { channel in
            let message = OfferMessage.compose(contact: contact, channel: channel, offer: offer, link: link)
            return NewMessage(channel: message.channel, userId: job.agentId, subject: message.subject, body: message.body, purpose: .automated,
                              gather: message.gather, reference: offer.map { "offer:\($0.id.lowercasedString)" })
        })
        guard !batch.messages.isEmpty else { return }
        let key = "routing-\(job.offerId?.lowercasedString ?? "\(job.contactId.lowercasedString)-\(job.round)")-notice"
        let response = try await peers.post(to: .notifications, path: "/v1/messages/batch", body: batch, headers: [("Idempotency-Key", key)],
                                            idempotent: true)
        let now = clock.now
        var entries: [RoutingLogEntry] = []
        if try check(response, from: .notifications, "notifications") {
            struct Accepted: Decodable {
                struct Item: Decodable { var id: UUID }
                var items: [Item]
            }
            let ids = (try? JSONCoding.decoder.decode(Accepted.self, from: Data(response.body.utf8)).items.map(\.id)) ?? []
            for (index, channel) in channels.enumerated() {
                entries.append(RoutingLogEntry(at: now, round: job.round, kind: .notified, agentId: job.agentId, offerId: job.offerId, channel: channel,
                                               messageId: index < ids.count ? ids[index] : nil, summary: "Sent by \(channel.rawValue)."))
            }
        } else {
            let reason = Self.errorMessage(response.body)
            for channel in channels {
                entries.append(RoutingLogEntry(at: now, round: job.round, kind: .notificationFailed, agentId: job.agentId, offerId: job.offerId,
                                               channel: channel, summary: "Could not be sent by \(channel.rawValue): \(reason)"))
            }
        }
        try await store.log(entries, contactId: job.contactId, on: connection)
    }

    /// A link keeps working a day past its offer's window, so a late opener learns what became of the lead.
    static func linkExpiry(_ offer: Offer) -> Date { offer.expiresAt.addingTimeInterval(24 * 3600) }

    static func errorMessage(_ body: String) -> String {
        struct Failure: Decodable {
            struct Inner: Decodable { var message: String }
            var error: Inner
        }
        return (try? JSONCoding.decoder.decode(Failure.self, from: Data(body.utf8)).error.message) ?? "the notifications service refused it"
    }

    struct FollowUpJob: Codable, Sendable {
        var contactId: UUID
        var agentId: UUID
        var offerId: UUID
        var round: Int
        var dueAt: Date
    }

    /// RT-16: "2 to schedule a follow-up call task for later today".
    func followUp(_ job: FollowUpJob, runAt: Date, on connection: PostgresConnection) async throws {
        guard let contact = try await store.contact(job.contactId, on: connection) else { return }
        struct NewTask: Encodable {
            var kind: String
            var title: String
            var description: String
            var dueAt: Date
            var assigneeId: UUID
        }
        let task = NewTask(kind: "call", title: "Call \(LeadDecider.leadName(contact))", description: "Follow-up scheduled by phone when the lead was accepted.",
                           dueAt: job.dueAt, assigneeId: job.agentId)
        let path = "/v1/contacts/\(job.contactId.lowercasedString)/tasks"
        // Tasks take no idempotency key: a run that created the task but died before committing
        // finds it on the retry instead of creating a second one.
        struct Existing: Decodable {
            struct Task: Decodable { var kind: String; var title: String; var dueAt: Date?; var assigneeId: UUID? }
            var items: [Task]
        }
        let listed = try await peers.get(from: .contacts, path: path)
        guard try check(listed, from: .contacts, "contacts' tasks") else { return }
        let existing = try? JSONCoding.decoder.decode(Existing.self, from: Data(listed.body.utf8))
        let created = existing?.items.contains { $0.kind == task.kind && $0.title == task.title && $0.assigneeId == task.assigneeId
                                                 && abs(($0.dueAt ?? .distantPast).timeIntervalSince(task.dueAt)) < 1 } ?? false
        var scheduled = created
        if !created { scheduled = try check(try await peers.post(to: .contacts, path: path, body: task), from: .contacts, "contacts' tasks") }
        if scheduled {
            try await store.log(RoutingLogEntry(at: clock.now, round: job.round, kind: .followUpScheduled, agentId: job.agentId, offerId: job.offerId,
                                                summary: "A follow-up call task was scheduled for \(RFC3339.string(from: job.dueAt))."),
                                contactId: job.contactId, on: connection)
        }
    }
}
