import Foundation
import Models

/// E-mails to agents and admins through notifications, one batch per decision, sent once whatever
/// retries (the batch's Idempotency-Key): accountability's violations and follow-ups, automation's
/// status shifts.
package struct UserMail: Encodable, Sendable {
    package struct Mail: Encodable, Sendable {
        var channel = MessageChannel.email
        var userId: UUID
        var subject: String
        var body: String
        var purpose = MessagePurpose.automated
        var reference: String

        package init(userId: UUID, subject: String, body: String, reference: String) {
            self.userId = userId
            self.subject = subject
            self.body = body
            self.reference = reference
        }
    }

    var messages: [Mail]

    package init(messages: [Mail]) {
        self.messages = messages
    }

    /// Sends the batch; retried by the job when notifications is away, given up when it refuses.
    package func send(with peers: PeerClient, key: String) async throws {
        let sent = try await peers.post(to: .notifications, path: "/v1/messages/batch", body: self, headers: [("Idempotency-Key", key)], idempotent: true)
        _ = try sent.succeeded(from: .notifications, "notifications")
    }
}

/// One automated message to a contact through notifications (a behavior's text, a plan's e-mail),
/// sent once whatever retries (its Idempotency-Key); the answer says what became of it.
package struct ContactMessage: Encodable, Sendable {
    /// Where a text may go: an entity's office hours, or a fixed local window.
    package struct Window: Encodable, Sendable {
        var entityId: UUID?
        var start: String?
        var end: String?
        var timeZone: String?

        package static func officeHours(of entityId: UUID) -> Window { Window(entityId: entityId) }
        package static func daily(_ start: String, _ end: String, timeZone: String) -> Window { Window(start: start, end: end, timeZone: timeZone) }
    }

    /// What notifications did with it: accepted (queued, held or sent) with its id, or refused.
    package enum Outcome: Sendable, Equatable {
        case accepted(id: UUID, state: String, reason: String?)
        case refused(status: Int, body: String)
    }

    var channel: MessageChannel
    var contactId: UUID
    var subject: String?
    var body: String
    /// An e-mail's HTML part (a saved design); `body` is its plain-text alternative.
    package var html: String?
    var purpose = MessagePurpose.automated
    var reference: String
    var window: Window?
    /// Only in `send(_:with:)`'s batches: the message's own key.
    var idempotencyKey: String?
    /// false: the provider's first refusal is final (SP-7); absent, notifications retries.
    package var retry: Bool?

    package init(channel: MessageChannel, contactId: UUID, subject: String?, body: String, reference: String, window: Window?) {
        self.channel = channel
        self.contactId = contactId
        self.subject = subject
        self.body = body
        self.reference = reference
        self.window = window
    }

    private struct Batch: Encodable { var messages: [ContactMessage] }

    private struct Accepted: Decodable {
        struct Item: Decodable { var id: UUID; var state: String; var reason: String? }
        var items: [Item]
    }

    /// Retried by the caller's job while notifications is away (5xx, unreachable); a refusal is an outcome.
    package func send(with peers: PeerClient, key: String) async throws -> Outcome {
        let answer = try await peers.post(to: .notifications, path: "/v1/messages/batch", body: Batch(messages: [self]),
                                          headers: [("Idempotency-Key", key)], idempotent: true)
        guard try answer.succeeded(from: .notifications, "notifications") else { return .refused(status: answer.status, body: String(answer.body.prefix(300))) }
        guard let item = (try? JSONCoding.decoder.decode(Accepted.self, from: Data(answer.body.utf8)))?.items.first else {
            return .refused(status: answer.status, body: "notifications answered without the message")
        }
        return .accepted(id: item.id, state: item.state, reason: item.reason)
    }

    /// Notifications' limit for a batch whose messages carry their own keys.
    package static let keyedBatch = 100

    /// Many messages in batches, each under its own key (the same key `send(with:key:)` would
    /// give it, so a retry may regroup them); the outcomes in order. A batch notifications refuses
    /// stores none of its messages: it goes again a message at a time, so each has its own outcome.
    package static func send(_ messages: [(message: ContactMessage, key: String)], with peers: PeerClient) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(messages.count)
        for start in stride(from: 0, to: messages.count, by: keyedBatch) {
            let chunk = messages[start..<min(start + keyedBatch, messages.count)]
            if chunk.count == 1, let (message, key) = chunk.first {
                outcomes.append(try await message.send(with: peers, key: key))
                continue
            }
            let keyed = chunk.map { message, key in
                var message = message
                message.idempotencyKey = key
                return message
            }
            let answer = try await peers.post(to: .notifications, path: "/v1/messages/batch", body: Batch(messages: keyed), idempotent: true)
            if try answer.succeeded(from: .notifications, "notifications"),
               let items = (try? JSONCoding.decoder.decode(Accepted.self, from: Data(answer.body.utf8)))?.items, items.count == chunk.count {
                outcomes += items.map { .accepted(id: $0.id, state: $0.state, reason: $0.reason) }
            } else {
                for (message, key) in chunk { outcomes.append(try await message.send(with: peers, key: key)) }
            }
        }
        return outcomes
    }
}
