import Foundation
import Hummingbird
import Models
import ServiceKit

extension Pond: ResponseEncodable {}

/// Ponds: shared queues of leads in an entity that any member may claim.
struct PondsController {
    let crm: CRMStore
    let contacts: ContactStore
    let writer: ContactWriter
    let access: ContactAccess
    let clock: any ServiceClock

    struct NewPond: Decodable {
        var entityId: UUID
        var name: String
    }

    struct Claim: Decodable {
        var contactId: UUID
    }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/ponds") { request, context -> JSONResponse<Pond> in
            let identity = try context.requireIdentity()
            try identity.require(.companyAdmin, .officeAdmin, .teamAdmin)
            let input = try await request.decodeJSON(as: NewPond.self, context: context)
            let companyId = try access.access.companyId(of: identity)
            guard try await access.directory.entity(input.entityId, companyId: companyId) != nil,
                  try await access.access.managedEntities(of: identity)?.contains(input.entityId) ?? true
            else { throw APIError.validation("entityId", "entityId is not an entity you manage") }
            let pond = Pond(id: UUID.random(), companyId: companyId, entityId: input.entityId, name: try DirectoryRules.name(input.name, field: "name"),
                            createdAt: clock.now)
            try await crm.createPond(pond)
            return JSONResponse(.created, pond)
        }
        group.get("/v1/ponds") { request, context -> Page<Pond> in
            let identity = try context.requireIdentity()
            let named = try request.uri.queryParameters["companyId"].map { text in
                guard let id = UUID(uuidString: String(text)) else { throw APIError.validation("companyId", "companyId must be a UUID") }
                return id
            }
            if identity.isService {
                // Routing checks that a rule's pond exists in the rule's company.
                guard let companyId = named else { throw APIError.validation("companyId", "services name the company") }
                return Page(items: try await crm.ponds(companyId: companyId), nextCursor: nil)
            }
            let companyId = try access.access.companyId(of: identity)
            if let named, named != companyId { throw APIError.validation("companyId", "companyId is not your company") }
            let ponds = try await crm.ponds(companyId: companyId)
            return Page(items: try await ponds.asyncFilter { try await isMember(identity, of: $0) }, nextCursor: nil)
        }
        group.get("/v1/ponds/{id}/contacts") { _, context -> Page<Contact> in
            let identity = try context.requireIdentity()
            let pond = try await memberPond(try context.pathID("id"), identity)
            var filter = ContactFilter(companyId: pond.companyId)
            filter.pondId = pond.id
            filter.limit = 200
            return Page(items: try await contacts.list(filter), nextCursor: nil)
        }
        group.post("/v1/ponds/{id}/claims") { request, context -> Contact in
            let identity = try context.requireIdentity()
            try identity.require(.agent, .teamAdmin, .officeAdmin, .companyAdmin)
            let pond = try await memberPond(try context.pathID("id"), identity)
            let claim = try await request.decodeJSON(as: Claim.self, context: context)
            guard let userId = identity.userId, let old = try await contacts.contact(claim.contactId, companyId: pond.companyId), old.pondId == pond.id else {
                throw APIError.validation("contactId", "the contact is not in this pond", code: "not_in_pond")
            }
            var contact = old
            contact.pondId = nil
            contact.assignedAgentId = userId
            // The version check makes the first of two simultaneous claims win; the other gets 409.
            return try await writer.write(old: old, new: contact, actor: try await access.actor(identity), reason: "claimed from pond \(pond.name)")
        }
    }

    private func isMember(_ identity: Identity, of pond: Pond) async throws -> Bool {
        if identity.role.isAdmin {
            return try await access.access.managedEntities(of: identity)?.contains(pond.entityId) ?? true
        }
        // Members of the pond's entity and of any entity below it.
        let subtree = try await access.directory.subtree(of: [pond.entityId], companyId: pond.companyId)
        return !subtree.isDisjoint(with: identity.entityIds)
    }

    private func memberPond(_ id: UUID, _ identity: Identity) async throws -> Pond {
        let companyId = try access.access.companyId(of: identity)
        guard let pond = try await crm.ponds(companyId: companyId).first(where: { $0.id == id }), try await isMember(identity, of: pond) else {
            throw APIError.notFound("pond \(id)")
        }
        return pond
    }
}

extension Array where Element: Sendable {
    func asyncFilter(_ keep: (Element) async throws -> Bool) async rethrows -> [Element] {
        var result: [Element] = []
        for element in self where try await keep(element) { result.append(element) }
        return result
    }
}
