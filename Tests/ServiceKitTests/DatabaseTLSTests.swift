import Foundation
import Logging
import PostgresNIO
import Testing
@testable import ServiceKit
import TestSupport

/// A managed PostgreSQL that requires TLS (issue 24 item 7), against the private test server,
/// which scripts/lib/stack.sh starts with TLS on and a self-signed certificate.
@Suite("Database TLS")
struct DatabaseTLSTests {
    func encrypted(_ tls: DatabaseTLS, caFile: String?) async throws -> Bool {
        let client = try Database.makeClient(url: try TestDatabase.url(), schema: "public", poolSize: 1, tls: tls, caFile: caFile,
                                             logger: TestDatabase.logger)
        return try await withThrowingTaskGroup(of: Bool?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            let ssl = try await Deadline.run(.seconds(5), "the database did not answer") {
                try await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: TestDatabase.logger).first(Bool.self)
            }
            return ssl ?? false
        }
    }

    @Test("X-4: DATABASE_TLS=require encrypts; verify-full checks the certificate against the CA given and refuses one it cannot trust; disable stays in the clear")
    func modes() async throws {
        let ca = try #require(ProcessInfo.processInfo.environment["TEST_DATABASE_TLS_CA"], "scripts/test sets TEST_DATABASE_TLS_CA to the private server's certificate")
        #expect(try await encrypted(.require, caFile: nil))
        #expect(try await encrypted(.verifyFull, caFile: ca))
        #expect(try await !encrypted(.disable, caFile: nil))
        await #expect(throws: (any Error).self, "a self-signed certificate nobody said to trust") { _ = try await encrypted(.verifyFull, caFile: nil) }
    }

    @Test("X-4: DATABASE_TLS, else the URL's sslmode, else disable; an unknown mode or an unreadable CA file is named")
    func configuration() throws {
        let base = ["DATABASE_URL": "postgres://u:p@db.example.com:5432/crm", "JWT_SECRET": String(repeating: "s", count: 32)]
        #expect(try ServiceConfig(service: .contacts, environment: base).databaseTLS == .disable)
        var withMode = base
        withMode["DATABASE_URL"] = "postgres://u:p@db.example.com:5432/crm?sslmode=verify-full"
        #expect(try ServiceConfig(service: .contacts, environment: withMode).databaseTLS == .verifyFull)
        withMode["DATABASE_TLS"] = "require"
        #expect(try ServiceConfig(service: .contacts, environment: withMode).databaseTLS == .require, "the variable wins over the URL")
        var bad = base
        bad["DATABASE_TLS"] = "prefer"
        #expect { try ServiceConfig(service: .contacts, environment: bad) } throws: { ($0 as? ConfigError)?.variable == "DATABASE_TLS" }
        bad = base
        bad["DATABASE_TLS_CA_FILE"] = "/nonexistent/ca.pem"
        #expect { try ServiceConfig(service: .contacts, environment: bad) } throws: { ($0 as? ConfigError)?.variable == "DATABASE_TLS_CA_FILE" }
    }
}
