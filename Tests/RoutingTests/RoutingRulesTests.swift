import Foundation
import Models
import ServiceKit
import Testing
@testable import Routing

/// Routing's pure rules, without a database (SPEC section 2).
@Suite("Routing rules")
struct RoutingRulesTests {
    static let company = UUID()
    static let entity = UUID()

    static func lead(origin: CreationOrigin = .website, source: String? = "Zillow", tags: [String] = [], type: LeadType? = .buyer,
                     interest: SearchInterest? = nil) -> Contact {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        return Contact(id: UUID(), companyId: company, ownerEntityId: entity, status: .newLead, firstName: "Jane", lastName: "Doe", emails: ["jane@example.com"],
                       phones: [], leadType: type, source: source, sourceId: nil, tags: tags, assignedAgentId: nil, lenderId: nil, pondId: nil, address: nil,
                       searchInterest: interest, listing: nil, agentSiteAgentId: nil, origin: origin, behavioralAlerts: true, version: 1, createdAt: now, updatedAt: now)
    }

    static func agent(_ name: String, inRotation: Bool = true, until: Date? = nil, prefersPush: Bool = false) -> Agent {
        Agent(id: UUID(), firstName: name, lastName: "Agent", role: .agent, entityIds: [entity], active: true, inRotation: inRotation, rotationUntil: until,
              prefersPush: prefersPush)
    }

    @Test("RT-4: every criterion must match; a criterion the lead has no data for does not; hashtags are OR")
    func criteria() {
        let criteria = RuleCriteria(sources: ["zillow"], hashtags: ["#luxury", "waterfront"], leadTypes: [.buyer], areas: ["Austin"], priceMin: 500_000)
        let matching = Self.lead(tags: ["Waterfront"], interest: SearchInterest(area: "austin", priceMin: 450_000, priceMax: 700_000))
        #expect(RuleMatcher.matches(RuleMatcher.checks(criteria, lead: matching)))
        let noPrice = Self.lead(tags: ["waterfront"], interest: SearchInterest(area: "Austin"))
        let checks = RuleMatcher.checks(criteria, lead: noPrice)
        #expect(!RuleMatcher.matches(checks))
        #expect(checks.first { $0.criterion == "price" }?.detail == "the lead has no price range; the rule wants $500,000 to any")
        #expect(!RuleMatcher.matches(RuleMatcher.checks(criteria, lead: Self.lead(tags: ["condo"], interest: matching.searchInterest))))
        #expect(RuleMatcher.matches(RuleMatcher.checks(RuleCriteria(), lead: noPrice)), "empty criteria match every lead")
    }

    @Test("RT-5: source criteria never match manual or imported leads, whatever their source field says")
    func sourceOnlyForSourceLeads() {
        let criteria = RuleCriteria(sources: ["Zillow"])
        #expect(RuleMatcher.matches(RuleMatcher.checks(criteria, lead: Self.lead(origin: .website))))
        for origin in [CreationOrigin.manual, .import] {
            let checks = RuleMatcher.checks(criteria, lead: Self.lead(origin: origin, source: "Zillow"))
            #expect(!RuleMatcher.matches(checks))
        }
    }

    @Test("RT-7, RT-8: round robin continues from the stored position, skips agents out of rotation, and cycles")
    func roundRobin() {
        let ids = (0..<3).map { _ in UUID() }
        let all = Set(ids)
        var position = 0
        var picked: [UUID] = []
        for _ in 0..<6 {
            let pick = Distributor.roundRobin(ids, eligible: all, position: position)!
            picked.append(pick.order[0])
            position = pick.nextPosition!
        }
        #expect(picked == ids + ids)
        let withoutSecond = Set([ids[0], ids[2]])
        let pick = Distributor.roundRobin(ids, eligible: withoutSecond, position: 1)!
        #expect(pick.order == [ids[2], ids[0]])
        #expect(pick.nextPosition == 3)
        #expect(Distributor.roundRobin(ids, eligible: [], position: 0) == nil)
        let now = Date()
        #expect(!Self.agent("Out", inRotation: false).inRotation(at: now))
        #expect(Self.agent("Back", inRotation: false, until: now.addingTimeInterval(-60)).inRotation(at: now), "out of rotation until a date that passed")
        #expect(!Self.agent("Later", inRotation: false, until: now.addingTimeInterval(60)).inRotation(at: now))
    }

    @Test("RT-9: weighted picks follow the weights over many leads (seeded generator, 20,000 draws)")
    func weightedShares() {
        let agents = [RecipientAgent(agentId: UUID(), weight: 50), RecipientAgent(agentId: UUID(), weight: 30), RecipientAgent(agentId: UUID(), weight: 20)]
        var generator = SplitMix(seed: 42)
        var counts: [UUID: Int] = [:]
        let draws = 20_000
        for _ in 0..<draws {
            let pick = Distributor.weighted(agents, eligible: Set(agents.map(\.agentId)), unit: generator.unit())!
            counts[pick.order[0], default: 0] += 1
        }
        for agent in agents {
            let share = Double(counts[agent.agentId] ?? 0) / Double(draws) * 100
            #expect(abs(share - Double(agent.weight!)) < 1.5, "share \(share) for weight \(agent.weight!)")
        }
        // Boundaries of the unit interval land on the first and the last agent.
        #expect(Distributor.weighted(agents, eligible: Set(agents.map(\.agentId)), unit: 0)?.order[0] == agents[0].agentId)
        #expect(Distributor.weighted(agents, eligible: Set(agents.map(\.agentId)), unit: 0.9999)?.order[0] == agents[2].agentId)
    }

    @Test("RT-9, RT-14: weights must sum to exactly 100; the timeout must cover recipients × window")
    func validation() throws {
        let a = Self.agent("A"), b = Self.agent("B")
        let directory = RuleValidation.Directory(agents: [a.id: a, b.id: b], lenders: [], entityAgentCount: 2)
        let now = Date()
        var rule = RoutingRule(id: UUID(), companyId: Self.company, entityId: Self.entity, name: "Weighted", position: 1, isDefault: false,
                               criteria: RuleCriteria(), recipients: RuleRecipients(kind: .agents, agents: [RecipientAgent(agentId: a.id, weight: 60),
                                                                                                            RecipientAgent(agentId: b.id, weight: 30)]),
                               distribution: .weighted, channels: [.text], acceptance: nil, lenderId: nil, version: 1, createdAt: now, updatedAt: now)
        #expect(throws: (any Error).self) { try RuleValidation.validate(rule, directory: directory) }
        rule.recipients.agents?[1].weight = 40
        _ = try RuleValidation.validate(rule, directory: directory)
        rule.acceptance = AcceptanceSettings(windowMinutes: 5, timeoutMinutes: 9, timeoutAgentId: a.id)
        #expect(throws: (any Error).self) { try RuleValidation.validate(rule, directory: directory) }
        rule.acceptance?.timeoutMinutes = 10
        _ = try RuleValidation.validate(rule, directory: directory)
    }

    @Test("RT-6: a pond rule names a pond of the company, takes no acceptance, and its lender must be an active lender")
    func pondAndLender() throws {
        let a = Self.agent("A")
        let pond = UUID(), lender = UUID()
        let directory = RuleValidation.Directory(agents: [a.id: a], lenders: [lender], entityAgentCount: 1, ponds: [pond])
        let now = Date()
        var rule = RoutingRule(id: UUID(), companyId: Self.company, entityId: Self.entity, name: "Pond", position: 1, isDefault: false,
                               criteria: RuleCriteria(), recipients: RuleRecipients(kind: .pond, agents: nil, pondId: UUID()),
                               distribution: .roundRobin, channels: [.email], acceptance: nil, lenderId: lender, version: 1, createdAt: now, updatedAt: now)
        #expect(Self.field { try RuleValidation.validate(rule, directory: directory) } == "recipients.pondId", "a pond of no one")
        rule.recipients.pondId = pond
        _ = try RuleValidation.validate(rule, directory: directory)
        rule.acceptance = AcceptanceSettings(windowMinutes: 5, timeoutMinutes: 10, timeoutAgentId: a.id)
        #expect(Self.field { try RuleValidation.validate(rule, directory: directory) } == "acceptance")
        rule.acceptance = nil
        rule.lenderId = a.id
        #expect(Self.field { try RuleValidation.validate(rule, directory: directory) } == "lenderId", "an agent is no lender")
    }

    @Test("RT-15: the offer page says how long the offer stays open in words")
    func offerRemaining() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(OfferPage.remaining(from: now, until: now.addingTimeInterval(20)) == "1 more minute")
        #expect(OfferPage.remaining(from: now, until: now.addingTimeInterval(-5)) == "less than a minute")
        #expect(OfferPage.remaining(from: now, until: now.addingTimeInterval(4 * 60 + 30)) == "5 more minutes")
        #expect(OfferPage.remaining(from: now, until: now.addingTimeInterval(4 * 3600)) == "about 4 more hours")
        #expect(OfferPage.remaining(from: now, until: now.addingTimeInterval(2 * 86400)) == "about 2 more days")
    }

    @Test("RT-15: a closed offer's page says what happened: accepted by another, gone to the timeout agent, given to another, given to this agent, lapsed, withdrawn")
    func offerPageOutcomes() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let me = UUID(), other = UUID(), timeoutAgent = UUID(), contact = UUID()
        func offer(_ agent: UUID, _ state: OfferState, expires: TimeInterval = -60) -> Offer {
            Offer(id: UUID(), contactId: contact, companyId: UUID(), round: 1, agentId: agent, ruleId: nil, mode: .sequential, state: state,
                  offeredAt: now.addingTimeInterval(-600), expiresAt: now.addingTimeInterval(expires), decidedAt: nil)
        }
        func routing(_ state: RoutingState, to agent: UUID?) -> LeadRouting {
            LeadRouting(contactId: contact, companyId: UUID(), entityId: UUID(), round: 1, state: state, mode: .sequential, ruleId: nil, ruleName: nil,
                        assignedAgentId: agent, pondId: nil, lenderId: nil, timeoutAgentId: timeoutAgent, timeoutAt: nil, windowMinutes: 5,
                        queue: [], channels: [], skipListingAgent: false, rules: [], summary: "", startedAt: now, updatedAt: now)
        }
        let mine = offer(me, .lapsed)
        #expect(OfferPage.state(of: offer(me, .open, expires: 60), routing: routing(.offering, to: nil), offers: [], now: now) == .open)
        #expect(OfferPage.state(of: offer(me, .open), routing: routing(.offering, to: nil), offers: [], now: now) == .lapsed,
                "an open offer past its window, before its expiry job ran")
        #expect(OfferPage.state(of: mine, routing: routing(.offering, to: nil), offers: [mine, offer(other, .open, expires: 60)], now: now) == .lapsed)
        #expect(OfferPage.state(of: offer(me, .closed), routing: routing(.offering, to: nil), offers: [offer(other, .accepted)], now: now) == .taken,
                "the loser of a race sees it was accepted, even before the assignment is made")
        #expect(OfferPage.state(of: mine, routing: routing(.assigned, to: timeoutAgent), offers: [mine, offer(other, .timedOut)], now: now) == .timedOut)
        #expect(OfferPage.state(of: mine, routing: routing(.assigned, to: other), offers: [mine], now: now) == .reassigned)
        #expect(OfferPage.state(of: offer(me, .timedOut), routing: routing(.assigned, to: me), offers: [], now: now) == .assignedToYou)
        #expect(OfferPage.state(of: offer(me, .closed), routing: routing(.offering, to: nil), offers: [], now: now) == .withdrawn)
        #expect(OfferPage.state(of: offer(me, .accepted), routing: routing(.assigned, to: me), offers: [], now: now) == .yours)
    }

    @Test("RT-11: a notice job carries every channel; jobs queued before grouping (one channel each) still run")
    func noticeJobs() throws {
        let contact = UUID(), agent = UUID()
        let grouped = LeadRouter.NoticeJob(contactId: contact, agentId: agent, offerId: nil, round: 2, channels: [.call, .push, .email])
        let decoded = try JSONCoding.decoder.decode(LeadRouter.NoticeJob.self, from: try JSONCoding.encoder.encode(grouped))
        #expect(decoded.allChannels == [.call, .push, .email] && decoded.round == 2 && decoded.agentId == agent)
        let legacy = #"{"contactId":"\#(contact.uuidString)","agentId":"\#(agent.uuidString)","round":1,"channel":"text"}"#
        #expect(try JSONCoding.decoder.decode(LeadRouter.NoticeJob.self, from: Data(legacy.utf8)).allChannels == [.text])
    }

    /// The field an APIError names, or nil when the call passes.
    static func field(_ body: () throws -> Any) -> String? {
        do {
            _ = try body()
            return nil
        } catch let error as APIError {
            return error.field ?? "(no field)"
        } catch {
            return "\(error)"
        }
    }

    @Test("RT-11, RT-12: push instead of text for agents who prefer it; e-mail only outside office hours")
    func channels() {
        #expect(Distributor.channels([.call, .text, .email], prefersPush: true, officeOpen: true) == [.call, .push, .email])
        #expect(Distributor.channels([.call, .text, .push], prefersPush: false, officeOpen: false) == [.email])
    }

    @Test("RT-15: offer links verify, expire, and refuse any change")
    func offerLinks() {
        let links = OfferLink(secret: "a-test-secret-of-some-length")
        let id = UUID()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let token = links.token(offerId: id, expires: now.addingTimeInterval(600))
        #expect(links.verify(token, now: now) == .valid(id))
        #expect(links.verify(token, now: now.addingTimeInterval(601)) == .expired(id))
        var tampered = Array(token)
        tampered[3] = tampered[3] == "A" ? "B" : "A"
        #expect(links.verify(String(tampered), now: now) == .invalid)
        #expect(OfferLink(secret: "another-secret-entirely").verify(token, now: now) == .invalid)
    }

    @Test("RT-18: the listing agent if they belong to the receiving entity, else the co-listing agent if only they do")
    func listingAgent() {
        let inside = Self.agent("Inside"), outside = Self.agent("Outside")
        let scope = RoutingScope(entityId: Self.entity, entityName: "Office", officeOpen: true, agents: [inside.id: inside, outside.id: outside],
                                     members: [inside], settings: .standard)
        #expect(LeadDecider.listingAgent(ListingInterest(listingId: "L1", listingAgentId: inside.id, coListingAgentId: nil), scope: scope) == inside)
        #expect(LeadDecider.listingAgent(ListingInterest(listingId: "L2", listingAgentId: outside.id, coListingAgentId: inside.id), scope: scope) == inside,
                "the co-listing agent when only they belong to the entity")
        #expect(LeadDecider.listingAgent(ListingInterest(listingId: "L3", listingAgentId: outside.id, coListingAgentId: nil), scope: scope) == nil)
    }

    @Test("RT-16: a follow-up chosen on the phone is due later the same day")
    func followUpLaterToday() throws {
        let zone = try #require(TimeZone(identifier: "America/Chicago"))
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let morning = try #require(calendar.date(from: DateComponents(year: 2026, month: 11, day: 23, hour: 10)))
        #expect(FollowUp.due(now: morning, timeZone: zone) == morning.addingTimeInterval(7200))
        let evening = try #require(calendar.date(from: DateComponents(year: 2026, month: 11, day: 23, hour: 19)))
        #expect(calendar.component(.hour, from: FollowUp.due(now: evening, timeZone: zone)) == 20)
    }
}

/// A small seeded generator, so the statistical test is the same every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
