import Foundation
import Models
import Testing

/// The accountability service over HTTP against the running stack, on its virtual clock.
@Suite("Accountability (AC-1 … AC-7)", .serialized)
struct AccountabilityTests {
    let stack: Stack
    let phone: NotificationsTests

    init() throws {
        stack = try Stack.fromEnvironment()
        phone = try NotificationsTests()
    }

    func advanceDays(_ days: Int) async throws {
        for _ in 0..<days {
            let answer = try await stack.call(.POST, .routing, "/v1/admin/clock", token: try await stack.serviceToken(), json: #"{"advanceSeconds": 86400}"#)
            #expect(answer.status == 200, "\(answer.text)")
            try await stack.waitUntilIdle()
        }
    }

    func user(_ brokerage: Stack.Brokerage, _ name: String, role: String = "agent", entity: String, mobile: String? = nil) async throws
        -> (id: String, token: String, email: String) {
        let email = "\(name.lowercased())-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        var body: [String: Any] = ["role": role, "firstName": name, "lastName": "Doe", "email": email, "password": "agent password 1", "entityIds": [entity]]
        if let mobile { body["mobilePhone"] = mobile }
        let created = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json(body))
        let id = try #require(created["id"]?.string, "\(created.text)")
        return (id, try await stack.login(email, "agent password 1"), email)
    }

    @Test("AC-4, AC-5, AC-7: the daily check takes out of rotation, until the 1st, an agent under the completion minimum and one past the login interval, never an excluded one; they and the admins are e-mailed the rule, the threshold and their figure; an admin puts one back, judged afresh from then; each sees what they may; the week's figures per agent and for the office, in JSON and CSV; the 1st of the month puts them back without anyone acting (the check of the 1st judges them again)")
    func rotationAccountability() async throws {
        let brokerage = try await stack.newCompany()
        let office = try await stack.call(.POST, .contacts, "/v1/entities", token: brokerage.adminToken, json: Stack.json([
            "parentId": brokerage.rootEntityId, "kind": "office", "name": "North", "timeZone": "America/Chicago"]))
        let officeId = try #require(office["id"]?.string, "\(office.text)")
        let ann = try await user(brokerage, "Ann", entity: officeId)
        let ben = try await user(brokerage, "Ben", entity: officeId)
        let cal = try await user(brokerage, "Cal", entity: officeId)
        let dee = try await user(brokerage, "Dee", entity: officeId)
        let oli = try await user(brokerage, "Oli", role: "office_admin", entity: officeId)
        try await stack.waitUntilIdle()

        #expect(try await stack.call(.PUT, .accountability, "/v1/accountability/rules/\(officeId)", token: ann.token, json: "{}").status == 403)
        let bad = try await stack.call(.PUT, .accountability, "/v1/accountability/rules/\(officeId)", token: oli.token,
                                       json: #"{"rotation":{"enabled":true,"minCompletionPercent":120}}"#)
        #expect(bad.status == 422 && bad.errorField == "rotation.minCompletionPercent", "\(bad.text)")
        let rules = try await stack.call(.PUT, .accountability, "/v1/accountability/rules/\(officeId)", token: oli.token, json: Stack.json([
            "rotation": ["enabled": true, "loginIntervalDays": 5, "minCompletionPercent": 50], "excludedAgentIds": [cal.id]]))
        #expect(rules.status == 200 && rules["rotation"]?["loginIntervalDays"] == .number(5), "\(rules.text)")

        // Ben and Cal each have a call due tomorrow that they never make; Ann makes hers.
        let contact = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
            "status": "new_lead", "firstName": "Lee", "emails": ["lee-\(UUID().uuidString.prefix(6))@example.com"], "ownerEntityId": officeId]))
        let contactId = try #require(contact["id"]?.string, "\(contact.text)")
        let due = RFC3339.string(from: try await stack.clockNow().addingTimeInterval(86_400))
        for agent in [ann, ben, cal] {
            let task = try await stack.call(.POST, .contacts, "/v1/contacts/\(contactId)/tasks", token: brokerage.adminToken,
                                            json: Stack.json(["kind": "call", "title": "Call Lee", "dueAt": due, "assigneeId": agent.id]))
            let taskId = try #require(task["id"]?.string, "\(task.text)")
            if agent.id == ann.id {
                #expect(try await stack.call(.POST, .contacts, "/v1/tasks/\(taskId)/completion", token: ann.token, json: #"{"outcome":"contacted"}"#).status == 200)
            }
        }
        try await advanceDays(3)
        _ = try await stack.login(ann.email, "agent password 1")
        try await advanceDays(3)

        let listed = try await stack.call(.GET, .accountability, "/v1/accountability/violations", token: oli.token)
        let violations = listed["items"]?.array ?? []
        #expect(Set(violations.compactMap { $0["agentId"]?.string?.lowercased() }) == [ben.id.lowercased(), dee.id.lowercased()], "\(listed.text)")
        let benViolation = try #require(violations.first { $0["agentId"]?.string?.lowercased() == ben.id.lowercased() })
        let figures = benViolation["figures"]?.array ?? []
        #expect(figures.contains { $0["rule"] == .string("completion") && $0["threshold"] == .number(50) && $0["measured"] == .number(0) }, "\(benViolation)")
        let deeViolation = try #require(violations.first { $0["agentId"]?.string?.lowercased() == dee.id.lowercased() })
        #expect(deeViolation["figures"]?.array?.first?["rule"] == .string("login_interval"), "\(deeViolation)")
        let until = try #require(benViolation["removedUntil"]?.string.flatMap(RFC3339.date(from:)))
        var chicago = Calendar(identifier: .gregorian)
        chicago.timeZone = try #require(TimeZone(identifier: "America/Chicago"))
        #expect(chicago.component(.day, from: until) == 1 && chicago.component(.hour, from: until) == 0, "until the 1st, 00:00 Chicago")
        #expect(benViolation["emailed"]?.array?.contains(.string(oli.id.uppercased())) == true
                || benViolation["emailed"]?.array?.contains(.string(oli.id.lowercased())) == true, "the office admin was told: \(benViolation)")

        let benUser = try await stack.call(.GET, .contacts, "/v1/users/\(ben.id)", token: brokerage.adminToken)
        #expect(benUser["rotation"]?["inRotation"] == .bool(false) && benUser["rotation"]?["reason"]?.string?.contains("completed 0 of 1") == true,
                "\(benUser.text)")
        let mail = try await stack.call(.GET, .notifications, "/v1/messages?userId=\(ben.id)", token: brokerage.adminToken)
        #expect(mail["items"]?.array?.contains { $0["subject"]?.string?.hasPrefix("You are out of lead rotation") == true } == true, "\(mail.text)")

        // What each may see.
        let own = try await stack.call(.GET, .accountability, "/v1/accountability/violations", token: ben.token)
        #expect(own["items"]?.array?.count == 1)
        #expect(try await stack.call(.GET, .accountability, "/v1/accountability/violations", token: ann.token)["items"]?.array?.isEmpty == true)
        let violationId = try #require(benViolation["id"]?.string)
        let stranger = try await stack.newCompany()
        #expect(try await stack.call(.GET, .accountability, "/v1/accountability/violations/\(violationId)", token: stranger.adminToken).status == 404)
        #expect(try await stack.call(.POST, .accountability, "/v1/accountability/violations/\(violationId)/reinstatement", token: ben.token).status == 403)

        // AC-5: the admin puts Ben back; the next days judge him from then.
        let back = try await stack.call(.POST, .accountability, "/v1/accountability/violations/\(violationId)/reinstatement", token: oli.token)
        #expect(back.status == 200 && back["reinstatedBy"]?.string?.lowercased() == oli.id.lowercased(), "\(back.text)")
        #expect(try await stack.call(.POST, .accountability, "/v1/accountability/violations/\(violationId)/reinstatement", token: oli.token).status == 409)
        #expect(try await stack.call(.GET, .contacts, "/v1/users/\(ben.id)", token: brokerage.adminToken)["rotation"]?["inRotation"] == .bool(true))
        _ = try await stack.login(ben.email, "agent password 1")
        try await advanceDays(1)
        let after = try await stack.call(.GET, .accountability, "/v1/accountability/violations?agentId=\(ben.id)", token: oli.token)
        #expect(after["items"]?.array?.count == 1, "not taken out again for what came before his reinstatement: \(after.text)")

        // AC-7: the office's figures over the week, as JSON and as CSV; an agent sees only their own.
        let from = RFC3339.string(from: try await stack.clockNow().addingTimeInterval(-10 * 86_400))
        let report = try await stack.call(.GET, .accountability, "/v1/accountability/analytics?entityId=\(officeId)&from=\(from)", token: oli.token)
        #expect(report.status == 200, "\(report.text)")
        let rows = report["agents"]?.array ?? []
        func row(_ id: String) -> JSONValue? { rows.first { $0["agentId"]?.string?.lowercased() == id.lowercased() } }
        #expect(row(ann.id)?["tasksDue"] == .number(1) && row(ann.id)?["tasksCompleted"] == .number(1) && row(ann.id)?["callsMade"] == .number(1),
                "\(report.text)")
        #expect(row(ben.id)?["tasksDue"] == .number(1) && row(ben.id)?["callsMissed"] == .number(1) && row(ben.id)?["violations"] == .number(1))
        #expect(report["total"]?["violations"] == .number(2) && report["total"]?["tasksDue"] == .number(3) && report["total"]?["agentName"] == .string("North"))
        let csv = try await stack.call(.GET, .accountability, "/v1/accountability/analytics?entityId=\(officeId)&from=\(from)&format=csv", token: oli.token)
        #expect(csv.status == 200 && csv.text.hasPrefix("Agent,Calls made") && csv.text.contains("Ben Doe,0,1,1,0,1"), "\(csv.text)")
        let mine = try await stack.call(.GET, .accountability, "/v1/accountability/analytics?from=\(from)", token: ann.token)
        #expect(mine["agents"]?.array?.count == 1 && mine["total"] == nil, "\(mine.text)")
        #expect(try await stack.call(.GET, .accountability, "/v1/accountability/analytics?entityId=\(officeId)", token: stranger.adminToken).status == 404)
        let backwards = try await stack.call(.GET, .accountability, "/v1/accountability/analytics?entityId=\(officeId)&from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z",
                                             token: oli.token)
        #expect(backwards.status == 422 && backwards.errorField == "from")

        // AC-5: the 1st of the month puts Dee back without anyone acting. Still without a login, the
        // check of the 1st (06:00) judges her again and takes her out until the 1st after.
        let deeUntil = try #require(deeViolation["removedUntil"]?.string.flatMap(RFC3339.date(from:)))
        let before = try await stack.call(.GET, .accountability, "/v1/accountability/violations?agentId=\(dee.id)", token: oli.token)
        #expect(before["items"]?.array?.count == 1, "out until the 1st, not judged in between: \(before.text)")
        let toFirst = Int(deeUntil.timeIntervalSince(try await stack.clockNow())) + 7 * 3600
        #expect(try await stack.call(.POST, .routing, "/v1/admin/clock", token: try await stack.serviceToken(),
                                     json: #"{"advanceSeconds": \#(toFirst)}"#).status == 200)
        try await stack.waitUntilIdle()
        let judged = try await stack.call(.GET, .accountability, "/v1/accountability/violations?agentId=\(dee.id)", token: oli.token)
        let newest = try #require(judged["items"]?.array?.max { ($0["createdAt"]?.string ?? "") < ($1["createdAt"]?.string ?? "") }, "\(judged.text)")
        #expect(judged["items"]?.array?.count == 2, "judged again on the 1st: \(judged.text)")
        let nextUntil = try #require(newest["removedUntil"]?.string.flatMap(RFC3339.date(from:)))
        #expect(chicago.component(.day, from: nextUntil) == 1 && chicago.component(.month, from: nextUntil) % 12 == (chicago.component(.month, from: deeUntil) % 12) + 1,
                "until the 1st of the month after: \(newest)")
    }

    func calls(to number: String) async throws -> [JSONValue] {
        try await phone.providerRequests(to: number).filter { ($0["path"]?.string ?? "").hasSuffix("/Calls.json") }
    }

    /// Answers the newest call to `number` with `digits`; the TwiML the keys led to, and the call's id.
    func press(_ digits: String, onCallTo number: String) async throws -> (twiml: String, messageId: String) {
        let call = try #require(try await calls(to: number).last)
        let url = try #require(call["fields"]?["Url"]?.string)
        let path = String(url.dropFirst(phone.publicURL.count))
        let script = try await phone.webhook(path, [("CallSid", "CA\(UUID().uuidString.prefix(8))")])
        #expect(script.text.contains("Press 1 to be connected"), "\(script.text)")
        let messageId = try #require(path.split(separator: "/").last.map(String.init))
        return (try await phone.webhook("/webhooks/twilio/gather/\(messageId)", [("Digits", digits)]).text, messageId)
    }

    /// The provider reports how the bridge to the lead ended, after its machine detection's verdict.
    func dialEnded(_ messageId: String, _ status: String, answeredBy: String? = nil, seconds: Int = 0) async throws -> String {
        if let answeredBy {
            let verdict = try await phone.webhook("/webhooks/twilio/dial/\(messageId)/machine", [("AnsweredBy", answeredBy)])
            #expect(verdict.status == 204, "\(verdict.text)")
        }
        let ended = try await phone.webhook("/webhooks/twilio/dial/\(messageId)", [("DialCallStatus", status), ("DialCallDuration", "\(seconds)")])
        #expect(ended.status == 200, "\(ended.text)")
        try await stack.waitUntilIdle()
        return ended.text
    }

    @Test("AC-1, AC-2, AC-3: each new lead with a phone gets its calls to the agent, which name it and connect on 1; a missed call goes on the timeline; the calls stop when the lead texts back, when the agent leaves a voicemail or talks to the lead over the bridge (not when the lead does not answer it; the bridged call is logged as the agent's), and when the status leaves new lead")
    func newLeadCalls() async throws {
        let brokerage = try await stack.newCompany()
        let allWeek: [[String: Any]] = (1...7).map { ["weekday": $0, "open": "00:00", "close": "23:59"] }
        let office = try await stack.call(.POST, .contacts, "/v1/entities", token: brokerage.adminToken, json: Stack.json([
            "parentId": brokerage.rootEntityId, "kind": "office", "name": "South", "timeZone": "America/Chicago", "officeHours": allWeek]))
        let officeId = try #require(office["id"]?.string, "\(office.text)")
        let agentPhone = NotificationsTests.randomPhone()
        let agent = try await user(brokerage, "Rae", entity: officeId, mobile: agentPhone)
        let rules = try await stack.call(.PUT, .accountability, "/v1/accountability/rules/\(officeId)", token: brokerage.adminToken,
                                         json: #"{"newLeadCalls":{"enabled":true,"calls":3}}"#)
        #expect(rules.status == 200, "\(rules.text)")
        try await stack.waitUntilIdle()
        func lead(_ name: String, _ number: String) async throws -> String {
            let created = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
                "status": "new_lead", "firstName": name, "lastName": "Lead", "phones": [number], "assignedAgentId": agent.id, "ownerEntityId": officeId,
                "searchInterest": ["area": "Hyde Park", "priceMin": 300000, "priceMax": 450000]]))
            let id = try #require(created["id"]?.string, "\(created.text)")
            try await stack.waitUntilIdle()
            return id
        }
        func advance(_ seconds: Int) async throws {
            _ = try await stack.call(.POST, .routing, "/v1/admin/clock", token: try await stack.serviceToken(), json: Stack.json(["advanceSeconds": seconds]))
            try await stack.waitUntilIdle()
        }

        // The first lead: called at once; the agent presses 2, which is a missed connection (AC-2); then the lead texts back (AC-3).
        let lenaPhone = NotificationsTests.randomPhone()
        let lena = try await lead("Lena", lenaPhone)
        #expect(try await calls(to: agentPhone).count == 1)
        let declined = try await press("2", onCallTo: agentPhone).twiml
        #expect(declined.contains("Goodbye") && !declined.contains("<Dial"), "\(declined)")
        try await advance(21 * 60)
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(lena)/timeline", token: brokerage.adminToken)
        #expect(timeline["items"]?.array?.contains { $0["summary"]?.string?.hasPrefix("The system tried to reach Rae Doe") == true } == true, "\(timeline.text)")
        _ = try await phone.inboundText(from: lenaPhone, body: "Hi! Yes, still looking")
        try await stack.waitUntilIdle()

        // The second lead: the agent presses 1, is connected to the lead's phone, and leaves a voicemail.
        let milaPhone = NotificationsTests.randomPhone()
        let mila = try await lead("Mila", milaPhone)
        #expect(try await calls(to: agentPhone).count == 2)
        let (connected, milaCall) = try await press("1", onCallTo: agentPhone)
        #expect(connected.contains("<Dial action=\"\(phone.publicURL)/webhooks/twilio/dial/\(milaCall)\"") && connected.contains("machineDetection=\"Enable\"")
                && connected.contains(">\(milaPhone)</Number></Dial>"), "\(connected)")
        #expect(try await dialEnded(milaCall, "completed", answeredBy: "machine_end_beep", seconds: 25).contains("The call with the lead has ended"))
        try await advance(21 * 60)
        let milaTimeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(mila)/timeline", token: brokerage.adminToken)
        #expect(milaTimeline["items"]?.array?.contains {
            $0["kind"]?.string == "communication" && $0["data"]?["outcome"]?.string == "left_voicemail" && $0["data"]?["direction"]?.string == "outbound"
        } == true, "the bridged call is logged: \(milaTimeline.text)")
        #expect(milaTimeline["items"]?.array?.contains { $0["summary"]?.string?.hasPrefix("The system tried") == true } == false, "AC-2: it connected")
        // The log is keyed by the call: logged again, nothing more; a user cannot log for someone else.
        let again = try await stack.call(.POST, .contacts, "/v1/contacts/\(mila)/communications", token: try await stack.serviceToken(), json: Stack.json([
            "id": milaCall, "channel": "call", "outcome": "left_voicemail", "userId": agent.id]))
        #expect(again.status == 200, "\(again.text)")
        let forged = try await stack.call(.POST, .contacts, "/v1/contacts/\(mila)/communications", token: brokerage.adminToken, json: Stack.json([
            "channel": "call", "outcome": "contacted", "userId": agent.id]))
        #expect(forged.status == 422 && forged.errorField == "userId", "\(forged.text)")

        // The third lead: its status leaves new lead after the first call.
        let noraPhone = NotificationsTests.randomPhone()
        let nora = try await lead("Nora", noraPhone)
        #expect(try await calls(to: agentPhone).count == 3)
        #expect(try await stack.call(.POST, .contacts, "/v1/contacts/\(nora)/status", token: brokerage.adminToken, json: #"{"status":"active_lead"}"#).status == 200)
        try await stack.waitUntilIdle()

        // The fourth lead does not answer the bridge: the calls go on, and the missed call is on its timeline (AC-2);
        // on the next call the agent talks to her, and the calls stop.
        let pia = try await lead("Pia", NotificationsTests.randomPhone())
        #expect(try await calls(to: agentPhone).count == 4)
        let (_, piaCall) = try await press("1", onCallTo: agentPhone)
        #expect(try await dialEnded(piaCall, "no-answer").contains("The lead did not answer"))
        try await advance(21 * 60)
        let piaTimeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(pia)/timeline", token: brokerage.adminToken)
        #expect(piaTimeline["items"]?.array?.contains { $0["summary"]?.string?.hasPrefix("The system tried to reach Rae Doe") == true } == true,
                "\(piaTimeline.text)")
        for _ in 0..<6 {
            if try await calls(to: agentPhone).count > 4 { break }
            try await advance(6 * 3600)
        }
        #expect(try await calls(to: agentPhone).count == 5, "Pia's second call")
        let (_, piaSecond) = try await press("1", onCallTo: agentPhone)
        _ = try await dialEnded(piaSecond, "completed", answeredBy: "human", seconds: 340)
        let piaNow = try await stack.call(.GET, .contacts, "/v1/contacts/\(pia)", token: brokerage.adminToken)
        #expect(piaNow["status"]?.string == "active_lead", "BA-10 took the agent's logged call: \(piaNow.text)")

        // Three days on: none of them was called again.
        for _ in 0..<6 { try await advance(12 * 3600) }
        #expect(try await calls(to: agentPhone).count == 5, "every lead's later calls were withdrawn")

        // A fifth lead nobody answers gets its three calls over its first three days.
        _ = try await lead("Owen", NotificationsTests.randomPhone())
        for _ in 0..<6 { try await advance(12 * 3600) }
        #expect(try await calls(to: agentPhone).count == 8, "three calls for the lead nobody reached")
    }
}
