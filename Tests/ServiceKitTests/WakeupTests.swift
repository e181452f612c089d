import Foundation
import Logging
import Models
import PostgresNIO
import Synchronization
import Testing
@testable import ServiceKit
import TestSupport

@Suite("Wake-ups after commit, event-loop timers (X-3)")
struct WakeupTests {
    @Test("X-3: outbox rows and jobs wake the schema's listeners once their transaction committed, never for a rollback")
    func wakeAfterCommit() async throws {
        try await TestDatabase.withSchema { client, schema in
            let logger = TestDatabase.logger
            let outbox = Outbox(service: .contacts, clock: WallClock())
            let event = try outbox.envelope(EventType.contactCreated, version: 1, companyId: UUID.random(), subjectId: nil, data: ["n": 1])
            try await client.withConnection { listener in
                let notifications = try await listener.listen("wake_" + schema)
                var received = notifications.makeAsyncIterator()

                // Nothing is sent while the transaction is open: the trigger that did it inside
                // every commit is gone.
                try await client.transaction(logger: logger) { connection in
                    try await outbox.publish([event], on: connection, logger: logger)
                    _ = try await JobQueue().schedule(kind: "k", payload: ["n": 1], runAt: Date(), on: connection, logger: logger)
                    let triggers = try await connection.query("""
                        SELECT count(*)::int FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
                        WHERE c.relnamespace = current_schema()::regnamespace AND c.relname IN ('outbox', 'jobs') AND NOT t.tgisinternal
                          AND p.prosrc ILIKE '%notify%'
                        """, logger: logger).first(Int.self)
                    #expect(triggers == 0)
                }
                var payloads: Set<String> = []
                while payloads.count < 2, let next = try await received.next() { payloads.insert(next.payload) }
                let lanes = Subscriptions.subscribers(of: EventType.contactCreated).map(\.rawValue).sorted().joined(separator: ",")
                #expect(payloads == ["outbox:" + lanes, "jobs"])

                // A rolled-back transaction wakes nobody; the next committed one does.
                struct Abandon: Error {}
                await #expect(throws: Abandon.self) {
                    try await client.transaction(logger: logger) { connection in
                        _ = try await JobQueue().schedule(kind: "rolled-back", payload: ["n": 2], runAt: Date(), on: connection, logger: logger)
                        throw Abandon()
                    }
                }
                try await client.transaction(logger: logger) { connection in
                    _ = try await JobQueue().schedule(kind: "k", payload: ["n": 3], runAt: Date(), on: connection, logger: logger)
                }
                let next = try await received.next()
                #expect(next?.payload == "jobs")
                let jobs = try await client.query("SELECT count(*)::int FROM jobs WHERE kind = 'rolled-back'", logger: logger).first(Int.self)
                #expect(jobs == 0)
            }
        }
    }

    @Test("X-3: a process with its own listener rings it after the commit, for what committed only, and sends no NOTIFY")
    func wakeInProcess() async throws {
        try await TestDatabase.withSchema { client, schema in
            let logger = TestDatabase.logger
            let rung = Mutex<[String]>([])
            Wakeups.ringInProcess(for: [client]) { payload in rung.withLock { $0.append(payload) } }
            defer { Wakeups.stopRingingInProcess(for: [client]) }
            try await client.withConnection { listener in
                let notifications = try await listener.listen("wake_" + schema)
                var received = notifications.makeAsyncIterator()
                try await client.transaction(logger: logger) { connection in
                    _ = try await JobQueue().schedule(kind: "k", payload: ["n": 1], runAt: Date(), on: connection, logger: logger)
                    #expect(rung.withLock { $0 }.isEmpty, "not before the commit")
                }
                #expect(rung.withLock { $0 } == ["jobs"])
                struct Abandon: Error {}
                await #expect(throws: Abandon.self) {
                    try await client.transaction(logger: logger) { connection in
                        _ = try await JobQueue().schedule(kind: "rolled-back", payload: ["n": 2], runAt: Date(), on: connection, logger: logger)
                        throw Abandon()
                    }
                }
                #expect(rung.withLock { $0 } == ["jobs"], "a rollback rings nothing")

                // Back on NOTIFY, the listener's first notification is the next commit's: none came before.
                Wakeups.stopRingingInProcess(for: [client])
                let outbox = Outbox(service: .contacts, clock: WallClock())
                let event = try outbox.envelope(EventType.userLoggedIn, version: 1, companyId: UUID.random(), subjectId: nil, data: ["n": 1])
                try await client.transaction(logger: logger) { connection in
                    try await outbox.publish([event], on: connection, logger: logger)
                }
                #expect(try await received.next()?.payload == "outbox:accountability")
                #expect(rung.withLock { $0 } == ["jobs"])
            }
        }
    }

    @Test("an event-loop sleep lasts its duration, and a cancelled one ends at once with CancellationError")
    func loopTimer() async throws {
        let start = ContinuousClock.now
        try await LoopTimer.sleep(for: .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(45))

        let sleeping = Task { try await LoopTimer.sleep(for: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(20))
        let cancelledAt = ContinuousClock.now
        sleeping.cancel()
        await #expect(throws: CancellationError.self) { try await sleeping.value }
        #expect(ContinuousClock.now - cancelledAt < .seconds(5))

        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await LoopTimer.sleep(for: .seconds(30))
        }
        await #expect(throws: CancellationError.self) { try await early.value }
    }
}

@Suite("Prepared statements")
struct PreparedSQLTests {
    enum AStatementWhoseTypeNameIsLongerThanPostgreSQLAllowsForNames: PreparedSQL { static let sql = "SELECT 1" }
    enum AStatementWhoseTypeNameIsLongerThanPostgreSQLAllowsForNamesToo: PreparedSQL { static let sql = "SELECT 2" }

    @Test("statements whose names share their first 63 bytes are still two statements on one connection")
    func longNames() async throws {
        let first = Prepared<AStatementWhoseTypeNameIsLongerThanPostgreSQLAllowsForNames>.name
        let second = Prepared<AStatementWhoseTypeNameIsLongerThanPostgreSQLAllowsForNamesToo>.name
        #expect(first.utf8.count <= 63 && second.utf8.count <= 63)
        #expect(first != second)
        let client = try Database.makeClient(url: try TestDatabase.url(), schema: "public", poolSize: 1, logger: TestDatabase.logger)
        let answers = try await TestDatabase.running([client]) {
            try await client.withConnection { connection in
                var answers: [Int] = []
                for _ in 0..<2 {
                    for row in try await connection.prepared(AStatementWhoseTypeNameIsLongerThanPostgreSQLAllowsForNames.self, .values(), logger: TestDatabase.logger) {
                        answers.append(try row.decode(Int.self))
                    }
                    for row in try await connection.prepared(AStatementWhoseTypeNameIsLongerThanPostgreSQLAllowsForNamesToo.self, .values(), logger: TestDatabase.logger) {
                        answers.append(try row.decode(Int.self))
                    }
                }
                return answers
            }
        }
        #expect(answers == [1, 2, 1, 2])
    }
}
