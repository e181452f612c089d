import Logging
import Synchronization
import PostgresNIO

/// The text of a statement a request runs every time. Run through `prepared`, each connection
/// parses and plans it once and afterwards only binds and executes it: in the messages profile
/// PostgreSQL spent a third of its time parsing and planning the same few statements again.
package protocol PreparedSQL {
    static var sql: String { get }
}

/// Each statement's name, worked out once: hashing its text on every execution showed in profiles.
private let preparedNames = Mutex<[ObjectIdentifier: String]>([:])

/// `Text` as PostgresNIO's prepared statement.
package struct Prepared<Text: PreparedSQL>: PostgresPreparedStatement {
    package typealias Row = PostgresRow
    package static var sql: String { Text.sql }
    /// The statement's short name and a hash of its text. PostgreSQL cuts names at 63 bytes, so
    /// the full type names of `InsertMessage` and `InsertMessageWithKey` were one statement to
    /// it, and the second to be prepared on a connection failed with "already exists".
    package static var name: String {
        let key = ObjectIdentifier(Text.self)
        if let known = preparedNames.withLock({ $0[key] }) { return known }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Text.sql.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let name = "\(String(describing: Text.self).prefix(40))_\(String(hash, radix: 16))"
        preparedNames.withLock { $0[key] = name }
        return name
    }

    let bindings: PostgresBindings

    package init(_ bindings: PostgresBindings) {
        self.bindings = bindings
    }

    package func makeBindings() throws -> PostgresBindings { bindings }
    package func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

extension PostgresBindings {
    /// Bindings for `$1 …` in order; a nil is bound as NULL (its type then comes from the SQL).
    package static func values<each Value: PostgresEncodable & Sendable>(_ values: repeat (each Value)?) throws -> PostgresBindings {
        var bindings = PostgresBindings()
        func bind(_ value: (some PostgresEncodable & Sendable)?) throws {
            if let value { try bindings.append(value, context: .default) } else { bindings.appendNull() }
        }
        repeat try bind(each values)
        return bindings
    }
}

extension PostgresConnection {
    /// Runs `text` as this connection's prepared statement and answers its rows.
    @discardableResult
    package func prepared<Text: PreparedSQL>(_ text: Text.Type, _ bindings: PostgresBindings, logger: Logger) async throws -> [PostgresRow] {
        // A statement written to a closed connection would never answer (see `transaction`).
        try ensureOpen()
        var rows: [PostgresRow] = []
        for try await row in try await execute(Prepared<Text>(bindings), logger: logger) { rows.append(row) }
        return rows
    }
}

extension PostgresClient {
    /// `prepared` on a connection of the pool, outside any transaction.
    @discardableResult
    package func prepared<Text: PreparedSQL>(_ text: Text.Type, _ bindings: PostgresBindings, logger: Logger) async throws -> [PostgresRow] {
        try await withConnection { connection in try await connection.prepared(text, bindings, logger: logger) }
    }
}
