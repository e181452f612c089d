import Foundation
import Hummingbird
import Models
import PostgresNIO
import ServiceKit

/// SP-1, SP-8: the company's shared library of plans. Publishing copies a plan's steps (with
/// their role names, without the team's agents) and takes the plan's tag triggers off it, as the
/// library never carries triggers; a library plan is copied into a team or a personal account as
/// a new plan of its own.
struct LibraryController {
    let plans: PlansController

    var store: PlanStore { plans.store }
    var logger: Logger { plans.logger }

    struct LibraryPlan: Codable, Sendable, ResponseEncodable {
        var id: UUID
        var companyId: UUID
        var name: String
        var description: String?
        var durationDays: Int
        var steps: [PlanStep]
        /// The roles its steps name; a team copying it gives each a default agent.
        var roles: [String]
        var sourcePlanId: UUID
        var publishedBy: UUID
        var publishedAt: Date
    }

    struct Library: ResponseEncodable { var items: [LibraryPlan] }

    struct PublishInput: Decodable { var description: String? }

    struct CopyInput: Decodable {
        var name: String?
        var owner: Plan.Owner?
        var entityId: UUID?
        var roles: [String: UUID]?
        var active: Bool?
    }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/smartplans/plans/{id}/publish") { request, context -> JSONResponse<LibraryPlan> in
            let identity = try context.requireIdentity()
            let id = try context.pathID("id")
            guard let userId = identity.userId else { throw APIError.forbidden }
            let input = try await request.decodeJSON(as: PublishInput.self, context: context)
            if let description = input.description, description.count > 2_000 {
                throw APIError.validation("description", "a description is at most 2,000 characters")
            }
            return try await store.client.transaction(logger: logger) { connection in
                guard var plan = try await store.plan(id, on: connection, forUpdate: true), try await plans.canEdit(plan, identity) else {
                    throw APIError.notFound("plan \(id)")
                }
                let now = plans.clock.now
                let entry = LibraryPlan(id: UUID.random(), companyId: plan.companyId, name: plan.name, description: input.description,
                                        durationDays: plan.durationDays, steps: plan.steps.map { var step = $0; step.id = nil; return step },
                                        roles: Array(Set(plan.steps.compactMap(\.role))).sorted(), sourcePlanId: plan.id, publishedBy: userId,
                                        publishedAt: now)
                try await connection.query("""
                    INSERT INTO library (id, company_id, doc, published_at) VALUES (\(entry.id), \(entry.companyId), \(try JSONCoding.string(entry))::jsonb, \(now))
                    """, logger: logger)
                if plan.triggers != nil {
                    plan.triggers = nil
                    plan.updatedAt = now
                    try await store.save(plan, on: connection)
                }
                return JSONResponse(.created, entry)
            }
        }
        group.get("/v1/smartplans/library") { _, context -> Library in
            let identity = try context.requireIdentity()
            guard let companyId = identity.companyId else { throw APIError.forbidden }
            let items = try await store.documents(LibraryPlan.self, """
                SELECT doc::text FROM library WHERE company_id = \(companyId) ORDER BY published_at DESC, id LIMIT 1000
                """)
            return Library(items: items)
        }
        group.post("/v1/smartplans/library/{id}/copy") { request, context -> JSONResponse<Plan> in
            let identity = try context.requireIdentity()
            let entry = try await libraryPlan(context, identity)
            let input = try await request.decodeJSON(as: CopyInput.self, context: context)
            let owner = input.owner ?? .personal
            // A personal copy has no roles: every step is the agent's.
            let steps = owner == .team ? entry.steps : entry.steps.map { var step = $0; step.role = nil; return step }
            let plan = try await plans.create(.init(name: input.name ?? entry.name, owner: owner, entityId: input.entityId, roles: input.roles,
                                                    durationDays: entry.durationDays, steps: steps, active: input.active, triggers: nil),
                                              identity: identity)
            return JSONResponse(.created, plan)
        }
        group.delete("/v1/smartplans/library/{id}") { _, context -> Response in
            let identity = try context.requireIdentity()
            let entry = try await libraryPlan(context, identity)
            guard identity.role == .companyAdmin || entry.publishedBy == identity.userId else { throw APIError.forbidden }
            try await store.client.query("DELETE FROM library WHERE id = \(entry.id)", logger: logger)
            return Response(status: .noContent)
        }
    }

    private func libraryPlan(_ context: AppContext, _ identity: Identity) async throws -> LibraryPlan {
        let id = try context.pathID("id")
        if let entry = try await store.documents(LibraryPlan.self, "SELECT doc::text FROM library WHERE id = \(id) AND company_id = \(identity.companyId)").first {
            return entry
        }
        throw APIError.notFound("library plan \(id)")
    }
}
