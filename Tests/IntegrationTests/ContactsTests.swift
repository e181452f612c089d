import Crypto
import Foundation
import Models
import NIOHTTP1
import Testing

/// The CRM core over HTTP, rule by rule (SPEC section 1, X-1, X-2).
@Suite("Contacts (ST-1 … ST-11)", .serialized)
struct ContactsTests {
    let stack: Stack

    init() throws {
        stack = try Stack.fromEnvironment()
    }

    /// An agent of the brokerage, logged in.
    func agent(_ brokerage: Stack.Brokerage, name: String = "Agent") async throws -> (id: String, token: String) {
        let email = "\(name.lowercased())-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let created = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
            "role": "agent", "firstName": name, "lastName": "Smith", "email": email, "password": "agent password 1",
            "entityIds": [brokerage.rootEntityId],
        ]))
        let id = try #require(created["id"]?.string, "\(created.text)")
        return (id, try await stack.login(email, "agent password 1"))
    }

    func source(_ brokerage: Stack.Brokerage, origin: String = "website") async throws -> String {
        let answer = try await stack.call(.POST, .contacts, "/v1/lead-sources", token: brokerage.adminToken, json: Stack.json([
            "name": "Our website", "origin": origin, "entityId": brokerage.rootEntityId,
        ]))
        return try #require(answer["apiKey"]?.string, "\(answer.text)")
    }

    func create(_ token: String, _ body: [String: Any]) async throws -> Stack.Answer {
        try await stack.call(.POST, .contacts, "/v1/contacts", token: token, json: Stack.json(body))
    }

    @Test("ST-2, ST-3: a website lead arrives with every field, as a new lead; the same person again is merged, not duplicated")
    func intake() async throws {
        let brokerage = try await stack.newCompany()
        let key = try await source(brokerage)
        let lead = Stack.json([
            "firstName": "Lee", "lastName": "Lead", "email": "Lee@Example.com", "phone": "(312) 555-0199", "leadType": "buyer",
            "tags": ["#Luxury"], "searchInterest": ["area": "Lincoln Park", "propertyType": "condo", "mls": "MLS-1", "priceMin": 400000, "priceMax": 650000],
        ])
        let first = try await stack.call(.POST, .contacts, "/v1/leads", json: lead, headers: [("X-Api-Key", key)])
        #expect(first.status == 201)
        let contact = try #require(first["contact"])
        #expect(contact["status"] == .string("new_lead"))
        #expect(contact["origin"] == .string("website"))
        #expect(contact["emails"] == .array([.string("lee@example.com")]))
        #expect(contact["phones"] == .array([.string("+13125550199")]))
        #expect(contact["tags"] == .array([.string("luxury")]))
        #expect(contact["behavioralAlerts"] == .bool(true))
        #expect(contact["searchInterest"]?["priceMax"] == .number(650000))
        let again = try await stack.call(.POST, .contacts, "/v1/leads", json: #"{"firstName":"Lee","phone":"+1 312 555 0199","tags":["pool"]}"#,
                                         headers: [("X-Api-Key", key)])
        #expect(again.status == 200)
        #expect(again["created"] == .bool(false))
        #expect(again["contact"]?["id"] == contact["id"])
        #expect(again["contact"]?["tags"] == .array([.string("luxury"), .string("pool")]))

        let badKey = try await stack.call(.POST, .contacts, "/v1/leads", json: lead, headers: [("X-Api-Key", "lk_forged")])
        #expect(badKey.status == 401)
        let noKey = try await stack.call(.POST, .contacts, "/v1/leads", json: lead)
        #expect(noKey.status == 401)
        let badPhone = try await stack.call(.POST, .contacts, "/v1/leads", json: #"{"firstName":"X","phone":"555"}"#, headers: [("X-Api-Key", key)])
        #expect(badPhone.status == 422)
        #expect(badPhone.errorField == "phone")

        // A form posted twice at once (a double click, a retrying website): one contact, and each
        // copy is answered with it.
        let twin = #"{"firstName":"Tia","email":"tia@example.com","phone":"+1 312 555 0142"}"#
        let copies = try await withThrowingTaskGroup(of: Stack.Answer.self) { group in
            for _ in 0..<6 { group.addTask { try await stack.call(.POST, .contacts, "/v1/leads", json: twin, headers: [("X-Api-Key", key)]) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(copies.map(\.status).sorted() == [200, 200, 200, 200, 200, 201], "\(copies.map(\.text))")
        #expect(Set(copies.compactMap { $0["contact"]?["id"]?.string }).count == 1)
    }

    @Test("ST-6: filter by several statuses with tag, lead type and source; cursor pages cover every contact once")
    func filtersAndPages() async throws {
        let brokerage = try await stack.newCompany()
        let admin = brokerage.adminToken
        let statuses = ["new_lead", "active_lead", "client", "sphere", "new_lead", "prospect", "new_lead"]
        for (index, status) in statuses.enumerated() {
            let answer = try await create(admin, ["status": status, "firstName": "C\(index)", "leadType": index % 2 == 0 ? "buyer" : "seller",
                                                  "tags": index < 3 ? ["hot"] : [], "source": index == 0 ? "Zillow" : "website"])
            #expect(answer.status == 201, "\(answer.text)")
        }
        let leads = try await stack.call(.GET, .contacts, "/v1/contacts?status=new_lead,active_lead", token: admin)
        #expect(leads["items"]?.array?.count == 4)
        let hotLeads = try await stack.call(.GET, .contacts, "/v1/contacts?status=new_lead&status=active_lead&tag=hot", token: admin)
        #expect(hotLeads["items"]?.array?.count == 2)
        let buyers = try await stack.call(.GET, .contacts, "/v1/contacts?leadType=buyer&source=zillow", token: admin)
        #expect(buyers["items"]?.array?.compactMap { $0["firstName"]?.string } == ["C0"])

        var seen: [String] = []
        var cursor: String?
        repeat {
            let path = "/v1/contacts?limit=3&sort=createdAt" + (cursor.map { "&cursor=\($0)" } ?? "")
            let page = try await stack.call(.GET, .contacts, path, token: admin)
            #expect(page.status == 200)
            seen += page["items"]?.array?.compactMap { $0["firstName"]?.string } ?? []
            cursor = page["nextCursor"]?.string
        } while cursor != nil
        // Under the frozen test clock all seven share one creation time; pages still give each exactly once.
        #expect(seen.count == 7)
        #expect(Set(seen) == Set((0..<7).map { "C\($0)" }))

        let badStatus = try await stack.call(.GET, .contacts, "/v1/contacts?status=new_lead,hot", token: admin)
        #expect(badStatus.status == 422)
        #expect(badStatus.errorField == "status")
        let badCursor = try await stack.call(.GET, .contacts, "/v1/contacts?cursor=nonsense", token: admin)
        #expect(badCursor.errorField == "cursor")
    }

    @Test("ST-4: one request imports the good rows, reports the bad ones by row and column (a row with neither e-mail nor phone among them), and a re-import creates nobody twice")
    func csvImport() async throws {
        let brokerage = try await stack.newCompany()
        let csv = """
        First Name,Last Name,Email,Phone,Status,Tags,Lead Type,Source
        Ann,One,ann@example.com,3125550101,new_lead,buyer;hot,buyer,open house
        Bob,Two,bob@bad,3125550102,client,,seller,
        Cid,Three,,3125550103,wizard,,,
        Dee,Four,dee@example.com,,Active Lead,,,
        Eve,Five,,(312) 555-0105,sphere,,,
        Fay,Six,,,sphere,,,

        """
        func importCSV(_ body: String, contentType: String = "text/csv") async throws -> Stack.Answer {
            try await stack.callRaw(.POST, .contacts, "/v1/contacts/import", token: brokerage.adminToken, body: body, contentType: contentType)
        }
        let first = try await importCSV(csv)
        #expect(first.status == 200, "\(first.text)")
        #expect(first["imported"] == .number(3))
        // Fay has neither e-mail nor phone: refused, or every re-import would create her again.
        #expect(first["errors"]?.array?.map { [$0["row"], $0["field"]] } == [[.number(2), .string("Email")], [.number(3), .string("Status")],
                                                                            [.number(6), .string("Email")]])
        let second = try await importCSV(csv)
        #expect(second["imported"] == .number(0))
        #expect(second["unchanged"] == .number(3))
        let all = try await stack.call(.GET, .contacts, "/v1/contacts?limit=200", token: brokerage.adminToken)
        #expect(all["items"]?.array?.count == 3)
        let imported = all["items"]?.array?.first { $0["firstName"] == .string("Ann") }
        #expect(imported?["origin"] == .string("import"))
        #expect(imported?["tags"] == .array([.string("buyer"), .string("hot")]))

        // A re-import with a changed status updates the contact it matches by phone.
        let changed = try await importCSV("Phone,Status\n312-555-0105,client\n")
        #expect(changed["updated"] == .number(1))
        #expect(changed["imported"] == .number(0))

        #expect(try await importCSV("Name,Email\nAnn,ann@example.com\n").errorField == "Status")
        #expect(try await importCSV("Name,Status\n\"Ann,client\n").errorCode == "malformed_csv")
        #expect(try await importCSV("Name,Status\nAnn,client\n", contentType: "application/json").status == 415)
    }

    @Test("ST-4: a file of several statements' rows is imported whole: a late row merges into a contact an early row made, and a re-import matches every row")
    func largeImport() async throws {
        let brokerage = try await stack.newCompany()
        let rows = 4_500
        var csv = "First Name,Email,Phone,Status,Source\n"
        for index in 0..<rows {
            csv += "Row\(index),row\(index)@example.com,312555\(String(format: "%04d", index)),new_lead,\(index >= 4_400 ? "tail" : "bulk")\n"
        }
        csv += "Again,row0@example.com,,client,bulk\n"
        func importCSV() async throws -> Stack.Answer {
            try await stack.callRaw(.POST, .contacts, "/v1/contacts/import", token: brokerage.adminToken, body: csv, contentType: "text/csv")
        }
        let first = try await importCSV()
        #expect(first.status == 200, "\(first.text)")
        #expect(first["imported"] == .number(Double(rows)))
        #expect(first["updated"] == .number(0))
        #expect(first["errors"]?.array?.isEmpty == true)
        let tail = try await stack.call(.GET, .contacts, "/v1/contacts?source=tail&limit=200", token: brokerage.adminToken)
        #expect(tail["items"]?.array?.count == 100)
        let merged = try await stack.call(.GET, .contacts, "/v1/contacts?status=client&limit=200", token: brokerage.adminToken)
        #expect(merged["items"]?.array?.compactMap { $0["emails"]?.array?.first?.string } == ["row0@example.com"])
        #expect(merged["items"]?.array?.first?["phones"]?.array?.count == 1)

        // Every e-mail and phone of every chunk was stored: the same file matches every row.
        let again = try await importCSV()
        #expect(again.status == 200, "\(again.text)")
        #expect(again["imported"] == .number(0))
        #expect(again["updated"] == .number(1))
        #expect(again["unchanged"] == .number(Double(rows - 1)))
    }

    @Test("ST-4: one file imported three times at once creates each contact once; an import that lost the race asks to be sent again")
    func concurrentImports() async throws {
        let brokerage = try await stack.newCompany()
        let rows = 150
        var csv = "First Name,Email,Phone,Status\n"
        for index in 0..<rows { csv += "Row\(index),row\(index)@example.com,312555\(String(format: "%04d", index)),new_lead\n" }
        let (file, token) = (csv, brokerage.adminToken)
        let answers = try await withThrowingTaskGroup(of: Stack.Answer.self) { group in
            for _ in 0..<3 {
                group.addTask { try await stack.callRaw(.POST, .contacts, "/v1/contacts/import", token: token, body: file, contentType: "text/csv") }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for answer in answers {
            #expect(answer.status == 200 || (answer.status == 409 && answer.errorCode == "version_conflict"), "\(answer.text)")
        }
        let imported = answers.filter { $0.status == 200 }.compactMap { $0["imported"]?.number }.reduce(0, +)
        #expect(imported == Double(rows))
        let all = try await stack.call(.GET, .contacts, "/v1/contacts?limit=200", token: brokerage.adminToken)
        #expect(all["items"]?.array?.count == rows)
        #expect(Set(all["items"]?.array?.compactMap { $0["emails"]?.array?.first?.string } ?? []).count == rows)
    }

    @Test("ST-5, ST-9: a status change is on the timeline with who and why; the timeline is newest first and paged; notes too")
    func statusAndTimeline() async throws {
        let brokerage = try await stack.newCompany()
        let contact = try await create(brokerage.adminToken, ["status": "prospect", "firstName": "Tim", "emails": ["tim@example.com"]])
        let id = try #require(contact["id"]?.string)
        let changed = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/status", token: brokerage.adminToken,
                                           json: #"{"status":"active_lead","reason":"called back"}"#)
        #expect(changed["status"] == .string("active_lead"))
        #expect(changed["version"] == .number(2))
        let note = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/notes", token: brokerage.adminToken, json: #"{"body":"Prefers texts"}"#)
        #expect(note.status == 201)
        #expect(try await stack.call(.PUT, .contacts, "/v1/contacts/\(id)/tags/%23Waterfront", token: brokerage.adminToken).status == 200)

        let firstPage = try await stack.call(.GET, .contacts, "/v1/contacts/\(id)/timeline?limit=2", token: brokerage.adminToken)
        let kinds = firstPage["items"]?.array?.compactMap { $0["kind"]?.string }
        #expect(kinds == ["tags", "note"])
        let cursor = try #require(firstPage["nextCursor"]?.string)
        let rest = try await stack.call(.GET, .contacts, "/v1/contacts/\(id)/timeline?limit=5&cursor=\(cursor)", token: brokerage.adminToken)
        let restItems = rest["items"]?.array ?? []
        #expect(restItems.compactMap { $0["kind"]?.string } == ["status_change", "created"])
        let statusEntry = restItems[0]
        #expect(statusEntry["summary"]?.string?.contains("from prospect to active lead: called back") == true)
        #expect(statusEntry["actor"]?["name"] == .string("Ada Admin"))
        #expect(rest["nextCursor"] == nil)

        let badStatus = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/status", token: brokerage.adminToken, json: #"{"status":"hot"}"#)
        #expect(badStatus.status == 422)
        #expect(badStatus.errorField == "status")
    }

    @Test("ST-10: a call task completed with its outcome logs the call on the timeline and publishes it; a service's task id makes its retries make it once")
    func tasks() async throws {
        try await stack.waitUntilIdle()
        let before = try await stack.metric(.accountability, "events_received_total", ["type": "communication.logged", "outcome": "handled"])
        let brokerage = try await stack.newCompany()
        let contact = try await create(brokerage.adminToken, ["status": "new_lead", "firstName": "Cal", "phones": ["3125550110"]])
        let id = try #require(contact["id"]?.string)
        let task = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/tasks", token: brokerage.adminToken, json: Stack.json([
            "kind": "call", "title": "Call about the condo", "priority": "high", "dueAt": "2030-01-01T15:00:00Z", "links": ["https://example.com/listing/1"],
        ]))
        #expect(task.status == 201, "\(task.text)")
        let taskId = try #require(task["id"]?.string)
        let done = try await stack.call(.POST, .contacts, "/v1/tasks/\(taskId)/completion", token: brokerage.adminToken, json: #"{"outcome":"left_voicemail"}"#)
        #expect(done.status == 200)
        #expect(done["callOutcome"] == .string("left_voicemail"))
        #expect(try await stack.call(.POST, .contacts, "/v1/tasks/\(taskId)/completion", token: brokerage.adminToken, json: "{}").status == 409)
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(id)/timeline", token: brokerage.adminToken)
        let call = timeline["items"]?.array?.first { $0["kind"] == .string("communication") }
        #expect(call?["summary"]?.string?.contains("Outbound call: left voicemail") == true)
        try await stack.waitUntilIdle()
        let after = try await stack.metric(.accountability, "events_received_total", ["type": "communication.logged", "outcome": "handled"])
        #expect(after - before == 1)

        let noOutcome = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/communications", token: brokerage.adminToken, json: #"{"channel":"call"}"#)
        #expect(noOutcome.errorField == "outcome")
        let badLink = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/tasks", token: brokerage.adminToken,
                                           json: #"{"kind":"task","title":"x","links":["javascript:alert(1)"]}"#)
        #expect(badLink.errorField == "links[0]")

        // A service's retried step (SmartPlans') makes its task once, by the id it chose; people choose none.
        let chosen = UUID().uuidString.lowercased()
        let body = Stack.json(["kind": "call", "title": "Call Cal", "dueAt": "2030-01-02T15:00:00Z", "id": chosen])
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/tasks", token: brokerage.adminToken, json: body).errorField == "id")
        let service = try await stack.serviceToken(.smartplans)
        let made = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/tasks", token: service, json: body)
        let again = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/tasks", token: service, json: body)
        #expect(made.status == 201 && again.status == 200, "\(made.text) \(again.text)")
        #expect(made["id"]?.string?.lowercased() == chosen && again["id"] == made["id"] && again["createdAt"] == made["createdAt"])
        let other = try await create(brokerage.adminToken, ["status": "new_lead", "firstName": "Otto", "phones": ["3125550111"]])
        let taken = try await stack.call(.POST, .contacts, "/v1/contacts/\(other["id"]?.string ?? "")/tasks", token: service, json: body)
        #expect(taken.status == 409, "\(taken.text)")
        let listed = try await stack.call(.GET, .contacts, "/v1/contacts/\(id)/tasks", token: brokerage.adminToken)
        #expect(listed["items"]?.array?.filter { $0["id"]?.string?.lowercased() == chosen }.count == 1)
        let entries = try await stack.call(.GET, .contacts, "/v1/contacts/\(id)/timeline", token: brokerage.adminToken)
        #expect(entries["items"]?.array?.filter { $0["summary"]?.string == "Call task added: Call Cal" }.count == 1, "\(entries.text)")

        // Many contacts' tasks in one request, all or none, each id once.
        let otherId = try #require(other["id"]?.string)
        let (first, second) = (UUID().uuidString.lowercased(), UUID().uuidString.lowercased())
        let batch = Stack.json(["tasks": [["contactId": id, "kind": "call", "title": "Call Cal again", "id": first],
                                          ["contactId": otherId, "kind": "task", "title": "Send Otto the listing", "id": second]]])
        let made2 = try await stack.call(.POST, .contacts, "/v1/tasks/batch", token: service, json: batch)
        #expect(made2.status == 200, "\(made2.text)")
        #expect(made2["items"]?.array?.compactMap { $0["id"]?.string?.lowercased() } == [first, second])
        let replayed = try await stack.call(.POST, .contacts, "/v1/tasks/batch", token: service, json: batch)
        #expect(replayed["items"]?.array?.map { $0["createdAt"] } == made2["items"]?.array?.map { $0["createdAt"] })
        let bad = try await stack.call(.POST, .contacts, "/v1/tasks/batch", token: brokerage.adminToken, json: Stack.json(["tasks": [
            ["contactId": id, "kind": "task", "title": "Fine"], ["contactId": id, "kind": "task", "title": " "]]]))
        #expect(bad.errorField == "tasks[1].title", "\(bad.text)")
        let stranger = try await stack.newCompany()
        let unseen = try await stack.call(.POST, .contacts, "/v1/tasks/batch", token: stranger.adminToken, json: Stack.json(["tasks": [
            ["contactId": id, "kind": "task", "title": "Not yours"]]]))
        #expect(unseen.status == 404 && unseen.errorField == "tasks[0]", "\(unseen.text)")
        let otherTasks = try await stack.call(.GET, .contacts, "/v1/contacts/\(otherId)/tasks", token: brokerage.adminToken)
        #expect(otherTasks["items"]?.array?.count == 1, "one task, none of the refused batches': \(otherTasks.text)")
    }

    @Test("ST-11: archiving is a status change every automation service hears about exactly once (what each does with it is proved under ST-7 in notifications and routing)")
    func archiveReachesAutomation() async throws {
        try await stack.waitUntilIdle()
        let readers: [ServiceName] = [.routing, .automation, .accountability, .smartplans, .notifications]
        var before: [ServiceName: Double] = [:]
        for service in readers {
            before[service] = try await stack.metric(service, "events_received_total", ["type": "contact.status_changed", "outcome": "handled"])
        }
        let brokerage = try await stack.newCompany()
        let contact = try await create(brokerage.adminToken, ["status": "client", "firstName": "Arch", "emails": ["arch@example.com"]])
        let id = try #require(contact["id"]?.string)
        let archived = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/status", token: brokerage.adminToken,
                                            json: #"{"status":"archive","reason":"asked to stop"}"#)
        #expect(archived["status"] == .string("archive"))
        try await stack.waitUntilIdle()
        for service in readers {
            let after = try await stack.metric(service, "events_received_total", ["type": "contact.status_changed", "outcome": "handled"])
            #expect(after - (before[service] ?? 0) == 1, "\(service)")
        }
    }

    @Test("AC-2, AC-4, AC-5, ST-10: a service writes on a contact's timeline under its name, once per entry id; accountability takes an agent out of rotation until a date with the reason and an admin puts them back; task events reach accountability")
    func facts() async throws {
        let brokerage = try await stack.newCompany()
        let agent = try await agent(brokerage, name: "Rita")
        let contact = try await create(brokerage.adminToken, ["status": "new_lead", "firstName": "Tim", "emails": ["tim@example.com"],
                                                              "assignedAgentId": agent.id])
        let id = try #require(contact["id"]?.string)
        let service = try await stack.serviceToken(.accountability)
        let entryId = UUID().uuidString
        let entry: [String: Any] = ["id": entryId, "kind": "accountability_call", "summary": "The system tried to reach the agent", "actorName": "Accountability",
                                    "data": ["attempt": 1]]
        let first = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/timeline", token: service, json: Stack.json(entry))
        #expect(first.status == 201, "\(first.text)")
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/timeline", token: service, json: Stack.json(entry)).status == 200, "a retry writes nothing")
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/timeline", token: agent.token, json: Stack.json(entry)).status == 403)
        let badKind = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/timeline", token: service, json: #"{"kind":"Bad Kind!","summary":"x"}"#)
        #expect(badKind.status == 422 && badKind.errorField == "kind")
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(id)/timeline", token: agent.token)
        let written = timeline["items"]?.array?.filter { $0["kind"] == .string("accountability_call") } ?? []
        #expect(written.count == 1 && written.first?["actor"]?["name"] == .string("Accountability") && written.first?["actor"]?["kind"] == .string("service"),
                "\(timeline.text)")

        let until = RFC3339.string(from: try await stack.clockNow().addingTimeInterval(10 * 86_400))
        let out = try await stack.call(.PUT, .contacts, "/v1/users/\(agent.id)/rotation", token: service, json: Stack.json([
            "inRotation": false, "until": until, "reason": "Minimum login interval: 7 days; last login 12 days ago"]))
        #expect(out.status == 200 && out["rotation"]?["inRotation"] == .bool(false) && out["rotation"]?["reason"]?.string?.contains("12 days") == true, "\(out.text)")
        #expect(try await stack.call(.PUT, .contacts, "/v1/users/\(agent.id)/rotation", token: agent.token, json: #"{"inRotation":true}"#).status == 403,
                "an agent does not put themselves back")
        let past = try await stack.call(.PUT, .contacts, "/v1/users/\(agent.id)/rotation", token: service,
                                        json: #"{"inRotation":false,"until":"2001-01-01T00:00:00Z"}"#)
        #expect(past.status == 422 && past.errorField == "until")
        let back = try await stack.call(.PUT, .contacts, "/v1/users/\(agent.id)/rotation", token: brokerage.adminToken, json: #"{"inRotation":true}"#)
        #expect(back.status == 200 && back["rotation"]?["inRotation"] == .bool(true) && back["rotation"]?["reason"] == nil, "\(back.text)")

        try await stack.waitUntilIdle()
        let before = try await stack.metric(.accountability, "events_received_total", ["type": "task.changed", "outcome": "handled"])
        let task = try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/tasks", token: agent.token, json: #"{"kind":"call","title":"Call Tim"}"#)
        let taskId = try #require(task["id"]?.string, "\(task.text)")
        #expect(try await stack.call(.POST, .contacts, "/v1/tasks/\(taskId)/completion", token: agent.token, json: #"{"outcome":"contacted"}"#).status == 200)
        try await stack.waitUntilIdle()
        #expect(try await stack.metric(.accountability, "events_received_total", ["type": "task.changed", "outcome": "handled"]) - before == 2)
    }

    @Test("ST-8: a signed transaction delivery moves the matching contact to contract; forged, stale and replayed ones change nothing")
    func transactionWebhook() async throws {
        let brokerage = try await stack.newCompany()
        let contact = try await create(brokerage.adminToken, ["status": "client", "firstName": "Tess", "emails": ["tess@example.com"]])
        let id = try #require(contact["id"]?.string)
        let secret = try #require(try await stack.call(.POST, .contacts, "/v1/integrations/transactions/secret", token: brokerage.adminToken)["secret"]?.string)
        func deliver(_ body: String, secret: String, age: TimeInterval = 0) async throws -> Stack.Answer {
            let timestamp = String(Int(Date().timeIntervalSince1970 - age))
            let mac = HMAC<SHA256>.authenticationCode(for: Array((timestamp + "." + body).utf8), using: SymmetricKey(data: Data(secret.utf8)))
            let signature = mac.map { String(format: "%02x", $0) }.joined()
            return try await stack.callRaw(.POST, .contacts, "/v1/integrations/transactions", token: nil, body: body, contentType: "application/json",
                                           headers: [("X-Company-Id", brokerage.companyId), ("X-Timestamp", timestamp), ("X-Signature", "sha256=\(signature)")])
        }
        let body = #"{"deliveryId":"dl-1","status":"under_contract","email":"TESS@example.com","provider":"DotLoop"}"#
        #expect(try await deliver(body, secret: "whsec_wrong").status == 403)
        #expect(try await deliver(body, secret: secret, age: 3600).status == 403)
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts/\(id)", token: brokerage.adminToken)["status"] == .string("client"))
        let delivered = try await deliver(body, secret: secret)
        #expect(delivered["outcome"] == .string("updated"))
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts/\(id)", token: brokerage.adminToken)["status"] == .string("contract"))
        #expect(try await deliver(body, secret: secret)["outcome"] == .string("duplicate"))
        let closed = try await deliver(#"{"deliveryId":"dl-2","status":"closed","email":"tess@example.com"}"#, secret: secret)
        #expect(closed["outcome"] == .string("updated"))
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(id)/timeline", token: brokerage.adminToken)
        #expect(timeline["items"]?.array?.first?["summary"]?.string?.contains("transaction integration") == true)
        let unmatched = try await deliver(#"{"deliveryId":"dl-3","status":"closed","email":"nobody@example.com"}"#, secret: secret)
        #expect(unmatched["outcome"] == .string("unmatched"))
    }

    @Test("X-1: agents see only their contacts, admins their entities', nobody another company's (404)")
    func visibility() async throws {
        let brokerage = try await stack.newCompany()
        let (aliceId, alice) = try await agent(brokerage, name: "Alice")
        let (_, bob) = try await agent(brokerage, name: "Bob")
        let mine = try await create(alice, ["status": "new_lead", "firstName": "Mine"])
        #expect(mine["assignedAgentId"]?.string?.lowercased() == aliceId.lowercased())
        let mineId = try #require(mine["id"]?.string)
        let theirs = try await create(brokerage.adminToken, ["status": "new_lead", "firstName": "Unassigned"])
        let theirsId = try #require(theirs["id"]?.string)

        #expect(try await stack.call(.GET, .contacts, "/v1/contacts", token: alice)["items"]?.array?.count == 1)
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts", token: bob)["items"]?.array?.count == 0)
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts/\(mineId)", token: bob).status == 404)
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts/\(theirsId)", token: alice).status == 404)
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(mineId)/status", token: bob, json: #"{"status":"client"}"#).status == 404)
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts/\(mineId)/timeline", token: bob).status == 404)
        // Agents do not hand contacts to others; admins assign.
        #expect(try await create(alice, ["status": "new_lead", "firstName": "X", "assignedAgentId": UUID().uuidString]).status == 422)
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(theirsId)/assignment", token: alice, json: "{}").status == 403)
        let assigned = try await stack.call(.POST, .contacts, "/v1/contacts/\(theirsId)/assignment", token: brokerage.adminToken,
                                            json: Stack.json(["agentId": aliceId]))
        #expect(assigned.status == 200)
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts", token: alice)["items"]?.array?.count == 2)

        let other = try await stack.newCompany()
        for path in ["/v1/contacts/\(mineId)", "/v1/contacts/\(mineId)/timeline", "/v1/contacts/\(mineId)/tasks"] {
            #expect(try await stack.call(.GET, .contacts, path, token: other.adminToken).status == 404, "\(path)")
        }
        #expect(try await stack.call(.PATCH, .contacts, "/v1/contacts/\(mineId)", token: other.adminToken, json: #"{"firstName":"Hacked"}"#).status == 404)
        #expect(try await stack.call(.DELETE, .contacts, "/v1/contacts/\(mineId)", token: other.adminToken).status == 404)
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts", token: other.adminToken)["items"]?.array?.count == 0)
    }

    @Test("X-2: bad contact input names the field and writes nothing; e-mails and phones are unique per company")
    func badInput() async throws {
        let brokerage = try await stack.newCompany()
        let admin = brokerage.adminToken
        let cases: [([String: Any], String)] = [
            (["firstName": "No status"], "status"),
            (["status": "hot", "firstName": "A"], "status"),
            (["status": "client", "firstName": "A", "leadType": "landlord"], "leadType"),
            (["status": "client", "firstName": "A", "emails": ["ok@example.com", "not-an-email"]], "emails[1]"),
            (["status": "client", "firstName": "A", "phones": ["12"]], "phones[0]"),
            (["status": "client", "firstName": 7], "firstName"),
            (["status": "client"], "firstName"),
            (["status": "client", "firstName": "A", "searchInterest": ["priceMin": 10, "priceMax": 5]], "searchInterest.priceMax"),
            (["status": "client", "firstName": "A", "ownerEntityId": UUID().uuidString], "ownerEntityId"),
        ]
        for (body, field) in cases {
            let answer = try await create(admin, body)
            #expect(answer.status == 422, "\(body)")
            #expect(answer.errorField == field, "\(body) → \(answer.text)")
        }
        #expect(try await stack.call(.GET, .contacts, "/v1/contacts", token: admin)["items"]?.array?.count == 0)
        #expect(try await create(admin, ["status": "client", "firstName": "A", "emails": ["dup@example.com"]]).status == 201)
        let duplicate = try await create(admin, ["status": "client", "firstName": "B", "emails": ["DUP@example.com"]])
        #expect(duplicate.status == 409)
        #expect(duplicate.errorCode == "duplicate_contact")
        #expect(duplicate.errorField == "emails[0]")
        let huge = try await stack.callRaw(.POST, .contacts, "/v1/contacts", token: admin,
                                           body: "{\"firstName\":\"" + String(repeating: "y", count: 3 << 20) + "\"}", contentType: "application/json")
        #expect(huge.status == 413)
    }

    @Test("ponds: members claim a lead; of two simultaneous claims exactly one wins")
    func pondClaims() async throws {
        let brokerage = try await stack.newCompany()
        let (_, alice) = try await agent(brokerage, name: "Alice")
        let (_, bob) = try await agent(brokerage, name: "Bob")
        let pond = try await stack.call(.POST, .contacts, "/v1/ponds", token: brokerage.adminToken,
                                        json: Stack.json(["entityId": brokerage.rootEntityId, "name": "Unclaimed"]))
        let pondId = try #require(pond["id"]?.string)
        let contact = try await create(brokerage.adminToken, ["status": "new_lead", "firstName": "Pondy"])
        let id = try #require(contact["id"]?.string)
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(id)/assignment", token: brokerage.adminToken,
                                     json: Stack.json(["pondId": pondId])).status == 200)
        #expect(try await stack.call(.GET, .contacts, "/v1/ponds/\(pondId)/contacts", token: alice)["items"]?.array?.count == 1)
        let claim = Stack.json(["contactId": id])
        async let first = stack.call(.POST, .contacts, "/v1/ponds/\(pondId)/claims", token: alice, json: claim)
        async let second = stack.call(.POST, .contacts, "/v1/ponds/\(pondId)/claims", token: bob, json: claim)
        let statuses = try await [first.status, second.status].sorted()
        #expect(statuses.first == 200)
        #expect(statuses.last == 409 || statuses.last == 422)
        #expect(try await stack.call(.GET, .contacts, "/v1/ponds/\(pondId)/contacts", token: alice)["items"]?.array?.count == 0)
    }
}
