import Foundation
import Models
import Testing

/// The stack with notifications started again without an SMS provider (`SMS_PROVIDER=none`):
/// scripts/test runs this suite after the others, once it has restarted notifications so, and the
/// main run skips it. Its first check fails on a stack whose notifications can send texts.
@Suite("NoSMSProvider: notifications started with SMS_PROVIDER=none", .serialized)
struct NoSMSProviderTests {
    let stack: Stack

    init() throws {
        stack = try Stack.fromEnvironment()
    }

    @Test("SP-7: without an SMS provider notifications refuses a text naming no_sms_provider; a plan's text steps are skipped with that reason on the timeline and in the plan's figures, nothing is queued to fail, and each plan moves on to its e-mail")
    func textStepsSkipped() async throws {
        let brokerage = try await stack.newCompany()
        #expect(try await stack.call(.PATCH, .contacts, "/v1/entities/\(brokerage.rootEntityId)", token: brokerage.adminToken,
                                     json: Stack.json(["postalAddress": "7 Quiet Lane, Chicago, IL 60601"])).status == 200)
        func contact(_ first: String) async throws -> String {
            let created = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
                "status": "active_lead", "firstName": first, "lastName": "Quiet", "phones": [NotificationsTests.randomPhone()],
                "emails": ["\(first.lowercased())-\(UUID().uuidString.prefix(6))@example.com"]]))
            return try #require(created["id"]?.string, "\(created.text)")
        }
        let sam = try await contact("Sam")
        let sue = try await contact("Sue")
        try await stack.waitUntilIdle()

        let direct = try await stack.call(.POST, .notifications, "/v1/messages", token: brokerage.adminToken, json: Stack.json([
            "channel": "sms", "contactId": sam, "body": "Hi Sam", "purpose": "manual"]), headers: [("Idempotency-Key", UUID().uuidString)])
        try #require(direct.status == 422 && direct.errorCode == "no_sms_provider" && direct.errorField == "channel",
                     "this suite needs notifications started with SMS_PROVIDER=none: \(direct.text)")

        try await SmartPlansTests().toChicagoNoon()
        let plan = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans", token: brokerage.adminToken, json: Stack.json([
            "name": "Quiet start", "durationDays": 5, "steps": [
                ["kind": "text", "body": "Hi {contact.first.name}, welcome!"],
                ["kind": "email", "subject": "Welcome {contact.first.name}", "body": "Glad you are here."],
            ]]))
        let planId = try #require(plan["id"]?.string, "\(plan.text)")
        // Both in one request: their texts go to notifications in one wave, which it refuses whole.
        let report = try await stack.call(.POST, .smartplans, "/v1/smartplans/plans/\(planId)/enrollments", token: brokerage.adminToken,
                                          json: Stack.json(["contactIds": [sam, sue]]))
        #expect(report["items"]?.array?.map { $0["outcome"]?.string } == ["enrolled", "enrolled"], "\(report.text)")
        try await stack.waitUntilIdle()

        let figures = try await stack.call(.GET, .smartplans, "/v1/smartplans/plans/\(planId)", token: brokerage.adminToken)["figures"]
        #expect(figures?["skipped"] == .number(2) && figures?["failed"] == .number(0) && figures?["messagesSent"] == .number(2)
                && figures?["finished"] == .number(2), "\(String(describing: figures))")
        for (id, name) in [(sam, "Sam"), (sue, "Sue")] {
            let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(id)/timeline", token: brokerage.adminToken)
            let summaries = (timeline["items"]?.array ?? []).compactMap { $0["summary"]?.string }
            #expect(summaries.contains { $0.contains("step 1: skipped a text: no SMS provider is configured") }, "\(summaries)")
            #expect(summaries.contains { $0.contains("step 2: sent the e-mail \"Welcome \(name)\"") }, "the plan moved on: \(summaries)")
            let messages = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(id)", token: brokerage.adminToken)["items"]?.array ?? []
            #expect(messages.map { $0["channel"]?.string } == ["email"], "no text queued to fail: \(messages)")
        }
    }
}
