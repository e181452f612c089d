import Crypto
import Foundation
import Logging
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// One schema change. Once landed, a migration is never edited: its checksum is recorded and a
/// changed one stops the service at boot.
package struct Migration: Sendable {
    package var name: String
    package var statements: [String]

    package init(_ name: String, _ statements: [String]) {
        self.name = name
        self.statements = statements
    }

    var checksum: String {
        SHA256.hash(data: Data(statements.joined(separator: ";\n").utf8)).hexString
    }
}

package struct MigrationError: Error, CustomStringConvertible {
    package var description: String
}

package enum Database {
    /// A pool whose connections all work in the service's own schema.
    /// With `durableCommits` false, a commit returns before its WAL reaches the disk: for the
    /// kit's bookkeeping only (claims, leases, delivery marks), which a crash may lose without
    /// harm. What it did is still seen by every other session at once, and any later durable
    /// commit on the server flushes it too.
    package static func makeClient(url: String, schema: String, poolSize: Int, durableCommits: Bool = true,
                                   tls: DatabaseTLS? = nil, caFile: String? = nil, logger: Logger) throws -> PostgresClient {
        let parsed = try DatabaseURL(url)
        var configuration = PostgresClient.Configuration(
            host: parsed.host, port: parsed.port, username: parsed.username, password: parsed.password,
            database: parsed.database, tls: try tlsSettings(tls ?? parsed.sslmode ?? .disable, caFile: caFile))
        // The bookkeeping pool's statements (the queue claims and marks) are planned once per
        // connection and never by table scan. Planning them for their arguments each time cost
        // more than running them (a job claim: 0.27 ms to plan, 0.08 ms to run; all planning
        // together more than all execution in the speed-to-lead profile). Without the scan ban, a
        // plan made while a new installation's outbox held a few rows went on scanning the whole
        // table (19 M rows read in four minutes) until the first ANALYZE; every one of these
        // statements has an index made for it. Not for the service's own pool: its queries are
        // not all made for an index, and its foreign-key checks are tuned by the default mode.
        configuration.options.additionalStartupParameters = [("search_path", schema), ("application_name", schema)]
            + (durableCommits ? [] : [("synchronous_commit", "off"), ("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off")])
        configuration.options.maximumConnections = poolSize
        // No minimum: PostgresNIO 1.33's pool asserts that it never holds fewer open connections
        // than its minimum when a request finds none idle (`createNewDemandConnectionIfPossible`),
        // but a connection the server closes counts as closing, not open, until it is gone. With a
        // minimum of any size, a database restart under load closed the pool's connections while
        // requests kept coming and the whole service died on that precondition. With none, the
        // pool opens connections on demand (and reopens them after a restart) and closes one that
        // has been idle a minute; a busy service keeps its connections.
        configuration.options.minimumConnections = 0
        // Not pinged while idle: the keep-alive timer runs on Dispatch (a thread hop each), which
        // showed as a tenth of a busy service's CPU. A connection the server dropped fails its
        // next query, which the caller's retry or the job's retry covers.
        configuration.options.keepAliveBehavior = nil
        return PostgresClient(configuration: configuration, backgroundLogger: DatabaseLogHandler.escalating(logger))
    }

    /// `require` encrypts without checking the certificate (libpq's sslmode=require); `verify-full`
    /// checks the chain against the system's roots (and `caFile`'s) and that it names the host.
    static func tlsSettings(_ mode: DatabaseTLS, caFile: String?) throws -> PostgresClient.Configuration.TLS {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch mode {
        case .disable:
            return .disable
        case .require:
            tls.certificateVerification = .none
        case .verifyFull:
            tls.certificateVerification = .fullVerification
            if let caFile {
                tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caFile))]
            }
        }
        return .require(tls)
    }

    /// Applies every migration not yet recorded, in order, each in its own transaction, under an
    /// advisory lock so replicas starting together apply each one exactly once. Each track (the
    /// kit's, the service's) is numbered on its own, so a new kit migration never renumbers a
    /// service's.
    package static func migrate(_ client: PostgresClient, schema: String, tracks: [(String, [Migration])], logger: Logger) async throws {
        try validateIdentifier(schema)
        try await client.withConnection { connection in
            let lockKey = "\(schema).schema_migrations"
            try await connection.query("SELECT pg_advisory_lock(hashtext(\(lockKey)))", logger: logger)
            do {
                try await prepare(connection, schema: schema, logger: logger)
                for (track, migrations) in tracks {
                    try await applyPending(connection, schema: schema, track: track, migrations: migrations, logger: logger)
                }
                try await connection.query("SELECT pg_advisory_unlock(hashtext(\(lockKey)))", logger: logger)
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(hashtext(\(lockKey)))", logger: logger)
                throw error
            }
        }
    }

    private static func prepare(_ connection: PostgresConnection, schema: String, logger: Logger) async throws {
        let exists = try await connection.query("SELECT 1 FROM pg_namespace WHERE nspname = \(schema)", logger: logger)
            .collect().count > 0
        if !exists {
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"), logger: logger)
        }
        try await connection.query(PostgresQuery(unsafeSQL: """
            CREATE TABLE IF NOT EXISTS \(schema).schema_migrations (
                track text NOT NULL, version int NOT NULL, name text NOT NULL, checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (track, version))
            """), logger: logger)
    }

    private static func applyPending(_ connection: PostgresConnection, schema: String, track: String, migrations: [Migration], logger: Logger) async throws {
        var applied: [Int: (String, String)] = [:]
        let rows = try await connection.query(PostgresQuery(
            unsafeSQL: "SELECT version, name, checksum FROM \(schema).schema_migrations WHERE track = $1", binds: try .of(track)), logger: logger)
        for try await (version, name, checksum) in rows.decode((Int, String, String).self) {
            applied[version] = (name, checksum)
        }
        for (index, migration) in migrations.enumerated() {
            let version = index + 1
            if let (name, checksum) = applied[version] {
                guard name == migration.name, checksum == migration.checksum else {
                    throw MigrationError(description: "migration \(track) \(version) of \(schema) was '\(name)' when applied and has changed since; add a new migration instead of editing a landed one")
                }
                continue
            }
            try await connection.withTransaction(logger: logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL search_path = \(schema)"), logger: logger)
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO schema_migrations (track, version, name, checksum) VALUES (\(track), \(version), \(migration.name), \(migration.checksum))",
                    logger: logger)
            }
            logger.info("migration applied", metadata: ["schema": "\(schema)", "track": "\(track)", "version": "\(version)", "name": "\(migration.name)"])
        }
    }

    /// host:port/database of a URL, without its credentials, for messages.
    package static func displayAddress(_ url: String) -> String {
        guard let parsed = try? DatabaseURL(url) else { return "DATABASE_URL" }
        return "\(parsed.host):\(parsed.port)/\(parsed.database)"
    }

    /// The number of migrations recorded, for readiness.
    package static func appliedCount(_ client: PostgresClient, schema: String, logger: Logger) async throws -> Int {
        let rows = try await client.query(PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(schema).schema_migrations"), logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    /// Schema names go into DDL, which cannot take bind parameters.
    package static func validateIdentifier(_ name: String) throws {
        guard !name.isEmpty, name.count < 64, name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }),
              name.first?.isLetter == true
        else { throw MigrationError(description: "'\(name)' is not a valid schema name") }
    }
}

/// The kit's own tables, created first in every service's schema.
package enum KitMigrations {
    package static let all: [Migration] = [
        Migration("CreateOutbox", [
            """
            CREATE TABLE outbox (
                id bigserial PRIMARY KEY,
                event_id uuid NOT NULL,
                event_type text NOT NULL,
                subscriber text NOT NULL,
                payload jsonb NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                next_attempt_at timestamptz NOT NULL DEFAULT now(),
                attempts int NOT NULL DEFAULT 0,
                locked_until timestamptz,
                delivered_at timestamptz,
                gave_up_at timestamptz,
                last_error text,
                UNIQUE (event_id, subscriber))
            """,
            "CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE delivered_at IS NULL AND gave_up_at IS NULL",
        ]),
        Migration("CreateInbox", [
            """
            CREATE TABLE inbox (
                event_id uuid NOT NULL,
                handler text NOT NULL,
                event_type text NOT NULL,
                handled_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (event_id, handler))
            """,
        ]),
        Migration("CreateJobs", [
            """
            CREATE TABLE jobs (
                id bigserial PRIMARY KEY,
                kind text NOT NULL,
                unique_key text,
                payload jsonb NOT NULL DEFAULT '{}',
                run_at timestamptz NOT NULL,
                state text NOT NULL DEFAULT 'available'
                    CHECK (state IN ('available', 'running', 'retryable', 'completed', 'discarded', 'cancelled')),
                attempts int NOT NULL DEFAULT 0,
                max_attempts int NOT NULL DEFAULT 20,
                lease_token uuid,
                locked_until timestamptz,
                last_error text,
                created_at timestamptz NOT NULL DEFAULT now(),
                finished_at timestamptz)
            """,
            "CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL",
            "CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state IN ('available', 'retryable')",
            "CREATE INDEX jobs_running ON jobs (locked_until) WHERE state = 'running'",
        ]),
        // One NOTIFY per statement that adds outbox rows, sent on commit, so publishing costs no
        // extra round trip.
        Migration("OutboxAddNotifyTrigger", [
            """
            CREATE FUNCTION outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('wake_' || TG_TABLE_SCHEMA, 'outbox');
                RETURN NULL;
            END $$
            """,
            "CREATE TRIGGER outbox_wake AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_wake()",
        ]),
        // Each subscriber has its own delivery lane, which reads its pending rows in order; the
        // wake-up names the subscribers written to, so the other lanes stay asleep.
        Migration("OutboxAddSubscriberLanes", [
            "CREATE INDEX outbox_lane ON outbox (subscriber, id) WHERE delivered_at IS NULL AND gave_up_at IS NULL",
            "DROP TRIGGER outbox_wake ON outbox",
            """
            CREATE OR REPLACE FUNCTION outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE lanes text;
            BEGIN
                SELECT string_agg(DISTINCT subscriber, ',') INTO lanes FROM written;
                IF lanes IS NOT NULL THEN
                    PERFORM pg_notify('wake_' || TG_TABLE_SCHEMA, 'outbox:' || lanes);
                END IF;
                RETURN NULL;
            END $$
            """,
            "CREATE TRIGGER outbox_wake AFTER INSERT ON outbox REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION outbox_wake()",
        ]),
        // Scheduling a job wakes a worker on commit without a statement of its own.
        Migration("JobsAddNotifyTrigger", [
            """
            CREATE FUNCTION jobs_wake() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM written) THEN
                    PERFORM pg_notify('wake_' || TG_TABLE_SCHEMA, 'jobs');
                END IF;
                RETURN NULL;
            END $$
            """,
            "CREATE TRIGGER jobs_wake AFTER INSERT ON jobs REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION jobs_wake()",
        ]),
        // The payload is our own encoder's output, written once and sent as it is: as jsonb it was
        // parsed on every insert and printed again on every claim, once per subscriber. Stored
        // out of line uncompressed, so large import events cost no compression either.
        Migration("OutboxPayloadAsText", [
            "ALTER TABLE outbox ALTER COLUMN payload TYPE text USING payload::text",
            "ALTER TABLE outbox ALTER COLUMN payload SET STORAGE EXTERNAL",
        ]),
        // An event's payload is written once, whatever its number of subscribers: a contact event
        // went to five, and a 10,000-row import wrote 24 MB of outbox for 5 MB of events. Rows
        // written before keep their own payload.
        Migration("CreateOutboxEvents", [
            """
            CREATE TABLE outbox_events (
                event_id uuid PRIMARY KEY,
                payload text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now())
            """,
            "ALTER TABLE outbox_events ALTER COLUMN payload SET STORAGE EXTERNAL",
            "ALTER TABLE outbox ALTER COLUMN payload DROP NOT NULL",
        ]),
        // Wake-ups are sent after the commit (`Wakeups`), no longer by triggers inside it.
        Migration("WakeAfterCommit", [
            "DROP TRIGGER outbox_wake ON outbox",
            "DROP FUNCTION outbox_wake()",
            "DROP TRIGGER jobs_wake ON jobs",
            "DROP FUNCTION jobs_wake()",
        ]),
        // Served the one queue of every subscriber; each lane claims by `outbox_lane` now, and an
        // index no statement reads was still written for every event's every subscriber.
        Migration("DropOutboxPending", [
            "DROP INDEX outbox_pending",
        ]),
        // Each event's delivery rows are updated twice (claimed, then delivered). Half of every
        // page is left free so the claim, which changes no indexed column, stays on its page
        // without new index entries (a third of the updates did; now most). The unique key on
        // (event, subscriber) was written on every insert and every update that moved a row,
        // five times for each new lead, to catch a second publication of the same event: the
        // publishing statement now writes delivery rows only for a payload it newly stored.
        Migration("OutboxRoomForClaims", [
            "ALTER TABLE outbox SET (fillfactor = 50)",
            "ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_subscriber_key",
        ]),
        // A unique key is held for ever by default (a decision's job, a period's run: once). A job
        // scheduled with a reusable key gives it up when it finishes (completed, discarded or
        // cancelled), as River's unique states allow, so the same key may be scheduled again
        // (a follow-up check per contact, each time one is due). The trigger's WHEN is evaluated
        // without calling the function, so other jobs' updates pay nothing for it.
        Migration("JobsReusableKeys", [
            "ALTER TABLE jobs ADD COLUMN key_reusable boolean NOT NULL DEFAULT false, ADD COLUMN finished_key text",
            """
            CREATE FUNCTION jobs_release_key() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                NEW.finished_key := NEW.unique_key;
                NEW.unique_key := NULL;
                RETURN NEW;
            END $$
            """,
            """
            CREATE TRIGGER jobs_release_key BEFORE UPDATE OF state ON jobs FOR EACH ROW
            WHEN (NEW.key_reusable AND NEW.unique_key IS NOT NULL AND NEW.state IN ('completed', 'discarded', 'cancelled'))
            EXECUTE FUNCTION jobs_release_key()
            """,
        ]),
        // Retention finds old rows by time: block-range indexes, a few pages each and next to
        // free to keep up, since rows arrive (and finish) roughly in time order.
        Migration("RetentionIndexes", [
            "CREATE INDEX jobs_finished ON jobs USING brin (finished_at)",
            "CREATE INDEX inbox_handled ON inbox USING brin (handled_at)",
            "CREATE INDEX outbox_delivered ON outbox USING brin (delivered_at)",
        ]),
    ]
}

/// The wake-ups (NOTIFY) a transaction's outbox rows and jobs call for, sent once it has committed.
/// PostgreSQL queues notifications under one database-wide lock that a committing transaction
/// holds until its commit is flushed to disk, so a NOTIFY inside every business transaction made
/// them all commit one at a time: at 30 leads/s commits queued 35–50 ms behind each other's
/// flushes. Sent afterwards by a statement that writes nothing, the lock is held for microseconds.
/// A wake-up lost to a crash in between only waits for the listeners' next poll.
package final class Wakeups: Sendable {
    @TaskLocal package static var pending: Wakeups?

    private let payloads = Mutex<Set<String>>([])

    /// Asks for a wake-up of this schema's listeners: after the commit inside `transaction`,
    /// otherwise with the statement's own commit.
    package static func request(_ payload: String, on connection: PostgresConnection, logger: Logger) async throws {
        if let pending {
            pending.payloads.withLock { _ = $0.insert(payload) }
        } else {
            try await connection.query("SELECT pg_notify('wake_' || current_schema(), \(payload))", logger: logger)
        }
    }

    /// Sends them once the transaction has committed, without holding up its caller: to this
    /// process's own listener directly when it has one for `client`, by NOTIFY otherwise.
    fileprivate func sendAfterCommit(on client: PostgresClient, logger: Logger) {
        let payloads = payloads.withLock { $0 }
        guard !payloads.isEmpty else { return }
        let key = ObjectIdentifier(client)
        if let ring = Self.inProcess.withLock({ $0[key] }) {
            for payload in payloads { ring(payload) }
            return
        }
        let first = Self.inFlight.withLock { sending -> Bool in
            if sending[key] != nil {
                sending[key]?.formUnion(payloads)
                return false
            }
            sending[key] = []
            return true
        }
        guard first else { return }
        Task { await Self.send(payloads, on: client, key: key, logger: logger) }
    }

    /// The process's own listener for the work written through these clients. The work a
    /// service writes is done by that service's own dispatcher and workers, so a bell rung in
    /// the process replaces the NOTIFY: no statement after the commit, and no wake-up of every
    /// listening connection of the database (PostgreSQL signals them all for any channel).
    /// Another replica finds the work at its next poll, or when this one is gone.
    package static func ringInProcess(for clients: [PostgresClient], _ ring: @escaping @Sendable (String) -> Void) {
        inProcess.withLock { listeners in
            for client in clients { listeners[ObjectIdentifier(client)] = ring }
        }
    }

    /// Back to NOTIFY for these clients (tests, whose clients come and go).
    package static func stopRingingInProcess(for clients: [PostgresClient]) {
        inProcess.withLock { listeners in
            for client in clients { listeners[ObjectIdentifier(client)] = nil }
        }
    }

    private static let inProcess = Mutex<[ObjectIdentifier: @Sendable (String) -> Void]>([:])

    /// Per client, the payloads asked for while its last NOTIFY was on the way: under load one
    /// statement then wakes the listeners for many commits, instead of one statement each. An
    /// entry exists only while its sending task runs (and holds the client).
    private static let inFlight = Mutex<[ObjectIdentifier: Set<String>]>([:])

    private static func send(_ first: Set<String>, on client: PostgresClient, key: ObjectIdentifier, logger: Logger) async {
        var payloads = first
        while !payloads.isEmpty {
            do {
                try await client.query("SELECT pg_notify('wake_' || current_schema(), p) FROM unnest(\(Array(payloads))) AS p", logger: logger)
            } catch {
                logger.debug("wake-up not sent; the listeners' poll will find the work", metadata: ["error": "\(String(reflecting: error))"])
            }
            payloads = inFlight.withLock { sending in
                let next = sending[key] ?? []
                if next.isEmpty { sending[key] = nil } else { sending[key] = [] }
                return next
            }
        }
    }
}

extension PostgresClient {
    /// A transaction on a pooled connection that throws the body's own error (an `APIError`, a
    /// `JobLeaseLost`) and never waits on a connection that is gone. PostgresNIO 1.33 writes each
    /// statement to its channel without a promise: once a closed channel's handlers are removed,
    /// a statement written to it is dropped and its caller waits for ever. Its `withTransaction`
    /// sends ROLLBACK after any failure, also when the failure was the connection closing, so a
    /// request whose connection the database restart cut waited until the process stopped (26 s
    /// in the fault harness). The server rolls back a dead connection's transaction itself.
    package func transaction<Result: Sendable>(
        logger: Logger, isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        try await sendingWakeups(afterFailure: false, logger: logger) {
            try await withConnection(isolation: isolation) { connection in
                let held = HeldConnections.current.hold(connection)
                defer { HeldConnections.current.release(held) }
                try connection.ensureOpen()
                try await connection.query("BEGIN", logger: logger)
                let result: Result
                do {
                    result = try await body(connection)
                } catch {
                    if !connection.isClosed {
                        do {
                            try await connection.query("ROLLBACK", logger: logger)
                        } catch {
                            // Its state unknown, it must not go back to the pool inside a transaction.
                            connection.closeNow()
                        }
                    }
                    throw error
                }
                try await connection.query("COMMIT", logger: logger)
                return result
            }
        }
    }

    /// A pooled connection outside any transaction, each statement committing on its own, whose
    /// wake-ups are sent after it as a transaction's are: a request that writes everything in one
    /// statement pays neither BEGIN nor COMMIT (two of the six round trips a message took).
    package func autocommit<Result: Sendable>(
        logger: Logger, isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        // What committed before a failure still wants its listeners.
        try await sendingWakeups(afterFailure: true, logger: logger) {
            try await withConnection(isolation: isolation) { connection in
                let held = HeldConnections.current.hold(connection)
                defer { HeldConnections.current.release(held) }
                try connection.ensureOpen()
                return try await body(connection)
            }
        }
    }

    /// Runs `work` collecting the wake-ups it asks for, and sends them once it is done.
    private func sendingWakeups<Result: Sendable>(
        afterFailure: Bool, logger: Logger, isolation: isolated (any Actor)? = #isolation,
        _ work: () async throws -> sending Result
    ) async throws -> sending Result {
        let wakeups = Wakeups()
        do {
            let result = try await Wakeups.$pending.withValue(wakeups) { try await work() }
            wakeups.sendAfterCommit(on: self, logger: logger)
            return result
        } catch {
            if afterFailure { wakeups.sendAfterCommit(on: self, logger: logger) }
            throw error
        }
    }
}

/// The connections our transactions and autocommit blocks hold, with when they took them, so
/// that a wait on one that will never answer ends. PostgresNIO 1.33 can leave a query waiting for
/// ever on a connection the server dropped mid-query (seen when a database restart cut
/// connections: the query neither answered nor failed, and the drop surfaced only at the next
/// write); closing the connection fails that query, frees the caller (its transaction rolls
/// back), and the pool opens a new one. `ConnectionSweeper` does the closing: past
/// `stuckLimit`, and when a stop has given the work its grace.
package final class HeldConnections: Sendable {
    package static let current = HeldConnections()

    /// No request, event or job of ours holds a connection near this long.
    package static let stuckLimit: Duration = .seconds(60)

    private struct State {
        var nextID: UInt64 = 0
        var held: [UInt64: (connection: PostgresConnection, since: ContinuousClock.Instant)] = [:]
    }

    private let state = Mutex(State())

    package init() {}

    package func hold(_ connection: PostgresConnection) -> UInt64 {
        let now = ContinuousClock.now
        return state.withLock { state in
            defer { state.nextID += 1 }
            state.held[state.nextID] = (connection, now)
            return state.nextID
        }
    }

    package func release(_ id: UInt64) {
        _ = state.withLock { $0.held.removeValue(forKey: id) }
    }

    package var count: Int { state.withLock { $0.held.count } }

    /// Closes the connections held for longer than `limit`; answers how many.
    @discardableResult
    package func close(heldLongerThan limit: Duration, now: ContinuousClock.Instant = .now) -> Int {
        let stuck = state.withLock { state in
            state.held.filter { now - $0.value.since > limit }.map(\.value.connection)
        }
        for connection in stuck { connection.closeNow() }
        return stuck.count
    }
}

/// Closes held connections that are stuck (see `HeldConnections`). While the service runs, those
/// held past `HeldConnections.stuckLimit`; once a stop has begun, every one still held when the
/// work's grace is over, so a request or job stuck on a dead connection fails (and rolls back)
/// instead of holding the HTTP server's drain or the pool's close until the watchdog.
struct ConnectionSweeper: Service {
    let connections: HeldConnections
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let closed = connections.close(heldLongerThan: HeldConnections.stuckLimit)
            if closed > 0 {
                logger.warning("database connections held past their limit were closed so their waiting queries fail", metadata: ["count": "\(closed)"])
            }
            try? await cancelWhenGracefulShutdown { try await LoopTimer.sleep(for: .seconds(5)) }
        }
        let began = ShutdownProgress.current.stopping()
        while connections.count > 0 && !Task.isCancelled {
            if ContinuousClock.now - began >= ShutdownProgress.workGrace {
                let closed = connections.close(heldLongerThan: .zero)
                logger.notice("database connections still held at the end of the stop's grace were closed", metadata: ["count": "\(closed)"])
                return
            }
            try? await LoopTimer.sleep(for: .milliseconds(100))
        }
    }
}

extension PostgresConnection {
    /// Closes the connection without waiting: what waits on it fails, and the pool drops it.
    package func closeNow() {
        let closing: EventLoopFuture<Void> = close()
        closing.whenComplete { _ in }
    }

    /// Throws `DatabaseUnavailable` for a connection already closed (the pool may hand one out
    /// before it has seen it close): a statement written to it would never answer.
    package func ensureOpen() throws {
        if isClosed { throw DatabaseUnavailable() }
    }
}

/// The database cannot be reached or cut the connection: the caller may try again shortly.
package struct DatabaseUnavailable: Error, CustomStringConvertible {
    package init() {}
    package var description: String { "the database connection is closed" }

    /// Whether `error` says the database is away (restarting, unreachable, shutting down, a
    /// connection cut), not that the statement was wrong.
    package static func describes(_ error: any Error) -> Bool {
        if error is DatabaseUnavailable { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown, .poolClosed:
            return true
        case .server:
            // Class 08 (connection exception) and 57P01–57P03 (shutdown, crash, not yet accepting).
            guard let state = error.serverInfo?[.sqlState] else { return false }
            return state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state)
        default:
            return false
        }
    }
}

extension PostgresBindings {
    /// Bindings for a query built with `PostgresQuery(unsafeSQL:)` (column lists kept in one
    /// place); the values are still bound, never spliced.
    package static func of<each Value: PostgresEncodable & Sendable>(_ values: repeat each Value) throws -> PostgresBindings {
        var bindings = PostgresBindings()
        try bindings.append(all: repeat each values)
        return bindings
    }

    /// Binds the values after those already bound, in order.
    package mutating func append<each Value: PostgresEncodable & Sendable>(all values: repeat each Value) throws {
        repeat try append(each values, context: .default)
    }
}

/// PostgreSQL's text form of a text array, for a row's array inside a multi-row `unnest`
/// (PostgresNIO binds arrays of values, not arrays of arrays). Every element is quoted, so commas,
/// braces, spaces and the word NULL stay text.
package enum PostgresArrayLiteral {
    package static func text(_ values: [String]) -> String {
        var literal = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { literal += "," }
            literal += "\""
            if value.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                for scalar in value.unicodeScalars {
                    if scalar == "\"" || scalar == "\\" { literal.unicodeScalars.append("\\") }
                    literal.unicodeScalars.append(scalar)
                }
            } else {
                literal += value
            }
            literal += "\""
        }
        return literal + "}"
    }
}

extension PostgresRowSequence {
    /// The first row's single column, or nil when there is no row.
    package func first<Value: PostgresDecodable>(_ type: Value.Type) async throws -> Value? {
        for try await value in decode(Value.self) { return value }
        return nil
    }
}

/// The pool's own log, with its reports of a database it cannot reach raised to warning:
/// PostgresNIO logs a failed connection attempt at info, and an operator must see a database that
/// went away at the level they watch.
package struct DatabaseLogHandler: LogHandler {
    /// What PostgresNIO's pool says when it cannot open a connection.
    static let unreachable: Set<String> = ["Connection creation failed"]

    var base: any LogHandler

    package static func escalating(_ logger: Logger) -> Logger {
        var escalating = logger
        escalating.handler = DatabaseLogHandler(base: logger.handler)
        return escalating
    }

    package var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    /// Lets the pool's info reach `log` whatever the service's level, which it applies itself.
    package var logLevel: Logger.Level {
        get { min(base.logLevel, .info) }
        set { base.logLevel = newValue }
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    package func log(event: LogEvent) {
        var event = event
        if event.level < .warning, Self.unreachable.contains(event.message.description) {
            event.level = .warning
            event.message = "database unreachable: connection attempt failed"
        }
        guard event.level >= base.logLevel else { return }
        base.log(event: event)
    }
}
