import Foundation
import Logging
import Models
import PostgresNIO

/// The local copy of the directory (entities with their time zones and office hours, users with
/// roles and rotation) that every service but contacts keeps from contacts' events, so routing,
/// automation, accountability, SmartPlans and notifications never read contacts' schema and do
/// not call it for every decision.
package enum DirectoryReplica {
    package static let migrations: [Migration] = [
        Migration("CreateDirectoryEntities", [
            """
            CREATE TABLE directory_entities (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                parent_id uuid,
                kind text NOT NULL,
                name text NOT NULL,
                time_zone text NOT NULL,
                office_hours jsonb NOT NULL,
                version int NOT NULL)
            """,
            "CREATE INDEX directory_entities_company ON directory_entities (company_id)",
        ]),
        Migration("CreateDirectoryUsers", [
            """
            CREATE TABLE directory_users (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                role text NOT NULL,
                entity_ids uuid[] NOT NULL,
                first_name text NOT NULL,
                last_name text NOT NULL,
                email text NOT NULL,
                mobile_phone text,
                time_zone text NOT NULL,
                in_rotation boolean NOT NULL,
                rotation_until timestamptz,
                active boolean NOT NULL,
                last_login_at timestamptz,
                version int NOT NULL)
            """,
            "CREATE INDEX directory_users_company ON directory_users (company_id)",
            "CREATE INDEX directory_users_entities ON directory_users USING gin (entity_ids)",
        ]),
    ]

    /// Added after the first tables landed: each service appends it to the end of its own list,
    /// so the versions already applied keep their numbers.
    package static let userPreferences: [Migration] = [
        Migration("AddDirectoryUserPrefersPush", ["ALTER TABLE directory_users ADD COLUMN prefers_push boolean NOT NULL DEFAULT false"]),
    ]

    /// An agent's own lender (RT-6), appended the same way after `userPreferences`.
    package static let userLender: [Migration] = [
        Migration("AddDirectoryUserLender", ["ALTER TABLE directory_users ADD COLUMN lender_id uuid"]),
    ]

    /// An entity's postal address (CAN-SPAM), appended at the end of each service's list.
    package static let entityAddress: [Migration] = [
        Migration("AddDirectoryEntityPostalAddress", ["ALTER TABLE directory_entities ADD COLUMN postal_address text"]),
    ]

    /// The entities an office or team admin manages, with every entity under them; nil for
    /// everyone else, whose reach is not a part of the entity tree (a company admin's is the whole
    /// company, an agent's their own contacts, a service's every company). An admin's scope is
    /// their entities in every service, for reads and for sends.
    package static func managedEntities(of identity: Identity, on connection: PostgresConnection, logger: Logger) async throws -> Set<UUID>? {
        guard identity.role == .officeAdmin || identity.role == .teamAdmin else { return nil }
        guard let companyId = identity.companyId else { return [] }
        var tree: Set<UUID> = []
        let rows = try await connection.query("""
            WITH RECURSIVE tree AS (
                SELECT id FROM directory_entities WHERE id = ANY(\(Array(identity.entityIds))) AND company_id = \(companyId)
                UNION SELECT e.id FROM directory_entities e JOIN tree t ON e.parent_id = t.id)
            SELECT id FROM tree
            """, logger: logger)
        for try await id in rows.decode(UUID.self) { tree.insert(id) }
        return tree
    }

    /// Handlers for every directory event `service` subscribes to.
    package static func handlers(for service: ServiceName) -> [EventHandler] {
        let wanted = Subscriptions.events(for: service)
        return [
            // What a batch kept of the directory is stale from here on.
            EventHandler(name: "directory.entity", eventType: EventType.entityUpserted) { event, connection, logger in
                BatchMemo.clear()
                try await upsertEntity(event, on: connection, logger: logger)
            },
            EventHandler(name: "directory.user", eventType: EventType.userUpserted) { event, connection, logger in
                BatchMemo.clear()
                try await upsertUser(event, on: connection, logger: logger)
            },
            EventHandler(name: "directory.login", eventType: EventType.userLoggedIn) { event, connection, logger in
                let login = try event.data(UserLoggedIn.self)
                try await connection.query("""
                    UPDATE directory_users SET last_login_at = greatest(coalesce(last_login_at, \(login.at)), \(login.at))
                    WHERE id = \(login.userId)
                    """, logger: logger)
            },
        ].filter { wanted.contains($0.eventType) }
    }

    static func upsertEntity(_ event: ReceivedEvent, on connection: PostgresConnection, logger: Logger) async throws {
        let entity = try event.data(Entity.self)
        let hours = String(decoding: try JSONCoding.encoder.encode(entity.officeHours), as: UTF8.self)
        // An older version arriving late changes nothing.
        try await connection.query("""
            INSERT INTO directory_entities (id, company_id, parent_id, kind, name, time_zone, office_hours, postal_address, version)
            VALUES (\(entity.id), \(entity.companyId), \(entity.parentId), \(entity.kind.rawValue), \(entity.name),
                    \(entity.timeZone), \(hours)::jsonb, \(entity.postalAddress), \(entity.version))
            ON CONFLICT (id) DO UPDATE SET parent_id = EXCLUDED.parent_id, kind = EXCLUDED.kind, name = EXCLUDED.name,
                time_zone = EXCLUDED.time_zone, office_hours = EXCLUDED.office_hours, postal_address = EXCLUDED.postal_address,
                version = EXCLUDED.version
            WHERE directory_entities.version < EXCLUDED.version
            """, logger: logger)
    }

    static func upsertUser(_ event: ReceivedEvent, on connection: PostgresConnection, logger: Logger) async throws {
        let user = try event.data(User.self)
        guard let companyId = user.companyId else {
            throw APIError.validation("data.companyId", "a directory user belongs to a company")
        }
        try await connection.query("""
            INSERT INTO directory_users (id, company_id, role, entity_ids, first_name, last_name, email, mobile_phone,
                time_zone, in_rotation, rotation_until, active, prefers_push, lender_id, version)
            VALUES (\(user.id), \(companyId), \(user.role.rawValue), \(user.entityIds), \(user.firstName), \(user.lastName),
                    \(user.email), \(user.mobilePhone), \(user.timeZone), \(user.rotation.inRotation), \(user.rotation.until),
                    \(user.active), \(user.prefersPush), \(user.lenderId), \(user.version))
            ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, entity_ids = EXCLUDED.entity_ids,
                first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, email = EXCLUDED.email,
                mobile_phone = EXCLUDED.mobile_phone, time_zone = EXCLUDED.time_zone, in_rotation = EXCLUDED.in_rotation,
                rotation_until = EXCLUDED.rotation_until, active = EXCLUDED.active, prefers_push = EXCLUDED.prefers_push,
                lender_id = EXCLUDED.lender_id, version = EXCLUDED.version
            WHERE directory_users.version < EXCLUDED.version
            """, logger: logger)
    }
}
