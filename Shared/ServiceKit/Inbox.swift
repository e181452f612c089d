import Foundation
import Hummingbird
import Logging
import Metrics
import Models
import PostgresNIO

/// What a service does when an event arrives. Its writes share one transaction with the inbox
/// row, so an event is handled exactly once however often it is delivered.
package struct EventHandler: Sendable {
    /// Stable name; part of the inbox key, so two handlers of one event are tracked apart.
    package var name: String
    package var eventType: String
    package var handle: @Sendable (ReceivedEvent, PostgresConnection, Logger) async throws -> Void

    package init(name: String, eventType: String, handle: @escaping @Sendable (ReceivedEvent, PostgresConnection, Logger) async throws -> Void) {
        self.name = name
        self.eventType = eventType
        self.handle = handle
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

    /// Runs every handler of `event` that has not yet handled it.
    package func receive(_ event: ReceivedEvent, logger: Logger) async throws -> InboxOutcome {
        guard let handlers = handlers[event.type], !handlers.isEmpty else {
            Counter(label: "events_received_total", dimensions: [("type", event.type), ("outcome", "ignored")]).increment()
            return .ignored
        }
        var outcome = InboxOutcome.duplicate
        for handler in handlers {
            let handled = try await client.transaction(logger: logger) { connection in
                let inserted = try await connection.query("""
                    INSERT INTO inbox (event_id, handler, event_type) VALUES (\(event.id), \(handler.name), \(event.type))
                    ON CONFLICT DO NOTHING RETURNING 1
                    """, logger: logger).collect().count
                guard inserted == 1 else { return false }
                try await handler.handle(event, connection, logger)
                return true
            }
            if handled { outcome = .handled }
        }
        Counter(label: "events_received_total", dimensions: [("type", event.type), ("outcome", outcome.rawValue)]).increment()
        return outcome
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
                var results: [Answer] = []
                for line in bytes.split(separator: UInt8(ascii: "\n")) where !line.allSatisfy({ $0 == 32 || $0 == 13 }) {
                    results.append(try await handle(Array(line), logger: context.logger))
                }
                return try BatchAnswer(results: results).response(from: request, context: context)
            }
            return try await handle(bytes, logger: context.logger).response(from: request, context: context)
        }
    }

    private func handle(_ bytes: [UInt8], logger: Logger) async throws -> Answer {
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
        return Answer(eventId: event.id, outcome: try await inbox.receive(event, logger: logger))
    }
}
