import Foundation
import Hummingbird
import Logging
import Models
import PostgresNIO
import ServiceKit

/// One lead's calls to its agent (AC-1 … AC-3): planned once when the lead is a new lead with a
/// phone and an agent held by new-lead-call rules, each call a job on the service clock.
struct CallPlan: Codable, Sendable, Hashable {
    enum State: String, Codable, Sendable { case active, stopped, finished }
    var contactId: UUID
    var agentId: UUID
    var companyId: UUID
    var planned: [Date]
    /// Calls placed so far, by number (1 …).
    var placed: [Int]
    /// The call on which the agent talked to the lead or left a voicemail (the bridge answered).
    var connectedCall: Int?
    /// The call on which the agent pressed 1 and the lead is being dialed, until the dial ends.
    var bridgedCall: Int?
    var bridgedAt: Date?
    var state: State
    var stopReason: String?
    var createdAt: Date
}

struct NewLeadCalls: Sendable {
    let store: AccountabilityStore
    let jobs: JobQueue
    let peers: PeerClient
    let clock: any ServiceClock
    let logger: Logger

    static let callJob = "accountability.new-lead-call"
    static let checkJob = "accountability.new-lead-call-check"
    static let logJob = "accountability.log-bridged-call"
    /// How long after a call it is judged missed when the agent did not connect (AC-2); a call
    /// still bridged to the lead then is judged again this much later.
    static let answerWindow: TimeInterval = 20 * 60
    /// A bridge the provider never reported ending (its webhook lost) stops holding the judgement
    /// after the provider's longest call.
    static let longestBridge: TimeInterval = 4 * 3600

    struct CallJob: Codable, Sendable {
        var contactId: UUID
        var agentId: UUID
        var call: Int
        /// How many times the missed-call check has waited for a bridge still on.
        var recheck: Int?
    }

    /// A bridged call to log in contacts as the agent's outbound call (its id is the call's
    /// message's, so it is logged once).
    struct LogJob: Codable, Sendable {
        var contactId: UUID
        var agentId: UUID
        var messageId: UUID
        var call: Int
        var outcome: CallOutcome
        var seconds: Int?
        var at: Date
    }

    // MARK: events

    var eventHandlers: [EventHandler] {
        [
            EventHandler(name: "accountability.new-lead", eventType: EventType.contactCreated) { event, connection, _ in
                try await consider(try event.data(ContactChanged.self).contact, on: connection)
            },
            EventHandler(name: "accountability.lead-assigned", eventType: EventType.contactAssigned) { event, connection, _ in
                let contact = try event.data(ContactChanged.self).contact
                try await review(contact.id, lead: Self.state(contact), communication: nil, on: connection)
                try await consider(contact, on: connection)
            },
            EventHandler(name: "accountability.lead-status", eventType: EventType.contactStatusChanged) { event, connection, _ in
                let contact = try event.data(ContactChanged.self).contact
                try await review(contact.id, lead: Self.state(contact), communication: nil, on: connection)
            },
            EventHandler(name: "accountability.lead-deleted", eventType: EventType.contactDeleted) { event, connection, _ in
                var lead = Self.state(try event.data(ContactChanged.self).contact)
                lead.deleted = true
                try await review(try event.data(ContactChanged.self).contact.id, lead: lead, communication: nil, on: connection)
            },
            EventHandler(name: "accountability.bridged-call", eventType: EventType.messageDialed) { event, connection, _ in
                try await dialed(try event.data(MessageDialed.self), on: connection)
            },
            EventHandler(name: "accountability.lead-communication", eventType: EventType.communicationLogged) { event, connection, _ in
                let logged = try event.data(CommunicationLogged.self)
                try await review(logged.contact.id, lead: Self.state(logged.contact),
                                 communication: .init(channel: logged.communication.channel, direction: logged.communication.direction,
                                                      outcome: logged.communication.outcome),
                                 on: connection)
            },
        ]
    }

    static func state(_ contact: Contact) -> NewLeadCallPlan.LeadState {
        .init(status: contact.status, deleted: false, assignedAgentId: contact.assignedAgentId, hasPhone: !contact.phones.isEmpty)
    }

    /// AC-1: a new lead with a phone and an agent held by new-lead-call rules gets its calls planned.
    func consider(_ contact: Contact, on connection: PostgresConnection) async throws {
        guard contact.status == .newLead, !contact.phones.isEmpty, let agentId = contact.assignedAgentId else { return }
        // Most companies have no such rule: one read of the company's rules per delivered batch.
        let rules = try await BatchMemo.value("accountability.rules:\(contact.companyId)") {
            RulesOfCompany(rules: try await store.rules(companyId: contact.companyId, on: connection))
        }.rules
        guard rules.contains(where: \.newLeadCalls.enabled) else { return }
        guard let agent = try await store.directoryUser(agentId, on: connection) else { return }
        let entities = try await store.companyEntities(contact.companyId, on: connection)
        let parents = entities.compactMapValues(\.parentId)
        guard let held = RuleInheritance.effective(for: agent.entityIds, parents: parents, rules: RuleInheritance.byEntity(rules)),
              held.newLeadCalls.enabled, !held.excludedAgentIds.contains(agentId),
              let office = Self.office(of: agent.entityIds, in: entities) else { return }
        let now = clock.now
        let times = NewLeadCallPlan.times(created: contact.createdAt, calls: held.newLeadCalls.calls, hours: office).filter { $0 >= now.addingTimeInterval(-60) }
        let plan = CallPlan(contactId: contact.id, agentId: agentId, companyId: contact.companyId, planned: times, placed: [], connectedCall: nil,
                            state: times.isEmpty ? .finished : .active,
                            stopReason: times.isEmpty ? "the office is not open in the lead's first 3 days" : nil, createdAt: now)
        guard try await store.insert(plan, on: connection) else { return }
        for (index, at) in times.enumerated() {
            try await jobs.schedule(kind: Self.callJob, payload: CallJob(contactId: contact.id, agentId: agentId, call: index + 1), runAt: max(at, now),
                                    uniqueKey: Self.key(contact.id, agentId, index + 1), on: connection, logger: logger)
        }
    }

    final class RulesOfCompany: Sendable {
        let rules: [AccountabilityRules]
        init(rules: [AccountabilityRules]) { self.rules = rules }
    }

    /// The office hours that hold an agent: of their first entity that is an office, or the office above it.
    static func office(of agentEntities: [UUID], in entities: [UUID: AccountabilityStore.DirectoryEntity]) -> WeeklyWindow? {
        for start in agentEntities {
            var current = entities[start]
            while let entity = current {
                if entity.kind == .office || entity.parentId == nil {
                    return WeeklyWindow.officeHours(entity.officeHours, timeZone: TimeZone(identifier: entity.timeZone) ?? .gmt)
                }
                current = entity.parentId.flatMap { entities[$0] }
            }
        }
        return nil
    }

    static func key(_ contactId: UUID, _ agentId: UUID, _ call: Int) -> String { "nlc:\(contactId):\(agentId):\(call)" }

    /// AC-3: stops a lead's active plans as soon as a condition holds; queued calls are withdrawn.
    func review(_ contactId: UUID, lead: NewLeadCallPlan.LeadState, communication: NewLeadCallPlan.Communication?, on connection: PostgresConnection) async throws {
        for var plan in try await store.activePlans(contactId: contactId, on: connection) {
            let communications = (communication.map { [$0] } ?? []) + (try await store.communications(contactId: contactId, on: connection))
            guard let reason = NewLeadCallPlan.stopReason(lead: lead, agentId: plan.agentId, communications: communications,
                                                          connected: plan.connectedCall != nil) else { continue }
            try await stop(&plan, reason: reason, on: connection)
        }
    }

    func stop(_ plan: inout CallPlan, reason: String, on connection: PostgresConnection) async throws {
        plan.state = .stopped
        plan.stopReason = reason
        try await store.update(plan, on: connection)
        for call in 1...max(plan.planned.count, 1) where !plan.placed.contains(call) {
            try await jobs.cancel(uniqueKey: Self.key(plan.contactId, plan.agentId, call), on: connection, logger: logger)
        }
    }

    // MARK: jobs

    var jobHandlers: [JobHandler] {
        [
            JobHandler(kind: Self.callJob) { job, connection, _ in try await place(try job.decode(CallJob.self), on: connection) },
            JobHandler(kind: Self.checkJob) { job, connection, _ in try await checkAnswered(try job.decode(CallJob.self), on: connection) },
            JobHandler(kind: Self.logJob) { job, _, _ in try await logBridged(try job.decode(LogJob.self)) },
        ]
    }

    /// One call: checked against AC-3 at the moment it is due, then placed through notifications
    /// (once, whatever retries: an Idempotency-Key per call).
    func place(_ job: CallJob, on connection: PostgresConnection) async throws {
        guard var plan = try await store.lockPlan(job.contactId, job.agentId, on: connection), plan.state == .active,
              !plan.placed.contains(job.call) else { return }
        guard let contact = try await store.contactSnapshot(job.contactId, on: connection) else {
            return try await stop(&plan, reason: "the lead was deleted", on: connection)
        }
        let lead = NewLeadCallPlan.LeadState(status: contact.status, deleted: false, assignedAgentId: contact.assignedAgentId, hasPhone: !contact.phones.isEmpty)
        if let reason = NewLeadCallPlan.stopReason(lead: lead, agentId: plan.agentId, communications: try await store.communications(contactId: contact.id, on: connection),
                                                   connected: plan.connectedCall != nil) {
            return try await stop(&plan, reason: reason, on: connection)
        }
        struct NewMessage: Encodable {
            var channel: MessageChannel
            var userId: UUID
            var body: String
            var purpose: MessagePurpose
            var gather: GatherSpec
            var reference: String
        }
        let reference = "newleadcall:\(job.contactId.lowercasedString):\(job.agentId.lowercasedString):\(job.call)"
        let sent = try await peers.post(to: .notifications, path: "/v1/messages",
                                        body: NewMessage(channel: .voice, userId: job.agentId, body: NewLeadCallPlan.script(contact), purpose: .automated,
                                                         gather: GatherSpec(numDigits: 1, timeoutSeconds: 10, answeredBy: .accountability),
                                                         reference: reference),
                                        headers: [("Idempotency-Key", "accountability-" + reference.replacingOccurrences(of: ":", with: "-"))], idempotent: true)
        guard try sent.succeeded(from: .notifications, "notifications' call") else {
            return try await stop(&plan, reason: "the agent cannot be called (notifications answered \(sent.status))", on: connection)
        }
        plan.placed.append(job.call)
        try await store.update(plan, on: connection)
        try await jobs.schedule(kind: Self.checkJob, payload: job, runAt: clock.now.addingTimeInterval(Self.answerWindow),
                                uniqueKey: "nlc-check:\(job.contactId):\(job.agentId):\(job.call)", on: connection, logger: logger)
    }

    /// AC-2: a call the agent missed or did not connect goes on the lead's timeline; no other penalty.
    func checkAnswered(_ job: CallJob, on connection: PostgresConnection) async throws {
        guard var plan = try await store.lockPlan(job.contactId, job.agentId, on: connection) else { return }
        // Still on the phone with the lead: judged when the bridge has ended.
        if plan.bridgedCall == job.call, let since = plan.bridgedAt, clock.now.timeIntervalSince(since) < Self.longestBridge {
            var again = job
            again.recheck = (job.recheck ?? 0) + 1
            try await jobs.schedule(kind: Self.checkJob, payload: again, runAt: clock.now.addingTimeInterval(Self.answerWindow),
                                    uniqueKey: "nlc-check:\(job.contactId):\(job.agentId):\(job.call):\(again.recheck ?? 0)", on: connection, logger: logger)
            return
        }
        if plan.connectedCall != job.call {
            struct Entry: Encodable {
                var id: UUID
                var kind: String
                var summary: String
                var actorName: String
                var data: [String: Int]
            }
            let name = try await store.directoryUser(job.agentId, on: connection)?.name ?? "the agent"
            let entry = Entry(id: Self.entryId(job), kind: "accountability_call",
                              summary: "The system tried to reach \(name) about this new lead (call \(job.call) of \(plan.planned.count)); they did not connect.",
                              actorName: "Accountability", data: ["call": job.call, "of": plan.planned.count])
            let written = try await peers.post(to: .contacts, path: "/v1/contacts/\(job.contactId.lowercasedString)/timeline", body: entry)
            _ = try written.succeeded(from: .contacts, "contacts' timeline")
        }
        if plan.state == .active, job.call >= plan.planned.count {
            plan.state = .finished
            try await store.update(plan, on: connection)
        }
    }

    /// The timeline entry of one call: the same id on every retry, so it is written once.
    static func entryId(_ job: CallJob) -> UUID {
        var bytes = [UInt8](repeating: 0, count: 16)
        let (c, a) = (job.contactId.uuid, job.agentId.uuid)
        let left = [c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8, c.9, c.10, c.11, c.12, c.13, c.14, c.15]
        let right = [a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7, a.8, a.9, a.10, a.11, a.12, a.13, a.14, a.15]
        for index in 0..<16 { bytes[index] = left[index] ^ right[(index + 5) % 16] }
        bytes[15] ^= UInt8(truncatingIfNeeded: job.call)
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    // MARK: the agent's keys

    /// The lead, agent and call number a new-lead call's reference names.
    static func call(of reference: String?) -> (contactId: UUID, agentId: UUID, call: Int)? {
        let parts = (reference ?? "").split(separator: ":")
        guard parts.count == 4, parts[0] == "newleadcall", let contactId = UUID(uuidString: String(parts[1])),
              let agentId = UUID(uuidString: String(parts[2])), let call = Int(parts[3]) else { return nil }
        return (contactId, agentId, call)
    }

    /// AC-1: 1 bridges the agent to the lead (notifications dials the lead's phone and reports how
    /// the dial ended, `dialed`); anything else ends the call.
    func keypress(_ press: VoiceKeypress) async throws -> VoiceReply {
        guard let (contactId, agentId, call) = Self.call(of: press.reference) else {
            throw APIError.validation("reference", "not a new-lead call of this service")
        }
        guard press.digits.hasPrefix("1") else { return VoiceReply(say: "All right. The lead is waiting for your call. Goodbye.") }
        try await store.client.transaction(logger: logger) { connection in
            guard var plan = try await store.lockPlan(contactId, agentId, on: connection) else { return }
            plan.bridgedCall = call
            plan.bridgedAt = clock.now
            try await store.update(plan, on: connection)
        }
        return VoiceReply(say: "Connecting you to the lead now.", dialContactId: contactId)
    }

    /// AC-3: the bridge to the lead ended. Answered — the agent talked to the lead, or left a
    /// voicemail when a machine answered — the calls stop; otherwise they go on as planned (and
    /// the check judges the call missed, AC-2). Either way the agent's call is logged with the
    /// lead (BA-5, BA-10 and AC-7 count it), except a dial that never rang.
    func dialed(_ dial: MessageDialed, on connection: PostgresConnection) async throws {
        guard let (contactId, agentId, call) = Self.call(of: dial.reference), var plan = try await store.lockPlan(contactId, agentId, on: connection)
        else { return }
        if plan.bridgedCall == call {
            plan.bridgedCall = nil
            plan.bridgedAt = nil
        }
        let outcome: CallOutcome?
        if dial.answered {
            outcome = dial.reachedMachine ? .leftVoicemail : .contacted
            plan.connectedCall = call
            if plan.state == .active {
                let said = dial.reachedMachine ? "the agent left the lead a voicemail" : "the agent talked to the lead"
                try await stop(&plan, reason: "\(said) (call \(call), connected on 1)", on: connection)
            } else {
                try await store.update(plan, on: connection)
            }
        } else {
            outcome = dial.status == "busy" || dial.status == "no-answer" ? .noAnswer : nil
            try await store.update(plan, on: connection)
        }
        if let outcome {
            try await jobs.schedule(kind: Self.logJob, payload: LogJob(contactId: contactId, agentId: agentId, messageId: dial.messageId, call: call,
                                                                      outcome: outcome, seconds: dial.seconds, at: dial.at),
                                    runAt: clock.now, uniqueKey: "nlc-log:\(dial.messageId)", on: connection, logger: logger)
        }
    }

    /// The bridged call on the lead's record, as the agent's own outbound call.
    func logBridged(_ job: LogJob) async throws {
        struct Logged: Encodable {
            var id: UUID
            var channel = "call"
            var direction = "outbound"
            var outcome: CallOutcome
            var userId: UUID
            var body: String
            var at: Date
        }
        let length = job.seconds.map { " (\($0 / 60) min \($0 % 60) s)" } ?? ""
        let answer = try await peers.post(to: .contacts, path: "/v1/contacts/\(job.contactId.lowercasedString)/communications",
                                          body: Logged(id: job.messageId, outcome: job.outcome, userId: job.agentId,
                                                       body: "Connected by new-lead call \(job.call) when the agent pressed 1\(length).", at: job.at))
        // A lead deleted meanwhile has no record to log on.
        if answer.status == 404 { return }
        _ = try answer.succeeded(from: .contacts, "contacts' communications")
    }
}

/// Notifications asks what a new-lead call's keys did (`GatherSpec.answeredBy`).
struct VoiceController {
    let calls: NewLeadCalls

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/voice/keypresses") { request, context -> VoiceReply in
            guard try context.requireIdentity().isService else { throw APIError.forbidden }
            return try await calls.keypress(try await request.decodeJSON(as: VoiceKeypress.self, context: context))
        }
    }
}

extension VoiceReply: ResponseEncodable {}
