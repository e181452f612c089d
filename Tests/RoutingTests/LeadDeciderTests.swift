import Foundation
import Models
import Testing
@testable import Routing

/// The routing decision as a pure function: each RT rule's branches, without a database.
@Suite("Routing decision")
struct LeadDeciderTests {
    typealias T = RoutingRulesTests
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func rule(_ name: String, criteria: RuleCriteria = RuleCriteria(), agents: [Agent] = [], distribution: Distribution = .roundRobin,
                     acceptance: AcceptanceSettings? = nil, lender: UUID? = nil, pond: UUID? = nil, isDefault: Bool = false) -> RoutingRule {
        let recipients = pond.map { RuleRecipients(kind: .pond, agents: nil, pondId: $0) }
            ?? (agents.isEmpty ? .allOfEntity
                : RuleRecipients(kind: .agents, agents: agents.map { RecipientAgent(agentId: $0.id, weight: 100 / agents.count + ($0.id == agents[0].id ? 100 % agents.count : 0)) },
                                 pondId: nil))
        return RoutingRule(id: UUID(), companyId: T.company, entityId: T.entity, name: name, position: isDefault ? Int(Int32.max) : 1, isDefault: isDefault,
                           criteria: criteria, recipients: recipients, distribution: distribution, channels: [.text, .email], acceptance: acceptance,
                           lenderId: lender, version: 1, createdAt: now, updatedAt: now)
    }

    static func scope(_ users: [Agent], rules: [RoutingRule], open: Bool = true, settings: RoutingSettings = .standard) -> RoutingScope {
        RoutingScope(entityId: T.entity, entityName: "Austin Office", officeOpen: open, agents: Dictionary(uniqueKeysWithValues: users.map { ($0.id, $0) }),
                     members: users.filter { $0.entityIds.contains(T.entity) }, settings: settings, rules: rules)
    }

    static func decide(_ contact: Contact, _ scope: RoutingScope, positions: [UUID: Int] = [:], draw: Double = 0, skipListing: Bool = false) -> RoutingDecision? {
        var input = LeadDecider.Input(contact: contact, round: 1, skipListingAgent: skipListing, scope: scope, now: now, positions: positions, draw: draw)
        for _ in 0..<5 {
            switch LeadDecider.decide(input) {
            case .decided(let decision): return decision
            case .needsPosition(let ruleId): input.positions[ruleId] = positions[ruleId] ?? 0
            }
        }
        return nil
    }

    static func lender(_ name: String, active: Bool = true) -> Agent {
        Agent(id: UUID(), firstName: name, lastName: "Lender", role: .lender, entityIds: [T.entity], active: active, inRotation: false, rotationUntil: nil,
              prefersPush: false)
    }

    @Test("RT-17: a lead from an agent's own site goes to that agent whatever the rules; an address-only seller waits with the entity's admin")
    func agentSiteAndAddressOnly() throws {
        let ann = T.agent("Ann"), bob = T.agent("Bob")
        var admin = T.agent("Ada")
        admin.role = .officeAdmin
        let scope = Self.scope([ann, bob, admin], rules: [Self.rule("Everyone", agents: [ann])])
        var lead = T.lead()
        lead.agentSiteAgentId = bob.id
        let site = try #require(Self.decide(lead, scope))
        #expect(site.action == .assign(agentId: bob.id, lenderId: nil, channels: [.text, .email, .push]))
        #expect(site.routing.summary.contains("Bob Agent's own site"))

        var seller = T.lead()
        seller.emails = []
        seller.address = Address(street: "1 Main St", city: "Austin")
        let held = try #require(Self.decide(seller, scope))
        #expect(held.action == .hold(adminId: admin.id))
        #expect(held.routing.state == .awaitingContactInfo)
    }

    @Test("RT-18, RT-19: the listing agent is offered the lead for the listing timeout, or assigned without one; bypassed, or skipped after their timeout, the rules route it")
    func listingAgent() throws {
        let lister = T.agent("Lee"), ann = T.agent("Ann")
        var lead = T.lead()
        lead.listing = ListingInterest(listingId: "MLS-1", listingAgentId: lister.id)
        let rules = [Self.rule("Ann only", agents: [ann])]
        let timed = try #require(Self.decide(lead, Self.scope([lister, ann], rules: rules, settings: RoutingSettings(bypassListingAgent: false, listingAgentTimeoutMinutes: 30))))
        let end = Self.now.addingTimeInterval(1800)
        #expect(timed.action == .offer([PlannedOffer(agentId: lister.id, expiresAt: end)], timeoutAt: end))
        #expect(timed.routing.mode == .listing)
        let direct = try #require(Self.decide(lead, Self.scope([lister, ann], rules: rules)))
        #expect(direct.action == .assign(agentId: lister.id, lenderId: nil, channels: [.text, .email, .push]))
        let bypassed = try #require(Self.decide(lead, Self.scope([lister, ann], rules: rules, settings: RoutingSettings(bypassListingAgent: true))))
        #expect(bypassed.action == .assign(agentId: ann.id, lenderId: nil, channels: [.text, .email]))
        #expect(bypassed.routing.summary.hasPrefix("The company bypasses listing-agent routing"))
        let after = try #require(Self.decide(lead, Self.scope([lister, ann], rules: rules), skipListing: true))
        #expect(after.action == .assign(agentId: ann.id, lenderId: nil, channels: [.text, .email]))
        #expect(after.routing.summary.hasPrefix("The listing agent did not accept in time"))
    }

    @Test("RT-3, RT-4: rules run in order and the first that matches and has an agent takes the lead; every rule's outcome is recorded")
    func firstMatchingRule() throws {
        let ann = T.agent("Ann"), bob = T.agent("Bob")
        let luxury = Self.rule("Luxury", criteria: RuleCriteria(priceMin: 1_000_000), agents: [ann])
        let zillow = Self.rule("Zillow", criteria: RuleCriteria(sources: ["zillow"]), agents: [bob])
        let decision = try #require(Self.decide(T.lead(), Self.scope([ann, bob], rules: [luxury, zillow, Self.rule("Default", isDefault: true)])))
        #expect(decision.action == .assign(agentId: bob.id, lenderId: nil, channels: [.text, .email]))
        #expect(decision.routing.rules.map(\.matched) == [false, true])
        #expect(decision.routing.summary.hasPrefix("1 earlier rule did not take it; rule \"Zillow\" matched"))
    }

    @Test("RT-7, RT-8: round robin asks for the rule's shared position, skips agents out of rotation and moves the position past the one picked; a rule with nobody in rotation passes the lead on")
    func roundRobin() throws {
        let ann = T.agent("Ann"), bob = T.agent("Bob", inRotation: false), cy = T.agent("Cy")
        let rule = Self.rule("Team", agents: [ann, bob, cy])
        let scope = Self.scope([ann, bob, cy], rules: [rule])
        let input = LeadDecider.Input(contact: T.lead(), round: 1, skipListingAgent: false, scope: scope, now: Self.now)
        #expect(LeadDecider.decide(input) == .needsPosition(ruleId: rule.id))
        let decision = try #require(Self.decide(T.lead(), scope, positions: [rule.id: 1]))
        #expect(decision.action == .assign(agentId: cy.id, lenderId: nil, channels: [.text, .email]), "Bob is out of rotation, so Cy is next")
        #expect(decision.position == PositionMove(ruleId: rule.id, next: 3))
        #expect(decision.routing.summary.contains("(Bob Agent is out of rotation)"))

        let nobody = Self.rule("Only Bob", agents: [bob])
        let passed = try #require(Self.decide(T.lead(), Self.scope([ann, bob], rules: [nobody, Self.rule("Default", isDefault: true)])))
        #expect(passed.routing.rules.first?.note == "matched, but none of its 1 agents is in rotation")
        #expect(passed.action == .assign(agentId: ann.id, lenderId: nil, channels: [.text, .email]))
        let none = try #require(Self.decide(T.lead(), Self.scope([bob], rules: [nobody])))
        #expect(none.action == .unassigned)
        #expect(none.routing.summary.contains("waits unassigned in Austin Office"))
    }

    @Test("RT-9: a weighted rule picks with the draw the engine passes in")
    func weighted() throws {
        let ann = T.agent("Ann"), bob = T.agent("Bob")
        let rule = Self.rule("Split", agents: [ann, bob], distribution: .weighted)
        let scope = Self.scope([ann, bob], rules: [rule])
        #expect(try #require(Self.decide(T.lead(), scope, draw: 0.2)).action == .assign(agentId: ann.id, lenderId: nil, channels: [.text, .email]))
        #expect(try #require(Self.decide(T.lead(), scope, draw: 0.7)).action == .assign(agentId: bob.id, lenderId: nil, channels: [.text, .email]))
    }

    @Test("RT-10, RT-13, RT-14: blast offers everyone until the timeout; sequential offers the first for the window and the last until the timeout; outside office hours the timeout agent gets it at once")
    func acceptance() throws {
        let ann = T.agent("Ann"), bob = T.agent("Bob"), tim = T.agent("Tim")
        let acceptance = AcceptanceSettings(windowMinutes: 5, timeoutMinutes: 15, timeoutAgentId: tim.id)
        let timeout = Self.now.addingTimeInterval(900)
        let blast = try #require(Self.decide(T.lead(), Self.scope([ann, bob, tim], rules: [Self.rule("Blast", agents: [ann, bob], distribution: .blast, acceptance: acceptance)])))
        #expect(blast.action == .offer([PlannedOffer(agentId: ann.id, expiresAt: timeout), PlannedOffer(agentId: bob.id, expiresAt: timeout)], timeoutAt: timeout))

        let sequential = Self.rule("In turn", agents: [ann, bob], acceptance: acceptance)
        let scope = Self.scope([ann, bob, tim], rules: [sequential])
        let first = try #require(Self.decide(T.lead(), scope, positions: [sequential.id: 0]))
        #expect(first.action == .offer([PlannedOffer(agentId: ann.id, expiresAt: Self.now.addingTimeInterval(300))], timeoutAt: timeout))
        #expect(first.routing.queue == [bob.id])
        #expect(first.routing.summary.hasSuffix("after 15 minutes it goes to Tim Agent."))
        let later = Self.now.addingTimeInterval(300)
        let next = try #require(LeadDecider.nextOffer(first.routing, scope: scope, now: later))
        #expect(next.offer == PlannedOffer(agentId: bob.id, expiresAt: timeout), "the last recipient's offer stays open until the timeout")
        #expect(next.queue.isEmpty)
        var drained = first.routing
        drained.queue = []
        #expect(LeadDecider.nextOffer(drained, scope: scope, now: later) == nil)
        let timedOut = try #require(LeadDecider.timedOut(first.routing, because: "the rule's timeout passed", scope: scope))
        #expect(timedOut.action == .assign(agentId: tim.id, lenderId: nil, channels: [.text, .email]))
        #expect(timedOut.routing.summary.hasSuffix("Nobody accepted (the rule's timeout passed), so the lead goes to the timeout agent Tim Agent."))

        let closed = try #require(Self.decide(T.lead(), Self.scope([ann, bob, tim], rules: [sequential], open: false), positions: [sequential.id: 0]))
        #expect(closed.action == .assign(agentId: tim.id, lenderId: nil, channels: [.text, .email]))
        #expect(closed.routing.summary.contains("outside Austin Office's office hours"))
    }

    @Test("RT-6: a rule's lender overrides the agent's own; without one the agent's own lender is attached while active; a pond rule takes the lead into its pond")
    func lenderAndPond() throws {
        let own = Self.lender("Olive"), ruleLender = Self.lender("Rita"), gone = Self.lender("Gus", active: false)
        var ann = T.agent("Ann")
        ann.lenderId = own.id
        var bob = T.agent("Bob")
        bob.lenderId = gone.id
        let users = [ann, bob, own, ruleLender, gone]
        let withLender = try #require(Self.decide(T.lead(), Self.scope(users, rules: [Self.rule("Ann", agents: [ann], lender: ruleLender.id)]), positions: [:]))
        #expect(withLender.action == .assign(agentId: ann.id, lenderId: ruleLender.id, channels: [.text, .email]))
        let without = try #require(Self.decide(T.lead(), Self.scope(users, rules: [Self.rule("Ann", agents: [ann])])))
        #expect(without.action == .assign(agentId: ann.id, lenderId: own.id, channels: [.text, .email]))
        let inactive = try #require(Self.decide(T.lead(), Self.scope(users, rules: [Self.rule("Bob", agents: [bob])])))
        #expect(inactive.action == .assign(agentId: bob.id, lenderId: nil, channels: [.text, .email]), "an inactive lender is not attached")
        var site = T.lead()
        site.agentSiteAgentId = ann.id
        #expect(try #require(Self.decide(site, Self.scope(users, rules: []))).action == .assign(agentId: ann.id, lenderId: own.id, channels: [.text, .email, .push]))

        let pond = UUID()
        let ponded = try #require(Self.decide(T.lead(), Self.scope(users, rules: [Self.rule("Pond", lender: ruleLender.id, pond: pond)])))
        #expect(ponded.action == .pond(pondId: pond, lenderId: ruleLender.id))
        #expect(ponded.routing.state == .pond)
    }

    @Test("ST-7: an archived lead is not routed")
    func archivedNotRouted() throws {
        var lead = T.lead()
        lead.status = .archive
        let decision = try #require(Self.decide(lead, Self.scope([T.agent("Ann")], rules: [Self.rule("Default", isDefault: true)])))
        #expect(decision.action == .notRouted && decision.routing.state == .notRouted)
    }
}
