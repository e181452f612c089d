import Foundation
import Hummingbird
import Models
import PostgresNIO
import ServiceKit

/// SP-1: saved e-mail designs. A team's designs are its design library (a team plan takes its
/// designs from there, never from a member's personal account); an agent's are their own. An
/// e-mail step that names a design gets a copy of its HTML when the plan is saved, edited in the
/// plan from then on, so changing a design never changes what a running plan sends.
struct DesignsController {
    let plans: PlansController

    var store: PlanStore { plans.store }
    var logger: Logger { plans.logger }

    struct Design: Codable, Sendable, ResponseEncodable {
        var id: UUID
        var companyId: UUID
        var owner: Plan.Owner
        var ownerUserId: UUID?
        var entityId: UUID?
        var name: String
        var subject: String?
        var html: String
        var createdAt: Date
        var updatedAt: Date

        var ownership: PlansController.Ownership { .init(companyId: companyId, owner: owner, ownerUserId: ownerUserId, entityId: entityId) }
    }

    struct DesignInput: Decodable {
        var name: String
        var owner: Plan.Owner?
        var entityId: UUID?
        var subject: String?
        var html: String
    }

    struct Designs: ResponseEncodable { var items: [Design] }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/smartplans/designs") { request, context -> JSONResponse<Design> in
            let identity = try context.requireIdentity()
            guard let companyId = identity.companyId, let userId = identity.userId else { throw APIError.forbidden }
            let input = try await request.decodeJSON(as: DesignInput.self, context: context)
            let owner = input.owner ?? .personal
            if owner == .team {
                guard let entityId = input.entityId else { throw APIError.validation("entityId", "a team design names its team (entityId)") }
                try await plans.requireManages(entityId, identity: identity)
            }
            try Self.validate(input)
            let now = plans.clock.now
            let design = Design(id: UUID.random(), companyId: companyId, owner: owner, ownerUserId: owner == .personal ? userId : nil,
                                entityId: owner == .team ? input.entityId : nil, name: input.name.trimmedWhitespace(), subject: input.subject,
                                html: input.html, createdAt: now, updatedAt: now)
            try await save(design)
            return JSONResponse(.created, design)
        }
        group.get("/v1/smartplans/designs") { _, context -> Designs in
            let identity = try context.requireIdentity()
            guard let companyId = identity.companyId else { throw APIError.forbidden }
            var visible: [Design] = []
            for design in try await store.documents(Design.self, "SELECT doc::text FROM designs WHERE company_id = \(companyId) ORDER BY updated_at DESC, id LIMIT 1000")
            where try await plans.canSee(design.ownership, identity) {
                visible.append(design)
            }
            return Designs(items: visible)
        }
        group.get("/v1/smartplans/designs/{id}") { _, context -> Design in
            try await visibleDesign(try context.pathID("id"), try context.requireIdentity())
        }
        group.put("/v1/smartplans/designs/{id}") { request, context -> Design in
            let identity = try context.requireIdentity()
            var design = try await visibleDesign(try context.pathID("id"), identity)
            guard try await plans.canEdit(design.ownership, identity) else { throw APIError.forbidden }
            let input = try await request.decodeJSON(as: DesignInput.self, context: context)
            try Self.validate(input)
            (design.name, design.subject, design.html, design.updatedAt) = (input.name.trimmedWhitespace(), input.subject, input.html, plans.clock.now)
            try await save(design)
            return design
        }
        group.delete("/v1/smartplans/designs/{id}") { _, context -> Response in
            let identity = try context.requireIdentity()
            let design = try await visibleDesign(try context.pathID("id"), identity)
            guard try await plans.canEdit(design.ownership, identity) else { throw APIError.forbidden }
            try await store.client.query("DELETE FROM designs WHERE id = \(design.id)", logger: logger)
            return Response(status: .noContent)
        }
    }

    static func validate(_ input: DesignInput) throws {
        guard (1...100).contains(input.name.trimmedWhitespace().count) else { throw APIError.validation("name", "name is 1 to 100 characters") }
        if let subject = input.subject {
            guard (1...200).contains(subject.trimmedWhitespace().count), !subject.contains(where: \.isNewline) else {
                throw APIError.validation("subject", "a subject is 1 to 200 characters on one line")
            }
            _ = try TemplatePreviewController.parse(subject, field: "subject")
        }
        guard (1...500_000).contains(input.html.trimmedWhitespace().count) else { throw APIError.validation("html", "html is 1 to 500,000 characters") }
        _ = try TemplatePreviewController.parse(input.html, field: "html")
    }

    private func save(_ design: Design) async throws {
        try await store.client.query("""
            INSERT INTO designs (id, company_id, doc, updated_at) VALUES (\(design.id), \(design.companyId), \(try JSONCoding.string(design))::jsonb, \(design.updatedAt))
            ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at
            """, logger: logger)
    }

    private func visibleDesign(_ id: UUID, _ identity: Identity) async throws -> Design {
        if let design = try await plans.design(id, companyId: identity.companyId), try await plans.canSee(design.ownership, identity) { return design }
        throw APIError.notFound("design \(id)")
    }
}

extension PlansController {
    func design(_ id: UUID, companyId: UUID?) async throws -> DesignsController.Design? {
        try await store.documents(DesignsController.Design.self, "SELECT doc::text FROM designs WHERE id = \(id) AND company_id = \(companyId)").first
    }

    /// A plan's e-mail steps that name a design and carry no HTML yet get the design's HTML (and
    /// its subject when the step has none). A team plan takes only its team's designs; a personal
    /// plan its owner's and those of the teams the saver reaches.
    func fillDesigns(_ steps: [PlanStep], owner: Plan.Owner, entityId: UUID?, identity: Identity) async throws -> [PlanStep] {
        var filled = steps
        for (index, step) in steps.enumerated() where step.kind == .email && step.html == nil {
            guard let designId = step.designId else { continue }
            guard let design = try await design(designId, companyId: identity.companyId), try await canSee(design.ownership, identity),
                  owner == .personal || (design.owner == .team && design.entityId == entityId) else {
                throw APIError.validation("steps[\(index)].designId", owner == .team ? "the team has no design \(designId) in its library"
                                          : "no design \(designId) you can use")
            }
            filled[index].html = design.html
            if step.subject == nil { filled[index].subject = design.subject }
        }
        return filled
    }
}
