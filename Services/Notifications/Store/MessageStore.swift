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
    /// Where the contact is on the clock: one zone, or every zone its area code spans.
    var timeZones: [TimeZone] = []
    var ownerEntityId: UUID?
    var assignedAgentId: UUID?
    /// ST-7: an archived contact gets no automated message.
    var archived = false

    /// The contact's zone and state: its address, else its phone's area code, else its owner
    /// entity's zone (with no state rule then).
    mutating func place(addressState: String?, entityZone: String?) {
        if let resolved = RecipientZone.resolve(state: addressState, phone: phone) {
            timeZones = resolved.timeZones
            state = resolved.state
        } else {
            timeZones = entityZone.flatMap(TimeZone.init(identifier:)).map { [$0] } ?? []
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
    /// `every_company`: the recipient's own word (a STOP or START text, a carrier's report);
    /// `this_company`: recorded by hand for the caller's company.
    var binds: String
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
        try await contactRecipients([id], on: connection)[id]
    }

    /// Many contacts' recipients in one read (a batch's, a claim's); one not in the replica is absent.
    func contactRecipients(_ ids: [UUID], on connection: PostgresConnection) async throws -> [UUID: Recipient] {
        guard !ids.isEmpty else { return [:] }
        var found: [UUID: Recipient] = [:]
        for row in try await connection.prepared(SQL.ContactRecipients.self, .values(Array(Set(ids))), logger: logger) {
            let (id, company, phone, email, state, owner, agent, entityZone, archived)
                = try row.decode((UUID, UUID, String?, String?, String?, UUID, UUID?, String?, Bool).self)
            var recipient = Recipient(companyId: company, contactId: id, phone: phone, email: email, ownerEntityId: owner, assignedAgentId: agent,
                                      archived: archived)
            recipient.place(addressState: state, entityZone: entityZone)
            found[id] = recipient
        }
        return found
    }

    /// A contact contacts answered about directly (the replica had not caught up yet).
    func recipient(from contact: Contact, entityZone: String?) -> Recipient {
        let phone = contact.phones.first
        var recipient = Recipient(companyId: contact.companyId, contactId: contact.id, phone: phone, email: contact.emails.first,
                                  ownerEntityId: contact.ownerEntityId, assignedAgentId: contact.assignedAgentId, archived: contact.status == .archive)
        recipient.place(addressState: contact.address?.state, entityZone: entityZone)
        return recipient
    }

    func entityZone(_ id: UUID, on connection: PostgresConnection) async throws -> String? {
        try await connection.query("SELECT time_zone FROM directory_entities WHERE id = \(id)", logger: logger).first(String.self)
    }

    /// The entities a user belongs to, from the directory replica.
    func userEntities(_ id: UUID, on connection: PostgresConnection) async throws -> Set<UUID> {
        let rows = try await connection.query("SELECT entity_ids FROM directory_users WHERE id = \(id)", logger: logger)
        for try await entities in rows.decode([UUID].self) { return Set(entities) }
        return []
    }

    func userRecipient(_ id: UUID, on connection: PostgresConnection) async throws -> Recipient? {
        for row in try await connection.prepared(SQL.UserRecipient.self, .values(id), logger: logger) {
            let (company, phone, email) = try row.decode((UUID, String?, String).self)
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
    func consent(address: String, companyId: UUID, since: Date, recentLimit: Int, on connection: PostgresConnection) async throws -> ConsentFacts {
        let ask = ConsentAsk(address: address, companyId: companyId, recentLimit: recentLimit)
        return try await consents([ask], since: since, on: connection)[ask] ?? (false, false, [])
    }

    /// `consent` for many addresses in one read, each with its own company and limit.
    func consents(_ asks: [ConsentAsk], since: Date, on connection: PostgresConnection) async throws -> [ConsentAsk: ConsentFacts] {
        let asks = Array(Set(asks))
        guard !asks.isEmpty else { return [:] }
        var found: [ConsentAsk: ConsentFacts] = [:]
        let rows = try await connection.prepared(SQL.Consents.self, .values(asks.map(\.address), asks.map(\.companyId), asks.map(\.recentLimit), since),
                                                 logger: logger)
        for row in rows {
            let (index, optedOut, onDNC, recent) = try row.decode((Int, Bool, Bool, [Date]).self)
            guard asks.indices.contains(index - 1) else { continue }
            found[asks[index - 1]] = ConsentFacts(optedOut: optedOut, onDNC: onDNC, recentAutomated: recent)
        }
        return found
    }

    struct ConsentAsk: Hashable, Sendable {
        var address: String
        var companyId: UUID
        var recentLimit: Int
    }

    /// No owner entity, bound as the nil UUID, which no entity has.
    static let noEntity = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    typealias ConsentFacts = (optedOut: Bool, onDNC: Bool, recentAutomated: [Date])
    typealias EmailFacts = (unsubscribed: Bool, companyName: String?, postalAddress: String?)

    struct EmailAsk: Hashable, Sendable {
        var address: String
        var companyId: UUID
        var ownerEntityId: UUID?
    }

    /// `emailFacts` for many e-mails in one read.
    func emailFacts(_ asks: [EmailAsk], on connection: PostgresConnection) async throws -> [EmailAsk: EmailFacts] {
        let asks = Array(Set(asks))
        guard !asks.isEmpty else { return [:] }
        var found: [EmailAsk: EmailFacts] = [:]
        let rows = try await connection.prepared(SQL.EmailFactsMany.self, .values(asks.map(\.address), asks.map(\.companyId),
                                                                                 asks.map { $0.ownerEntityId ?? Self.noEntity }), logger: logger)
        for row in rows {
            let (index, unsubscribed, companyName, postal) = try row.decode((Int, Bool, String?, String?).self)
            guard asks.indices.contains(index - 1) else { continue }
            found[asks[index - 1]] = (unsubscribed, companyName, postal)
        }
        return found
    }

    /// CAN-SPAM facts for an automated e-mail to a contact: whether the address unsubscribed from
    /// the company's automated e-mail, the company's name, and the postal address of the contact's
    /// owner entity or the nearest entity above it that has one.
    func emailFacts(address: String, companyId: UUID, ownerEntityId: UUID?, on connection: PostgresConnection) async throws -> EmailFacts {
        let ask = EmailAsk(address: address, companyId: companyId, ownerEntityId: ownerEntityId)
        return try await emailFacts([ask], on: connection)[ask] ?? (false, nil, nil)
    }

    /// An unsubscribe by the one-click link: recorded for the company with the ledger's when and
    /// how; true when it was new.
    func recordUnsubscribe(address: String, companyId: UUID, how: String, at: Date) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            let changed = try await connection.query("""
                INSERT INTO email_unsubscribes (company_id, address, at) VALUES (\(companyId), lower(\(address)), \(at))
                ON CONFLICT DO NOTHING RETURNING address
                """, logger: logger).collect().count == 1
            if changed {
                try await connection.query("""
                    INSERT INTO opt_out_ledger (id, number, action, how, recorded_by, at, company_id)
                    VALUES (\(UUID.random()), lower(\(address)), 'opt_out', \(how), 'recipient', \(at), \(companyId))
                    """, logger: logger)
            }
            return changed
        }
    }

    // MARK: messages

    static let selectColumns = "m.doc::text, (SELECT count(*) FROM message_attempts a WHERE a.message_id = m.id)::int"

    /// A new message with its send job (`job`) and, when it is a contact's, the event telling of
    /// it; with the request's key, whose answer is the message's JSON itself. One statement, so a
    /// request needs no transaction for it. False when the key was taken: nothing is stored then.
    @discardableResult
    func insert(_ message: Message, job: ScheduledJob? = nil, idempotency: IdempotencyRecord? = nil,
                on connection: PostgresConnection) async throws -> (stored: Bool, doc: String) {
        let doc = String(decoding: try JSONCoding.encoder.encode(message), as: UTF8.self)
        var bindings = PostgresBindings()
        try Self.bindColumns(of: message, doc: doc, to: &bindings)
        if let idempotency {
            bindings.append(idempotency.caller)
            bindings.append(idempotency.key)
            bindings.append(idempotency.fingerprint)
            bindings.append(idempotency.status)
            bindings.append(message.createdAt)
        } else {
            for _ in 0..<5 { bindings.appendNull() }
        }
        if let job { job.append(to: &bindings) } else { for _ in 0..<4 { bindings.appendNull() } }
        let events = try OutboxRows(createdEvent(message, doc: doc).map { [$0] } ?? [])
        events.append(to: &bindings)
        guard try await connection.prepared(SQL.InsertMessage.self, bindings, logger: logger).count == 1 else { return (false, doc) }
        try await job?.requestWakeup(on: connection, logger: logger)
        try await events.requestWakeup(on: connection, logger: logger)
        return (true, doc)
    }

    /// `SQL.insertMessage`'s values.
    private static func bindColumns(of message: Message, doc: String, to bindings: inout PostgresBindings) throws {
        func bind(_ value: (some PostgresEncodable & Sendable)?) throws {
            if let value { try bindings.append(value, context: .default) } else { bindings.appendNull() }
        }
        try bindings.append(all: message.id, message.companyId, message.channel.rawValue, message.direction.rawValue, message.purpose.rawValue,
                            message.state.rawValue)
        try bind(message.contactId)
        try bind(message.userId)
        try bindings.append(message.to, context: .default)
        try bind(message.provider)
        try bind(message.providerId)
        try bindings.append(message.createdAt, context: .default)
        try bind(message.sentAt)
        try bindings.append(doc, context: .default)
    }

    /// A batch's messages with their send jobs and events, and its key with `response` as its
    /// answer, in one statement: all of them, or none when the key is taken. Its text depends
    /// on how many messages there are (at most a batch's twenty), so it is planned each time.
    func insertBatch(_ entries: [(message: Message, job: ScheduledJob?)], idempotency: IdempotencyRecord, response: String, at: Date,
                     on connection: PostgresConnection) async throws -> Bool {
        var bindings = try PostgresBindings.values(idempotency.caller, idempotency.key, idempotency.fingerprint, idempotency.status, response, at)
        var parts = ["""
            key AS (
                INSERT INTO idempotency_keys (caller, key, fingerprint, status, response, created_at)
                VALUES ($1::text, $2::text, $3::text, $4::int8, $5::text, $6::timestamptz)
                ON CONFLICT DO NOTHING
                RETURNING caller)
            """]
        var next = 7
        var events: [OutgoingEvent] = []
        for (index, entry) in entries.enumerated() {
            let doc = String(decoding: try JSONCoding.encoder.encode(entry.message), as: UTF8.self)
            if let event = createdEvent(entry.message, doc: doc) { events.append(event) }
            try Self.bindColumns(of: entry.message, doc: doc, to: &bindings)
            parts.append("message\(index) AS (\(SQL.insertMessage(first: next, condition: "EXISTS (SELECT FROM key)")))")
            next += 14
            if let job = entry.job {
                job.append(to: &bindings)
                parts.append(JobQueue.insertCTE(first: next, source: "message\(index)", name: "job\(index)"))
                next += 4
            }
        }
        let rows = try OutboxRows(events)
        rows.append(to: &bindings)
        parts.append(Outbox.insertCTEs(first: next, condition: "EXISTS (SELECT FROM key)"))
        let query = PostgresQuery(unsafeSQL: "WITH " + parts.joined(separator: ",\n") + "\nSELECT count(*)::int FROM key", binds: bindings)
        guard try await connection.query(query, logger: logger).collect().first?.decode(Int.self) == 1 else { return false }
        try await entries.lazy.compactMap(\.job).first?.requestWakeup(on: connection, logger: logger)
        try await rows.requestWakeup(on: connection, logger: logger)
        return true
    }

    /// A message of a batch whose messages carry their own keys, with its key's fingerprint and
    /// answer.
    struct KeyedEntry: Sendable {
        var message: Message
        /// The message as JSON, encoded once for its row, its event and the request's answer.
        var doc: String
        var job: ScheduledJob?
        var key: String
        var fingerprint: String

        /// The stored answer of the message's key: a batch of one, this message.
        var response: String { "{\"items\":[" + doc + "]}" }
    }

    /// Each message stored once under its own key, with its send job and event, when the key is
    /// new; one statement for the lot, planned once. Answers the keys it stored: the others were
    /// taken (by an earlier try, or a twin whose statement this one waited for).
    func insertKeyed(_ entries: [KeyedEntry], caller: String, at: Date, on connection: PostgresConnection) async throws -> Set<String> {
        guard !entries.isEmpty else { return [] }
        let messages = entries.map(\.message), docs = entries.map(\.doc)
        let jobs = entries.compactMap { entry in entry.job.flatMap { job in job.runAt.map { (entry.message.id, job, $0) } } }
        var bindings = try PostgresBindings.values(
            caller, at, entries.map(\.key), entries.map(\.fingerprint), entries.map(\.response),
            messages.map(\.id), messages.map(\.companyId), messages.map(\.channel.rawValue), messages.map(\.direction.rawValue),
            messages.map(\.purpose.rawValue), messages.map(\.state.rawValue), messages.map { $0.contactId?.lowercasedString ?? "" },
            messages.map { $0.userId?.lowercasedString ?? "" }, messages.map(\.to), messages.map { $0.provider ?? "" },
            messages.map { $0.providerId ?? "" }, messages.map(\.createdAt), messages.map { $0.sentAt != nil }, messages.map { $0.sentAt ?? $0.createdAt },
            docs, jobs.map(\.0), jobs.map(\.1.kind), jobs.map(\.1.payload), jobs.map(\.2), jobs.map(\.1.maxAttempts))
        let events = try OutboxRows(zip(messages, docs).compactMap { message, doc in createdEvent(message, doc: doc) })
        events.append(to: &bindings)
        events.appendSubjects(to: &bindings)
        var stored: Set<String> = []
        for row in try await connection.prepared(SQL.InsertKeyed.self, bindings, logger: logger) { stored.insert(try row.decode(String.self)) }
        if !stored.isEmpty {
            if !jobs.isEmpty { try await Wakeups.request(JobQueue.wakeup, on: connection, logger: logger) }
            try await events.requestWakeup(on: connection, logger: logger)
        }
        return stored
    }

    func save(_ message: inout Message, on connection: PostgresConnection) async throws {
        var saved = [message]
        try await save(&saved, on: connection)
        message = saved[0]
    }

    /// Several messages saved at once (the sender's batch), each one version on.
    func save(_ messages: inout [Message], on connection: PostgresConnection) async throws {
        _ = try await saveDocuments(&messages, on: connection)
    }

    func saveAndPublish(_ message: inout Message, on connection: PostgresConnection) async throws {
        var saved = [message]
        try await saveAndPublish(&saved, on: connection)
        message = saved[0]
    }

    /// `save`, and the change published: the event feeds the contact's timeline (a message to a
    /// user, an agent's lead alert, has none to feed; its state is in the delivery log). Each
    /// message is encoded once for its row and its event.
    func saveAndPublish(_ messages: inout [Message], on connection: PostgresConnection) async throws {
        let docs = try await saveDocuments(&messages, on: connection)
        var events = zip(messages, docs).compactMap { message, doc in message.contactId == nil ? nil : updateEvent(message, doc: doc) }
        events += zip(messages, docs).compactMap { message, doc in failureEvent(message, doc: doc) }
        guard !events.isEmpty else { return }
        try await outbox.publish(events, on: connection, logger: logger)
    }

    /// Saves the messages one version on; answers their documents as stored.
    private func saveDocuments(_ messages: inout [Message], on connection: PostgresConnection) async throws -> [String] {
        guard !messages.isEmpty else { return [] }
        for index in messages.indices { messages[index].version += 1 }
        var docs: [String] = []
        docs.reserveCapacity(messages.count)
        for message in messages { docs.append(String(decoding: try JSONCoding.encoder.encode(message), as: UTF8.self)) }
        try await connection.prepared(SQL.SaveMessages.self, .values(
            messages.map(\.id), messages.map(\.state.rawValue), messages.map { $0.providerId != nil }, messages.map { $0.provider ?? "" },
            messages.map { $0.providerId ?? "" }, messages.map { $0.sentAt != nil }, messages.map { $0.sentAt ?? $0.updatedAt }, docs), logger: logger)
        return docs
    }

    /// The messages, locked for their sender (no-key lock: attempts are written beside them).
    /// ST-7: the automated messages still waiting to go to a contact (held or queued).
    func pendingAutomated(contactId: UUID, on connection: PostgresConnection) async throws -> [UUID] {
        let rows = try await connection.query("""
            SELECT id FROM messages
            WHERE contact_id = \(contactId) AND purpose = 'automated' AND direction = 'outbound' AND state IN ('held', 'queued')
            """, logger: logger)
        var ids: [UUID] = []
        for try await id in rows.decode(UUID.self) { ids.append(id) }
        return ids
    }

    func lockMessages(_ ids: [UUID], on connection: PostgresConnection) async throws -> [Message] {
        try decode(try await connection.prepared(SQL.LockMessages.self, .values(ids), logger: logger))
    }

    func lockMessage(_ id: UUID, on connection: PostgresConnection) async throws -> Message? {
        try await lockMessages([id], on: connection).first
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
        /// An office or team admin's entities: only messages to the contacts they own and to
        /// their users.
        var entities: Set<UUID>?
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
        if let entities = query.entities {
            let scope = try bind(Array(entities))
            conditions.append("""
                (m.contact_id IN (SELECT id FROM contact_replica WHERE owner_entity_id = ANY(\(scope)))
                 OR m.user_id IN (SELECT id FROM directory_users WHERE entity_ids && \(scope)))
                """)
        }
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

    private func decode(_ rows: [PostgresRow]) throws -> [Message] {
        try rows.map { row in
            let (doc, attempts) = try row.decode((String, Int).self)
            var message = try JSONCoding.decoder.decode(Message.self, from: Data(doc.utf8))
            message.attempts = attempts
            return message
        }
    }

    private func decode(_ rows: PostgresRowSequence) async throws -> [Message] {
        try decode(try await rows.collect())
    }

    // MARK: attempts

    /// Written on its own connection and committed before the provider is called, so a crash
    /// after the call leaves a trace the next attempt reconciles with the provider.
    func startAttempts(_ messageIds: [UUID], at: Date) async throws -> [UUID: Int] {
        var numbers: [UUID: Int] = [:]
        for row in try await client.prepared(SQL.StartAttempts.self, .values(messageIds, at), logger: logger) {
            let (id, number) = try row.decode((UUID, Int).self)
            numbers[id] = number
        }
        return numbers
    }

    struct AttemptEnd: Sendable {
        var messageId: UUID
        var number: Int
        var outcome: String
        var providerId: String?
        var error: String?
    }

    func finishAttempts(_ ends: [AttemptEnd], at: Date) async throws {
        guard !ends.isEmpty else { return }
        try await client.prepared(SQL.FinishAttempts.self, .values(
            ends.map(\.messageId), ends.map(\.number), ends.map(\.outcome), ends.map { $0.providerId != nil }, ends.map { $0.providerId ?? "" },
            ends.map { $0.error != nil }, ends.map { $0.error ?? "" }, at), logger: logger)
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

    struct IdempotencyRecord: Sendable {
        var caller: String
        var key: String
        var fingerprint: String
        var status: Int
    }

    /// A key as stored: the body it came with (its fingerprint) and its answer.
    struct StoredKey: Sendable {
        var fingerprint: String
        var status: Int
        var response: String
    }

    /// Many keys' stored answers at once, by key.
    func storedKeys(caller: String, keys: [String], on connection: PostgresConnection) async throws -> [String: StoredKey] {
        var found: [String: StoredKey] = [:]
        for row in try await connection.prepared(SQL.ReadKeys.self, .values(caller, keys), logger: logger) {
            let (key, fingerprint, status, response) = try row.decode((String, String, Int, String).self)
            found[key] = StoredKey(fingerprint: fingerprint, status: status, response: response)
        }
        return found
    }

    func storedKey(caller: String, key: String, on connection: PostgresConnection) async throws -> StoredKey? {
        try await storedKeys(caller: caller, keys: [key], on: connection)[key]
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

    /// An opt-out or its lifting recorded by hand for one company; true when it changed that
    /// company's state.
    func recordCompanyConsent(number: String, optOut: Bool, companyId: UUID, how: String, by: String, at: Date,
                              on connection: PostgresConnection) async throws -> Bool {
        let changed = try await connection.query(optOut ? """
            INSERT INTO company_opt_outs (company_id, number, at) VALUES (\(companyId), \(number), \(at))
            ON CONFLICT DO NOTHING RETURNING number
            """ : "DELETE FROM company_opt_outs WHERE company_id = \(companyId) AND number = \(number) RETURNING number",
            logger: logger).collect().count == 1
        if changed {
            try await connection.query("""
                INSERT INTO opt_out_ledger (id, number, action, how, recorded_by, at, company_id)
                VALUES (\(UUID.random()), \(number), \(optOut ? "opt_out" : "opt_in"), \(how), \(by), \(at), \(companyId))
                """, logger: logger)
        }
        return changed
    }

    /// A number's consent as one company sees it: the recipient's own word, which binds every
    /// company, and that company's own records; never another company's.
    func optOutHistory(_ number: String, companyId: UUID?) async throws -> OptOutView {
        let rows = try await client.query("""
            SELECT action, how, recorded_by, at, company_id FROM opt_out_ledger
            WHERE number = \(number) AND (company_id IS NULL OR company_id = \(companyId))
            ORDER BY seq DESC LIMIT 200
            """, logger: logger)
        var view = OptOutView()
        for try await (action, how, by, at, company) in rows.decode((String, String, String, Date, UUID?).self) {
            view.history.append(OptOutEntry(action: action, how: how, recordedBy: by, at: at, binds: company == nil ? "every_company" : "this_company"))
        }
        let state = try await client.query("""
            SELECT coalesce((SELECT opted_out FROM opt_outs WHERE number = \(number)), false),
                   EXISTS (SELECT 1 FROM company_opt_outs WHERE company_id = \(companyId) AND number = \(number))
                   OR EXISTS (SELECT 1 FROM email_unsubscribes WHERE company_id = \(companyId) AND address = \(number))
            """, logger: logger)
        for try await (everywhere, here) in state.decode((Bool, Bool).self) {
            view.everyCompany = everywhere
            view.thisCompany = here
        }
        return view
    }

    struct OptOutView: Sendable {
        var everyCompany = false
        var thisCompany = false
        var history: [OptOutEntry] = []
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


    /// What a contact's timeline and the services that follow its messages hear of a change: a
    /// `MessageUpdated` around the message's document as stored (encoded once for the row and the
    /// event; a message was a third of notifications' CPU, encoded again for each).
    private func updateEvent(_ message: Message, doc: String, type: String = EventType.messageUpdated) -> OutgoingEvent {
        outbox.envelope(type, version: message.version, companyId: message.companyId, subjectId: message.id, dataJSON: "{\"message\":" + doc + "}")
    }

    /// What a contact's timeline hears of a new message: a held, suppressed or failed one, and an
    /// inbound one, at once; a queued outbound one not yet, since its sender tells of it within
    /// moments (sent, failed, held again) — or, when the provider fails it for a while, at its
    /// first retry (`Sender`). Told of as queued too, every message cost a second event, delivery,
    /// inbox row and timeline write in contacts, for an entry its next version replaced at once.
    private func createdEvent(_ message: Message, doc: String) -> OutgoingEvent? {
        guard message.contactId != nil, !(message.direction == .outbound && message.state == .queued) else { return nil }
        return updateEvent(message, doc: doc)
    }

    /// An accepted message that failed or was suppressed afterwards, told to the service that
    /// asked for it when that service follows its messages (`Subscriptions`: SmartPlans counts a
    /// step's e-mail that the provider refused as failed, SP-7). A refusal at acceptance is in
    /// the answer, so only later changes (`saveAndPublish`) are told.
    private func failureEvent(_ message: Message, doc: String) -> OutgoingEvent? {
        guard message.direction == .outbound, message.state == .failed || message.state == .suppressed,
              let requester = ServiceName(rawValue: message.requestedBy),
              Subscriptions.subscribers(of: EventType.messageFailed).contains(requester) else { return nil }
        return updateEvent(message, doc: doc, type: EventType.messageFailed)
    }
}

extension MessageStore {
    /// The statements every message runs, prepared once per connection.
    enum SQL {
        enum ContactRecipients: PreparedSQL {
            static let sql = """
                SELECT c.id, c.company_id, c.phones[1], c.emails[1], c.snapshot->'address'->>'state', c.owner_entity_id, c.assigned_agent_id,
                    e.time_zone, c.status = 'archive'
                FROM contact_replica c LEFT JOIN directory_entities e ON e.id = c.owner_entity_id
                WHERE c.id = ANY($1::uuid[]) AND NOT c.deleted
                """
        }
        /// `Consent` for each address of `$1` with its company `$2` and limit `$3`, by position.
        enum Consents: PreparedSQL {
            static let sql = """
                SELECT a.n::int8,
                       coalesce((SELECT opted_out FROM opt_outs WHERE number = a.address), false)
                       OR EXISTS (SELECT 1 FROM company_opt_outs WHERE company_id = a.company_id AND number = a.address),
                       EXISTS (SELECT 1 FROM dnc_numbers WHERE company_id = a.company_id AND number = a.address),
                       ARRAY(SELECT sent_at FROM messages WHERE to_address = a.address AND purpose = 'automated' AND direction = 'outbound'
                             AND sent_at IS NOT NULL AND sent_at > $4 ORDER BY sent_at DESC LIMIT a.recent_limit)
                FROM unnest($1::text[], $2::uuid[], $3::int8[]) WITH ORDINALITY AS a(address, company_id, recent_limit, n)
                """
        }
        /// `emailFacts` for each address of `$1` with its company `$2` and owner entity `$3`, by position.
        enum EmailFactsMany: PreparedSQL {
            static let sql = """
                SELECT f.n::int8,
                    EXISTS (SELECT 1 FROM email_unsubscribes WHERE company_id = f.company_id AND address = lower(f.address)),
                    (SELECT name FROM directory_entities WHERE company_id = f.company_id AND kind = 'company' LIMIT 1),
                    (WITH RECURSIVE up AS (
                        SELECT id, parent_id, postal_address, 0 AS depth FROM directory_entities WHERE id = f.owner_entity_id
                        UNION ALL SELECT e.id, e.parent_id, e.postal_address, up.depth + 1 FROM directory_entities e JOIN up ON e.id = up.parent_id)
                     SELECT postal_address FROM up WHERE postal_address IS NOT NULL ORDER BY depth LIMIT 1)
                FROM unnest($1::text[], $2::uuid[], $3::uuid[]) WITH ORDINALITY AS f(address, company_id, owner_entity_id, n)
                """
        }
        enum UserRecipient: PreparedSQL {
            static let sql = "SELECT company_id, mobile_phone, email FROM directory_users WHERE id = $1 AND active"
        }
        /// A message (`$1 … $14`); the request's key (`$15 … $19`, none when `$15` is NULL), whose
        /// answer is the message's doc; its send job (`$20 … $23`) and its event (`$24 … $28`).
        /// A taken key stores nothing.
        enum InsertMessage: PreparedSQL {
            static let sql = """
                WITH key AS (
                    INSERT INTO idempotency_keys (caller, key, fingerprint, status, response, created_at)
                    SELECT $15::text, $16::text, $17::text, $18::int8, $14::text, $19::timestamptz WHERE $15::text IS NOT NULL
                    ON CONFLICT DO NOTHING
                    RETURNING caller),
                message AS (
                    \(insertMessage(first: 1, condition: "$15::text IS NULL OR EXISTS (SELECT FROM key)"))),
                \(JobQueue.insertCTE(first: 20, source: "message")),
                \(Outbox.insertCTEs(first: 24, condition: "EXISTS (SELECT FROM message)"))
                SELECT id FROM message
                """
        }
        /// One message's `MessageColumns` bound at `$first …`, stored when `condition` holds.
        static func insertMessage(first: Int, condition: String) -> String {
            let p = (first..<first + 14).map { "$\($0)" }
            return """
                INSERT INTO messages (id, company_id, channel, direction, purpose, state, contact_id, user_id, to_address, provider,
                    provider_id, created_at, sent_at, doc)
                SELECT \(p[0])::uuid, \(p[1])::uuid, \(p[2])::text, \(p[3])::text, \(p[4])::text, \(p[5])::text, \(p[6])::uuid, \(p[7])::uuid,
                    \(p[8])::text, \(p[9])::text, \(p[10])::text, \(p[11])::timestamptz, \(p[12])::timestamptz, \(p[13])::text
                WHERE \(condition)
                RETURNING id
                """
        }
        /// `insertKeyed`: the caller and time (`$1`, `$2`), the keys (`$3 … $5`), the messages
        /// (`$6 … $20`, by position with the keys), their send jobs (`$21 … $25`, by message id)
        /// and events (`$26 … $31`).
        enum InsertKeyed: PreparedSQL {
            static let sql = """
                WITH key AS (
                    INSERT INTO idempotency_keys (caller, key, fingerprint, status, response, created_at)
                    SELECT $1::text, k.key, k.fingerprint, 202, k.response, $2::timestamptz
                    FROM unnest($3::text[], $4::text[], $5::text[]) AS k(key, fingerprint, response)
                    ON CONFLICT DO NOTHING
                    RETURNING key),
                message AS (
                    INSERT INTO messages (id, company_id, channel, direction, purpose, state, contact_id, user_id, to_address, provider,
                        provider_id, created_at, sent_at, doc)
                    SELECT m.id, m.company_id, m.channel, m.direction, m.purpose, m.state, NULLIF(m.contact_id, '')::uuid, NULLIF(m.user_id, '')::uuid,
                        m.to_address, NULLIF(m.provider, ''), NULLIF(m.provider_id, ''), m.created_at, CASE WHEN m.has_sent THEN m.sent_at END, m.doc
                    FROM unnest($3::text[], $6::uuid[], $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                                $14::text[], $15::text[], $16::text[], $17::timestamptz[], $18::bool[], $19::timestamptz[], $20::text[])
                        AS m(key, id, company_id, channel, direction, purpose, state, contact_id, user_id, to_address, provider, provider_id,
                             created_at, has_sent, sent_at, doc)
                    WHERE m.key IN (SELECT key FROM key)
                    RETURNING id),
                job AS (
                    INSERT INTO jobs (kind, payload, run_at, max_attempts)
                    SELECT j.kind, j.payload::jsonb, j.run_at, j.max_attempts
                    FROM unnest($21::uuid[], $22::text[], $23::text[], $24::timestamptz[], $25::int8[]) AS j(message_id, kind, payload, run_at, max_attempts)
                    WHERE j.message_id IN (SELECT id FROM message)),
                \(Outbox.insertCTEs(first: 26, subjectIn: "SELECT id FROM message"))
                SELECT key FROM key
                """
        }
        enum SaveMessages: PreparedSQL {
            static let sql = """
                UPDATE messages m SET state = u.state, provider = CASE WHEN u.has_provider THEN u.provider END,
                    provider_id = CASE WHEN u.has_provider THEN u.provider_id END, sent_at = CASE WHEN u.has_sent THEN u.sent_at END, doc = u.doc
                FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::bool[], $7::timestamptz[], $8::text[])
                    AS u(id, state, has_provider, provider, provider_id, has_sent, sent_at, doc)
                WHERE m.id = u.id
                """
        }
        enum LockMessages: PreparedSQL {
            static let sql = "SELECT \(MessageStore.selectColumns) FROM messages m WHERE m.id = ANY($1::uuid[]) ORDER BY m.id FOR NO KEY UPDATE"
        }
        enum StartAttempts: PreparedSQL {
            static let sql = """
                INSERT INTO message_attempts (message_id, number, started_at, outcome)
                SELECT m.id, coalesce((SELECT max(a.number) FROM message_attempts a WHERE a.message_id = m.id), 0) + 1, $2, 'in_flight'
                FROM unnest($1::uuid[]) AS m(id)
                RETURNING message_id, number
                """
        }
        enum FinishAttempts: PreparedSQL {
            static let sql = """
                UPDATE message_attempts a SET outcome = f.outcome, provider_id = CASE WHEN f.has_provider_id THEN f.provider_id END,
                    error = CASE WHEN f.has_error THEN f.error END, finished_at = $8
                FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::bool[], $5::text[], $6::bool[], $7::text[])
                    AS f(message_id, number, outcome, has_provider_id, provider_id, has_error, error)
                WHERE a.message_id = f.message_id AND a.number = f.number
                """
        }
        enum ReadKeys: PreparedSQL {
            static let sql = "SELECT key, fingerprint, status, response FROM idempotency_keys WHERE caller = $1 AND key = ANY($2::text[])"
        }
    }
}
