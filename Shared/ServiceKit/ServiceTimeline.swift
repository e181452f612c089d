import Foundation
import Models

/// An entry a service writes on a contact's timeline under its own name (a behavior that fired, a
/// plan's step), as contacts' timeline batch takes it: written once by its id, whatever retries.
package struct ServiceTimelineEntry: Codable, Sendable, Hashable {
    package var contactId: UUID
    package var id: UUID
    package var kind: String
    package var summary: String
    package var actorName: String
    package var data: [String: String]

    package init(contactId: UUID, id: UUID, kind: String, summary: String, actorName: String, data: [String: String]) {
        self.contactId = contactId
        self.id = id
        self.kind = kind
        self.summary = summary
        self.actorName = actorName
        self.data = data
    }

    /// Writes the entries, 500 a request; retried by the caller's job while contacts is away.
    package static func write(_ entries: [Self], with peers: PeerClient) async throws {
        struct Batch: Encodable { var entries: [ServiceTimelineEntry] }
        for start in stride(from: 0, to: entries.count, by: 500) {
            _ = try await peers.post(to: .contacts, path: "/v1/timeline/batch", body: Batch(entries: Array(entries[start..<min(start + 500, entries.count)])))
                .succeeded(from: .contacts, "contacts' timeline")
        }
    }
}
