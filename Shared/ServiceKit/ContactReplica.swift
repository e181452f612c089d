import Foundation
import Logging
import Models
import PostgresNIO

/// The slice of each contact that routing, automation, accountability and SmartPlans decide on
/// (status, assignment, tags, origin, contact points, alerts flag), kept from contacts' events so
/// none of them reads contacts' schema. Each event carries the whole contact after the change;
/// an older version arriving late changes nothing.
package enum ContactReplica {
    package static let migrations: [Migration] = [
        Migration("CreateContactReplica", [
            """
            CREATE TABLE contact_replica (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                owner_entity_id uuid NOT NULL,
                status text NOT NULL,
                assigned_agent_id uuid,
                tags text[] NOT NULL,
                origin text NOT NULL,
                phones text[] NOT NULL,
                emails text[] NOT NULL,
                behavioral_alerts boolean NOT NULL,
                deleted boolean NOT NULL DEFAULT false,
                version int NOT NULL,
                created_at timestamptz NOT NULL,
                snapshot jsonb NOT NULL)
            """,
            "CREATE INDEX contact_replica_agent ON contact_replica (assigned_agent_id)",
            """
            CREATE TABLE communication_replica (
                id uuid PRIMARY KEY,
                contact_id uuid NOT NULL,
                channel text NOT NULL,
                direction text NOT NULL,
                outcome text,
                user_id uuid,
                at timestamptz NOT NULL)
            """,
            "CREATE INDEX communication_replica_contact ON communication_replica (contact_id, at DESC)",
        ]),
    ]

    package static func handlers(for service: ServiceName) -> [EventHandler] {
        let wanted = Subscriptions.events(for: service)
        var handlers = (EventType.contactChanges + [EventType.contactsImported]).map { type in
            EventHandler.batched(name: type == EventType.contactsImported ? "replica.import" : "replica.contact", eventType: type) {
                events, connection, logger in try await apply(events, on: connection, logger: logger)
            }
        }
        handlers.append(EventHandler(name: "replica.communication", eventType: EventType.communicationLogged) { event, connection, logger in
            try await apply([event], on: connection, logger: logger)
            let item = try event.data(CommunicationLogged.self).communication
            try await connection.query("""
                INSERT INTO communication_replica (id, contact_id, channel, direction, outcome, user_id, at)
                VALUES (\(item.id), \(item.contactId), \(item.channel.rawValue), \(item.direction.rawValue), \(item.outcome?.rawValue),
                        \(item.userId), \(item.at))
                ON CONFLICT (id) DO NOTHING
                """, logger: logger)
        })
        // A tag renamed or deleted in the company's settings: every replica row that had it, in
        // one statement (contacts changed its contacts in one statement too, without an event each).
        handlers += [EventType.tagRenamed, EventType.tagDeleted].map { type in
            EventHandler(name: "replica.tag", eventType: type) { event, connection, logger in
                let change = try event.data(TagChanged.self)
                try await connection.query("""
                    UPDATE contact_replica SET tags = ARRAY(
                        SELECT DISTINCT t FROM unnest(array_replace(tags, \(change.tag)::text, \(change.renamedTo)::text)) AS u(t) WHERE t IS NOT NULL)
                    WHERE company_id = \(change.companyId) AND \(change.tag)::text = ANY(tags)
                    """, logger: logger)
            }
        }
        // A delivered batch's tasks (a plan's wave of call tasks) in one statement, read by the
        // database from the events' own JSON: no decoding here, one round trip.
        handlers.append(EventHandler.batched(name: "replica.task", eventType: EventType.taskChanged) { events, connection, logger in
            try await connection.prepared(TaskUpsertSQL.self, .values(jsonArray(events)), logger: logger)
        })
        return handlers.filter { wanted.contains($0.eventType) }
    }

    /// Tasks with their assignee, due date and completion (AC-4: the share of tasks completed),
    /// for the services that take `task.changed`, appended after their own migrations.
    package static let taskMigrations: [Migration] = [
        Migration("CreateTaskReplica", [
            """
            CREATE TABLE task_replica (
                id uuid PRIMARY KEY,
                contact_id uuid NOT NULL,
                company_id uuid NOT NULL,
                kind text NOT NULL,
                assignee_id uuid,
                due_at timestamptz,
                completed_at timestamptz,
                call_outcome text,
                version int NOT NULL,
                created_at timestamptz NOT NULL)
            """,
            "CREATE INDEX task_replica_assignee ON task_replica (assignee_id, due_at)",
        ]),
    ]

    /// Contact events, imports and logged communications in delivery order, in one statement:
    /// each contact's newest version is written, marked deleted when any of its events deleted
    /// it. The events go to the database as they arrived, and it takes the contacts out of them:
    /// decoding every contact only to encode it again for its snapshot was half of what a
    /// replica service spent on an event.
    static func apply(_ events: [ReceivedEvent], on connection: PostgresConnection, logger: Logger) async throws {
        guard !events.isEmpty else { return }
        try await connection.prepared(UpsertSQL.self, .values(jsonArray(events), EventType.contactsImported, EventType.contactDeleted), logger: logger)
    }

    /// The events' bodies as one JSON array, for a statement that reads them itself.
    static func jsonArray(_ events: [ReceivedEvent]) -> String {
        var bodies = Data("[".utf8)
        for (index, event) in events.enumerated() {
            if index > 0 { bodies.append(UInt8(ascii: ",")) }
            bodies.append(event.body)
        }
        bodies.append(UInt8(ascii: "]"))
        return String(decoding: bodies, as: UTF8.self)
    }
}

extension ContactReplica {
    /// `task.changed` events (`$1`, one JSON array): each task's newest version, an older one
    /// arriving late changing nothing.
    enum TaskUpsertSQL: PreparedSQL {
        static let sql = """
            WITH newest AS (
                SELECT DISTINCT ON ((e->'data'->'task'->>'id')::uuid) e->'data'->'task' AS t
                FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS b(e, n)
                ORDER BY (e->'data'->'task'->>'id')::uuid, (e->'data'->'task'->>'version')::int DESC, n DESC)
            INSERT INTO task_replica (id, contact_id, company_id, kind, assignee_id, due_at, completed_at, call_outcome, version, created_at)
            SELECT (t->>'id')::uuid, (t->>'contactId')::uuid, (t->>'companyId')::uuid, t->>'kind', (t->>'assigneeId')::uuid,
                (t->>'dueAt')::timestamptz, (t->>'completedAt')::timestamptz, t->>'callOutcome', (t->>'version')::int, (t->>'createdAt')::timestamptz
            FROM newest
            ON CONFLICT (id) DO UPDATE SET assignee_id = EXCLUDED.assignee_id, due_at = EXCLUDED.due_at,
                completed_at = EXCLUDED.completed_at, call_outcome = EXCLUDED.call_outcome, version = EXCLUDED.version
            WHERE task_replica.version < EXCLUDED.version
            """
    }

    /// Every contact event in five services runs it: prepared once per connection. `$1` is the
    /// events as one JSON array, `$2` the import event's type, `$3` the deletion's.
    enum UpsertSQL: PreparedSQL {
        static let sql = """
            WITH events AS MATERIALIZED (
                SELECT e, n FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS b(e, n)),
            received AS (
                SELECT i.c, n, m FROM events
                CROSS JOIN LATERAL jsonb_array_elements(
                    CASE WHEN e->>'type' = $2 THEN e->'data'->'contacts' ELSE jsonb_build_array(e->'data'->'contact') END)
                    WITH ORDINALITY AS i(c, m)),
            newest AS (
                SELECT DISTINCT ON ((c->>'id')::uuid) c,
                    c->>'id' IN (SELECT e->'data'->'contact'->>'id' FROM events WHERE e->>'type' = $3) AS deleted
                FROM received ORDER BY (c->>'id')::uuid, (c->>'version')::int DESC, n DESC, m DESC)
            INSERT INTO contact_replica (id, company_id, owner_entity_id, status, assigned_agent_id, tags, origin, phones, emails,
                behavioral_alerts, deleted, version, created_at, snapshot)
            SELECT (c->>'id')::uuid, (c->>'companyId')::uuid, (c->>'ownerEntityId')::uuid, c->>'status', (c->>'assignedAgentId')::uuid,
                ARRAY(SELECT jsonb_array_elements_text(c->'tags')), c->>'origin',
                ARRAY(SELECT jsonb_array_elements_text(c->'phones')), ARRAY(SELECT jsonb_array_elements_text(c->'emails')),
                (c->>'behavioralAlerts')::boolean, deleted, (c->>'version')::int, (c->>'createdAt')::timestamptz, c
            FROM newest
            ON CONFLICT (id) DO UPDATE SET owner_entity_id = EXCLUDED.owner_entity_id, status = EXCLUDED.status,
                assigned_agent_id = EXCLUDED.assigned_agent_id, tags = EXCLUDED.tags, phones = EXCLUDED.phones, emails = EXCLUDED.emails,
                behavioral_alerts = EXCLUDED.behavioral_alerts, deleted = contact_replica.deleted OR EXCLUDED.deleted,
                version = EXCLUDED.version, snapshot = EXCLUDED.snapshot
            WHERE contact_replica.version < EXCLUDED.version OR (EXCLUDED.deleted AND NOT contact_replica.deleted)
            """
    }
}
