import Foundation
import Hummingbird
import Models
import ServiceKit

extension TimelineEntry: ResponseEncodable {}
extension Communication: ResponseEncodable {}
extension ContactTask: ResponseEncodable {}

/// A contact's timeline (ST-9), notes, logged communications and tasks (ST-10).
struct ActivityController {
    let contacts: ContactStore
    let crm: CRMStore
    let outbox: Outbox
    let access: ContactAccess
    let clock: any ServiceClock

    struct Note: Decodable {
        var body: String
    }

    struct ServiceEntry: Decodable {
        var id: UUID?
        var kind: String
        var summary: String
        var data: JSONValue?
        var at: Date?
        /// How the timeline names the service ("SmartPlans"); its name by default.
        var actorName: String?
    }

    struct ServiceEntryBatch: Decodable {
        struct Item: Decodable {
            var contactId: UUID
            var entry: ServiceEntry

            init(from decoder: any Decoder) throws {
                contactId = try decoder.container(keyedBy: Key.self).decode(UUID.self, forKey: .contactId)
                entry = try ServiceEntry(from: decoder)
            }

            enum Key: String, CodingKey { case contactId }
        }
        var entries: [Item]
    }

    struct ServiceEntryReport: ResponseEncodable {
        struct Item: ResponseEncodable {
            var id: UUID
            var outcome: String
        }
        var items: [Item]
    }

    /// A service's entry, checked: its kind, summary and data named by `field` (`entries[2].summary`).
    static func serviceEntry(_ input: ServiceEntry, contactId: UUID, identity: Identity, now: Date, field: String) throws -> TimelineEntry {
        guard input.kind.count <= 40, input.kind.first?.isLetter == true,
              input.kind.allSatisfy({ $0.isASCII && ($0.isLowercase || $0 == "_" || $0 == ".") }) else {
            throw APIError.validation("\(field)kind", "kind is lower-case letters, '_' and '.', at most 40 (behavior, plan_step …)")
        }
        guard let summary = try ContactRules.optionalText(input.summary, field: "\(field)summary", maxLength: 1_000) else {
            throw APIError.validation("\(field)summary", "summary must not be empty")
        }
        if let data = input.data {
            guard case .object = data else { throw APIError.validation("\(field)data", "data is a JSON object") }
            guard try JSONCoding.encoder.encode(data).count <= 16_384 else { throw APIError.validation("\(field)data", "data is at most 16 KiB") }
        }
        if let at = input.at, at > now.addingTimeInterval(300) { throw APIError.validation("\(field)at", "an entry cannot be in the future") }
        return TimelineEntry(id: input.id ?? UUID.random(), contactId: contactId, kind: input.kind, at: input.at ?? now,
                             actor: Actor(kind: .service, id: identity.subject, name: input.actorName ?? identity.subject),
                             summary: summary, data: input.data ?? .object([:]))
    }

    struct NewCommunication: Decodable {
        var channel: CommunicationChannel
        var direction: CommunicationDirection?
        var outcome: CallOutcome?
        var subject: String?
        var body: String?
        var at: Date?
        /// Services only: the id (the same twice logs once) and the user who made the call.
        var id: UUID?
        var userId: UUID?
    }

    struct NewTask: Decodable {
        var kind: ContactTask.Kind
        var title: String
        var description: String?
        var links: [String]?
        var priority: ContactTask.Priority?
        var dueAt: Date?
        var assigneeId: UUID?
        /// A service's own id for the task, so that its retries make it once.
        var id: UUID?
    }

    struct TaskPatch: Decodable {
        var title: String?
        var description: String?
        var links: [String]?
        var priority: ContactTask.Priority?
        var dueAt: Date?
        var assigneeId: UUID?
    }

    struct Completion: Decodable {
        var outcome: CallOutcome?
        var note: String?
    }

    func register(on group: RouterGroup<AppContext>) {
        group.get("/v1/contacts/{id}/timeline") { request, context -> Page<TimelineEntry> in
            let contact = try await access.visible(try context.pathID("id"), try context.requireIdentity())
            let query = request.uri.queryParameters
            var limit = 50
            if let text = query["limit"] {
                guard let value = Int(String(text)), (1...200).contains(value) else { throw APIError.validation("limit", "limit must be from 1 to 200") }
                limit = value
            }
            var before: (Date, Int64)?
            if let text = query["cursor"] {
                let parts = String(text).split(separator: "_")
                guard parts.count == 2, let millis = Int64(parts[0]), let seq = Int64(parts[1]) else {
                    throw APIError.validation("cursor", "cursor is not one this service gave out")
                }
                before = (Date(timeIntervalSince1970: Double(millis) / 1000), seq)
            }
            let entries = try await contacts.timeline(contactId: contact.id, before: before, limit: limit + 1)
            let page = Array(entries.prefix(limit))
            let next = entries.count > limit ? page.last.map { "\(Int64(($0.0.at.timeIntervalSince1970 * 1000).rounded(.down)))_\($0.1)" } : nil
            return Page(items: page.map(\.0), nextCursor: next)
        }

        group.post("/v1/contacts/{id}/notes") { request, context -> JSONResponse<TimelineEntry> in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            let contact = try await access.visible(try context.pathID("id"), identity)
            let note = try await request.decodeJSON(as: Note.self, context: context)
            guard let body = try ContactRules.optionalText(note.body, field: "body", maxLength: 10_000) else {
                throw APIError.validation("body", "body must not be empty")
            }
            let entry = TimelineEntry(contactId: contact.id, kind: "note", at: clock.now, actor: try await access.actor(identity),
                                      summary: body, data: .object(["body": .string(body)]))
            try await contacts.addTimeline(entry, companyId: contact.companyId, events: [])
            return JSONResponse(.created, entry)
        }

        // Another service's entry on a contact's timeline (a behavior, a plan step, "the system
        // tried to reach the agent"): services only, under their own name. The entry's id may be
        // the service's own, so a retry writes nothing twice; the same id with a higher
        // `data.revision` replaces the summary and data (a step that moved on).
        group.post("/v1/contacts/{id}/timeline") { request, context -> JSONResponse<TimelineEntry> in
            let identity = try context.requireIdentity()
            guard identity.isService else { throw APIError.forbidden }
            let contact = try await access.visible(try context.pathID("id"), identity)
            let input = try await request.decodeJSON(as: ServiceEntry.self, context: context)
            let entry = try Self.serviceEntry(input, contactId: contact.id, identity: identity, now: clock.now, field: "")
            let written = try await contacts.writeServiceEntry(entry, companyId: contact.companyId)
            return JSONResponse(written ? .created : .ok, entry)
        }
        // The same for many contacts in one request (a batch of behaviors that fired): each entry
        // written once by its id; an entry of a contact that is gone is reported, not written.
        group.post("/v1/timeline/batch") { request, context -> ServiceEntryReport in
            let identity = try context.requireIdentity()
            guard identity.isService else { throw APIError.forbidden }
            let input = try await request.decodeJSON(as: ServiceEntryBatch.self, context: context)
            guard (1...500).contains(input.entries.count) else { throw APIError.validation("entries", "send 1 to 500 entries") }
            let now = clock.now
            let entries = try input.entries.enumerated().map { index, item in
                try Self.serviceEntry(item.entry, contactId: item.contactId, identity: identity, now: now, field: "entries[\(index)].")
            }
            let companies = try await contacts.companies(of: Array(Set(entries.map(\.contactId))))
            let written = try await contacts.writeServiceEntries(entries.compactMap { entry in companies[entry.contactId].map { (entry, $0) } })
            return ServiceEntryReport(items: entries.map { entry in
                .init(id: entry.id, outcome: companies[entry.contactId] == nil ? "not_found" : written.contains(entry.id) ? "written" : "unchanged")
            })
        }

        group.post("/v1/contacts/{id}/communications") { request, context -> JSONResponse<Communication> in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            let contact = try await access.visible(try context.pathID("id"), identity)
            let input = try await request.decodeJSON(as: NewCommunication.self, context: context)
            if input.channel == .call, input.outcome == nil {
                throw APIError.validation("outcome", "a logged call needs its outcome", code: "missing_field")
            }
            if input.channel != .call, input.outcome != nil {
                throw APIError.validation("outcome", "only calls have an outcome")
            }
            let now = clock.now
            if let at = input.at, at > now.addingTimeInterval(300) {
                throw APIError.validation("at", "a communication cannot be logged in the future")
            }
            if !identity.isService {
                if input.id != nil { throw APIError.validation("id", "only a service names a communication's id") }
                if input.userId != nil { throw APIError.validation("userId", "a user logs their own communications") }
            }
            if let userId = input.userId { _ = try await access.assignableAgent(userId, companyId: contact.companyId, field: "userId") }
            let communication = Communication(
                id: input.id ?? UUID.random(), contactId: contact.id, companyId: contact.companyId, channel: input.channel,
                direction: input.direction ?? .outbound, outcome: input.outcome,
                subject: try ContactRules.optionalText(input.subject, field: "subject", maxLength: 300),
                body: try ContactRules.optionalText(input.body, field: "body", maxLength: 10_000), userId: input.userId ?? identity.userId,
                at: input.at ?? now)
            let logged = try await log(communication, contact: contact, actor: try await access.actor(identity))
            return JSONResponse(logged ? .created : .ok, communication)
        }

        group.get("/v1/contacts/{id}/tasks") { _, context -> Page<ContactTask> in
            let contact = try await access.visible(try context.pathID("id"), try context.requireIdentity())
            return Page(items: try await crm.tasks(contactId: contact.id), nextCursor: nil)
        }

        group.post("/v1/contacts/{id}/tasks") { request, context -> JSONResponse<ContactTask> in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            let contact = try await access.visible(try context.pathID("id"), identity)
            let input = try await request.decodeJSON(as: NewTask.self, context: context)
            var agents: [UUID: Bool] = [:]
            let made = try await task(input, contact: contact, identity: identity, actor: try await access.actor(identity), agents: &agents)
            let answered = try await create([made])
            return JSONResponse(answered.created.contains(made.task.id) ? .created : .ok, answered.tasks[0])
        }

        // Many contacts' tasks at once, all or none (SmartPlans makes a claim's call tasks so).
        group.post("/v1/tasks/batch") { request, context -> TaskBatch in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            let input = try await request.decodeJSON(as: NewTasks.self, context: context)
            guard (1...Self.taskBatchLimit).contains(input.tasks.count) else {
                throw APIError.validation("tasks", "send 1 to \(Self.taskBatchLimit) tasks")
            }
            var ids = Set<UUID>()
            for (index, item) in input.tasks.enumerated() {
                if let id = item.task.id, !ids.insert(id).inserted { throw APIError.validation("tasks[\(index)].id", "each task of a batch has its own id") }
            }
            // A service's contacts in one read; a person's each through their scope.
            var found: [UUID: Contact] = [:]
            if identity.isService {
                found = try await contacts.client.withConnection { try await contacts.contacts(input.tasks.map(\.contactId), on: $0) }
                if let company = identity.companyId { found = found.filter { $0.value.companyId == company } }
            }
            let actor = try await access.actor(identity)
            var agents: [UUID: Bool] = [:]
            var made: [Made] = []
            for (index, item) in input.tasks.enumerated() {
                try await APIError.naming("tasks[\(index)]") {
                    let contact: Contact
                    if let known = found[item.contactId] {
                        contact = known
                    } else if identity.isService {
                        throw APIError.notFound("contact \(item.contactId)")
                    } else {
                        contact = try await access.visible(item.contactId, identity)
                    }
                    made.append(try await task(item.task, contact: contact, identity: identity, actor: actor, agents: &agents))
                }
            }
            return TaskBatch(items: try await create(made).tasks)
        }

        group.patch("/v1/tasks/{id}") { request, context -> ContactTask in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            var (task, _) = try await visibleTask(try context.pathID("id"), identity)
            let patch = try await request.decodeJSON(as: TaskPatch.self, context: context)
            if let title = patch.title { task.title = try DirectoryRules.name(title, field: "title", maxLength: 200) }
            if let description = patch.description { task.description = try ContactRules.optionalText(description, field: "description", maxLength: 5_000) }
            if let links = patch.links { task.links = try self.links(links) }
            if let priority = patch.priority { task.priority = priority }
            if let due = patch.dueAt { task.dueAt = due }
            if let assignee = patch.assigneeId {
                _ = try await access.assignableAgent(assignee, companyId: task.companyId, field: "assigneeId")
                task.assigneeId = assignee
            }
            task.version += 1
            task.updatedAt = clock.now
            guard try await crm.updateTask(task, timeline: [], events: [try taskEvent(.updated, task, actor: try await access.actor(identity))]) else {
                throw APIError.conflict("the task changed meanwhile; read it again", code: "version_conflict")
            }
            return task
        }

        group.post("/v1/tasks/{id}/completion") { request, context -> ContactTask in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            var (task, contact) = try await visibleTask(try context.pathID("id"), identity)
            guard task.completedAt == nil else { throw APIError.conflict("the task is already completed", code: "already_completed") }
            let completion = try await request.decodeJSON(as: Completion.self, context: context)
            if task.kind != .call, completion.outcome != nil { throw APIError.validation("outcome", "only call tasks have an outcome") }
            let now = clock.now
            let actor = try await access.actor(identity)
            task.completedAt = now
            task.callOutcome = task.kind == .call ? (completion.outcome ?? .contacted) : nil
            task.version += 1
            task.updatedAt = now
            var timeline = [TimelineEntry(contactId: task.contactId, kind: "task_completed", at: now, actor: actor,
                                          summary: "Completed: \(task.title)", data: .object(["taskId": .string(task.id.lowercasedString)]))]
            var events: [OutgoingEvent] = [try taskEvent(.completed, task, actor: actor)]
            if task.kind == .call, let outcome = task.callOutcome {
                // ST-10: completing a call task logs the call.
                let call = Communication(id: UUID.random(), contactId: contact.id, companyId: contact.companyId, channel: .call, direction: .outbound,
                                         outcome: outcome, subject: task.title,
                                         body: try ContactRules.optionalText(completion.note, field: "note", maxLength: 10_000),
                                         userId: identity.userId, at: now)
                timeline.append(communicationEntry(call, actor: actor))
                events.append(try outbox.envelope(EventType.communicationLogged, version: contact.version, companyId: contact.companyId,
                                                  subjectId: contact.id, data: CommunicationLogged(communication: call, contact: contact, actor: actor)))
            }
            guard try await crm.updateTask(task, timeline: timeline, events: events) else {
                throw APIError.conflict("the task changed meanwhile; read it again", code: "version_conflict")
            }
            return task
        }
    }

    /// `task.changed` (AC-4, AC-7 count tasks due and completed per agent).
    func taskEvent(_ change: TaskChanged.Change, _ task: ContactTask, actor: Actor) throws -> OutgoingEvent {
        try outbox.envelope(EventType.taskChanged, version: task.version, companyId: task.companyId, subjectId: task.id,
                            data: TaskChanged(change: change, task: task, actor: actor))
    }

    /// Records a communication on the timeline and publishes it (BA-10, AC-3, AC-6 react to it).
    /// Its timeline entry has the communication's id: logged once, the event published with it.
    /// False when that id was logged before.
    @discardableResult
    func log(_ communication: Communication, contact: Contact, actor: Actor) async throws -> Bool {
        let event = try outbox.envelope(EventType.communicationLogged, version: contact.version, companyId: contact.companyId, subjectId: contact.id,
                                        data: CommunicationLogged(communication: communication, contact: contact, actor: actor))
        return try await contacts.addTimelineOnce(communicationEntry(communication, actor: actor), companyId: contact.companyId, events: [event])
    }

    func communicationEntry(_ item: Communication, actor: Actor) -> TimelineEntry {
        var summary = "\(item.direction == .inbound ? "Inbound" : "Outbound") \(item.channel.rawValue)"
        if let outcome = item.outcome { summary += ": \(ContactRules.words(outcome.rawValue))" }
        if let subject = item.subject { summary += " — \(subject)" }
        return TimelineEntry(id: item.id, contactId: item.contactId, kind: "communication", at: item.at, actor: actor, summary: summary,
                             data: .object(["communicationId": .string(item.id.lowercasedString), "channel": .string(item.channel.rawValue),
                                            "direction": .string(item.direction.rawValue), "outcome": item.outcome.map { .string($0.rawValue) } ?? .null,
                                            "body": item.body.map(JSONValue.string) ?? .null]))
    }

    static let taskBatchLimit = 100

    struct NewTasks: Decodable {
        struct Item: Decodable {
            var contactId: UUID
            var task: NewTask

            enum Keys: String, CodingKey { case contactId }

            init(from decoder: any Decoder) throws {
                contactId = try decoder.container(keyedBy: Keys.self).decode(UUID.self, forKey: .contactId)
                task = try NewTask(from: decoder)
            }
        }
        var tasks: [Item]
    }

    struct TaskBatch: ResponseEncodable {
        var items: [ContactTask]
    }

    typealias Made = (task: ContactTask, entry: TimelineEntry, event: OutgoingEvent)

    /// A new task of `contact` as asked, validated, with its timeline entry and event.
    /// `agents` remembers the assignees already found assignable.
    func task(_ input: NewTask, contact: Contact, identity: Identity, actor: Actor, agents: inout [UUID: Bool]) async throws -> Made {
        if input.id != nil, !identity.isService { throw APIError.validation("id", "only a service chooses a task's id") }
        let assignee = input.assigneeId ?? contact.assignedAgentId ?? identity.userId
        if let assignee, agents[assignee] == nil {
            _ = try await access.assignableAgent(assignee, companyId: contact.companyId, field: "assigneeId")
            agents[assignee] = true
        }
        let now = clock.now
        let task = ContactTask(
            id: input.id ?? UUID.random(), contactId: contact.id, companyId: contact.companyId, kind: input.kind,
            title: try DirectoryRules.name(input.title, field: "title", maxLength: 200),
            description: try ContactRules.optionalText(input.description, field: "description", maxLength: 5_000),
            links: try links(input.links ?? []), priority: input.priority ?? .none, dueAt: input.dueAt, assigneeId: assignee,
            completedAt: nil, callOutcome: nil, version: 1, createdAt: now, updatedAt: now)
        let entry = TimelineEntry(contactId: contact.id, kind: "task", at: now, actor: actor,
                                  summary: "\(task.kind == .task ? "Task" : task.kind == .call ? "Call task" : "Text task") added: \(task.title)",
                                  data: .object(["taskId": .string(task.id.lowercasedString)]))
        return (task, entry, try taskEvent(.created, task, actor: actor))
    }

    /// Stores the tasks in one transaction; a task whose id was made before (a service's retry)
    /// answers as it was made, nothing more on the timeline; an id another contact's task has is 409.
    func create(_ made: [Made]) async throws -> (tasks: [ContactTask], created: Set<UUID>) {
        let created = try await crm.createTasks(made)
        var tasks: [ContactTask] = []
        for (index, item) in made.enumerated() {
            if created.contains(item.task.id) {
                tasks.append(item.task)
            } else if let earlier = try await crm.task(item.task.id, companyId: item.task.companyId), earlier.contactId == item.task.contactId {
                tasks.append(earlier)
            } else {
                throw APIError(.conflict, code: "task_id_taken", message: "another contact's task has this id", field: made.count == 1 ? "id" : "tasks[\(index)].id")
            }
        }
        return (tasks, created)
    }

    private func visibleTask(_ id: UUID, _ identity: Identity) async throws -> (ContactTask, Contact) {
        let companyId = try access.access.companyId(of: identity)
        guard let task = try await crm.task(id, companyId: companyId) else { throw APIError.notFound("task \(id)") }
        do {
            return (task, try await access.visible(task.contactId, identity))
        } catch let error as APIError where error.status == .notFound {
            // An agent may see a task assigned to them on a contact they do not hold.
            guard task.assigneeId == identity.userId, let contact = try await contacts.contact(task.contactId, companyId: companyId) else {
                throw APIError.notFound("task \(id)")
            }
            return (task, contact)
        }
    }

    private func links(_ values: [String]) throws -> [String] {
        guard values.count <= 20 else { throw APIError.validation("links", "at most 20 links") }
        return try values.enumerated().map { index, value in
            guard let url = URL(string: value), ["http", "https"].contains(url.scheme ?? ""), url.host != nil, value.count <= 2000 else {
                throw APIError.validation("links[\(index)]", "links must be http(s) URLs")
            }
            return value
        }
    }
}
