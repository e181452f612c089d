import AsyncHTTPClient
import Foundation
import Models
import NIOCore
import NIOHTTP1
import Testing

/// Lead routing over HTTP against the running stack (SPEC section 2): leads come in through
/// contacts' intake, routing decides, notifications carries the offers to the Twilio-compatible
/// test provider, and the virtual clock moves windows and timeouts.
@Suite("Routing (RT-1 … RT-20)", .serialized)
struct RoutingTests {
    let stack: Stack
    let phone: NotificationsTests

    init() throws {
        stack = try Stack.fromEnvironment()
        phone = try NotificationsTests()
    }

    struct Office {
        var brokerage: Stack.Brokerage
        var key: String
        /// Agents by first name: Alice, Bob, Cara (last name Smith), each with a mobile phone.
        var agents: [String: (id: String, token: String, phone: String)]
        var adminId: String
    }

    /// A company whose office is open around the clock, three agents and a website source.
    func office(hours: [[String: Any]]? = nil) async throws -> Office {
        let brokerage = try await stack.newCompany()
        let allWeek: [[String: Any]] = (1...7).map { ["weekday": $0, "open": "00:00", "close": "23:59"] }
        let patched = try await stack.call(.PATCH, .contacts, "/v1/entities/\(brokerage.rootEntityId)", token: brokerage.adminToken,
                                           json: Stack.json(["officeHours": hours ?? allWeek]))
        #expect(patched.status == 200, "\(patched.text)")
        var agents: [String: (id: String, token: String, phone: String)] = [:]
        for name in ["Alice", "Bob", "Cara"] {
            let email = "\(name.lowercased())-\(UUID().uuidString.prefix(8).lowercased())@example.com"
            let mobile = NotificationsTests.randomPhone()
            let created = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
                "role": "agent", "firstName": name, "lastName": "Smith", "email": email, "password": "agent password 1",
                "entityIds": [brokerage.rootEntityId], "mobilePhone": mobile,
            ]))
            let id = try #require(created["id"]?.string, "\(created.text)")
            agents[name] = (id, try await stack.login(email, "agent password 1"), mobile)
        }
        let source = try await stack.call(.POST, .contacts, "/v1/lead-sources", token: brokerage.adminToken, json: Stack.json([
            "name": "Website", "origin": "website", "entityId": brokerage.rootEntityId,
        ]))
        let me = try await stack.call(.GET, .contacts, "/v1/auth/me", token: brokerage.adminToken)
        try await stack.waitUntilIdle()
        return Office(brokerage: brokerage, key: try #require(source["apiKey"]?.string), agents: agents, adminId: try #require(me["id"]?.string))
    }

    func rule(_ office: Office, _ body: [String: Any]) async throws -> Stack.Answer {
        var body = body
        body["entityId"] = office.brokerage.rootEntityId
        return try await stack.call(.POST, .routing, "/v1/routing/rules", token: office.brokerage.adminToken, json: Stack.json(body))
    }

    func lead(_ office: Office, _ body: [String: Any]) async throws -> String {
        let answer = try await stack.call(.POST, .contacts, "/v1/leads", json: Stack.json(body), headers: [("X-Api-Key", office.key)])
        let id = try #require(answer["contact"]?["id"]?.string, "\(answer.status) \(answer.text)")
        try await stack.waitUntilIdle()
        return id
    }

    func explain(_ office: Office, _ contactId: String) async throws -> Stack.Answer {
        try await stack.call(.GET, .routing, "/v1/leads/\(contactId)/routing", token: office.brokerage.adminToken)
    }

    func assignee(_ office: Office, _ contactId: String) async throws -> String? {
        try await stack.call(.GET, .contacts, "/v1/contacts/\(contactId)", token: office.brokerage.adminToken)["assignedAgentId"]?.string
    }

    func advance(minutes: Int) async throws {
        let answer = try await stack.call(.POST, .routing, "/v1/admin/clock", token: try await stack.serviceToken(),
                                          json: Stack.json(["advanceSeconds": minutes * 60]))
        #expect(answer.status == 200, "\(answer.text)")
        try await stack.waitUntilIdle()
    }

    /// The offer links texted to an agent, newest last.
    func links(to phoneNumber: String) async throws -> [String] {
        try await phone.providerRequests(to: phoneNumber).compactMap { $0["fields"]?["Body"]?.string }
            .compactMap { body in body.range(of: "http").map { String(body[$0.lowerBound...]) } }
    }

    func offers(_ explanation: Stack.Answer) -> [JSONValue] { explanation["offers"]?.array ?? [] }

    @Test("RT-1 … RT-5, RT-7, RT-8, RT-20: rules in order, the default round robin last and undeletable, out-of-rotation agents skipped, manual leads not routed, every decision explained")
    func rulesAndRoundRobin() async throws {
        let office = try await office()
        let (alice, bob, cara) = (office.agents["Alice"]!, office.agents["Bob"]!, office.agents["Cara"]!)
        let luxury = try await rule(office, ["name": "Luxury", "criteria": ["hashtags": ["#luxury"], "priceMin": 1_000_000],
                                             "recipients": ["kind": "agents", "agents": [["agentId": cara.id]]], "distribution": "round_robin",
                                             "channels": ["text"]])
        #expect(luxury.status == 201, "\(luxury.text)")
        let renters = try await rule(office, ["name": "Renters", "criteria": ["leadTypes": ["renter"]],
                                              "recipients": ["kind": "agents", "agents": [["agentId": bob.id]]], "distribution": "round_robin", "channels": ["email"]])
        #expect(renters.status == 201, "\(renters.text)")
        let listed = try await stack.call(.GET, .routing, "/v1/routing/rules?entityId=\(office.brokerage.rootEntityId)", token: office.brokerage.adminToken)
        let names = (listed["items"]?.array ?? []).compactMap { $0["name"]?.string }
        #expect(names.count == 3 && names.prefix(2) == ["Luxury", "Renters"], "RT-2, RT-3: the default rule runs last: \(names)")
        let defaultId = try #require(listed["items"]?.array?.last?["id"]?.string)
        let deleted = try await stack.call(.DELETE, .routing, "/v1/routing/rules/\(defaultId)", token: office.brokerage.adminToken)
        #expect(deleted.status == 409 && deleted.errorCode == "default_rule")
        // RT-3: reorder, then back.
        let ids = try [#require(luxury["id"]?.string), #require(renters["id"]?.string)]
        let reordered = try await stack.call(.PUT, .routing, "/v1/routing/rules/order", token: office.brokerage.adminToken,
                                             json: Stack.json(["entityId": office.brokerage.rootEntityId, "ruleIds": Array(ids.reversed())]))
        #expect((reordered["items"]?.array ?? []).compactMap { $0["name"]?.string }.prefix(2) == ["Renters", "Luxury"])
        let partial = try await stack.call(.PUT, .routing, "/v1/routing/rules/order", token: office.brokerage.adminToken,
                                           json: Stack.json(["entityId": office.brokerage.rootEntityId, "ruleIds": [ids[0]]]))
        #expect(partial.status == 422 && partial.errorField == "ruleIds")
        // An agent cannot manage rules; another company's admin does not see them.
        #expect(try await stack.call(.GET, .routing, "/v1/routing/rules?entityId=\(office.brokerage.rootEntityId)", token: alice.token).status == 403)
        let other = try await stack.newCompany()
        let foreign = try await stack.call(.GET, .routing, "/v1/routing/rules/\(ids[0])", token: other.adminToken)
        #expect(foreign.status == 404)

        // RT-7: Bob out of rotation: the default round robin goes Alice, Cara, Alice, Cara.
        let out = try await stack.call(.PATCH, .contacts, "/v1/users/\(bob.id)", token: office.brokerage.adminToken, json: #"{"rotation":{"inRotation":false}}"#)
        #expect(out.status == 200, "\(out.text)")
        try await stack.waitUntilIdle()
        var assigned: [String?] = []
        for index in 0..<4 {
            let id = try await lead(office, ["firstName": "Lead\(index)", "email": "lead\(index)-\(UUID().uuidString.prefix(6))@example.com", "leadType": "buyer"])
            assigned.append(try await assignee(office, id))
        }
        #expect(assigned == [alice.id, cara.id, alice.id, cara.id], "RT-8: round robin in name order, Bob skipped")

        // RT-4: the luxury rule takes a tagged lead in its price range; a criterion without data does not match.
        let rich = try await lead(office, ["firstName": "Rich", "email": "rich-\(UUID().uuidString.prefix(6))@example.com", "tags": ["Luxury"],
                                           "searchInterest": ["priceMin": 1_200_000, "priceMax": 2_000_000]])
        #expect(try await assignee(office, rich) == cara.id)
        let plain = try await lead(office, ["firstName": "Plain", "email": "plain-\(UUID().uuidString.prefix(6))@example.com", "tags": ["luxury"]])
        let why = try await explain(office, plain)
        #expect(why.status == 200, "\(why.text)")
        let rules = why["rules"]?.array ?? []
        #expect(rules.count == 3)
        #expect(rules.first?["matched"] == .bool(false))
        let luxuryChecks = rules.first { $0["name"]?.string == "Luxury" }?["checks"]?.array ?? []
        #expect(luxuryChecks.contains { $0["criterion"]?.string == "price" && $0["detail"]?.string?.contains("no price range") == true },
                "RT-20: criterion by criterion: \(why.text)")
        #expect(why["state"]?.string == "assigned" && why["summary"]?.string?.contains("did not take it") == true, "\(why.text)")
        #expect((why["history"]?.array ?? []).contains { $0["kind"]?.string == "assigned" })

        // RT-5: a contact entered by hand is not routed.
        let manual = try await stack.call(.POST, .contacts, "/v1/contacts", token: office.brokerage.adminToken,
                                          json: Stack.json(["status": "new_lead", "firstName": "Hand", "source": "Website", "emails": ["hand-\(UUID().uuidString.prefix(6))@example.com"]]))
        let manualId = try #require(manual["id"]?.string)
        try await stack.waitUntilIdle()
        let notRouted = try await explain(office, manualId)
        #expect(notRouted["state"]?.string == "not_routed", "\(notRouted.text)")
        #expect(try await assignee(office, manualId) == nil)
        // X-1: an agent sees the routing of leads they hold only.
        #expect(try await stack.call(.GET, .routing, "/v1/leads/\(plain)/routing", token: bob.token).status == 404)
        #expect(try await stack.call(.GET, .routing, "/v1/leads/\(plain)/routing", token: other.adminToken).status == 404)
    }

    @Test("RT-13, RT-14: offers move on after a decline or a lapsed window; the last recipient may accept until the timeout, when the timeout agent gets the lead; the timeout must cover recipients × window")
    func acceptanceWindows() async throws {
        let office = try await office()
        let (alice, bob, cara) = (office.agents["Alice"]!, office.agents["Bob"]!, office.agents["Cara"]!)
        var body: [String: Any] = ["name": "Offers", "recipients": ["kind": "agents", "agents": [["agentId": alice.id], ["agentId": bob.id]]],
                                   "distribution": "round_robin", "channels": ["text", "email"],
                                   "acceptance": ["windowMinutes": 5, "timeoutMinutes": 9, "timeoutAgentId": cara.id]]
        let short = try await rule(office, body)
        #expect(short.status == 422 && short.errorField == "acceptance.timeoutMinutes", "\(short.text)")
        body["acceptance"] = ["windowMinutes": 5, "timeoutMinutes": 12, "timeoutAgentId": cara.id]
        #expect(try await rule(office, body).status == 201)

        let contactId = try await lead(office, ["firstName": "Olive", "lastName": "Offer", "email": "olive-\(UUID().uuidString.prefix(6))@example.com",
                                                "leadType": "buyer", "searchInterest": ["area": "Lincoln Park", "priceMin": 300_000, "priceMax": 450_000]])
        var why = try await explain(office, contactId)
        #expect(why["state"]?.string == "offering", "\(why.text)")
        let first = try #require(offers(why).first)
        #expect(first["agentId"]?.string == alice.id)
        #expect(try await assignee(office, contactId) == nil, "RT-13: not assigned before someone accepts")
        let texts = try await links(to: alice.phone)
        #expect(texts.last?.contains("/offers/") == true, "the offer's text carries its link: \(texts)")
        // Only Alice may answer her offer.
        let offerId = try #require(first["id"]?.string)
        #expect(try await stack.call(.POST, .routing, "/v1/offers/\(offerId)/acceptance", token: bob.token).status == 404)
        let declined = try await stack.call(.POST, .routing, "/v1/offers/\(offerId)/decline", token: alice.token)
        #expect(declined["answer"]?.string == "declined", "\(declined.text)")
        why = try await explain(office, contactId)
        // Both offers carry the same virtual instant, so look the open one up rather than rely on order.
        #expect(offers(why).count == 2 && offers(why).contains { $0["agentId"]?.string == bob.id && $0["state"]?.string == "open" },
                "the next recipient is offered: \(why.text)")
        // Bob is the last recipient: his offer stays open until the rule's timeout (12 minutes), past
        // his 5-minute window; then the timeout agent gets the lead without acceptance.
        try await advance(minutes: 6)
        why = try await explain(office, contactId)
        #expect(why["state"]?.string == "offering", "minute 6: Bob may still accept: \(why.text)")
        #expect(try await assignee(office, contactId) == nil)
        try await advance(minutes: 6)
        why = try await explain(office, contactId)
        #expect(why["state"]?.string == "assigned" && why["assignedAgentId"]?.string == cara.id, "\(why.text)")
        #expect((why["history"]?.array ?? []).contains { ["lapsed", "timed_out"].contains($0["kind"]?.string ?? "") && $0["agentId"]?.string == bob.id }
                || (why["history"]?.array ?? []).contains { $0["kind"]?.string == "timed_out" }, "\(why.text)")
        #expect(try await assignee(office, contactId) == cara.id)
        let late = try await stack.call(.POST, .routing, "/v1/offers/\(offerId)/acceptance", token: alice.token)
        #expect(late.status == 409, "\(late.text)")

        // The rule's timeout itself: nobody answers at all. Both windows (5 + 5 minutes) lapse before
        // the 12-minute timeout, and the lead is the timeout agent's at the timeout, not before.
        let second = try await lead(office, ["firstName": "Tim", "email": "tim-\(UUID().uuidString.prefix(6))@example.com"])
        try await advance(minutes: 5)
        try await advance(minutes: 5)
        why = try await explain(office, second)
        #expect(why["state"]?.string == "offering", "minute 10: the timeout is 12: \(why.text)")
        #expect(why["summary"]?.string?.contains("after 12 minutes it goes to") == true, "\(why.text)")
        try await advance(minutes: 1)
        #expect(try await explain(office, second)["state"]?.string == "offering", "minute 11")
        try await advance(minutes: 1)
        why = try await explain(office, second)
        #expect(why["assignedAgentId"]?.string == cara.id, "minute 12: \(why.text)")
    }

    @Test("RT-12, RT-14: outside office hours the lead goes straight to the timeout agent, told by e-mail only")
    func outsideOfficeHours() async throws {
        let office = try await office(hours: [["weekday": 1, "open": "00:00", "close": "00:01"]])
        let (alice, cara) = (office.agents["Alice"]!, office.agents["Cara"]!)
        #expect(try await rule(office, ["name": "Offers", "recipients": ["kind": "agents", "agents": [["agentId": alice.id]]], "distribution": "round_robin",
                                        "channels": ["call", "text", "email"], "acceptance": ["windowMinutes": 5, "timeoutMinutes": 5, "timeoutAgentId": cara.id]]).status == 201)
        let contactId = try await lead(office, ["firstName": "Night", "email": "night-\(UUID().uuidString.prefix(6))@example.com"])
        let why = try await explain(office, contactId)
        #expect(why["assignedAgentId"]?.string == cara.id && why["summary"]?.string?.contains("outside") == true, "\(why.text)")
        let channels = (why["history"]?.array ?? []).filter { $0["kind"]?.string == "notified" }.compactMap { $0["channel"]?.string }
        #expect(channels == ["email"], "RT-12: e-mail only: \(why.text)")
        #expect(try await phone.providerRequests(to: cara.phone).isEmpty)
    }

    @Test("RT-10, RT-15: blast offers to everyone; simultaneous and repeated accepts give the lead to exactly one agent; the page tells the others")
    func blastExactlyOnce() async throws {
        let office = try await office()
        let agents = ["Alice", "Bob", "Cara"].map { office.agents[$0]! }
        #expect(try await rule(office, ["name": "Blast", "recipients": ["kind": "agents", "agents": agents.map { ["agentId": $0.id] }], "distribution": "blast",
                                        "channels": ["text"], "acceptance": ["windowMinutes": 5, "timeoutMinutes": 15, "timeoutAgentId": agents[0].id]]).status == 201)
        let contactId = try await lead(office, ["firstName": "Bea", "lastName": "Blast", "email": "bea-\(UUID().uuidString.prefix(6))@example.com"])
        let offered = offers(try await explain(office, contactId))
        #expect(offered.count == 3)
        let byAgent = Dictionary(uniqueKeysWithValues: offered.compactMap { offer in offer["agentId"]?.string.map { ($0, offer["id"]?.string ?? "") } })
        let statuses = await withTaskGroup(of: (String, Int, String?).self) { group in
            for agent in agents {
                for _ in 0..<4 {
                    group.addTask {
                        let answer = try? await stack.call(.POST, .routing, "/v1/offers/\(byAgent[agent.id] ?? "")/acceptance", token: agent.token)
                        return (agent.id, answer?.status ?? 0, answer?["answer"]?.string ?? answer?.errorCode)
                    }
                }
            }
            var all: [(String, Int, String?)] = []
            for await result in group { all.append(result) }
            return all
        }
        let winners = Set(statuses.filter { $0.1 == 200 }.map(\.0))
        #expect(winners.count == 1, "exactly one agent wins: \(statuses)")
        #expect(statuses.filter { $0.2 == "accepted" }.count == 1, "one acceptance; the winner's repeats are already_yours: \(statuses)")
        #expect(statuses.filter { $0.1 == 409 }.allSatisfy { $0.2 == "already_accepted" && !winners.contains($0.0) })
        try await stack.waitUntilIdle()
        let winner = try #require(winners.first)
        #expect(try await assignee(office, contactId) == winner)
        // The offer page of a losing agent says it was taken.
        let loser = try #require(agents.first { $0.id != winner })
        let link = try #require(try await links(to: loser.phone).last)
        let page = try await HTTPClient.shared.execute(HTTPClientRequest(url: link), timeout: .seconds(10))
        let html = String(buffer: try await page.body.collect(upTo: 1 << 20))
        #expect(page.status == .ok && html.contains("already accepted"), "\(html)")
        #expect(!html.contains("closed before it was accepted"))
        // A forged link is refused.
        let forged = try await HTTPClient.shared.execute(HTTPClientRequest(url: link.dropLast(2) + "xx"), timeout: .seconds(10))
        #expect(forged.status == .notFound)
        // A link lives a day past its offer's window; after that it is 404, as the contract says, and says so.
        try await advance(minutes: 2 * 24 * 60)
        let expired = try await HTTPClient.shared.execute(HTTPClientRequest(url: link), timeout: .seconds(10))
        let expiredPage = String(buffer: try await expired.body.collect(upTo: 1 << 20))
        #expect(expired.status == .notFound)
        #expect(expiredPage.contains("This link has expired"), "\(expiredPage)")
    }

    @Test("RT-15: in a browser (headless Chromium), an agent opens the link and accepts; a second agent's browser sees it was already accepted")
    func offerPageInBrowser() async throws {
        let office = try await office()
        let (alice, bob) = (office.agents["Alice"]!, office.agents["Bob"]!)
        #expect(try await rule(office, ["name": "Blast", "recipients": ["kind": "agents", "agents": [["agentId": alice.id], ["agentId": bob.id]]],
                                        "distribution": "blast", "channels": ["text"],
                                        "acceptance": ["windowMinutes": 10, "timeoutMinutes": 20, "timeoutAgentId": alice.id]]).status == 201)
        let contactId = try await lead(office, ["firstName": "Paige", "lastName": "Browser", "email": "paige-\(UUID().uuidString.prefix(6))@example.com",
                                                "leadType": "buyer", "searchInterest": ["area": "Wicker Park", "priceMin": 350_000, "priceMax": 500_000]])
        let first = try #require(try await links(to: alice.phone).last)
        let second = try #require(try await links(to: bob.phone).last)
        let (status, log) = try stack.browser("offer_page.py") { [first, second, $0] }
        #expect(status == 0, "\(log)")
        try await stack.waitUntilIdle()
        #expect(try await assignee(office, contactId) == alice.id)
    }

    @Test("RT-16: accepting by phone: 1 accepts, then 2 schedules a follow-up call task for later today; 1 would connect to the lead")
    func acceptByPhone() async throws {
        let office = try await office()
        let alice = office.agents["Alice"]!
        #expect(try await rule(office, ["name": "Calls", "recipients": ["kind": "agents", "agents": [["agentId": alice.id]]], "distribution": "round_robin",
                                        "channels": ["call"], "acceptance": ["windowMinutes": 5, "timeoutMinutes": 5, "timeoutAgentId": alice.id]]).status == 201)
        let leadPhone = NotificationsTests.randomPhone()
        let contactId = try await lead(office, ["firstName": "Cal", "lastName": "Caller", "phone": leadPhone, "leadType": "seller"])
        let call = try #require(try await phone.providerRequests(to: alice.phone).first { ($0["path"]?.string ?? "").hasSuffix("/Calls.json") })
        let url = try #require(call["fields"]?["Url"]?.string)
        let path = String(url.dropFirst(phone.publicURL.count))
        let script = try await phone.webhook(path, [("CallSid", "CA\(UUID().uuidString.prefix(8))")])
        #expect(script.text.contains("Press 1 to accept"), "\(script.text)")
        let messageId = try #require(path.split(separator: "/").last.map(String.init))
        let first = try await phone.webhook("/webhooks/twilio/gather/\(messageId)", [("Digits", "1")])
        #expect(first.text.contains("is your lead") && first.text.contains("step=2"), "\(first.text)")
        let second = try await phone.webhook("/webhooks/twilio/gather/\(messageId)?step=2", [("Digits", "2")])
        #expect(second.text.contains("task list"), "\(second.text)")
        try await stack.waitUntilIdle()
        #expect(try await assignee(office, contactId) == alice.id)
        let tasks = try await stack.call(.GET, .contacts, "/v1/contacts/\(contactId)/tasks", token: office.brokerage.adminToken)
        let task = try #require(tasks["items"]?.array?.first, "\(tasks.text)")
        #expect(tasks["items"]?.array?.count == 1, "one follow-up task: \(tasks.text)")
        #expect(task["kind"]?.string == "call" && task["assigneeId"]?.string == alice.id)
        let connect = try await phone.webhook("/webhooks/twilio/gather/\(messageId)?step=2", [("Digits", "1")])
        #expect(connect.text.contains("<Dial action=") && connect.text.contains(">\(leadPhone)</Number></Dial>"), "\(connect.text)")
    }

    @Test("RT-6: a rule's lender is attached to the leads it routes, overriding the agent's own, which is attached otherwise; a pond rule puts leads in the pond; all agents includes later joiners; a hand assignment withdraws open offers, and so does archiving (ST-7)")
    func recipientsLenderAndPond() async throws {
        let office = try await office()
        let (alice, bob, cara) = (office.agents["Alice"]!, office.agents["Bob"]!, office.agents["Cara"]!)
        let admin = office.brokerage.adminToken
        let lender = try await stack.call(.POST, .contacts, "/v1/users", token: admin, json: Stack.json([
            "role": "lender", "firstName": "Len", "lastName": "Der", "email": "len-\(UUID().uuidString.prefix(8).lowercased())@example.com",
            "password": "lender password 1", "entityIds": [office.brokerage.rootEntityId],
        ]))
        let lenderId = try #require(lender["id"]?.string, "\(lender.text)")
        let pond = try await stack.call(.POST, .contacts, "/v1/ponds", token: admin, json: Stack.json(["entityId": office.brokerage.rootEntityId, "name": "Open house"]))
        let pondId = try #require(pond["id"]?.string, "\(pond.text)")
        try await stack.waitUntilIdle()

        let nowhere = try await rule(office, ["name": "Nowhere", "recipients": ["kind": "pond", "pondId": UUID().uuidString], "distribution": "round_robin", "channels": ["email"]])
        #expect(nowhere.status == 422 && nowhere.errorField == "recipients.pondId", "a pond that does not exist: \(nowhere.text)")
        let agentAsLender = try await rule(office, ["name": "Bad lender", "recipients": ["kind": "all_agents"], "distribution": "round_robin",
                                                    "channels": ["email"], "lenderId": alice.id])
        #expect(agentAsLender.status == 422 && agentAsLender.errorField == "lenderId")
        #expect(try await rule(office, ["name": "Open house", "criteria": ["hashtags": ["#openhouse"]], "recipients": ["kind": "pond", "pondId": pondId],
                                        "distribution": "round_robin", "channels": ["email"]]).status == 201)
        #expect(try await rule(office, ["name": "Financing", "criteria": ["hashtags": ["#financing"]], "recipients": ["kind": "all_agents"],
                                        "distribution": "round_robin", "channels": ["email"], "lenderId": lenderId]).status == 201)

        let pooled = try await lead(office, ["firstName": "Poppy", "email": "poppy-\(UUID().uuidString.prefix(6))@example.com", "tags": ["openhouse"]])
        let pooledContact = try await stack.call(.GET, .contacts, "/v1/contacts/\(pooled)", token: admin)
        #expect(pooledContact["pondId"]?.string == pondId && pooledContact["assignedAgentId"] == nil, "\(pooledContact.text)")
        #expect(try await explain(office, pooled)["state"]?.string == "pond")
        #expect(try await stack.call(.GET, .contacts, "/v1/ponds/\(pondId)/contacts", token: alice.token)["items"]?.array?.count == 1, "agents see it in the pond")

        // Everyone but a newcomer is out of rotation: "all agents" finds the agent who joined after the rule was made.
        for agent in [alice, bob, cara] {
            #expect(try await stack.call(.PATCH, .contacts, "/v1/users/\(agent.id)", token: admin, json: #"{"rotation":{"inRotation":false}}"#).status == 200)
        }
        let olga = try await stack.call(.POST, .contacts, "/v1/users", token: admin, json: Stack.json([
            "role": "lender", "firstName": "Olga", "lastName": "Own", "email": "olga-\(UUID().uuidString.prefix(8).lowercased())@example.com",
            "entityIds": [office.brokerage.rootEntityId],
        ]))
        let olgaId = try #require(olga["id"]?.string, "\(olga.text)")
        let dan = try await stack.call(.POST, .contacts, "/v1/users", token: admin, json: Stack.json([
            "role": "agent", "firstName": "Dan", "lastName": "Newman", "email": "dan-\(UUID().uuidString.prefix(8).lowercased())@example.com",
            "password": "agent password 1", "entityIds": [office.brokerage.rootEntityId], "lenderId": olgaId,
        ]))
        let danId = try #require(dan["id"]?.string, "\(dan.text)")
        #expect(dan["lenderId"]?.string == olgaId, "an agent's own lender: \(dan.text)")
        let agentNotLender = try await stack.call(.PATCH, .contacts, "/v1/users/\(danId)", token: admin, json: Stack.json(["lenderId": alice.id]))
        #expect(agentNotLender.status == 422 && agentNotLender.errorField == "lenderId", "\(agentNotLender.text)")
        let lenderOfLender = try await stack.call(.PATCH, .contacts, "/v1/users/\(lenderId)", token: admin, json: Stack.json(["lenderId": olgaId]))
        #expect(lenderOfLender.status == 422 && lenderOfLender.errorField == "lenderId", "\(lenderOfLender.text)")
        let danToken = try await stack.login(try #require(dan["email"]?.string), "agent password 1")
        #expect(try await stack.call(.PATCH, .contacts, "/v1/users/\(danId)", token: danToken, json: Stack.json(["lenderId": lenderId])).status == 403,
                "an agent's lender is an admin's to set")
        try await stack.waitUntilIdle()
        let financed = try await lead(office, ["firstName": "Finn", "email": "finn-\(UUID().uuidString.prefix(6))@example.com", "tags": ["financing"]])
        let financedContact = try await stack.call(.GET, .contacts, "/v1/contacts/\(financed)", token: admin)
        #expect(financedContact["assignedAgentId"]?.string == danId, "\(financedContact.text)")
        #expect(financedContact["lenderId"]?.string == lenderId, "RT-6: the rule's lender overrides the agent's own: \(financedContact.text)")
        let plain = try await lead(office, ["firstName": "Paula", "email": "paula-\(UUID().uuidString.prefix(6))@example.com"])
        let plainContact = try await stack.call(.GET, .contacts, "/v1/contacts/\(plain)", token: admin)
        #expect(plainContact["assignedAgentId"]?.string == danId && plainContact["lenderId"]?.string == olgaId,
                "RT-6: without a rule lender the agent's own is attached: \(plainContact.text)")

        // Offers out, then an admin assigns the lead by hand: the offers are withdrawn and no timeout moves it again.
        for agent in [alice, bob] {
            _ = try await stack.call(.PATCH, .contacts, "/v1/users/\(agent.id)", token: admin, json: #"{"rotation":{"inRotation":true}}"#)
        }
        try await stack.waitUntilIdle()
        #expect(try await rule(office, ["name": "Offers", "criteria": ["hashtags": ["#offer"]], "recipients": ["kind": "agents", "agents": [["agentId": alice.id], ["agentId": bob.id]]],
                                        "distribution": "round_robin", "channels": ["email"],
                                        "acceptance": ["windowMinutes": 5, "timeoutMinutes": 10, "timeoutAgentId": bob.id]]).status == 201)
        let offered = try await lead(office, ["firstName": "Ozzie", "email": "ozzie-\(UUID().uuidString.prefix(6))@example.com", "tags": ["offer"]])
        var why = try await explain(office, offered)
        let offerId = try #require(offers(why).first?["id"]?.string, "\(why.text)")
        let byHand = try await stack.call(.POST, .contacts, "/v1/contacts/\(offered)/assignment", token: admin, json: Stack.json(["agentId": danId]))
        #expect(byHand.status == 200, "\(byHand.text)")
        try await stack.waitUntilIdle()
        why = try await explain(office, offered)
        #expect(why["state"]?.string == "assigned" && why["assignedAgentId"]?.string == danId, "\(why.text)")
        #expect((why["history"]?.array ?? []).contains { $0["kind"]?.string == "reassigned" }, "\(why.text)")
        #expect(offers(why).allSatisfy { $0["state"]?.string == "closed" }, "\(why.text)")
        let late = try await stack.call(.POST, .routing, "/v1/offers/\(offerId)/acceptance", token: alice.token)
        #expect(late.status == 409, "\(late.text)")
        // ST-7: a lead archived while its offers are out is routed no further.
        let dropped = try await lead(office, ["firstName": "Archie", "email": "archie-\(UUID().uuidString.prefix(6))@example.com", "tags": ["offer"]])
        #expect(try await explain(office, dropped)["state"]?.string == "offering")
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(dropped)/status", token: admin, json: #"{"status":"archive"}"#).status == 200)
        try await stack.waitUntilIdle()
        let stopped = try await explain(office, dropped)
        #expect(stopped["state"]?.string == "not_routed" && offers(stopped).allSatisfy { $0["state"]?.string == "closed" }, "\(stopped.text)")
        try await advance(minutes: 11)
        #expect(try await assignee(office, offered) == danId, "the rule's timeout no longer applies")
        #expect(try await assignee(office, dropped) == nil, "ST-7: nor to an archived lead")
    }

    @Test("RT-17: an address-only seller waits with the admin until contact details arrive; agent-site leads go to their agent")
    func addressOnlyAndAgentSite() async throws {
        let office = try await office()
        let contactId = try await lead(office, ["firstName": "Sal", "leadType": "seller", "address": ["street": "1 Main St", "city": "Chicago", "state": "IL"]])
        var why = try await explain(office, contactId)
        #expect(why["state"]?.string == "awaiting_contact_info", "\(why.text)")
        #expect(try await assignee(office, contactId) == office.adminId)
        let patched = try await stack.call(.PATCH, .contacts, "/v1/contacts/\(contactId)", token: office.brokerage.adminToken,
                                           json: Stack.json(["phones": [NotificationsTests.randomPhone()]]))
        #expect(patched.status == 200, "\(patched.text)")
        try await stack.waitUntilIdle()
        why = try await explain(office, contactId)
        #expect(why["state"]?.string == "assigned" && why["round"] == .number(2), "\(why.text)")
        let agentIds = Set(office.agents.values.map(\.id))
        #expect(agentIds.contains(try await assignee(office, contactId) ?? ""))

        let bob = office.agents["Bob"]!
        let site = try await stack.call(.POST, .contacts, "/v1/lead-sources", token: office.brokerage.adminToken, json: Stack.json([
            "name": "Bob's site", "origin": "website", "entityId": office.brokerage.rootEntityId, "agentId": bob.id,
        ]))
        let siteKey = try #require(site["apiKey"]?.string)
        for index in 0..<2 {
            let answer = try await stack.call(.POST, .contacts, "/v1/leads", json: Stack.json(["firstName": "Site\(index)", "email": "site\(index)-\(UUID().uuidString.prefix(6))@example.com"]),
                                              headers: [("X-Api-Key", siteKey)])
            let id = try #require(answer["contact"]?["id"]?.string)
            try await stack.waitUntilIdle()
            #expect(try await assignee(office, id) == bob.id)
        }
    }

    @Test("RT-18, RT-19: a listing's agent is offered the lead for the listing-agent timeout, then the rules route it; bypass sends it through the rules")
    func listingAgent() async throws {
        let office = try await office()
        let cara = office.agents["Cara"]!
        let settings = try await stack.call(.PUT, .routing, "/v1/routing/settings", token: office.brokerage.adminToken,
                                            json: #"{"bypassListingAgent": false, "listingAgentTimeoutMinutes": 15}"#)
        #expect(settings.status == 200, "\(settings.text)")
        let bad = try await stack.call(.PUT, .routing, "/v1/routing/settings", token: office.brokerage.adminToken,
                                       json: #"{"bypassListingAgent": false, "listingAgentTimeoutMinutes": 7}"#)
        #expect(bad.status == 422 && bad.errorField == "listingAgentTimeoutMinutes")
        let listing: [String: Any] = ["listingId": "MLS-77", "listingAgentId": cara.id]
        let contactId = try await lead(office, ["firstName": "Lis", "email": "lis-\(UUID().uuidString.prefix(6))@example.com", "listing": listing])
        var why = try await explain(office, contactId)
        #expect(why["state"]?.string == "offering" && offers(why).first?["agentId"]?.string == cara.id, "\(why.text)")
        try await advance(minutes: 16)
        why = try await explain(office, contactId)
        #expect(why["state"]?.string == "assigned" && why["round"] == .number(2), "RT-19: routed again without the listing step: \(why.text)")
        #expect(why["summary"]?.string?.contains("did not accept in time") == true)

        _ = try await stack.call(.PUT, .routing, "/v1/routing/settings", token: office.brokerage.adminToken, json: #"{"bypassListingAgent": true}"#)
        let bypassed = try await lead(office, ["firstName": "By", "email": "by-\(UUID().uuidString.prefix(6))@example.com", "listing": listing])
        why = try await explain(office, bypassed)
        #expect(why["summary"]?.string?.contains("bypasses") == true, "\(why.text)")
    }
}
