import Foundation
import Models

/// What a decision knows of the receiving entity, read once by the engine.
struct RoutingScope: Sendable {
    var entityId: UUID
    var entityName: String
    var officeOpen: Bool
    /// Every user of the company, lenders included.
    var agents: [UUID: Agent]
    /// Users of the entity and of every entity under it.
    var members: [Agent]
    var settings: RoutingSettings
    /// The entity's rules in the order they run.
    var rules: [RoutingRule] = []
}

/// One offer the engine sends: to whom, and when it closes.
struct PlannedOffer: Sendable, Hashable {
    var agentId: UUID
    var expiresAt: Date
}

/// What the engine does with a lead once decided; the words are in the routing's summary.
enum RoutingAction: Sendable, Hashable {
    /// Give the lead to the agent now, with the lender the decision attached.
    case assign(agentId: UUID, lenderId: UUID?, channels: [DeliveryChannel])
    /// RT-17: no way to reach the seller yet; kept with the entity's admin (if it has one).
    case hold(adminId: UUID?)
    /// RT-6: into the rule's pond.
    case pond(pondId: UUID, lenderId: UUID?)
    /// RT-13, RT-19: offers out, the round's timeout at `timeoutAt`.
    case offer([PlannedOffer], timeoutAt: Date)
    /// No rule had an agent who could take it.
    case unassigned
    /// ST-7: an archived lead is not routed.
    case notRouted
}

/// A round robin rule's shared position after this lead (RT-8).
struct PositionMove: Sendable, Hashable {
    var ruleId: UUID
    var next: Int
}

struct RoutingDecision: Sendable, Hashable {
    /// The lead's routing as decided: state, rule, queue, timeout, each rule's outcome and the summary.
    var routing: LeadRouting
    var action: RoutingAction
    var position: PositionMove?
}

/// Routing's decision for one lead (RT-3 … RT-19) as a pure function of the lead, the receiving
/// entity's rules and directory, the clock's now, the round robin positions and one uniform
/// draw: no database, no jobs. The engine (`LeadRouter`) reads the inputs and carries out the
/// result in one transaction.
enum LeadDecider {
    struct Input: Sendable {
        var contact: Contact
        var round: Int
        var skipListingAgent: Bool
        var scope: RoutingScope
        var now: Date
        /// The shared positions of the round robin rules read so far (locked by the engine).
        var positions: [UUID: Int] = [:]
        /// A uniform draw in [0, 1) for weighted distribution (RT-9).
        var draw: Double = 0
    }

    enum Step: Sendable, Hashable {
        case decided(RoutingDecision)
        /// A round robin rule took the lead: the engine locks its position and asks again, so two
        /// leads decided at once never take the same slot.
        case needsPosition(ruleId: UUID)
    }

    static func decide(_ input: Input) -> Step {
        let (contact, scope, now) = (input.contact, input.scope, input.now)
        var routing = LeadRouting(contactId: contact.id, companyId: contact.companyId, entityId: scope.entityId, round: input.round, state: .unassigned,
                                  queue: [], channels: [], skipListingAgent: input.skipListingAgent, rules: [], summary: "", startedAt: now, updatedAt: now)
        let name = leadName(contact)
        let everyChannel: [DeliveryChannel] = [.text, .email, .push]

        // ST-7: archiving stops all automation, routing included.
        if contact.status == .archive {
            routing.state = .notRouted
            routing.summary = "Not routed: \(name) is archived, and archived contacts get no automation."
            return .decided(RoutingDecision(routing: routing, action: .notRouted))
        }

        // RT-17: leads from an agent's own site always go to that agent.
        if let agentId = contact.agentSiteAgentId, let agent = scope.agents[agentId], agent.active {
            routing.summary = "\(name) registered on \(agent.name)'s own site, so the lead goes to \(agent.name)."
            return assign(routing, to: agent, ruleLender: nil, channels: everyChannel, scope: scope)
        }
        // RT-17: an address but no way to reach the seller yet: kept with the entity's admin.
        if contact.emails.isEmpty && contact.phones.isEmpty && contact.address != nil {
            routing.state = .awaitingContactInfo
            let admin = admin(of: scope)
            routing.assignedAgentId = admin?.id
            routing.summary = "\(name) left an address but no e-mail or phone, so the lead stays with "
                + "\(admin.map { "\($0.name), the admin of \(scope.entityName)," } ?? "\(scope.entityName)'s admin") until contact details arrive; then it is routed."
            return .decided(RoutingDecision(routing: routing, action: .hold(adminId: admin?.id)))
        }
        // RT-18, RT-19: the listing's agent, unless the company bypasses it.
        var listingNote = ""
        if let listing = contact.listing, !input.skipListingAgent {
            if scope.settings.bypassListingAgent {
                listingNote = "The company bypasses listing-agent routing, so ordinary rules apply. "
            } else if let agent = listingAgent(listing, scope: scope) {
                let role = agent.id == listing.listingAgentId ? "listing agent" : "co-listing agent"
                guard let minutes = scope.settings.listingAgentTimeoutMinutes else {
                    routing.summary = "\(name) registered on listing \(listing.listingId), so the lead goes to its \(role) \(agent.name)."
                    return assign(routing, to: agent, ruleLender: nil, channels: everyChannel, scope: scope)
                }
                let timeoutAt = now.addingTimeInterval(Double(minutes) * 60)
                routing.summary = "\(name) registered on listing \(listing.listingId); its \(role) \(agent.name) is offered the lead for \(duration(minutes)), then it is routed by the rules."
                routing.state = .offering
                routing.mode = .listing
                routing.timeoutAt = timeoutAt
                routing.windowMinutes = minutes
                routing.channels = everyChannel
                return .decided(RoutingDecision(routing: routing, action: .offer([PlannedOffer(agentId: agent.id, expiresAt: timeoutAt)], timeoutAt: timeoutAt)))
            } else {
                listingNote = "Neither the listing agent nor the co-listing agent of listing \(listing.listingId) belongs to \(scope.entityName), so ordinary rules apply. "
            }
        } else if contact.listing != nil {
            listingNote = "The listing agent did not accept in time, so the rules route the lead without the listing-agent step. "
        }

        // RT-3: the scope's rules in order, the default last; the first that matches and has someone to take the lead.
        for rule in scope.rules {
            let checks = RuleMatcher.checks(rule.criteria, lead: contact)
            var outcome = RuleOutcome(ruleId: rule.id, name: rule.name, isDefault: rule.isDefault, matched: RuleMatcher.matches(checks), checks: checks)
            guard outcome.matched else {
                routing.rules.append(outcome)
                continue
            }
            routing.ruleId = rule.id
            routing.ruleName = rule.name
            routing.lenderId = rule.lenderId
            routing.channels = rule.channels
            if rule.recipients.kind == .pond, let pond = rule.recipients.pondId {
                outcome.note = "took the lead into its pond"
                routing.rules.append(outcome)
                routing.state = .pond
                routing.pondId = pond
                routing.summary = listingNote + "Rule \"\(rule.name)\" matched\(because(checks)), and it sends leads to a pond."
                return .decided(RoutingDecision(routing: routing, action: .pond(pondId: pond, lenderId: rule.lenderId)))
            }
            let candidates = Distributor.candidates(rule.recipients, members: scope.members)
            let eligible = Set(candidates.filter { scope.agents[$0].map { $0.holdsLeads && $0.inRotation(at: now) } ?? false })
            var pick: Pick?
            if !eligible.isEmpty {
                switch rule.distribution {
                case .roundRobin:
                    guard let position = input.positions[rule.id] else { return .needsPosition(ruleId: rule.id) }
                    pick = Distributor.roundRobin(candidates, eligible: eligible, position: position)
                case .weighted:
                    pick = Distributor.weighted(rule.recipients.agents ?? [], eligible: eligible, unit: input.draw)
                case .blast:
                    pick = Distributor.blast(candidates, eligible: eligible)
                }
            }
            guard let pick, let first = scope.agents[pick.order[0]] else {
                outcome.note = candidates.isEmpty ? "matched, but it has no agents" : "matched, but none of its \(candidates.count) agents is in rotation"
                routing.rules.append(outcome)
                continue
            }
            let skipped = candidates.filter { !eligible.contains($0) }.compactMap { scope.agents[$0]?.name }
            let skippedNote = skipped.isEmpty ? "" : " (\(skipped.joined(separator: ", ")) \(skipped.count == 1 ? "is" : "are") out of rotation)"
            let how = switch rule.distribution {
            case .roundRobin: "next in its round robin\(skippedNote)"
            case .weighted: "drawn by its weights\(skippedNote)"
            case .blast: "offered to all \(pick.order.count) of its agents at once\(skippedNote)"
            }
            outcome.note = "took the lead"
            routing.rules.append(outcome)
            let intro = listingNote + (routing.rules.count > 1 ? "\(routing.rules.count - 1) earlier rule\(routing.rules.count > 2 ? "s" : "") did not take it; " : "")
                + "rule \"\(rule.name)\" matched\(because(checks))"
            let move = pick.nextPosition.map { PositionMove(ruleId: rule.id, next: $0) }
            guard case .decided(var decision) = accept(rule, pick: pick, first: first, how: how, intro: intro, routing: routing, scope: scope, now: now) else {
                continue
            }
            decision.position = move
            return .decided(decision)
        }
        routing.state = .unassigned
        routing.summary = listingNote + "No rule had an agent in rotation for \(name); the lead waits unassigned in \(scope.entityName)."
        return .decided(RoutingDecision(routing: routing, action: .unassigned))
    }

    /// RT-13, RT-14: assign at once when the rule asks for no acceptance, else offer and wait.
    private static func accept(_ rule: RoutingRule, pick: Pick, first: Agent, how: String, intro: String, routing start: LeadRouting,
                               scope: RoutingScope, now: Date) -> Step {
        var routing = start
        guard let acceptance = rule.acceptance else {
            routing.summary = "\(intro); \(first.name) was \(how) and is assigned the lead (acceptance is off)."
            return assign(routing, to: first, ruleLender: rule.lenderId, channels: rule.channels, scope: scope)
        }
        routing.timeoutAgentId = acceptance.timeoutAgentId
        let timeoutAgent = scope.agents[acceptance.timeoutAgentId]
        guard scope.officeOpen else {
            routing.summary = "\(intro); the lead arrived outside \(scope.entityName)'s office hours, so it goes straight to the timeout agent."
            guard let timeoutAgent else { return .decided(RoutingDecision(routing: routing, action: .unassigned)) }
            return assign(routing, to: timeoutAgent, ruleLender: rule.lenderId, channels: rule.channels, scope: scope)
        }
        let timeoutAt = now.addingTimeInterval(Double(acceptance.timeoutMinutes) * 60)
        routing.state = .offering
        routing.windowMinutes = acceptance.windowMinutes
        routing.timeoutAt = timeoutAt
        let timeoutName = timeoutAgent?.name ?? "the timeout agent"
        var offers: [PlannedOffer]
        if rule.distribution == .blast {
            routing.mode = .blast
            offers = pick.order.map { PlannedOffer(agentId: $0, expiresAt: timeoutAt) }
            routing.summary = "\(intro); the lead is \(how), the first to accept gets it; after \(duration(acceptance.timeoutMinutes)) it goes to \(timeoutName)."
        } else {
            routing.mode = .sequential
            routing.queue = Array(pick.order.dropFirst())
            let last = !routing.queue.contains { scope.agents[$0]?.inRotation(at: now) == true }
            offers = [PlannedOffer(agentId: first.id, expiresAt: windowEnd(now: now, windowMinutes: acceptance.windowMinutes, last: last, timeoutAt: timeoutAt))]
            routing.summary = "\(intro); \(first.name) was \(how) and is offered the lead for \(duration(acceptance.windowMinutes)), then the next agent; "
                + "the last one's offer stays open until the timeout: after \(duration(acceptance.timeoutMinutes)) it goes to \(timeoutName)."
        }
        offers.removeAll { scope.agents[$0.agentId] == nil }
        return .decided(RoutingDecision(routing: routing, action: .offer(offers, timeoutAt: timeoutAt)))
    }

    private static func assign(_ start: LeadRouting, to agent: Agent, ruleLender: UUID?, channels: [DeliveryChannel], scope: RoutingScope) -> Step {
        var routing = start
        routing.state = .assigned
        routing.assignedAgentId = agent.id
        return .decided(RoutingDecision(routing: routing, action: .assign(agentId: agent.id, lenderId: lender(rule: ruleLender, agent: agent, scope: scope),
                                                                          channels: channels)))
    }

    /// RT-6: the rule's lender, else the agent's own while they are an active lender of the company.
    static func lender(rule: UUID?, agent: Agent, scope: RoutingScope) -> UUID? {
        if let rule { return rule }
        guard let own = agent.lenderId, let lender = scope.agents[own], lender.active, lender.role == .lender else { return nil }
        return own
    }

    /// RT-13: after a decline or a lapsed window, the next agent of the queue still in rotation,
    /// with when their offer closes; nil when nobody is left.
    static func nextOffer(_ routing: LeadRouting, scope: RoutingScope, now: Date) -> (offer: PlannedOffer, queue: [UUID])? {
        var queue = routing.queue
        while !queue.isEmpty {
            let next = queue.removeFirst()
            guard let agent = scope.agents[next], agent.inRotation(at: now) else { continue }
            let last = !queue.contains { scope.agents[$0]?.inRotation(at: now) == true }
            let expires = windowEnd(now: now, windowMinutes: routing.windowMinutes ?? 5, last: last, timeoutAt: routing.timeoutAt)
            return (PlannedOffer(agentId: agent.id, expiresAt: expires), queue)
        }
        return nil
    }

    /// RT-14: nobody accepted, so the timeout agent gets the lead; nil when the rule's timeout agent
    /// is no longer in the directory.
    static func timedOut(_ start: LeadRouting, because reason: String, scope: RoutingScope) -> RoutingDecision? {
        guard let agent = start.timeoutAgentId.flatMap({ scope.agents[$0] }) else { return nil }
        var routing = start
        routing.summary += " Nobody accepted (\(reason)), so the lead goes to the timeout agent \(agent.name)."
        guard case .decided(let decision) = assign(routing, to: agent, ruleLender: routing.lenderId, channels: routing.channels, scope: scope) else { return nil }
        return decision
    }

    /// When a sequential offer closes (RT-13, RT-14): after the agent's window, except that the
    /// last recipient's stays open until the rule's timeout, so the timeout agent gets the lead at
    /// the timeout, as the rule and its explanation say, and not when the last window lapses.
    static func windowEnd(now: Date, windowMinutes: Int, last: Bool, timeoutAt: Date?) -> Date {
        let window = now.addingTimeInterval(Double(windowMinutes) * 60)
        guard last, let timeoutAt else { return window }
        return max(window, timeoutAt)
    }

    // MARK: words and helpers

    static func leadName(_ contact: Contact) -> String {
        let name = [contact.firstName, contact.lastName].compactMap { $0 }.joined(separator: " ")
        return name.isEmpty ? "The lead" : name
    }

    static func because(_ checks: [CriterionCheck]) -> String {
        checks.isEmpty ? " (it takes every lead)" : " (" + checks.map(\.detail).joined(separator: "; ") + ")"
    }

    static func duration(_ minutes: Int) -> String {
        if minutes % 60 == 0 { return minutes == 60 ? "1 hour" : "\(minutes / 60) hours" }
        return minutes == 1 ? "1 minute" : "\(minutes) minutes"
    }

    /// The admin of the entity itself, else of the entities above it (company admins last).
    static func admin(of scope: RoutingScope) -> Agent? {
        let admins = scope.members.filter { $0.role.isAdmin && $0.active }
        let rank: [Role: Int] = [.teamAdmin: 0, .officeAdmin: 1, .companyAdmin: 2]
        return admins.first { $0.entityIds.contains(scope.entityId) }
            ?? scope.agents.values.filter { $0.role.isAdmin && $0.active }.sorted { (rank[$0.role] ?? 3, $0.name) < (rank[$1.role] ?? 3, $1.name) }.first
    }

    /// RT-18: the listing agent if they belong to the receiving entity, else the co-listing agent if they do.
    static func listingAgent(_ listing: ListingInterest, scope: RoutingScope) -> Agent? {
        let members = Set(scope.members.filter { $0.active && $0.holdsLeads }.map(\.id))
        for candidate in [listing.listingAgentId, listing.coListingAgentId] {
            if let id = candidate, members.contains(id), let agent = scope.agents[id] { return agent }
        }
        return nil
    }
}
