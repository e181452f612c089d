import Foundation
import PostgresNIO

/// The kit's statements that run for every event and every job, prepared once per connection:
/// PostgreSQL then parses and plans each of them once instead of on every call, which showed as
/// the largest single cost of the database in the speed-to-lead profile.
enum KitStatements {
    /// Writes each event's payload once and one delivery row per (event, subscriber).
    enum PublishEvents: PreparedSQL {
        static let sql = "WITH \(Outbox.insertCTEs(first: 1))\nSELECT"
    }

    /// Marks the lane's rows just delivered (`$3`, none when empty) and claims its next due rows,
    /// oldest first, skipping rows another replica holds: a busy lane's one statement between
    /// two deliveries. The claim reads the table as it was before the marks, so it passes over
    /// the rows being marked by id. A row's payload is its event's, or its own when written
    /// before payloads were shared.
    struct ClaimLane: PostgresPreparedStatement {
        static let sql = """
            WITH delivered AS (\(MarkDelivered.marking(ids: "$3")))
            UPDATE outbox SET locked_until = now() + interval '30 seconds', attempts = attempts + 1
            WHERE id IN (
                SELECT id FROM outbox
                WHERE subscriber = $1 AND delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
                  AND (locked_until IS NULL OR locked_until < now()) AND id <> ALL($3::bigint[])
                ORDER BY id LIMIT $2
                FOR UPDATE SKIP LOCKED)
            RETURNING id, subscriber,
                coalesce(outbox.payload, (SELECT e.payload FROM outbox_events e WHERE e.event_id = outbox.event_id)), attempts, event_type
            """
        typealias Row = (Int64, String, String, Int, String)
        var subscriber: String
        var limit: Int
        var delivered: [Int64] = []

        func makeBindings() throws -> PostgresBindings {
            try .of(subscriber, limit, delivered)
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {
            try row.decode(Row.self)
        }
    }

    struct MarkDelivered: PostgresPreparedStatement {
        static let sql = marking(ids: "$1")
        /// Marks the rows whose ids are the array parameter `ids` delivered.
        static func marking(ids: String) -> String {
            "UPDATE outbox SET delivered_at = now(), locked_until = NULL, last_error = NULL WHERE id = ANY(\(ids)::bigint[])"
        }
        typealias Row = ()
        var ids: [Int64]

        func makeBindings() throws -> PostgresBindings {
            try .of(ids)
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {}
    }

    /// Records (event, handler) pairs; answers the ones not seen before.
    struct RecordInbox: PostgresPreparedStatement {
        static let sql = """
            INSERT INTO inbox (event_id, handler, event_type)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
            ON CONFLICT DO NOTHING RETURNING event_id, handler
            """
        typealias Row = (UUID, String)
        var eventIds: [UUID]
        var handlers: [String]
        var types: [String]

        func makeBindings() throws -> PostgresBindings {
            try .of(eventIds, handlers, types)
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {
            try row.decode(Row.self)
        }
    }

    struct ScheduleJob: PostgresPreparedStatement {
        static let sql = """
            INSERT INTO jobs (kind, unique_key, payload, run_at, max_attempts, key_reusable)
            VALUES ($1, $2, $3::jsonb, $4, $5, $6)
            ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
            RETURNING id
            """
        typealias Row = Int64
        var kind: String
        var uniqueKey: String?
        var payload: String
        var runAt: Date
        var maxAttempts: Int
        var keyReusable = false

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 6)
            try bindings.append(kind)
            try bindings.append(uniqueKey)
            try bindings.append(payload)
            try bindings.append(runAt)
            try bindings.append(maxAttempts)
            try bindings.append(keyReusable)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {
            try row.decode(Row.self)
        }
    }

    /// Takes the oldest due job with a fresh lease and, when its kind is one of `batchKinds`, up
    /// to that kind's size of its next due jobs of the same kind, under the same lease.
    struct ClaimJobs: PostgresPreparedStatement {
        static let sql = """
            WITH head AS (
                SELECT kind FROM jobs
                WHERE state IN ('available', 'retryable') AND run_at <= $3
                ORDER BY run_at, id LIMIT 1
                FOR UPDATE SKIP LOCKED),
            picked AS (
                SELECT id FROM jobs
                WHERE state IN ('available', 'retryable') AND run_at <= $3 AND kind = (SELECT kind FROM head)
                ORDER BY run_at, id
                LIMIT coalesce((SELECT b.size FROM unnest($4::text[], $5::bigint[]) AS b(kind, size) WHERE b.kind = (SELECT kind FROM head)), 1)
                FOR UPDATE SKIP LOCKED)
            UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = $1,
                locked_until = now() + make_interval(secs => $2)
            WHERE id IN (SELECT id FROM picked)
            RETURNING id, kind, payload::text, attempts, max_attempts, run_at,
                EXISTS (SELECT 1 FROM jobs due WHERE due.state IN ('available', 'retryable') AND due.run_at <= $3
                        AND due.id NOT IN (SELECT id FROM picked))
            """
        /// The last column says whether another job was due besides these.
        typealias Row = (Int64, String, String, Int, Int, Date, Bool)
        var token: UUID
        var leaseSeconds: Double
        var now: Date
        var batchKinds: [String]
        var batchSizes: [Int]

        func makeBindings() throws -> PostgresBindings {
            try .of(token, leaseSeconds, now, batchKinds, batchSizes)
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {
            try row.decode(Row.self)
        }
    }

    /// Completes jobs only while this worker still holds their lease (fencing).
    struct CompleteJobs: PostgresPreparedStatement {
        static let sql = """
            UPDATE jobs SET state = 'completed', finished_at = now(), lease_token = NULL, locked_until = NULL, last_error = NULL
            WHERE id = ANY($1::bigint[]) AND lease_token = $2 AND state = 'running'
            RETURNING id
            """
        typealias Row = Int64
        var ids: [Int64]
        var token: UUID

        func makeBindings() throws -> PostgresBindings {
            try .of(ids, token)
        }

        func decodeRow(_ row: PostgresRow) throws -> Row {
            try row.decode(Row.self)
        }
    }
}
