import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// A contact or user as the sender sees them: where to reach them and where they are.
struct Recipient: Sendable {
    var companyId: UUID
    var contactId: UUID?
    var userId: UUID?
    var phone: String?
    var email: String?
    var state: String?
    var timeZone: TimeZone?
    var ownerEntityId: UUID?
    var assignedAgentId: UUID?

    /// The contact's zone and state: its address, else its phone's area code, else its owner
    /// entity's zone (with no state rule then).
    mutating func place(addressState: String?, entityZone: String?) {
        if let resolved = RecipientZone.resolve(state: addressState, phone: phone) {
            timeZone = resolved.timeZone
            state = resolved.state
        } else {
            timeZone = entityZone.flatMap(TimeZone.init(identifier:))
        }
    }
}

struct AttemptRecord: Codable, Sendable, Hashable {
    var number: Int
    var startedAt: Date
    var finishedAt: Date?
    var outcome: String
    var providerId: String?
    var error: String?
}

struct OptOutEntry: Codable, Sendable, Hashable {
    var action: String
    var how: String
    var recordedBy: String
    var at: Date
}

/// The delivery log, idempotency keys, consent and webhook receipts (SQL only).
struct MessageStore: Sendable {
    let client: PostgresClient
    let outbox: Outbox
    let logger: Logger

    // MARK: recipients

    // Recipient reads run on the caller's connection: a request already holds one for its
    // transaction, and taking a second from the pool under load starves the pool.

    func contactRecipient(_ id: UUID, on connection: PostgresConnection) async throws -> Recipient? {
        let rows = try await connection.query("""
            SELECT c.company_id, c.phones[1], c.emails[1], c.snapshot->'address'->>'state', c.owner_entity_id, c.assigned_agent_id, e.time_zone
            FROM contact_replica c LEFT JOIN directory_entities e ON e.id = c.owner_entity_id
            WHERE c.id = \(id) AND NOT c.deleted
            """, logger: logger)
        for try await (company, phone, email, state, owner, agent, entityZone) in rows.decode((UUID, String?, String?, String?, UUID, UUID?, String?).self) {
            var recipient = Recipient(companyId: company, contactId: id, phone: phone, email: email, ownerEntityId: owner, assignedAgentId: agent)
            recipient.place(addressState: state, entityZone: entityZone)
            return recipient
        }
        return nil
    }

    /// A contact contacts answered about directly (the replica had not caught up yet).
    func recipient(from contact: Contact, entityZone: String?) -> Recipient {
        let phone = contact.phones.first
        var recipient = Recipient(companyId: contact.companyId, contactId: contact.id, phone: phone, email: contact.emails.first,
                                  ownerEntityId: contact.ownerEntityId, assignedAgentId: contact.assignedAgentId)
        recipient.place(addressState: contact.address?.state, entityZone: entityZone)
        return recipient
    }

    func entityZone(_ id: UUID, on connection: PostgresConnection) async throws -> String? {
        try await connection.query("SELECT time_zone FROM directory_entities WHERE id = \(id)", logger: logger).first(String.self)
    }

    func userRecipient(_ id: UUID, on connection: PostgresConnection) async throws -> Recipient? {
        let rows = try await connection.query("""
            SELECT company_id, mobile_phone, email FROM directory_users WHERE id = \(id) AND active
            """, logger: logger)
        for try await (company, phone, email) in rows.decode((UUID, String?, String).self) {
            return Recipient(companyId: company, userId: id, phone: phone, email: email)
        }
        return nil
    }

    /// An entity's office hours as a window (NT-4), nil when the entity is unknown.
    func officeHours(_ entityId: UUID, companyId: UUID, on connection: PostgresConnection) async throws -> WeeklyWindow? {
        let rows = try await connection.query("""
            SELECT time_zone, office_hours::text FROM directory_entities WHERE id = \(entityId) AND company_id = \(companyId)
            """, logger: logger)
        for try await (zone, hours) in rows.decode((String, String).self) {
            guard let timeZone = TimeZone(identifier: zone) else { return nil }
            let days = try JSONCoding.decoder.decode([OfficeHoursDay].self, from: Data(hours.utf8))
            return .officeHours(days, timeZone: timeZone)
        }
        return nil
    }

    // MARK: compliance facts

    /// `recentLimit`: how many of the latest automated sends to the address to return; a daily
    /// cap only ever looks at its last `cap`, so the busiest number costs no more than the quietest.
    func consent(address: String, companyId: UUID, since: Date, recentLimit: Int, on connection: PostgresConnection) async throws
        -> (optedOut: Bool, onDNC: Bool, recentAutomated: [Date]) {
        let rows = try await connection.query("""
            SELECT coalesce((SELECT opted_out FROM opt_outs WHERE number = \(address)), false),
                   EXISTS (SELECT 1 FROM dnc_numbers WHERE company_id = \(companyId) AND number = \(address)),
                   ARRAY(SELECT sent_at FROM messages WHERE to_address = \(address) AND purpose = 'automated' AND direction = 'outbound'
                         AND sent_at IS NOT NULL AND sent_at > \(since) ORDER BY sent_at DESC LIMIT \(recentLimit))
            """, logger: logger)
        for try await (optedOut, dnc, recent) in rows.decode((Bool, Bool, [Date]).self) {
            return (optedOut, dnc, recent)
        }
        return (false, false, [])
    }

    // MARK: messages

    static let selectColumns = "m.doc::text, (SELECT count(*) FROM message_attempts a WHERE a.message_id = m.id)::int"

    func insert(_ message: Message, on connection: PostgresConnection) async throws {
        let doc = String(decoding: try JSONCoding.encoder.encode(message), as: UTF8.self)
        try await connection.query("""
            INSERT INTO messages (id, company_id, channel, direction, purpose, state, contact_id, user_id, to_address, provider, provider_id,
                created_at, sent_at, doc)
            VALUES (\(message.id), \(message.companyId), \(message.channel.rawValue), \(message.direction.rawValue), \(message.purpose.rawValue),
                \(message.state.rawValue), \(message.contactId), \(message.userId), \(message.to), \(message.provider), \(message.providerId),
                \(message.createdAt), \(message.sentAt), \(doc)::jsonb)
            """, logger: logger)
    }

    func save(_ message: inout Message, on connection: PostgresConnection) async throws {
        message.version += 1
        let doc = String(decoding: try JSONCoding.encoder.encode(message), as: UTF8.self)
        try await connection.query("""
            UPDATE messages SET state = \(message.state.rawValue), provider = \(message.provider), provider_id = \(message.providerId),
                sent_at = \(message.sentAt), doc = \(doc)::jsonb
            WHERE id = \(message.id)
            """, logger: logger)
    }

    /// The message, locked for its sender (no-key lock: attempts are written beside it).
    func lockMessage(_ id: UUID, on connection: PostgresConnection) async throws -> Message? {
        let rows = try await connection.query(PostgresQuery(
            unsafeSQL: "SELECT \(Self.selectColumns) FROM messages m WHERE m.id = $1 FOR NO KEY UPDATE", binds: try .of(id)), logger: logger)
        return try await decode(rows).first
    }

    func message(_ id: UUID) async throws -> Message? {
        let rows = try await client.query(PostgresQuery(
            unsafeSQL: "SELECT \(Self.selectColumns) FROM messages m WHERE m.id = $1", binds: try .of(id)), logger: logger)
        return try await decode(rows).first
    }

    /// The outbound message a provider knows by `providerId`, locked like `lockMessage`.
    func lockMessage(provider: String, providerId: String, on connection: PostgresConnection) async throws -> Message? {
        let rows = try await connection.query(PostgresQuery(
            unsafeSQL: """
                SELECT \(Self.selectColumns) FROM messages m WHERE m.provider = $1 AND m.provider_id = $2 AND m.direction = 'outbound'
                FOR NO KEY UPDATE
                """,
            binds: try .of(provider, providerId)), logger: logger)
        return try await decode(rows).first
    }

    struct ListQuery: Sendable {
        var companyId: UUID?
        var contactId: UUID?
        var userId: UUID?
        var state: MessageState?
        var after: UUID?
        var limit: Int
    }

    /// Newest first, a page at a time.
    func list(_ query: ListQuery) async throws -> [Message] {
        var conditions: [String] = []
        var binds = PostgresBindings()
        func bind(_ value: some PostgresEncodable & Sendable) throws -> String {
            try binds.append(value, context: .default)
            return "$\(binds.count)"
        }
        if let company = query.companyId { conditions.append("m.company_id = \(try bind(company))") }
        if let contact = query.contactId { conditions.append("m.contact_id = \(try bind(contact))") }
        if let user = query.userId { conditions.append("m.user_id = \(try bind(user))") }
        if let state = query.state { conditions.append("m.state = \(try bind(state.rawValue))") }
        if let after = query.after {
            conditions.append("(m.created_at, m.id) < (SELECT created_at, id FROM messages WHERE id = \(try bind(after)))")
        }
        let sql = """
            SELECT \(Self.selectColumns) FROM messages m
            WHERE \(conditions.isEmpty ? "true" : conditions.joined(separator: " AND "))
            ORDER BY m.created_at DESC, m.id DESC LIMIT \(try bind(query.limit))
            """
        return try await decode(try await client.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger))
    }

    private func decode(_ rows: PostgresRowSequence) async throws -> [Message] {
        var messages: [Message] = []
        for try await (doc, attempts) in rows.decode((String, Int).self) {
            var message = try JSONCoding.decoder.decode(Message.self, from: Data(doc.utf8))
            message.attempts = attempts
            messages.append(message)
        }
        return messages
    }

    // MARK: attempts

    /// Written on its own connection and committed before the provider is called, so a crash
    /// after the call leaves a trace the next attempt reconciles with the provider.
    func startAttempt(_ messageId: UUID, at: Date) async throws -> Int {
        let rows = try await client.query("""
            INSERT INTO message_attempts (message_id, number, started_at, outcome)
            SELECT \(messageId), coalesce(max(number), 0) + 1, \(at), 'in_flight' FROM message_attempts WHERE message_id = \(messageId)
            RETURNING number
            """, logger: logger)
        for try await number in rows.decode(Int.self) { return number }
        return 1
    }

    func finishAttempt(_ messageId: UUID, number: Int, outcome: String, providerId: String?, error: String?, at: Date) async throws {
        try await client.query("""
            UPDATE message_attempts SET outcome = \(outcome), provider_id = \(providerId), error = \(error), finished_at = \(at)
            WHERE message_id = \(messageId) AND number = \(number)
            """, logger: logger)
    }

    func attempts(_ messageId: UUID) async throws -> [AttemptRecord] {
        let rows = try await client.query("""
            SELECT number, started_at, finished_at, outcome, provider_id, error FROM message_attempts
            WHERE message_id = \(messageId) ORDER BY number
            """, logger: logger)
        var records: [AttemptRecord] = []
        for try await (number, started, finished, outcome, providerId, error) in rows.decode((Int, Date, Date?, String, String?, String?).self) {
            records.append(AttemptRecord(number: number, startedAt: started, finishedAt: finished, outcome: outcome, providerId: providerId, error: error))
        }
        return records
    }

    // MARK: idempotency

    enum KeyState {
        case new
        case replay(status: Int, response: String)
        case mismatch
    }

    /// Only one request per key at a time; a second one while the first holds the lock is told
    /// so (409) instead of waiting.
    func lockKey(caller: String, key: String, on connection: PostgresConnection) async throws -> Bool {
        let lockKey = "idempotency:\(caller):\(key)"
        return try await connection.query("SELECT pg_try_advisory_xact_lock(hashtextextended(\(lockKey), 0))", logger: logger)
            .first(Bool.self) ?? false
    }

    func keyState(caller: String, key: String, fingerprint: String, on connection: PostgresConnection) async throws -> KeyState {
        let rows = try await connection.query("""
            SELECT fingerprint, status, response FROM idempotency_keys WHERE caller = \(caller) AND key = \(key)
            """, logger: logger)
        for try await (stored, status, response) in rows.decode((String, Int, String).self) {
            return stored == fingerprint ? .replay(status: status, response: response) : .mismatch
        }
        return .new
    }

    func storeKey(caller: String, key: String, fingerprint: String, status: Int, response: String, at: Date, on connection: PostgresConnection) async throws {
        try await connection.query("""
            INSERT INTO idempotency_keys (caller, key, fingerprint, status, response, created_at)
            VALUES (\(caller), \(key), \(fingerprint), \(status), \(response), \(at))
            """, logger: logger)
    }

    // MARK: consent

    func addDNC(_ numbers: [String], companyId: UUID, source: String, by: String, at: Date) async throws -> Int {
        try await client.query("""
            INSERT INTO dnc_numbers (company_id, number, source, added_by, added_at)
            SELECT \(companyId), n, \(source), \(by), \(at) FROM unnest(\(numbers)::text[]) AS n
            ON CONFLICT DO NOTHING RETURNING number
            """, logger: logger).collect().count
    }

    func dnc(_ number: String, companyId: UUID) async throws -> (source: String, addedBy: String, addedAt: Date)? {
        let rows = try await client.query("""
            SELECT source, added_by, added_at FROM dnc_numbers WHERE company_id = \(companyId) AND number = \(number)
            """, logger: logger)
        for try await row in rows.decode((String, String, Date).self) { return row }
        return nil
    }

    func removeDNC(_ number: String, companyId: UUID) async throws -> Bool {
        try await client.query("DELETE FROM dnc_numbers WHERE company_id = \(companyId) AND number = \(number) RETURNING number", logger: logger)
            .collect().count == 1
    }

    /// Records a consent change in the ledger; true when the number's state changed.
    @discardableResult
    func recordConsent(number: String, optOut: Bool, how: String, by: String, at: Date, on connection: PostgresConnection) async throws -> Bool {
        try await connection.query("""
            INSERT INTO opt_out_ledger (id, number, action, how, recorded_by, at)
            VALUES (\(UUID.random()), \(number), \(optOut ? "opt_out" : "opt_in"), \(how), \(by), \(at))
            """, logger: logger)
        let changed = try await connection.query("""
            INSERT INTO opt_outs (number, opted_out, updated_at) VALUES (\(number), \(optOut), \(at))
            ON CONFLICT (number) DO UPDATE SET opted_out = EXCLUDED.opted_out, updated_at = EXCLUDED.updated_at
                WHERE opt_outs.opted_out IS DISTINCT FROM EXCLUDED.opted_out
            RETURNING number
            """, logger: logger).collect().count
        return changed == 1
    }

    func optOutHistory(_ number: String) async throws -> (optedOut: Bool, history: [OptOutEntry]) {
        let rows = try await client.query("""
            SELECT action, how, recorded_by, at FROM opt_out_ledger WHERE number = \(number) ORDER BY seq DESC LIMIT 200
            """, logger: logger)
        var history: [OptOutEntry] = []
        for try await (action, how, by, at) in rows.decode((String, String, String, Date).self) {
            history.append(OptOutEntry(action: action, how: how, recordedBy: by, at: at))
        }
        return (history.first?.action == "opt_out", history)
    }

    // MARK: webhooks

    /// True the first time a provider's id is seen for this kind of webhook.
    func firstReceipt(provider: String, providerId: String, kind: String, at: Date, on connection: PostgresConnection) async throws -> Bool {
        try await connection.query("""
            INSERT INTO webhook_receipts (provider, provider_id, kind, received_at) VALUES (\(provider), \(providerId), \(kind), \(at))
            ON CONFLICT DO NOTHING RETURNING provider_id
            """, logger: logger).collect().count == 1
    }

    /// Contacts whose phone (or e-mail) is the sender's.
    func contactsReachedAt(_ address: String) async throws -> [(contactId: UUID, companyId: UUID)] {
        let rows = try await client.query("""
            SELECT id, company_id FROM contact_replica WHERE NOT deleted AND (phones @> ARRAY[\(address)] OR emails @> ARRAY[\(address)])
            ORDER BY created_at LIMIT 20
            """, logger: logger)
        var found: [(UUID, UUID)] = []
        for try await row in rows.decode((UUID, UUID).self) { found.append(row) }
        return found
    }

    /// The event feeds the contact's timeline; a message to a user (an agent's lead alert) has no
    /// timeline to feed, and its state is in the delivery log.
    func publishUpdate(_ message: Message, on connection: PostgresConnection) async throws {
        guard message.contactId != nil else { return }
        try await outbox.publish(try outbox.envelope(EventType.messageUpdated, version: message.version, companyId: message.companyId, subjectId: message.id,
                                                     data: MessageUpdated(message: message)), on: connection, logger: logger)
    }
}
