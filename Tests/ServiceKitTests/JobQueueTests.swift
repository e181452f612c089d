import Foundation
import Logging
import Models
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing
@testable import ServiceKit
import TestSupport

/// The Postgres job queue, tested the way River's and graphile-worker's suites test theirs.
@Suite("Job queue: SKIP LOCKED, leases, fencing, unique keys, retries, shutdown")
struct JobQueueTests {
    let queue = JobQueue()
    struct Payload: Codable, Sendable { var n: Int }

    func runner(_ client: PostgresClient, clock: any ServiceClock, handlers: [JobHandler], lease: Duration = .seconds(60),
                grace: Duration = .seconds(10), random: @escaping @Sendable () -> Double = { 1 }) -> JobRunner {
        var settings = JobRunner.Settings()
        settings.lease = lease
        settings.shutdownGrace = grace
        settings.pollInterval = .milliseconds(50)
        settings.workers = 2
        return JobRunner(client: client, clock: clock, handlers: handlers, doorbell: Doorbell(), logger: TestDatabase.logger,
                         settings: settings, random: random)
    }

    func schedule(_ client: PostgresClient, kind: String, n: Int, at: Date, key: String? = nil, maxAttempts: Int = 20) async throws -> Int64 {
        try await client.withConnection { connection in
            try await queue.schedule(kind: kind, payload: Payload(n: n), runAt: at, uniqueKey: key, maxAttempts: maxAttempts,
                                     on: connection, logger: TestDatabase.logger)
        }
    }

    func state(_ client: PostgresClient, _ id: Int64) async throws -> (String, Int, String?) {
        let rows = try await client.query("SELECT state, attempts, last_error FROM jobs WHERE id = \(id)", logger: TestDatabase.logger)
        for try await row in rows.decode((String, Int, String?).self) { return row }
        throw JobLeaseLost(jobId: id)
    }

    @Test("X-5: two workers never run the same job")
    func noDoubleRun() async throws {
        try await TestDatabase.withSchema { client, _ in
            let clock = ManualClock()
            let seen = Recorder<Int>()
            let handler = JobHandler(kind: "count") { job, _, _ in
                seen.append(try job.decode(Payload.self).n)
            }
            for n in 0..<200 { _ = try await schedule(client, kind: "count", n: n, at: clock.now) }
            let first = runner(client, clock: clock, handlers: [handler])
            let second = runner(client, clock: clock, handlers: [handler])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in [first, second, first, second] {
                    group.addTask { while try await worker.runNext() != nil {} }
                }
                try await group.waitForAll()
            }
            #expect(seen.all.count == 200)
            #expect(Set(seen.all).count == 200)
        }
    }

    @Test("jobs wait for their run_at on the service clock, then run in run_at order")
    func dueOnServiceClock() async throws {
        try await TestDatabase.withSchema { client, _ in
            let clock = ManualClock()
            let seen = Recorder<Int>()
            let handler = JobHandler(kind: "k") { job, _, _ in seen.append(try job.decode(Payload.self).n) }
            _ = try await schedule(client, kind: "k", n: 2, at: clock.now.addingTimeInterval(7200))
            _ = try await schedule(client, kind: "k", n: 1, at: clock.now.addingTimeInterval(3600))
            let worker = runner(client, clock: clock, handlers: [handler])
            #expect(try await worker.runNext() == nil)
            clock.advance(by: 14 * 86400)
            while try await worker.runNext() != nil {}
            #expect(seen.all == [1, 2])
        }
    }

    @Test("a job whose worker died is rescued after its lease and run again")
    func rescue() async throws {
        try await TestDatabase.withSchema { client, _ in
            let clock = ManualClock()
            let seen = Recorder<Int64>()
            let handler = JobHandler(kind: "k") { job, _, _ in seen.append(job.id) }
            let id = try await schedule(client, kind: "k", n: 1, at: clock.now)
            let dying = runner(client, clock: clock, handlers: [handler], lease: .seconds(1))
            // The worker claims the job and then "dies": it never finishes nor renews.
            let claimed = try #require(try await dying.claim())
            #expect(claimed.id == id)
            #expect(try await dying.rescueExpired().isEmpty)
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try await dying.rescueExpired() == [id])
            let healthy = runner(client, clock: clock, handlers: [handler])
            let outcome = try await healthy.runNext()
            #expect(outcome?.outcome == .completed)
            let (state, attempts, _) = try await state(client, id)
            #expect(state == "completed")
            #expect(attempts == 2)
            #expect(seen.all == [id])
        }
    }

    @Test("a worker whose lease was lost cannot complete the job, and its writes roll back (fencing)")
    func fencing() async throws {
        try await TestDatabase.withSchema(migrations: [Migration("CreateEffects", ["CREATE TABLE effects (job_id bigint, worker text)"])]) { client, _ in
            let clock = ManualClock()
            let id = try await schedule(client, kind: "k", n: 1, at: clock.now)
            let stale = runner(client, clock: clock, handlers: [], lease: .seconds(1))
            let staleJob = try #require(try await stale.claim())
            try await Task.sleep(for: .milliseconds(1500))
            try await stale.rescueExpired()
            let fresh = runner(client, clock: clock, handlers: [])
            let freshJob = try #require(try await fresh.claim())
            #expect(freshJob.leaseToken != staleJob.leaseToken)
            // The stale worker finishes late: its completion is refused and its write undone.
            await #expect(throws: JobLeaseLost.self) {
                try await client.transaction(logger: TestDatabase.logger) { connection in
                    try await connection.query("INSERT INTO effects VALUES (\(id), 'stale')", logger: TestDatabase.logger)
                    try await stale.complete(staleJob, on: connection)
                }
            }
            #expect(await stale.fail(staleJob, error: "late", permanent: false) == .leaseLost)
            try await client.transaction(logger: TestDatabase.logger) { connection in
                try await connection.query("INSERT INTO effects VALUES (\(id), 'fresh')", logger: TestDatabase.logger)
                try await fresh.complete(freshJob, on: connection)
            }
            let rows = try await client.query("SELECT worker FROM effects", logger: TestDatabase.logger)
            var workers: [String] = []
            for try await worker in rows.decode(String.self) { workers.append(worker) }
            #expect(workers == ["fresh"])
            #expect(try await state(client, id).0 == "completed")
        }
    }

    @Test("scheduling with the same unique key twice returns the first job")
    func uniqueKey() async throws {
        try await TestDatabase.withSchema { client, _ in
            let clock = ManualClock()
            let first = try await schedule(client, kind: "k", n: 1, at: clock.now, key: "offer-timeout:42")
            let second = try await schedule(client, kind: "k", n: 2, at: clock.now.addingTimeInterval(60), key: "offer-timeout:42")
            #expect(first == second)
            let rows = try await client.query("SELECT count(*)::int, min(payload->>'n') FROM jobs", logger: TestDatabase.logger)
            for try await (count, n) in rows.decode((Int, String).self) {
                #expect(count == 1)
                #expect(n == "1")
            }
        }
    }

    @Test("failures retry with capped exponential backoff and jitter, then end discarded (kept, visible)")
    func retriesThenDiscard() async throws {
        try await TestDatabase.withSchema { client, _ in
            let clock = ManualClock()
            struct Flaky: Error {}
            let handler = JobHandler(kind: "flaky") { _, _, _ in throw Flaky() }
            let id = try await schedule(client, kind: "flaky", n: 1, at: clock.now, maxAttempts: 4)
            let jitter = Mutex(0.0)
            let worker = runner(client, clock: clock, handlers: [handler], random: { jitter.withLock { $0 } })
            var delays: [TimeInterval] = []
            for attempt in 1...4 {
                let before = clock.now
                let outcome = try #require(try await worker.runNext())
                #expect(outcome.outcome == (attempt < 4 ? .retrying : .discarded))
                let rows = try await client.query("SELECT run_at FROM jobs WHERE id = \(id)", logger: TestDatabase.logger)
                for try await runAt in rows.decode(Date.self) { delays.append(runAt.timeIntervalSince(before)) }
                // Not due again before its backoff has passed.
                #expect(try await worker.runNext() == nil)
                clock.advance(by: 10_000)
                jitter.withLock { $0 = 1 }
            }
            // Base 2 s, doubling, jittered within [½, 1]: 1 s (jitter 0), then 4 s, 8 s (jitter 1).
            #expect(delays.prefix(3).map { $0.rounded() } == [1, 4, 8])
            let (state, attempts, lastError) = try await state(client, id)
            #expect(state == "discarded")
            #expect(attempts == 4)
            #expect(lastError?.contains("Flaky") == true)
        }
    }

    @Test("X-5: due jobs of a batched kind run together in one transaction; a job the batch reports failed retries alone; other kinds run one by one")
    func batches() async throws {
        try await TestDatabase.withSchema(migrations: [Migration("CreateEffects", ["CREATE TABLE effects (n int, tx xid8)"])]) { client, _ in
            let clock = ManualClock()
            let batchSizes = Recorder<Int>()
            struct Refused: Error {}
            let batched = JobHandler(kind: "batched", batchSize: 4) { jobs, connection, logger in
                batchSizes.append(jobs.count)
                var failed: [Int64: any Error] = [:]
                for job in jobs {
                    let n = try job.decode(Payload.self).n
                    if n == 2 && job.attempt == 1 { failed[job.id] = Refused(); continue }
                    try await connection.query("INSERT INTO effects VALUES (\(n), pg_current_xact_id())", logger: logger)
                }
                return failed
            }
            let single = JobHandler(kind: "single") { job, connection, logger in
                try await connection.query("INSERT INTO effects VALUES (\(100 + job.decode(Payload.self).n), pg_current_xact_id())", logger: logger)
            }
            var ids: [Int: Int64] = [:]
            for n in 0..<6 { ids[n] = try await schedule(client, kind: "batched", n: n, at: clock.now) }
            for n in 0..<2 { _ = try await schedule(client, kind: "single", n: n, at: clock.now.addingTimeInterval(1)) }
            let worker = runner(client, clock: clock, handlers: [batched, single])
            clock.advance(by: 2)
            let first = try #require(try await worker.runNext())
            #expect(first.jobId == ids[0])
            #expect(first.outcome == .completed)
            while try await worker.runNext() != nil {}
            // 0–3 together, 4–5 together (the oldest due job is batched; singles wait their turn), then
            // each single on its own; job 2 failed in its batch and its backoff is still running.
            #expect(batchSizes.all == [4, 2])
            #expect(try await state(client, try #require(ids[2])).0 == "retryable")
            #expect(try await state(client, try #require(ids[3])).0 == "completed")
            clock.advance(by: 3600)
            while try await worker.runNext() != nil {}
            #expect(batchSizes.all == [4, 2, 1])
            let rows = try await client.query("SELECT n, tx::text FROM effects ORDER BY n", logger: TestDatabase.logger)
            var transactionOf: [Int: String] = [:]
            for try await (n, tx) in rows.decode((Int, String).self) { transactionOf[n] = tx }
            #expect(transactionOf.keys.sorted() == [0, 1, 2, 3, 4, 5, 100, 101])
            #expect(Set([0, 1, 3].map { transactionOf[$0] }).count == 1)
            #expect(transactionOf[4] == transactionOf[5])
            #expect(Set([transactionOf[0], transactionOf[4], transactionOf[2], transactionOf[100], transactionOf[101]]).count == 5)
        }
    }

    @Test("X-5: with a linger, claims that come back short are spaced that far apart across workers; a full batch lets the next go at once")
    func claimSpacing() async throws {
        let spacing = ClaimSpacing()
        let start = ContinuousClock.now
        await spacing.turn(linger: .milliseconds(300))
        #expect(ContinuousClock.now - start < .seconds(5), "the first claim after a quiet spell goes at once")
        await spacing.turn(linger: .milliseconds(300))
        #expect(ContinuousClock.now - start >= .milliseconds(300), "the next waits out the linger")
        spacing.claimed(full: true)
        let backlog = ContinuousClock.now
        await spacing.turn(linger: .seconds(10))
        #expect(ContinuousClock.now - backlog < .seconds(5), "a backlog is claimed without waiting")
        let zero = ContinuousClock.now
        await spacing.turn(linger: .zero)
        #expect(ContinuousClock.now - zero < .seconds(5), "no linger, no wait")
    }

    @Test("graceful shutdown lets a quick job finish and releases a slow one for retry, leaving none running")
    func gracefulShutdown() async throws {
        try await TestDatabase.withSchema { client, _ in
            let clock = ManualClock()
            let started = Recorder<String>()
            let quick = JobHandler(kind: "quick") { _, _, _ in
                started.append("quick")
                try await Task.sleep(for: .milliseconds(300))
            }
            let slow = JobHandler(kind: "slow") { _, _, _ in
                started.append("slow")
                try await Task.sleep(for: .seconds(30))
            }
            let quickId = try await schedule(client, kind: "quick", n: 1, at: clock.now)
            let slowId = try await schedule(client, kind: "slow", n: 2, at: clock.now)
            let worker = runner(client, clock: clock, handlers: [quick, slow], grace: .milliseconds(800))
            let group = ServiceGroup(configuration: .init(services: [worker], logger: TestDatabase.logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                while started.all.count < 2 { try await Task.sleep(for: .milliseconds(20)) }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            #expect(try await state(client, quickId).0 == "completed")
            let (slowState, slowAttempts, _) = try await state(client, slowId)
            #expect(slowState == "retryable")
            #expect(slowAttempts == 0)
            let running = try await client.query("SELECT count(*)::int FROM jobs WHERE state = 'running'", logger: TestDatabase.logger)
            for try await count in running.decode(Int.self) { #expect(count == 0) }
        }
    }
}

@Suite("Bookkeeping pool")
struct BookkeepingPoolTests {
    @Test("X-3: the bookkeeping pool commits without waiting for the disk and plans each statement once, never as a scan; the service's own pool commits durably")
    func commitModes() async throws {
        for (durable, expected) in [(false, "off"), (true, "on")] {
            let client = try Database.makeClient(url: try TestDatabase.url(), schema: "public", poolSize: 1, durableCommits: durable,
                                                 logger: TestDatabase.logger)
            let (setting, planning, scans) = try await TestDatabase.running([client]) {
                (try await client.query("SHOW synchronous_commit", logger: TestDatabase.logger).first(String.self),
                 try await client.query("SHOW plan_cache_mode", logger: TestDatabase.logger).first(String.self),
                 try await client.query("SHOW enable_seqscan", logger: TestDatabase.logger).first(String.self))
            }
            #expect(setting == expected)
            #expect(planning == (durable ? "auto" : "force_generic_plan"))
            #expect(scans == (durable ? "on" : "off"))
        }
    }

    @Test("X-3: on an empty new queue, the bookkeeping pool plans its claims once, on the indexes made for them (a plan it then keeps)")
    func claimsUseTheirIndexes() async throws {
        try await TestDatabase.withSchema { _, schema in
            let ledger = try Database.makeClient(url: try TestDatabase.url(), schema: schema, poolSize: 1, durableCommits: false,
                                                 logger: TestDatabase.logger)
            let plans = try await TestDatabase.running([ledger]) {
                try await ledger.withConnection { connection in
                    var plans: [String] = []
                    for sql in [KitStatements.ClaimJobs.sql, KitStatements.ClaimLane.sql] {
                        try await connection.query(PostgresQuery(unsafeSQL: "PREPARE claim AS \(sql)"), logger: TestDatabase.logger)
                        let arguments = sql == KitStatements.ClaimJobs.sql
                            ? "'\(UUID.random().uuidString)', 60, now(), '{}', '{}'" : "'routing', 10, '{}'"
                        let rows = try await connection.query(PostgresQuery(unsafeSQL: "EXPLAIN EXECUTE claim(\(arguments))"),
                                                              logger: TestDatabase.logger)
                        var plan = ""
                        for try await line in rows.decode(String.self) { plan += line + "\n" }
                        plans.append(plan)
                        try await connection.query("DEALLOCATE claim", logger: TestDatabase.logger)
                    }
                    return plans
                }
            }
            for plan in plans {
                #expect(!plan.contains("Seq Scan on jobs") && !plan.contains("Seq Scan on outbox"), "\(plan)")
            }
            #expect(plans[0].contains("jobs_due"))
            #expect(plans[1].contains("outbox_lane"))
        }
    }
}
