import Foundation
import Testing
@testable import ServiceKit

@Suite("Configuration from the environment (X-4)")
struct ConfigTests {
    let base = ["DATABASE_URL": "postgres://contacts:pw@127.0.0.1:5432/crm", "JWT_SECRET": String(repeating: "s", count: 32)]

    func config(_ overrides: [String: String]) throws -> ServiceConfig {
        try ServiceConfig(service: .contacts, environment: base.merging(overrides) { _, new in new })
    }

    @Test("defaults when only the required variables are set")
    func defaults() throws {
        let config = try config([:])
        #expect(config.port == 8081)
        #expect(config.clockMode == .wall)
        #expect(config.peers[.routing] == "http://127.0.0.1:8082")
        #expect(config.schema == "contacts")
    }

    @Test("a missing or bad variable is named in the error", arguments: [
        (["DATABASE_URL": ""], "DATABASE_URL"),
        (["DATABASE_URL": "mysql://x@y/z"], "DATABASE_URL"),
        (["JWT_SECRET": ""], "JWT_SECRET"),
        (["JWT_SECRET": "short"], "JWT_SECRET"),
        (["PORT": "eighty"], "PORT"),
        (["PORT": "70000"], "PORT"),
        (["CLOCK": "sundial"], "CLOCK"),
        (["PEERS_ROUTING": "not a url"], "PEERS_ROUTING"),
        (["LOG_LEVEL": "loud"], "LOG_LEVEL"),
    ])
    func namesTheVariable(overrides: [String: String], variable: String) throws {
        let error = try #require(throws: ConfigError.self) { try config(overrides) }
        #expect(error.variable == variable)
        #expect(error.description.contains(variable))
    }

    @Test("peers and clock are read from PEERS_* and CLOCK")
    func peersAndClock() throws {
        let config = try config(["PEERS_ROUTING": "http://routing:8082/", "CLOCK": "virtual", "PORT": "9000"])
        #expect(config.peers[.routing] == "http://routing:8082")
        #expect(config.clockMode == .virtual)
        #expect(config.port == 9000)
    }

    @Test("database URL parts, percent-decoded")
    func databaseURL() throws {
        let url = try DatabaseURL("postgres://svc:p%40ss@db.local:6543/crm")
        #expect(url.host == "db.local")
        #expect(url.port == 6543)
        #expect(url.username == "svc")
        #expect(url.password == "p@ss")
        #expect(url.database == "crm")
    }
}
