import Foundation
import Logging
import Models
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

    init(id: UUID = UUID(), contactId: UUID, kind: String, at: Date, actor: Actor, summary: String, data: JSONValue = .object([:])) {
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
struct ContactPointTaken: Error {
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

    /// Inserts a new contact with its contact points, timeline and events.
    func create(_ write: ContactWrite) async throws {
        try await client.transaction(logger: logger) { connection in
            try await insert(write.contact, on: connection)
            try await claimPoints(of: write.contact, on: connection)
            try await append(write.timeline, companyId: write.contact.companyId, on: connection)
            try await outbox.publish(write.events, on: connection, logger: logger)
        }
    }

    /// Saves a changed contact if nobody changed it meanwhile (`version - 1` is still stored).
    /// Returns false on a lost race.
    func update(_ write: ContactWrite, previous: Contact) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            guard try await save(write.contact, on: connection) else { return false }
            if write.contact.emails != previous.emails || write.contact.phones != previous.phones {
                try await connection.query("DELETE FROM contact_points WHERE contact_id = \(write.contact.id)", logger: logger)
                try await claimPoints(of: write.contact, on: connection)
            }
            try await append(write.timeline, companyId: write.contact.companyId, on: connection)
            try await outbox.publish(write.events, on: connection, logger: logger)
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

    private func insert(_ contact: Contact, on connection: PostgresConnection) async throws {
        let json = try ContactJSON(contact)
        try await connection.query("""
            INSERT INTO contacts (id, company_id, owner_entity_id, status, first_name, last_name, emails, phones, lead_type, source,
                source_id, tags, assigned_agent_id, lender_id, pond_id, address, search_interest, listing, agent_site_agent_id, origin,
                behavioral_alerts, version, created_at, updated_at)
            VALUES (\(contact.id), \(contact.companyId), \(contact.ownerEntityId), \(contact.status.rawValue), \(contact.firstName),
                \(contact.lastName), \(contact.emails), \(contact.phones), \(contact.leadType?.rawValue), \(contact.source), \(contact.sourceId),
                \(contact.tags), \(contact.assignedAgentId), \(contact.lenderId), \(contact.pondId), \(json.address)::jsonb,
                \(json.searchInterest)::jsonb, \(json.listing)::jsonb, \(contact.agentSiteAgentId), \(contact.origin.rawValue),
                \(contact.behavioralAlerts), \(contact.version), \(contact.createdAt), \(contact.updatedAt))
            """, logger: logger)
    }

    private func save(_ contact: Contact, on connection: PostgresConnection) async throws -> Bool {
        let json = try ContactJSON(contact)
        return try await connection.query("""
            UPDATE contacts SET owner_entity_id = \(contact.ownerEntityId), status = \(contact.status.rawValue),
                first_name = \(contact.firstName), last_name = \(contact.lastName), emails = \(contact.emails), phones = \(contact.phones),
                lead_type = \(contact.leadType?.rawValue), source = \(contact.source), tags = \(contact.tags),
                assigned_agent_id = \(contact.assignedAgentId), lender_id = \(contact.lenderId), pond_id = \(contact.pondId),
                address = \(json.address)::jsonb, search_interest = \(json.searchInterest)::jsonb, listing = \(json.listing)::jsonb,
                behavioral_alerts = \(contact.behavioralAlerts), version = \(contact.version), updated_at = \(contact.updatedAt)
            WHERE id = \(contact.id) AND version = \(contact.version - 1) AND deleted_at IS NULL
            RETURNING id
            """, logger: logger).collect().count == 1
    }

    /// Every e-mail and phone belongs to one contact of a company; a taken one is reported.
    private func claimPoints(of contact: Contact, on connection: PostgresConnection) async throws {
        let points = contact.emails.map { ("email", $0) } + contact.phones.map { ("phone", $0) }
        guard !points.isEmpty else { return }
        let rows = try await connection.query("""
            INSERT INTO contact_points (company_id, kind, value, contact_id)
            SELECT \(contact.companyId), kind, value, \(contact.id) FROM unnest(\(points.map(\.0)), \(points.map(\.1))) AS p(kind, value)
            ON CONFLICT (company_id, kind, value) DO NOTHING
            RETURNING kind, value
            """, logger: logger)
        var claimed = Set<String>()
        for try await (kind, value) in rows.decode((String, String).self) { claimed.insert(kind + ":" + value) }
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
        _ = try await writeTimeline(entries, replacingNewer: nil, on: connection)
    }

    /// Inserts entries; with `replacingNewer`, an entry whose id exists is replaced when its data
    /// field of that name (a version number) is higher, so a message's entry follows its state
    /// whatever order the updates arrive in. Answers the ids written.
    func writeTimeline(_ entries: [(TimelineEntry, UUID)], replacingNewer field: String?, on connection: PostgresConnection) async throws -> Set<UUID> {
        guard !entries.isEmpty else { return [] }
        struct Row: Encodable {
            var id: UUID
            var contact_id: UUID
            var company_id: UUID
            var kind: String
            var at: Date
            var actor: Actor
            var summary: String
            var data: JSONValue
        }
        let rows = entries.map { entry, company in
            Row(id: entry.id, contact_id: entry.contactId, company_id: company, kind: entry.kind, at: entry.at, actor: entry.actor,
                summary: entry.summary, data: entry.data)
        }
        let json = String(decoding: try JSONCoding.encoder.encode(rows), as: UTF8.self)
        let conflict = field.map { name in
            """
            ON CONFLICT (id) DO UPDATE SET summary = EXCLUDED.summary, data = EXCLUDED.data
                WHERE (timeline.data->>'\(name)')::numeric < (EXCLUDED.data->>'\(name)')::numeric
            """
        } ?? ""
        let result = try await connection.query(PostgresQuery(unsafeSQL: """
            INSERT INTO timeline (id, contact_id, company_id, kind, at, actor, summary, data)
            SELECT id, contact_id, company_id, kind, at, actor, summary, data
            FROM jsonb_to_recordset($1::jsonb)
                AS x(id uuid, contact_id uuid, company_id uuid, kind text, at timestamptz, actor jsonb, summary text, data jsonb)
            \(conflict) \(field == nil ? "" : "RETURNING id")
            """, binds: try .of(json)), logger: logger)
        var written: Set<UUID> = []
        for try await id in result.decode(UUID.self) { written.insert(id) }
        return written
    }

    func addTimeline(_ entry: TimelineEntry, companyId: UUID, events: [OutgoingEvent]) async throws {
        try await client.transaction(logger: logger) { connection in
            try await append([entry], companyId: companyId, on: connection)
            try await outbox.publish(events, on: connection, logger: logger)
        }
    }

    /// Writes an import in one transaction with a handful of statements whatever its size:
    /// new contacts, changed contacts (each still at its read version), their contact points,
    /// timeline entries and events. False when a contact changed meanwhile.
    func importBatch(creates: [Contact], updates: [Contact], timeline: [TimelineEntry], events: [OutgoingEvent]) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            if !creates.isEmpty {
                let json = String(decoding: try JSONCoding.encoder.encode(creates), as: UTF8.self)
                try await connection.query("""
                    INSERT INTO contacts (id, company_id, owner_entity_id, status, first_name, last_name, emails, phones, lead_type, source,
                        tags, assigned_agent_id, address, search_interest, origin, behavioral_alerts, version, created_at, updated_at)
                    SELECT id, "companyId", "ownerEntityId", status, "firstName", "lastName", emails, phones, "leadType", source,
                        tags, "assignedAgentId", address, "searchInterest", origin, "behavioralAlerts", version, "createdAt", "updatedAt"
                    FROM jsonb_to_recordset(\(json)::jsonb) AS x(id uuid, "companyId" uuid, "ownerEntityId" uuid, status text,
                        "firstName" text, "lastName" text, emails text[], phones text[], "leadType" text, source text, tags text[],
                        "assignedAgentId" uuid, address jsonb, "searchInterest" jsonb, origin text, "behavioralAlerts" boolean,
                        version int, "createdAt" timestamptz, "updatedAt" timestamptz)
                    """, logger: logger)
            }
            if !updates.isEmpty {
                let json = String(decoding: try JSONCoding.encoder.encode(updates), as: UTF8.self)
                let changed = try await connection.query("""
                    UPDATE contacts c SET status = x.status, first_name = x."firstName", last_name = x."lastName", emails = x.emails,
                        phones = x.phones, lead_type = x."leadType", source = x.source, tags = x.tags, assigned_agent_id = x."assignedAgentId",
                        address = x.address, search_interest = x."searchInterest", behavioral_alerts = x."behavioralAlerts",
                        version = x.version, updated_at = x."updatedAt"
                    FROM jsonb_to_recordset(\(json)::jsonb) AS x(id uuid, status text, "firstName" text, "lastName" text, emails text[],
                        phones text[], "leadType" text, source text, tags text[], "assignedAgentId" uuid, address jsonb,
                        "searchInterest" jsonb, "behavioralAlerts" boolean, version int, "updatedAt" timestamptz)
                    WHERE c.id = x.id AND c.version = x.version - 1 AND c.deleted_at IS NULL
                    RETURNING c.id
                    """, logger: logger).collect().count
                guard changed == updates.count else { return false }
                try await connection.query("DELETE FROM contact_points WHERE contact_id = ANY(\(updates.map(\.id)))", logger: logger)
            }
            let all = creates + updates
            var companies: [UUID] = [], kinds: [String] = [], values: [String] = [], owners: [UUID] = []
            for contact in all {
                for email in contact.emails { companies.append(contact.companyId); kinds.append("email"); values.append(email); owners.append(contact.id) }
                for phone in contact.phones { companies.append(contact.companyId); kinds.append("phone"); values.append(phone); owners.append(contact.id) }
            }
            if !values.isEmpty {
                // Counted in the database: an import claims tens of thousands.
                let claimed = try await connection.query("""
                    WITH claimed AS (
                        INSERT INTO contact_points (company_id, kind, value, contact_id)
                        SELECT * FROM unnest(\(companies), \(kinds), \(values), \(owners))
                        ON CONFLICT DO NOTHING RETURNING 1)
                    SELECT count(*)::int FROM claimed
                    """, logger: logger).first(Int.self) ?? 0
                // Another request took one of these e-mails or phones meanwhile.
                guard claimed == values.count else { return false }
            }
            if let companyId = all.first?.companyId {
                try await appendBatch(timeline.map { ($0, companyId) }, on: connection)
            }
            try await outbox.publish(events, on: connection, logger: logger)
            return true
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
    func contact(_ id: UUID, companyId: UUID?) async throws -> Contact? {
        let rows = try await client.query("""
            SELECT \(unescaped: Self.columns) FROM contacts
            WHERE id = \(id) AND (\(companyId)::uuid IS NULL OR company_id = \(companyId)) AND deleted_at IS NULL
            """, logger: logger)
        return try await decode(rows).first
    }

    /// The contacts holding any of these e-mails or phones, in one company.
    func matching(companyId: UUID, emails: [String], phones: [String], on connection: PostgresConnection? = nil) async throws -> [UUID: Set<String>] {
        let points = emails.map { ("email", $0) } + phones.map { ("phone", $0) }
        guard !points.isEmpty else { return [:] }
        let query: PostgresQuery = """
            SELECT p.contact_id, p.kind || ':' || p.value FROM contact_points p
            JOIN unnest(\(points.map(\.0)), \(points.map(\.1))) AS q(kind, value) ON p.kind = q.kind AND p.value = q.value
            WHERE p.company_id = \(companyId)
            """
        let rows = if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
        var result: [UUID: Set<String>] = [:]
        for try await (id, point) in rows.decode((UUID, String).self) { result[id, default: []].insert(point) }
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

/// The jsonb columns of a contact, encoded once.
struct ContactJSON {
    var address: String?
    var searchInterest: String?
    var listing: String?

    init(_ contact: Contact) throws {
        address = try contact.address.map { String(decoding: try JSONCoding.encoder.encode($0), as: UTF8.self) }
        searchInterest = try contact.searchInterest.map { String(decoding: try JSONCoding.encoder.encode($0), as: UTF8.self) }
        listing = try contact.listing.map { String(decoding: try JSONCoding.encoder.encode($0), as: UTF8.self) }
    }
}
