import Foundation
import Logging
import Metrics
import Models
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// A claimed job, as its handler sees it.
package struct Job: Sendable {
    package var id: Int64
    package var kind: String
    /// The payload's JSON text, decoded once by the handler into its own type.
    package var payload: String
    package var attempt: Int
    package var maxAttempts: Int
    /// When it was due; handlers that schedule follow-ups start from here, so "in order" holds
    /// even when the virtual clock jumped far past it.
    package var runAt: Date
    package var leaseToken: UUID
    /// Whether another job was due when this one was claimed.
    package var moreDue = false

    /// The payload as `type`; one that does not decode is `UndecodablePayload`, which discards
    /// the job at once and logs it as an error: retrying cannot make it decode, and a handler
    /// must never run with a half-read payload.
    package func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONCoding.decoder.decode(type, from: Data(payload.utf8))
        } catch {
            throw UndecodablePayload(jobId: id, kind: kind, expected: String(describing: type), problem: String(describing: error))
        }
    }
}

package struct UndecodablePayload: Error, CustomStringConvertible {
    package var jobId: Int64
    package var kind: String
    package var expected: String
    package var problem: String
    package var description: String { "undecodable payload: job \(jobId) (\(kind)) is not a \(expected): \(problem)" }
}

package struct JobHandler: Sendable {
    package var kind: String
    package var maxAttempts: Int
    /// How long one run may take, its database and peer calls included, before it is abandoned
    /// and retried; nil: the runner's `Settings.jobDeadline`.
    package var deadline: Duration?
    /// Runs inside the transaction that completes the job: if the lease was lost meanwhile, the
    /// completion fails its fencing check and the handler's writes roll back with it.
    package var handle: @Sendable (Job, PostgresConnection, Logger) async throws -> Void
    /// How many due jobs of this kind one worker claims and runs in one transaction. A batch
    /// pays for one claim, one commit and one completion however many jobs it holds.
    package var batchSize: Int
    /// For a batch: the jobs that failed, by id, each retried (or discarded) on its own; the
    /// others complete with the transaction. Throwing rolls back and retries the whole batch.
    package var handleBatch: (@Sendable ([Job], PostgresConnection, Logger) async throws -> [Int64: any Error])?

    package init(kind: String, maxAttempts: Int = JobQueue.defaultMaxAttempts, handle: @escaping @Sendable (Job, PostgresConnection, Logger) async throws -> Void) {
        self.kind = kind
        self.maxAttempts = maxAttempts
        self.handle = handle
        self.batchSize = 1
        self.handleBatch = nil
    }

    package init(kind: String, maxAttempts: Int = JobQueue.defaultMaxAttempts, batchSize: Int,
                 handleBatch: @escaping @Sendable ([Job], PostgresConnection, Logger) async throws -> [Int64: any Error]) {
        self.kind = kind
        self.maxAttempts = maxAttempts
        self.batchSize = max(1, batchSize)
        self.handleBatch = handleBatch
        self.handle = { job, connection, logger in
            if let error = try await handleBatch([job], connection, logger)[job.id] { throw error }
        }
    }
}

/// The values of `JobQueue.insertCTE`; a nil `runAt` writes no job. A `uniqueKey` is bound
/// only by the keyed CTE (`insertCTE(…, keyed: true)`).
package struct ScheduledJob: Sendable {
    package var kind: String
    package var payload: String
    package var runAt: Date?
    package var maxAttempts: Int
    package var uniqueKey: String?
    /// Only `JobQueue.schedule`: the key is free again once the job has finished.
    package var keyReusable = false

    package init(kind: String, payload: some Encodable, runAt: Date?, maxAttempts: Int, uniqueKey: String? = nil) throws {
        self.kind = kind
        self.payload = String(decoding: try JSONCoding.encoder.encode(payload), as: UTF8.self)
        self.runAt = runAt
        self.maxAttempts = maxAttempts
        self.uniqueKey = uniqueKey
    }

    package func append(to bindings: inout PostgresBindings, keyed: Bool = false) {
        bindings.append(kind)
        bindings.append(payload)
        if let runAt { bindings.append(runAt) } else { bindings.appendNull() }
        bindings.append(maxAttempts)
        if keyed {
            if let uniqueKey { bindings.append(uniqueKey) } else { bindings.appendNull() }
        }
    }

    /// Wakes the job workers once the statement that wrote it has committed.
    package func requestWakeup(on connection: PostgresConnection, logger: Logger) async throws {
        guard runAt != nil else { return }
        try await Wakeups.request(JobQueue.wakeup, on: connection, logger: logger)
    }
}

/// Spaces a runner's claims `linger` apart across its workers while they come back short (see
/// `JobRunner.Settings.linger`); a full batch lets the next claim go at once.
final class ClaimSpacing: Sendable {
    private let notBefore = Mutex<ContinuousClock.Instant?>(nil)

    func claimed(full: Bool) {
        if full { notBefore.withLock { $0 = nil } }
    }

    /// Waits for this worker's turn to claim, and books the next turn `linger` after it.
    func turn(linger: Duration) async {
        guard linger > .zero else { return }
        let now = ContinuousClock.now
        let start = notBefore.withLock { next -> ContinuousClock.Instant in
            let start = max(now, next ?? now)
            next = start + linger
            return start
        }
        guard start > now else { return }
        try? await cancelWhenGracefulShutdown { try await Task.sleep(until: start, clock: .continuous) }
    }
}

/// The connection a running job's handler holds, once it has one.
final class HeldConnection: Sendable {
    private let value = Mutex<PostgresConnection?>(nil)
    func hold(_ connection: PostgresConnection) { value.withLock { $0 = connection } }
    var connection: PostgresConnection? { value.withLock { $0 } }
}

package struct JobLeaseLost: Error, CustomStringConvertible {
    package var jobId: Int64
    package var description: String { "job \(jobId) lost its lease before it finished" }
}

/// Schedules jobs, inside the caller's transaction when given its connection; the schema on
/// the connection's search path says whose jobs they are.
package struct JobQueue: Sendable {
    package init() {}

    /// Attempts before a job is discarded, unless its kind says otherwise.
    package static let defaultMaxAttempts = 20

    /// Schedules a job. With a `uniqueKey` already taken, nothing new is written and the first
    /// job's id is returned. A key is held for ever unless `keyReusable`: then it is free again
    /// once its job has finished (completed, discarded or cancelled).
    @discardableResult
    package func schedule(kind: String, payload: some Encodable, runAt: Date, uniqueKey: String? = nil, keyReusable: Bool = false,
                          maxAttempts: Int = Self.defaultMaxAttempts, on connection: PostgresConnection, logger: Logger) async throws -> Int64 {
        var job = try ScheduledJob(kind: kind, payload: payload, runAt: runAt, maxAttempts: maxAttempts, uniqueKey: uniqueKey)
        job.keyReusable = keyReusable
        return try await schedule(job, at: runAt, on: connection, logger: logger)
    }

    /// Schedules `job` as `schedule(kind:…)` does; one without a `runAt` is not written (nil).
    @discardableResult
    package func schedule(_ job: ScheduledJob, on connection: PostgresConnection, logger: Logger) async throws -> Int64? {
        guard let runAt = job.runAt else { return nil }
        return try await schedule(job, at: runAt, on: connection, logger: logger)
    }

    private func schedule(_ job: ScheduledJob, at runAt: Date, on connection: PostgresConnection, logger: Logger) async throws -> Int64 {
        // Twice: a reusable key's holder may finish, and free it, between the two statements.
        for _ in 0..<2 {
            var scheduled: Int64?
            for try await id in try await connection.execute(
                KitStatements.ScheduleJob(kind: job.kind, uniqueKey: job.uniqueKey, payload: job.payload, runAt: runAt, maxAttempts: job.maxAttempts,
                                          keyReusable: job.keyReusable),
                logger: logger) {
                scheduled = id
            }
            if let scheduled {
                try await Wakeups.request(Self.wakeup, on: connection, logger: logger)
                return scheduled
            }
            let existing = try await connection.query("SELECT id FROM jobs WHERE unique_key = \(job.uniqueKey)", logger: logger)
            for try await id in existing.decode(Int64.self) { return id }
        }
        throw JobLeaseLost(jobId: -1)
    }

    /// A job written by the caller's own statement, beside the rows it is the job of: the text
    /// of a CTE named `job` inserting one job of `$first` (kind), `$first+1` (payload JSON),
    /// `$first+2` (run at) and `$first+3` (max attempts) for each row of `source`, none when the
    /// run-at is NULL; `keyed`, with the unique key at `$first+4`, which writes nothing when
    /// taken. `ScheduledJob.append` binds them and `ScheduledJob.requestWakeup` wakes the
    /// workers. A request that stores a row and its job then pays one statement, and no
    /// transaction, instead of four.
    package static func insertCTE(first: Int, source: String, name: String = "job", keyed: Bool = false) -> String {
        """
        \(name) AS (
            INSERT INTO jobs (kind, payload, run_at, max_attempts\(keyed ? ", unique_key" : ""))
            SELECT $\(first)::text, $\(first + 1)::text::jsonb, $\(first + 2)::timestamptz, $\(first + 3)::int8\(keyed ? ", $\(first + 4)::text" : "")
            FROM \(source) WHERE $\(first + 2)::timestamptz IS NOT NULL
            \(keyed ? "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING" : "")
            RETURNING id)
        """
    }

    /// The wake-up that rings the job workers' doorbell.
    package static let wakeup = "jobs"

    /// Cancels a job that has not started (an offer accepted before its timeout, …).
    package func cancel(uniqueKey: String, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            UPDATE jobs SET state = 'cancelled', finished_at = now()
            WHERE unique_key = \(uniqueKey) AND state IN ('available', 'retryable')
            """, logger: logger)
    }
}

/// Runs due jobs. Workers claim with `FOR UPDATE SKIP LOCKED`, so replicas never run one job
/// twice; a lease (wall-clock `locked_until`, renewed while the job runs) lets a crashed
/// worker's job be rescued; completion is fenced by the lease token.
package struct JobRunner: Service {
    package struct Settings: Sendable {
        package var workers = 4
        /// How long a claimed job stays its worker's without a renewal (every third of it): a
        /// killed worker's job is taken back by the rescuer this long after its last renewal.
        package var lease: Duration = .seconds(15)
        package var pollInterval: Duration = .seconds(1)
        package var rescueInterval: Duration = .seconds(5)
        /// How long running jobs may go on after a shutdown starts before they are released: well
        /// inside the 10 s after which `docker stop` and scripts/run kill a service, so a job is
        /// handed back at once rather than left leased for a minute.
        package var shutdownGrace: Duration = ShutdownProgress.workGrace
        /// How long a job may run before it is abandoned and retried, unless its kind says
        /// otherwise. Its lease is renewed only until then, so a worker stuck past it (a query
        /// stranded in a pool while the database restarted, a peer that stopped answering) cannot
        /// keep the job from being run again; its writes, if they ever come, are fenced off.
        package var jobDeadline: Duration = .seconds(20)
        /// The deadline of each bookkeeping statement (claim, renewal, retry, rescue).
        package var bookkeepingDeadline: Duration = .seconds(10)
        package var backoff = Backoff(base: 2, cap: 3600)
        /// How long due jobs gather between one claim and the next, whichever workers make them,
        /// unless the last claim was a full batch (a backlog): batched kinds then go out many to a
        /// claim and a commit rather than a few, at the cost of this much delay. Zero: at once.
        package var linger: Duration = .zero
        package init() {}
    }

    /// Runs the handlers' transactions, committed durably.
    let client: PostgresClient
    /// Claims, leases, retries and rescues: bookkeeping that a crash may lose without harm (the
    /// job runs again; the handler's own transaction is what counts), so it commits without
    /// waiting for the disk.
    let ledger: PostgresClient
    let clock: any ServiceClock
    let handlers: [String: JobHandler]
    /// The kinds whose due jobs are claimed several at a time, and how many.
    let batchKinds: [(kind: String, size: Int)]
    let doorbell: Doorbell
    let logger: Logger
    let settings: Settings
    let random: @Sendable () -> Double
    private let claims = ClaimSpacing()

    package init(client: PostgresClient, ledger: PostgresClient? = nil, clock: any ServiceClock, handlers: [JobHandler], doorbell: Doorbell,
                 logger: Logger, settings: Settings = Settings(), random: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }) {
        self.client = client
        self.ledger = ledger ?? client
        self.clock = clock
        self.handlers = Dictionary(handlers.map { ($0.kind, $0) }, uniquingKeysWith: { first, _ in first })
        self.batchKinds = handlers.filter { $0.batchSize > 1 && $0.handleBatch != nil }.map { (kind: $0.kind, size: $0.batchSize) }
        self.doorbell = doorbell
        self.logger = logger
        self.settings = settings
        self.random = random
    }

    /// The services whose jobs gather before they are claimed (`Settings.linger`). Notifications'
    /// sender sends up to 64 messages to a claim; at 1,000 messages/s unspaced claims held about
    /// 8, and the batch's ten statements were a third of a message's database time. 40 ms apart
    /// they hold about 40, for a tenth less CPU than 20 ms apart; a message then leaves at most
    /// 40 ms later. Routing's offers and assignments are the speed to lead: none.
    package static let linger: [ServiceName: Duration] = [.notifications: .milliseconds(40)]

    package func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<settings.workers {
                group.addTask { await workLoop(worker: worker) }
            }
            group.addTask { await rescueLoop() }
        }
    }

    private func workLoop(worker: Int) async {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                // A worker that took the last due job waits for the next doorbell rather than
                // asking again: jobs scheduled meanwhile have rung it.
                let ran = try await runNextJob()
                if ran?.moreDue != true {
                    await withGracefulShutdownHandler {
                        await doorbell.wait(timeout: settings.pollInterval)
                    } onGracefulShutdown: {
                        doorbell.ring()
                    }
                }
                if let ran { claims.claimed(full: ran.full) }
                await claims.turn(linger: settings.linger)
            } catch {
                logger.warning("job worker error", metadata: ["worker": "\(worker)", "error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func rescueLoop() async {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                _ = try await rescueExpired()
                try await recordLag()
            } catch {
                logger.warning("job rescue failed", metadata: ["error": "\(String(reflecting: error))"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: settings.rescueInterval) }
        }
    }

    package enum Outcome: Equatable, Sendable {
        case completed, retrying, discarded, released, leaseLost
    }

    /// Claims one due job, runs it, and records the outcome. `nil` when nothing was due.
    @discardableResult
    package func runNext() async throws -> (jobId: Int64, outcome: Outcome)? {
        try await runNextJob().map { ($0.jobId, $0.outcome) }
    }

    private func runNextJob() async throws -> (jobId: Int64, outcome: Outcome, moreDue: Bool, full: Bool)? {
        let jobs = try await claimBatch()
        guard let first = jobs.first else { return nil }
        // Another was due: one more worker takes it, and so on down the queue.
        if first.moreDue { doorbell.ringOne() }
        let outcomes = await execute(jobs)
        let size = batchKinds.first { $0.kind == first.kind }?.size ?? 1
        return (first.id, outcomes[0], first.moreDue, jobs.count >= size)
    }

    package func claim() async throws -> Job? {
        try await claimBatch().first
    }

    /// The oldest due job and, when its kind runs in batches, the next due ones of that kind,
    /// all under one lease token.
    package func claimBatch() async throws -> [Job] {
        let token = UUID.random()
        let leaseSeconds = Double(settings.lease.components.seconds)
        let statement = KitStatements.ClaimJobs(token: token, leaseSeconds: leaseSeconds, now: clock.now,
                                                batchKinds: batchKinds.map(\.kind), batchSizes: batchKinds.map(\.size))
        let claimed = try await bookkeeping("job claim") { [ledger, logger] in
            var claimed: [(Int64, String, String, Int, Int, Date, Bool)] = []
            for try await row in try await ledger.execute(statement, logger: logger) { claimed.append(row) }
            return claimed
        }
        var jobs: [Job] = []
        for (id, kind, payload, attempts, maxAttempts, runAt, moreDue) in claimed {
            jobs.append(Job(id: id, kind: kind, payload: payload, attempt: attempts, maxAttempts: maxAttempts, runAt: runAt, leaseToken: token,
                            moreDue: moreDue))
        }
        // Oldest first, as they were picked.
        return jobs.sorted { ($0.runAt, $0.id) < ($1.runAt, $1.id) }
    }

    private enum Race {
        /// The jobs the batch handler reported failed, with their errors.
        case finished(Result<[Int64: any Error], any Error>)
        case shutdownGraceOver
        case leaseLost
    }

    package func execute(_ job: Job) async -> Outcome {
        await execute([job])[0]
    }

    /// Runs jobs claimed together (one kind, one lease token) in one transaction.
    package func execute(_ jobs: [Job]) async -> [Outcome] {
        guard let first = jobs.first else { return [] }
        guard let handler = handlers[first.kind] else {
            var outcomes: [Outcome] = []
            for job in jobs { outcomes.append(await fail(job, error: "no handler for job kind \(job.kind)", permanent: true)) }
            return outcomes
        }
        let started = ContinuousClock.now
        let underWay = ShutdownProgress.current.started("job \(jobs.map(\.id)) \(first.kind)")
        defer { ShutdownProgress.current.ended(underWay) }
        let deadline = handler.deadline ?? settings.jobDeadline
        // Whether the handler got its connection: a job stuck in the pool's queue and one stuck
        // in its own work are different faults to an operator.
        let held = HeldConnection()
        let stage: @Sendable () -> String = { held.connection != nil ? "while running its handler" : "while waiting for a database connection" }
        let race: Race = await withTaskGroup(of: Race?.self) { group in
            group.addTask {
                do {
                    // Returns at the deadline even if the handler's transaction never does.
                    let failed = try await Deadline.run(deadline, doing: "job \(first.id) (\(first.kind))") {
                        try await client.transaction(logger: logger) { connection -> [Int64: any Error] in
                            held.hold(connection)
                            var failed: [Int64: any Error] = [:]
                            // A batch handler answers its failures even for one job: what it did for
                            // the others, and for the failed one short of failing (a message's
                            // timeline told it waits for a retry), commits; the failed ones retry.
                            if let batch = handler.handleBatch {
                                failed = try await batch(jobs, connection, logger)
                            } else {
                                try await handler.handle(first, connection, logger)
                            }
                            try await complete(jobs.filter { failed[$0.id] == nil }, on: connection)
                            return failed
                        }
                    }
                    return .finished(.success(failed))
                } catch {
                    return .finished(.failure(error))
                }
            }
            group.addTask {
                // Renews the lease while the handler runs, which is at most until its deadline
                // (the group ends then); stops when the lease is gone.
                while !Task.isCancelled {
                    try? await LoopTimer.sleep(for: settings.lease / 3)
                    if Task.isCancelled { return nil }
                    if (try? await renewLease(jobs)) == false { return .leaseLost }
                }
                return nil
            }
            group.addTask {
                do {
                    try await gracefulShutdown()
                    try await Task.sleep(for: settings.shutdownGrace)
                    return .shutdownGraceOver
                } catch {
                    return nil
                }
            }
            var result: Race = .shutdownGraceOver
            while let next = await group.next() {
                if let next {
                    result = next
                    break
                }
            }
            group.cancelAll()
            return result
        }
        Timer(label: "job_duration_seconds", dimensions: [("kind", first.kind)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(Self.nanoseconds(ContinuousClock.now - started))
        switch race {
        case .finished(.success(let failed)):
            var outcomes: [Outcome] = []
            for job in jobs {
                if let error = failed[job.id] {
                    outcomes.append(await self.failed(job, error))
                } else {
                    outcomes.append(.completed)
                }
            }
            Counter(label: "jobs_finished_total", dimensions: [("kind", first.kind), ("outcome", "completed")])
                .increment(by: outcomes.filter { $0 == .completed }.count)
            return outcomes
        case .finished(.failure(let error as Deadline.Passed)):
            // Abandoned: its lease is no longer renewed, and the retry takes it from it now.
            let reason = "\(error.description) \(stage())"
            logger.warning("job abandoned at its deadline; it will be retried", metadata: ["job": "\(first.id)", "kind": "\(first.kind)", "reason": "\(reason)"])
            // A query stuck on a dead connection ends only when the connection closes (see
            // `HeldConnections`); its transaction rolls back.
            held.connection?.closeNow()
            var outcomes: [Outcome] = []
            for job in jobs { outcomes.append(await fail(job, error: reason, permanent: false)) }
            return outcomes
        case .finished(.failure(let error as JobLeaseLost)):
            logger.warning("job finished after losing its lease; its writes were rolled back", metadata: ["job": "\(error.jobId)"])
            return jobs.map { _ in .leaseLost }
        case .finished(.failure(let error)):
            var outcomes: [Outcome] = []
            for job in jobs { outcomes.append(await self.failed(job, error)) }
            return outcomes
        case .leaseLost:
            logger.warning("job lost its lease while running", metadata: ["job": "\(first.id)"])
            return jobs.map { _ in .leaseLost }
        case .shutdownGraceOver:
            logger.notice("jobs still running at the end of the shutdown grace are released", metadata: [
                "jobs": "\(jobs.map(\.id))", "kind": "\(first.kind)", "stage": "\(stage())"])
            for job in jobs { await release(job) }
            return jobs.map { _ in .released }
        }
    }

    /// A handler's failure: retried, except a payload that cannot be decoded, discarded loudly.
    private func failed(_ job: Job, _ error: any Error) async -> Outcome {
        if let undecodable = error as? UndecodablePayload {
            logger.error("job discarded: its payload cannot be decoded", metadata: [
                "job": "\(job.id)", "kind": "\(job.kind)", "expected": "\(undecodable.expected)", "problem": "\(undecodable.problem)"])
            return await fail(job, error: undecodable.description, permanent: true)
        }
        return await fail(job, error: String(describing: error), permanent: false)
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }

    /// Marks the job completed, only if this worker still holds its lease (fencing).
    package func complete(_ job: Job, on connection: PostgresConnection) async throws {
        try await complete([job], on: connection)
    }

    /// Completes jobs claimed together, all or none: one whose lease was lost undoes the batch.
    package func complete(_ jobs: [Job], on connection: PostgresConnection) async throws {
        guard let first = jobs.first else { return }
        var updated = 0
        for try await _ in try await connection.execute(KitStatements.CompleteJobs(ids: jobs.map(\.id), token: first.leaseToken), logger: logger) {
            updated += 1
        }
        guard updated == jobs.count else { throw JobLeaseLost(jobId: first.id) }
    }

    private func renewLease(_ jobs: [Job]) async throws -> Bool {
        let leaseSeconds = Double(settings.lease.components.seconds)
        let ids = jobs.map(\.id), token = jobs[0].leaseToken
        return try await bookkeeping("lease renewal") { [ledger, logger] in
            try await ledger.query("""
                UPDATE jobs SET locked_until = now() + make_interval(secs => \(leaseSeconds))
                WHERE id = ANY(\(ids)) AND lease_token = \(token) AND state = 'running'
                RETURNING id
                """, logger: logger).collect().count == ids.count
        }
    }

    /// A bookkeeping statement, given up at its deadline: the next poll, or the rescuer once the
    /// lease expires, tries again.
    private func bookkeeping<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Deadline.run(settings.bookkeepingDeadline, doing: what, body)
    }

    /// Retries with capped exponential backoff and jitter on the service clock, or discards
    /// (kept, visible) after the last attempt.
    package func fail(_ job: Job, error: String, permanent: Bool) async -> Outcome {
        let discard = permanent || job.attempt >= job.maxAttempts
        let delay = settings.backoff.delay(afterAttempt: job.attempt, unit: random())
        let retryAt = clock.now.addingTimeInterval(delay)
        let state = discard ? "discarded" : "retryable"
        do {
            let updated = try await bookkeeping("job failure") { [ledger, logger] in
                try await ledger.query("""
                    UPDATE jobs SET state = \(state), last_error = \(error), lease_token = NULL, locked_until = NULL,
                        run_at = CASE WHEN \(discard) THEN run_at ELSE \(retryAt) END,
                        finished_at = CASE WHEN \(discard) THEN now() ELSE NULL END
                    WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                    RETURNING id
                    """, logger: logger).collect().count
            }
            guard updated == 1 else { return .leaseLost }
        } catch {
            logger.error("job failure not recorded; its lease will expire and it will be rescued", metadata: ["job": "\(job.id)"])
        }
        logger.warning("job failed", metadata: ["job": "\(job.id)", "kind": "\(job.kind)", "attempt": "\(job.attempt)", "discarded": "\(discard)", "error": "\(error)"])
        Counter(label: "jobs_finished_total", dimensions: [("kind", job.kind), ("outcome", discard ? "discarded" : "retrying")]).increment()
        return discard ? .discarded : .retrying
    }

    /// Gives a job back untouched (shutdown): due again at once, the attempt not counted.
    package func release(_ job: Job) async {
        _ = try? await bookkeeping("job release") { [ledger, logger] in
            try await ledger.query("""
                UPDATE jobs SET state = 'retryable', attempts = greatest(attempts - 1, 0), lease_token = NULL, locked_until = NULL
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                """, logger: logger).collect()
        }
        logger.notice("job released at shutdown", metadata: ["job": "\(job.id)"])
    }

    /// Returns running jobs whose lease expired (their worker died) to the queue.
    @discardableResult
    package func rescueExpired() async throws -> [Int64] {
        let rescued = try await bookkeeping("job rescue") { [ledger, logger] in
            var rescued: [Int64] = []
            let rows = try await ledger.query("""
            UPDATE jobs SET
                state = CASE WHEN attempts >= max_attempts THEN 'discarded' ELSE 'retryable' END,
                finished_at = CASE WHEN attempts >= max_attempts THEN now() ELSE NULL END,
                lease_token = NULL, locked_until = NULL,
                last_error = 'lease expired: the worker stopped without finishing'
            WHERE state = 'running' AND locked_until < now()
            RETURNING id
            """, logger: logger)
            for try await id in rows.decode(Int64.self) { rescued.append(id) }
            return rescued
        }
        if !rescued.isEmpty {
            logger.warning("rescued jobs whose lease expired", metadata: ["jobs": "\(rescued)"])
            doorbell.ring()
        }
        return rescued
    }

    private func recordLag() async throws {
        let now = clock.now
        try await bookkeeping("job lag") { [ledger, logger] in
            let rows = try await ledger.query("""
                SELECT count(*)::int, coalesce(extract(epoch FROM \(now)::timestamptz - min(run_at)), 0)::float8
                FROM jobs WHERE state IN ('available', 'retryable') AND run_at <= \(now)
                """, logger: logger)
            for try await (due, lag) in rows.decode((Int, Double).self) {
                Gauge(label: "jobs_due").record(due)
                Gauge(label: "jobs_lag_seconds").record(lag)
            }
        }
    }
}
