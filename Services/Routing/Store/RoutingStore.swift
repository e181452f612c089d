import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// Rules, positions, settings, lead routings, offers and their log, and the directory replica
/// as routing reads it (SQL only).
struct RoutingStore: Sendable {
    let client: PostgresClient
    let logger: Logger

    static func json(_ value: some Encodable) throws -> String {
        String(decoding: try JSONCoding.encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONCoding.decoder.decode(T.self, from: Data(text.utf8))
    }

    private func docs<T: Decodable>(_ type: T.Type, _ rows: [PostgresRow]) throws -> [T] {
        try rows.map { try Self.decode(T.self, try $0.decode(String.self)) }
    }

    private func docs<T: Decodable>(_ type: T.Type, _ rows: PostgresRowSequence) async throws -> [T] {
        try docs(type, try await rows.collect())
    }

    // MARK: rules

    /// The entity's rules in the order they run: by position, the default always last (RT-2, RT-3).
    func rules(entityId: UUID, on connection: PostgresConnection) async throws -> [RoutingRule] {
        try docs(RoutingRule.self, try await connection.prepared(SQL.Rules.self, .values(entityId), logger: logger))
    }

    func rule(_ id: UUID, companyId: UUID, on connection: PostgresConnection) async throws -> RoutingRule? {
        try await docs(RoutingRule.self, try await connection.query("""
            SELECT doc::text FROM routing_rules WHERE id = \(id) AND company_id = \(companyId) FOR UPDATE
            """, logger: logger)).first
    }

    /// Creates the scope's default rule the first time the scope is looked at.
    func ensureDefaultRule(companyId: UUID, entityId: UUID, now: Date, on connection: PostgresConnection) async throws {
        let rule = RoutingRule.defaultRule(companyId: companyId, entityId: entityId, now: now)
        try await connection.query("""
            INSERT INTO routing_rules (id, company_id, entity_id, position, is_default, doc, version)
            VALUES (\(rule.id), \(companyId), \(entityId), \(rule.position), true, \(try Self.json(rule))::jsonb, 1)
            ON CONFLICT (entity_id) WHERE is_default DO NOTHING
            """, logger: logger)
    }

    func save(_ rule: RoutingRule, on connection: PostgresConnection) async throws {
        try await connection.query("""
            INSERT INTO routing_rules (id, company_id, entity_id, position, is_default, doc, version)
            VALUES (\(rule.id), \(rule.companyId), \(rule.entityId), \(rule.position), \(rule.isDefault), \(try Self.json(rule))::jsonb, \(rule.version))
            ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position, doc = EXCLUDED.doc, version = EXCLUDED.version
            """, logger: logger)
    }

    func deleteRule(_ id: UUID, on connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM routing_rules WHERE id = \(id) AND NOT is_default", logger: logger)
        try await connection.query("DELETE FROM rotation_positions WHERE rule_id = \(id)", logger: logger)
    }

    /// Serialises every lead of one rule: the position's row (created at 0 the first time) stays
    /// locked until the caller's transaction ends, so two replicas never hand out the same slot
    /// (RT-8). ON CONFLICT DO UPDATE locks the row and reads its latest committed value, so a
    /// second router waits here and then sees the first one's move.
    func lockPosition(ruleId: UUID, on connection: PostgresConnection) async throws -> Int {
        Int(try await connection.prepared(SQL.LockPosition.self, .values(ruleId), logger: logger).first?.decode(Int64.self) ?? 0)
    }

    func setPosition(ruleId: UUID, _ position: Int, on connection: PostgresConnection) async throws {
        try await connection.prepared(SQL.SetPosition.self, .values(Int64(position), ruleId), logger: logger)
    }

    // MARK: settings

    func settings(companyId: UUID, on connection: PostgresConnection) async throws -> RoutingSettings {
        try docs(RoutingSettings.self, try await connection.prepared(SQL.Settings.self, .values(companyId), logger: logger)).first ?? .standard
    }

    func saveSettings(_ settings: RoutingSettings, companyId: UUID, on connection: PostgresConnection) async throws {
        try await connection.query("""
            INSERT INTO routing_settings (company_id, doc) VALUES (\(companyId), \(try Self.json(settings))::jsonb)
            ON CONFLICT (company_id) DO UPDATE SET doc = EXCLUDED.doc
            """, logger: logger)
    }

    // MARK: directory (replica)

    func entity(_ id: UUID, on connection: PostgresConnection) async throws -> (companyId: UUID, parentId: UUID?, name: String, timeZone: String, hours: [OfficeHoursDay])? {
        for row in try await connection.prepared(SQL.Entity.self, .values(id), logger: logger) {
            let (company, parent, name, zone, hours) = try row.decode((UUID, UUID?, String, String, String).self)
            return (company, parent, name, zone, try Self.decode([OfficeHoursDay].self, hours))
        }
        return nil
    }

    /// What a decision reads of the receiving entity besides its agents, in one round trip:
    /// the entity, the entities under it, the company's settings and the entity's rules in the
    /// order they run. Nil when the replica does not know the entity yet.
    func scope(entityId: UUID, companyId: UUID, on connection: PostgresConnection) async throws -> ScopeRows? {
        for row in try await connection.prepared(SQL.Scope.self, .values(entityId, companyId), logger: logger) {
            let (name, zone, hours, tree, settings, rules) = try row.decode((String, String, String, [UUID], String?, [String]).self)
            return ScopeRows(name: name, timeZone: zone, hours: try Self.decode([OfficeHoursDay].self, hours), tree: tree,
                             settings: try settings.map { try Self.decode(RoutingSettings.self, $0) } ?? .standard,
                             rules: try rules.map { try Self.decode(RoutingRule.self, $0) })
        }
        return nil
    }

    struct ScopeRows {
        var name: String
        var timeZone: String
        var hours: [OfficeHoursDay]
        var tree: [UUID]
        var settings: RoutingSettings
        var rules: [RoutingRule]
    }

    /// The entity and every entity under it.
    func entityTree(_ id: UUID, on connection: PostgresConnection) async throws -> [UUID] {
        try await connection.prepared(SQL.EntityTree.self, .values(id), logger: logger).map { try $0.decode(UUID.self) }
    }

    func agents(companyId: UUID, on connection: PostgresConnection) async throws -> [Agent] {
        var agents: [Agent] = []
        for row in try await connection.prepared(SQL.Agents.self, .values(companyId), logger: logger) {
            let (id, first, last, role, entities, active, inRotation, until, push, lender)
                = try row.decode((UUID, String, String, String, [UUID], Bool, Bool, Date?, Bool, UUID?).self)
            guard let role = Role(rawValue: role) else { continue }
            agents.append(Agent(id: id, firstName: first, lastName: last, role: role, entityIds: entities, active: active, inRotation: inRotation,
                                rotationUntil: until, prefersPush: push, lenderId: lender))
        }
        return agents
    }

    /// One user's name, for the log line of an answer (not the whole company's directory).
    func agentName(_ id: UUID, on connection: PostgresConnection) async throws -> String? {
        try await connection.query("SELECT first_name || ' ' || last_name FROM directory_users WHERE id = \(id)", logger: logger).first(String.self)
    }

    /// RT-6: the agent's own lender while that lender is an active lender (as `LeadDecider.lender`).
    func ownLender(of agentId: UUID, on connection: PostgresConnection) async throws -> UUID? {
        try await connection.query("""
            SELECT l.id FROM directory_users a JOIN directory_users l ON l.id = a.lender_id AND l.active AND l.role = 'lender'
            WHERE a.id = \(agentId)
            """, logger: logger).first(UUID.self)
    }

    func contact(_ id: UUID, on connection: PostgresConnection) async throws -> Contact? {
        try docs(Contact.self, try await connection.prepared(SQL.ContactSnapshot.self, .values(id), logger: logger)).first
    }

    // MARK: lead routings

    func lockRouting(_ contactId: UUID, on connection: PostgresConnection) async throws -> LeadRouting? {
        try docs(LeadRouting.self, try await connection.prepared(SQL.LockRouting.self, .values(contactId), logger: logger)).first
    }

    func routing(_ contactId: UUID, on connection: PostgresConnection) async throws -> LeadRouting? {
        try docs(LeadRouting.self, try await connection.prepared(SQL.Routing.self, .values(contactId), logger: logger)).first
    }

    /// Which of these contacts have a routing.
    func routedContacts(_ contactIds: [UUID], on connection: PostgresConnection) async throws -> Set<UUID> {
        Set(try await connection.prepared(SQL.Routed.self, .values(contactIds), logger: logger).map { try $0.decode(UUID.self) })
    }

    func save(_ routing: LeadRouting, on connection: PostgresConnection) async throws {
        try await connection.prepared(SQL.SaveRouting.self, .values(routing.contactId, routing.companyId, routing.state.rawValue, try Self.json(routing)),
                                      logger: logger)
    }

    /// Saves the routing and appends `entry` to its log, in one statement; with `job` (keyed: a
    /// key already taken writes no second one), which carries the decision out, in the same one.
    func save(_ routing: LeadRouting, logging entry: RoutingLogEntry, job: ScheduledJob? = nil, on connection: PostgresConnection) async throws {
        var bindings = try PostgresBindings.of(routing.contactId, routing.companyId, routing.state.rawValue, try Self.json(routing), [try Self.json(entry)])
        guard let job else {
            try await connection.prepared(SQL.SaveRoutingAndLog.self, bindings, logger: logger)
            return
        }
        job.append(to: &bindings, keyed: true)
        try await connection.prepared(SQL.SaveRoutingLogAndJob.self, bindings, logger: logger)
        try await job.requestWakeup(on: connection, logger: logger)
    }

    // MARK: offers

    func insert(_ offer: Offer, on connection: PostgresConnection) async throws {
        try await connection.query("""
            INSERT INTO offers (id, contact_id, company_id, round, agent_id, rule_id, mode, state, offered_at, expires_at, decided_at)
            VALUES (\(offer.id), \(offer.contactId), \(offer.companyId), \(offer.round), \(offer.agentId), \(offer.ruleId), \(offer.mode.rawValue),
                    \(offer.state.rawValue), \(offer.offeredAt), \(offer.expiresAt), \(offer.decidedAt))
            """, logger: logger)
    }

    private static let offerColumns = "id, contact_id, company_id, round, agent_id, rule_id, mode, state, offered_at, expires_at, decided_at"

    private func offers(_ rows: PostgresRowSequence) async throws -> [Offer] {
        var offers: [Offer] = []
        for try await (id, contact, company, round, agent, rule, mode, state, offered, expires, decided)
            in rows.decode((UUID, UUID, UUID, Int, UUID, UUID?, String, String, Date, Date, Date?).self) {
            guard let mode = OfferMode(rawValue: mode), let state = OfferState(rawValue: state) else { continue }
            offers.append(Offer(id: id, contactId: contact, companyId: company, round: round, agentId: agent, ruleId: rule, mode: mode,
                                state: state, offeredAt: offered, expiresAt: expires, decidedAt: decided))
        }
        return offers
    }

    func offer(_ id: UUID, on connection: PostgresConnection) async throws -> Offer? {
        try await offers(try await connection.query("SELECT \(unescaped: Self.offerColumns) FROM offers WHERE id = \(id)", logger: logger)).first
    }

    func offers(contactId: UUID, on connection: PostgresConnection) async throws -> [Offer] {
        try await offers(try await connection.query("""
            SELECT \(unescaped: Self.offerColumns) FROM offers WHERE contact_id = \(contactId) ORDER BY offered_at, id
            """, logger: logger))
    }

    func openOffers(agentId: UUID, on connection: PostgresConnection) async throws -> [Offer] {
        try await offers(try await connection.query("""
            SELECT \(unescaped: Self.offerColumns) FROM offers WHERE agent_id = \(agentId) AND state = 'open' ORDER BY offered_at, id
            """, logger: logger))
    }

    /// Records an offer's outcome. Accepting fails on the unique index if another offer of the
    /// lead was accepted: the database is the last word on "exactly one".
    func decide(_ offerId: UUID, _ state: OfferState, at: Date, on connection: PostgresConnection) async throws {
        try await connection.query("""
            UPDATE offers SET state = \(state.rawValue), decided_at = \(at) WHERE id = \(offerId) AND state = 'open'
            """, logger: logger)
    }

    /// Closes every open offer of the lead (someone accepted, or the lead moved on).
    func closeOpenOffers(contactId: UUID, as state: OfferState, at: Date, on connection: PostgresConnection) async throws -> [UUID] {
        let rows = try await connection.query("""
            UPDATE offers SET state = \(state.rawValue), decided_at = \(at) WHERE contact_id = \(contactId) AND state = 'open' RETURNING id
            """, logger: logger)
        var ids: [UUID] = []
        for try await id in rows.decode(UUID.self) { ids.append(id) }
        return ids
    }

    // MARK: log

    func log(_ entry: RoutingLogEntry, contactId: UUID, on connection: PostgresConnection) async throws {
        try await log([entry], contactId: contactId, on: connection)
    }

    /// Several entries in one statement, in order.
    func log(_ entries: [RoutingLogEntry], contactId: UUID, on connection: PostgresConnection) async throws {
        guard !entries.isEmpty else { return }
        let docs = try entries.map { try Self.json($0) }
        try await connection.prepared(SQL.Log.self, .values(contactId, docs), logger: logger)
    }

    func log(contactId: UUID, on connection: PostgresConnection) async throws -> [RoutingLogEntry] {
        try await docs(RoutingLogEntry.self, try await connection.query("""
            SELECT doc::text FROM routing_log WHERE contact_id = \(contactId) ORDER BY id
            """, logger: logger))
    }
}

extension RoutingStore {
    /// The statements every lead runs, prepared once per connection.
    enum SQL {
        enum Rules: PreparedSQL {
            static let sql = "SELECT doc::text FROM routing_rules WHERE entity_id = $1 ORDER BY is_default, position, id"
        }
        enum LockPosition: PreparedSQL {
            static let sql = """
                INSERT INTO rotation_positions (rule_id, position) VALUES ($1, 0)
                ON CONFLICT (rule_id) DO UPDATE SET position = rotation_positions.position
                RETURNING position
                """
        }
        enum SetPosition: PreparedSQL {
            static let sql = "UPDATE rotation_positions SET position = $1 WHERE rule_id = $2"
        }
        enum Settings: PreparedSQL {
            static let sql = "SELECT doc::text FROM routing_settings WHERE company_id = $1"
        }
        /// What `Entity`, `EntityTree`, `Settings` (of the company `$2`) and `Rules` read of the entity `$1`.
        enum Scope: PreparedSQL {
            static let sql = """
                SELECT e.name, e.time_zone, e.office_hours::text,
                    ARRAY(\(EntityTree.sql)),
                    (SELECT doc::text FROM routing_settings WHERE company_id = $2),
                    ARRAY(\(Rules.sql))
                FROM directory_entities e WHERE e.id = $1
                """
        }
        enum Entity: PreparedSQL {
            static let sql = "SELECT company_id, parent_id, name, time_zone, office_hours::text FROM directory_entities WHERE id = $1"
        }
        enum EntityTree: PreparedSQL {
            static let sql = """
                WITH RECURSIVE tree AS (
                    SELECT id FROM directory_entities WHERE id = $1
                    UNION SELECT e.id FROM directory_entities e JOIN tree t ON e.parent_id = t.id)
                SELECT id FROM tree
                """
        }
        enum Agents: PreparedSQL {
            static let sql = """
                SELECT id, first_name, last_name, role, entity_ids, active, in_rotation, rotation_until, prefers_push, lender_id
                FROM directory_users WHERE company_id = $1
                """
        }
        enum ContactSnapshot: PreparedSQL {
            static let sql = "SELECT snapshot::text FROM contact_replica WHERE id = $1 AND NOT deleted"
        }
        enum LockRouting: PreparedSQL {
            static let sql = "SELECT doc::text FROM lead_routings WHERE contact_id = $1 FOR UPDATE"
        }
        enum Routing: PreparedSQL {
            static let sql = "SELECT doc::text FROM lead_routings WHERE contact_id = $1"
        }
        enum Routed: PreparedSQL {
            static let sql = "SELECT contact_id FROM lead_routings WHERE contact_id = ANY($1::uuid[])"
        }
        enum SaveRouting: PreparedSQL {
            static let sql = """
                INSERT INTO lead_routings (contact_id, company_id, state, doc) VALUES ($1, $2, $3, $4::jsonb)
                ON CONFLICT (contact_id) DO UPDATE SET state = EXCLUDED.state, doc = EXCLUDED.doc
                """
        }
        enum Log: PreparedSQL {
            static let sql = appendLog(contactId: "$1", docs: "$2")
        }
        /// `SaveRouting` at `$1 … $4` and `Log` of its entries at `$5`.
        enum SaveRoutingAndLog: PreparedSQL {
            static let sql = """
                WITH saved AS (\(SaveRouting.sql))
                \(appendLog(contactId: "$1", docs: "$5"))
                """
        }
        /// `SaveRoutingAndLog` at `$1 … $5` and a keyed job at `$6 … $10`.
        enum SaveRoutingLogAndJob: PreparedSQL {
            static let sql = """
                WITH saved AS (\(SaveRouting.sql)),
                \(JobQueue.insertCTE(first: 6, source: "(SELECT) AS one", keyed: true))
                \(appendLog(contactId: "$1", docs: "$5"))
                """
        }
        static func appendLog(contactId: String, docs: String) -> String {
            """
            INSERT INTO routing_log (contact_id, doc)
            SELECT \(contactId)::uuid, doc::jsonb FROM unnest(\(docs)::text[]) WITH ORDINALITY AS e(doc, n) ORDER BY n
            """
        }
    }
}
