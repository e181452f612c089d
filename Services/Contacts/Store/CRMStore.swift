import Crypto
import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit
import Synchronization

struct LeadSource: Codable, Sendable, Hashable {
    var id: UUID
    var companyId: UUID
    var entityId: UUID
    var name: String
    var origin: CreationOrigin
    /// Set for an agent's own website: its leads always go to that agent (RT-17).
    var agentId: UUID?
    /// The first characters of the key, so admins can tell keys apart.
    var keyPrefix: String
    var active: Bool
    var createdAt: Date
}

struct Pond: Codable, Sendable, Hashable {
    var id: UUID
    var companyId: UUID
    var entityId: UUID
    var name: String
    var createdAt: Date
}

/// SQL for lead sources, ponds, tasks, communications and the transaction integration.
struct CRMStore: Sendable {
    let client: PostgresClient
    let contacts: ContactStore
    let outbox: Outbox
    let logger: Logger
    /// Lead intake looks its source up on every lead; a deactivated key stops working on this
    /// replica at once and on others within the cache's lifetime.
    let sourceCache = SourceCache()

    static func keyHash(_ key: String) -> [UInt8] { APIKeyHash.of(key) }

    // MARK: Lead sources

    func createSource(_ source: LeadSource, key: String) async throws {
        try await client.query("""
            INSERT INTO lead_sources (id, company_id, entity_id, name, origin, agent_id, key_prefix, key_hash, active, created_at)
            VALUES (\(source.id), \(source.companyId), \(source.entityId), \(source.name), \(source.origin.rawValue), \(source.agentId),
                    \(source.keyPrefix), \(ByteBuffer(bytes: Self.keyHash(key))), true, \(source.createdAt))
            """, logger: logger)
    }

    private static let sourceColumns = "id, company_id, entity_id, name, origin, agent_id, key_prefix, active, created_at"

    func source(key: String) async throws -> LeadSource? {
        if let cached = sourceCache.lookup(key) { return cached }
        let rows = try await client.query("""
            SELECT id, company_id, entity_id, name, origin, agent_id, key_prefix, active, created_at
            FROM lead_sources WHERE key_hash = \(ByteBuffer(bytes: Self.keyHash(key))) AND active
            """, logger: logger)
        let source = try await decodeSources(rows).first
        if let source { sourceCache.store(key, source) }
        return source
    }

    func sources(companyId: UUID) async throws -> [LeadSource] {
        try await decodeSources(try await client.query("""
            SELECT id, company_id, entity_id, name, origin, agent_id, key_prefix, active, created_at
            FROM lead_sources WHERE company_id = \(companyId) ORDER BY created_at, id
            """, logger: logger))
    }

    func deactivateSource(_ id: UUID, companyId: UUID) async throws -> Bool {
        sourceCache.removeAll()
        return try await client.query("UPDATE lead_sources SET active = false WHERE id = \(id) AND company_id = \(companyId) RETURNING id",
                               logger: logger).collect().count == 1
    }

    private func decodeSources(_ rows: PostgresRowSequence) async throws -> [LeadSource] {
        var result: [LeadSource] = []
        for try await (id, company, entity, name, origin, agent, prefix, active, created)
            in rows.decode((UUID, UUID, UUID, String, String, UUID?, String, Bool, Date).self) {
            result.append(LeadSource(id: id, companyId: company, entityId: entity, name: name, origin: CreationOrigin(rawValue: origin) ?? .website,
                                     agentId: agent, keyPrefix: prefix, active: active, createdAt: created))
        }
        return result
    }

    // MARK: Ponds

    func createPond(_ pond: Pond) async throws {
        try await client.query("""
            INSERT INTO ponds (id, company_id, entity_id, name, created_at)
            VALUES (\(pond.id), \(pond.companyId), \(pond.entityId), \(pond.name), \(pond.createdAt))
            """, logger: logger)
    }

    func ponds(companyId: UUID) async throws -> [Pond] {
        let rows = try await client.query(
            "SELECT id, company_id, entity_id, name, created_at FROM ponds WHERE company_id = \(companyId) ORDER BY created_at, id", logger: logger)
        var result: [Pond] = []
        for try await (id, company, entity, name, created) in rows.decode((UUID, UUID, UUID, String, Date).self) {
            result.append(Pond(id: id, companyId: company, entityId: entity, name: name, createdAt: created))
        }
        return result
    }

    // MARK: Tasks

    private static let taskColumns = """
        id, contact_id, company_id, kind, title, description, links, priority, due_at, assignee_id, completed_at, call_outcome,
        version, created_at, updated_at
        """

    /// Stores new tasks with their timeline entries and events in one transaction; answers the
    /// ids stored. A task whose id exists already (a service's retry) writes nothing.
    func createTasks(_ made: [(task: ContactTask, entry: TimelineEntry, event: OutgoingEvent)]) async throws -> Set<UUID> {
        guard !made.isEmpty else { return [] }
        let tasks = made.map(\.task)
        var links: [String] = []
        for task in tasks { links.append(try JSONCoding.string(task.links)) }
        return try await client.transaction(logger: logger) { connection in
            var created = Set<UUID>()
            for try await id in try await connection.query("""
                INSERT INTO tasks (id, contact_id, company_id, kind, title, description, links, priority, due_at, assignee_id,
                    version, created_at, updated_at)
                SELECT t.id, t.contact_id, t.company_id, t.kind, t.title, NULLIF(t.description, ''),
                    ARRAY(SELECT jsonb_array_elements_text(t.links::jsonb)), t.priority, CASE WHEN t.has_due THEN t.due_at END,
                    NULLIF(t.assignee_id, '')::uuid, t.version, t.created_at, t.updated_at
                FROM unnest(\(tasks.map(\.id)), \(tasks.map(\.contactId)), \(tasks.map(\.companyId)), \(tasks.map(\.kind.rawValue)),
                            \(tasks.map(\.title)), \(tasks.map { $0.description ?? "" }), \(links), \(tasks.map(\.priority.rawValue)),
                            \(tasks.map { $0.dueAt != nil }), \(tasks.map { $0.dueAt ?? $0.createdAt }), \(tasks.map { $0.assigneeId?.lowercasedString ?? "" }),
                            \(tasks.map(\.version)), \(tasks.map(\.createdAt)), \(tasks.map(\.updatedAt)))
                    AS t(id, contact_id, company_id, kind, title, description, links, priority, has_due, due_at, assignee_id, version, created_at, updated_at)
                WHERE EXISTS (SELECT FROM contacts c WHERE c.id = t.contact_id)
                ON CONFLICT (id) DO NOTHING RETURNING id
                """, logger: logger).decode(UUID.self) { created.insert(id) }
            let kept = made.filter { created.contains($0.task.id) }
            try await contacts.appendBatch(kept.map { ($0.entry, $0.task.companyId) }, on: connection)
            try await outbox.publish(kept.map(\.event), on: connection, logger: logger)
            return created
        }
    }

    /// Saves a changed task if it is still at `version - 1`; with the timeline entries and
    /// events of the change.
    func updateTask(_ task: ContactTask, timeline: [TimelineEntry], events: [OutgoingEvent], communication: Communication? = nil) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            let updated = try await connection.query("""
                UPDATE tasks SET title = \(task.title), description = \(task.description), links = \(task.links),
                    priority = \(task.priority.rawValue), due_at = \(task.dueAt), assignee_id = \(task.assigneeId),
                    completed_at = \(task.completedAt), call_outcome = \(task.callOutcome?.rawValue), version = \(task.version),
                    updated_at = \(task.updatedAt)
                WHERE id = \(task.id) AND version = \(task.version - 1)
                RETURNING id
                """, logger: logger).collect().count
            guard updated == 1 else { return false }
            try await contacts.append(timeline, companyId: task.companyId, on: connection)
            try await outbox.publish(events, on: connection, logger: logger)
            return true
        }
    }

    func task(_ id: UUID, companyId: UUID) async throws -> ContactTask? {
        try await decodeTasks(try await client.query(PostgresQuery(
            unsafeSQL: "SELECT \(Self.taskColumns) FROM tasks WHERE id = $1 AND company_id = $2", binds: try .of(id, companyId)),
            logger: logger)).first
    }

    func tasks(contactId: UUID) async throws -> [ContactTask] {
        try await decodeTasks(try await client.query(PostgresQuery(
            unsafeSQL: "SELECT \(Self.taskColumns) FROM tasks WHERE contact_id = $1 ORDER BY completed_at NULLS FIRST, due_at NULLS LAST, created_at",
            binds: try .of(contactId)), logger: logger))
    }

    private func decodeTasks(_ rows: PostgresRowSequence) async throws -> [ContactTask] {
        var result: [ContactTask] = []
        for try await (id, contact, company, kind, title, description, links, priority, due, assignee, completed, outcome, version, created, updated)
            in rows.decode((UUID, UUID, UUID, String, String, String?, [String], String, Date?, UUID?, Date?, String?, Int, Date, Date).self) {
            result.append(ContactTask(
                id: id, contactId: contact, companyId: company, kind: ContactTask.Kind(rawValue: kind) ?? .task, title: title,
                description: description, links: links, priority: ContactTask.Priority(rawValue: priority) ?? .none, dueAt: due,
                assigneeId: assignee, completedAt: completed, callOutcome: outcome.flatMap(CallOutcome.init(rawValue:)),
                version: version, createdAt: created, updatedAt: updated))
        }
        return result
    }

    // MARK: Transaction integration

    func integrationSecret(companyId: UUID) async throws -> String? {
        let rows = try await client.query("SELECT secret FROM transaction_integrations WHERE company_id = \(companyId)", logger: logger)
        for try await secret in rows.decode(String.self) { return secret }
        return nil
    }

    func setIntegrationSecret(_ secret: String, companyId: UUID, at: Date) async throws {
        try await client.query("""
            INSERT INTO transaction_integrations (company_id, secret, created_at) VALUES (\(companyId), \(secret), \(at))
            ON CONFLICT (company_id) DO UPDATE SET secret = EXCLUDED.secret, created_at = EXCLUDED.created_at
            """, logger: logger)
    }

    /// Records a webhook delivery id; false when it was seen before (a replay).
    func recordDelivery(_ id: String, companyId: UUID, at: Date) async throws -> Bool {
        try await client.query("""
            INSERT INTO transaction_deliveries (company_id, delivery_id, received_at) VALUES (\(companyId), \(id), \(at))
            ON CONFLICT DO NOTHING RETURNING 1
            """, logger: logger).collect().count == 1
    }
}

/// Known API keys (by their hash) for a few seconds.
final class SourceCache: Sendable {
    private let entries = Mutex<[[UInt8]: (LeadSource, ContinuousClock.Instant)]>([:])
    static let lifetime: Duration = .seconds(10)

    func lookup(_ key: String) -> LeadSource? {
        let hash = CRMStore.keyHash(key)
        return entries.withLock { entries in
            guard let (source, stored) = entries[hash], ContinuousClock.now - stored < Self.lifetime else { return nil }
            return source
        }
    }

    func store(_ key: String, _ source: LeadSource) {
        let hash = CRMStore.keyHash(key)
        entries.withLock { entries in
            if entries.count > 10_000 { entries.removeAll() }
            entries[hash] = (source, .now)
        }
    }

    func removeAll() {
        entries.withLock { $0.removeAll() }
    }
}
