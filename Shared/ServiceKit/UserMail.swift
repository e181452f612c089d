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
