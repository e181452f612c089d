import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// SQL for companies, entities, users and logins. Every change publishes its event through the
/// outbox in the same transaction.
struct DirectoryStore: Sendable {
    let client: PostgresClient
    let outbox: Outbox
    let logger: Logger

    // MARK: Companies

    func createCompany(_ company: Company, root: Entity, admin: User, passwordHash: String) async throws {
        try await client.transaction(logger: logger) { connection in
            try await connection.query("""
                INSERT INTO companies (id, name, bypass_listing_agent, created_at)
                VALUES (\(company.id), \(company.name), \(company.bypassListingAgent), \(company.createdAt))
                """, logger: logger)
            try await insertEntity(root, on: connection)
            try await insertUser(admin, passwordHash: passwordHash, on: connection)
        }
    }

    // MARK: Entities

    func insertEntity(_ entity: Entity, on connection: PostgresConnection) async throws {
        let hours = String(decoding: try JSONCoding.encoder.encode(entity.officeHours), as: UTF8.self)
        try await connection.query("""
            INSERT INTO entities (id, company_id, parent_id, kind, name, time_zone, office_hours, postal_address, version, created_at, updated_at)
            VALUES (\(entity.id), \(entity.companyId), \(entity.parentId), \(entity.kind.rawValue), \(entity.name), \(entity.timeZone),
                    \(hours)::jsonb, \(entity.postalAddress), \(entity.version), \(entity.createdAt), \(entity.updatedAt))
            """, logger: logger)
        try await publishEntity(entity, on: connection)
    }

    func createEntity(_ entity: Entity) async throws {
        try await client.transaction(logger: logger) { connection in
            try await insertEntity(entity, on: connection)
        }
    }

    /// Saves `entity` if it is still at `expectedVersion - 1`; false when someone changed it meanwhile.
    func updateEntity(_ entity: Entity) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            let hours = String(decoding: try JSONCoding.encoder.encode(entity.officeHours), as: UTF8.self)
            let updated = try await connection.query("""
                UPDATE entities SET name = \(entity.name), time_zone = \(entity.timeZone), office_hours = \(hours)::jsonb,
                    postal_address = \(entity.postalAddress), version = \(entity.version), updated_at = \(entity.updatedAt)
                WHERE id = \(entity.id) AND version = \(entity.version - 1)
                RETURNING id
                """, logger: logger).collect().count
            guard updated == 1 else { return false }
            try await publishEntity(entity, on: connection)
            return true
        }
    }

    private func publishEntity(_ entity: Entity, on connection: PostgresConnection) async throws {
        let event = try outbox.envelope(EventType.entityUpserted, version: entity.version, companyId: entity.companyId, subjectId: entity.id, data: entity)
        try await outbox.publish(event, on: connection, logger: logger)
    }

    func entity(_ id: UUID, companyId: UUID) async throws -> Entity? {
        let rows = try await client.query("""
            SELECT id, company_id, parent_id, kind, name, time_zone, office_hours::text, postal_address, version, created_at, updated_at
            FROM entities WHERE id = \(id) AND company_id = \(companyId)
            """, logger: logger)
        return try await decodeEntities(rows).first
    }

    func entities(companyId: UUID, within scope: Set<UUID>?) async throws -> [Entity] {
        let rows = try await client.query("""
            SELECT id, company_id, parent_id, kind, name, time_zone, office_hours::text, postal_address, version, created_at, updated_at
            FROM entities WHERE company_id = \(companyId) ORDER BY created_at, id
            """, logger: logger)
        let all = try await decodeEntities(rows)
        guard let scope else { return all }
        return all.filter { scope.contains($0.id) }
    }

    private func decodeEntities(_ rows: PostgresRowSequence) async throws -> [Entity] {
        var result: [Entity] = []
        for try await (id, companyId, parentId, kind, name, timeZone, hours, postalAddress, version, createdAt, updatedAt)
            in rows.decode((UUID, UUID, UUID?, String, String, String, String, String?, Int, Date, Date).self) {
            let officeHours = try JSONCoding.decoder.decode([OfficeHoursDay].self, from: Data(hours.utf8))
            result.append(Entity(id: id, companyId: companyId, parentId: parentId, kind: EntityKind(rawValue: kind) ?? .team, name: name,
                                 timeZone: timeZone, officeHours: officeHours, postalAddress: postalAddress, version: version,
                                 createdAt: createdAt, updatedAt: updatedAt))
        }
        return result
    }

    /// `roots` and every entity below them, within one company.
    func subtree(of roots: Set<UUID>, companyId: UUID) async throws -> Set<UUID> {
        guard !roots.isEmpty else { return [] }
        let rows = try await client.query("""
            WITH RECURSIVE tree AS (
                SELECT id FROM entities WHERE company_id = \(companyId) AND id = ANY(\(Array(roots)))
                UNION
                SELECT e.id FROM entities e JOIN tree t ON e.parent_id = t.id)
            SELECT id FROM tree
            """, logger: logger)
        var result = Set<UUID>()
        for try await id in rows.decode(UUID.self) { result.insert(id) }
        return result
    }

    // MARK: Users

    func insertUser(_ user: User, passwordHash: String?, on connection: PostgresConnection) async throws {
        try await connection.query("""
            INSERT INTO users (id, company_id, role, entity_ids, first_name, last_name, email, mobile_phone, time_zone, password_hash,
                in_rotation, rotation_until, rotation_reason, prefers_push, lender_id, active, version, created_at, updated_at)
            VALUES (\(user.id), \(user.companyId), \(user.role.rawValue), \(user.entityIds), \(user.firstName), \(user.lastName),
                \(user.email), \(user.mobilePhone), \(user.timeZone), \(passwordHash), \(user.rotation.inRotation), \(user.rotation.until),
                \(user.rotation.reason),
                \(user.prefersPush), \(user.lenderId), \(user.active), \(user.version), \(user.createdAt), \(user.updatedAt))
            """, logger: logger)
        try await publishUser(user, on: connection)
    }

    func createUser(_ user: User, passwordHash: String?) async throws {
        try await client.transaction(logger: logger) { connection in
            try await insertUser(user, passwordHash: passwordHash, on: connection)
        }
    }

    /// Saves `user` if it is still at `version - 1`; false when someone changed it meanwhile.
    func updateUser(_ user: User, passwordHash: String?) async throws -> Bool {
        try await client.transaction(logger: logger) { connection in
            let updated = try await connection.query("""
                UPDATE users SET role = \(user.role.rawValue), entity_ids = \(user.entityIds), first_name = \(user.firstName),
                    last_name = \(user.lastName), email = \(user.email), mobile_phone = \(user.mobilePhone), time_zone = \(user.timeZone),
                    password_hash = coalesce(\(passwordHash), password_hash), in_rotation = \(user.rotation.inRotation),
                    rotation_until = \(user.rotation.until), rotation_reason = \(user.rotation.reason), prefers_push = \(user.prefersPush), lender_id = \(user.lenderId), active = \(user.active),
                    version = \(user.version), updated_at = \(user.updatedAt)
                WHERE id = \(user.id) AND version = \(user.version - 1)
                RETURNING id
                """, logger: logger).collect().count
            guard updated == 1 else { return false }
            try await publishUser(user, on: connection)
            return true
        }
    }

    private func publishUser(_ user: User, on connection: PostgresConnection) async throws {
        guard let companyId = user.companyId else { return }
        let event = try outbox.envelope(EventType.userUpserted, version: user.version, companyId: companyId, subjectId: user.id, data: user)
        try await outbox.publish(event, on: connection, logger: logger)
    }

    private static let userColumns = """
        id, company_id, role, entity_ids, first_name, last_name, email, mobile_phone, time_zone, in_rotation, rotation_until, rotation_reason,
        prefers_push, lender_id, active, version, created_at, updated_at, password_hash
        """

    func user(_ id: UUID) async throws -> (User, String?)? {
        try await users(PostgresQuery(unsafeSQL: "SELECT \(Self.userColumns) FROM users WHERE id = $1", binds: try .of(id))).first
    }

    func user(email: String) async throws -> (User, String?)? {
        try await users(PostgresQuery(unsafeSQL: "SELECT \(Self.userColumns) FROM users WHERE lower(email) = lower($1)", binds: try .of(email))).first
    }

    /// One page of a company's users, optionally only those in `entities`, ordered by id.
    func users(companyId: UUID, inAny entities: Set<UUID>?, after cursor: UUID?, limit: Int) async throws -> [User] {
        var bindings = PostgresBindings()
        try bindings.append(companyId, context: .default)
        var sql = "SELECT \(Self.userColumns) FROM users WHERE company_id = $1"
        if let entities {
            try bindings.append(Array(entities), context: .default)
            sql += " AND entity_ids && $\(bindings.count)"
        }
        if let cursor {
            try bindings.append(cursor, context: .default)
            sql += " AND id > $\(bindings.count)"
        }
        try bindings.append(limit, context: .default)
        sql += " ORDER BY id LIMIT $\(bindings.count)"
        return try await users(PostgresQuery(unsafeSQL: sql, binds: bindings)).map(\.0)
    }

    private func users(_ query: PostgresQuery) async throws -> [(User, String?)] {
        let rows = try await client.query(query, logger: logger)
        var result: [(User, String?)] = []
        for try await (id, companyId, role, entityIds, firstName, lastName, email, mobilePhone, timeZone, inRotation, until, reason,
                       prefersPush, lenderId, active, version, createdAt, updatedAt, hash)
            in rows.decode((UUID, UUID?, String, [UUID], String, String, String, String?, String, Bool, Date?, String?,
                            Bool, UUID?, Bool, Int, Date, Date, String?).self) {
            result.append((User(id: id, companyId: companyId, role: Role(rawValue: role) ?? .agent, entityIds: entityIds, firstName: firstName,
                                lastName: lastName, email: email, mobilePhone: mobilePhone, timeZone: timeZone,
                                rotation: Rotation(inRotation: inRotation, until: until, reason: reason), prefersPush: prefersPush, lenderId: lenderId, active: active,
                                version: version, createdAt: createdAt, updatedAt: updatedAt), hash))
        }
        return result
    }

    // MARK: Logins

    func recordLogin(user: User, at: Date) async throws {
        try await client.transaction(logger: logger) { connection in
            try await connection.query(
                "INSERT INTO logins (user_id, at) VALUES (\(user.id), \(at))", logger: logger)
            if let companyId = user.companyId {
                let event = try outbox.envelope(EventType.userLoggedIn, version: user.version, companyId: companyId, subjectId: user.id,
                                                data: UserLoggedIn(userId: user.id, companyId: companyId, at: at))
                try await outbox.publish(event, on: connection, logger: logger)
            }
        }
    }

    /// Creates or refreshes the platform admin named by the environment.
    func upsertPlatformAdmin(email: String, passwordHash: String, now: Date) async throws {
        try await client.query("""
            INSERT INTO users (id, company_id, role, first_name, last_name, email, time_zone, password_hash, in_rotation, created_at, updated_at)
            VALUES (\(UUID.random()), NULL, 'platform_admin', 'Platform', 'Admin', \(email), 'UTC', \(passwordHash), false, \(now), \(now))
            ON CONFLICT (lower(email)) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = 'platform_admin', updated_at = EXCLUDED.updated_at
            WHERE users.company_id IS NULL
            """, logger: logger)
    }
}
