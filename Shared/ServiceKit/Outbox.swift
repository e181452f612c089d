import Foundation
import Logging
import Metrics
import Models
import PostgresNIO
import ServiceLifecycle

/// Writes events in the caller's transaction, a delivery row per subscriber; committed with the change
/// or not at all.
package struct Outbox: Sendable {
    package let service: ServiceName
    package let clock: any ServiceClock

    package init(service: ServiceName, clock: any ServiceClock) {
        self.service = service
        self.clock = clock
    }

    /// Makes an envelope stamped with the service clock.
    package func envelope(_ type: String, version: Int, companyId: UUID?, subjectId: UUID?, data: some Encodable) throws -> OutgoingEvent {
        envelope(type, version: version, companyId: companyId, subjectId: subjectId, dataJSON: try JSONCoding.string(data))
    }

    /// The same with a payload already encoded (`JSONCoding`'s form).
    package func envelope(_ type: String, version: Int, companyId: UUID?, subjectId: UUID?, dataJSON: String) -> OutgoingEvent {
        OutgoingEvent(header: EventHeader(type: type, version: version, occurredAt: clock.now, companyId: companyId, subjectId: subjectId),
                      dataJSON: dataJSON)
    }

    /// Stores `event` for every subscriber; `connection` must be inside the change's transaction.
    package func publish(_ event: OutgoingEvent, on connection: PostgresConnection, logger: Logger) async throws {
        try await publish([event], on: connection, logger: logger)
    }

    /// Stores many events in one statement: each payload once, a delivery row per subscriber.
    package func publish(_ events: [OutgoingEvent], on connection: PostgresConnection, logger: Logger) async throws {
        let rows = try OutboxRows(events)
        guard !rows.isEmpty else { return }
        try await connection.prepared(KitStatements.PublishEvents.self, rows.bindings(), logger: logger)
        try await rows.requestWakeup(on: connection, logger: logger)
    }

    /// Events written by the caller's own statement, beside the rows they tell of: the text of
    /// two CTEs storing the events of `OutboxRows` bound at `$first … $first+4`, when `condition`
    /// (SQL, e.g. `EXISTS (SELECT FROM message)`) holds. An event already stored (published
    /// again) gets no second set of delivery rows.
    package static func insertCTEs(first: Int, condition: String = "true") -> String {
        insertCTEs(first: first, payloads: "SELECT * FROM unnest($\(first)::uuid[], $\(first + 1)::text[]) WHERE \(condition)")
    }

    /// As `insertCTEs`, for a statement that stores some of its rows: an event is stored when its
    /// subject (`OutboxRows.appendSubjects`, bound at `$first+5`) is among `kept`, SQL yielding
    /// the ids the statement stored (e.g. `SELECT id FROM message`).
    package static func insertCTEs(first: Int, subjectIn kept: String) -> String {
        insertCTEs(first: first, payloads: """
            SELECT e.event_id, e.payload FROM unnest($\(first)::uuid[], $\(first + 1)::text[], $\(first + 5)::uuid[]) AS e(event_id, payload, subject_id)
            WHERE e.subject_id IN (\(kept))
            """)
    }

    private static func insertCTEs(first: Int, payloads: String) -> String {
        """
        outbox_payloads AS (
            INSERT INTO outbox_events (event_id, payload)
            \(payloads)
            ON CONFLICT (event_id) DO NOTHING
            RETURNING event_id),
        outbox_rows AS (
            INSERT INTO outbox (event_id, event_type, subscriber)
            SELECT * FROM unnest($\(first + 2)::uuid[], $\(first + 3)::text[], $\(first + 4)::text[]) AS r(event_id, event_type, subscriber)
            WHERE r.event_id IN (SELECT event_id FROM outbox_payloads))
        """
    }
}

/// Events as the outbox stores them: each payload once, a delivery row per subscriber.
package struct OutboxRows: Sendable {
    var eventIds: [UUID] = []
    var payloads: [String] = []
    var rowEventIds: [UUID] = []
    var types: [String] = []
    var subscribers: [String] = []
    /// Each event's subject (its own id when it has none), for `Outbox.insertCTEs(first:subjectIn:)`.
    var subjects: [UUID] = []

    /// An event given twice is stored once.
    package init(_ events: [OutgoingEvent]) throws {
        var seen = Set<UUID>()
        for event in events {
            let targets = Subscriptions.subscribers(of: event.type, causedBy: event.causedBy)
            guard !targets.isEmpty, seen.insert(event.id).inserted else { continue }
            eventIds.append(event.id)
            payloads.append(try event.json())
            subjects.append(event.header.subjectId ?? event.id)
            for subscriber in targets {
                rowEventIds.append(event.id)
                types.append(event.type)
                subscribers.append(subscriber.rawValue)
            }
        }
    }

    package var isEmpty: Bool { eventIds.isEmpty }

    package func append(to bindings: inout PostgresBindings) {
        bindings.append(eventIds)
        bindings.append(payloads)
        bindings.append(rowEventIds)
        bindings.append(types)
        bindings.append(subscribers)
    }

    /// The subjects after `append(to:)`'s five arrays.
    package func appendSubjects(to bindings: inout PostgresBindings) {
        bindings.append(subjects)
    }

    func bindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 5)
        append(to: &bindings)
        return bindings
    }

    /// Names the lanes written to, so the other lanes stay asleep.
    package func requestWakeup(on connection: PostgresConnection, logger: Logger) async throws {
        guard !isEmpty else { return }
        try await Wakeups.request("outbox:" + Set(subscribers).sorted().joined(separator: ","), on: connection, logger: logger)
    }
}

package enum WakeChannel {
    package static func name(_ service: ServiceName) -> String { "wake_\(service.rawValue)" }
}

/// Capped exponential backoff with jitter: attempt 1 waits about `base`, each later one twice as
/// long, never more than `cap`; the wait is drawn from [½, 1] of that so retries spread out.
package struct Backoff: Sendable {
    package var base: Double
    package var cap: Double

    package init(base: Double, cap: Double) {
        self.base = base
        self.cap = cap
    }

    package func delay(afterAttempt attempt: Int, unit: Double) -> Double {
        let exponent = Double(min(max(attempt - 1, 0), 30))
        let ceiling = min(cap, base * pow(2, exponent))
        return ceiling * (0.5 + 0.5 * min(max(unit, 0), 1))
    }
}

/// One doorbell per subscriber's delivery lane. The wake-up after an outbox write names the
/// subscribers of the rows just written (`outbox:routing,automation`), so only their lanes wake.
package final class OutboxBells: Sendable {
    let lanes: [ServiceName: Doorbell]

    package init(for service: ServiceName) {
        lanes = Dictionary(uniqueKeysWithValues: ServiceName.allCases.filter { $0 != service }.map { ($0, Doorbell()) })
    }

    /// Rings the lanes a notification payload names; every lane when it names none.
    package func ring(payload: String) {
        let named = payload.hasPrefix("outbox:") ? payload.dropFirst("outbox:".count).split(separator: ",").compactMap { ServiceName(rawValue: String($0)) } : []
        if named.isEmpty {
            for bell in lanes.values { bell.ring() }
        } else {
            for name in named { lanes[name]?.ring() }
        }
    }
}

/// Delivers outbox rows to their subscribers' `POST /v1/events` until each answers 2xx.
/// Retry timing uses the database's wall clock: delivery is infrastructure, not a domain wait,
/// so a frozen virtual clock never holds events back.
package struct OutboxDispatcher: Service {
    let service: ServiceName
    /// Claims and delivery marks commit without waiting for the disk: losing one in a crash
    /// only sends an event again, which the receiver's inbox recognises.
    let client: PostgresClient
    let peers: PeerClient
    let bells: OutboxBells
    let logger: Logger
    var batchSize = 100
    /// Well under the 2 MiB a service accepts by default.
    var maxBatchBytes = 512 << 10
    var pollInterval: Duration = .milliseconds(500)
    var backoff = Backoff(base: 0.5, cap: 300)

    package init(service: ServiceName, client: PostgresClient, peers: PeerClient, bells: OutboxBells, logger: Logger) {
        self.service = service
        self.client = client
        self.peers = peers
        self.bells = bells
        self.logger = logger
    }

    /// One delivery lane per subscriber, so a slow subscriber never holds back the others' events
    /// (routing must see a new lead while automation still digests the last thousand), plus one
    /// task for upkeep.
    package func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for (lane, bell) in bells.lanes {
                group.addTask { await deliverLoop(to: lane, bell: bell) }
            }
            group.addTask { await upkeepLoop() }
        }
    }

    private func deliverLoop(to subscriber: ServiceName, bell: Doorbell) async {
        let linger = Subscriptions.linger[subscriber]
        // Delivered rows the next claim marks, in the same statement.
        var unmarked: [Int64] = []
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let claimed = try await claim(lane: subscriber.rawValue, markingDelivered: unmarked)
                unmarked = []
                let delivered = await send(claimed)
                // A full batch means more may be waiting; so may a lane that takes its events as
                // they come, whose next claim then costs nothing more than the marks it carries.
                if claimed.count >= batchSize || (linger == nil && !claimed.isEmpty) {
                    unmarked = delivered
                    continue
                }
                // A partial batch emptied the lane, and rows written since then have rung the bell.
                try await markDelivered(delivered)
                await withGracefulShutdownHandler {
                    await bell.wait(timeout: pollInterval)
                } onGracefulShutdown: {
                    bell.ring()
                }
                if let linger, !Task.isShuttingDownGracefully {
                    try? await cancelWhenGracefulShutdown { try await LoopTimer.sleep(for: linger) }
                }
            } catch {
                logger.warning("outbox dispatch failed", metadata: ["subscriber": "\(subscriber.rawValue)", "error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        // Stopping between a delivery and the claim that would have marked it.
        if !unmarked.isEmpty { try? await markDelivered(unmarked) }
    }

    private func upkeepLoop() async {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await recordLag()
            } catch {
                logger.warning("outbox upkeep failed", metadata: ["error": "\(String(reflecting: error))"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(5)) }
        }
    }

    struct Row {
        var id: Int64
        var subscriber: String
        var payload: String
        var attempts: Int
        var eventType: String
    }

    /// Claims due rows of one subscriber, or of every subscriber with rows waiting when nil
    /// (skipping rows another replica holds), and delivers them concurrently. Returns how many
    /// rows were claimed.
    package func dispatchBatch(to subscriber: ServiceName? = nil) async throws -> Int {
        let lanes = if let subscriber { [subscriber.rawValue] } else { try await waitingLanes() }
        var claimed: [Row] = []
        for lane in lanes { claimed += try await claim(lane: lane) }
        try await markDelivered(await send(claimed))
        return claimed.count
    }

    /// Marks `delivered` and claims the lane's next due rows, in one statement.
    private func claim(lane: String, markingDelivered delivered: [Int64] = []) async throws -> [Row] {
        let statement = KitStatements.ClaimLane(subscriber: lane, limit: batchSize, delivered: delivered)
        return try await bookkeeping("outbox claim") { [client, logger] in
            var claimed: [Row] = []
            for try await (id, subscriber, payload, attempts, type) in try await client.execute(statement, logger: logger) {
                claimed.append(Row(id: id, subscriber: subscriber, payload: payload, attempts: attempts, eventType: type))
            }
            return claimed
        }
    }

    private func markDelivered(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await bookkeeping("outbox mark") { [client, logger] in
            try await client.execute(KitStatements.MarkDelivered(ids: ids), logger: logger)
        }
    }

    /// A bookkeeping statement given up at its deadline; a claimed row's lease then expires and
    /// the row is claimed again (a delivery is at least once; receivers drop duplicates).
    private func bookkeeping<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Deadline.run(.seconds(10), doing: what, body)
    }

    /// The subscribers with rows not yet delivered (tests and tools; the lanes know their own).
    private func waitingLanes() async throws -> [String] {
        var lanes: [String] = []
        let rows = try await client.query("SELECT DISTINCT subscriber FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL", logger: logger)
        for try await lane in rows.decode(String.self) { lanes.append(lane) }
        return lanes
    }

    /// Delivers claimed rows concurrently per subscriber; answers the ids delivered, for the
    /// caller to mark.
    private func send(_ claimed: [Row]) async -> [Int64] {
        guard !claimed.isEmpty else { return [] }
        let lanes = Set(claimed.map(\.subscriber)).sorted().joined(separator: ", ")
        return await ShutdownProgress.current.during("delivering \(claimed.count) events to \(lanes)") {
            await withTaskGroup(of: [Int64].self) { group in
                // First attempts travel together per subscriber; retries go alone, so one bad event in a
                // rejected batch is found and given up without holding the others.
                // Requests stay well under a receiver's body limit: a batch is cut into chunks of at
                // most `maxBatchBytes`, sent one after the other to keep the subscriber's order.
                for (_, rows) in Dictionary(grouping: claimed.filter { $0.attempts == 1 }, by: \.subscriber) {
                    group.addTask {
                        var delivered: [Int64] = []
                        for chunk in Self.chunks(rows, maxBytes: maxBatchBytes) { delivered += await deliver(chunk) }
                        return delivered
                    }
                }
                for row in claimed where row.attempts > 1 {
                    group.addTask { await deliver([row]) }
                }
                var delivered: [Int64] = []
                for await ids in group { delivered += ids }
                return delivered
            }
        }
    }

    /// Consecutive runs of rows whose payloads together stay within `maxBytes`; a larger row goes alone.
    static func chunks(_ rows: [Row], maxBytes: Int) -> [[Row]] {
        var chunks: [[Row]] = []
        var current: [Row] = []
        var size = 0
        for row in rows {
            if !current.isEmpty && size + row.payload.utf8.count > maxBytes {
                chunks.append(current)
                current = []
                size = 0
            }
            current.append(row)
            size += row.payload.utf8.count + 1
        }
        if !current.isEmpty { chunks.append(current) }
        return chunks
    }

    /// Delivers one subscriber's rows: one event as JSON, several as NDJSON in one request.
    /// Returns the ids delivered; failures are rescheduled or given up here.
    private func deliver(_ rows: [Row]) async -> [Int64] {
        guard let first = rows.first, let subscriber = ServiceName(rawValue: first.subscriber) else {
            for row in rows { await giveUp(row, reason: "unknown subscriber \(row.subscriber)") }
            return []
        }
        do {
            let response = rows.count == 1
                ? try await peers.postRawJSON(to: subscriber, path: "/v1/events", body: first.payload)
                : try await peers.postRaw(to: subscriber, path: "/v1/events", body: rows.map(\.payload).joined(separator: "\n"),
                                          contentType: "application/x-ndjson")
            switch response.status {
            case 200..<300:
                for row in rows {
                    Counter(label: "outbox_delivered_total", dimensions: [("subscriber", row.subscriber), ("type", row.eventType)]).increment()
                }
                return rows.map(\.id)
            case 400, 413, 422:
                if rows.count == 1 {
                    // The receiver says the event itself is wrong: sending it again cannot help. An
                    // auth or routing failure (401, 403, 404) is a configuration to fix, so it retries.
                    await giveUp(first, reason: "rejected with \(response.status): \(response.body.prefix(500))")
                } else {
                    // One of the batch is wrong (or it was too large); each goes alone next time, so
                    // only a bad one is given up.
                    for row in rows { await retry(row, error: "batch rejected with \(response.status): \(response.body.prefix(300))", immediately: true) }
                }
            default:
                for row in rows { await retry(row, error: "answered \(response.status): \(response.body.prefix(500))") }
            }
        } catch {
            for row in rows { await retry(row, error: String(describing: error)) }
        }
        return []
    }

    private func retry(_ row: Row, error: String, immediately: Bool = false) async {
        let seconds = immediately ? 0 : backoff.delay(afterAttempt: row.attempts, unit: Double.random(in: 0...1))
        Counter(label: "outbox_delivery_failures_total", dimensions: [("subscriber", row.subscriber)]).increment()
        do {
            try await bookkeeping("outbox retry") { [client, logger] in
                try await client.query("""
                    UPDATE outbox SET locked_until = NULL, last_error = \(error),
                        next_attempt_at = now() + make_interval(secs => \(seconds))
                    WHERE id = \(row.id)
                    """, logger: logger).collect()
            }
        } catch {
            logger.warning("outbox retry not recorded; the lease will expire and retry it", metadata: ["error": "\(error)"])
        }
    }

    private func giveUp(_ row: Row, reason: String) async {
        logger.error("outbox event rejected by its subscriber; kept for inspection", metadata: ["id": "\(row.id)", "subscriber": "\(row.subscriber)", "reason": "\(reason)"])
        Counter(label: "outbox_rejected_total", dimensions: [("subscriber", row.subscriber)]).increment()
        _ = try? await bookkeeping("outbox give-up") { [client, logger] in
            try await client.query(
                "UPDATE outbox SET gave_up_at = now(), locked_until = NULL, last_error = \(reason) WHERE id = \(row.id)", logger: logger).collect()
        }
    }

    private func recordLag() async throws {
        let rows = try await client.query("""
            SELECT count(*)::int, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
            FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL
            """, logger: logger)
        for try await (pending, lag) in rows.decode((Int, Double).self) {
            Gauge(label: "outbox_pending").record(pending)
            Gauge(label: "outbox_lag_seconds").record(lag)
        }
    }
}
