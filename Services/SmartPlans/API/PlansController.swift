import Foundation
import Hummingbird
import Models
import PostgresNIO
import ServiceKit

extension Plan: ResponseEncodable {}

/// SP-1, SP-2, SP-4, SP-10 over HTTP: plans (personal, or a team's with a default agent per
/// role), their versions, enrollment by hand and in bulk, deactivation, figures, and the preview
/// of everything a plan would do for a contact.
struct PlansController {
    let store: PlanStore
    let engine: PlanEngine
    let clock: any ServiceClock

    var logger: Logger { store.logger }
    var client: PostgresClient { store.client }

    struct PlanInput: Decodable {
        var name: String
        var owner: Plan.Owner?
        var entityId: UUID?
        var roles: [String: UUID]?
        var durationDays: Int
        var steps: [PlanStep]
        var active: Bool?
        var triggers: PlanTriggers?
    }

    struct Figures: Codable, Sendable {
        var enrolled: Int
        var active: Int
        var finished: Int
        var messagesSent: Int
        var failed: Int
        var skipped: Int
    }

    struct PlanView: ResponseEncodable {
        var plan: Plan
        var figures: Figures
    }

    struct Plans: ResponseEncodable { var items: [Plan] }

    struct EnrollInput: Decodable { var contactIds: [UUID] }

    struct Activation: Decodable { var active: Bool }

    /// SP-10's removal in bulk: each contact's line.
    struct RemovalReport: ResponseEncodable {
        enum Outcome: String, Codable, Sendable {
            case removed
            case notEnrolled = "not_enrolled"
        }
        struct Item: Codable, Sendable {
            var contactId: UUID
            var outcome: Outcome
        }
        var items: [Item]
    }

    struct EnrollReport: ResponseEncodable {
        struct Item: Codable, Sendable {
            var contactId: UUID
            var outcome: PlanEngine.EnrollOutcome
        }
        var items: [Item]
    }

    struct EnrollmentView: Codable, Sendable {
        var contactId: UUID
        var state: String
        var stepIndex: Int
        var repetition: Int
        var enrolledAt: Date
        var nextAt: Date?
        var reason: String?
    }

    struct Enrollments: ResponseEncodable { var items: [EnrollmentView] }

    struct PreviewInput: Decodable {
        var contactId: UUID
        var start: Date?
    }

    struct PreviewItem: Codable, Sendable {
        var at: Date
        var step: Int
        var kind: PlanStep.Kind
        var subject: String?
        var body: String?
        var html: String?
        var title: String?
        var dueAt: Date?
    }

    struct Preview: ResponseEncodable { var items: [PreviewItem] }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/smartplans/plans") { request, context -> JSONResponse<Plan> in
            let input = try await request.decodeJSON(as: PlanInput.self, context: context)
            return JSONResponse(.created, try await create(input, identity: try context.requireIdentity()))
        }
        group.get("/v1/smartplans/plans") { _, context -> Plans in
            let identity = try context.requireIdentity()
            guard let companyId = identity.companyId else { throw APIError.forbidden }
            var visible: [Plan] = []
            for plan in try await store.plans(companyId: companyId) where try await canSee(plan, identity) { visible.append(plan) }
            return Plans(items: visible)
        }
        group.get("/v1/smartplans/plans/{id}") { _, context -> PlanView in
            let plan = try await visiblePlan(context)
            return PlanView(plan: plan, figures: try await figures(plan.id))
        }
        group.put("/v1/smartplans/plans/{id}") { request, context -> Plan in
            let identity = try context.requireIdentity()
            let id = try context.pathID("id")
            let input = try await request.decodeJSON(as: PlanInput.self, context: context)
            return try await client.transaction(logger: logger) { connection in
                guard var plan = try await store.plan(id, on: connection, forUpdate: true), try await canEdit(plan, identity) else { throw APIError.notFound("plan \(id)") }
                let steps = try await fillDesigns(Self.withIds(input.steps, keeping: Set(plan.steps.compactMap(\.id))), owner: plan.owner,
                                                  entityId: plan.entityId, identity: identity)
                try await checkTargets(steps, of: plan.id, identity: identity)
                try PlanRules.validate(name: input.name, durationDays: input.durationDays, steps: steps, owner: plan.owner, roles: input.roles ?? plan.roles)
                try input.triggers?.validate()
                plan.triggers = input.triggers?.isEmpty == false ? input.triggers : nil
                plan.name = input.name.trimmingCharacters(in: .whitespacesAndNewlines)
                plan.durationDays = input.durationDays
                plan.steps = steps
                plan.roles = input.roles ?? plan.roles
                plan.version += 1
                plan.updatedAt = clock.now
                try await store.insert(plan, on: connection)
                return plan
            }
        }
        do {
            group.put("/v1/smartplans/plans/{id}/activation") { request, context -> Plan in
                let identity = try context.requireIdentity()
                let id = try context.pathID("id")
                let active = try await request.decodeJSON(as: Activation.self, context: context).active
                return try await client.transaction(logger: logger) { connection in
                    guard var plan = try await store.plan(id, on: connection, forUpdate: true), try await canEdit(plan, identity) else { throw APIError.notFound("plan \(id)") }
                    guard plan.active != active else { return plan }
                    plan.active = active
                    plan.updatedAt = clock.now
                    try await store.insert(plan, on: connection)
                    if active {
                        // Every paused enrollment resumes where it was: its next step when it was due, or now if that has
                        // passed, and the rest of its plan moves with it (a run walks from the time it was due).
                        let now = clock.now
                        // Read whole before scheduling: a query on the connection while its rows still stream waits for them.
                        let resumed = try await connection.query("""
                            UPDATE enrollments SET state = 'active', seq = seq + 1, next_at = GREATEST(next_at, \(now))
                            WHERE plan_id = \(id) AND state IN ('paused', 'active')
                            RETURNING id, seq, next_at
                            """, logger: logger).collect().map { try $0.decode((UUID, Int, Date?).self) }
                        for (enrollment, seq, next) in resumed {
                            try await engine.schedule(enrollment, seq: seq, at: next ?? now, on: connection)
                        }
                    } else {
                        try await connection.query("UPDATE enrollments SET state = 'paused' WHERE plan_id = \(id) AND state = 'active'", logger: logger)
                    }
                    return plan
                }
            }
        }
        group.post("/v1/smartplans/plans/{id}/enrollments") { request, context -> EnrollReport in
            let identity = try context.requireIdentity()
            let plan = try await visiblePlan(context)
            let input = try await request.decodeJSON(as: EnrollInput.self, context: context)
            guard (1...10_000).contains(input.contactIds.count) else { throw APIError.validation("contactIds", "1 to 10,000 contacts a request") }
            let outcomes = try await client.transaction(logger: logger) { connection -> [UUID: PlanEngine.EnrollOutcome] in
                let visible = try await visibleContacts(input.contactIds, identity: identity, on: connection)
                var outcomes = try await engine.enroll(input.contactIds.filter { visible.contains($0) }, in: plan, on: connection)
                for id in input.contactIds where !visible.contains(id) { outcomes[id] = .notFound }
                return outcomes
            }
            var seen: Set<UUID> = []
            return EnrollReport(items: input.contactIds.filter { seen.insert($0).inserted }.map { .init(contactId: $0, outcome: outcomes[$0] ?? .notFound) })
        }
        group.delete("/v1/smartplans/plans/{id}/enrollments/{contactId}") { _, context -> Response in
            let plan = try await visiblePlan(context)
            let contactId = try context.pathID("contactId")
            guard try await remove([contactId], from: plan) == [contactId] else { throw APIError.notFound("enrollment of \(contactId)") }
            return Response(status: .noContent)
        }
        // SP-10: many contacts out of the plan at once (a list cleaned up, a campaign's audience
        // changed), in one statement, with a line per contact; nothing more is sent to them.
        group.post("/v1/smartplans/plans/{id}/enrollments/removals") { request, context -> RemovalReport in
            let plan = try await visiblePlan(context)
            let input = try await request.decodeJSON(as: EnrollInput.self, context: context)
            guard (1...10_000).contains(input.contactIds.count) else { throw APIError.validation("contactIds", "1 to 10,000 contacts a request") }
            let removed = try await remove(input.contactIds, from: plan)
            var seen: Set<UUID> = []
            return RemovalReport(items: input.contactIds.filter { seen.insert($0).inserted }.map {
                .init(contactId: $0, outcome: removed.contains($0) ? .removed : .notEnrolled)
            })
        }
        group.get("/v1/smartplans/plans/{id}/enrollments") { _, context -> Enrollments in
            let plan = try await visiblePlan(context)
            var items: [EnrollmentView] = []
            for try await (contact, state, step, repetition, enrolled, next, reason) in try await client.query("""
                SELECT contact_id, state, step_index, repetition, enrolled_at, next_at, reason FROM enrollments WHERE plan_id = \(plan.id)
                ORDER BY enrolled_at, contact_id LIMIT 5000
                """, logger: logger).decode((UUID, String, Int, Int, Date, Date?, String?).self) {
                items.append(EnrollmentView(contactId: contact, state: state, stepIndex: step, repetition: repetition, enrolledAt: enrolled, nextAt: next, reason: reason))
            }
            return Enrollments(items: items)
        }
        group.post("/v1/smartplans/plans/{id}/preview") { request, context -> Preview in
            let identity = try context.requireIdentity()
            let plan = try await visiblePlan(context)
            let input = try await request.decodeJSON(as: PreviewInput.self, context: context)
            let merge = TemplatePreviewController(client: client, logger: logger)
            let contactValues = try await merge.values(for: input.contactId, identity: identity)
            // SP-2: a step its role owns speaks as the role's agent, as when it runs.
            let agents = try await client.withConnection { try await merge.agents(Array((plan.roles ?? [:]).values), on: $0) }
            var items: [PreviewItem] = []
            var templates = PlanRunner.Templates()
            for (at, action) in PlanRunner.preview(plan.steps, start: input.start ?? clock.now, durationDays: plan.durationDays,
                                                   heldTextMinutes: PlanRunner.heldTextMinutes(input.contactId)) {
                let kind = plan.steps[action.step].kind
                let values = plan.values(forStep: action.step, contact: contactValues, agents: agents)
                func render(_ text: String) throws -> String { try templates.render(text, values) }
                switch action {
                case .email(let step, let subject, let body, let html):
                    let email = try PlanRunner.renderEmail(subject: subject, body: body, html: html, values: values, templates: &templates)
                    items.append(PreviewItem(at: at, step: step, kind: kind, subject: email.subject, body: email.body, html: email.html))
                case .text(let step, let body):
                    items.append(PreviewItem(at: at, step: step, kind: kind, body: try render(body)))
                case .task(let step, _, let title, let dueAt):
                    items.append(PreviewItem(at: at, step: step, kind: kind, title: try render(title), dueAt: dueAt))
                case .enroll(let step, let planId):
                    items.append(PreviewItem(at: at, step: step, kind: kind, body: planId.lowercasedString))
                }
            }
            return Preview(items: items)
        }
    }

    /// A new plan, personal or the team's (the caller manages the team), with new step ids.
    func create(_ input: PlanInput, identity: Identity) async throws -> Plan {
        guard let companyId = identity.companyId, let userId = identity.userId else { throw APIError.forbidden }
        let owner = input.owner ?? .personal
        if owner == .team {
            guard let entityId = input.entityId else { throw APIError.validation("entityId", "a team plan names its team (entityId)") }
            try await requireManages(entityId, identity: identity)
        }
        let steps = try await fillDesigns(Self.withIds(input.steps, keeping: []), owner: owner, entityId: input.entityId, identity: identity)
        try await checkTargets(steps, of: nil, identity: identity)
        try PlanRules.validate(name: input.name, durationDays: input.durationDays, steps: steps, owner: owner, roles: input.roles)
        try input.triggers?.validate()
        let now = clock.now
        let plan = Plan(id: UUID.random(), companyId: companyId, owner: owner, ownerUserId: owner == .personal ? userId : nil,
                        entityId: owner == .team ? input.entityId : nil, roles: input.roles, name: input.name.trimmingCharacters(in: .whitespacesAndNewlines),
                        durationDays: input.durationDays, active: input.active ?? true, version: 1, steps: steps,
                        triggers: input.triggers?.isEmpty == false ? input.triggers : nil, createdAt: now, updatedAt: now)
        try await client.transaction(logger: logger) { try await store.insert(plan, on: $0) }
        return plan
    }

    /// SP-10: takes the contacts out of the plan (those still active or paused in it); answers
    /// whom it took out. Their next runs find the enrollment removed and do nothing.
    func remove(_ contactIds: [UUID], from plan: Plan) async throws -> Set<UUID> {
        Set(try await client.query("""
            UPDATE enrollments SET state = 'removed', next_at = NULL, reason = 'removed by hand'
            WHERE plan_id = \(plan.id) AND contact_id = ANY(\(contactIds)) AND state IN ('active', 'paused') RETURNING contact_id
            """, logger: logger).collect().map { try $0.decode(UUID.self) })
    }

    /// An add_to_plan step names a plan of the company that the saver can see, never the plan
    /// itself (422). A cycle through other plans (A adds to B, B to A) is bounded instead: a
    /// contact is enrolled in a plan once, ever, so the plan it comes back to does nothing.
    func checkTargets(_ steps: [PlanStep], of planId: UUID?, identity: Identity) async throws {
        for (index, step) in steps.enumerated() where step.kind == .addToPlan {
            guard let target = step.planId else { continue }
            guard target != planId else { throw APIError.validation("steps[\(index)].planId", "a plan cannot add its contacts to itself") }
            guard let plan = try await client.withConnection({ try await store.plan(target, on: $0) }), try await canSee(plan, identity) else {
                throw APIError.validation("steps[\(index)].planId", "no plan \(target) you can use")
            }
        }
    }

    /// Steps keep their ids across versions; a step without one (or with an id the plan never
    /// had, on an edit) gets a new one.
    static func withIds(_ steps: [PlanStep], keeping known: Set<UUID>) -> [PlanStep] {
        var seen: Set<UUID> = []
        return steps.map { step in
            var step = step
            if let id = step.id, known.contains(id), seen.insert(id).inserted { return step }
            step.id = UUID.random()
            return step
        }
    }

    func visiblePlan(_ context: AppContext) async throws -> Plan {
        let identity = try context.requireIdentity()
        let id = try context.pathID("id")
        guard let plan = try await client.withConnection({ try await store.plan(id, on: $0) }), try await canSee(plan, identity) else {
            throw APIError.notFound("plan \(id)")
        }
        return plan
    }

    /// Company admins see every plan; other admins the team plans of what they manage; agents
    /// their own and their teams'; everyone their personal plans. Designs the same.
    private func canSee(_ plan: Plan, _ identity: Identity) async throws -> Bool {
        try await canSee(Ownership(plan), identity)
    }

    func canEdit(_ plan: Plan, _ identity: Identity) async throws -> Bool {
        try await canEdit(Ownership(plan), identity)
    }

    /// Who a plan or a design belongs to.
    struct Ownership {
        var companyId: UUID
        var owner: Plan.Owner
        var ownerUserId: UUID?
        var entityId: UUID?

        init(companyId: UUID, owner: Plan.Owner, ownerUserId: UUID?, entityId: UUID?) {
            (self.companyId, self.owner, self.ownerUserId, self.entityId) = (companyId, owner, ownerUserId, entityId)
        }

        init(_ plan: Plan) { self.init(companyId: plan.companyId, owner: plan.owner, ownerUserId: plan.ownerUserId, entityId: plan.entityId) }
    }

    func canSee(_ item: Ownership, _ identity: Identity) async throws -> Bool {
        guard item.companyId == identity.companyId else { return false }
        if identity.role == .companyAdmin || (item.owner == .personal && item.ownerUserId == identity.userId) { return true }
        guard item.owner == .team, let entityId = item.entityId else { return false }
        if let managed = try await client.withConnection({ try await DirectoryReplica.managedEntities(of: identity, on: $0, logger: logger) }) {
            return managed.contains(entityId)
        }
        return identity.entityIds.contains(entityId)
    }

    func canEdit(_ item: Ownership, _ identity: Identity) async throws -> Bool {
        guard item.companyId == identity.companyId else { return false }
        if identity.role == .companyAdmin || (item.owner == .personal && item.ownerUserId == identity.userId) { return true }
        guard item.owner == .team, let entityId = item.entityId, identity.role.isAdmin else { return false }
        return try await client.withConnection { try await DirectoryReplica.managedEntities(of: identity, on: $0, logger: logger) }?.contains(entityId) ?? false
    }

    func requireManages(_ entityId: UUID, identity: Identity) async throws {
        guard identity.role.isAdmin else { throw APIError.forbidden }
        let inCompany = try await client.query("SELECT 1 FROM directory_entities WHERE id = \(entityId) AND company_id = \(identity.companyId)", logger: logger)
            .collect().count == 1
        guard inCompany else { throw APIError.validation("entityId", "entityId is not an entity of your company") }
        if let managed = try await client.withConnection({ try await DirectoryReplica.managedEntities(of: identity, on: $0, logger: logger) }),
           !managed.contains(entityId) {
            throw APIError.forbidden
        }
    }

    /// The contacts the caller may put in a plan: an agent's own, an admin's scope's.
    private func visibleContacts(_ ids: [UUID], identity: Identity, on connection: PostgresConnection) async throws -> Set<UUID> {
        var found: Set<UUID> = []
        let managed = try await DirectoryReplica.managedEntities(of: identity, on: connection, logger: logger)
        for try await (id, owner, agent) in try await connection.query("""
            SELECT id, owner_entity_id, assigned_agent_id FROM contact_replica WHERE id = ANY(\(ids)) AND company_id = \(identity.companyId) AND NOT deleted
            """, logger: logger).decode((UUID, UUID, UUID?).self) {
            switch identity.role {
            case .companyAdmin: found.insert(id)
            case .officeAdmin, .teamAdmin: if managed?.contains(owner) ?? false { found.insert(id) }
            default: if agent != nil && agent == identity.userId { found.insert(id) }
            }
        }
        return found
    }

    private func figures(_ planId: UUID) async throws -> Figures {
        var figures = Figures(enrolled: 0, active: 0, finished: 0, messagesSent: 0, failed: 0, skipped: 0)
        for try await (enrolled, active, finished) in try await client.query("""
            SELECT count(*)::int, count(*) FILTER (WHERE state = 'active')::int, count(*) FILTER (WHERE state = 'finished')::int
            FROM enrollments WHERE plan_id = \(planId)
            """, logger: logger).decode((Int, Int, Int).self) {
            (figures.enrolled, figures.active, figures.finished) = (enrolled, active, finished)
        }
        for try await (sent, failed, skipped) in try await client.query("""
            SELECT count(*) FILTER (WHERE kind IN ('email', 'text') AND outcome = 'done')::int, count(*) FILTER (WHERE outcome = 'failed')::int,
                count(*) FILTER (WHERE outcome = 'skipped')::int
            FROM step_log WHERE plan_id = \(planId)
            """, logger: logger).decode((Int, Int, Int).self) {
            (figures.messagesSent, figures.failed, figures.skipped) = (sent, failed, skipped)
        }
        return figures
    }
}
