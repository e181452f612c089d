import Configuration
import Foundation
import Models

/// A configuration problem found at boot, naming the environment variable at fault.
package struct ConfigError: Error, CustomStringConvertible {
    package var variable: String
    package var problem: String
    package var description: String { "configuration error: \(variable) \(problem)" }

    package init(variable: String, problem: String) {
        self.variable = variable
        self.problem = problem
    }
}

package enum ClockMode: String, Sendable {
    case wall, virtual
}

/// Everything a service reads from its environment, validated once at start.
package struct ServiceConfig: Sendable {
    package var service: ServiceName
    package var host: String
    package var port: Int
    package var databaseURL: String
    package var jwtSecret: String
    package var clockMode: ClockMode
    package var peers: [ServiceName: String]
    package var logLevel: String
    package var logFormat: String
    /// Bodies larger than this get 413.
    package var maxBodyBytes: Int
    package var databasePoolSize: Int
    package var jobWorkers: Int
    /// Days finished jobs, handled inbox rows and delivered outbox rows are kept (`Retention`).
    package var retentionDays: Int
    package var databaseTLS: DatabaseTLS
    /// PEM certificates trusted for `verify-full` besides the system's.
    package var databaseCAFile: String?
    /// The reader the config came from, for service-specific settings (provider keys …).
    package var reader: ConfigReader

    /// Reads the configuration of `service` from environment variables
    /// (`PORT`, `DATABASE_URL`, `JWT_SECRET`, `CLOCK`, `PEERS_<SERVICE>`, …).
    package init(service: ServiceName, environment: [String: String]? = nil) throws {
        let provider = environment.map { EnvironmentVariablesProvider(environmentVariables: $0) } ?? EnvironmentVariablesProvider()
        try self.init(service: service, reader: ConfigReader(provider: provider))
    }

    package init(service: ServiceName, reader: ConfigReader) throws {
        self.service = service
        self.reader = reader
        host = reader.string(forKey: "host", default: "127.0.0.1")
        port = try Self.integer(reader, key: "port", variable: "PORT", default: Self.defaultPort(service), range: 1...65535)
        guard let url = reader.string(forKey: "database.url", isSecret: true), !url.isEmpty else {
            throw ConfigError(variable: "DATABASE_URL", problem: "is required (postgres://user:password@host:port/database)")
        }
        let parsedURL = try DatabaseURL(url)
        databaseURL = url
        if let mode = reader.string(forKey: "database.tls"), !mode.isEmpty {
            guard let tls = DatabaseTLS(rawValue: mode) else {
                throw ConfigError(variable: "DATABASE_TLS", problem: "must be disable, require or verify-full, not '\(mode)'")
            }
            databaseTLS = tls
        } else {
            databaseTLS = parsedURL.sslmode ?? .disable
        }
        databaseCAFile = reader.string(forKey: "database.tls.ca.file").flatMap { $0.isEmpty ? nil : $0 }
        if let file = databaseCAFile, !FileManager.default.isReadableFile(atPath: file) {
            throw ConfigError(variable: "DATABASE_TLS_CA_FILE", problem: "names no readable file: \(file)")
        }
        guard let secret = reader.string(forKey: "jwt.secret", isSecret: true), !secret.isEmpty else {
            throw ConfigError(variable: "JWT_SECRET", problem: "is required")
        }
        guard secret.utf8.count >= 32 else {
            throw ConfigError(variable: "JWT_SECRET", problem: "must be at least 32 bytes long")
        }
        jwtSecret = secret
        let clock = reader.string(forKey: "clock", default: "wall")
        guard let mode = ClockMode(rawValue: clock) else {
            throw ConfigError(variable: "CLOCK", problem: "must be wall or virtual, not '\(clock)'")
        }
        clockMode = mode
        var peers: [ServiceName: String] = [:]
        for peer in ServiceName.allCases {
            let variable = "PEERS_\(peer.rawValue.uppercased())"
            let value = reader.string(forKey: ConfigKey(["peers", peer.rawValue]), default: "http://127.0.0.1:\(Self.defaultPort(peer))")
            guard let parsed = URL(string: value), let scheme = parsed.scheme, ["http", "https"].contains(scheme), parsed.host != nil else {
                throw ConfigError(variable: variable, problem: "must be an http(s) base URL, not '\(value)'")
            }
            peers[peer] = value.hasSuffix("/") ? String(value.dropLast()) : value
        }
        self.peers = peers
        logLevel = reader.string(forKey: "log.level", default: "info")
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw ConfigError(variable: "LOG_LEVEL", problem: "must be one of trace, debug, info, notice, warning, error, critical")
        }
        logFormat = reader.string(forKey: "log.format", default: "json")
        guard ["json", "text"].contains(logFormat) else {
            throw ConfigError(variable: "LOG_FORMAT", problem: "must be json or text")
        }
        maxBodyBytes = try Self.integer(reader, key: "max.body.bytes", variable: "MAX_BODY_BYTES", default: 2 << 20, range: 1024...(256 << 20))
        databasePoolSize = try Self.integer(reader, key: "database.pool.size", variable: "DATABASE_POOL_SIZE", default: 10, range: 2...200)
        jobWorkers = try Self.integer(reader, key: "job.workers", variable: "JOB_WORKERS", default: 4, range: 1...64)
        retentionDays = try Self.integer(reader, key: "retention.days", variable: "RETENTION_DAYS", default: 7, range: 1...3650)
    }

    package var schema: String { service.rawValue }

    /// An http(s) base URL from the environment, without a trailing slash; nil when unset.
    package func httpURL(key: ConfigKey, variable: String) throws -> String? {
        guard let text = reader.string(forKey: key) else { return nil }
        guard let parsed = URL(string: text), parsed.scheme == "http" || parsed.scheme == "https", parsed.host != nil else {
            throw ConfigError(variable: variable, problem: "must be an http(s) URL")
        }
        return text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    /// Where the outside world reaches this service (links in messages, provider callbacks).
    package func publicURL(key: ConfigKey, variable: String) throws -> String {
        try httpURL(key: key, variable: variable) ?? "http://localhost:\(port)"
    }

    package static func defaultPort(_ service: ServiceName) -> Int {
        switch service {
        case .contacts: 8081
        case .routing: 8082
        case .automation: 8083
        case .accountability: 8084
        case .smartplans: 8085
        case .notifications: 8086
        }
    }

    private static func integer(_ reader: ConfigReader, key: ConfigKey, variable: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = reader.string(forKey: key) else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw ConfigError(variable: variable, problem: "must be a whole number in \(range.lowerBound)...\(range.upperBound), not '\(text)'")
        }
        return number
    }
}

/// A parsed `postgres://user:password@host:port/database` URL.
/// How the services talk to PostgreSQL (`DATABASE_TLS`, else the URL's `sslmode`): in the clear
/// (the private server on 127.0.0.1), encrypted without checking the server (`require`, as libpq's
/// sslmode=require), or encrypted to a server whose certificate names its host and is signed by a
/// trusted authority (`verify-full`; `DATABASE_TLS_CA_FILE` adds the managed service's CA).
package enum DatabaseTLS: String, Sendable {
    case disable
    case require
    case verifyFull = "verify-full"
}

package struct DatabaseURL: Sendable {
    package var host: String
    package var port: Int
    package var username: String
    package var password: String?
    package var database: String
    /// The URL's `?sslmode=`, when it has one.
    package var sslmode: DatabaseTLS?

    package init(_ text: String) throws {
        guard let components = URLComponents(string: text), ["postgres", "postgresql"].contains(components.scheme ?? ""),
              let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty
        else {
            throw ConfigError(variable: "DATABASE_URL", problem: "must look like postgres://user:password@host:port/database")
        }
        self.host = host
        port = components.port ?? 5432
        username = user.removingPercentEncoding ?? user
        password = components.password.map { $0.removingPercentEncoding ?? $0 }
        let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        database = path.isEmpty ? username : path
        if let mode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value {
            guard let tls = DatabaseTLS(rawValue: mode) else {
                throw ConfigError(variable: "DATABASE_URL", problem: "sslmode must be disable, require or verify-full, not '\(mode)'")
            }
            sslmode = tls
        }
    }
}
