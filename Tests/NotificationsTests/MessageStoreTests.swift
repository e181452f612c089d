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

    @Test("NT-1, X-3, NT-3: a message, its key, its send job and its event are one statement; a taken key stores nothing, and the retry reads the first answer; a contact's queued message is told of when it leaves, not when it is queued")
    func keyTakenMeanwhile() async throws {
        try await TestDatabase.withSchema(migrations: NotificationsMigrations.all) { client, _ in
            let store = MessageStore(client: client, outbox: Outbox(service: .notifications, clock: WallClock()), logger: TestDatabase.logger)
            let (user, company) = (UUID.random(), UUID.random())
            var first = message(to: user, company: company)
            first.contactId = UUID.random()
            // Held for quiet hours: the contact's timeline hears of it at once.
            first.state = .held
            first.holdUntil = Self.now.addingTimeInterval(3_600)
            let record = MessageStore.IdempotencyRecord(caller: "service:routing", key: "k-1", fingerprint: "f", status: 202)
            let job = try ScheduledJob(kind: Sender.jobKind, payload: Sender.JobPayload(messageId: first.id), runAt: Self.now, maxAttempts: 8)
            let stored = try await client.withConnection { connection in
                try await store.insert(first, job: job, idempotency: record, on: connection)
            }
            #expect(stored.stored)
            #expect(try await count(client, "jobs WHERE kind = 'message.send' AND payload->>'messageId' = '\(first.id.uuidString)' AND max_attempts = 8") == 1)
            #expect(try await count(client, "outbox WHERE event_type = 'message.updated'") == 1)
            // Queued to go at once, it is told of by its sender's outcome, not now.
            var queued = message(to: user, company: company)
            queued.contactId = UUID.random()
            let queuedJob = try ScheduledJob(kind: Sender.jobKind, payload: Sender.JobPayload(messageId: queued.id), runAt: Self.now, maxAttempts: 8)
            #expect(try await client.withConnection { try await store.insert(queued, job: queuedJob, on: $0) }.stored)
            #expect(try await count(client, "outbox WHERE event_type = 'message.updated'") == 1)
            // The second request read "no key" before the first committed; its own write finds the key taken.
            let second = message(to: user, company: company)
            let secondStored = try await client.withConnection { connection in
                try await store.insert(second, job: job, idempotency: record, on: connection)
            }
            #expect(!secondStored.stored)
            #expect(try await count(client, "messages") == 2)
            #expect(try await count(client, "jobs") == 2)
            let answer = try await client.withConnection { connection in
                try await store.storedKey(caller: record.caller, key: record.key, on: connection)
            }
            #expect(answer?.fingerprint == "f")
            #expect(answer?.status == 202)
            #expect(answer?.response == stored.doc)
            #expect(try JSONCoding.decoder.decode(Message.self, from: Data(stored.doc.utf8)).id == first.id)
            // A suppressed message has no job; a push to a user tells no contact's timeline.
            var suppressed = message(to: user, company: company)
            suppressed.state = .suppressed
            let events = try await count(client, "outbox")
            let third = try await client.withConnection { connection in try await store.insert(suppressed, on: connection) }
            #expect(third.stored)
            #expect(try await count(client, "messages") == 3)
            #expect(try await count(client, "jobs") == 2)
            #expect(try await count(client, "outbox") == events)
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
