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
            let logged = try event.data(CommunicationLogged.self)
            try await upsert([logged.contact], deleted: false, on: connection, logger: logger)
            let item = logged.communication
            try await connection.query("""
                INSERT INTO communication_replica (id, contact_id, channel, direction, outcome, user_id, at)
                VALUES (\(item.id), \(item.contactId), \(item.channel.rawValue), \(item.direction.rawValue), \(item.outcome?.rawValue),
                        \(item.userId), \(item.at))
                ON CONFLICT (id) DO NOTHING
                """, logger: logger)
        })
        return handlers.filter { wanted.contains($0.eventType) }
    }

    /// Contact events and imports in delivery order: each contact's newest version is written,
    /// the live ones in one statement and the deleted ones in another.
    static func apply(_ events: [ReceivedEvent], on connection: PostgresConnection, logger: Logger) async throws {
        var newest: [UUID: (contact: Contact, deleted: Bool)] = [:]
        var order: [UUID] = []
        func keep(_ contact: Contact, deleted: Bool) {
            if let known = newest[contact.id] {
                if contact.version > known.contact.version || (deleted && !known.deleted) { newest[contact.id] = (contact, deleted || known.deleted) }
            } else {
                newest[contact.id] = (contact, deleted)
                order.append(contact.id)
            }
        }
        for event in events {
            if event.type == EventType.contactsImported {
                for contact in try event.data(ContactsImported.self).contacts { keep(contact, deleted: false) }
            } else {
                keep(try event.data(ContactChanged.self).contact, deleted: event.type == EventType.contactDeleted)
            }
        }
        let kept = order.compactMap { newest[$0] }
        try await upsert(kept.filter { !$0.deleted }.map(\.contact), deleted: false, on: connection, logger: logger)
        try await upsert(kept.filter(\.deleted).map(\.contact), deleted: true, on: connection, logger: logger)
    }

    static func upsert(_ contacts: [Contact], deleted: Bool, on connection: PostgresConnection, logger: Logger) async throws {
        guard !contacts.isEmpty else { return }
        let snapshots = String(decoding: try JSONCoding.encoder.encode(contacts), as: UTF8.self)
        try await connection.prepared(UpsertSQL.self, .values(snapshots, deleted), logger: logger)
    }
}

extension ContactReplica {
    /// Every contact event in five services runs it: prepared once per connection.
    enum UpsertSQL: PreparedSQL {
        static let sql = """
            INSERT INTO contact_replica (id, company_id, owner_entity_id, status, assigned_agent_id, tags, origin, phones, emails,
                behavioral_alerts, deleted, version, created_at, snapshot)
            SELECT (c->>'id')::uuid, (c->>'companyId')::uuid, (c->>'ownerEntityId')::uuid, c->>'status', (c->>'assignedAgentId')::uuid,
                ARRAY(SELECT jsonb_array_elements_text(c->'tags')), c->>'origin',
                ARRAY(SELECT jsonb_array_elements_text(c->'phones')), ARRAY(SELECT jsonb_array_elements_text(c->'emails')),
                (c->>'behavioralAlerts')::boolean, $2::boolean, (c->>'version')::int, (c->>'createdAt')::timestamptz, c
            FROM jsonb_array_elements($1::jsonb) AS c
            ON CONFLICT (id) DO UPDATE SET owner_entity_id = EXCLUDED.owner_entity_id, status = EXCLUDED.status,
                assigned_agent_id = EXCLUDED.assigned_agent_id, tags = EXCLUDED.tags, phones = EXCLUDED.phones, emails = EXCLUDED.emails,
                behavioral_alerts = EXCLUDED.behavioral_alerts, deleted = contact_replica.deleted OR EXCLUDED.deleted,
                version = EXCLUDED.version, snapshot = EXCLUDED.snapshot
            WHERE contact_replica.version < EXCLUDED.version OR (EXCLUDED.deleted AND NOT contact_replica.deleted)
            """
    }
}
