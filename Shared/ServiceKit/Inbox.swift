import Foundation
import Hummingbird
import Logging
import Metrics
import Models
import PostgresNIO
import Synchronization

/// What a service does when an event arrives. Its writes share one transaction with the inbox
/// row, so an event is handled exactly once however often it is delivered.
package struct EventHandler: Sendable {
    /// Stable name; part of the inbox key, so two handlers of one event are tracked apart.
    package var name: String
    package var eventType: String
    package var handle: @Sendable (ReceivedEvent, PostgresConnection, Logger) async throws -> Void
    /// Set for handlers that take the events of a batch in one go (replicas: one
    /// statement for the lot instead of one per event).
    package var handleMany: (@Sendable ([ReceivedEvent], PostgresConnection, Logger) async throws -> Void)?

    package init(name: String, eventType: String, handle: @escaping @Sendable (ReceivedEvent, PostgresConnection, Logger) async throws -> Void) {
        self.name = name
        self.eventType = eventType
        self.handle = handle
    }

    /// A handler that takes several events at once: every event of a delivered batch whose type
    /// shares its name, in delivery order, before the batch's other handlers run (so it must
    /// not depend on them, as a replica, whose newer version wins, does not).
    package static func batched(name: String, eventType: String,
                                handleMany: @escaping @Sendable ([ReceivedEvent], PostgresConnection, Logger) async throws -> Void) -> EventHandler {
        var handler = EventHandler(name: name, eventType: eventType) { event, connection, logger in try await handleMany([event], connection, logger) }
        handler.handleMany = handleMany
        return handler
    }
}

/// What the handlers of one delivered batch read alike (routing's view of one office for each of
/// twenty leads it sends): read once for the batch's transaction and forgotten with it. A handler
/// that changes what is kept (a directory change) drops it all.
package final class BatchMemo: Sendable {
    @TaskLocal package static var current: BatchMemo?

    private let values = Mutex<[String: any Sendable]>([:])
    /// The batch's events, in delivery order: what a handler may read ahead for the lot.
    package let events: [ReceivedEvent]

    package init(events: [ReceivedEvent] = []) {
        self.events = events
    }

    /// The current batch's events of one type; outside a batch, none.
    package static func events(ofType type: String) -> [ReceivedEvent] {
        current?.events.filter { $0.type == type } ?? []
    }

    /// The value kept under `key` in the current batch, read by `read` the first time; outside a
    /// batch, read every time.
    package static func value<Value: Sendable>(_ key: String, read: () async throws -> Value) async throws -> Value {
        guard let memo = current else { return try await read() }
        if let kept = memo.values.withLock({ $0[key] }) as? Value { return kept }
        let value = try await read()
        memo.values.withLock { $0[key] = value }
        return value
    }

    /// Forgets everything the current batch kept.
    package static func clear() {
        current?.values.withLock { $0.removeAll() }
    }
}

package enum InboxOutcome: String, Codable, Sendable {
    case handled, duplicate, ignored
}

package struct Inbox: Sendable {
    let client: PostgresClient
    let handlers: [String: [EventHandler]]

    package init(client: PostgresClient, handlers: [EventHandler]) {
        self.client = client
        self.handlers = Dictionary(grouping: handlers, by: \.eventType)
    }

    /// Handles a batch in one transaction: one statement records every (event, handler) pair
    /// not seen before, and only those handlers run. If any fails, the whole batch rolls back
    /// (the sender then retries each event on its own).
    package func receive(batch events: [ReceivedEvent], logger: Logger) async throws -> [InboxOutcome] {
        var ids: [UUID] = [], names: [String] = [], types: [String] = []
        for event in events {
            for handler in handlers[event.type] ?? [] {
                ids.append(event.id)
                names.append(handler.name)
                types.append(event.type)
            }
        }
        // No handler for any of them here: nothing to record, no transaction.
        let outcomes: [InboxOutcome] = ids.isEmpty ? events.map { _ in .ignored } : try await BatchMemo.$current.withValue(BatchMemo(events: events)) {
            try await client.transaction(logger: logger) { connection in
                var fresh = Set<String>()
                for try await (id, name) in try await connection.execute(KitStatements.RecordInbox(eventIds: ids, handlers: names, types: types),
                                                                         logger: logger) {
                    fresh.insert("\(id)/\(name)")
                }
                // Batch-taking handlers (replicas) first, each over all of its events at once in
                // delivery order; then the others, event by event, in order, seeing the replicas as
                // the whole batch left them. A copy seen before, or twice in the batch, runs once.
                var outcomes: [InboxOutcome] = []
                var runs: [(handler: EventHandler, events: [ReceivedEvent])] = []
                var singles: [(handler: EventHandler, event: ReceivedEvent)] = []
                for event in events {
                    guard let eventHandlers = handlers[event.type], !eventHandlers.isEmpty else {
                        outcomes.append(.ignored)
                        continue
                    }
                    var outcome = InboxOutcome.duplicate
                    for handler in eventHandlers where fresh.remove("\(event.id)/\(handler.name)") != nil {
                        if handler.handleMany == nil {
                            singles.append((handler, event))
                        } else if let run = runs.firstIndex(where: { $0.handler.name == handler.name }) {
                            runs[run].events.append(event)
                        } else {
                            runs.append((handler, [event]))
                        }
                        outcome = .handled
                    }
                    outcomes.append(outcome)
                }
                for (handler, events) in runs {
                    if let handleMany = handler.handleMany { try await handleMany(events, connection, logger) }
                }
                for (handler, event) in singles { try await handler.handle(event, connection, logger) }
                return outcomes
            }
        }
        for (event, outcome) in zip(events, outcomes) {
            Counter(label: "events_received_total", dimensions: [("type", event.type), ("outcome", outcome.rawValue)]).increment()
        }
        return outcomes
    }

    /// Runs every handler of `event` that has not yet handled it, all in one transaction: one
    /// inbox statement and one commit however many handlers the event has here.
    package func receive(_ event: ReceivedEvent, logger: Logger) async throws -> InboxOutcome {
        try await receive(batch: [event], logger: logger).first ?? .ignored
    }
}

/// `POST /v1/events`: the one door events come in by, for service callers only.
struct EventsController {
    let inbox: Inbox

    struct Answer: ResponseEncodable {
        var eventId: UUID
        var outcome: InboxOutcome
    }

    struct BatchAnswer: ResponseEncodable {
        var results: [Answer]
    }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/events") { request, context -> Response in
            let identity = try context.requireIdentity()
            try identity.require(.service)
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            let bytes = Array(body.readableBytesView)
            guard !APIRequestDecoder.containsNUL(bytes) else {
                throw APIError(.badRequest, code: "nul_character", message: "text may not contain the NUL character", field: "body")
            }
            // A batch from an outbox: one envelope per line, each handled (and deduplicated) on its own.
            if request.headers[.contentType]?.lowercased().hasPrefix("application/x-ndjson") == true {
                var events: [ReceivedEvent] = []
                for line in bytes.split(separator: UInt8(ascii: "\n")) where !line.allSatisfy({ $0 == 32 || $0 == 13 }) {
                    events.append(try Self.validated(Array(line)))
                }
                guard events.count <= 1000 else { throw APIError(.contentTooLarge, code: "batch_too_large", message: "at most 1000 events at once", field: "body") }
                let outcomes = try await inbox.receive(batch: events, logger: context.logger)
                return try BatchAnswer(results: zip(events, outcomes).map { Answer(eventId: $0.id, outcome: $1) })
                    .response(from: request, context: context)
            }
            return try await handle(bytes, logger: context.logger).response(from: request, context: context)
        }
    }

    private func handle(_ bytes: [UInt8], logger: Logger) async throws -> Answer {
        let event = try Self.validated(bytes)
        return Answer(eventId: event.id, outcome: try await inbox.receive(event, logger: logger))
    }

    static func validated(_ bytes: [UInt8]) throws -> ReceivedEvent {
        let event: ReceivedEvent
        do {
            event = try ReceivedEvent(body: Data(bytes))
        } catch let error as DecodingError {
            throw APIError.fromDecoding(error)
        }
        guard !event.type.isEmpty, event.type.count <= 100 else {
            throw APIError.validation("type", "type must name an event")
        }
        guard event.version >= 1 else {
            throw APIError.validation("version", "version must be 1 or more")
        }
        return event
    }
}
