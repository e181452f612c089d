import Foundation
import Logging
import Models
import NIOPosix
import PostgresNIO
import ServiceKit

/// An entry on a contact's timeline (ST-9).
struct TimelineEntry: Codable, Sendable, Hashable {
    var id: UUID
    var contactId: UUID
    var kind: String
    var at: Date
    var actor: Actor
    var summary: String
    var data: JSONValue

    init(id: UUID = UUID.random(), contactId: UUID, kind: String, at: Date, actor: Actor, summary: String, data: JSONValue = .object([:])) {
        self.id = id
        self.contactId = contactId
        self.kind = kind
        self.at = at
        self.actor = actor
        self.summary = summary
        self.data = data
    }
}

/// A change to write: the contact as it is after, its timeline entries and its events; all in
/// one transaction.
struct ContactWrite: Sendable {
    var contact: Contact
    var timeline: [TimelineEntry]
    var events: [OutgoingEvent]
}

/// Which contacts a list shows (ST-6).
struct ContactFilter: Sendable {
    enum Sort: String, CaseIterable, Sendable {
        case createdDesc = "-createdAt", createdAsc = "createdAt", updatedDesc = "-updatedAt", updatedAsc = "updatedAt"
        var column: String { self == .createdDesc || self == .createdAsc ? "created_at" : "updated_at" }
        var descending: Bool { self == .createdDesc || self == .updatedDesc }
    }

    var companyId: UUID
    /// nil: every entity of the company.
    var ownerEntities: Set<UUID>?
    /// Agents see only their own contacts.
    var onlyAssignedTo: UUID?
    var statuses: [ContactStatus] = []
    var leadTypes: [LeadType] = []
    var tags: [String] = []
    var assignedAgentId: UUID?
    var source: String?
    var pondId: UUID?
    var lenderId: UUID?
    var createdFrom: Date?
    var createdTo: Date?
    var sort: Sort = .createdDesc
    var after: (Date, UUID)?
    var limit = 50
}

/// Duplicate e-mail or phone inside a company: names the contact that has it.
struct ContactPointTaken: Error, Equatable {
    var kind: String
    var value: String
    var contactId: UUID
}

struct ContactStore: Sendable {
    let client: PostgresClient
    let outbox: Outbox
    let logger: Logger

    static let columns = """
        id, company_id, owner_entity_id, status, first_name, last_name, emails, phones, lead_type, source, source_id, tags,
        assigned_agent_id, lender_id, pond_id, address::text, search_interest::text, listing::text, agent_site_agent_id, origin,
        behavioral_alerts, version, created_at, updated_at
        """

    // MARK: Writes

    /// Inserts a new contact with its contact points, timeline and events, in one statement and
    /// so without a transaction around it (every lead comes this way: six round trips were one).
    /// An e-mail or phone another contact holds writes nothing and is reported as
    /// `ContactPointTaken`: the statement looks for it first, and one taken by a contact created
    /// alongside fails it whole. So a lead needs no lookup of its e-mails and phones before it
    /// is written; only a returning one is looked up, after.
    func create(_ write: ContactWrite) async throws {
        let contact = write.contact
        let points = contact.emails.map { ("email", $0) } + contact.phones.map { ("phone", $0) }
        let (bindings, events) = try Self.bindings(of: write, points: points)
        let created: Bool
        do {
            created = try await client.autocommit(logger: logger) { connection in
                guard try await connection.prepared(SQL.CreateContact.self, bindings, logger: logger).first?.decode(Int.self) == 1 else { return false }
                try await events.requestWakeup(on: connection, logger: logger)
                return true
            }
        } catch let error as PSQLError where error.isPointTaken {
            throw try await heldPoint(of: contact, among: points) ?? error
        }
        guard created else {
            // Held when the statement looked; released since, it is a race lost to a change.
            throw try await heldPoint(of: contact, among: points)
                ?? APIError.conflict("an e-mail or phone of the contact changed hands meanwhile; send it again", code: "version_conflict")
        }
    }

    /// The values of `SQL.CreateContact` (with `points`) and `SQL.SaveContact` (without): the
    /// contact's columns, its points' kinds and values, its timeline and its events.
    private static func bindings(of write: ContactWrite, points: [(String, String)]?) throws -> (PostgresBindings, OutboxRows) {
        let events = try OutboxRows(write.events)
        var bindings = try ContactColumns([write.contact]).bindings
        if let points { try bindings.append(all: points.map(\.0), points.map(\.1)) }
        try TimelineColumns(write.timeline.map { ($0, write.contact.companyId) }).append(to: &bindings)
        events.append(to: &bindings)
        return (bindings, events)
    }

    /// The first of `points`, in the contact's order, that another contact of its company holds.
    private func heldPoint(of contact: Contact, among points: [(String, String)]) async throws -> ContactPointTaken? {
        let owners = try await matching(companyId: contact.companyId, emails: contact.emails, phones: contact.phones)
        var holder: [String: UUID] = [:]
        for (id, held) in owners where id != contact.id {
            for point in held { holder[point] = id }
        }
        return points.lazy.compactMap { kind, value in holder[kind + ":" + value].map { ContactPointTaken(kind: kind, value: value, contactId: $0) } }.first
    }

    /// Saves a changed contact if nobody changed it meanwhile (`version - 1` is still stored).
    /// Returns false on a lost race. A change that keeps the e-mails and phones (an assignment,
    /// a status, a tag: most of them) is one statement without a transaction; new points are
    /// claimed one by one in a transaction, to name the one another contact holds.
    func update(_ write: ContactWrite, previous: Contact) async throws -> Bool {
        guard write.contact.emails == previous.emails && write.contact.phones == previous.phones else {
            return try await client.transaction(logger: logger) { connection in
                guard try await save(write.contact, on: connection) else { return false }
                try await connection.query("DELETE FROM contact_points WHERE contact_id = \(write.contact.id)", logger: logger)
                try await claimPoints(of: write.contact, on: connection)
                try await append(write.timeline, companyId: write.contact.companyId, on: connection)
                try await outbox.publish(write.events, on: connection, logger: logger)
                return true
            }
        }
        let (bindings, events) = try Self.bindings(of: write, points: nil)
        return try await client.autocommit(logger: logger) { connection in
            guard try await connection.prepared(SQL.SaveContact.self, bindings, logger: logger).first?.decode(Int.self) == 1 else { return false }
            try await events.requestWakeup(on: connection, logger: logger)
            return true
        }
    }

    func softDelete(_ write: ContactWrite, at: Date) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            let updated = try await connection.query("""
                UPDATE contacts SET deleted_at = \(at), version = \(write.contact.version), updated_at = \(at)
                WHERE id = \(write.contact.id) AND version = \(write.contact.version - 1) AND deleted_at IS NULL RETURNING id
                """, logger: logger).collect().count
            guard updated == 1 else { return false }
            try await connection.query("DELETE FROM contact_points WHERE contact_id = \(write.contact.id)", logger: logger)
            try await append(write.timeline, companyId: write.contact.companyId, on: connection)
            try await outbox.publish(write.events, on: connection, logger: logger)
            return true
        }
    }

    private func save(_ contact: Contact, on connection: PostgresConnection) async throws -> Bool {
        try await save([contact], on: connection) == 1
    }

    /// Saves the contacts whose `version - 1` is still stored; answers how many that was.
    private func save(_ contacts: [Contact], on connection: PostgresConnection) async throws -> Int {
        try await save(try ContactColumns(contacts), on: connection)
    }

    private func save(_ columns: ContactColumns, on connection: PostgresConnection) async throws -> Int {
        guard !columns.ids.isEmpty else { return 0 }
        return try await connection.query(PostgresQuery(unsafeSQL: """
            UPDATE contacts c SET (\(ContactColumns.changeable)) = (\(ContactColumns.changeableValues))
            FROM \(ContactColumns.rows)
            WHERE c.id = x.id AND c.version = x.version - 1 AND c.deleted_at IS NULL
            RETURNING c.id
            """, binds: try columns.bindings), logger: logger).collect().count
    }

    /// Every e-mail and phone belongs to one contact of a company; a taken one is reported.
    private func claimPoints(of contact: Contact, on connection: PostgresConnection) async throws {
        let points = contact.emails.map { ("email", $0) } + contact.phones.map { ("phone", $0) }
        guard !points.isEmpty else { return }
        var claimed = Set<String>()
        for row in try await connection.prepared(SQL.ClaimPoints.self, .values(contact.companyId, contact.id, points.map(\.0), points.map(\.1)),
                                                 logger: logger) {
            let (kind, value) = try row.decode((String, String).self)
            claimed.insert(kind + ":" + value)
        }
        guard let missing = points.first(where: { !claimed.contains($0.0 + ":" + $0.1) }) else { return }
        let owner = try await connection.query("""
            SELECT contact_id FROM contact_points WHERE company_id = \(contact.companyId) AND kind = \(missing.0) AND value = \(missing.1)
            """, logger: logger)
        for try await id in owner.decode(UUID.self) where id != contact.id {
            throw ContactPointTaken(kind: missing.0, value: missing.1, contactId: id)
        }
    }

    func append(_ entries: [TimelineEntry], companyId: UUID, on connection: PostgresConnection) async throws {
        try await appendBatch(entries.map { ($0, companyId) }, on: connection)
    }

    /// One statement for many entries (imports write thousands).
    func appendBatch(_ entries: [(TimelineEntry, UUID)], on connection: PostgresConnection) async throws {
        _ = try await writeTimeline(entries, onConflict: .none, on: connection)
    }

    /// What an entry whose id exists becomes: a plain append (ids are new), kept as it is, or
    /// replaced when its data field of that name (a version number) is higher — so a message's
    /// entry follows its state whatever order the updates arrive in (`sameActor`: only by the
    /// actor that wrote it).
    enum TimelineConflict {
        case none
        case keepExisting
        case replaceNewer(field: String, sameActor: Bool = false)
    }

    /// Inserts entries; answers the ids written (none for a plain append).
    func writeTimeline(_ entries: [(TimelineEntry, UUID)], onConflict: TimelineConflict, on connection: PostgresConnection) async throws -> Set<UUID> {
        guard !entries.isEmpty else { return [] }
        // Prepared, each way: a delivery log's or a plan's batch of entries is planned once per connection.
        var bindings = try TimelineColumns(entries).bindings
        let rows: [PostgresRow]
        switch onConflict {
        case .none:
            try await connection.prepared(SQL.AppendTimeline.self, bindings, logger: logger)
            return []
        case .keepExisting:
            rows = try await connection.prepared(SQL.KeepTimeline.self, bindings, logger: logger)
        case .replaceNewer(let name, let sameActor):
            try bindings.append(all: name, sameActor)
            rows = try await connection.prepared(SQL.ReplaceNewerTimeline.self, bindings, logger: logger)
        }
        return Set(try rows.map { try $0.decode(UUID.self) })
    }

    /// A service's entry: written once per id, replaced only by the same service for the same
    /// contact with a higher `data.revision`; true when it was written.
    func writeServiceEntry(_ entry: TimelineEntry, companyId: UUID) async throws -> Bool {
        try await writeServiceEntries([(entry, companyId)]).contains(entry.id)
    }

    /// A company's tags and how many of its contacts carry each.
    func tags(companyId: UUID) async throws -> [(String, Int)] {
        var result: [(String, Int)] = []
        for try await row in try await client.query("""
            SELECT t, count(*)::int FROM contacts, unnest(tags) AS t WHERE company_id = \(companyId) AND deleted_at IS NULL GROUP BY t ORDER BY t
            """, logger: logger).decode((String, Int).self) { result.append(row) }
        return result
    }

    /// Renames (or, with nil, deletes) a tag on every contact of the company in one statement,
    /// and publishes one `tag.renamed` / `tag.deleted` for the replicas and plan triggers. A
    /// contact that had both names keeps one; each keeps its tags' order.
    func replaceTag(_ tag: String, with name: String?, companyId: UUID, actor: Actor, at: Date) async throws -> Int {
        try await client.transaction(logger: logger) { connection in
            let changed = try await connection.query("""
                UPDATE contacts SET version = version + 1, updated_at = \(at), tags = ARRAY(
                    SELECT t FROM unnest(array_replace(tags, \(tag)::text, \(name)::text)) WITH ORDINALITY AS u(t, n)
                    WHERE t IS NOT NULL GROUP BY t ORDER BY min(n))
                WHERE company_id = \(companyId) AND \(tag)::text = ANY(tags) RETURNING id
                """, logger: logger).collect().count
            let event = try OutgoingEvent(header: EventHeader(type: name == nil ? EventType.tagDeleted : EventType.tagRenamed, version: 1, occurredAt: at,
                                                              companyId: companyId, subjectId: companyId),
                                          data: TagChanged(companyId: companyId, tag: tag, renamedTo: name, contacts: changed, actor: actor))
            try await outbox.publish([event], on: connection, logger: logger)
            return changed
        }
    }

    /// Many services' entries in one statement; the ids of those written.
    func writeServiceEntries(_ entries: [(TimelineEntry, UUID)]) async throws -> Set<UUID> {
        guard !entries.isEmpty else { return [] }
        return try await client.withConnection { connection in
            try await writeTimeline(entries, onConflict: .replaceNewer(field: "revision", sameActor: true), on: connection)
        }
    }

    /// The company of each contact not deleted.
    func companies(of contactIds: [UUID]) async throws -> [UUID: UUID] {
        var result: [UUID: UUID] = [:]
        for try await (id, company) in try await client.query("""
            SELECT id, company_id FROM contacts WHERE id = ANY(\(contactIds)) AND deleted_at IS NULL
            """, logger: logger).decode((UUID, UUID).self) { result[id] = company }
        return result
    }

    func addTimeline(_ entry: TimelineEntry, companyId: UUID, events: [OutgoingEvent]) async throws {
        try await client.transaction(logger: logger) { connection in
            try await append([entry], companyId: companyId, on: connection)
            try await outbox.publish(events, on: connection, logger: logger)
        }
    }

    /// `addTimeline` for an entry whose id may have been written before: written and its events
    /// published only the first time. False when it was there already.
    func addTimelineOnce(_ entry: TimelineEntry, companyId: UUID, events: [OutgoingEvent]) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            let written = try await writeTimeline([(entry, companyId)], onConflict: .keepExisting, on: connection).contains(entry.id)
            if written { try await outbox.publish(events, on: connection, logger: logger) }
            return written
        }
    }

    /// Rows per statement of an import. The database writes one chunk while the thread pool
    /// encodes the next: encoding the bound values of 10,000 rows took about as long as the
    /// database took to insert a quarter of them, and the database waited for it.
    static let importChunk = 2_000

    /// One statement of an import, its values encoded.
    private enum ImportStep: Sendable {
        case contacts(PostgresBindings)
        case updates(ContactColumns)
        case points(PostgresBindings)
        case timeline(PostgresBindings)
        case events([OutgoingEvent])
    }

    /// Writes an import in one transaction: new contacts, changed contacts (each still at its
    /// read version), their contact points, timeline entries and events, `importChunk` rows a
    /// statement. `events` is built on the thread pool after the rows, which the database needs
    /// first. False when a contact changed meanwhile.
    func importBatch(creates: [Contact], updates: [Contact], timeline: [TimelineEntry],
                     events: @escaping @Sendable () throws -> [OutgoingEvent]) async throws -> Bool {
        guard let companyId = (creates + updates).first?.companyId else { return true }
        func chunks<Item>(_ items: [Item]) -> [[Item]] {
            stride(from: 0, to: items.count, by: Self.importChunk).map { Array(items[$0..<min($0 + Self.importChunk, items.count)]) }
        }
        // Encoded one after another on one thread of the pool, in the order the transaction
        // runs them, while it runs the ones before; the other core is the database's.
        var work: [@Sendable () throws -> ImportStep] = chunks(creates).map { chunk in { .contacts(try ContactColumns(chunk).bindings) } }
        if !updates.isEmpty { work.append { .updates(try ContactColumns(updates)) } }
        work += chunks(creates + updates).map { chunk in { .points(try PointColumns(chunk).bindings) } }
        work += chunks(timeline).map { chunk in { .timeline(try TimelineColumns(chunk.map { ($0, companyId) }).bindings) } }
        work.append { .events(try events()) }
        let (steps, encoded) = AsyncThrowingStream.makeStream(of: ImportStep.self)
        let encoder = Task { [work] in
            do {
                for encode in work { encoded.yield(try await NIOThreadPool.singleton.runIfActive(encode)) }
                encoded.finish()
            } catch {
                encoded.finish(throwing: error)
            }
        }
        defer { encoder.cancel() }
        // A lost race must undo the rows already written, so it leaves by an error, which rolls back.
        struct LostRace: Error {}
        do {
            try await client.transaction(logger: logger) { connection in
                for try await step in steps {
                    switch step {
                    case .contacts(let bindings):
                        try await connection.prepared(SQL.InsertContacts.self, bindings, logger: logger)
                    case .updates(let updated):
                        guard try await save(updated, on: connection) == updates.count else { throw LostRace() }
                        try await connection.query("DELETE FROM contact_points WHERE contact_id = ANY(\(updated.ids))", logger: logger)
                    case .points(let bindings):
                        // A plain insert: the file's points were matched before, so one taken since
                        // is a race lost, which the unique key reports, at half the cost of ON
                        // CONFLICT's speculative insertion of every point.
                        do {
                            try await connection.prepared(SQL.InsertPoints.self, bindings, logger: logger)
                        } catch let error as PSQLError where error.isPointTaken {
                            throw LostRace()
                        }
                    case .timeline(let bindings):
                        try await connection.prepared(SQL.AppendTimeline.self, bindings, logger: logger)
                    case .events(let events):
                        try await outbox.publish(events, on: connection, logger: logger)
                    }
                }
            }
            return true
        } catch is LostRace {
            return false
        }
    }

    // MARK: Reads

    func contacts(_ ids: [UUID], companyId: UUID) async throws -> [Contact] {
        guard !ids.isEmpty else { return [] }
        var bindings = PostgresBindings()
        try bindings.append(ids, context: .default)
        try bindings.append(companyId, context: .default)
        return try await decode(try await client.query(PostgresQuery(
            unsafeSQL: "SELECT \(Self.columns) FROM contacts WHERE id = ANY($1) AND company_id = $2 AND deleted_at IS NULL", binds: bindings),
            logger: logger))
    }

    /// Without a company only for services, which act for every company.
    /// On `connection` when given: an event handler reads inside its own transaction, never
    /// from the pool, so handlers holding every pooled connection cannot wait on one another.
    /// The contacts of `ids` not deleted, by id, read on the caller's transaction.
    func contacts(_ ids: [UUID], on connection: PostgresConnection) async throws -> [UUID: Contact] {
        guard !ids.isEmpty else { return [:] }
        let found = try await decode(try await connection.query("""
            SELECT \(unescaped: Self.columns) FROM contacts WHERE id = ANY(\(ids)) AND deleted_at IS NULL
            """, logger: logger))
        return Dictionary(found.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }

    func contact(_ id: UUID, companyId: UUID?, on connection: PostgresConnection? = nil) async throws -> Contact? {
        let query: PostgresQuery = """
            SELECT \(unescaped: Self.columns) FROM contacts
            WHERE id = \(id) AND (\(companyId)::uuid IS NULL OR company_id = \(companyId)) AND deleted_at IS NULL
            """
        if let connection { return try await decode(try await connection.query(query, logger: logger)).first }
        return try await decode(try await client.query(query, logger: logger)).first
    }

    /// The contacts holding any of these e-mails or phones, in one company.
    func matching(companyId: UUID, emails: [String], phones: [String], on connection: PostgresConnection? = nil) async throws -> [UUID: Set<String>] {
        let points = emails.map { ("email", $0) } + phones.map { ("phone", $0) }
        guard !points.isEmpty else { return [:] }
        // A few points (a lead, an edit) are probed by unique key one by one: as a join the planner
        // may match on the company alone and filter its every point, as it did for a company its
        // statistics had not seen yet. An import's thousands are hashed against the company's.
        let kinds = points.map(\.0), values = points.map(\.1)
        let rows: [PostgresRow]
        if points.count <= 64 {
            let bindings = try PostgresBindings.values(kinds, values, companyId)
            rows = if let connection {
                try await connection.prepared(SQL.MatchFewPoints.self, bindings, logger: logger)
            } else {
                try await client.prepared(SQL.MatchFewPoints.self, bindings, logger: logger)
            }
        } else {
            let query: PostgresQuery = """
                SELECT p.contact_id, p.kind || ':' || p.value FROM contact_points p
                JOIN unnest(\(kinds), \(values)) AS q(kind, value) ON p.kind = q.kind AND p.value = q.value
                WHERE p.company_id = \(companyId)
                """
            rows = if let connection {
                try await connection.query(query, logger: logger).collect()
            } else {
                try await client.query(query, logger: logger).collect()
            }
        }
        var result: [UUID: Set<String>] = [:]
        for row in rows {
            let (id, point) = try row.decode((UUID, String).self)
            result[id, default: []].insert(point)
        }
        return result
    }

    func list(_ filter: ContactFilter) async throws -> [Contact] {
        var bindings = PostgresBindings()
        func bind(_ value: some PostgresEncodable & Sendable) throws -> String {
            try bindings.append(value, context: .default)
            return "$\(bindings.count)"
        }
        var conditions = ["company_id = \(try bind(filter.companyId))", "deleted_at IS NULL"]
        if let entities = filter.ownerEntities { conditions.append("owner_entity_id = ANY(\(try bind(Array(entities))))") }
        if let agent = filter.onlyAssignedTo { conditions.append("assigned_agent_id = \(try bind(agent))") }
        if !filter.statuses.isEmpty { conditions.append("status = ANY(\(try bind(filter.statuses.map(\.rawValue))))") }
        if !filter.leadTypes.isEmpty { conditions.append("lead_type = ANY(\(try bind(filter.leadTypes.map(\.rawValue))))") }
        if !filter.tags.isEmpty { conditions.append("tags && \(try bind(filter.tags))") }
        if let agent = filter.assignedAgentId { conditions.append("assigned_agent_id = \(try bind(agent))") }
        if let source = filter.source { conditions.append("source = \(try bind(source))") }
        if let pond = filter.pondId { conditions.append("pond_id = \(try bind(pond))") }
        if let lender = filter.lenderId { conditions.append("lender_id = \(try bind(lender))") }
        if let from = filter.createdFrom { conditions.append("created_at >= \(try bind(from))") }
        if let to = filter.createdTo { conditions.append("created_at < \(try bind(to))") }
        let column = filter.sort.column
        let direction = filter.sort.descending ? "DESC" : "ASC"
        if let (value, id) = filter.after {
            conditions.append("(\(column), id) \(filter.sort.descending ? "<" : ">") (\(try bind(value)), \(try bind(id)))")
        }
        let sql = "SELECT \(Self.columns) FROM contacts WHERE \(conditions.joined(separator: " AND ")) ORDER BY \(column) \(direction), id \(direction) LIMIT \(try bind(filter.limit))"
        return try await decode(try await client.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger))
    }

    func pondExists(_ id: UUID, companyId: UUID) async throws -> Bool {
        try await client.query("SELECT 1 FROM ponds WHERE id = \(id) AND company_id = \(companyId)", logger: logger).collect().count == 1
    }

    func decode(_ rows: PostgresRowSequence) async throws -> [Contact] {
        var result: [Contact] = []
        for try await row in rows {
            let (id, companyId, owner, status, first, last, emails, phones, leadType, source, sourceId, tags) =
                try row.decode((UUID, UUID, UUID, String, String?, String?, [String], [String], String?, String?, UUID?, [String]).self)
            let columns = row.makeRandomAccess()
            let (agent, lender, pond) = (try columns[12].decode(UUID?.self), try columns[13].decode(UUID?.self), try columns[14].decode(UUID?.self))
            let address = try columns[15].decode(String?.self).map { try JSONCoding.decoder.decode(Address.self, from: Data($0.utf8)) }
            let interest = try columns[16].decode(String?.self).map { try JSONCoding.decoder.decode(SearchInterest.self, from: Data($0.utf8)) }
            let listing = try columns[17].decode(String?.self).map { try JSONCoding.decoder.decode(ListingInterest.self, from: Data($0.utf8)) }
            result.append(Contact(
                id: id, companyId: companyId, ownerEntityId: owner, status: ContactStatus(rawValue: status) ?? .newLead, firstName: first,
                lastName: last, emails: emails, phones: phones, leadType: leadType.flatMap(LeadType.init(rawValue:)), source: source,
                sourceId: sourceId, tags: tags, assignedAgentId: agent, lenderId: lender, pondId: pond, address: address,
                searchInterest: interest, listing: listing, agentSiteAgentId: try columns[18].decode(UUID?.self),
                origin: CreationOrigin(rawValue: try columns[19].decode(String.self)) ?? .manual,
                behavioralAlerts: try columns[20].decode(Bool.self), version: try columns[21].decode(Int.self),
                createdAt: try columns[22].decode(Date.self), updatedAt: try columns[23].decode(Date.self)))
        }
        return result
    }

    func timeline(contactId: UUID, before: (Date, Int64)?, limit: Int) async throws -> [(TimelineEntry, Int64)] {
        let rows: PostgresRowSequence
        if let (at, seq) = before {
            rows = try await client.query("""
                SELECT id, contact_id, kind, at, actor::text, summary, data::text, seq FROM timeline
                WHERE contact_id = \(contactId) AND (at, seq) < (\(at), \(seq)) ORDER BY at DESC, seq DESC LIMIT \(limit)
                """, logger: logger)
        } else {
            rows = try await client.query("""
                SELECT id, contact_id, kind, at, actor::text, summary, data::text, seq FROM timeline
                WHERE contact_id = \(contactId) ORDER BY at DESC, seq DESC LIMIT \(limit)
                """, logger: logger)
        }
        var result: [(TimelineEntry, Int64)] = []
        for try await (id, contact, kind, at, actor, summary, data, seq) in rows.decode((UUID, UUID, String, Date, String, String, String, Int64).self) {
            result.append((TimelineEntry(id: id, contactId: contact, kind: kind, at: at,
                                         actor: try JSONCoding.decoder.decode(Actor.self, from: Data(actor.utf8)), summary: summary,
                                         data: try JSONCoding.decoder.decode(JSONValue.self, from: Data(data.utf8))), seq))
        }
        return result
    }
}

/// Contacts as the columns of one `unnest`, so a write of one contact and an import of
/// thousands are the same statement. PostgresNIO binds arrays of plain values only: a row's own
/// arrays travel as array literals and a missing value as '' (never a stored value: the rules
/// turn empty text into nil, and ids and JSON are never empty).
struct ContactColumns: Sendable {
    var ids: [UUID] = [], companies: [UUID] = [], owners: [UUID] = [], statuses: [String] = []
    var firstNames: [String] = [], lastNames: [String] = [], emails: [String] = [], phones: [String] = []
    var leadTypes: [String] = [], sources: [String] = [], sourceIds: [String] = [], tags: [String] = []
    var agents: [String] = [], lenders: [String] = [], ponds: [String] = []
    var addresses: [String] = [], interests: [String] = [], listings: [String] = [], siteAgents: [String] = []
    var origins: [String] = [], alerts: [Bool] = [], versions: [Int] = [], created: [Date] = [], updated: [Date] = []

    init(_ contacts: [Contact]) throws {
        let encoder = JSONCoding.encoder
        func json(_ value: (some Encodable)?) throws -> String {
            guard let value else { return "" }
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        }
        for contact in contacts {
            ids.append(contact.id); companies.append(contact.companyId); owners.append(contact.ownerEntityId)
            statuses.append(contact.status.rawValue); firstNames.append(contact.firstName ?? ""); lastNames.append(contact.lastName ?? "")
            emails.append(PostgresArrayLiteral.text(contact.emails)); phones.append(PostgresArrayLiteral.text(contact.phones))
            leadTypes.append(contact.leadType?.rawValue ?? ""); sources.append(contact.source ?? "")
            sourceIds.append(contact.sourceId?.uuidString ?? ""); tags.append(PostgresArrayLiteral.text(contact.tags))
            agents.append(contact.assignedAgentId?.uuidString ?? ""); lenders.append(contact.lenderId?.uuidString ?? "")
            ponds.append(contact.pondId?.uuidString ?? ""); addresses.append(try json(contact.address))
            interests.append(try json(contact.searchInterest)); listings.append(try json(contact.listing))
            siteAgents.append(contact.agentSiteAgentId?.uuidString ?? ""); origins.append(contact.origin.rawValue)
            alerts.append(contact.behavioralAlerts); versions.append(contact.version)
            created.append(contact.createdAt); updated.append(contact.updatedAt)
        }
    }

    var bindings: PostgresBindings {
        get throws {
            try .of(ids, companies, owners, statuses, firstNames, lastNames, emails, phones, leadTypes, sources, sourceIds, tags,
                    agents, lenders, ponds, addresses, interests, listings, siteAgents, origins, alerts, versions, created, updated)
        }
    }

    static let rows = """
        unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
            $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
            $20::text[], $21::bool[], $22::int8[], $23::timestamptz[], $24::timestamptz[])
        AS x(id, company_id, owner_entity_id, status, first_name, last_name, emails, phones, lead_type, source, source_id, tags,
            assigned_agent_id, lender_id, pond_id, address, search_interest, listing, agent_site_agent_id, origin, behavioral_alerts,
            version, created_at, updated_at)
        """

    /// Every stored column but the id, the company, the origin and the creation time, which a
    /// contact keeps for life; and their values from `rows`, in the same order.
    static let changeable = """
        owner_entity_id, status, first_name, last_name, emails, phones, lead_type, source, source_id, tags, assigned_agent_id,
        lender_id, pond_id, address, search_interest, listing, agent_site_agent_id, behavioral_alerts, version, updated_at
        """
    static let changeableValues = """
        x.owner_entity_id, x.status, NULLIF(x.first_name, ''), NULLIF(x.last_name, ''), x.emails::text[], x.phones::text[],
        NULLIF(x.lead_type, ''), NULLIF(x.source, ''), NULLIF(x.source_id, '')::uuid, x.tags::text[],
        NULLIF(x.assigned_agent_id, '')::uuid, NULLIF(x.lender_id, '')::uuid, NULLIF(x.pond_id, '')::uuid,
        NULLIF(x.address, '')::jsonb, NULLIF(x.search_interest, '')::jsonb, NULLIF(x.listing, '')::jsonb,
        NULLIF(x.agent_site_agent_id, '')::uuid, x.behavioral_alerts, x.version, x.updated_at
        """
}

/// Timeline entries as the columns of one statement: their data as one JSON array that the
/// database splits in step with the columns, an actor encoded once however many entries it wrote.
struct TimelineColumns: Sendable {
    var ids: [UUID] = [], contactIds: [UUID] = [], companyIds: [UUID] = [], kinds: [String] = [], ats: [Date] = []
    var actors: [String] = [], summaries: [String] = []
    var data = "[]"

    init(_ entries: [(TimelineEntry, UUID)]) throws {
        let encoder = JSONCoding.encoder
        var actorJSON: [Actor: String] = [:]
        for (entry, company) in entries {
            ids.append(entry.id); contactIds.append(entry.contactId); companyIds.append(company); kinds.append(entry.kind)
            ats.append(entry.at); summaries.append(entry.summary)
            if let json = actorJSON[entry.actor] {
                actors.append(json)
            } else {
                let json = String(decoding: try encoder.encode(entry.actor), as: UTF8.self)
                actorJSON[entry.actor] = json
                actors.append(json)
            }
        }
        data = String(decoding: try encoder.encode(entries.map(\.0.data)), as: UTF8.self)
    }

    var bindings: PostgresBindings {
        get throws {
            var bindings = PostgresBindings(capacity: 8)
            try append(to: &bindings)
            return bindings
        }
    }

    func append(to bindings: inout PostgresBindings) throws {
        try bindings.append(all: ids, contactIds, companyIds, kinds, ats, actors, summaries, data)
    }
}

/// The e-mails and phones of contacts, one row each.
struct PointColumns: Sendable {
    var companies: [UUID] = [], kinds: [String] = [], values: [String] = [], owners: [UUID] = []

    init(_ contacts: [Contact]) {
        for contact in contacts {
            for email in contact.emails { companies.append(contact.companyId); kinds.append("email"); values.append(email); owners.append(contact.id) }
            for phone in contact.phones { companies.append(contact.companyId); kinds.append("phone"); values.append(phone); owners.append(contact.id) }
        }
    }

    /// `SQL.InsertPoints`' values.
    var bindings: PostgresBindings {
        get throws { try .of(companies, kinds, values, owners) }
    }
}

extension ContactStore {
    /// The statements every new lead runs, prepared once per connection. Their plans have no
    /// join to go wrong at an import's size; the update's join stays planned per run.
    enum SQL {
        enum InsertContacts: PreparedSQL {
            static let sql = """
                INSERT INTO contacts (id, company_id, origin, created_at, \(ContactColumns.changeable))
                SELECT x.id, x.company_id, x.origin, x.created_at, \(ContactColumns.changeableValues) FROM \(ContactColumns.rows)
                """
        }
        enum InsertPoints: PreparedSQL {
            static let sql = """
                INSERT INTO contact_points (company_id, kind, value, contact_id)
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[])
                """
        }
        enum ClaimPoints: PreparedSQL {
            static let sql = """
                INSERT INTO contact_points (company_id, kind, value, contact_id)
                SELECT $1::uuid, kind, value, $2::uuid FROM unnest($3::text[], $4::text[]) AS p(kind, value)
                ON CONFLICT (company_id, kind, value) DO NOTHING
                RETURNING kind, value
                """
        }
        enum AppendTimeline: PreparedSQL {
            static let sql = appendTimeline(first: 1)
        }
        /// Entries whose id exists stay as they are; answers the ids written.
        enum KeepTimeline: PreparedSQL {
            static let sql = appendTimeline(first: 1) + " ON CONFLICT (id) DO NOTHING RETURNING id"
        }
        /// An entry whose id exists is replaced when its data field `$9` (a version) is higher, and
        /// with `$10` only by the actor that wrote it; answers the ids written.
        enum ReplaceNewerTimeline: PreparedSQL {
            static let sql = appendTimeline(first: 1) + """
                 ON CONFLICT (id) DO UPDATE SET summary = EXCLUDED.summary, data = EXCLUDED.data
                    WHERE timeline.contact_id = EXCLUDED.contact_id AND (NOT $10::bool OR timeline.actor = EXCLUDED.actor)
                      AND (timeline.data->>$9::text)::numeric < (EXCLUDED.data->>$9::text)::numeric
                RETURNING id
                """
        }
        /// `TimelineColumns` bound at `$first …`, written when `condition` holds: by default, an
        /// entry whose contact exists (contacts are never deleted, only marked; the migration
        /// `EntriesWithoutContactLocks` says why this is not a foreign key).
        static func appendTimeline(first: Int, condition: String = "EXISTS (SELECT FROM contacts c WHERE c.id = x.contact_id)") -> String {
            let p = (first..<first + 8).map { "$\($0)" }
            return """
                INSERT INTO timeline (id, contact_id, company_id, kind, at, actor, summary, data)
                SELECT id, contact_id, company_id, kind, at, actor::jsonb, summary, data
                FROM ROWS FROM (unnest(\(p[0])::uuid[]), unnest(\(p[1])::uuid[]), unnest(\(p[2])::uuid[]), unnest(\(p[3])::text[]),
                    unnest(\(p[4])::timestamptz[]), unnest(\(p[5])::text[]), unnest(\(p[6])::text[]), jsonb_array_elements(\(p[7])::jsonb))
                    AS x(id, contact_id, company_id, kind, at, actor, summary, data)
                WHERE \(condition)
                """
        }
        /// `ContactColumns` of one contact at `$1 … $24`, its points' kinds and values at `$25`
        /// and `$26`, its `TimelineColumns` at `$27 … $34` and its `OutboxRows` at `$35 … $39`;
        /// all written, and 1 answered, unless another contact holds one of the points. The
        /// keys of points and timeline are checked at the statement's end, when the contact is
        /// there; a point taken meanwhile is a unique violation, which writes nothing.
        enum CreateContact: PreparedSQL {
            static let sql = """
                WITH contact AS (
                    \(InsertContacts.sql)
                    WHERE NOT points_held(x.company_id, $25::text[], $26::text[])
                    RETURNING id, company_id),
                points AS (
                    INSERT INTO contact_points (company_id, kind, value, contact_id)
                    SELECT c.company_id, p.kind, p.value, c.id FROM contact c, unnest($25::text[], $26::text[]) AS p(kind, value)),
                entries AS (
                    \(appendTimeline(first: 27, condition: "EXISTS (SELECT FROM contact)"))),
                \(Outbox.insertCTEs(first: 35, condition: "EXISTS (SELECT FROM contact)"))
                SELECT count(*)::int FROM contact
                """
        }
        /// One changed contact's `ContactColumns` at `$1 … $24`, saved if its `version - 1` is
        /// stored, with its `TimelineColumns` at `$25 … $32` and `OutboxRows` at `$33 … $37`
        /// written only then; answers 1 when saved. The id is also matched against the contacts'
        /// key directly, so the plan kept for the statement cannot scan the table for it.
        enum SaveContact: PreparedSQL {
            static let sql = """
                WITH saved AS (
                    UPDATE contacts c SET (\(ContactColumns.changeable)) = (\(ContactColumns.changeableValues))
                    FROM \(ContactColumns.rows)
                    WHERE c.id = x.id AND c.id = ANY($1::uuid[]) AND c.version = x.version - 1 AND c.deleted_at IS NULL
                    RETURNING c.id),
                entries AS (
                    \(appendTimeline(first: 25, condition: "EXISTS (SELECT FROM saved)"))),
                \(Outbox.insertCTEs(first: 33, condition: "EXISTS (SELECT FROM saved)"))
                SELECT count(*)::int FROM saved
                """
        }
        /// A few points are probed by unique key one by one (see `matching`).
        enum MatchFewPoints: PreparedSQL {
            static let sql = """
                SELECT p.contact_id, p.kind || ':' || p.value
                FROM unnest($1::text[], $2::text[]) AS q(kind, value)
                CROSS JOIN LATERAL (
                    SELECT contact_id, kind, value FROM contact_points
                    WHERE company_id = $3 AND kind = q.kind AND value = q.value OFFSET 0) p
                """
        }
    }
}
