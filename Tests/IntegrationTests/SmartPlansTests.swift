import Foundation
import Models
import Testing

/// SmartPlans over HTTP (SPEC section 5): plans, enrollment, steps run on the virtual clock
/// through notifications and contacts, the preview.
@Suite("SmartPlans over HTTP: plans, enrollment, runs on the virtual clock, triggers", .serialized)
struct SmartPlansTests {
    let stack: Stack

    init() throws {
        stack = try Stack.fromEnvironment()
    }

    /// Moves the shared clock to the next 12:00 in Chicago, inside every window of SP-5 and SP-6.
    func toChicagoNoon() async throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "America/Chicago") ?? .gmt
        let now = try await stack.clockNow()
        let noon = calendar.nextDate(after: now, matching: DateComponents(hour: 12, minute: 0), matchingPolicy: .nextTime) ?? now
        try await advance(seconds: Int(noon.timeIntervalSince(now)) + 1)
    }

    func advance(seconds: Int) async throws {
        _ = try await stack.call(.POST, .routing, "/v1/admin/clock", token: try await stack.serviceToken(), json: #"{"advanceSeconds": \#(seconds)}"#)
        try await stack.waitUntilIdle()
    }

    @Test("SP-1, SP-3, SP-4, SP-5, SP-6, SP-10, SP-11: a plan's preview shows its whole future rendered; enrolling runs the first steps at once (e-mail, text, call task), the delay holds the rest; an edit keeps contacts at their step; deactivated it pauses, activated it resumes; a second enrollment is reported; an archived contact gets nothing more; the figures count it all")
    func planRunsOnce() async throws {
        let brokerage = try await stack.newCompany()
        // CAN-SPAM: automated e-mails carry the brokerage's postal address (without it they are suppressed, SP-7's failure).
        #expect(try await stack.call(.PATCH, .contacts, "/v1/entities/\(brokerage.rootEntityId)", token: brokerage.adminToken,
                                     json: Stack.json(["postalAddress": "1 Plan Street, Chicago, IL 60601"])).status == 200)
        let email = "pia-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let agent = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
            "role": "agent", "firstName": "Pia", "lastName": "Planner", "email": email, "password": "agent password 1",
            "entityIds": [brokerage.rootEntityId]]))
        let agentId = try #require(agent["id"]?.string, "\(agent.text)")
        let agentToken = try await stack.login(email, "agent password 1")
        func contact(_ first: String) async throws -> String {
            let created = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
                "status": "active_lead", "firstName": first, "lastName": "Lead", "phones": [NotificationsTests.randomPhone()],
                "emails": ["\(first.lowercased())-\(UUID().uuidString.prefix(6))@example.com"], "assignedAgentId": agentId]))
            return try #require(created["id"]?.string, "\(created.text)")
        }
        let ann = try await contact("Ann")
        let bo = try await contact("Bo")
        try await stack.waitUntilIdle()
        try await toChicagoNoon()

        let refused = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: agentToken, json: Stack.json([
            "name": "Bad", "durationDays": 30, "steps": [["kind": "email", "subject": "Hi", "body": "Hi {contact.nickname}"]]]))
        #expect(refused.status == 422 && refused.errorField == "steps[0].body", "SP-4: \(refused.text)")
        let created = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: agentToken, json: Stack.json([
            "name": "New buyer nurture", "durationDays": 30, "steps": [
                ["kind": "email", "subject": "Welcome {contact.first.name}", "body": "Glad to help, {contact.first.name}. - {agent.first.name}"],
                ["kind": "text", "body": "Hi {contact.first.name}, it's {agent.first.name}. Any questions?"],
                ["kind": "call", "title": "Call {contact.first.name}", "days": 1],
                ["kind": "delay", "days": 2],
                ["kind": "email", "subject": "Still looking, {contact.first.name}?", "body": "New listings this week."],
            ]]))
        let planId = try #require(created["id"]?.string, "\(created.text)")
        // An add_to_plan step never names its own plan, nor one the saver cannot see.
        let selfAdding = try await stack.call(.PUT, .smartplans, "/v1/smartplans/plans/\(planId)", token: agentToken, json: Stack.json([
            "name": "New buyer nurture", "durationDays": 30, "steps": [["kind": "delay", "days": 1], ["kind": "add_to_plan", "planId": planId]]]))
        #expect(selfAdding.status == 422 && selfAdding.errorField == "steps[1].planId", "\(selfAdding.text)")
        let unknown = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: agentToken, json: Stack.json([
            "name": "Elsewhere", "durationDays": 30, "steps": [["kind": "add_to_plan", "planId": UUID().uuidString]]]))
        #expect(unknown.status == 422 && unknown.errorField == "steps[0].planId", "\(unknown.text)")

        let preview = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/preview", token: agentToken,
                                           json: Stack.json(["contactId": ann]))
        let future = preview["items"]?.array ?? []
        #expect(future.map { $0["kind"]?.string } == ["email", "text", "call", "email"], "\(preview.text)")
        #expect(future.first?["subject"]?.string == "Welcome Ann" && future.last?["subject"]?.string == "Still looking, Ann?", "\(preview.text)")

        let report = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: agentToken,
                                          json: Stack.json(["contactIds": [ann, bo, UUID().uuidString]]))
        #expect(report["items"]?.array?.map { $0["outcome"]?.string } == ["enrolled", "enrolled", "not_found"], "\(report.text)")
        try await stack.waitUntilIdle()
        let again = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: agentToken,
                                         json: Stack.json(["contactIds": [ann]]))
        #expect(again["items"]?.array?.first?["outcome"]?.string == "already_enrolled")

        func messages(_ contactId: String) async throws -> [JSONValue] {
            try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)", token: brokerage.adminToken)["items"]?.array ?? []
        }
        let first = try await messages(ann)
        #expect(first.contains { $0["subject"]?.string == "Welcome Ann" }, "SP-3: the e-mail at once: \(first)")
        #expect(first.contains { $0["channel"]?.string == "sms" && $0["body"]?.string == "Hi Ann, it's Pia. Any questions?" }, "SP-5: \(first)")
        let tasks = try await stack.call(.GET, .contacts, "/v1/contacts/\(ann)/tasks", token: brokerage.adminToken)
        #expect(tasks["items"]?.array?.contains { $0["title"]?.string == "Call Ann" && $0["kind"]?.string == "call" && $0["assigneeId"]?.string == agentId } == true,
                "SP-6: \(tasks.text)")

        // SP-10: edited while it runs; Ann and Bo continue at the last e-mail (kept by its id), now reworded.
        var steps = created["steps"]?.array ?? []
        let lastId = try #require(steps.last?["id"]?.string)
        steps.removeLast()
        let edit = try await stack.call(.PUT, .smartplans, "/v1/smartplans/plans/\(planId)", token: agentToken, json: Stack.json([
            "name": "New buyer nurture", "durationDays": 30, "steps": [
                ["kind": "email", "subject": "Welcome {contact.first.name}", "body": "Glad to help."],
                ["kind": "delay", "days": 2],
                ["id": lastId, "kind": "email", "subject": "Still house hunting, {contact.first.name}?", "body": "New listings this week."],
            ]]))
        #expect(edit["version"] == .number(2), "\(edit.text)")
        // SP-11: Bo is archived before his next step.
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(bo)/status", token: brokerage.adminToken, json: #"{"status":"archive"}"#).status == 200)
        try await stack.waitUntilIdle()
        // SP-10: deactivated, the plan pauses every enrollment; activated, they resume where they were.
        let paused = try await stack.call(.PUT, .smartplans, "/v1/smartplans/plans/\(planId)/activation", token: agentToken, json: #"{"active":false}"#)
        #expect(paused["active"] == .bool(false), "\(paused.text)")
        try await advance(seconds: 2 * 86_400 + 60)
        #expect(try await messages(ann).contains { ($0["subject"]?.string ?? "").hasPrefix("Still") } == false, "paused")
        #expect(try await stack.call(.PUT, .smartplans, "/v1/smartplans/plans/\(planId)/activation", token: agentToken, json: #"{"active":true}"#).status == 200)
        try await stack.waitUntilIdle()
        #expect(try await messages(ann).contains { $0["subject"]?.string == "Still house hunting, Ann?" }, "resumed, in the new version's step")
        #expect(try await messages(bo).contains { ($0["subject"]?.string ?? "").hasPrefix("Still") } == false, "SP-11")
        let enrollments = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: agentToken)
        let states = Dictionary(uniqueKeysWithValues: (enrollments["items"]?.array ?? []).compactMap { item -> (String, String)? in
            guard let id = item["contactId"]?.string, let state = item["state"]?.string else { return nil }
            return (id, state)
        })
        #expect(states[ann] == "finished" && states[bo] == "stopped", "\(enrollments.text)")
        let plan = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(planId)", token: agentToken)
        #expect(plan["figures"]?["enrolled"] == .number(2) && plan["figures"]?["finished"] == .number(1) && plan["figures"]?["messagesSent"] == .number(5),
                "an e-mail and a text to each of two contacts at first, one more e-mail to Ann: \(plan.text)")
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(ann)/timeline", token: brokerage.adminToken)
        #expect(timeline["items"]?.array?.contains { $0["summary"]?.string == "SmartPlan \"New buyer nurture\", step 3: sent the e-mail \"Still house hunting, Ann?\". SmartPlan \"New buyer nurture\" finished." } == true,
                "the last run's step and the plan's end, one entry: \(timeline.text)")
    }

    @Test("SP-8, SP-9, SP-1: a trigger tag added to a contact enrolls it once and removing it does not unenroll; a contact tagged otherwise is not enrolled; a status that becomes the trigger status enrolls; enrollment is on the timeline; an add-to-plan step enrolls in the other plan, and a cycle back ends there")
    func triggersEnroll() async throws {
        let brokerage = try await stack.newCompany()
        func contact(_ first: String, tags: [String] = []) async throws -> String {
            let created = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
                "status": "new_lead", "firstName": first, "lastName": "Trigger", "tags": tags]))
            return try #require(created["id"]?.string, "\(created.text)")
        }
        let tagged = try await contact("Tia")
        let other = try await contact("Oli")
        let promoted = try await contact("Pam")
        let followOn = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "Follow-on", "durationDays": 10, "steps": [["kind": "email", "subject": "More for {contact.first.name}", "body": "Hi."]]]))
        let followOnId = try #require(followOn["id"]?.string, "\(followOn.text)")
        let plan = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "Hot leads", "durationDays": 10, "steps": [["kind": "task", "title": "Call {contact.first.name} today", "days": 0],
                                                               ["kind": "add_to_plan", "planId": followOnId]],
            "triggers": ["tags": ["hot"], "statusBecomes": ["client"]]]))
        let planId = try #require(plan["id"]?.string, "\(plan.text)")
        // The follow-on plan adds its contacts back to the first: a cycle, bounded (a contact is enrolled in a plan once).
        #expect(try await stack.call(.PUT, .smartplans, "/v1/smartplans/plans/\(followOnId)", token: brokerage.adminToken, json: Stack.json([
            "name": "Follow-on", "durationDays": 10, "steps": [["kind": "email", "subject": "More for {contact.first.name}", "body": "Hi."],
                                                              ["kind": "add_to_plan", "planId": planId]]])).status == 200)
        try await stack.waitUntilIdle()
        func tag(_ id: String, _ tag: String, remove: Bool = false) async throws {
            #expect(try await stack.call(remove ? .DELETE : .PUT, .contacts, "/v1/contacts/\(id)/tags/\(tag)", token: brokerage.adminToken).status == 200)
        }
        try await tag(tagged, "Hot")
        try await tag(other, "cold")
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(promoted)/status", token: brokerage.adminToken, json: #"{"status":"client"}"#).status == 200)
        try await stack.waitUntilIdle()
        try await tag(tagged, "Hot", remove: true)
        try await tag(tagged, "hot")
        try await stack.waitUntilIdle()
        let enrollments = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: brokerage.adminToken)
        let enrolled = Set((enrollments["items"]?.array ?? []).compactMap { $0["contactId"]?.string })
        #expect(enrolled == [tagged, promoted], "\(enrollments.text)")
        let followed = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(followOnId)/enrollments", token: brokerage.adminToken)
        #expect(Set((followed["items"]?.array ?? []).compactMap { $0["contactId"]?.string }) == [tagged, promoted], "SP-1's add to plan: \(followed.text)")
        #expect(enrollments["items"]?.array?.count == 2 && enrollments["items"]?.array?.allSatisfy { $0["state"]?.string == "finished" } == true,
                "the cycle back found them enrolled and ended: \(enrollments.text)")
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(tagged)/timeline", token: brokerage.adminToken)
        #expect(timeline["items"]?.array?.filter { $0["summary"]?.string?.hasPrefix("Enrolled in SmartPlan \"Hot leads\". SmartPlan \"Hot leads\", step 1: ") == true }.count == 1,
                "\(timeline.text)")
    }

    @Test("SP-10: contacts taken out of a plan in bulk, with a line per contact, get nothing more; the one left in goes on")
    func bulkRemoval() async throws {
        let brokerage = try await stack.newCompany()
        #expect(try await stack.call(.PATCH, .contacts, "/v1/entities/\(brokerage.rootEntityId)", token: brokerage.adminToken,
                                     json: Stack.json(["postalAddress": "4 Removal Road, Chicago, IL 60601"])).status == 200)
        var ids: [String] = []
        for first in ["Rae", "Rob", "Kit"] {
            let created = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
                "status": "active_lead", "firstName": first, "lastName": "Bulk", "emails": ["\(first.lowercased())-\(UUID().uuidString.prefix(6))@example.com"]]))
            ids.append(try #require(created["id"]?.string, "\(created.text)"))
        }
        try await stack.waitUntilIdle()
        let plan = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "Two notes", "durationDays": 10, "steps": [
                ["kind": "email", "subject": "First, {contact.first.name}", "body": "One."], ["kind": "delay", "days": 1],
                ["kind": "email", "subject": "Second, {contact.first.name}", "body": "Two."]]]))
        let planId = try #require(plan["id"]?.string, "\(plan.text)")
        _ = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: brokerage.adminToken, json: Stack.json(["contactIds": ids]))
        try await stack.waitUntilIdle()
        let stranger = UUID().uuidString
        let report = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments/removals", token: brokerage.adminToken,
                                          json: Stack.json(["contactIds": [ids[0], ids[1], stranger, ids[0]]]))
        #expect(report["items"]?.array?.map { "\($0["contactId"]?.string ?? ""):\($0["outcome"]?.string ?? "")" }
                == ["\(ids[0]):removed", "\(ids[1]):removed", "\(stranger):not_enrolled"], "\(report.text)")
        let none = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments/removals", token: brokerage.adminToken,
                                           json: Stack.json(["contactIds": [String]()]))
        #expect(none.status == 422 && none.errorField == "contactIds", "\(none.text)")
        try await advance(seconds: 86_400 + 60)
        for (index, id) in ids.enumerated() {
            let subjects = (try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(id)", token: brokerage.adminToken)["items"]?.array ?? [])
                .compactMap { $0["subject"]?.string }
            #expect(subjects.filter { $0.hasPrefix("Second") }.count == (index == 2 ? 1 : 0) && subjects.filter { $0.hasPrefix("First") }.count == 1,
                    "\(index): \(subjects)")
        }
        let states = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: brokerage.adminToken)["items"]?.array ?? []
        #expect(states.filter { $0["state"]?.string == "removed" }.count == 2 && states.filter { $0["state"]?.string == "finished" }.count == 1, "\(states)")
    }

    @Test("SP-7: an e-mail step that notifications refuses to send (no postal address for CAN-SPAM) is not retried: its failure goes on the timeline and the plan moves on to its text")
    func failedEmailMovesOn() async throws {
        let brokerage = try await stack.newCompany()
        let created = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
            "status": "active_lead", "firstName": "Fay", "lastName": "Fail", "phones": [NotificationsTests.randomPhone()],
            "emails": ["fay-\(UUID().uuidString.prefix(6))@example.com"]]))
        let contactId = try #require(created["id"]?.string, "\(created.text)")
        try await stack.waitUntilIdle()
        try await toChicagoNoon()
        let plan = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "No address", "durationDays": 5, "steps": [
                ["kind": "email", "subject": "Hello {contact.first.name}", "body": "Welcome."],
                ["kind": "text", "body": "Hi {contact.first.name}!"],
            ]]))
        let planId = try #require(plan["id"]?.string, "\(plan.text)")
        _ = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: brokerage.adminToken,
                                 json: Stack.json(["contactIds": [contactId]]))
        try await stack.waitUntilIdle()
        let figures = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(planId)", token: brokerage.adminToken)["figures"]
        #expect(figures?["failed"] == .number(1) && figures?["messagesSent"] == .number(1) && figures?["finished"] == .number(1), "\(String(describing: figures))")
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(contactId)/timeline", token: brokerage.adminToken)
        #expect(timeline["items"]?.array?.contains { ($0["summary"]?.string ?? "").contains("did not send the e-mail \"Hello Fay\" (no_postal_address)") } == true,
                "\(timeline.text)")
        let sent = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)", token: brokerage.adminToken)["items"]?.array ?? []
        #expect(sent.filter { $0["subject"]?.string == "Hello Fay" }.count == 1, "not retried: \(sent)")
    }

    @Test("SP-1 … SP-8, SP-11: a team's quarter on the virtual clock — a 90-day team plan by roles (a role's steps from its agent), contacts imported with its trigger tag at 20:30 Chicago, the clock moved in 3-day steps: each contact gets exactly the messages and tasks its preview showed (held texts the next morning, texts only 10:00–19:00), the archived one only those before, and e-mails the provider refuses (its sending limit) fail at once, not retried, and count as failed")
    func teamQuarter() async throws {
        let brokerage = try await stack.newCompany()
        let root = brokerage.rootEntityId
        #expect(try await stack.call(.PATCH, .contacts, "/v1/entities/\(root)", token: brokerage.adminToken,
                                     json: Stack.json(["postalAddress": "3 Quarter Lane, Chicago, IL 60601"])).status == 200)
        func user(_ first: String) async throws -> (id: String, email: String) {
            let email = "\(first.lowercased())-\(UUID().uuidString.prefix(8).lowercased())@example.com"
            let made = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
                "role": "agent", "firstName": first, "lastName": "Quarter", "email": email, "password": "agent password 1", "entityIds": [root]]))
            return (try #require(made["id"]?.string, "\(made.text)"), email)
        }
        let isa = try await user("Isa"), pia = try await user("Pia")
        let plan = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "Spring buyers", "owner": "team", "entityId": root, "roles": ["isa": isa.id], "durationDays": 90,
            "triggers": ["tags": ["spring buyers"]], "steps": [
                ["kind": "email", "subject": "Welcome {contact.first.name}", "body": "Hi {contact.first.name}, {agent.first.name} here."],
                ["kind": "text", "body": "Hi {contact.first.name}, it's {agent.first.name}. Any questions?", "role": "isa"],
                ["kind": "call", "title": "Call {contact.first.name}", "days": 1, "role": "isa"],
                ["kind": "delay", "hours": 13],
                ["kind": "text", "bodies": ["New listings for you, {contact.first.name}.", "Open houses this weekend, {contact.first.name}.", "Still looking?"]],
                ["kind": "delay", "days": 6],
                ["kind": "email", "subject": "This week's homes, {contact.first.name}", "body": "Three new ones."],
                ["kind": "delay", "days": 7],
                ["kind": "restart"],
            ]]))
        let planId = try #require(plan["id"]?.string, "\(plan.text)")
        try await stack.waitUntilIdle()
        try await toChicagoNoon()
        try await advance(seconds: 8 * 3_600 + 1_800)  // 20:30 Chicago: the first texts are held for the morning.

        let suffix = UUID().uuidString.prefix(6).lowercased()
        let names = ["Ada", "Ben", "Cal"]
        let emails = names.map { "\($0.lowercased())-\(suffix)@example.com" }
        // SP-7: the provider refuses every e-mail to Ben (its sending limit, a 429 it would retry for any other message), after notifications accepted them.
        try await NotificationsTests().script(to: emails[1], Array(repeating: ["status": 429, "message": "daily sending limit reached"], count: 40))
        var csv = "First Name,Last Name,Email,Phone,Status,Tags,Agent\n"
        for (name, email) in zip(names, emails) {
            csv += "\(name),Quarter,\(email),\(NotificationsTests.randomPhone()),active_lead,Spring Buyers;zillow,\(pia.email)\n"
        }
        let imported = try await stack.callRaw(.POST, .contacts, "/v1/contacts/import", token: brokerage.adminToken, body: csv, contentType: "text/csv")
        #expect(imported["imported"] == .number(3), "\(imported.text)")
        try await stack.waitUntilIdle()
        let listed = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: brokerage.adminToken)
        let enrollments = listed["items"]?.array ?? []
        #expect(enrollments.count == 3, "SP-8: the import's tag enrolls each contact: \(listed.text)")
        var ids: [String: String] = [:], previews: [String: [JSONValue]] = [:]
        for enrollment in enrollments {
            let contactId = try #require(enrollment["contactId"]?.string), start = try #require(enrollment["enrolledAt"]?.string)
            let contact = try await stack.call(.GET, .contacts, "/v1/contacts/\(contactId)", token: brokerage.adminToken)
            let first = try #require(contact["firstName"]?.string)
            ids[first] = contactId
            previews[first] = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/preview", token: brokerage.adminToken,
                                                    json: Stack.json(["contactId": contactId, "start": start]))["items"]?.array ?? []
        }
        let ada = try #require(ids["Ada"]), ben = try #require(ids["Ben"]), cal = try #require(ids["Cal"])

        // The quarter, in 3-day steps landing at noon; Cal is archived after the first month.
        try await advance(seconds: 15 * 3_600 + 1)
        var archivedAt: Date?
        for stepNumber in 1...31 {
            try await advance(seconds: 3 * 86_400)
            if stepNumber == 10 {
                archivedAt = try await stack.clockNow()
                #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(cal)/status", token: brokerage.adminToken, json: #"{"status":"archive"}"#).status == 200)
            }
        }

        var chicago = Calendar(identifier: .gregorian)
        chicago.timeZone = TimeZone(identifier: "America/Chicago") ?? .gmt
        func date(_ value: JSONValue?) -> Date? { value?.string.flatMap { RFC3339.date(from: $0) } }
        /// What the preview said each contact gets by `until`, as the messages and tasks would show it.
        func expected(_ first: String, until: Date = .distantFuture) -> (messages: [String], tasks: [(title: String, due: Date)]) {
            let items = (previews[first] ?? []).filter { (date($0["at"]) ?? .distantFuture) <= until }
            return (items.compactMap { item in
                        switch item["kind"]?.string {
                        case "email": "email: \(item["subject"]?.string ?? "")"
                        case "text": "sms: \(item["body"]?.string ?? "")"
                        default: nil
                        }
                    },
                    items.compactMap { $0["kind"]?.string == "call" ? ($0["title"]?.string ?? "", date($0["dueAt"]) ?? .distantPast) : nil })
        }
        func actual(_ contactId: String) async throws -> (messages: [String], tasks: [(title: String, due: Date)], sent: [JSONValue]) {
            let sent = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)&limit=200", token: brokerage.adminToken)["items"]?.array ?? []
            let tasks = try await stack.call(.GET, .contacts, "/v1/contacts/\(contactId)/tasks?limit=200", token: brokerage.adminToken)["items"]?.array ?? []
            let ordered = sent.sorted { (date($0["createdAt"]) ?? .distantPast, $0["id"]?.string ?? "") < (date($1["createdAt"]) ?? .distantPast, $1["id"]?.string ?? "") }
            return (ordered.map { "\($0["channel"]?.string ?? ""): \($0["channel"]?.string == "email" ? $0["subject"]?.string ?? "" : $0["body"]?.string ?? "")" },
                    tasks.filter { $0["assigneeId"]?.string == isa.id }.map { ($0["title"]?.string ?? "", date($0["dueAt"]) ?? .distantFuture) },
                    sent)
        }
        for (first, contactId) in [("Ada", ada), ("Ben", ben)] {
            let want = expected(first), got = try await actual(contactId)
            // SP-2: the role's step is sent from its agent (Isa); the others from the contact's (Pia).
            #expect(got.messages.contains("sms: Hi \(first), it's Isa. Any questions?") && got.messages.contains("email: Welcome \(first)"), "\(got.messages)")
            #expect(got.sent.contains { $0["body"]?.string?.hasPrefix("Hi \(first), Pia here.") == true }, "\(got.sent.prefix(3))")
            #expect(want.messages.count > 20 && got.messages.sorted() == want.messages.sorted(),
                    "\(first): \(got.messages.count) messages, the preview \(want.messages.count)")
            // SP-6: due the step's day later by the plan's calendar (to the second: the preview's start is the listed enrolledAt, in milliseconds).
            let sameTasks = got.tasks.count == want.tasks.count && zip(got.tasks.sorted { $0.due < $1.due }, want.tasks.sorted { $0.due < $1.due })
                .allSatisfy { $0.title == $1.title && abs($0.due.timeIntervalSince($1.due)) < 1 }
            #expect(sameTasks && want.tasks.count >= 6, "SP-2, SP-6: \(first)'s call tasks, for the role's agent: \(got.tasks) vs \(want.tasks)")
            for text in got.sent where text["channel"]?.string == "sms" {
                let at = date(text["sentAt"]) ?? .distantPast
                let minute = chicago.component(.hour, from: at) * 60 + chicago.component(.minute, from: at)
                #expect((600..<1140).contains(minute), "SP-5: \(first)'s text sent at \(at)")
            }
        }
        // SP-5: imported at 20:30, each contact's first text is held for the next morning, 10:00–14:00 Chicago; its e-mail went at once.
        for (first, items) in previews {
            let start = try #require(date(items.first?["at"]))
            let held = try #require(items.first { $0["kind"]?.string == "text" }.flatMap { date($0["at"]) })
            let nextDay = chicago.date(byAdding: .day, value: 1, to: chicago.startOfDay(for: start)) ?? start
            #expect(items.first?["kind"]?.string == "email" && chicago.component(.hour, from: start) == 20
                    && chicago.isDate(held, inSameDayAs: nextDay) && (10..<14).contains(chicago.component(.hour, from: held)),
                    "\(first): enrolled \(start), first text \(held)")
        }
        let calWant = expected("Cal", until: try #require(archivedAt)), calGot = try await actual(cal)
        #expect(calGot.messages.sorted() == calWant.messages.sorted() && calWant.messages.count < expected("Cal").messages.count,
                "SP-11: Cal gets what was due before the archive and nothing after: \(calGot.messages.count) vs \(calWant.messages.count)")
        let benEmails = try await actual(ben).sent.filter { $0["channel"]?.string == "email" }
        #expect(!benEmails.isEmpty && benEmails.allSatisfy { $0["state"]?.string == "failed" && $0["reason"]?.string == "http_429" && $0["attempts"] == .number(1) },
                "SP-7: failed at once, not retried: \(benEmails.map { [$0["state"], $0["reason"], $0["attempts"]] })")

        let figures = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(planId)", token: brokerage.adminToken)["figures"]
        let sentCount = expected("Ada").messages.count + expected("Ben").messages.count - benEmails.count + calWant.messages.count
        #expect(figures?["enrolled"] == .number(3) && figures?["failed"] == .number(Double(benEmails.count)) && figures?["messagesSent"] == .number(Double(sentCount)),
                "SP-7: Ben's refused e-mails are failures, not sends: \(String(describing: figures)), expected \(sentCount) sent")
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(ben)/timeline?limit=200", token: brokerage.adminToken)
        #expect(timeline["items"]?.array?.contains { ($0["summary"]?.string ?? "").hasPrefix("E-mail failed") } == true, "SP-7: \(timeline.text.prefix(2_000))")
    }

    @Test("SP-1, SP-2, SP-8: a team design's HTML goes out with the contact's values and the unsubscribe footer; a text task and a task are made for the step's role; a tag renamed in settings keeps its triggers and a deleted one drops them; publishing takes a plan's triggers off and a library plan is copied into a personal account without roles, and into a team only with its roles")
    func libraryDesignsAndTags() async throws {
        let brokerage = try await stack.newCompany()
        let root = brokerage.rootEntityId
        #expect(try await stack.call(.PATCH, .contacts, "/v1/entities/\(root)", token: brokerage.adminToken,
                                     json: Stack.json(["postalAddress": "2 Design Way, Chicago, IL 60601"])).status == 200)
        let email = "isa-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let agent = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
            "role": "agent", "firstName": "Isa", "lastName": "Inside", "email": email, "password": "agent password 1", "entityIds": [root]]))
        let agentId = try #require(agent["id"]?.string, "\(agent.text)")
        let agentToken = try await stack.login(email, "agent password 1")
        let design = try await stack.call(.POST, .smartplans, "/v1/smartplans/designs", token: brokerage.adminToken, json: Stack.json([
            "name": "Open house", "owner": "team", "entityId": root, "subject": "Open house for {contact.first.name}",
            "html": "<html><body><h1>Hello {contact.first.name}</h1><p>Sunday 1-4pm at <a href=\"https://example.com/oh\">our listing</a>.</p></body></html>"]))
        let designId = try #require(design["id"]?.string, "\(design.text)")
        let personal = try await stack.call(.POST, .smartplans, "/v1/smartplans/designs", token: agentToken, json: Stack.json([
            "name": "Mine", "html": "<p>Hi {contact.first.name}</p>"]))
        let personalId = try #require(personal["id"]?.string, "\(personal.text)")
        let badDesign = try await stack.call(.POST, .smartplans, "/v1/smartplans/designs", token: brokerage.adminToken, json: Stack.json([
            "name": "Bad", "html": "<p>{contact.shoe.size}</p>"]))
        #expect(badDesign.status == 422 && badDesign.errorField == "html", "\(badDesign.text)")

        let steps: [[String: Any]] = [
            ["kind": "email", "designId": designId, "role": "isa"],
            ["kind": "text", "mode": "task", "title": "Text {contact.first.name} about the open house", "days": 1, "role": "isa", "priority": "high"],
            ["kind": "task", "title": "Send {contact.first.name} a CMA", "days": 2, "description": "Comparables near {contact.address.city|their area}"],
        ]
        let fromPersonal = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "Wrong library", "owner": "team", "entityId": root, "roles": ["isa": agentId], "durationDays": 7,
            "steps": [["kind": "email", "designId": personalId]]]))
        #expect(fromPersonal.status == 422 && fromPersonal.errorField == "steps[0].designId", "SP-1: a team plan takes the team's designs: \(fromPersonal.text)")
        let team = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "Open house follow-up", "owner": "team", "entityId": root, "roles": ["isa": agentId], "durationDays": 7, "steps": steps,
            "triggers": ["tags": ["open house"]]]))
        let teamId = try #require(team["id"]?.string, "\(team.text)")
        let other = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "VIP", "durationDays": 7, "steps": [["kind": "task", "title": "Call", "days": 0]], "triggers": ["tags": ["open house", "vip"]]]))
        let otherId = try #require(other["id"]?.string, "\(other.text)")

        // SP-8: renamed in the company's settings, the tag keeps its triggers; the contact who had it has the new name.
        let early = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
            "status": "new_lead", "firstName": "Eve", "lastName": "Early", "tags": ["vip"]]))
        let earlyId = try #require(early["id"]?.string, "\(early.text)")
        try await stack.waitUntilIdle()
        #expect(try await stack.call(.PUT, .contacts, "/v1/tags/open%20house", token: agentToken, json: #"{"name":"sunday"}"#).status == 403)
        let renamed = try await stack.call(.PUT, .contacts, "/v1/tags/vip", token: brokerage.adminToken, json: #"{"name":"VIP Buyer"}"#)
        #expect(renamed["name"]?.string == "vip buyer" && renamed["contacts"] == .number(1), "\(renamed.text)")
        #expect(try await stack.call(.PUT, .contacts, "/v1/tags/open%20house", token: brokerage.adminToken, json: #"{"name":"Sunday Open House"}"#).status == 200)
        try await stack.waitUntilIdle()
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts/\(earlyId)", token: brokerage.adminToken)["tags"]?.array == [.string("vip buyer")])
        let triggers = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(otherId)", token: brokerage.adminToken)["plan"]?["triggers"]?["tags"]
        #expect(triggers?.array == [.string("sunday open house"), .string("vip buyer")], "\(String(describing: triggers))")
        // SP-8: a deleted tag is taken out of every trigger.
        #expect(try await stack.call(.DELETE, .contacts, "/v1/tags/vip%20buyer", token: brokerage.adminToken).status == 204)
        try await stack.waitUntilIdle()
        let after = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(otherId)", token: brokerage.adminToken)["plan"]?["triggers"]?["tags"]
        #expect(after?.array == [.string("sunday open house")], "\(String(describing: after))")
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts/\(earlyId)", token: brokerage.adminToken)["tags"]?.array == [])

        // The renamed trigger enrolls: the design's e-mail, the text task and the task, for the role's agent.
        try await toChicagoNoon()
        let hal = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
            "status": "new_lead", "firstName": "Hal", "lastName": "Host", "emails": ["hal-\(UUID().uuidString.prefix(6))@example.com"]]))
        let halId = try #require(hal["id"]?.string, "\(hal.text)")
        try await stack.waitUntilIdle()
        #expect(try await stack.call(.PUT, .contacts, "/v1/contacts/\(halId)/tags/sunday%20open%20house", token: brokerage.adminToken).status == 200)
        try await stack.waitUntilIdle()
        let sent = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(halId)", token: brokerage.adminToken)["items"]?.array ?? []
        let mail = try #require(sent.first { $0["subject"]?.string == "Open house for Hal" }, "\(sent)")
        let html = mail["html"]?.string ?? ""
        #expect(html.contains("<h1>Hello Hal</h1>") && html.contains("Unsubscribe</a></p></body>"), "SP-1, CAN-SPAM in the HTML part: \(html)")
        #expect((mail["body"]?.string ?? "").hasPrefix("Hello Hal\n\nSunday 1-4pm at [https://example.com/oh] our listing."), "the plain-text part: \(mail)")
        let tasks = try await stack.call(.GET, .contacts, "/v1/contacts/\(halId)/tasks", token: brokerage.adminToken)["items"]?.array ?? []
        #expect(tasks.contains { $0["kind"]?.string == "text" && $0["title"]?.string == "Text Hal about the open house" && $0["priority"]?.string == "high"
                                 && $0["assigneeId"]?.string == agentId }, "SP-1's text task, SP-2's role: \(tasks)")
        #expect(tasks.contains { $0["kind"]?.string == "task" && $0["title"]?.string == "Send Hal a CMA" && $0["description"]?.string == "Comparables near their area" },
                "\(tasks)")

        // SP-8: publishing takes the plan's triggers off; the library never carries them.
        let published = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(teamId)/publish", token: brokerage.adminToken,
                                             json: #"{"description":"Three touches after an open house"}"#)
        let entryId = try #require(published["id"]?.string, "\(published.text)")
        #expect(published["roles"]?.array == [.string("isa")] && published["triggers"] == nil, "\(published.text)")
        #expect(try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(teamId)", token: brokerage.adminToken)["plan"]?["triggers"] == nil)
        let library = try await stack.call(.GET, .smartplans, "/v1/smartplans/library", token: agentToken)
        #expect(library["items"]?.array?.map { $0["id"]?.string } == [entryId], "\(library.text)")
        let copy = try await stack.call(.POST, .smartplans, "/v1/smartplans/library/\(entryId)/copy", token: agentToken, json: #"{"name":"My open house"}"#)
        #expect(copy.status == 201 && copy["owner"]?.string == "personal" && copy["ownerUserId"]?.string == agentId, "\(copy.text)")
        #expect(copy["steps"]?.array?.allSatisfy { $0["role"] == nil } == true && copy["steps"]?.array?.first?["html"]?.string?.contains("Hello") == true,
                "\(copy.text)")
        let noRoles = try await stack.call(.POST, .smartplans, "/v1/smartplans/library/\(entryId)/copy", token: brokerage.adminToken,
                                           json: Stack.json(["owner": "team", "entityId": root]))
        #expect(noRoles.status == 422 && noRoles.errorField == "steps[0].role", "\(noRoles.text)")
        #expect(try await stack.call(.DELETE, .smartplans, "/v1/smartplans/library/\(entryId)", token: agentToken).status == 403)
        #expect(try await stack.call(.DELETE, .smartplans, "/v1/smartplans/library/\(entryId)", token: brokerage.adminToken).status == 204)
    }
}
