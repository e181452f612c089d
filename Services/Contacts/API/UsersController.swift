import Foundation
import Hummingbird
import Models
import PostgresNIO
import ServiceKit

/// Agents, admins and lenders: roles, entities, rotation.
struct UsersController {
    let store: DirectoryStore
    let access: Access
    let hasher: PasswordHasher
    let clock: any ServiceClock

    struct NewUser: Decodable {
        var role: Role
        var firstName: String
        var lastName: String
        var email: EmailAddress
        var password: String?
        var mobilePhone: PhoneNumber?
        var timeZone: String?
        var entityIds: [UUID]
        var rotation: Rotation?
        var prefersPush: Bool?
        var lenderId: UUID?
    }

    struct RotationChange: Decodable {
        var inRotation: Bool
        /// Out of rotation until then (back in without anyone acting); absent: until put back.
        var until: Date?
        var reason: String?
    }

    /// A partial update; for `mobilePhone`, an explicit null clears the number.
    struct UserPatch: Decodable {
        var role: Role?
        var firstName: String?
        var lastName: String?
        var email: EmailAddress?
        var password: String?
        var mobilePhone: PhoneNumber?
        var clearsMobilePhone = false
        var timeZone: String?
        var entityIds: [UUID]?
        var rotation: Rotation?
        var prefersPush: Bool?
        /// Absent: unchanged; null: the agent has no lender of their own any more.
        var lenderId: UUID??
        var active: Bool?

        enum CodingKeys: String, CodingKey {
            case role, firstName, lastName, email, password, mobilePhone, timeZone, entityIds, rotation, prefersPush, lenderId, active
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            role = try container.decodeIfPresent(Role.self, forKey: .role)
            firstName = try container.decodeIfPresent(String.self, forKey: .firstName)
            lastName = try container.decodeIfPresent(String.self, forKey: .lastName)
            email = try container.decodeIfPresent(EmailAddress.self, forKey: .email)
            password = try container.decodeIfPresent(String.self, forKey: .password)
            if container.contains(.mobilePhone), try container.decodeNil(forKey: .mobilePhone) {
                clearsMobilePhone = true
            } else {
                mobilePhone = try container.decodeIfPresent(PhoneNumber.self, forKey: .mobilePhone)
            }
            timeZone = try container.decodeIfPresent(String.self, forKey: .timeZone)
            entityIds = try container.decodeIfPresent([UUID].self, forKey: .entityIds)
            rotation = try container.decodeIfPresent(Rotation.self, forKey: .rotation)
            prefersPush = try container.decodeIfPresent(Bool.self, forKey: .prefersPush)
            if container.contains(.lenderId) { lenderId = .some(try container.decodeIfPresent(UUID.self, forKey: .lenderId)) }
            active = try container.decodeIfPresent(Bool.self, forKey: .active)
        }

        /// Fields a user may change on their own record.
        var touchesOnlyOwnProfile: Bool {
            role == nil && entityIds == nil && rotation == nil && active == nil && email == nil && lenderId == nil
        }
    }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/users") { request, context -> JSONResponse<User> in
            let identity = try context.requireIdentity()
            try access.requireAdmin(identity)
            let input = try await request.decodeJSON(as: NewUser.self, context: context)
            guard DirectoryRules.mayGrant(input.role, caller: identity.role) else {
                throw APIError.validation("role", "you may not give the role \(input.role.rawValue)", code: "role_not_allowed")
            }
            let companyId = try access.companyId(of: identity)
            let entities = try await checkedEntities(input.entityIds, identity: identity, companyId: companyId, field: "entityIds")
            let now = clock.now
            var user = User(
                id: UUID.random(), companyId: companyId, role: input.role, entityIds: entities.map(\.id),
                firstName: try DirectoryRules.name(input.firstName, field: "firstName"),
                lastName: try DirectoryRules.name(input.lastName, field: "lastName"),
                email: input.email.value, mobilePhone: input.mobilePhone?.e164,
                timeZone: try input.timeZone.map { try DirectoryRules.timeZone($0) } ?? entities[0].timeZone,
                rotation: input.rotation ?? Rotation(inRotation: input.role == .agent), prefersPush: input.prefersPush ?? false,
                active: true, version: 1, createdAt: now, updatedAt: now)
            user.lenderId = try await checkedLender(input.lenderId, for: user)
            var hash: String?
            if let password = input.password { hash = try await hasher.hash(try DirectoryRules.password(password)) }
            do {
                try await store.createUser(user, passwordHash: hash)
            } catch let error as PSQLError where error.isUniqueViolation {
                throw APIError(.conflict, code: "email_taken", message: "a user with this e-mail already exists", field: "email")
            }
            return JSONResponse(.created, user)
        }
        group.get("/v1/users") { request, context -> Page<User> in
            let identity = try context.requireIdentity()
            try access.requireAdmin(identity)
            let paging = try Paging(request)
            var scope = try await access.managedEntities(of: identity)
            if let text = request.uri.queryParameters["entityId"] {
                guard let entityId = UUID(uuidString: String(text)) else { throw APIError.validation("entityId", "entityId must be a UUID") }
                if let current = scope, !current.contains(entityId) { throw APIError.notFound("entity \(entityId)") }
                scope = [entityId]
            }
            let users = try await store.users(companyId: try access.companyId(of: identity), inAny: scope, after: paging.after, limit: paging.limit + 1)
            let page = Array(users.prefix(paging.limit))
            return Page(items: page, nextCursor: users.count > paging.limit ? page.last.map { Paging.cursor(after: $0.id) } : nil)
        }
        group.get("/v1/users/{id}") { _, context -> User in
            let identity = try context.requireIdentity()
            return try await access.visibleUser(try context.pathID("id"), identity: identity).0
        }
        // AC-4, AC-5: accountability takes an agent out of rotation until a date, with the reason;
        // an admin of the agent's entities (or the service) puts them back at any time.
        group.put("/v1/users/{id}/rotation") { request, context -> User in
            let identity = try context.requireIdentity()
            let id = try context.pathID("id")
            var user: User
            if identity.isService {
                guard let found = try await store.user(id)?.0, found.companyId != nil else { throw APIError.notFound("user \(id)") }
                user = found
            } else {
                try access.requireAdmin(identity)
                user = try await access.visibleUser(id, identity: identity).0
            }
            let change = try await request.decodeJSON(as: RotationChange.self, context: context)
            guard [.agent, .teamAdmin, .officeAdmin, .companyAdmin].contains(user.role) else {
                throw APIError.validation("inRotation", "only users who take leads are in a rotation")
            }
            let now = clock.now
            if change.inRotation {
                guard change.until == nil else { throw APIError.validation("until", "until is for taking an agent out of rotation") }
            } else if let until = change.until, until <= now {
                throw APIError.validation("until", "until must be in the future")
            }
            let reason = try ContactRules.optionalText(change.reason, field: "reason", maxLength: 1_000)
            user.rotation = Rotation(inRotation: change.inRotation, until: change.inRotation ? nil : change.until, reason: reason)
            user.version += 1
            user.updatedAt = now
            guard try await store.updateUser(user, passwordHash: nil) else {
                throw APIError.conflict("the user changed meanwhile; try again", code: "version_conflict")
            }
            return user
        }
        group.patch("/v1/users/{id}") { request, context -> User in
            let identity = try context.requireIdentity()
            var (user, _) = try await access.visibleUser(try context.pathID("id"), identity: identity)
            let patch = try await request.decodeJSON(as: UserPatch.self, context: context)
            if !identity.role.isAdmin || identity.userId == user.id {
                // People change their own profile; roles, entities and rotation are an admin's to change.
                guard patch.touchesOnlyOwnProfile || (identity.role.isAdmin && patch.role == nil) else { throw APIError.forbidden }
            }
            if let role = patch.role {
                guard DirectoryRules.mayGrant(role, caller: identity.role), DirectoryRules.mayGrant(user.role, caller: identity.role) else {
                    throw APIError.validation("role", "you may not give the role \(role.rawValue)", code: "role_not_allowed")
                }
                user.role = role
            }
            if let firstName = patch.firstName { user.firstName = try DirectoryRules.name(firstName, field: "firstName") }
            if let lastName = patch.lastName { user.lastName = try DirectoryRules.name(lastName, field: "lastName") }
            if let email = patch.email { user.email = email.value }
            if let phone = patch.mobilePhone { user.mobilePhone = phone.e164 }
            if patch.clearsMobilePhone { user.mobilePhone = nil }
            if let timeZone = patch.timeZone { user.timeZone = try DirectoryRules.timeZone(timeZone) }
            if let ids = patch.entityIds {
                user.entityIds = try await checkedEntities(ids, identity: identity, companyId: try access.companyId(of: identity), field: "entityIds").map(\.id)
            }
            if let rotation = patch.rotation { user.rotation = rotation }
            if let prefersPush = patch.prefersPush { user.prefersPush = prefersPush }
            if let active = patch.active { user.active = active }
            if let lender = patch.lenderId {
                user.lenderId = try await checkedLender(lender, for: user)
            } else if user.role == .lender {
                user.lenderId = nil
            }
            var hash: String?
            if let password = patch.password { hash = try await hasher.hash(try DirectoryRules.password(password)) }
            user.version += 1
            user.updatedAt = clock.now
            do {
                guard try await store.updateUser(user, passwordHash: hash) else {
                    throw APIError.conflict("the user changed meanwhile; read it again", code: "version_conflict")
                }
            } catch let error as PSQLError where error.isUniqueViolation {
                throw APIError(.conflict, code: "email_taken", message: "a user with this e-mail already exists", field: "email")
            }
            return user
        }
    }

    /// RT-6: an agent's own lender is an active lender of the same company; a lender has none.
    private func checkedLender(_ lenderId: UUID?, for user: User) async throws -> UUID? {
        guard let lenderId else { return nil }
        guard user.role != .lender else { throw APIError.validation("lenderId", "a lender has no lender of their own") }
        guard let companyId = user.companyId else { throw APIError.validation("lenderId", "only a company's users have a lender") }
        guard let (lender, _) = try await store.user(lenderId), lender.companyId == companyId, lender.active, lender.role == .lender else {
            throw APIError.validation("lenderId", "lenderId names no active lender of this company")
        }
        return lenderId
    }

    /// Every id must be an entity of the company that the caller manages; at least one.
    private func checkedEntities(_ ids: [UUID], identity: Identity, companyId: UUID, field: String) async throws -> [Entity] {
        guard !ids.isEmpty else { throw APIError.validation(field, "\(field) must name at least one entity") }
        guard ids.count <= 50 else { throw APIError.validation(field, "\(field) may name at most 50 entities") }
        let managed = try await access.managedEntities(of: identity)
        let all = Dictionary(uniqueKeysWithValues: try await store.entities(companyId: companyId, within: nil).map { ($0.id, $0) })
        var result: [Entity] = []
        for (index, id) in ids.enumerated() where !result.contains(where: { $0.id == id }) {
            guard let entity = all[id], managed?.contains(id) ?? true else {
                throw APIError.validation("\(field)[\(index)]", "\(id) is not an entity you manage")
            }
            result.append(entity)
        }
        return result
    }
}
