import Foundation
import Hummingbird
import Logging
import Models
import NIOCore
import PostgresNIO

/// Liveness, readiness and Prometheus metrics: open routes, for probes and scrapers.
struct HealthController {
    let client: PostgresClient
    let schema: String
    let migrationCount: Int
    let gate: StartupGate
    let logger: Logger

    struct Status: ResponseEncodable {
        var status: String
        var checks: [String: String]
    }

    func register(on group: RouterGroup<AppContext>) {
        group.get("/health/live") { _, _ in Status(status: "ok", checks: [:]) }
        group.get("/health/ready") { _, _ -> JSONResponse<[String: JSONValue]> in
            var checks: [String: JSONValue] = [:]
            var ready = gate.isOpen
            checks["startup"] = .string(gate.isOpen ? "ok" : "starting")
            do {
                let applied = try await Database.appliedCount(client, schema: schema, logger: logger)
                checks["database"] = .string("ok")
                checks["migrations"] = .string("\(applied)/\(migrationCount)")
                if applied != migrationCount { ready = false }
            } catch {
                checks["database"] = .string("unreachable")
                ready = false
            }
            return JSONResponse(ready ? .ok : .serviceUnavailable, ["status": .string(ready ? "ready" : "not_ready"), "checks": .object(checks)])
        }
        group.get("/metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: Observability.registry.emitToBuffer())))
        }
    }
}

/// The virtual clock's admin routes; registered only under `CLOCK=virtual`.
struct AdminClockController {
    let client: PostgresClient
    let clock: VirtualClock
    let schema: String
    let jobsBell: Doorbell
    let logger: Logger
    /// One move may jump at most this far, so a typo cannot fling the stack into the far future.
    static let maximumStep: TimeInterval = 400 * 86400

    struct ClockState: ResponseEncodable {
        var now: Date
    }

    struct Move: Decodable {
        var now: Date?
        var advanceSeconds: Double?
    }

    struct Idle: ResponseEncodable {
        var idle: Bool
        var now: Date
        var dueJobs: Int
        var runningJobs: Int
        /// Failed jobs waiting on the clock for their retry: work still to do, though not due.
        var retryingJobs: Int
        var nextRetryAt: Date?
        var pendingEvents: Int
    }

    func register(on group: RouterGroup<AppContext>) {
        group.get("/v1/admin/clock") { _, context -> ClockState in
            try context.requireIdentity().require(.platformAdmin, .service)
            return ClockState(now: clock.now)
        }
        group.post("/v1/admin/clock") { request, context -> ClockState in
            try context.requireIdentity().require(.platformAdmin, .service)
            let move = try await request.decodeJSON(as: Move.self, context: context)
            let current = try await SharedClockStore.read(client, logger: logger) ?? clock.now
            let target: Date
            switch (move.now, move.advanceSeconds) {
            case (let now?, nil):
                target = now
            case (nil, let seconds?):
                guard seconds.isFinite, seconds >= 0 else {
                    throw APIError.validation("advanceSeconds", "advanceSeconds must be zero or more")
                }
                target = current.addingTimeInterval(seconds)
            default:
                throw APIError.validation("now", "give exactly one of now or advanceSeconds")
            }
            guard target >= current else {
                throw APIError.validation("now", "the clock only moves forward; it is \(RFC3339.string(from: current))", code: "clock_backwards")
            }
            guard target.timeIntervalSince(current) <= Self.maximumStep else {
                throw APIError.validation(move.now != nil ? "now" : "advanceSeconds", "one move may go at most 400 days forward")
            }
            let moved = try await SharedClockStore.advance(client, to: target, logger: logger)
            clock.advance(to: moved)
            jobsBell.ring()
            return ClockState(now: moved)
        }
        group.get("/v1/admin/idle") { _, context -> Idle in
            try context.requireIdentity().require(.platformAdmin, .service)
            // Read the shared row, not the cache: a move this service has not heard of yet
            // must not look idle.
            if let shared = try await SharedClockStore.read(client, logger: logger), shared > clock.now {
                clock.advance(to: shared)
                jobsBell.ring()
            }
            let now = clock.now
            let rows = try await client.query("""
                SELECT
                  (SELECT count(*)::int FROM jobs WHERE state IN ('available', 'retryable') AND run_at <= \(now)),
                  (SELECT count(*)::int FROM jobs WHERE state = 'running'),
                  (SELECT count(*)::int FROM jobs WHERE state = 'retryable' AND run_at > \(now)),
                  (SELECT min(run_at) FROM jobs WHERE state = 'retryable' AND run_at > \(now)),
                  (SELECT count(*)::int FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL)
                """, logger: logger)
            var idle = Idle(idle: false, now: now, dueJobs: 0, runningJobs: 0, retryingJobs: 0, pendingEvents: 0)
            for try await (due, running, retrying, nextRetry, pending) in rows.decode((Int, Int, Int, Date?, Int).self) {
                idle = Idle(idle: due + running + retrying + pending == 0, now: now, dueJobs: due, runningJobs: running,
                            retryingJobs: retrying, nextRetryAt: nextRetry, pendingEvents: pending)
            }
            return idle
        }
    }
}
