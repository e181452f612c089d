import Foundation
import Models
import PostgresNIO
import ServiceKit
import Testing
import TestSupport
@testable import Notifications

@Suite("Delivery log writes: a message and its request's key together; a batch saved in one statement (NT-1, NT-3)")
struct MessageStoreTests {
    static let now = Date(timeIntervalSince1970: 1_900_000_000)

    func message(to user: UUID, company: UUID) -> Message {
        Message(id: UUID.random(), companyId: company, channel: .push, direction: .outbound, purpose: .manual, state: .queued, reason: nil,
                contactId: nil, userId: user, to: user.uuidString.lowercased(), from: nil, subject: "New lead", body: "Lead waiting",
                window: nil, gather: nil, digits: nil, holdUntil: nil, attempts: 0, provider: nil, providerId: nil, reference: nil,
                requestedBy: "routing", createdAt: Self.now, updatedAt: Self.now, sentAt: nil, deliveredAt: nil)
    }

    func count(_ client: PostgresClient, _ table: String) async throws -> Int {
        try await client.query(PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(table)"), logger: TestDatabase.logger).first(Int.self) ?? -1
    }

    @Test("NT-1: a key stored by a request that committed after this one's read leaves no second message, and the retry replays the first")
    func keyTakenMeanwhile() async throws {
        try await TestDatabase.withSchema(migrations: NotificationsMigrations.all) { client, _ in
            let store = MessageStore(client: client, outbox: Outbox(service: .notifications, clock: WallClock()), logger: TestDatabase.logger)
            let (user, company) = (UUID.random(), UUID.random())
            let first = message(to: user, company: company)
            let record = MessageStore.IdempotencyRecord(caller: "service:routing", key: "k-1", fingerprint: "f", status: 202)
            let firstDoc = String(decoding: try JSONCoding.encoder.encode(first), as: UTF8.self)
            let stored = try await client.withConnection { connection in
                try await store.insert(first, doc: firstDoc, idempotency: record, at: Self.now, on: connection)
            }
            #expect(stored)
            // The second request read "no key" before the first committed; its own write finds the key taken.
            let second = message(to: user, company: company)
            let secondStored = try await client.withConnection { connection in
                try await store.insert(second, doc: "{}", idempotency: record, at: Self.now, on: connection)
            }
            #expect(!secondStored)
            #expect(try await count(client, "messages") == 1)
            let state = try await client.withConnection { connection in
                try await store.claimKey(caller: record.caller, key: record.key, fingerprint: "f", on: connection)
            }
            guard case .replay(let status, let response) = state else {
                Issue.record("expected a replay, got \(state)")
                return
            }
            #expect(status == 202)
            #expect(response == firstDoc)
            let other = try await client.withConnection { connection in
                try await store.claimKey(caller: record.caller, key: record.key, fingerprint: "other", on: connection)
            }
            guard case .mismatch = other else {
                Issue.record("expected a mismatch, got \(other)")
                return
            }
        }
    }

    @Test("NT-3: a sender's batch is saved in one statement, each message one version on, its optional fields kept or cleared")
    func batchSave() async throws {
        try await TestDatabase.withSchema(migrations: NotificationsMigrations.all) { client, _ in
            let store = MessageStore(client: client, outbox: Outbox(service: .notifications, clock: WallClock()), logger: TestDatabase.logger)
            let (user, company) = (UUID.random(), UUID.random())
            var messages = [message(to: user, company: company), message(to: user, company: company)]
            try await client.withConnection { connection in
                for message in messages { try await store.insert(message, on: connection) }
            }
            messages[0].state = .sent
            messages[0].provider = "local"
            messages[0].providerId = "local-1"
            messages[0].sentAt = Self.now.addingTimeInterval(5)
            messages[1].state = .failed
            messages[1].reason = "provider_21610"
            let versions = messages.map(\.version)
            try await client.withConnection { connection in try await store.save(&messages, on: connection) }
            #expect(messages.map(\.version) == versions.map { $0 + 1 })
            let rows = try await client.query("""
                SELECT id, state, provider, provider_id, sent_at FROM messages ORDER BY state DESC
                """, logger: TestDatabase.logger)
            var read: [(UUID, String, String?, String?, Date?)] = []
            for try await row in rows.decode((UUID, String, String?, String?, Date?).self) { read.append(row) }
            #expect(read.map(\.1) == ["sent", "failed"])
            #expect(read[0].0 == messages[0].id && read[0].2 == "local" && read[0].3 == "local-1" && read[0].4 == Self.now.addingTimeInterval(5))
            #expect(read[1].0 == messages[1].id && read[1].2 == nil && read[1].3 == nil && read[1].4 == nil)
            let reread = try #require(try await store.message(messages[1].id))
            #expect(reread.reason == "provider_21610")
            #expect(reread.version == messages[1].version)
        }
    }
}
