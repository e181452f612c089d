import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// SP-3 … SP-7, SP-10, SP-11: enrolls contacts and runs each enrollment's steps as jobs on the
/// service clock, one job per enrollment and run (keyed by the run's number, and checked against
/// it under the enrollment's row lock), so a step happens once whatever redelivers or restarts.
struct PlanEngine: Sendable {
    let store: PlanStore
    let jobs: JobQueue
    let peers: PeerClient
    let clock: any ServiceClock
    let logger: Logger

    static let advanceJob = "smartplans.advance"

    struct AdvanceJob: Codable, Sendable {
        var enrollmentId: UUID
        var seq: Int
    }

    enum EnrollmentState: String, WireEnum {
        case active, paused, finished, removed, stopped
    }

    enum EnrollOutcome: String, Codable, Sendable {
        case enrolled
        case alreadyEnrolled = "already_enrolled"
        case notFound = "not_found"
        case archived
    }

    /// SP-8, SP-9: contact events (new, tagged, status changed, imported) enroll the contact in
    /// every active plan of its company whose triggers match. The replica has taken the event in
    /// already (the inbox runs replica handlers first, in the same transaction).
    var eventHandlers: [EventHandler] {
        let changed = [EventType.contactCreated, EventType.contactTagsChanged, EventType.contactStatusChanged].map { type in
            EventHandler(name: "smartplans.triggers", eventType: type) { event, connection, _ in
                let data = try event.data(ContactChanged.self)
                let created = event.type == EventType.contactCreated
                try await trigger([(data.contact.id, created ? data.contact.tags : data.change.tagsAdded ?? [], data.contact.status,
                                    created ? nil : data.change.previousStatus, created)], companyId: data.contact.companyId, on: connection)
            }
        }
        let imported = EventHandler(name: "smartplans.triggers", eventType: EventType.contactsImported) { event, connection, _ in
            let data = try event.data(ContactsImported.self)
            guard let companyId = data.contacts.first?.companyId else { return }
            try await trigger((data.changes ?? []).map { ($0.contactId, $0.tagsAdded, $0.status, $0.statusBefore, $0.created) }, companyId: companyId,
                              on: connection)
        }
        // SP-8: a tag renamed in the company's settings keeps its triggers under the new name; a
        // deleted tag is taken out of every trigger.
        let tags = [EventType.tagRenamed, EventType.tagDeleted].map { type in
            EventHandler(name: "smartplans.tags", eventType: type) { event, connection, _ in
                let change = try event.data(TagChanged.self)
                for var plan in try await store.documents(Plan.self, """
                    SELECT doc::text FROM plans WHERE company_id = \(change.companyId) AND doc ? 'triggers' FOR UPDATE
                    """, on: connection) {
                    guard let triggers = plan.triggers, let renamed = triggers.replacingTag(change.tag, with: change.renamedTo) else { continue }
                    plan.triggers = renamed.isEmpty ? nil : renamed
                    plan.updatedAt = clock.now
                    try await store.save(plan, on: connection)
                }
            }
        }
        // SP-7: an e-mail or text the plan handed over that failed afterwards (the provider
        // refused it, a held text was suppressed) is the step's outcome: failed, with the reason.
        // Told before the run's own record is written, it is written first and the run's "done"
        // gives way to it.
        let failures = EventHandler.batched(name: "smartplans.failures", eventType: EventType.messageFailed) { events, connection, logger in
            var steps: [(enrollment: UUID, seq: Int, step: Int, kind: String, reason: String, at: Date)] = []
            for event in events {
                let message = try event.data(MessageUpdated.self).message
                guard let reference = message.reference, let step = Self.step(ofMessageKey: reference) else { continue }
                steps.append((step.enrollment, step.seq, step.step, message.channel == .email ? "email" : "text",
                              message.reason ?? message.state.rawValue, message.updatedAt))
            }
            guard !steps.isEmpty else { return }
            try await connection.query("""
                INSERT INTO step_log (enrollment_id, seq, step_index, plan_id, kind, outcome, detail, at)
                SELECT e.id, f.seq, f.step_index, e.plan_id, f.kind, 'failed', f.reason, f.at
                FROM unnest(\(steps.map(\.enrollment)), \(steps.map(\.seq)), \(steps.map(\.step)), \(steps.map(\.kind)), \(steps.map(\.reason)),
                            \(steps.map(\.at))) AS f(enrollment_id, seq, step_index, kind, reason, at)
                JOIN enrollments e ON e.id = f.enrollment_id
                ON CONFLICT (enrollment_id, seq, step_index) DO UPDATE SET outcome = 'failed', detail = EXCLUDED.detail
                WHERE step_log.outcome = 'done'
                """, logger: logger)
        }
        return changed + [imported] + tags + [failures]
    }

    /// The idempotency key and reference of a step's message: its enrollment, run and step, so
    /// notifications sends it once whatever retries, and its fate comes back to the step.
    static func messageKey(enrollment: UUID, seq: Int, step: Int) -> String {
        "smartplans-\(enrollment.lowercasedString)-\(seq)-\(step)"
    }

    static func step(ofMessageKey key: String) -> (enrollment: UUID, seq: Int, step: Int)? {
        let prefix = "smartplans-"
        guard key.hasPrefix(prefix) else { return nil }
        let rest = key.dropFirst(prefix.count)
        guard rest.count > 36, let enrollment = UUID(uuidString: String(rest.prefix(36))) else { return nil }
        let numbers = rest.dropFirst(37).split(separator: "-").compactMap { Int($0) }
        guard numbers.count == 2 else { return nil }
        return (enrollment, numbers[0], numbers[1])
    }

    private func trigger(_ changes: [(id: UUID, tagsAdded: [String], status: ContactStatus, before: ContactStatus?, created: Bool)], companyId: UUID,
                         on connection: PostgresConnection) async throws {
        guard !changes.isEmpty else { return }
        for plan in try await store.documents(Plan.self, """
            SELECT doc::text FROM plans WHERE company_id = \(companyId) AND doc ? 'triggers' AND (doc->>'active')::boolean
            """, on: connection) {
            guard let triggers = plan.triggers else { continue }
            let matching = changes.filter { triggers.matches(tagsAdded: $0.tagsAdded, status: $0.status, statusBefore: $0.before, created: $0.created) }
            if !matching.isEmpty { _ = try await enroll(matching.map(\.id), in: plan, on: connection) }
        }
    }

    /// Enrollments run a claim and a commit at a time: their states are read and decided one by
    /// one on the claim's connection, their steps' messages handed to notifications and their tasks
    /// to contacts in batches (each enrollment's steps in order), their timeline entries
    /// written to contacts in one request. One that cannot finish (a peer away) fails the claim and
    /// every run in it is retried: a step's message keeps its key (in whatever batch it goes
    /// again), its task and its entry their ids. A hundred: the most a wave can hand over in one
    /// request (notifications' keyed batch and contacts' task batch take 100); a claim's fixed
    /// statements and requests then weigh half what they did at 50 (`bench smartplans` at 100,000:
    /// 1.04–1.12 → 0.96–1.00 ms of the machine a step).
    static let advanceBatch = 100

    var jobHandler: JobHandler {
        JobHandler(kind: Self.advanceJob, batchSize: Self.advanceBatch) { jobs, connection, _ in
            var failed: [Int64: any Error] = [:]
            var advances: [AdvanceJob] = []
            for job in jobs {
                do { advances.append(try job.decode(AdvanceJob.self)) } catch { failed[job.id] = error }
            }
            var notes: [Note] = []
            let runs = try await prepare(advances, on: connection, notes: &notes)
            let done = try await act(runs.map(\.run))
            // A run's entries in the order they happened (enrolled, its steps, finished), as one
            // entry on the contact's timeline.
            var finished = Finished()
            for (index, run) in runs.enumerated() {
                var own = run.notes + done[index].notes
                try await finish(run.run, outcomes: done[index].outcomes, into: &finished, on: connection, notes: &own)
                notes += Self.runEntry(own, enrollmentId: run.run.job.enrollmentId, seq: run.run.seq)
            }
            try await finished.write(on: connection, logger: logger)
            try await ServiceTimelineEntry.write(notes, with: peers)
            return failed
        }
    }

    /// SP-10: enrolls each contact of the plan's company once (a contact enrolled before, even
    /// finished, is reported as such); its first steps run at once. Two statements for any number
    /// of contacts: the enrollments, and the first run's job of each new one.
    func enroll(_ contactIds: [UUID], in plan: Plan, on connection: PostgresConnection) async throws -> [UUID: EnrollOutcome] {
        var known: [UUID: String] = [:]
        for try await (id, status) in try await connection.query("""
            SELECT id, status FROM contact_replica WHERE id = ANY(\(contactIds)) AND company_id = \(plan.companyId) AND NOT deleted
            """, logger: logger).decode((UUID, String).self) { known[id] = status }
        var outcomes: [UUID: EnrollOutcome] = [:]
        var candidates: [UUID] = []
        for contactId in contactIds where outcomes[contactId] == nil {
            guard let status = known[contactId] else { outcomes[contactId] = .notFound; continue }
            guard status != ContactStatus.archive.rawValue else { outcomes[contactId] = .archived; continue }
            outcomes[contactId] = .alreadyEnrolled
            candidates.append(contactId)
        }
        guard !candidates.isEmpty else { return outcomes }
        let now = clock.now
        let ids = candidates.map { _ in UUID.random() }
        var enrolled: [(UUID, UUID)] = []
        for try await (id, contactId) in try await connection.query("""
            INSERT INTO enrollments (id, plan_id, company_id, contact_id, state, step_index, repetition, plan_version, seq, enrolled_at, ends_at, next_at)
            SELECT e.id, \(plan.id), \(plan.companyId), e.contact_id, \(plan.active ? "active" : "paused"), 0, 0, \(plan.version), 1, \(now),
                   \(now.addingTimeInterval(Double(plan.durationDays) * 86_400)), \(now)
            FROM unnest(\(ids), \(candidates)) AS e(id, contact_id)
            ON CONFLICT (plan_id, contact_id) DO NOTHING RETURNING id, contact_id
            """, logger: logger).decode((UUID, UUID).self) { enrolled.append((id, contactId)) }
        for (_, contactId) in enrolled { outcomes[contactId] = .enrolled }
        if plan.active, !enrolled.isEmpty {
            try await Self.scheduleRuns(enrolled.map { (enrollment: $0.0, seq: 1, at: now) }, on: connection, logger: logger)
        }
        return outcomes
    }

    /// Each enrollment's run `seq`, due at its time, in one statement (once: keyed by both).
    static func scheduleRuns(_ runs: [(enrollment: UUID, seq: Int, at: Date)], on connection: PostgresConnection, logger: Logger) async throws {
        guard !runs.isEmpty else { return }
        let keys = runs.map { "sp-advance:\($0.enrollment):\($0.seq)" }
        let payloads = try runs.map { try JSONCoding.string(AdvanceJob(enrollmentId: $0.enrollment, seq: $0.seq)) }
        try await connection.query("""
            INSERT INTO jobs (kind, payload, run_at, max_attempts, unique_key)
            SELECT \(advanceJob), j.payload::jsonb, j.run_at, \(JobQueue.defaultMaxAttempts), j.key
            FROM unnest(\(payloads), \(runs.map(\.at)), \(keys)) AS j(payload, run_at, key)
            ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
            """, logger: logger)
        try await Wakeups.request(JobQueue.wakeup, on: connection, logger: logger)
    }

    func schedule(_ enrollmentId: UUID, seq: Int, at: Date, on connection: PostgresConnection) async throws {
        try await Self.scheduleRuns([(enrollment: enrollmentId, seq: seq, at: at)], on: connection, logger: logger)
    }

    /// A run decided and due: what it does now and where it continues.
    struct Run: Sendable {
        var job: AdvanceJob
        var plan: Plan
        var contactId: UUID
        var agentId: UUID?
        var seq: Int
        var step: PlanRunner.Advance
        var values: MergeValues
        var now: Date
        /// The claim's role agents (SP-2), for the steps their roles own.
        var agents: [UUID: MergeValues.AgentFacts] = [:]

        func values(step: Int) -> MergeValues {
            plan.values(forStep: step, contact: values, agents: agents)
        }
    }

    /// A claim's runs, up to their steps, with the entries each makes first: its enrollments
    /// locked and read in one statement (in id order, so two claims never wait on each other in a
    /// cycle), each plan read once, the contacts' merge values in one statement. A run with
    /// nothing to do (paused, stopped, already run, or the contact archived or deleted, SP-11,
    /// which it records in `notes`) is left out.
    func prepare(_ jobs: [AdvanceJob], on connection: PostgresConnection, notes: inout [Note]) async throws -> [(run: Run, notes: [Note])] {
        guard !jobs.isEmpty else { return [] }
        typealias Row = (planId: UUID, contactId: UUID, state: String, stepIndex: Int, repetition: Int, version: Int, seq: Int, endsAt: Date,
                         nextAt: Date?, status: String?, deleted: Bool?, agentId: UUID?)
        var rows: [UUID: Row] = [:]
        // Read whole before the runs' own queries on the connection.
        for row in try await connection.prepared(LockEnrollments.self, .values(jobs.map(\.enrollmentId)), logger: logger) {
            let (id, planId, contactId, state, stepIndex, repetition, version, seq, endsAt, nextAt, status, deleted, agentId)
                = try row.decode((UUID, UUID, UUID, String, Int, Int, Int, Int, Date, Date?, String?, Bool?, UUID?).self)
            rows[id] = (planId, contactId, state, stepIndex, repetition, version, seq, endsAt, nextAt, status, deleted, agentId)
        }
        var plans: [UUID: Plan?] = [:]
        var runs: [(run: Run, notes: [Note])] = []
        let now = clock.now
        for job in jobs {
            guard let row = rows[job.enrollmentId], row.state == EnrollmentState.active.rawValue, row.seq == job.seq else { continue }
            if plans[row.planId] == nil { plans[row.planId] = .some(try await store.plan(row.planId, on: connection)) }
            guard let plan = plans[row.planId] ?? nil else { continue }
            guard plan.active else {
                try await connection.query("UPDATE enrollments SET state = 'paused' WHERE id = \(job.enrollmentId)", logger: logger)
                continue
            }
            // SP-11: an archived or removed contact gets nothing more.
            if row.deleted ?? true || row.status == ContactStatus.archive.rawValue {
                let reason = row.deleted ?? true ? "the contact was deleted" : "the contact was archived"
                try await connection.query("""
                    UPDATE enrollments SET state = 'stopped', reason = \(reason), next_at = NULL WHERE id = \(job.enrollmentId)
                    """, logger: logger)
                timeline(&notes, row.contactId, id: Self.entryId(job.enrollmentId, seq: row.seq, step: -1),
                         summary: "SmartPlan \"\(plan.name)\" stopped: \(reason).", plan: plan)
                continue
            }
            var own: [Note] = []
            if row.seq == 1 {
                timeline(&own, row.contactId, id: Self.entryId(job.enrollmentId, seq: 0, step: -3), summary: "Enrolled in SmartPlan \"\(plan.name)\".",
                         plan: plan)
            }
            var position = PlanRunner.Position(stepIndex: row.stepIndex, repetition: row.repetition)
            if row.version != plan.version, let old = try await store.steps(of: row.planId, version: row.version, on: connection) {
                position = PlanRunner.map(position, from: old, to: plan.steps)
            }
            // A text due in its window but run late still leaves only in the window: notifications
            // holds it (the message carries the window).
            let step = PlanRunner.run(plan.steps, from: position, dueAt: row.nextAt, now: now, endsAt: row.endsAt, contactId: row.contactId).advance
            runs.append((Run(job: job, plan: plan, contactId: row.contactId, agentId: row.agentId, seq: row.seq, step: step, values: MergeValues(),
                             now: now), own))
        }
        // The contacts' merge values, read once for every step of their runs.
        let templates = TemplatePreviewController(client: store.client, logger: logger)
        let values = try await templates.values(for: runs.filter { !$0.run.step.actions.isEmpty }.map(\.run.contactId), on: connection)
        for index in runs.indices { runs[index].run.values = values[runs[index].run.contactId] ?? MergeValues() }
        // The role agents of the steps about to run, read once for the claim.
        let roleAgentIds = runs.flatMap { entry in entry.run.step.actions.compactMap { entry.run.plan.roleAgent(ofStep: $0.step) } }
        if !roleAgentIds.isEmpty {
            let agents = try await templates.agents(roleAgentIds, on: connection)
            for index in runs.indices { runs[index].run.agents = agents }
        }
        return runs
    }

    enum LockEnrollments: PreparedSQL {
        static let sql = """
            SELECT e.id, e.plan_id, e.contact_id, e.state, e.step_index, e.repetition, e.plan_version, e.seq, e.ends_at, e.next_at,
                   c.status, c.deleted, c.assigned_agent_id
            FROM enrollments e LEFT JOIN contact_replica c ON c.id = e.contact_id
            WHERE e.id = ANY($1::uuid[]) ORDER BY e.id FOR UPDATE OF e
            """
    }

    typealias StepResult = (outcome: String, detail: String?, summary: String)

    /// Every run's steps through notifications and contacts, in waves: the first step of every
    /// run, then the second … (each run's in order, SP-3). A wave's texts and e-mails go to
    /// notifications as batches, each message under its own key; its tasks go to contacts as one
    /// batch beside them. Answers each run's outcomes and entries, in order.
    func act(_ runs: [Run]) async throws -> [(outcomes: [(outcome: String, detail: String?)], notes: [Note])] {
        var results = Array(repeating: (outcomes: [(outcome: String, detail: String?)](), notes: [Note]()), count: runs.count)
        var templates = PlanRunner.Templates()
        for wave in 0..<(runs.map(\.step.actions.count).max() ?? 0) {
            let due = runs.indices.filter { wave < runs[$0].step.actions.count }
            var messages: [(run: Int, message: ContactMessage, key: String, channel: MessageChannel, what: String)] = []
            var taskSteps: [Int] = []
            var done: [Int: StepResult] = [:]
            for index in due {
                let run = runs[index], action = run.step.actions[wave]
                let key = Self.messageKey(enrollment: run.job.enrollmentId, seq: run.seq, step: action.step)
                switch action {
                case .email(_, let subject, let body, let html):
                    let email = try PlanRunner.renderEmail(subject: subject, body: body, html: html, values: run.values(step: action.step),
                                                           templates: &templates)
                    var message = ContactMessage(channel: .email, contactId: run.contactId, subject: email.subject, body: email.body, reference: key,
                                                 window: nil)
                    message.html = email.html
                    // SP-7: an e-mail that fails (the sending limit reached) is not retried; the plan moves on.
                    message.retry = false
                    messages.append((index, message, key, .email, "the e-mail \"\(email.subject)\""))
                case .text(_, let body):
                    // SP-5: a text only 10:00–19:00 Chicago.
                    let message = ContactMessage(channel: .sms, contactId: run.contactId, subject: nil, body: try templates.render(body, run.values(step: action.step)),
                                                 reference: key, window: .daily("10:00", "19:00", timeZone: "America/Chicago"))
                    messages.append((index, message, key, .sms, "a text"))
                case .task:
                    taskSteps.append(index)
                case .enroll:
                    done[index] = ("done", nil, "added the contact to another plan")
                }
            }
            let batch = messages, taskRuns = taskSteps, tasks = taskSteps.map { (run: runs[$0], action: runs[$0].step.actions[wave]) }
            try await withThrowingTaskGroup(of: [(Int, StepResult)].self) { group in
                if !batch.isEmpty {
                    group.addTask {
                        let outcomes = try await ContactMessage.send(batch.map { ($0.message, $0.key) }, with: peers)
                        return zip(batch, outcomes).map { ($0.run, Self.sent($1, channel: $0.channel, what: $0.what)) }
                    }
                }
                if !tasks.isEmpty {
                    group.addTask { zip(taskRuns, try await makeTasks(tasks)).map { ($0, $1) } }
                }
                for try await finished in group {
                    for (index, result) in finished { done[index] = result }
                }
            }
            for index in due {
                let run = runs[index], step = run.step.actions[wave].step
                guard let result = done[index] else { continue }
                results[index].outcomes.append((result.outcome, result.detail))
                timeline(&results[index].notes, run.contactId, id: Self.entryId(run.job.enrollmentId, seq: run.seq, step: step),
                         summary: "SmartPlan \"\(run.plan.name)\", step \(step + 1): \(result.summary).", plan: run.plan)
            }
        }
        return results
    }

    /// What a claim's runs record, written in a handful of statements for all of them.
    struct Finished {
        var log: [(enrollment: UUID, seq: Int, step: Int, plan: UUID, kind: String, outcome: String, detail: String, at: Date)] = []
        var continuing: [(enrollment: UUID, stepIndex: Int, repetition: Int, version: Int, seq: Int, at: Date)] = []
        var ended: [(enrollment: UUID, version: Int, seq: Int)] = []

        func write(on connection: PostgresConnection, logger: Logger) async throws {
            if !log.isEmpty {
                try await connection.query("""
                    INSERT INTO step_log (enrollment_id, seq, step_index, plan_id, kind, outcome, detail, at)
                    SELECT l.enrollment_id, l.seq, l.step_index, l.plan_id, l.kind, l.outcome, NULLIF(l.detail, ''), l.at
                    FROM unnest(\(log.map(\.enrollment)), \(log.map(\.seq)), \(log.map(\.step)), \(log.map(\.plan)), \(log.map(\.kind)),
                                \(log.map(\.outcome)), \(log.map(\.detail)), \(log.map(\.at)))
                        AS l(enrollment_id, seq, step_index, plan_id, kind, outcome, detail, at)
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
            if !continuing.isEmpty {
                try await connection.query("""
                    UPDATE enrollments e SET step_index = u.step_index, repetition = u.repetition, plan_version = u.version, seq = u.seq, next_at = u.at
                    FROM unnest(\(continuing.map(\.enrollment)), \(continuing.map(\.stepIndex)), \(continuing.map(\.repetition)),
                                \(continuing.map(\.version)), \(continuing.map(\.seq)), \(continuing.map(\.at)))
                        AS u(id, step_index, repetition, version, seq, at)
                    WHERE e.id = u.id
                    """, logger: logger)
                try await PlanEngine.scheduleRuns(continuing.map { (enrollment: $0.enrollment, seq: $0.seq, at: $0.at) }, on: connection, logger: logger)
            }
            if !ended.isEmpty {
                try await connection.query("""
                    UPDATE enrollments e SET state = 'finished', plan_version = u.version, seq = u.seq, next_at = NULL
                    FROM unnest(\(ended.map(\.enrollment)), \(ended.map(\.version)), \(ended.map(\.seq))) AS u(id, version, seq)
                    WHERE e.id = u.id
                    """, logger: logger)
            }
        }
    }

    /// Records a run's steps and where and when it continues (in `finished`, written for the
    /// whole claim); a step that adds the contact to another plan enrolls it now.
    func finish(_ run: Run, outcomes: [(outcome: String, detail: String?)], into finished: inout Finished, on connection: PostgresConnection,
                notes: inout [Note]) async throws {
        let (job, plan, seq) = (run.job, run.plan, run.seq)
        for (action, (outcome, detail)) in zip(run.step.actions, outcomes) {
            finished.log.append((job.enrollmentId, seq, action.step, plan.id, plan.steps[action.step].kind.rawValue, outcome, detail ?? "", run.now))
            if case .enroll(_, let other) = action, outcome == "done", let target = try await store.plan(other, on: connection),
               target.companyId == plan.companyId {
                _ = try await enroll([run.contactId], in: target, on: connection)
            }
        }
        if let next = run.step.next, let at = run.step.nextAt {
            finished.continuing.append((job.enrollmentId, next.stepIndex, next.repetition, plan.version, seq + 1, at))
        } else {
            finished.ended.append((job.enrollmentId, plan.version, seq + 1))
            timeline(&notes, run.contactId, id: Self.entryId(job.enrollmentId, seq: seq, step: -2), summary: "SmartPlan \"\(plan.name)\" finished.", plan: plan)
        }
    }

    struct NewTask: Encodable {
        var contactId: UUID?
        var kind: ContactTask.Kind
        var title: String
        var description: String?
        var priority: ContactTask.Priority?
        var dueAt: Date
        var assigneeId: UUID?
        var id: UUID
    }

    /// A wave's task steps through contacts in one request (SP-6: each window and due date
    /// decided by the runner), each task made once whatever retries the run: its id is derived
    /// from the enrollment, run and step. A batch contacts refuses (one task refused) goes again
    /// a task at a time, so that each has its own outcome.
    private func makeTasks(_ steps: [(run: Run, action: PlanRunner.Action)]) async throws -> [StepResult] {
        var tasks: [(task: NewTask, what: String)] = []
        var templates = PlanRunner.Templates()
        for (run, action) in steps {
            guard case .task(_, let kind, let title, let dueAt) = action else { continue }
            let step = run.plan.steps[action.step]
            let values = run.values(step: action.step)
            tasks.append((NewTask(contactId: run.contactId, kind: kind, title: try templates.render(title, values),
                                  description: try step.description.map { try templates.render($0, values) }, priority: step.priority, dueAt: dueAt,
                                  assigneeId: run.plan.roleAgent(ofStep: action.step) ?? run.agentId,
                                  id: UUID.derived(from: "smartplans-task:\(run.job.enrollmentId):\(run.seq):\(action.step)")),
                          kind == .call ? "call task" : kind == .text ? "text task" : "task"))
        }
        func made(_ task: NewTask, what: String) -> StepResult {
            ("done", nil, "made the \(what) \"\(task.title)\", due \(RFC3339.string(from: task.dueAt))")
        }
        struct Batch: Encodable { var tasks: [NewTask] }
        // Only how many were made: decoding whole tasks (their dates) cost more than making them here.
        struct Made: Decodable {
            struct Item: Decodable { var id: UUID }
            var items: [Item]
        }
        if tasks.count > 1 {
            let answer = try await peers.post(to: .contacts, path: "/v1/tasks/batch", body: Batch(tasks: tasks.map(\.task)), idempotent: true)
            if try answer.succeeded(from: .contacts, "contacts' tasks"),
               (try? JSONCoding.decoder.decode(Made.self, from: Data(answer.body.utf8)))?.items.count == tasks.count {
                return tasks.map { made($0.task, what: $0.what) }
            }
        }
        var results: [StepResult] = []
        for (var task, what) in tasks {
            guard let contactId = task.contactId else { continue }
            task.contactId = nil
            let answer = try await peers.post(to: .contacts, path: "/v1/contacts/\(contactId.lowercasedString)/tasks", body: task, idempotent: true)
            results.append(try answer.succeeded(from: .contacts, "contacts' tasks")
                ? made(task, what: what) : ("failed", String(answer.body.prefix(300)), "could not make the \(what) \"\(task.title)\""))
        }
        return results
    }

    /// SP-5, SP-7: what notifications did with a step's message. A refusal is not retried: it
    /// goes on the timeline and the plan moves on.
    static func sent(_ outcome: ContactMessage.Outcome, channel: MessageChannel, what: String) -> StepResult {
        switch outcome {
        case .refused(_, let body):
            return refused(channel: channel, answer: body, what: what)
        case .accepted(_, let state, let reason) where state == "suppressed" || state == "failed":
            return ("failed", reason, "did not send \(what) (\(reason ?? state))")
        case .accepted(let id, _, _):
            return ("done", id.lowercasedString, "sent \(what)")
        }
    }

    /// SP-7: a text notifications refuses for want of an SMS provider (`no_sms_provider`) is
    /// skipped, saying so; any other refusal failed. Either is recorded, not retried, and the plan
    /// moves on.
    static func refused(channel: MessageChannel, answer: String, what: String) -> StepResult {
        struct Refusal: Decodable {
            struct Body: Decodable { var code: String }
            var error: Body
        }
        if channel == .sms, (try? JSONCoding.decode(Refusal.self, json: answer))?.error.code == "no_sms_provider" {
            return ("skipped", "no SMS provider is configured", "skipped \(what): no SMS provider is configured")
        }
        return ("failed", answer, "could not send \(what)")
    }

    typealias Note = ServiceTimelineEntry

    private func timeline(_ notes: inout [Note], _ contactId: UUID, id: UUID, summary: String, plan: Plan) {
        notes.append(Note(contactId: contactId, id: id, kind: "smartplan", summary: summary, actorName: "SmartPlans",
                          data: ["planId": plan.id.lowercasedString]))
    }

    /// SP's "the timeline shows enrollment, each step done or skipped and why": what one run did —
    /// the enrollment, each step at once (SP-3), the plan's end — is one entry saying each, rather
    /// than an entry each: a contact's timeline reads one moment as one item, and a plan's run
    /// writes one row, not three or more. Its id is the run's, the same on every retry.
    static func runEntry(_ notes: [Note], enrollmentId: UUID, seq: Int) -> [Note] {
        guard notes.count > 1, let first = notes.first else { return notes }
        return [Note(contactId: first.contactId, id: entryId(enrollmentId, seq: seq, step: -4), kind: first.kind,
                     summary: notes.map(\.summary).joined(separator: " "), actorName: first.actorName, data: first.data)]
    }

    /// The same id on every retry of a run's step, so its timeline entry is written once.
    static func entryId(_ enrollmentId: UUID, seq: Int, step: Int) -> UUID {
        UUID.derived(from: "smartplans:\(enrollmentId):\(seq):\(step)")
    }
}
