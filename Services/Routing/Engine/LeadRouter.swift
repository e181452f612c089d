import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit
import Synchronization

/// Routes new leads (RT-1 … RT-19): decides in the transaction of the event that announced the
/// lead, records why, and leaves the calls to contacts and notifications to jobs, so a decision
/// is never lost and never made twice. Offers, their windows and timeouts are jobs on the
/// service clock.
struct LeadRouter: Sendable {
    let store: RoutingStore
    let jobs: JobQueue
    let clock: any ServiceClock
    /// A uniform draw in [0, 1) for weighted distribution (RT-9); injectable for tests.
    let random: @Sendable () -> Double
    let logger: Logger

    // MARK: events

    var eventHandlers: [EventHandler] {
        [
            EventHandler(name: "routing.new-lead", eventType: EventType.contactCreated) { event, connection, _ in
                try await newLead(try event.data(ContactChanged.self).contact, on: connection)
            },
            EventHandler(name: "routing.contact-details", eventType: EventType.contactUpdated) { event, connection, _ in
                try await detailsArrived(try event.data(ContactChanged.self).contact, on: connection)
            },
            EventHandler(name: "routing.assigned-by-hand", eventType: EventType.contactAssigned) { event, connection, _ in
                try await assignedElsewhere(try event.data(ContactChanged.self), on: connection)
            },
            EventHandler(name: "routing.archived", eventType: EventType.contactStatusChanged) { event, connection, _ in
                try await archived(try event.data(ContactChanged.self).contact, on: connection)
            },
        ]
    }

    /// RT-5: only leads from a source are routed; the others are recorded as not routed, so an
    /// admin who asks learns why.
    func newLead(_ contact: Contact, on connection: PostgresConnection) async throws {
        guard try await !alreadyRouted(contact.id, on: connection) else { return }
        guard contact.origin.isSource else {
            let now = clock.now
            let routing = LeadRouting(contactId: contact.id, companyId: contact.companyId, entityId: contact.ownerEntityId, round: 1, state: .notRouted,
                                      queue: [], channels: [], skipListingAgent: false, rules: [],
                                      summary: "Not routed: the lead was \(contact.origin == .import ? "imported" : "entered by hand"); only leads from a source (website, dropbox, zapier) are routed.",
                                      startedAt: now, updatedAt: now)
            try await store.save(routing, logging: RoutingLogEntry(at: now, round: 1, kind: .notRouted, summary: routing.summary), on: connection)
            return
        }
        try await route(contact, round: 1, skipListingAgent: false, on: connection)
    }

    /// The new leads of a delivered batch that routing already holds (a copy of an event the
    /// inbox no longer remembers), read once for the batch rather than once a lead; a lead is
    /// counted in as soon as it is routed, so a second copy in the batch is not routed again.
    private func alreadyRouted(_ contactId: UUID, on connection: PostgresConnection) async throws -> Bool {
        final class Routed: Sendable {
            let ids: Mutex<Set<UUID>>
            /// The contacts whose routings were looked for; any other is looked up alone.
            let asked: Set<UUID>
            init(ids: Set<UUID>, asked: Set<UUID>) {
                self.ids = Mutex(ids)
                self.asked = asked
            }
        }
        let routed = try await BatchMemo.value("routing.routed") {
            let asked = Set(BatchMemo.events(ofType: EventType.contactCreated).compactMap(\.header.subjectId) + [contactId])
            return Routed(ids: try await store.routedContacts(Array(asked), on: connection), asked: asked)
        }
        let known = routed.asked.contains(contactId)
            ? routed.ids.withLock { $0.contains(contactId) }
            : try await !store.routedContacts([contactId], on: connection).isEmpty
        if !known { routed.ids.withLock { _ = $0.insert(contactId) } }
        return known
    }

    /// RT-17: an address-only seller lead is routed once an e-mail or phone arrives.
    func detailsArrived(_ contact: Contact, on connection: PostgresConnection) async throws {
        guard !contact.emails.isEmpty || !contact.phones.isEmpty,
              let routing = try await store.lockRouting(contact.id, on: connection), routing.state == .awaitingContactInfo else { return }
        try await route(contact, round: routing.round + 1, skipListingAgent: false, on: connection)
    }

    /// Someone other than routing gave the lead an owner while offers were out or while it
    /// waited with the admin: the offers are withdrawn and routing stops, so nobody accepts a
    /// lead that already has an owner and no timeout hands it to a third agent.
    func assignedElsewhere(_ change: ContactChanged, on connection: PostgresConnection) async throws {
        guard !(change.actor.kind == .service && change.actor.id == ServiceName.routing.rawValue),
              var routing = try await store.lockRouting(change.contact.id, on: connection),
              routing.state == .offering || routing.state == .awaitingContactInfo else { return }
        let now = clock.now
        let contact = change.contact
        _ = try await store.closeOpenOffers(contactId: contact.id, as: .closed, at: now, on: connection)
        try await jobs.cancel(uniqueKey: "timeout:\(contact.id):\(routing.round)", on: connection, logger: logger)
        let who = change.actor.name ?? (change.actor.kind == .user ? "An admin" : change.actor.id)
        let owner: String
        if let agentId = contact.assignedAgentId {
            routing.state = .assigned
            routing.assignedAgentId = agentId
            owner = try await store.agentName(agentId, on: connection) ?? "another agent"
        } else if let pondId = contact.pondId {
            routing.state = .pond
            routing.assignedAgentId = nil
            routing.pondId = pondId
            owner = "a pond"
        } else {
            routing.state = .unassigned
            routing.assignedAgentId = nil
            owner = "nobody"
        }
        routing.queue = []
        routing.updatedAt = now
        routing.summary += " \(who) then assigned the lead by hand to \(owner), so routing stopped and the open offers were withdrawn."
        try await store.save(routing, logging: RoutingLogEntry(at: now, round: routing.round, kind: .reassigned, agentId: contact.assignedAgentId,
                                                               summary: "\(who) assigned the lead by hand to \(owner); the open offers were withdrawn."),
                             on: connection)
    }

    /// ST-7: archiving a lead stops its routing: open offers are withdrawn, no timeout hands it
    /// on, and an address-only seller is no longer waiting for details.
    func archived(_ contact: Contact, on connection: PostgresConnection) async throws {
        guard contact.status == .archive, var routing = try await store.lockRouting(contact.id, on: connection),
              routing.state == .offering || routing.state == .awaitingContactInfo else { return }
        let now = clock.now
        _ = try await store.closeOpenOffers(contactId: contact.id, as: .closed, at: now, on: connection)
        try await jobs.cancel(uniqueKey: "timeout:\(contact.id):\(routing.round)", on: connection, logger: logger)
        routing.state = .notRouted
        routing.queue = []
        routing.updatedAt = now
        routing.summary += " The lead was then archived, so routing stopped and the open offers were withdrawn."
        try await store.save(routing, logging: RoutingLogEntry(at: now, round: routing.round, kind: .notRouted,
                                                               summary: "The lead was archived; routing stopped and the open offers were withdrawn."),
                             on: connection)
    }

    // MARK: the decision

    /// Read once per delivered batch: a burst of leads for one office reads its directory,
    /// settings and rules once.
    func scope(for contact: Contact, on connection: PostgresConnection) async throws -> RoutingScope {
        try await BatchMemo.value("routing.scope:\(contact.companyId):\(contact.ownerEntityId)") {
            try await readScope(for: contact, on: connection)
        }
    }

    private func readScope(for contact: Contact, on connection: PostgresConnection) async throws -> RoutingScope {
        guard let entity = try await store.scope(entityId: contact.ownerEntityId, companyId: contact.companyId, on: connection) else {
            // The directory replica has not caught up: fail, and the event is delivered again.
            throw APIError.conflict("entity \(contact.ownerEntityId) is not known to routing yet", code: "replica_behind")
        }
        let agents = try await store.agents(companyId: contact.companyId, on: connection)
        let tree = Set(entity.tree)
        let open = TimeZone(identifier: entity.timeZone).map { WeeklyWindow.officeHours(entity.hours, timeZone: $0).isOpen(at: clock.now) } ?? true
        return RoutingScope(entityId: contact.ownerEntityId, entityName: entity.name, officeOpen: open,
                            agents: Dictionary(agents.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first }),
                            members: agents.filter { !tree.isDisjoint(with: $0.entityIds) },
                            settings: entity.settings, rules: entity.rules)
    }

    /// Decides with `LeadDecider` (pure) and carries the decision out: the routing, its log line,
    /// the round robin position, the offers and the jobs, all in the caller's transaction.
    func route(_ contact: Contact, round: Int, skipListingAgent: Bool, on connection: PostgresConnection) async throws {
        var scope = try await scope(for: contact, on: connection)
        if !scope.rules.contains(where: \.isDefault) {
            try await store.ensureDefaultRule(companyId: contact.companyId, entityId: scope.entityId, now: clock.now, on: connection)
            BatchMemo.clear()
            scope.rules = try await store.rules(entityId: scope.entityId, on: connection)
        }
        var input = LeadDecider.Input(contact: contact, round: round, skipListingAgent: skipListingAgent, scope: scope, now: clock.now, draw: random())
        var decision: RoutingDecision
        while true {
            switch LeadDecider.decide(input) {
            case .needsPosition(let ruleId):
                input.positions[ruleId] = try await store.lockPosition(ruleId: ruleId, on: connection)
                continue
            case .decided(let decided):
                decision = decided
            }
            break
        }
        if let move = decision.position { try await store.setPosition(ruleId: move.ruleId, move.next, on: connection) }
        try await carryOut(decision, scope: scope, contact: contact, on: connection)
    }

    private func carryOut(_ decision: RoutingDecision, scope: RoutingScope, contact: Contact, on connection: PostgresConnection) async throws {
        var routing = decision.routing
        let now = clock.now
        switch decision.action {
        case .assign(let agentId, let lenderId, let channels):
            guard let agent = scope.agents[agentId] else { return }
            try await assign(&routing, to: agent, lender: lenderId, channels: channels, scope: scope, contact: contact, on: connection)
        case .hold(let adminId):
            try await store.save(routing, logging: RoutingLogEntry(at: now, round: routing.round, kind: .held, agentId: adminId, summary: routing.summary),
                                 on: connection)
            if let adminId {
                try await scheduleAssignment(routing, agentId: adminId, pondId: nil, lenderId: nil, reason: "address-only seller lead, kept with the admin",
                                             on: connection)
            }
        case .pond(let pondId, let lenderId):
            try await store.save(routing, logging: RoutingLogEntry(at: now, round: routing.round, kind: .pond, summary: routing.summary),
                                 job: try assignment(routing, agentId: nil, pondId: pondId, lenderId: lenderId,
                                                     reason: "routing rule \"\(routing.ruleName ?? "")\""),
                                 on: connection)
        case .offer(let offers, let timeoutAt):
            try await store.save(routing, on: connection)
            for planned in offers {
                guard let agent = scope.agents[planned.agentId] else { continue }
                try await offer(routing, to: agent, expires: planned.expiresAt, scope: scope, contact: contact, on: connection)
            }
            try await jobs.schedule(kind: Self.timeoutJob, payload: RoundJob(contactId: contact.id, round: routing.round), runAt: timeoutAt,
                                    uniqueKey: "timeout:\(contact.id):\(routing.round)", on: connection, logger: logger)
        case .unassigned:
            try await store.save(routing, logging: RoutingLogEntry(at: now, round: routing.round, kind: .unassigned, summary: routing.summary), on: connection)
        case .notRouted:
            try await store.save(routing, logging: RoutingLogEntry(at: now, round: routing.round, kind: .notRouted, summary: routing.summary), on: connection)
        }
    }

    // MARK: assignments and offers

    private func assign(_ routing: inout LeadRouting, to agent: Agent, lender: UUID?, channels: [DeliveryChannel], scope: RoutingScope, contact: Contact,
                        on connection: PostgresConnection) async throws {
        routing.state = .assigned
        routing.assignedAgentId = agent.id
        routing.updatedAt = clock.now
        // The agent is told by the job that writes the assignment: one job, not two, for the
        // commonest routing, the two requests still sent side by side. The job is written by the
        // statement that saves the decision.
        let notice = NoticeJob(contactId: contact.id, agentId: agent.id, offerId: nil, round: routing.round,
                               channels: Distributor.channels(channels, prefersPush: agent.prefersPush, officeOpen: scope.officeOpen))
        let job = try assignment(routing, agentId: agent.id, pondId: nil, lenderId: lender, reason: routing.ruleName.map { "routing rule \"\($0)\"" } ?? "routing",
                                 notice: notice.allChannels.isEmpty ? nil : notice)
        try await store.save(routing, logging: RoutingLogEntry(at: clock.now, round: routing.round, kind: .assigned, agentId: agent.id, summary: routing.summary),
                             job: job, on: connection)
    }

    func offer(_ routing: LeadRouting, to agent: Agent, expires: Date, scope: RoutingScope, contact: Contact, on connection: PostgresConnection) async throws {
        let now = clock.now
        let offer = Offer(id: UUID.random(), contactId: contact.id, companyId: contact.companyId, round: routing.round, agentId: agent.id, ruleId: routing.ruleId,
                          mode: routing.mode ?? .sequential, state: .open, offeredAt: now, expiresAt: expires, decidedAt: nil)
        try await store.insert(offer, on: connection)
        try await store.log(RoutingLogEntry(at: now, round: routing.round, kind: .offered, agentId: agent.id, offerId: offer.id,
                                            summary: "Offered to \(agent.name) until \(RFC3339.string(from: expires))."), contactId: contact.id, on: connection)
        if offer.mode != .blast {
            try await jobs.schedule(kind: Self.expiryJob, payload: OfferJob(offerId: offer.id), runAt: expires, uniqueKey: "expiry:\(offer.id)",
                                    on: connection, logger: logger)
        }
        try await scheduleNotice(NoticeJob(contactId: contact.id, agentId: agent.id, offerId: offer.id, round: routing.round,
                                           channels: Distributor.channels(routing.channels, prefersPush: agent.prefersPush, officeOpen: scope.officeOpen)), on: connection)
    }

    /// The job that writes a decision into contacts (and tells the agent, with `notice`), once per round.
    private func assignment(_ routing: LeadRouting, agentId: UUID?, pondId: UUID?, lenderId: UUID?, reason: String, notice: NoticeJob? = nil) throws -> ScheduledJob {
        try ScheduledJob(kind: Self.assignJob,
                         payload: AssignJob(contactId: routing.contactId, agentId: agentId, pondId: pondId, lenderId: lenderId, reason: reason, notice: notice),
                         runAt: clock.now, maxAttempts: JobQueue.defaultMaxAttempts, uniqueKey: "assign:\(routing.contactId):\(routing.round)")
    }

    private func scheduleAssignment(_ routing: LeadRouting, agentId: UUID?, pondId: UUID?, lenderId: UUID?, reason: String,
                                    on connection: PostgresConnection) async throws {
        try await jobs.schedule(try assignment(routing, agentId: agentId, pondId: pondId, lenderId: lenderId, reason: reason), on: connection, logger: logger)
    }

    private func scheduleNotice(_ notice: NoticeJob, on connection: PostgresConnection) async throws {
        let subject = notice.offerId.map { "offer:\($0)" } ?? "lead:\(notice.contactId):\(notice.round)"
        guard !notice.allChannels.isEmpty else { return }
        try await jobs.schedule(kind: Self.noticeJob, payload: notice, runAt: clock.now, uniqueKey: "notice:\(subject)",
                                maxAttempts: Self.noticeAttempts, on: connection, logger: logger)
    }

    // MARK: answers

    enum Answer: String, Codable, Sendable {
        case accepted
        /// The same agent accepted before: nothing changes.
        case alreadyYours = "already_yours"
        case takenByOther = "taken_by_other"
        case declined
        case expired
    }

    /// RT-13, RT-15: accept or decline one offer. The lead's routing row is locked, so
    /// simultaneous answers are decided one after the other; the unique index on accepted
    /// offers is the last guard.
    func answer(_ offerId: UUID, agentId: UUID, accept: Bool, on connection: PostgresConnection) async throws -> (Answer, Offer) {
        guard let first = try await store.offer(offerId, on: connection), first.agentId == agentId else { throw APIError.notFound("offer \(offerId)") }
        guard var routing = try await store.lockRouting(first.contactId, on: connection),
              let offer = try await store.offer(offerId, on: connection) else { throw APIError.notFound("offer \(offerId)") }
        let now = clock.now
        switch offer.state {
        case .accepted: return (.alreadyYours, offer)
        case .declined: return (.declined, offer)
        case .closed: return (routing.state == .assigned && routing.assignedAgentId != agentId ? .takenByOther : .expired, offer)
        case .lapsed, .timedOut: return (.expired, offer)
        case .open: break
        }
        guard routing.state == .offering, routing.round == offer.round, now < offer.expiresAt else { return (.expired, offer) }
        let agentName = try await store.agentName(agentId, on: connection) ?? "The agent"
        guard accept else {
            try await store.decide(offer.id, .declined, at: now, on: connection)
            try await store.log(RoutingLogEntry(at: now, round: offer.round, kind: .declined, agentId: agentId, offerId: offer.id, summary: "\(agentName) declined."),
                                contactId: offer.contactId, on: connection)
            try await moveOn(&routing, after: offer, on: connection)
            var declined = offer
            declined.state = .declined
            declined.decidedAt = now
            return (.declined, declined)
        }
        try await store.decide(offer.id, .accepted, at: now, on: connection)
        _ = try await store.closeOpenOffers(contactId: offer.contactId, as: .closed, at: now, on: connection)
        routing.state = .assigned
        routing.assignedAgentId = agentId
        routing.queue = []
        routing.updatedAt = now
        routing.summary += " \(agentName) accepted."
        try await store.save(routing, logging: RoutingLogEntry(at: now, round: offer.round, kind: .accepted, agentId: agentId, offerId: offer.id,
                                                               summary: "\(agentName) accepted the lead."), on: connection)
        try await jobs.cancel(uniqueKey: "timeout:\(offer.contactId):\(offer.round)", on: connection, logger: logger)
        // RT-6: the rule's lender, else the accepting agent's own.
        let lender = if let rule = routing.lenderId { rule } else { try await store.ownLender(of: agentId, on: connection) }
        try await scheduleAssignment(routing, agentId: agentId, pondId: nil, lenderId: lender,
                                     reason: "accepted the offer of \(routing.ruleName.map { "routing rule \"\($0)\"" } ?? "the listing")", on: connection)
        var accepted = offer
        accepted.state = .accepted
        accepted.decidedAt = now
        return (.accepted, accepted)
    }

    /// After a decline or a lapsed window: the next agent, or the timeout agent when nobody is left.
    private func moveOn(_ routing: inout LeadRouting, after offer: Offer, on connection: PostgresConnection) async throws {
        guard let contact = try await store.contact(routing.contactId, on: connection) else { return }
        switch routing.mode {
        case .listing:
            // RT-19: routed again without the listing-agent step.
            try await route(contact, round: routing.round + 1, skipListingAgent: true, on: connection)
        case .blast:
            let open = try await store.offers(contactId: routing.contactId, on: connection).filter { $0.round == routing.round && $0.state == .open }
            if open.isEmpty { try await timeOut(&routing, contact: contact, because: "every agent declined", on: connection) }
        case .sequential, nil:
            let scope = try await scope(for: contact, on: connection)
            guard let (next, queue) = LeadDecider.nextOffer(routing, scope: scope, now: clock.now), let agent = scope.agents[next.agentId] else {
                routing.queue = []
                return try await timeOut(&routing, contact: contact, because: "no agent is left to offer it to", scope: scope, on: connection)
            }
            routing.queue = queue
            try await store.save(routing, on: connection)
            try await self.offer(routing, to: agent, expires: next.expiresAt, scope: scope, contact: contact, on: connection)
        }
    }

    /// RT-14: the timeout agent gets the lead without acceptance.
    private func timeOut(_ routing: inout LeadRouting, contact: Contact, because reason: String, scope known: RoutingScope? = nil,
                         on connection: PostgresConnection) async throws {
        let now = clock.now
        for id in try await store.closeOpenOffers(contactId: contact.id, as: .timedOut, at: now, on: connection) {
            try await store.log(RoutingLogEntry(at: now, round: routing.round, kind: .timedOut, offerId: id, summary: "The offer timed out."), contactId: contact.id, on: connection)
        }
        let scope = if let known { known } else { try await self.scope(for: contact, on: connection) }
        guard let decision = LeadDecider.timedOut(routing, because: reason, scope: scope) else { return }
        try await jobs.cancel(uniqueKey: "timeout:\(contact.id):\(routing.round)", on: connection, logger: logger)
        routing = decision.routing
        try await carryOut(decision, scope: scope, contact: contact, on: connection)
    }

    // MARK: jobs

    static let assignJob = "routing.assign"
    static let noticeJob = "routing.notice"
    static let expiryJob = "routing.offer-expiry"
    static let timeoutJob = "routing.timeout"
    static let followUpJob = "routing.follow-up"

    struct AssignJob: Codable, Sendable {
        var contactId: UUID
        var agentId: UUID?
        var pondId: UUID?
        var lenderId: UUID?
        var reason: String
        /// The new agent's notice, sent by the same job (absent from jobs written before).
        var notice: NoticeJob?
    }

    /// A notice stops being retried after this many attempts, whichever job carries it: told
    /// hours late, an agent has long lost the lead's moment.
    static let noticeAttempts = 8

    /// Every channel of one notice or offer to one agent, in one job: one claim and one commit
    /// instead of one per channel, each channel still sent under its own idempotency key.
    struct NoticeJob: Codable, Sendable {
        var contactId: UUID
        var agentId: UUID
        var offerId: UUID?
        var round: Int
        var channels: [DeliveryChannel]?
        /// Jobs written before notices were grouped name one channel.
        var channel: DeliveryChannel?

        init(contactId: UUID, agentId: UUID, offerId: UUID?, round: Int, channels: [DeliveryChannel]) {
            self.contactId = contactId
            self.agentId = agentId
            self.offerId = offerId
            self.round = round
            self.channels = channels
        }

        var allChannels: [DeliveryChannel] { channels ?? channel.map { [$0] } ?? [] }
    }

    struct OfferJob: Codable, Sendable {
        var offerId: UUID
    }

    struct RoundJob: Codable, Sendable {
        var contactId: UUID
        var round: Int
    }

    /// An agent's window passed without an answer (RT-13).
    func expire(_ job: OfferJob, on connection: PostgresConnection) async throws {
        guard let first = try await store.offer(job.offerId, on: connection),
              var routing = try await store.lockRouting(first.contactId, on: connection),
              let offer = try await store.offer(job.offerId, on: connection),
              offer.state == .open, routing.state == .offering, routing.round == offer.round else { return }
        let now = clock.now
        try await store.decide(offer.id, .lapsed, at: now, on: connection)
        let name = try await store.agentName(offer.agentId, on: connection) ?? "The agent"
        try await store.log(RoutingLogEntry(at: now, round: offer.round, kind: .lapsed, agentId: offer.agentId, offerId: offer.id,
                                            summary: "\(name) did not answer within the window."), contactId: offer.contactId, on: connection)
        try await moveOn(&routing, after: offer, on: connection)
    }

    /// The rule's timeout passed with nobody accepting (RT-14), or the listing agent's (RT-19).
    func timeout(_ job: RoundJob, on connection: PostgresConnection) async throws {
        guard var routing = try await store.lockRouting(job.contactId, on: connection), routing.state == .offering, routing.round == job.round,
              let contact = try await store.contact(job.contactId, on: connection) else { return }
        if routing.mode == .listing {
            let now = clock.now
            for id in try await store.closeOpenOffers(contactId: contact.id, as: .timedOut, at: now, on: connection) {
                try await store.log(RoutingLogEntry(at: now, round: routing.round, kind: .timedOut, offerId: id,
                                                    summary: "The listing agent did not accept within the listing-agent timeout."), contactId: contact.id, on: connection)
            }
            return try await route(contact, round: routing.round + 1, skipListingAgent: true, on: connection)
        }
        try await timeOut(&routing, contact: contact, because: "the rule's timeout passed", on: connection)
    }
}
