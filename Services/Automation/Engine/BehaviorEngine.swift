import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// BA-2 … BA-9, BA-11: evaluates contacts' new activity (in the transaction that stores a site's
/// batch, or a job for activity joined to a contact later), records each behavior that fired once
/// and decides it there: the lead message and the agent alert the guards allow, sent through
/// notifications by a delivery job (an agent's alerts decided together as one e-mail), why
/// anything was not sent, and the firing on the contact's timeline.
struct BehaviorEngine: Sendable {
    let client: PostgresClient
    let jobs: JobQueue
    let peers: PeerClient
    let clock: any ServiceClock
    let logger: Logger

    static let evaluateJob = "automation.behaviors"
    static let evaluateBatch = 200
    static let firedJob = "automation.behavior-fired"
    /// Firings decided a claim and a commit; their messages go in notifications' batches.
    static let firedBatch = 100
    static let deliverJob = "automation.behavior-deliver"
    /// Notifications' batch limit.
    static let messagesPerDelivery = 20
    /// How long a firing of an unassigned new contact waits for routing to assign it.
    static let awaitingRouting: TimeInterval = 10 * 60

    struct EvaluateJob: Codable, Sendable {
        var contactId: UUID
        var companyId: UUID
    }

    struct FiredJob: Codable, Sendable {
        var firingId: UUID
    }

    /// One message a decided firing sends, as notifications' batch takes it.
    struct Outgoing: Codable, Sendable, Hashable {
        struct Window: Codable, Sendable, Hashable { var entityId: UUID }
        var channel: MessageChannel
        var contactId: UUID?
        var userId: UUID?
        var subject: String?
        var body: String
        var purpose = MessagePurpose.automated
        var reference: String
        var window: Window?
    }

    typealias TimelineNote = ServiceTimelineEntry

    /// The messages and timeline entries of decided firings, fixed when they were decided: every
    /// retry sends the same batch under the same Idempotency-Key, so nothing leaves twice.
    struct DeliverJob: Codable, Sendable {
        var messages: [Outgoing]
        /// The firings each message is for, in the same order: one for a lead's message, each of
        /// an agent's alerts for the agent's e-mail.
        var firings: [[UUID]]
        var timeline: [TimelineNote]

        init(messages: [Outgoing] = [], firings: [[UUID]] = [], timeline: [TimelineNote] = []) {
            (self.messages, self.firings, self.timeline) = (messages, firings, timeline)
        }

        /// A delivery decided before alerts were gathered per agent named one firing a message.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            messages = try container.decode([Outgoing].self, forKey: .messages)
            timeline = try container.decode([TimelineNote].self, forKey: .timeline)
            firings = try (try? container.decode([[UUID]].self, forKey: .firings)) ?? container.decode([UUID].self, forKey: .firings).map { [$0] }
        }

        /// Its firings', whatever their order: the job's unique key and its batch's Idempotency-Key.
        var key: String { UUID.derived(from: timeline.map { $0.id.uuidString }.sorted().joined(separator: ",")).lowercasedString }
    }

    /// What a firing did, kept on it: the answer to "why did this lead get nothing".
    struct Outcome: Codable, Sendable, Hashable {
        var leadChannel: MessageChannel?
        var leadSuppressed: BehaviorMessages.Suppression?
        var agentAlerted: Bool
        var alertSuppressed: BehaviorMessages.Suppression?
        var messageIds: [UUID]
    }

    /// A decided firing: its lead's messages, its agent's alert and its timeline entry.
    struct Decided: Sendable {
        var firing: UUID
        var messages: [Outgoing]
        var alert: (agent: UUID, BehaviorMessages.Alert)?
        var note: TimelineNote
    }

    /// One delivery of decided firings: their lead messages, and each agent's alerts as one e-mail.
    static func delivery(_ items: [Decided]) -> DeliverJob {
        var job = DeliverJob(timeline: items.map(\.note))
        var agents: [UUID] = []
        var alertsOf: [UUID: [(firing: UUID, alert: BehaviorMessages.Alert)]] = [:]
        for item in items {
            job.messages += item.messages
            job.firings += item.messages.map { _ in [item.firing] }
            guard let (agent, alert) = item.alert else { continue }
            if alertsOf[agent] == nil { agents.append(agent) }
            alertsOf[agent, default: []].append((item.firing, alert))
        }
        for agent in agents {
            guard let alerts = alertsOf[agent], let first = alerts.first else { continue }
            let mail = BehaviorMessages.alerts(first.alert, alerts.dropFirst().map(\.alert))
            job.messages.append(Outgoing(channel: .email, userId: agent, subject: mail.subject, body: mail.body, reference: "behavior:\(first.firing.lowercasedString)"))
            job.firings.append(alerts.map(\.firing))
        }
        return job
    }

    var jobHandlers: [JobHandler] {
        [
            // Many contacts a claim and a commit: a busy site's batches make one job per contact each.
            JobHandler(kind: Self.evaluateJob, batchSize: Self.evaluateBatch) { jobs, connection, _ in
                var failed: [Int64: any Error] = [:]
                var decoded: [(Int64, EvaluateJob)] = []
                for job in jobs {
                    do { decoded.append((job.id, try job.decode(EvaluateJob.self))) } catch { failed[job.id] = error }
                }
                try await evaluate(decoded.map(\.1), since: jobs.map(\.runAt).min() ?? clock.now, on: connection)
                return failed
            },
            JobHandler(kind: Self.firedJob, batchSize: Self.firedBatch) { jobs, connection, _ in
                var failed: [Int64: any Error] = [:]
                var jobOf: [UUID: Int64] = [:]
                for job in jobs {
                    do { jobOf[try job.decode(FiredJob.self).firingId] = job.id } catch { failed[job.id] = error }
                }
                for (firing, error) in try await fired(Array(jobOf.keys), since: jobs.map(\.runAt).min() ?? clock.now, on: connection) {
                    if let id = jobOf[firing] { failed[id] = error }
                }
                return failed
            },
            JobHandler(kind: Self.deliverJob) { job, _, _ in try await deliver(try job.decode(DeliverJob.self)) },
        ]
    }

    /// A contact that arrives with activity already joined to it (a lead form identified its
    /// visitor before the contact's event got here) is evaluated now.
    var eventHandler: EventHandler {
        EventHandler(name: "automation.behaviors-on-contact", eventType: EventType.contactCreated) { event, connection, logger in
            struct Created: Decodable {
                struct Contact: Decodable {
                    var id: UUID
                    var companyId: UUID
                }
                var contact: Contact
            }
            let created = try event.data(Created.self).contact
            let (contactId, companyId) = (created.id, created.companyId)
            let waiting = try await connection.query("""
                SELECT 1 FROM activity WHERE contact_id = \(contactId) AND NOT evaluated LIMIT 1
                """, logger: logger).collect().count == 1
            guard waiting else { return }
            try await jobs.schedule(kind: Self.evaluateJob, payload: EvaluateJob(contactId: contactId, companyId: companyId), runAt: clock.now,
                                    on: connection, logger: logger)
        }
    }

    // MARK: Evaluation

    /// The activity joined to a contact after it was stored (a visitor identified by a lead
    /// form): the new activity of every contact the jobs name, evaluated set by set and then
    /// marked evaluated. `since`: when the oldest of the jobs was due; the firings' jobs are due
    /// from then, so they go before newer work.
    func evaluate(_ jobs: [EvaluateJob], since: Date, on connection: PostgresConnection) async throws {
        let companyOf = Dictionary(jobs.map { ($0.contactId, $0.companyId) }, uniquingKeysWith: { first, _ in first })
        guard !companyOf.isEmpty else { return }
        try await Self.lock(Set(companyOf.keys), on: connection, logger: logger)
        var activity: [UUID: [Behaviors.Activity]] = [:]
        for try await (contact, id, kind, at, listing) in try await connection.query("""
            SELECT contact_id, id, kind, at, doc->'listing'->>'listingId' FROM activity WHERE contact_id = ANY(\(Array(companyOf.keys))) AND NOT evaluated
            """, logger: logger).decode((UUID, UUID, String, Date, String?).self) {
            guard let kind = ActivityEvent.Kind(rawValue: kind) else { continue }
            activity[contact, default: []].append(.init(id: id, kind: kind, at: at, listingId: listing, isNew: true))
        }
        guard !activity.isEmpty else { return }
        try await evaluate(new: activity, companyOf: companyOf, since: since, on: connection)
        let seen = activity.values.flatMap { $0.map(\.id) }
        try await connection.query("UPDATE activity SET evaluated = true WHERE contact_id = ANY(\(Array(activity.keys))) AND id = ANY(\(seen))",
                                   logger: logger)
    }

    /// One evaluation of a contact at a time (two batches must see each other's events): taken
    /// before a batch's activity is stored, in one order so two batches never wait on each other
    /// in a cycle; held to the commit.
    static func lock(_ contacts: Set<UUID>, on connection: PostgresConnection, logger: Logger) async throws {
        guard !contacts.isEmpty else { return }
        try await connection.query("""
            SELECT count(pg_advisory_xact_lock(hashtextextended('behaviors:' || c, 0)))
            FROM (SELECT c FROM unnest(\(contacts.map { $0.lowercasedString }.sorted())) AS c ORDER BY c) AS s
            """, logger: logger)
    }

    /// BA-2 for a batch of contacts, set by set — a handful of statements for the batch, not a
    /// handful per contact: `new` is each contact's activity not evaluated before (stored in
    /// this transaction, under `lock`); its recent past is read here. Records what fired, once,
    /// with a job each to decide its messages.
    func evaluate(new: [UUID: [Behaviors.Activity]], companyOf: [UUID: UUID], since: Date, on connection: PostgresConnection) async throws {
        var activity = new
        guard !activity.isEmpty else { return }
        let newIds = Set(new.values.flatMap { $0.map(\.id) })
        let evaluated = activity.keys.sorted()
        let starts = evaluated.map { contact in (activity[contact]?.map(\.at).min() ?? .distantPast).addingTimeInterval(-Behaviors.lookBack) }
        var viewed: [(UUID, String)] = []
        for contact in evaluated {
            for listing in Set((activity[contact] ?? []).filter { $0.kind == .propertyView }.compactMap(\.listingId)) { viewed.append((contact, listing)) }
        }
        // Each contact's recent past, and every earlier view of the listings it just viewed (for (e)):
        // read contact by contact through its index (the OFFSET fences the subquery), since a
        // join over the batch lets the planner scan the whole table or the index from the
        // batch's lowest contact id to its highest — all of a year's activity.
        for try await (contact, id, kind, at, listing) in try await connection.query("""
            SELECT w.contact_id, a.id, a.kind, a.at, a.listing_id
            FROM unnest(\(evaluated), \(starts)) AS w(contact_id, start) CROSS JOIN LATERAL (
                SELECT a.id, a.kind, a.at, a.doc->'listing'->>'listingId' AS listing_id FROM activity a
                WHERE a.contact_id = w.contact_id AND a.evaluated AND (a.at > w.start OR (a.kind = 'property_view' AND (a.contact_id, a.doc->'listing'->>'listingId') IN (
                    SELECT * FROM unnest(\(viewed.map(\.0)), \(viewed.map(\.1))))))
                OFFSET 0) AS a
            """, logger: logger).decode((UUID, UUID, String, Date, String?).self) {
            guard let kind = ActivityEvent.Kind(rawValue: kind), !newIds.contains(id) else { continue }
            activity[contact, default: []].append(.init(id: id, kind: kind, at: at, listingId: listing, isNew: false))
        }
        var before: [UUID: Date] = [:]
        for try await (contact, at) in try await connection.query("""
            SELECT w.contact_id, (SELECT max(a.at) FROM activity a WHERE a.contact_id = w.contact_id AND a.evaluated AND a.at <= w.start)
            FROM unnest(\(evaluated), \(starts)) AS w(contact_id, start)
            """, logger: logger).decode((UUID, Date?).self) { before[contact] = at }
        var fired: [UUID: Behaviors.Fired] = [:]
        for try await (contact, name, key, at) in try await connection.query("""
            SELECT contact_id, behavior, key, at FROM behavior_firings WHERE contact_id = ANY(\(evaluated))
            """, logger: logger).decode((UUID, String, String, Date).self) {
            guard let behavior = Behavior(rawValue: name) else { continue }
            if behavior.threshold != nil {
                fired[contact, default: .init()].lastWindow[behavior] = max(fired[contact]?.lastWindow[behavior] ?? .distantPast, at)
            } else if behavior != .returned {
                fired[contact, default: .init()].listings[behavior, default: []].insert(key)
            }
        }
        var rows: [(id: UUID, contact: UUID, firing: Behaviors.Firing)] = []
        for contact in evaluated {
            for firing in Behaviors.evaluate(activity[contact] ?? [], before: before[contact], fired: fired[contact] ?? .init()) {
                rows.append((UUID.random(), contact, firing))
            }
        }
        let now = clock.now
        if !rows.isEmpty {
            var inserted: [UUID] = []
            for try await id in try await connection.query("""
                INSERT INTO behavior_firings (id, company_id, contact_id, behavior, key, at, listing_id, event_ids, fired_at)
                SELECT f.id, f.company_id, f.contact_id, f.behavior, f.key, f.at, NULLIF(f.listing_id, ''), f.event_ids::uuid[], \(now)
                FROM unnest(\(rows.map(\.id)), \(rows.map { companyOf[$0.contact] ?? $0.contact }), \(rows.map(\.contact)),
                            \(rows.map(\.firing.behavior.rawValue)), \(rows.map(\.firing.key)), \(rows.map(\.firing.at)),
                            \(rows.map { $0.firing.listingId ?? "" }), \(rows.map { PostgresArrayLiteral.text($0.firing.eventIds.map(\.uuidString)) }))
                    AS f(id, company_id, contact_id, behavior, key, at, listing_id, event_ids)
                ON CONFLICT (contact_id, behavior, key) DO NOTHING RETURNING id
                """, logger: logger).decode(UUID.self) { inserted.append(id) }
            guard !inserted.isEmpty else { return }
            // Decided here, with the activity that made them: an alert then waits for no job
            // between its event and its delivery. What cannot be decided yet (a contact not yet
            // in the replica) or fails is left to a job each, which retries.
            var later = inserted
            try await connection.query("SAVEPOINT decide_firings", logger: logger)
            do {
                let unknown = try await self.fired(inserted, since: min(since, now), on: connection)
                try await connection.query("RELEASE SAVEPOINT decide_firings", logger: logger)
                later = Array(unknown.keys)
            } catch {
                logger.warning("deciding firings with their activity failed; a job each decides them", metadata: ["error": "\(String(reflecting: error))"])
                try await connection.query("ROLLBACK TO SAVEPOINT decide_firings", logger: logger)
            }
            guard !later.isEmpty else { return }
            try await connection.query("""
                INSERT INTO jobs (kind, payload, run_at, max_attempts, unique_key)
                SELECT \(Self.firedJob), jsonb_build_object('firingId', f), \(min(since, now)), \(JobQueue.defaultMaxAttempts), 'behavior-fired:' || f
                FROM unnest(\(later.map { $0.lowercasedString })) AS f
                ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                """, logger: logger)
            try await Wakeups.request(JobQueue.wakeup, on: connection, logger: logger)
        }
    }

    // MARK: Messages

    /// Decides a batch of firings: for each, what its guards let through (BA-3 … BA-9, BA-11),
    /// rendered now and recorded on it; their messages and timeline entries are then delivered in
    /// batches by jobs that keep them as decided. A firing whose contact the replica has not seen
    /// yet answers an error (its job is retried); one of an unassigned new lead waits for routing.
    func fired(_ firingIds: [UUID], since: Date, on connection: PostgresConnection) async throws -> [UUID: any Error] {
        guard !firingIds.isEmpty else { return [:] }
        let rows = try await connection.query("""
            SELECT f.id, f.behavior, f.listing_id, f.contact_id, f.outcome IS NOT NULL, c.status, c.created_at, cardinality(c.phones) > 0,
                   cardinality(c.emails) > 0, c.behavioral_alerts, c.assigned_agent_id, c.owner_entity_id, c.snapshot->>'firstName',
                   c.snapshot->>'lastName', c.deleted,
                   (SELECT max(m.at) FROM communication_replica m WHERE m.contact_id = f.contact_id AND m.direction = 'outbound')
            FROM behavior_firings f JOIN contact_replica c ON c.id = f.contact_id WHERE f.id = ANY(\(firingIds))
            """, logger: logger)
        // Read whole before deciding: a query on the connection while its rows still stream waits for them.
        let firings = try await rows.collect()
            .map { try $0.decode((UUID, String, String?, UUID, Bool, String, Date, Bool, Bool, Bool, UUID?, UUID, String?, String?, Bool, Date?).self) }
        var found: Set<UUID> = []
        var settingsOf: [UUID: BehaviorSettings] = [:]
        // What each firing's guards allow, first: merge values are read only for lead messages.
        var planned: [(firing: UUID, behavior: Behavior, listing: String?, contactId: UUID, agentId: UUID?, entityId: UUID, name: String,
                       settings: BehaviorSettings, plan: BehaviorMessages.Plan)] = []
        for (firingId, name, listing, contactId, done, status, createdAt, hasPhone, hasEmail, alerts, agentId, entityId, first, last, deleted,
             lastAgentContact) in firings {
            found.insert(firingId)
            guard !done, !deleted, let behavior = Behavior(rawValue: name), let status = ContactStatus(rawValue: status) else { continue }
            // A lead whose form joined its browsing is routed a moment later: its agent's alert waits for the assignment.
            if agentId == nil, status != .archive, clock.now.timeIntervalSince(createdAt) < Self.awaitingRouting {
                try await jobs.schedule(kind: Self.firedJob, payload: FiredJob(firingId: firingId), runAt: clock.now.addingTimeInterval(60),
                                        on: connection, logger: logger)
                continue
            }
            let settings: BehaviorSettings
            if let known = settingsOf[entityId] {
                settings = known
            } else {
                settings = try await Self.settings(for: entityId, on: connection, logger: logger).settings
                settingsOf[entityId] = settings
            }
            let contact = BehaviorMessages.Contact(status: status, createdAt: createdAt, hasPhone: hasPhone, hasEmail: hasEmail, behavioralAlerts: alerts,
                                                   assignedAgentId: agentId)
            let plan = BehaviorMessages.plan(behavior, contact: contact, settings: settings, lastAgentContact: lastAgentContact, now: clock.now)
            let contactName = [first, last].compactMap { $0 }.joined(separator: " ").trimmingCharacters(in: .whitespaces)
            planned.append((firingId, behavior, listing, contactId, agentId, entityId, contactName.isEmpty ? "A lead" : contactName, settings, plan))
        }
        // The contacts' merge values in one read on this connection, not a pooled one each.
        let valuesOf = try await TemplatePreviewController(client: client, logger: logger)
            .values(for: planned.filter { $0.plan.leadChannel != nil }.map(\.contactId), on: connection)
        var decided: [(decision: Decided, outcome: Outcome)] = []
        for (firingId, behavior, listing, contactId, agentId, entityId, contactName, settings, plan) in planned {
            var outcome = Outcome(leadChannel: nil, leadSuppressed: plan.leadSuppressed, agentAlerted: false, alertSuppressed: plan.alertSuppressed,
                                  messageIds: [])
            let reference = "behavior:\(firingId.lowercasedString)"
            var messages: [Outgoing] = []
            if let channel = plan.leadChannel,
               let message = try leadMessage(behavior, contactId: contactId, values: valuesOf[contactId] ?? MergeValues(), entityId: entityId,
                                             channel: channel, template: settings.template(for: behavior), reference: reference) {
                messages.append(message)
                outcome.leadChannel = channel
            } else if plan.leadChannel != nil {
                outcome.leadSuppressed = .leadMessageOff
            }
            var alert: (agent: UUID, BehaviorMessages.Alert)?
            if plan.alertAgent, let agentId {
                alert = (agentId, .init(contactId: contactId, behavior: behavior, contactName: contactName, listing: listing))
                outcome.agentAlerted = true
            }
            decided.append((Decided(firing: firingId, messages: messages, alert: alert,
                                    note: Self.timelineNote(behavior, firingId: firingId, contactId: contactId, listing: listing, outcome: outcome)),
                            outcome))
        }
        if !decided.isEmpty {
            try await connection.query("""
                UPDATE behavior_firings f SET outcome = d.outcome::jsonb FROM unnest(\(decided.map(\.decision.firing)), \(try decided.map { try JSONCoding.string($0.outcome) }))
                    AS d(id, outcome) WHERE f.id = d.id
                """, logger: logger)
            // Deliveries of at most one notifications batch each, in the order the firings were
            // decided; in each, an agent's alerts are one e-mail.
            var chunk: [Decided] = []
            var (leadMessages, agents) = (0, Set<UUID>())
            func flush() async throws {
                guard !chunk.isEmpty else { return }
                let job = Self.delivery(chunk)
                try await jobs.schedule(kind: Self.deliverJob, payload: job, runAt: min(since, clock.now), uniqueKey: "behavior-deliver:\(job.key)",
                                        on: connection, logger: logger)
                (chunk, leadMessages, agents) = ([], 0, [])
            }
            for (item, _) in decided {
                let newAgent = item.alert.map { !agents.contains($0.agent) } ?? false
                if leadMessages + agents.count + item.messages.count + (newAgent ? 1 : 0) > Self.messagesPerDelivery { try await flush() }
                chunk.append(item)
                leadMessages += item.messages.count
                if let agent = item.alert?.agent { agents.insert(agent) }
            }
            try await flush()
        }
        // A visitor identified by a lead form can fire before the contact's event reaches the
        // replica: retried (with backoff) until it has.
        var unknown: [UUID: any Error] = [:]
        let missing = firingIds.filter { !found.contains($0) }
        if !missing.isEmpty {
            for try await id in try await connection.query("SELECT id FROM behavior_firings WHERE id = ANY(\(missing)) AND outcome IS NULL", logger: logger)
                .decode(UUID.self) { unknown[id] = ContactNotYetKnown(firingId: id) }
        }
        return unknown
    }

    struct ContactNotYetKnown: Error, CustomStringConvertible {
        var firingId: UUID
        var description: String { "firing \(firingId): its contact has not reached the contact replica yet" }
    }

    /// Sends a delivery's messages in one batch (its key is the firings', so a retry is answered
    /// with the first result), records the messages' ids on their firings and writes the firings
    /// on the contacts' timelines. A batch notifications refuses is sent message by message, so
    /// one it will not take does not hold back the others.
    func deliver(_ job: DeliverJob) async throws {
        let key = "automation-behaviors-\(job.key)"
        var accepted: [(firing: UUID, message: UUID)] = []
        struct Batch: Encodable { var messages: [Outgoing] }
        struct Accepted: Decodable {
            struct Item: Decodable { var id: UUID }
            var items: [Item]
        }
        if !job.messages.isEmpty {
            let answer = try await peers.post(to: .notifications, path: "/v1/messages/batch", body: Batch(messages: job.messages),
                                              headers: [("Idempotency-Key", key)], idempotent: true)
            if try answer.succeeded(from: .notifications, "notifications"),
               let items = (try? JSONCoding.decoder.decode(Accepted.self, from: Data(answer.body.utf8)))?.items {
                accepted = zip(job.firings, items.map(\.id)).flatMap { firings, message in firings.map { ($0, message) } }
            } else {
                logger.warning("notifications refused a batch of behavior messages; sending them one by one", metadata: ["answer": "\(answer.body.prefix(300))"])
                for (index, message) in job.messages.enumerated() {
                    let one = try await peers.post(to: .notifications, path: "/v1/messages/batch", body: Batch(messages: [message]),
                                                   headers: [("Idempotency-Key", "\(key)-\(index)")], idempotent: true)
                    if try one.succeeded(from: .notifications, "notifications"),
                       let id = (try? JSONCoding.decoder.decode(Accepted.self, from: Data(one.body.utf8)))?.items.first?.id {
                        accepted += (job.firings.indices.contains(index) ? job.firings[index] : []).map { ($0, id) }
                    }
                }
            }
        }
        if !accepted.isEmpty {
            try await client.query("""
                UPDATE behavior_firings f SET outcome = jsonb_set(f.outcome, '{messageIds}', to_jsonb(m.ids))
                FROM (SELECT firing, array_agg(message::text ORDER BY n) AS ids FROM unnest(\(accepted.map(\.firing)), \(accepted.map(\.message)))
                      WITH ORDINALITY AS a(firing, message, n) GROUP BY firing) AS m
                WHERE f.id = m.firing
                """, logger: logger)
        }
        try await ServiceTimelineEntry.write(job.timeline, with: peers)
    }

    /// BA-7, BA-8: the behavior's text (or e-mail) rendered with the contact's values; notifications
    /// holds a text outside the contact's sending window (office hours). Nil when the template
    /// leaves nothing to send.
    private func leadMessage(_ behavior: Behavior, contactId: UUID, values: MergeValues, entityId: UUID, channel: MessageChannel,
                             template: BehaviorSettings.Template, reference: String) throws -> Outgoing? {
        let body = try TemplatePreviewController.parse(channel == .sms ? template.text ?? "" : template.emailBody ?? "", field: "body").render(values)
        guard !body.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return nil }
        let subject = channel == .email ? try template.emailSubject.map { try TemplatePreviewController.parse($0, field: "subject").render(values) } : nil
        return Outgoing(channel: channel, contactId: contactId, subject: subject, body: body, reference: reference,
                        window: channel == .sms ? .init(entityId: entityId) : nil)
    }

    /// The firing on the contact's timeline, once (its id is the firing's).
    static func timelineNote(_ behavior: Behavior, firingId: UUID, contactId: UUID, listing: String?, outcome: Outcome) -> TimelineNote {
        var said = ["The contact \(behavior.summary)\(listing.map { " (listing \($0))" } ?? "")."]
        if let channel = outcome.leadChannel {
            said.append(channel == .sms ? "The behavior's text was sent." : "The behavior's e-mail was sent.")
        } else if let reason = outcome.leadSuppressed {
            said.append("No message to the contact: \(Self.explain(reason)).")
        }
        if outcome.agentAlerted { said.append("The agent was alerted.") }
        var data = ["behavior": behavior.rawValue, "firingId": firingId.lowercasedString]
        if let listing { data["listingId"] = listing }
        if let reason = outcome.leadSuppressed { data["leadSuppressed"] = reason.rawValue }
        return TimelineNote(contactId: contactId, id: firingId, kind: "behavior", summary: said.joined(separator: " "), actorName: "Behavioral automation",
                            data: data)
    }

    static func explain(_ reason: BehaviorMessages.Suppression) -> String {
        switch reason {
        case .archived: "the contact is archived"
        case .statusNotMonitored: "the contact's status is not monitored"
        case .optedOut: "behavioral alerts are turned off for this contact"
        case .agentContactedRecently: "the agent reached out in the last 3 days"
        case .newContact: "the contact is less than 14 days old"
        case .leadMessageOff: "this behavior's lead message is switched off"
        case .noPhoneOrEmail: "the contact has no phone or e-mail"
        case .agentAlertOff: "this behavior's agent alert is switched off"
        case .noAgent: "no agent is assigned"
        }
    }

    /// The settings of the nearest entity up from `entityId` that has some, and that entity; the
    /// defaults (and nil) otherwise.
    static func settings(for entityId: UUID, on connection: PostgresConnection, logger: Logger) async throws -> (from: UUID?, settings: BehaviorSettings) {
        for try await (id, doc) in try await connection.query("""
            WITH RECURSIVE up AS (
                SELECT id, parent_id, 0 AS depth FROM directory_entities WHERE id = \(entityId)
                UNION ALL SELECT e.id, e.parent_id, up.depth + 1 FROM directory_entities e JOIN up ON e.id = up.parent_id WHERE up.depth < 20)
            SELECT up.id, s.doc::text FROM up JOIN behavior_settings s ON s.entity_id = up.id ORDER BY up.depth LIMIT 1
            """, logger: logger).decode((UUID, String).self) {
            return (id, try JSONCoding.decoder.decode(BehaviorSettings.self, from: Data(doc.utf8)))
        }
        return (nil, BehaviorSettings())
    }
}
