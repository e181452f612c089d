import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

enum AutomationMigrations {
    static let own: [Migration] = [
        Migration("CreateSites", [
            """
            CREATE TABLE sites (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                entity_id uuid NOT NULL,
                name text NOT NULL,
                key_prefix text NOT NULL,
                key_hash bytea NOT NULL UNIQUE,
                active boolean NOT NULL,
                created_at timestamptz NOT NULL)
            """,
        ]),
        Migration("CreateActivity", [
            """
            CREATE TABLE activity (
                company_id uuid NOT NULL,
                id uuid NOT NULL,
                kind text NOT NULL,
                at timestamptz NOT NULL,
                contact_id uuid,
                visitor_id text,
                doc jsonb NOT NULL,
                PRIMARY KEY (company_id, id))
            """,
            "CREATE INDEX activity_contact ON activity (contact_id, at) WHERE contact_id IS NOT NULL",
            "CREATE INDEX activity_visitor ON activity (company_id, visitor_id) WHERE contact_id IS NULL",
            """
            CREATE TABLE visitors (
                company_id uuid NOT NULL,
                visitor_id text NOT NULL,
                contact_id uuid NOT NULL,
                PRIMARY KEY (company_id, visitor_id))
            """,
        ]),
        // BA-2: activity not yet looked at by the behaviors (rows before this count as seen),
        // what fired (once per contact, behavior and window or listing), and each scope's settings.
        Migration("CreateBehaviors", [
            "ALTER TABLE activity ADD COLUMN evaluated boolean NOT NULL DEFAULT true",
            "CREATE INDEX activity_unevaluated ON activity (contact_id) WHERE NOT evaluated",
            // Retention finds old activity by time: a block-range index, rows arriving roughly in time order.
            "CREATE INDEX activity_at ON activity USING brin (at)",
            """
            CREATE TABLE behavior_firings (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                contact_id uuid NOT NULL,
                behavior text NOT NULL,
                key text NOT NULL,
                at timestamptz NOT NULL,
                listing_id text,
                event_ids uuid[] NOT NULL,
                fired_at timestamptz NOT NULL,
                outcome jsonb,
                UNIQUE (contact_id, behavior, key))
            """,
            "CREATE INDEX behavior_firings_contact ON behavior_firings (contact_id, fired_at DESC)",
            """
            CREATE TABLE behavior_settings (
                entity_id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                doc jsonb NOT NULL,
                updated_at timestamptz NOT NULL)
            """,
        ]),
    ]
}

/// A website that sends its visitors' activity, with its key (shown once, stored hashed).
struct Site: Codable, Sendable, Hashable {
    var id: UUID
    var companyId: UUID
    var entityId: UUID
    var name: String
    var keyPrefix: String
    var active: Bool
    var createdAt: Date
}

struct ActivityStore: Sendable {
    let client: PostgresClient
    let outbox: Outbox
    let jobs: JobQueue
    let behaviors: BehaviorEngine
    let clock: any ServiceClock
    let logger: Logger

    static func keyHash(_ key: String) -> [UInt8] { APIKeyHash.of(key) }

    func create(_ site: Site, key: String) async throws {
        try await client.query("""
            INSERT INTO sites (id, company_id, entity_id, name, key_prefix, key_hash, active, created_at)
            VALUES (\(site.id), \(site.companyId), \(site.entityId), \(site.name), \(site.keyPrefix), \(ByteBuffer(bytes: Self.keyHash(key))),
                    true, \(site.createdAt))
            """, logger: logger)
    }

    func sites(companyId: UUID) async throws -> [Site] {
        try await decode(try await client.query("""
            SELECT id, company_id, entity_id, name, key_prefix, active, created_at FROM sites WHERE company_id = \(companyId) ORDER BY created_at, id
            """, logger: logger))
    }

    func site(key: String) async throws -> Site? {
        try await decode(try await client.query("""
            SELECT id, company_id, entity_id, name, key_prefix, active, created_at FROM sites WHERE key_hash = \(ByteBuffer(bytes: Self.keyHash(key))) AND active
            """, logger: logger)).first
    }

    func deactivate(_ id: UUID, companyId: UUID) async throws -> Bool {
        try await client.query("UPDATE sites SET active = false WHERE id = \(id) AND company_id = \(companyId) AND active RETURNING id", logger: logger)
            .collect().count == 1
    }

    private func decode(_ rows: PostgresRowSequence) async throws -> [Site] {
        var result: [Site] = []
        for try await (id, company, entity, name, prefix, active, created) in rows.decode((UUID, UUID, UUID, String, String, Bool, Date).self) {
            result.append(Site(id: id, companyId: company, entityId: entity, name: name, keyPrefix: prefix, active: active, createdAt: created))
        }
        return result
    }

    /// Which of `ids` are contacts of the company, from the contact replica.
    func knownContacts(_ ids: Set<UUID>, companyId: UUID, on connection: PostgresConnection) async throws -> Set<UUID> {
        guard !ids.isEmpty else { return [] }
        let rows = try await connection.query(
            "SELECT id FROM contact_replica WHERE id = ANY(\(Array(ids))) AND company_id = \(companyId) AND NOT deleted", logger: logger)
        var found: Set<UUID> = []
        for try await id in rows.decode(UUID.self) { found.insert(id) }
        return found
    }

    /// Stores the events not stored before (by company and id), visitors already identified
    /// joined to their contact; publishes each new showing request or question of a contact;
    /// evaluates the behaviors of the contacts it names in the same transaction (BA-2), so an
    /// event is counted exactly when it is stored and a firing's alert is on its way at the commit.
    /// Answers how many were new.
    func ingest(_ events: [ActivityEvent], companyId: UUID) async throws -> Int {
        try await client.transaction(logger: logger) { connection in
            var visitors: [String: UUID] = [:]
            let anonymous = Array(Set(events.compactMap { $0.contactId == nil ? $0.visitorId : nil }))
            if !anonymous.isEmpty {
                for try await (visitor, contact) in try await connection.query(
                    "SELECT visitor_id, contact_id FROM visitors WHERE company_id = \(companyId) AND visitor_id = ANY(\(anonymous))", logger: logger
                ).decode((String, UUID).self) { visitors[visitor] = contact }
            }
            // One statement for the batch: a row per event not stored before.
            var resolved = events
            for index in resolved.indices where resolved[index].contactId == nil {
                if let visitor = resolved[index].visitorId { resolved[index].contactId = visitors[visitor] }
            }
            try await BehaviorEngine.lock(Set(resolved.compactMap(\.contactId)), on: connection, logger: logger)
            var docs: [String] = []
            for event in resolved { docs.append(String(decoding: try JSONCoding.encoder.encode(event), as: UTF8.self)) }
            var new: Set<UUID> = []
            for try await id in try await connection.query("""
                INSERT INTO activity (company_id, id, kind, at, contact_id, visitor_id, doc, evaluated)
                SELECT \(companyId), e.id, e.kind, e.at, NULLIF(e.contact_id, '')::uuid, NULLIF(e.visitor_id, ''), e.doc::jsonb, true
                FROM unnest(\(resolved.map(\.id)), \(resolved.map(\.kind.rawValue)), \(resolved.map(\.at)), \(resolved.map { $0.contactId?.uuidString ?? "" }),
                            \(resolved.map { $0.visitorId ?? "" }), \(docs)) AS e(id, kind, at, contact_id, visitor_id, doc)
                ON CONFLICT DO NOTHING RETURNING id
                """, logger: logger).decode(UUID.self) { new.insert(id) }
            var evaluate: [UUID: [Behaviors.Activity]] = [:]
            var requests: [OutgoingEvent] = []
            var stored = 0
            for event in resolved where new.remove(event.id) != nil {
                stored += 1
                if let contactId = event.contactId {
                    evaluate[contactId, default: []].append(.init(id: event.id, kind: event.kind, at: event.at, listingId: event.listing?.listingId,
                                                                  isNew: true))
                }
                if let request = try requested(event, companyId: companyId) { requests.append(request) }
            }
            try await outbox.publish(requests, on: connection, logger: logger)
            try await behaviors.evaluate(new: evaluate, companyOf: evaluate.mapValues { _ in companyId }, since: clock.now, on: connection)
            return stored
        }
    }

    private func requested(_ event: ActivityEvent, companyId: UUID) throws -> OutgoingEvent? {
        guard event.kind == .showingRequest || event.kind == .question, let contactId = event.contactId else { return nil }
        return try outbox.envelope(EventType.activityRequested, version: 1, companyId: companyId, subjectId: contactId,
                                   data: ActivityRequested(activityId: event.id, companyId: companyId, contactId: contactId, kind: event.kind.rawValue,
                                                           at: event.at, listingId: event.listing?.listingId, message: event.message))
    }

    /// BA-1: the visitor became this contact: their anonymous activity joins the contact, and
    /// their requests are published now. Answers how many events joined.
    func identify(visitorId: String, contactId: UUID, companyId: UUID) async throws -> Int {
        try await client.transaction(logger: logger) { connection in
            try await connection.query("""
                INSERT INTO visitors (company_id, visitor_id, contact_id) VALUES (\(companyId), \(visitorId), \(contactId))
                ON CONFLICT (company_id, visitor_id) DO UPDATE SET contact_id = EXCLUDED.contact_id
                """, logger: logger)
            var joined: [ActivityEvent] = []
            for try await doc in try await connection.query("""
                UPDATE activity SET contact_id = \(contactId), doc = jsonb_set(doc, '{contactId}', to_jsonb(\(contactId.uuidString))), evaluated = false
                WHERE company_id = \(companyId) AND visitor_id = \(visitorId) AND contact_id IS NULL
                RETURNING doc::text
                """, logger: logger).decode(String.self) {
                joined.append(try JSONCoding.decoder.decode(ActivityEvent.self, from: Data(doc.utf8)))
            }
            try await outbox.publish(try joined.compactMap { try requested($0, companyId: companyId) }, on: connection, logger: logger)
            // A contact the replica has not heard of yet is evaluated when it arrives (`BehaviorEngine.eventHandler`).
            if !joined.isEmpty, try await !knownContacts([contactId], companyId: companyId, on: connection).isEmpty {
                try await scheduleEvaluation(of: [contactId], companyId: companyId, on: connection)
            }
            return joined.count
        }
    }

    /// BA-2: an evaluation per contact whose activity was joined to it, now, in one statement.
    /// Not keyed: one that runs while this commits may not see these events, and the next one finds them.
    func scheduleEvaluation(of contacts: Set<UUID>, companyId: UUID, on connection: PostgresConnection) async throws {
        guard !contacts.isEmpty else { return }
        try await connection.query("""
            INSERT INTO jobs (kind, payload, run_at, max_attempts)
            SELECT \(BehaviorEngine.evaluateJob), jsonb_build_object('contactId', c, 'companyId', \(companyId.uuidString)), \(clock.now), \(JobQueue.defaultMaxAttempts)
            FROM unnest(\(contacts.map(\.lowercasedString).sorted())) AS c
            """, logger: logger)
        try await Wakeups.request(JobQueue.wakeup, on: connection, logger: logger)
    }

    /// How long website activity is kept: two years, beyond the longest window (15 days) and the
    /// year an agent or analytics looks back over.
    static let retentionDays = 730

    /// Removes activity older than the retention, a few thousand rows a statement (see
    /// `Retention`); the periodic schedule runs it hourly, on one replica.
    var retention: PeriodicSchedule {
        PeriodicSchedule(name: "automation.activity-retention", recurrence: .hourly(minute: 41)) { run, connection, logger in
            let cutOff = run.dueAt.addingTimeInterval(-Double(Self.retentionDays) * 86_400)
            for _ in 0..<Retention.maxRounds {
                let deleted = try await connection.query("""
                    DELETE FROM activity WHERE ctid = ANY(ARRAY(SELECT ctid FROM activity WHERE at < \(cutOff) LIMIT 5000)) RETURNING 1
                    """, logger: logger).collect().count
                if deleted < 5000 { break }
            }
        }
    }

    /// A contact's activity, newest first.
    func activity(contactId: UUID, limit: Int) async throws -> [ActivityEvent] {
        var result: [ActivityEvent] = []
        for try await doc in try await client.query(
            "SELECT doc::text FROM activity WHERE contact_id = \(contactId) ORDER BY at DESC, id LIMIT \(limit)", logger: logger).decode(String.self) {
            result.append(try JSONCoding.decoder.decode(ActivityEvent.self, from: Data(doc.utf8)))
        }
        return result
    }
}
