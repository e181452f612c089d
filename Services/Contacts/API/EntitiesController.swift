import Foundation
import Hummingbird
import Models
import ServiceKit

/// Offices and teams, with their time zones and office hours.
struct EntitiesController {
    let store: DirectoryStore
    let access: Access
    let clock: any ServiceClock

    struct NewEntity: Decodable {
        var parentId: UUID
        var kind: EntityKind
        var name: String
        var timeZone: String?
        var officeHours: [OfficeHoursDay]?
        var postalAddress: String?
    }

    struct EntityPatch: Decodable {
        var name: String?
        var timeZone: String?
        var officeHours: [OfficeHoursDay]?
        var postalAddress: String?
    }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/entities") { request, context -> JSONResponse<Entity> in
            let identity = try context.requireIdentity()
            try access.requireAdmin(identity)
            let input = try await request.decodeJSON(as: NewEntity.self, context: context)
            let companyId = try access.companyId(of: identity)
            guard let parent = try await store.entity(input.parentId, companyId: companyId) else {
                throw APIError.validation("parentId", "parentId names no entity of this company")
            }
            if let managed = try await access.managedEntities(of: identity), !managed.contains(parent.id) {
                throw APIError.validation("parentId", "parentId is outside the entities you manage")
            }
            guard let expected = DirectoryRules.allowedParent(for: input.kind), parent.kind == expected else {
                throw APIError.validation("kind", "an office goes under the company and a team under an office")
            }
            let now = clock.now
            let entity = Entity(
                id: UUID.random(), companyId: companyId, parentId: parent.id, kind: input.kind,
                name: try DirectoryRules.name(input.name, field: "name"),
                timeZone: try input.timeZone.map { try DirectoryRules.timeZone($0) } ?? parent.timeZone,
                officeHours: try input.officeHours.map { try DirectoryRules.officeHours($0) } ?? parent.officeHours,
                postalAddress: try DirectoryRules.postalAddress(input.postalAddress), version: 1, createdAt: now, updatedAt: now)
            try await store.createEntity(entity)
            return JSONResponse(.created, entity)
        }
        group.get("/v1/entities") { _, context -> Page<Entity> in
            let identity = try context.requireIdentity()
            let companyId = try access.companyId(of: identity)
            let scope = identity.role.isAdmin ? try await access.managedEntities(of: identity) : identity.entityIds
            return Page(items: try await store.entities(companyId: companyId, within: scope), nextCursor: nil)
        }
        group.get("/v1/entities/{id}") { _, context -> Entity in
            let identity = try context.requireIdentity()
            return try await visibleEntity(try context.pathID("id"), identity: identity)
        }
        group.patch("/v1/entities/{id}") { request, context -> Entity in
            let identity = try context.requireIdentity()
            try access.requireAdmin(identity)
            var entity = try await visibleEntity(try context.pathID("id"), identity: identity)
            let patch = try await request.decodeJSON(as: EntityPatch.self, context: context)
            if let name = patch.name { entity.name = try DirectoryRules.name(name, field: "name") }
            if let timeZone = patch.timeZone { entity.timeZone = try DirectoryRules.timeZone(timeZone) }
            if let hours = patch.officeHours { entity.officeHours = try DirectoryRules.officeHours(hours) }
            if let address = patch.postalAddress { entity.postalAddress = try DirectoryRules.postalAddress(address) }
            entity.version += 1
            entity.updatedAt = clock.now
            guard try await store.updateEntity(entity) else {
                throw APIError.conflict("the entity changed meanwhile; read it again", code: "version_conflict")
            }
            return entity
        }
    }

    private func visibleEntity(_ id: UUID, identity: Identity) async throws -> Entity {
        let companyId = try access.companyId(of: identity)
        guard let entity = try await store.entity(id, companyId: companyId) else { throw APIError.notFound("entity \(id)") }
        let scope = identity.role.isAdmin ? try await access.managedEntities(of: identity) : identity.entityIds
        if let scope, !scope.contains(id) { throw APIError.notFound("entity \(id)") }
        return entity
    }
}
