import Foundation
import Models
import ServiceKit

/// E-mails to agents and admins through notifications, one batch per decision, sent once whatever
/// retries (the batch's Idempotency-Key).
struct UserMail: Encodable, Sendable {
    struct Mail: Encodable, Sendable {
        var channel = MessageChannel.email
        var userId: UUID
        var subject: String
        var body: String
        var purpose = MessagePurpose.automated
        var reference: String
    }

    var messages: [Mail]

    /// Sends the batch; retried by the job when notifications is away, given up when it refuses.
    func send(with peers: PeerClient, key: String) async throws {
        let sent = try await peers.post(to: .notifications, path: "/v1/messages/batch", body: self, headers: [("Idempotency-Key", key)], idempotent: true)
        _ = try sent.succeeded(from: .notifications, "notifications")
    }
}
