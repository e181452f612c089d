import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Models
import Prometheus
import Synchronization

/// One JSON object per line on stdout, with the request and trace ids the middleware attaches.
package struct JSONLogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level
    let label: String

    package init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var fields: [String: JSONValue] = [
            "ts": .string(RFC3339.string(from: Date())),
            "level": .string(event.level.rawValue),
            "logger": .string(label),
            "msg": .string(event.message.description),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for (key, value) in merged { fields[key] = Self.json(value) }
        guard let data = try? JSONCoding.encoder.encode(JSONValue.object(fields)) else { return }
        var line = data
        line.append(0x0A)
        FileHandle.standardOutput.write(line)
    }

    static func json(_ value: Logger.MetadataValue) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .stringConvertible(let value): .string(value.description)
        case .array(let values): .array(values.map(json))
        case .dictionary(let values): .object(values.mapValues(json))
        }
    }
}

/// Process-wide bootstraps (logging, metrics) happen once, however many apps a test builds.
package enum Observability {
    private static let bootstrapped = Mutex(false)
    package static let registry = PrometheusCollectorRegistry()

    package static func bootstrap(logLevel: String, format: String) {
        let first = bootstrapped.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        if format == "json" {
            LoggingSystem.bootstrap { JSONLogHandler(label: $0, level: level) }
        } else {
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardOutput(label: label)
                handler.logLevel = level
                return handler
            }
        }
        var factory = PrometheusMetricsFactory(registry: registry)
        // Prometheus names allow no dots; swift-metrics labels (Hummingbird's among them) use them.
        // Runs for every counter a request or event makes, without Foundation's replacing.
        @Sendable func underscored(_ text: String) -> String { text.replacingASCII(UInt8(ascii: "."), with: UInt8(ascii: "_")) }
        factory.nameAndLabelSanitizer = { name, dimensions in
            (underscored(name), dimensions.map { (underscored($0.0), $0.1) })
        }
        MetricsSystem.bootstrap(factory)
    }
}

/// Gives each request an id and a W3C trace context, puts both in its logs, answers the
/// traceparent, and makes it the one peer calls pass on.
package struct TraceMiddleware<Context: RequestContext>: RouterMiddleware {
    package init() {}

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let incoming = request.headers[HTTPField.Name.traceparent]
        let traceId: String
        let traceparent: String
        if let incoming, let parsed = Self.traceId(of: incoming) {
            traceId = parsed
            traceparent = "00-\(parsed)-\(Self.randomHex(8))-01"
        } else {
            traceId = Self.randomHex(16)
            traceparent = "00-\(traceId)-\(Self.randomHex(8))-01"
        }
        context.logger[metadataKey: "trace_id"] = .string(traceId)
        var response = try await TraceContext.$traceparent.withValue(traceparent) {
            try await next(request, context)
        }
        response.headers[HTTPField.Name.traceparent] = traceparent
        return response
    }

    /// The trace id of a valid `traceparent` (version-traceid-parentid-flags).
    static func traceId(of header: String) -> String? {
        let parts = header.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[1].allSatisfy(\.isHexDigit),
              parts[1] != String(repeating: "0", count: 32)
        else { return nil }
        return String(parts[1]).lowercased()
    }

    static func randomHex(_ bytes: Int) -> String {
        // Eight random bytes a draw: one system call each rather than one a byte.
        var generator = SystemRandomNumberGenerator()
        var drawn: [UInt8] = []
        drawn.reserveCapacity(bytes + 7)
        while drawn.count < bytes {
            withUnsafeBytes(of: generator.next() as UInt64) { drawn.append(contentsOf: $0) }
        }
        return drawn.prefix(bytes).hexString
    }
}

extension HTTPField.Name {
    static let traceparent = HTTPField.Name("traceparent")!
}
