import Foundation
import Logging
import PostgresNIO
import Synchronization
import ServiceKit

/// A real PostgreSQL for store tests of the kit and of the services: `TEST_DATABASE_URL` (scripts/test sets it). Each test gets
/// a schema of its own, dropped afterwards. Without the variable the test fails, never skips.
package enum TestDatabase {
    package static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    package struct Missing: Error, CustomStringConvertible {
        package var description: String { "TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts PostgreSQL" }
    }

    package static func url() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["TEST_DATABASE_URL"], !url.isEmpty else { throw Missing() }
        return url
    }

    /// Runs `body` with a migrated schema of its own and a running pool on it.
    package static func withSchema<T: Sendable>(migrations: [Migration] = [], _ body: @Sendable (PostgresClient, String) async throws -> T) async throws -> T {
        let schema = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        return try await withClient(schema: String(schema)) { client in
            try await Database.migrate(client, schema: String(schema), tracks: [("kit", KitMigrations.all), ("service", migrations)], logger: logger)
            defer { }
            do {
                let result = try await body(client, String(schema))
                try await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"), logger: logger)
                return result
            } catch {
                _ = try? await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"), logger: logger)
                throw error
            }
        }
    }

    package static func withClient<T: Sendable>(schema: String, _ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        let client = try Database.makeClient(url: try url(), schema: schema, poolSize: 12, logger: logger)
        return try await running([client]) { try await body(client) }
    }

    /// Runs `body` while the pools run.
    package static func running<T: Sendable>(_ clients: [PostgresClient], _ body: @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            for client in clients {
                group.addTask {
                    await client.run()
                    return nil
                }
            }
            let result = try await body()
            group.cancelAll()
            return result
        }
    }
}

/// A clock a test moves by hand.
package final class ManualClock: ServiceClock {
    private let current: Mutex<Date>
    package init(_ start: Date = Date(timeIntervalSince1970: 1_900_000_000)) { current = Mutex(start) }
    package var now: Date { current.withLock { $0 } }
    package func advance(by seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// Collects what handlers saw, safely across tasks.
package final class Recorder<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])
    package init() {}
    package func append(_ value: Value) { values.withLock { $0.append(value) } }
    package var all: [Value] { values.withLock { $0 } }
}
