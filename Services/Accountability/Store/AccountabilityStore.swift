import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

enum AccountabilityMigrations {
    static let own: [Migration] = [
        Migration("CreateAccountabilityRules", [
            """
            CREATE TABLE accountability_rules (
                entity_id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                doc jsonb NOT NULL)
            """,
            "CREATE INDEX accountability_rules_company ON accountability_rules (company_id)",
        ]),
        Migration("CreateViolations", [
            """
            CREATE TABLE violations (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                entity_id uuid NOT NULL,
                agent_id uuid NOT NULL,
                kind text NOT NULL,
                period text NOT NULL,
                created_at timestamptz NOT NULL,
                doc jsonb NOT NULL,
                UNIQUE (agent_id, kind, period))
            """,
            "CREATE INDEX violations_company ON violations (company_id, created_at DESC, id)",
        ]),
        // AC-7: an agent's calls and first contacts over a range.
        Migration("AnalyticsIndexes", [
            "CREATE INDEX communication_replica_user ON communication_replica (user_id, at)",
            "CREATE INDEX violations_agent ON violations (agent_id, created_at)",
        ]),
        // AC-1 … AC-3: each new lead's calls to its agent.
        Migration("CreateCallPlans", [
            """
            CREATE TABLE call_plans (
                contact_id uuid NOT NULL,
                agent_id uuid NOT NULL,
                company_id uuid NOT NULL,
                state text NOT NULL,
                doc jsonb NOT NULL,
                PRIMARY KEY (contact_id, agent_id))
            """,
        ]),
    ]
}

/// An accountability decision about one agent (AC-4): what was measured, over which window,
/// what was done and who undid it.
struct Violation: Codable, Sendable, Hashable {
    enum Kind: String, Codable, Sendable { case rotation }
    var id: UUID
    var companyId: UUID
    /// The office or team whose rules were broken.
    var entityId: UUID
    var agentId: UUID
    var agentName: String
    var kind: Kind
    /// The check's day, in the office's zone.
    var period: String
    var figures: [RotationFigures]
    var removedUntil: Date?
    /// Users told by e-mail, once the enforcement ran.
    var emailed: [UUID]
    var enforcedAt: Date?
    var reinstatedBy: String?
    var reinstatedAt: Date?
    var createdAt: Date
}

/// An agent as the daily check sees them.
struct CheckedAgent: Sendable, Hashable {
    var id: UUID
    var name: String
    var entityIds: [UUID]
    var lastLogin: Date?
}

struct AccountabilityStore: Sendable {
    let client: PostgresClient
    let logger: Logger

    static func json(_ value: some Encodable) throws -> String {
        String(decoding: try JSONCoding.encoder.encode(value), as: UTF8.self)
    }

    // MARK: rules

    func rules(companyId: UUID, on connection: PostgresConnection? = nil) async throws -> [AccountabilityRules] {
        let query: PostgresQuery = "SELECT doc::text FROM accountability_rules WHERE company_id = \(companyId) ORDER BY entity_id"
        let rows = if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
        var result: [AccountabilityRules] = []
        for try await doc in rows.decode(String.self) { result.append(try JSONCoding.decoder.decode(AccountabilityRules.self, from: Data(doc.utf8))) }
        return result
    }

    func rules(entityId: UUID) async throws -> AccountabilityRules? {
        let rows = try await client.query("SELECT doc::text FROM accountability_rules WHERE entity_id = \(entityId)", logger: logger)
        for try await doc in rows.decode(String.self) { return try JSONCoding.decoder.decode(AccountabilityRules.self, from: Data(doc.utf8)) }
        return nil
    }

    func save(_ rules: AccountabilityRules) async throws {
        try await client.query("""
            INSERT INTO accountability_rules (entity_id, company_id, doc) VALUES (\(rules.entityId), \(rules.companyId), \(try Self.json(rules))::jsonb)
            ON CONFLICT (entity_id) DO UPDATE SET doc = EXCLUDED.doc
            """, logger: logger)
    }

    func deleteRules(entityId: UUID) async throws -> Bool {
        try await client.query("DELETE FROM accountability_rules WHERE entity_id = \(entityId) RETURNING entity_id", logger: logger).collect().count == 1
    }

    // MARK: directory

    /// An entity of the directory replica: its company, kind, parent and zone.
    func entity(_ id: UUID) async throws -> (companyId: UUID, kind: EntityKind, parentId: UUID?, timeZone: String)? {
        let rows = try await client.query("SELECT company_id, kind, parent_id, time_zone FROM directory_entities WHERE id = \(id)", logger: logger)
        for try await (company, kind, parent, zone) in rows.decode((UUID, String, UUID?, String).self) {
            return (company, EntityKind(rawValue: kind) ?? .team, parent, zone)
        }
        return nil
    }

    /// `root` and every entity under it, with each one's parent.
    func subtree(of root: UUID, on connection: PostgresConnection) async throws -> [UUID: UUID?] {
        let rows = try await connection.query("""
            WITH RECURSIVE tree AS (
                SELECT id, parent_id FROM directory_entities WHERE id = \(root)
                UNION SELECT e.id, e.parent_id FROM directory_entities e JOIN tree t ON e.parent_id = t.id)
            SELECT id, parent_id FROM tree
            """, logger: logger)
        var result: [UUID: UUID?] = [:]
        for try await (id, parent) in rows.decode((UUID, UUID?).self) { result[id] = parent }
        return result
    }

    /// The agents of `entities` who take leads and are in rotation at `now`.
    func agentsInRotation(of entities: [UUID], now: Date, on connection: PostgresConnection) async throws -> [CheckedAgent] {
        let rows = try await connection.query("""
            SELECT id, first_name || ' ' || last_name, entity_ids, last_login_at FROM directory_users
            WHERE entity_ids && \(entities) AND active AND role IN ('agent', 'team_admin', 'office_admin')
              AND (in_rotation OR rotation_until <= \(now))
            ORDER BY id
            """, logger: logger)
        var result: [CheckedAgent] = []
        for try await (id, name, entityIds, login) in rows.decode((UUID, String, [UUID], Date?).self) {
            result.append(CheckedAgent(id: id, name: name, entityIds: entityIds, lastLogin: login))
        }
        return result
    }

    /// Calls and tasks of the agents due since `since` (AC-4's 30 days).
    func tasks(of agents: [UUID], dueSince since: Date, on connection: PostgresConnection) async throws -> [UUID: [RotationCheck.Task]] {
        let rows = try await connection.query("""
            SELECT assignee_id, due_at, completed_at FROM task_replica
            WHERE assignee_id = ANY(\(agents)) AND due_at >= \(since) AND kind IN ('task', 'call')
            """, logger: logger)
        var result: [UUID: [RotationCheck.Task]] = [:]
        for try await (agent, due, completed) in rows.decode((UUID, Date, Date?).self) {
            result[agent, default: []].append(RotationCheck.Task(dueAt: due, completedAt: completed))
        }
        return result
    }

    /// Who is told of a violation of `entityId`'s rules: its own admins (and the admins of the
    /// entities above it), else the company's admins.
    func admins(of entityId: UUID, companyId: UUID, on connection: PostgresConnection) async throws -> [UUID] {
        let rows = try await connection.query("""
            WITH RECURSIVE up AS (
                SELECT id, parent_id FROM directory_entities WHERE id = \(entityId)
                UNION SELECT e.id, e.parent_id FROM directory_entities e JOIN up ON e.id = up.parent_id)
            SELECT id FROM directory_users
            WHERE company_id = \(companyId) AND active AND role IN ('team_admin', 'office_admin', 'company_admin')
              AND entity_ids && ARRAY(SELECT id FROM up)
            ORDER BY role = 'company_admin', id
            """, logger: logger)
        var found: [UUID] = []
        for try await id in rows.decode(UUID.self) { found.append(id) }
        return found
    }

    // MARK: new-lead calls

    struct DirectoryEntity: Sendable, Hashable {
        var kind: EntityKind
        var parentId: UUID?
        var timeZone: String
        var officeHours: [OfficeHoursDay]
    }

    func companyEntities(_ companyId: UUID, on connection: PostgresConnection) async throws -> [UUID: DirectoryEntity] {
        let rows = try await connection.query(
            "SELECT id, kind, parent_id, time_zone, office_hours::text FROM directory_entities WHERE company_id = \(companyId)", logger: logger)
        var result: [UUID: DirectoryEntity] = [:]
        for try await (id, kind, parent, zone, hours) in rows.decode((UUID, String, UUID?, String, String).self) {
            result[id] = DirectoryEntity(kind: EntityKind(rawValue: kind) ?? .team, parentId: parent, timeZone: zone,
                                         officeHours: (try? JSONCoding.decoder.decode([OfficeHoursDay].self, from: Data(hours.utf8))) ?? [])
        }
        return result
    }

    func directoryUser(_ id: UUID, on connection: PostgresConnection) async throws -> (name: String, entityIds: [UUID])? {
        let rows = try await connection.query("SELECT first_name || ' ' || last_name, entity_ids FROM directory_users WHERE id = \(id) AND active",
                                              logger: logger)
        for try await (name, entities) in rows.decode((String, [UUID]).self) { return (name, entities) }
        return nil
    }

    func contactSnapshot(_ id: UUID, on connection: PostgresConnection) async throws -> Contact? {
        let rows = try await connection.query("SELECT snapshot::text FROM contact_replica WHERE id = \(id) AND NOT deleted", logger: logger)
        for try await doc in rows.decode(String.self) { return try JSONCoding.decoder.decode(Contact.self, from: Data(doc.utf8)) }
        return nil
    }

    func communications(contactId: UUID, on connection: PostgresConnection) async throws -> [NewLeadCallPlan.Communication] {
        let rows = try await connection.query(
            "SELECT channel, direction, outcome FROM communication_replica WHERE contact_id = \(contactId) ORDER BY at DESC LIMIT 200", logger: logger)
        var result: [NewLeadCallPlan.Communication] = []
        for try await (channel, direction, outcome) in rows.decode((String, String, String?).self) {
            guard let channel = CommunicationChannel(rawValue: channel), let direction = CommunicationDirection(rawValue: direction) else { continue }
            result.append(.init(channel: channel, direction: direction, outcome: outcome.flatMap(CallOutcome.init(rawValue:))))
        }
        return result
    }

    /// AC-6: whether an outbound call, text or e-mail reached the contact since `since`.
    func answered(contactId: UUID, since: Date, on connection: PostgresConnection) async throws -> Bool {
        try await connection.query(
            "SELECT 1 FROM communication_replica WHERE contact_id = \(contactId) AND direction = 'outbound' AND at >= \(since) LIMIT 1", logger: logger
        ).collect().count == 1
    }

    /// A new plan; false when the lead already has one for this agent.
    func insert(_ plan: CallPlan, on connection: PostgresConnection) async throws -> Bool {
        try await connection.query("""
            INSERT INTO call_plans (contact_id, agent_id, company_id, state, doc)
            VALUES (\(plan.contactId), \(plan.agentId), \(plan.companyId), \(plan.state.rawValue), \(try Self.json(plan))::jsonb)
            ON CONFLICT DO NOTHING RETURNING contact_id
            """, logger: logger).collect().count == 1
    }

    func update(_ plan: CallPlan, on connection: PostgresConnection) async throws {
        try await connection.query("""
            UPDATE call_plans SET state = \(plan.state.rawValue), doc = \(try Self.json(plan))::jsonb
            WHERE contact_id = \(plan.contactId) AND agent_id = \(plan.agentId)
            """, logger: logger)
    }

    func lockPlan(_ contactId: UUID, _ agentId: UUID, on connection: PostgresConnection) async throws -> CallPlan? {
        let rows = try await connection.query(
            "SELECT doc::text FROM call_plans WHERE contact_id = \(contactId) AND agent_id = \(agentId) FOR UPDATE", logger: logger)
        for try await doc in rows.decode(String.self) { return try JSONCoding.decoder.decode(CallPlan.self, from: Data(doc.utf8)) }
        return nil
    }

    func activePlans(contactId: UUID, on connection: PostgresConnection) async throws -> [CallPlan] {
        let rows = try await connection.query(
            "SELECT doc::text FROM call_plans WHERE contact_id = \(contactId) AND state = 'active' FOR UPDATE", logger: logger)
        var result: [CallPlan] = []
        for try await doc in rows.decode(String.self) { result.append(try JSONCoding.decoder.decode(CallPlan.self, from: Data(doc.utf8))) }
        return result
    }

    // MARK: analytics

    /// The agents of `entities` (every one who takes leads, in rotation or not), by name.
    func agents(of entities: [UUID]) async throws -> [(UUID, String)] {
        let rows = try await client.query("""
            SELECT id, first_name || ' ' || last_name FROM directory_users
            WHERE entity_ids && \(entities) AND role IN ('agent', 'team_admin', 'office_admin') ORDER BY last_name, first_name, id
            """, logger: logger)
        var result: [(UUID, String)] = []
        for try await row in rows.decode((UUID, String).self) { result.append(row) }
        return result
    }

    /// What AC-7 sums for each agent over [from, to): four indexed reads for the whole office.
    func activity(of agents: [(UUID, String)], from: Date, to: Date) async throws -> [AgentActivity] {
        let ids = agents.map(\.0)
        var calls: [UUID: Int] = [:], violations: [UUID: Int] = [:]
        var tasks: [UUID: [AgentActivity.Tasks]] = [:], firsts: [UUID: [Double?]] = [:]
        for try await (agent, count) in try await client.query("""
            SELECT user_id, count(*)::int FROM communication_replica
            WHERE user_id = ANY(\(ids)) AND channel = 'call' AND direction = 'outbound' AND at >= \(from) AND at < \(to) GROUP BY user_id
            """, logger: logger).decode((UUID, Int).self) { calls[agent] = count }
        for try await (agent, isCall, completed, inTime, count) in try await client.query("""
            SELECT assignee_id, kind = 'call', completed_at IS NOT NULL, coalesce(completed_at <= due_at, false), count(*)::int FROM task_replica
            WHERE assignee_id = ANY(\(ids)) AND due_at >= \(from) AND due_at < \(to) AND kind IN ('task', 'call') GROUP BY 1, 2, 3, 4
            """, logger: logger).decode((UUID, Bool, Bool, Bool, Int).self) {
            tasks[agent, default: []].append(AgentActivity.Tasks(isCall: isCall, completed: completed, inTime: inTime, count: count))
        }
        for try await (agent, count) in try await client.query("""
            SELECT agent_id, count(*)::int FROM violations WHERE agent_id = ANY(\(ids)) AND created_at >= \(from) AND created_at < \(to) GROUP BY agent_id
            """, logger: logger).decode((UUID, Int).self) { violations[agent] = count }
        for try await (agent, minutes) in try await client.query("""
            SELECT c.assigned_agent_id,
                (SELECT extract(epoch FROM min(m.at) - c.created_at) / 60 FROM communication_replica m
                 WHERE m.user_id = c.assigned_agent_id AND m.contact_id = c.id AND m.direction = 'outbound' AND m.at >= c.created_at)::float8
            FROM contact_replica c
            WHERE c.assigned_agent_id = ANY(\(ids)) AND c.created_at >= \(from) AND c.created_at < \(to) AND NOT c.deleted
              AND c.origin IN ('website', 'dropbox', 'zapier')
            """, logger: logger).decode((UUID, Double?).self) { firsts[agent, default: []].append(minutes) }
        return agents.map { id, name in
            AgentActivity(agentId: id, agentName: name, callsMade: calls[id] ?? 0, tasks: tasks[id] ?? [], violations: violations[id] ?? 0,
                          firstContactMinutes: firsts[id] ?? [])
        }
    }

    /// The names of entities, for the total's row.
    func entityName(_ id: UUID) async throws -> String? {
        try await client.query("SELECT name FROM directory_entities WHERE id = \(id)", logger: logger).first(String.self)
    }

    /// `root` and every entity under it.
    func subtreeIds(of root: UUID) async throws -> [UUID] {
        try await client.withConnection { connection in Array(try await subtree(of: root, on: connection).keys) }
    }

    // MARK: violations

    /// When an admin last put each agent back (AC-5).
    func lastReinstatements(of agents: [UUID], on connection: PostgresConnection) async throws -> [UUID: Date] {
        let rows = try await connection.query("""
            SELECT agent_id, max((doc->>'reinstatedAt')::timestamptz) FROM violations
            WHERE agent_id = ANY(\(agents)) AND doc ? 'reinstatedAt' GROUP BY agent_id
            """, logger: logger)
        var result: [UUID: Date] = [:]
        for try await (agent, at) in rows.decode((UUID, Date?).self) { result[agent] = at }
        return result
    }

    /// Writes a violation unless the agent has one of this kind for this period; true when new.
    func insert(_ violation: Violation, on connection: PostgresConnection) async throws -> Bool {
        try await connection.query("""
            INSERT INTO violations (id, company_id, entity_id, agent_id, kind, period, created_at, doc)
            VALUES (\(violation.id), \(violation.companyId), \(violation.entityId), \(violation.agentId), \(violation.kind.rawValue),
                    \(violation.period), \(violation.createdAt), \(try Self.json(violation))::jsonb)
            ON CONFLICT (agent_id, kind, period) DO NOTHING RETURNING id
            """, logger: logger).collect().count == 1
    }

    func update(_ violation: Violation, on connection: PostgresConnection? = nil) async throws {
        let query: PostgresQuery = "UPDATE violations SET doc = \(try Self.json(violation))::jsonb WHERE id = \(violation.id)"
        if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
    }

    func violation(_ id: UUID, on connection: PostgresConnection? = nil) async throws -> Violation? {
        let query: PostgresQuery = "SELECT doc::text FROM violations WHERE id = \(id)"
        let rows = if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
        for try await doc in rows.decode(String.self) { return try JSONCoding.decoder.decode(Violation.self, from: Data(doc.utf8)) }
        return nil
    }

    /// A company's violations, newest first; only those of `agentId`, of `entities`, when given.
    func violations(companyId: UUID, agentId: UUID?, entities: Set<UUID>?, limit: Int) async throws -> [Violation] {
        let rows = try await client.query("""
            SELECT doc::text FROM violations
            WHERE company_id = \(companyId) AND (\(agentId)::uuid IS NULL OR agent_id = \(agentId))
              AND (\(entities.map(Array.init))::uuid[] IS NULL OR entity_id = ANY(\(entities.map(Array.init))::uuid[]))
            ORDER BY created_at DESC, id LIMIT \(limit)
            """, logger: logger)
        var result: [Violation] = []
        for try await doc in rows.decode(String.self) { result.append(try JSONCoding.decoder.decode(Violation.self, from: Data(doc.utf8))) }
        return result
    }
}
