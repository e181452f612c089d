import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// BA-2 … BA-9, BA-11: evaluates a contact's new activity (a job per contact and batch), records
/// each behavior that fired once, and for each firing sends the lead message and the agent alert
/// the guards allow through notifications, recording why anything was not sent and writing the
/// firing on the contact's timeline.
struct BehaviorEngine: Sendable {
    let client: PostgresClient
    let jobs: JobQueue
    let peers: PeerClient
    let clock: any ServiceClock
    let logger: Logger

    static let evaluateJob = "automation.behaviors"
    static let evaluateBatch = 50
    static let firedJob = "automation.behavior-fired"
    /// How long a firing of an unassigned new contact waits for routing to assign it.
    static let awaitingRouting: TimeInterval = 10 * 60

    struct EvaluateJob: Codable, Sendable {
        var contactId: UUID
        var companyId: UUID
    }

    struct FiredJob: Codable, Sendable {
        var firingId: UUID
    }

    /// What a firing did, kept on it: the answer to "why did this lead get nothing".
    struct Outcome: Codable, Sendable, Hashable {
        var leadChannel: MessageChannel?
        var leadSuppressed: BehaviorMessages.Suppression?
        var agentAlerted: Bool
        var alertSuppressed: BehaviorMessages.Suppression?
        var messageIds: [UUID]
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
                try await evaluate(decoded.map(\.1), on: connection)
                return failed
            },
            JobHandler(kind: Self.firedJob) { job, connection, _ in try await fired(try job.decode(FiredJob.self).firingId, on: connection) },
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

    /// Evaluates the new activity of every contact the jobs name, set by set: a handful of
    /// statements for a batch of contacts, not a handful per contact.
    func evaluate(_ jobs: [EvaluateJob], on connection: PostgresConnection) async throws {
        let companyOf = Dictionary(jobs.map { ($0.contactId, $0.companyId) }, uniquingKeysWith: { first, _ in first })
        let contacts = companyOf.keys.map { $0.uuidString.lowercased() }.sorted()
        guard !contacts.isEmpty else { return }
        // One evaluation of a contact at a time (two batches must see each other's events), the
        // locks taken in one order so that two batches never wait on each other in a cycle.
        try await connection.query("""
            SELECT count(pg_advisory_xact_lock(hashtextextended('behaviors:' || c, 0))) FROM (SELECT c FROM unnest(\(contacts)) AS c ORDER BY c) AS s
            """, logger: logger)
        var activity: [UUID: [Behaviors.Activity]] = [:]
        for try await (contact, id, kind, at, listing) in try await connection.query("""
            SELECT contact_id, id, kind, at, doc->'listing'->>'listingId' FROM activity WHERE contact_id = ANY(\(contacts)::uuid[]) AND NOT evaluated
            """, logger: logger).decode((UUID, UUID, String, Date, String?).self) {
            guard let kind = ActivityEvent.Kind(rawValue: kind) else { continue }
            activity[contact, default: []].append(.init(id: id, kind: kind, at: at, listingId: listing, isNew: true))
        }
        guard !activity.isEmpty else { return }
        let evaluated = activity.keys.sorted { $0.uuidString < $1.uuidString }
        let starts = evaluated.map { contact in (activity[contact]?.map(\.at).min() ?? .distantPast).addingTimeInterval(-Behaviors.lookBack) }
        var viewed: [(UUID, String)] = []
        for contact in evaluated {
            for listing in Set((activity[contact] ?? []).filter { $0.kind == .propertyView }.compactMap(\.listingId)) { viewed.append((contact, listing)) }
        }
        // Each contact's recent past, and every earlier view of the listings it just viewed (for (e)).
        for try await (contact, id, kind, at, listing) in try await connection.query("""
            SELECT a.contact_id, a.id, a.kind, a.at, a.doc->'listing'->>'listingId'
            FROM activity a JOIN unnest(\(evaluated), \(starts)) AS w(contact_id, start) ON a.contact_id = w.contact_id
            WHERE a.evaluated AND (a.at > w.start OR (a.kind = 'property_view' AND (a.contact_id, a.doc->'listing'->>'listingId') IN (
                SELECT * FROM unnest(\(viewed.map(\.0)), \(viewed.map(\.1))))))
            """, logger: logger).decode((UUID, UUID, String, Date, String?).self) {
            guard let kind = ActivityEvent.Kind(rawValue: kind) else { continue }
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
            if !inserted.isEmpty {
                try await connection.query("""
                    INSERT INTO jobs (kind, payload, run_at, max_attempts, unique_key)
                    SELECT \(Self.firedJob), jsonb_build_object('firingId', f), \(now), \(JobQueue.defaultMaxAttempts), 'behavior-fired:' || f
                    FROM unnest(\(inserted.map { $0.uuidString.lowercased() })) AS f
                    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                    """, logger: logger)
                try await Wakeups.request(JobQueue.wakeup, on: connection, logger: logger)
            }
        }
        let seen = evaluated.flatMap { (activity[$0] ?? []).filter(\.isNew).map(\.id) }
        try await connection.query("UPDATE activity SET evaluated = true WHERE contact_id = ANY(\(evaluated)) AND id = ANY(\(seen))", logger: logger)
    }

    // MARK: Messages

    func fired(_ firingId: UUID, on connection: PostgresConnection) async throws {
        let rows = try await connection.query("""
            SELECT f.behavior, f.listing_id, f.contact_id, f.company_id, f.outcome IS NOT NULL, c.status, c.created_at, cardinality(c.phones) > 0,
                   cardinality(c.emails) > 0, c.behavioral_alerts, c.assigned_agent_id, c.owner_entity_id, c.snapshot->>'firstName',
                   c.snapshot->>'lastName', c.deleted
            FROM behavior_firings f JOIN contact_replica c ON c.id = f.contact_id WHERE f.id = \(firingId)
            """, logger: logger)
        var found = false
        for try await (name, listing, contactId, companyId, done, status, createdAt, hasPhone, hasEmail, alerts, agentId, entityId, first, last, deleted)
            in rows.decode((String, String?, UUID, UUID, Bool, String, Date, Bool, Bool, Bool, UUID?, UUID, String?, String?, Bool).self) {
            found = true
            guard !done, !deleted, let behavior = Behavior(rawValue: name), let status = ContactStatus(rawValue: status) else { return }
            // A lead whose form joined its browsing is routed a moment later: its agent's alert waits for the assignment.
            if agentId == nil, status != .archive, clock.now.timeIntervalSince(createdAt) < Self.awaitingRouting {
                try await jobs.schedule(kind: Self.firedJob, payload: FiredJob(firingId: firingId), runAt: clock.now.addingTimeInterval(60),
                                        on: connection, logger: logger)
                return
            }
            let settings = try await Self.settings(for: entityId, on: connection, logger: logger).settings
            var lastAgentContact: Date?
            for try await at in try await connection.query("""
                SELECT max(at) FROM communication_replica WHERE contact_id = \(contactId) AND direction = 'outbound'
                """, logger: logger).decode(Date?.self) { lastAgentContact = at }
            let contact = BehaviorMessages.Contact(status: status, createdAt: createdAt, hasPhone: hasPhone, hasEmail: hasEmail, behavioralAlerts: alerts,
                                                   assignedAgentId: agentId)
            let plan = BehaviorMessages.plan(behavior, contact: contact, settings: settings, lastAgentContact: lastAgentContact, now: clock.now)
            let contactName = [first, last].compactMap { $0 }.joined(separator: " ").trimmingCharacters(in: .whitespaces)
            var outcome = Outcome(leadChannel: plan.leadChannel, leadSuppressed: plan.leadSuppressed, agentAlerted: false,
                                  alertSuppressed: plan.alertSuppressed, messageIds: [])
            if let channel = plan.leadChannel {
                outcome.messageIds = try await sendLeadMessage(behavior, firingId: firingId, contactId: contactId, entityId: entityId, channel: channel,
                                                               template: settings.template(for: behavior), connection: connection)
            }
            if plan.alertAgent, let agentId {
                let alert = BehaviorMessages.alert(behavior, contactName: contactName.isEmpty ? "A lead" : contactName, listing: listing)
                try await UserMail(messages: [UserMail.Mail(userId: agentId, subject: alert.subject, body: alert.body,
                                                            reference: "behavior:\(firingId.uuidString.lowercased())")])
                    .send(with: peers, key: "automation-behavior-\(firingId.uuidString.lowercased())-alert")
                outcome.agentAlerted = true
            }
            try await writeTimeline(behavior, firingId: firingId, contactId: contactId, listing: listing, outcome: outcome)
            try await connection.query("""
                UPDATE behavior_firings SET outcome = \(String(decoding: try JSONCoding.encoder.encode(outcome), as: UTF8.self))::jsonb WHERE id = \(firingId)
                """, logger: logger)
        }
        // A visitor identified by a lead form can fire before the contact's event reaches the
        // replica: retried (with backoff) until it has.
        if !found, try await connection.query("SELECT 1 FROM behavior_firings WHERE id = \(firingId) AND outcome IS NULL", logger: logger)
            .collect().count == 1 {
            throw ContactNotYetKnown(firingId: firingId)
        }
    }

    struct ContactNotYetKnown: Error, CustomStringConvertible {
        var firingId: UUID
        var description: String { "firing \(firingId): its contact has not reached the contact replica yet" }
    }

    /// BA-7, BA-8: the behavior's text (or e-mail) rendered with the contact's values; notifications
    /// holds a text outside the contact's sending window, and its Idempotency-Key makes a retry
    /// send nothing twice.
    private func sendLeadMessage(_ behavior: Behavior, firingId: UUID, contactId: UUID, entityId: UUID, channel: MessageChannel,
                                 template: BehaviorSettings.Template, connection: PostgresConnection) async throws -> [UUID] {
        let values = try await TemplatePreviewController(client: client, logger: logger)
            .values(for: contactId, identity: Identity(subject: "automation", companyId: nil, role: .service, entityIds: []))
        let body = try TemplatePreviewController.parse(channel == .sms ? template.text ?? "" : template.emailBody ?? "", field: "body").render(values)
        let subject = channel == .email ? try template.emailSubject.map { try TemplatePreviewController.parse($0, field: "subject").render(values) } : nil
        // BA-7: a text goes in the office hours of the contact's entity, held until they open.
        let message = ContactMessage(channel: channel, contactId: contactId, subject: subject, body: body, reference: "behavior:\(firingId.uuidString.lowercased())",
                                     window: channel == .sms ? .officeHours(of: entityId) : nil)
        guard case .accepted(let id, _, _) = try await message.send(with: peers, key: "automation-behavior-\(firingId.uuidString.lowercased())-lead") else { return [] }
        return [id]
    }

    /// The firing on the contact's timeline, once (its id is the firing's).
    private func writeTimeline(_ behavior: Behavior, firingId: UUID, contactId: UUID, listing: String?, outcome: Outcome) async throws {
        struct Entry: Encodable {
            var id: UUID
            var kind: String
            var summary: String
            var actorName: String
            var data: [String: String]
        }
        var said = ["The contact \(behavior.summary)\(listing.map { " (listing \($0))" } ?? "")."]
        if let channel = outcome.leadChannel {
            said.append(channel == .sms ? "The behavior's text was sent." : "The behavior's e-mail was sent.")
        } else if let reason = outcome.leadSuppressed {
            said.append("No message to the contact: \(Self.explain(reason)).")
        }
        if outcome.agentAlerted { said.append("The agent was alerted.") }
        var data = ["behavior": behavior.rawValue, "firingId": firingId.uuidString.lowercased()]
        if let listing { data["listingId"] = listing }
        if let reason = outcome.leadSuppressed { data["leadSuppressed"] = reason.rawValue }
        let entry = Entry(id: firingId, kind: "behavior", summary: said.joined(separator: " "), actorName: "Behavioral automation", data: data)
        let written = try await peers.post(to: .contacts, path: "/v1/contacts/\(contactId.uuidString.lowercased())/timeline", body: entry)
        _ = try written.succeeded(from: .contacts, "contacts' timeline")
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
