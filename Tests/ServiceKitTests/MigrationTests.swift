import Foundation
import PostgresNIO
import Testing
@testable import ServiceKit
import TestSupport

@Suite("Versioned migrations under an advisory lock")
struct MigrationTests {
    let extra = [Migration("CreateWidgets", ["CREATE TABLE widgets (id int PRIMARY KEY)"]),
                 Migration("WidgetsAddName", ["ALTER TABLE widgets ADD COLUMN name text"])]

    @Test("X-5: replicas migrating at once apply each migration exactly once")
    func concurrent() async throws {
        let schema = "m_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        try await TestDatabase.withClient(schema: String(schema)) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask { try await Database.migrate(client, schema: String(schema), tracks: [("service", extra)], logger: TestDatabase.logger) }
                }
                try await group.waitForAll()
            }
            #expect(try await Database.appliedCount(client, schema: String(schema), logger: TestDatabase.logger) == 2)
            // Applying again is a no-op.
            try await Database.migrate(client, schema: String(schema), tracks: [("service", extra)], logger: TestDatabase.logger)
            #expect(try await Database.appliedCount(client, schema: String(schema), logger: TestDatabase.logger) == 2)
            // A new migration on another track does not renumber this one.
            try await Database.migrate(client, schema: String(schema), tracks: [("kit", [Migration("KitThing", ["CREATE TABLE kit_thing (id int)"])]), ("service", extra)], logger: TestDatabase.logger)
            #expect(try await Database.appliedCount(client, schema: String(schema), logger: TestDatabase.logger) == 3)
            // A landed migration that was edited stops the boot.
            let edited = [extra[0], Migration("WidgetsAddName", ["ALTER TABLE widgets ADD COLUMN title text"])]
            await #expect(throws: MigrationError.self) {
                try await Database.migrate(client, schema: String(schema), tracks: [("service", edited)], logger: TestDatabase.logger)
            }
            try await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"), logger: TestDatabase.logger)
        }
    }

    @Test("schema names that are not plain identifiers are refused")
    func identifiers() {
        #expect(throws: MigrationError.self) { try Database.validateIdentifier("contacts; DROP TABLE x") }
        #expect(throws: MigrationError.self) { try Database.validateIdentifier("Contacts") }
        #expect(throws: Never.self) { try Database.validateIdentifier("smartplans") }
    }
}
