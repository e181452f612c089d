import Foundation
import Models
import Testing

/// The platform as one running stack: readiness, metrics, tokens, the directory, and events
/// crossing services exactly once. Serialized: some tests read counters and move the shared clock.
@Suite("Platform (X-1 … X-5)", .serialized)
struct PlatformTests {
    let stack: Stack

    init() throws {
        stack = try Stack.fromEnvironment()
    }

    @Test("X-4: every service is live and ready and exposes Prometheus metrics")
    func readyWithMetrics() async throws {
        for service in ServiceName.allCases {
            let live = try await stack.call(.GET, service, "/health/live")
            #expect(live.status == 200, "\(service)")
            let ready = try await stack.call(.GET, service, "/health/ready")
            #expect(ready.status == 200, "\(service)")
            #expect(ready["status"] == .string("ready"), "\(service)")
            let metrics = try await stack.call(.GET, service, "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.headers.first(name: "content-type")?.hasPrefix("text/plain") == true)
            #expect(metrics.text.contains("# TYPE"), "\(service)")
            #expect(metrics.text.contains("outbox_pending"), "\(service)")
        }
    }

    @Test("X-1: missing, malformed, alg-none, wrong-signature and expired tokens get 401 on every service")
    func forgedTokens() async throws {
        let valid = try await stack.serviceToken()
        let parts = valid.split(separator: ".").map(String.init)
        let noneHeader = Data(#"{"alg":"none","typ":"JWT"}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        let forgedTokens: [String?] = [
            nil, "", "not-a-jwt", "\(noneHeader).\(parts[1]).", "\(noneHeader).\(parts[1]).\(parts[2])",
            try await stack.sign(subject: "contacts", role: "service", companyId: nil, expiresIn: 600, secret: String(repeating: "z", count: 40)),
            try await stack.sign(subject: "contacts", role: "service", companyId: nil, expiresIn: -600),
            "\(parts[0]).\(parts[1]).\(String(parts[2].reversed()))",
        ]
        for service in ServiceName.allCases {
            for token in forgedTokens {
                let answer = try await stack.call(.POST, service, "/v1/events", token: token, json: "{}")
                #expect(answer.status == 401, "\(service) accepted \(token ?? "no token")")
                #expect(answer.errorCode == "unauthorized")
            }
        }
        let users = try await stack.call(.GET, .contacts, "/v1/users", token: forgedTokens[5])
        #expect(users.status == 401)
    }

    @Test("companies, offices, teams and users with roles; login; agents and other companies see nothing they should not")
    func directoryAndAuthorization() async throws {
        let brokerage = try await stack.newCompany()
        let admin = brokerage.adminToken
        let office = try await stack.call(.POST, .contacts, "/v1/entities", token: admin, json: Stack.json([
            "parentId": brokerage.rootEntityId, "kind": "office", "name": "Downtown", "timeZone": "America/New_York",
        ]))
        #expect(office.status == 201)
        let officeId = try #require(office["id"]?.string)
        #expect(office["officeHours"]?.array?.count == 5)
        let team = try await stack.call(.POST, .contacts, "/v1/entities", token: admin, json: Stack.json([
            "parentId": officeId, "kind": "team", "name": "Buyers",
        ]))
        #expect(team.status == 201)
        #expect(team["timeZone"] == .string("America/New_York"))
        let misplaced = try await stack.call(.POST, .contacts, "/v1/entities", token: admin, json: Stack.json([
            "parentId": brokerage.rootEntityId, "kind": "team", "name": "Nowhere",
        ]))
        #expect(misplaced.status == 422)
        #expect(misplaced.errorField == "kind")

        let agentEmail = "agent-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let agent = try await stack.call(.POST, .contacts, "/v1/users", token: admin, json: Stack.json([
            "role": "agent", "firstName": "Avery", "lastName": "Agent", "email": agentEmail, "password": "agent password 1",
            "mobilePhone": "(312) 555-0142", "entityIds": [try #require(team["id"]?.string)],
        ]))
        #expect(agent.status == 201)
        #expect(agent["mobilePhone"] == .string("+13125550142"))
        #expect(agent["rotation"]?["inRotation"] == .bool(true))
        let agentId = try #require(agent["id"]?.string)

        let duplicate = try await stack.call(.POST, .contacts, "/v1/users", token: admin, json: Stack.json([
            "role": "agent", "firstName": "Avery", "lastName": "Again", "email": agentEmail.uppercased(), "entityIds": [officeId],
        ]))
        #expect(duplicate.status == 409)
        #expect(duplicate.errorField == "email")

        let agentToken = try await stack.login(agentEmail, "agent password 1")
        let wrongPassword = try await stack.call(.POST, .contacts, "/v1/auth/login", json: Stack.json(["email": agentEmail, "password": "nope nope nope"]))
        #expect(wrongPassword.status == 401)
        #expect(wrongPassword.errorCode == "invalid_credentials")
        let me = try await stack.call(.GET, .contacts, "/v1/auth/me", token: agentToken)
        #expect(me["id"]?.string?.lowercased() == agentId.lowercased())

        // An agent manages nobody and cannot raise their own role.
        #expect(try await stack.call(.GET, .contacts, "/v1/users", token: agentToken).status == 403)
        #expect(try await stack.call(.POST, .contacts, "/v1/users", token: agentToken, json: Stack.json([
            "role": "company_admin", "firstName": "E", "lastName": "Vil", "email": "evil@example.com", "entityIds": [officeId],
        ])).status == 403)
        #expect(try await stack.call(.PATCH, .contacts, "/v1/users/\(agentId)", token: agentToken, json: #"{"role":"company_admin"}"#).status == 403)
        let ownPhone = try await stack.call(.PATCH, .contacts, "/v1/users/\(agentId)", token: agentToken, json: #"{"mobilePhone":"+1 773 555 0100"}"#)
        #expect(ownPhone.status == 200)
        #expect(ownPhone["mobilePhone"] == .string("+17735550100"))

        // Admins take agents out of rotation until a date.
        let outOfRotation = try await stack.call(.PATCH, .contacts, "/v1/users/\(agentId)", token: admin,
                                                 json: #"{"rotation":{"inRotation":false,"until":"2030-01-01T00:00:00Z"}}"#)
        #expect(outOfRotation.status == 200)
        #expect(outOfRotation["rotation"]?["inRotation"] == .bool(false))

        // Another company's admin sees none of it: 404, never 200 or 403.
        let other = try await stack.newCompany()
        #expect(try await stack.call(.GET, .contacts, "/v1/users/\(agentId)", token: other.adminToken).status == 404)
        #expect(try await stack.call(.GET, .contacts, "/v1/entities/\(officeId)", token: other.adminToken).status == 404)
        #expect(try await stack.call(.PATCH, .contacts, "/v1/users/\(agentId)", token: other.adminToken, json: #"{"active":false}"#).status == 404)
        let otherUsers = try await stack.call(.GET, .contacts, "/v1/users", token: other.adminToken)
        #expect(otherUsers["items"]?.array?.count == 1)

        // Only platform admins create companies.
        #expect(try await stack.call(.POST, .contacts, "/v1/companies", token: admin, json: Stack.json([
            "name": "Sneaky", "timeZone": "UTC", "admin": ["firstName": "a", "lastName": "b", "email": "x@y.example", "password": "0123456789ab"],
        ])).status == 403)
    }

    @Test("X-2: bad input gets a JSON error naming the field and changes nothing")
    func badInput() async throws {
        let platform = try await stack.platformAdminToken()
        let cases: [(String, String)] = [
            (#"{"timeZone":"UTC","admin":{"firstName":"a","lastName":"b","email":"a@b.example","password":"0123456789ab"}}"#, "name"),
            (#"{"name":"X","timeZone":"Mars/Olympus","admin":{"firstName":"a","lastName":"b","email":"a@b.example","password":"0123456789ab"}}"#, "timeZone"),
            (#"{"name":"X","timeZone":"UTC","admin":{"firstName":"a","lastName":"b","email":"not-an-email","password":"0123456789ab"}}"#, "admin.email"),
            (#"{"name":"X","timeZone":"UTC","admin":{"firstName":"a","lastName":"b","email":"a@b.example","password":"short"}}"#, "admin.password"),
            (#"{"name":42,"timeZone":"UTC","admin":{"firstName":"a","lastName":"b","email":"a@b.example","password":"0123456789ab"}}"#, "name"),
            (#"{"name":"X","timeZone":"UTC","officeHours":[{"weekday":8,"open":"09:00","close":"17:00"}],"admin":{"firstName":"a","lastName":"b","email":"a@b.example","password":"0123456789ab"}}"#, "officeHours[0].weekday"),
            (#"{"name":"X","timeZone":"UTC","officeHours":[{"weekday":1,"open":"18:00","close":"17:00"}],"admin":{"firstName":"a","lastName":"b","email":"a@b.example","password":"0123456789ab"}}"#, "officeHours[0].close"),
            ("{", "body"),
        ]
        for (body, field) in cases {
            let answer = try await stack.call(.POST, .contacts, "/v1/companies", token: platform, json: body)
            #expect((400...422).contains(answer.status), "\(body)")
            #expect(answer.errorField == field, "\(body) → \(answer.text)")
        }
        // Nothing half-written: the admin e-mail of the refused requests is free.
        let login = try await stack.call(.POST, .contacts, "/v1/auth/login", json: #"{"email":"a@b.example","password":"0123456789ab"}"#)
        #expect(login.status == 401)

        let brokerage = try await stack.newCompany()
        let badRole = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
            "role": "wizard", "firstName": "a", "lastName": "b", "email": "w@b.example", "entityIds": [brokerage.rootEntityId],
        ]))
        #expect(badRole.status == 422)
        #expect(badRole.errorField == "role")
        let badEntity = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
            "role": "agent", "firstName": "a", "lastName": "b", "email": "w@b.example", "entityIds": [UUID().uuidString],
        ]))
        #expect(badEntity.status == 422)
        #expect(badEntity.errorField == "entityIds[0]")
        let huge = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken,
                                        json: "{\"firstName\": \"" + String(repeating: "x", count: 3 << 20) + "\"}")
        #expect(huge.status == 413)
        #expect(huge.errorCode == "body_too_large")
    }

    @Test("X-3: a change in contacts reaches every subscriber exactly once; a repeated delivery is acknowledged and ignored")
    func eventsExactlyOnce() async throws {
        try await stack.waitUntilIdle()
        let subscribers: [ServiceName] = [.routing, .automation, .accountability, .smartplans, .notifications]
        var before: [ServiceName: Double] = [:]
        for service in subscribers {
            before[service] = try await stack.metric(service, "events_received_total", ["type": "user.upserted", "outcome": "handled"])
        }
        let brokerage = try await stack.newCompany()
        let created = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
            "role": "agent", "firstName": "Eve", "lastName": "Vent", "email": "eve-\(UUID().uuidString.prefix(8))@example.com",
            "entityIds": [brokerage.rootEntityId],
        ]))
        #expect(created.status == 201)
        try await stack.waitUntilIdle()
        for service in subscribers {
            // The company's admin and the new agent: two user events, each handled once.
            let after = try await stack.metric(service, "events_received_total", ["type": "user.upserted", "outcome": "handled"])
            #expect(after - (before[service] ?? 0) == 2, "\(service)")
        }

        // Delivering the same event again, as a retrying outbox would, changes nothing.
        let service = try await stack.serviceToken()
        let event = Stack.json([
            "id": UUID().uuidString, "type": "user.upserted", "version": 1, "occurredAt": "2026-01-01T00:00:00Z",
            "companyId": brokerage.companyId, "subjectId": UUID().uuidString,
            "data": ["id": UUID().uuidString, "companyId": brokerage.companyId, "role": "agent", "entityIds": [String](),
                     "firstName": "R", "lastName": "Peat", "email": "r@example.com", "timeZone": "UTC",
                     "rotation": ["inRotation": true], "prefersPush": false, "active": true, "version": 1,
                     "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"],
        ])
        let first = try await stack.call(.POST, .routing, "/v1/events", token: service, json: event)
        let second = try await stack.call(.POST, .routing, "/v1/events", token: service, json: event)
        #expect(first.status == 200)
        #expect(first["outcome"] == .string("handled"))
        #expect(second.status == 200)
        #expect(second["outcome"] == .string("duplicate"))

        // People cannot post events; only services can.
        #expect(try await stack.call(.POST, .routing, "/v1/events", token: brokerage.adminToken, json: event).status == 403)
    }

    @Test("a login is recorded and reaches accountability")
    func loginRecorded() async throws {
        try await stack.waitUntilIdle()
        let before = try await stack.metric(.accountability, "events_received_total", ["type": "user.logged_in", "outcome": "handled"])
        let brokerage = try await stack.newCompany()
        _ = try await stack.login(brokerage.adminEmail, "correct horse battery")
        try await stack.waitUntilIdle()
        let after = try await stack.metric(.accountability, "events_received_total", ["type": "user.logged_in", "outcome": "handled"])
        #expect(after - before == 1)
    }

    @Test("the virtual clock: one move is seen by every service, only forward, at most 400 days")
    func virtualClock() async throws {
        let token = try await stack.serviceToken()
        let start = try await stack.call(.GET, .contacts, "/v1/admin/clock", token: token)
        let now = try #require(start["now"]?.string.flatMap(RFC3339.date(from:)))
        let moved = try await stack.call(.POST, .routing, "/v1/admin/clock", token: token, json: #"{"advanceSeconds": 3600}"#)
        #expect(moved.status == 200)
        let target = now.addingTimeInterval(3600)
        try await stack.waitUntilIdle()
        for service in ServiceName.allCases {
            let answer = try await stack.call(.GET, service, "/v1/admin/clock", token: token)
            let seen = try #require(answer["now"]?.string.flatMap(RFC3339.date(from:)))
            #expect(abs(seen.timeIntervalSince(target)) < 0.01, "\(service)")
        }
        let backwards = try await stack.call(.POST, .contacts, "/v1/admin/clock", token: token, json: Stack.json(["now": "2000-01-01T00:00:00Z"]))
        #expect(backwards.status == 422)
        #expect(backwards.errorCode == "clock_backwards")
        let tooFar = try await stack.call(.POST, .contacts, "/v1/admin/clock", token: token, json: #"{"advanceSeconds": 100000000}"#)
        #expect(tooFar.status == 422)
        let agentish = try await stack.newCompany()
        #expect(try await stack.call(.POST, .contacts, "/v1/admin/clock", token: agentish.adminToken, json: #"{"advanceSeconds": 1}"#).status == 403)
    }

    @Test("SP-4, BA-8: automation and SmartPlans preview a template with a real contact's values and its agent's; an unknown field is a 422 naming it; a contact the caller may not see is 404")
    func templatePreview() async throws {
        let brokerage = try await stack.newCompany()
        var agents: [(id: String, token: String)] = []
        for name in ["Alice", "Bob"] {
            let email = "\(name.lowercased())-\(UUID().uuidString.prefix(8).lowercased())@example.com"
            let created = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
                "role": "agent", "firstName": name, "lastName": "Archer", "email": email, "password": "agent password 1",
                "mobilePhone": "+13125550101", "entityIds": [brokerage.rootEntityId],
            ]))
            agents.append((try #require(created["id"]?.string, "\(created.text)"), try await stack.login(email, "agent password 1")))
        }
        let contact = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
            "status": "new_lead", "firstName": "Jane", "lastName": "Doe", "emails": ["jane@example.com"], "assignedAgentId": agents[0].id,
            "searchInterest": ["area": "Lincoln Park", "priceMin": 450000, "priceMax": 600000],
        ]))
        let contactId = try #require(contact["id"]?.string, "\(contact.text)")
        try await stack.waitUntilIdle()
        let template: [String: Any] = ["contactId": contactId, "subject": "Homes in {contact.search.area}",
                                       "body": "Hi {contact.first.name}, I'm {agent.first.name} ({agent.phone}). Text me: {contact.phone|no phone on file}"]
        for service in [ServiceName.automation, .smartplans] {
            let preview = try await stack.call(.POST, service, "/v1/templates/preview", token: agents[0].token, json: Stack.json(template))
            #expect(preview.status == 200, "\(service): \(preview.text)")
            #expect(preview["subject"]?.string == "Homes in Lincoln Park")
            #expect(preview["body"]?.string == "Hi Jane, I'm Alice ((312) 555-0101). Text me: no phone on file", "\(preview.text)")
            #expect(preview["missing"]?.array == [.string("{contact.phone}")])
            let unknown = try await stack.call(.POST, service, "/v1/templates/preview", token: brokerage.adminToken,
                                               json: Stack.json(["contactId": contactId, "body": "Hi {contact.nickname}"]))
            #expect(unknown.status == 422 && unknown.errorField == "body" && unknown.text.contains("{contact.nickname}"), "\(unknown.text)")
            let other = try await stack.call(.POST, service, "/v1/templates/preview", token: agents[1].token, json: Stack.json(template))
            #expect(other.status == 404, "another agent's contact: \(other.text)")
            let fields = try await stack.call(.GET, service, "/v1/templates/fields", token: agents[1].token)
            #expect(fields["items"]?.array?.contains { $0["name"]?.string == "{agent.first.name}" } == true)
        }
    }
}
