import AsyncHTTPClient
import Crypto
import Foundation
import Models
import NIOCore
import NIOHTTP1
import Testing

/// The notifications service over HTTP, against the Twilio-compatible test provider that
/// scripts/test starts (SPEC section 6).
@Suite("Notifications (NT-1 … NT-7)", .serialized)
struct NotificationsTests {
    let stack: Stack
    let provider: String
    let authToken: String
    let accountSid: String
    let publicURL: String

    init() throws {
        stack = try Stack.fromEnvironment()
        let environment = ProcessInfo.processInfo.environment
        guard let provider = environment["STACK_PROVIDER_URL"], let token = environment["TWILIO_AUTH_TOKEN"],
              let sid = environment["TWILIO_ACCOUNT_SID"], let publicURL = environment["PUBLIC_URL"] else {
            throw Stack.NotConfigured(variable: "STACK_PROVIDER_URL, TWILIO_AUTH_TOKEN, TWILIO_ACCOUNT_SID, PUBLIC_URL")
        }
        self.provider = provider
        self.authToken = token
        self.accountSid = sid
        self.publicURL = publicURL
    }

    /// A Chicago number no other test of the run is likely to have: with only 9,000 numbers, two
    /// tests of a run shared one now and then, and one read the other's provider requests.
    static func randomPhone() -> String { "+1312\(Int.random(in: 556...999))\(String(format: "%04d", Int.random(in: 0...9999)))" }

    func contact(_ brokerage: Stack.Brokerage, phone: String, email: String? = nil, state: String? = nil) async throws -> String {
        var body: [String: Any] = ["status": "new_lead", "firstName": "Nora", "lastName": "Notify", "phones": [phone]]
        if let email { body["emails"] = [email] }
        if let state { body["address"] = ["state": state] }
        let answer = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json(body))
        let id = try #require(answer["id"]?.string, "\(answer.text)")
        try await stack.waitUntilIdle()
        return id
    }

    func send(_ token: String, key: String? = UUID().uuidString, _ body: [String: Any]) async throws -> Stack.Answer {
        try await stack.call(.POST, .notifications, "/v1/messages", token: token, json: Stack.json(body),
                             headers: key.map { [("Idempotency-Key", $0)] } ?? [])
    }

    func send(_ token: String, key: String?, batch messages: [[String: Any]]) async throws -> Stack.Answer {
        try await stack.call(.POST, .notifications, "/v1/messages/batch", token: token, json: Stack.json(["messages": messages]),
                             headers: key.map { [("Idempotency-Key", $0)] } ?? [])
    }

    func message(_ id: String) async throws -> Stack.Answer {
        try await stack.call(.GET, .notifications, "/v1/messages/\(id)", token: try await stack.serviceToken())
    }

    func providerRequests(to: String) async throws -> [JSONValue] {
        var request = HTTPClientRequest(url: "\(provider)/_control/requests?to=\(to.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? to)")
        request.method = .GET
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 8 << 20)
        return (try JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView)))["requests"]?.array ?? []
    }

    func script(to: String, _ responses: [[String: Any]]) async throws {
        var request = HTTPClientRequest(url: "\(provider)/_control/script")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: Stack.json(["to": to, "responses": responses])))
        _ = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    }

    /// Signs like Twilio: URL, then sorted name+value pairs, HMAC-SHA1, base64.
    func twilioSignature(path: String, fields: [(String, String)], token: String? = nil) -> String {
        let data = fields.sorted { $0.0 < $1.0 }.reduce(publicURL + path) { $0 + $1.0 + $1.1 }
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(data.utf8), using: SymmetricKey(data: Data((token ?? authToken).utf8)))
        return Data(mac).base64EncodedString()
    }

    func webhook(_ path: String, _ fields: [(String, String)], signature: String? = nil) async throws -> Stack.Answer {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = fields.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&")
        return try await stack.callRaw(.POST, .notifications, path, token: nil, body: body, contentType: "application/x-www-form-urlencoded",
                                       headers: [("X-Twilio-Signature", signature ?? twilioSignature(path: path, fields: fields))])
    }

    func inboundText(from: String, body: String, sid: String = "SM\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased())") async throws -> Stack.Answer {
        try await webhook("/webhooks/twilio/messages", [("MessageSid", sid), ("From", from), ("To", "+13125550100"), ("Body", body),
                                                         ("AccountSid", accountSid)])
    }

    func clock() async throws -> Date {
        let answer = try await stack.call(.GET, .notifications, "/v1/admin/clock", token: try await stack.serviceToken())
        return try #require(answer["now"]?.string.flatMap(RFC3339.date(from:)))
    }

    func setClock(_ date: Date, settleOnly: Bool = false) async throws {
        let answer = try await stack.call(.POST, .notifications, "/v1/admin/clock", token: try await stack.serviceToken(),
                                          json: Stack.json(["now": RFC3339.string(from: date)]))
        #expect(answer.status == 200, "\(answer.text)")
        if settleOnly { try await stack.waitUntilSettled() } else { try await stack.waitUntilIdle() }
    }

    func moveClock(by seconds: TimeInterval, settleOnly: Bool = false) async throws {
        try await setClock(try await clock().addingTimeInterval(seconds), settleOnly: settleOnly)
    }

    /// Moves the shared clock to the next 16:00 UTC (10:00 or 11:00 in Chicago), inside every
    /// sending window, so automated messages go at once.
    func moveToDaytime() async throws {
        let now = try await clock()
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let next = try #require(calendar.nextDate(after: now, matching: DateComponents(hour: 16, minute: 0), matchingPolicy: .nextTime))
        try await setClock(next)
    }

    @Test("NT-1: the Idempotency-Key: missing is 400, the same key answers the first result and sends once (even after its contact is deleted), another body is 422, concurrent retries never send twice")
    func idempotency() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let contactId = try await contact(brokerage, phone: phone)
        let body: [String: Any] = ["channel": "sms", "contactId": contactId, "body": "Hi Nora, this is Ada.", "purpose": "manual"]
        let missing = try await send(brokerage.adminToken, key: nil, body)
        #expect(missing.status == 400)
        #expect(missing.errorField == "Idempotency-Key")
        let key = UUID().uuidString
        let first = try await send(brokerage.adminToken, key: key, body)
        #expect(first.status == 202, "\(first.text)")
        let again = try await send(brokerage.adminToken, key: "\"\(key)\"", body)
        #expect(again.status == 202)
        #expect(again.text == first.text)
        #expect(again.headers.first(name: "Idempotent-Replayed") == "true")
        var changed = body
        changed["body"] = "Something else"
        let mismatch = try await send(brokerage.adminToken, key: key, changed)
        #expect(mismatch.status == 422)
        #expect(mismatch.errorCode == "idempotency_key_reused")

        let racedKey = UUID().uuidString
        let json = Stack.json(body)
        let stack = stack
        let answers = try await withThrowingTaskGroup(of: Stack.Answer.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await stack.call(.POST, .notifications, "/v1/messages", token: brokerage.adminToken, json: json, headers: [("Idempotency-Key", racedKey)])
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.allSatisfy { $0.status == 202 || $0.status == 409 }, "\(answers.map(\.status))")
        #expect(Set(answers.filter { $0.status == 202 }.compactMap { $0["id"]?.string }).count == 1)
        #expect(answers.filter { $0.status == 409 }.allSatisfy { $0.errorCode == "request_in_progress" })
        try await stack.waitUntilIdle()
        let log = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)", token: brokerage.adminToken)
        #expect(log["items"]?.array?.count == 2, "one message per key: \(log.text)")
        let sent = try await providerRequests(to: phone).filter { $0["path"]?.string?.hasSuffix("/Messages.json") == true }
        #expect(sent.count == 2)

        // A retry after the contact is gone still answers what the first request was answered;
        // a new request to them is refused.
        #expect(try await stack.call(.DELETE, .contacts, "/v1/contacts/\(contactId)", token: brokerage.adminToken).status == 204)
        try await stack.waitUntilIdle()
        let afterDelete = try await send(brokerage.adminToken, key: key, body)
        #expect(afterDelete.status == 202, "\(afterDelete.text)")
        #expect(afterDelete.text == first.text)
        #expect(afterDelete.headers.first(name: "Idempotent-Replayed") == "true")
        #expect(try await send(brokerage.adminToken, key: UUID().uuidString, body).status == 404)
    }

    @Test("NT-1: a batch is accepted all or none in the order given; its key replays it and sends nothing more, twins sent at once included; an error names the message at fault")
    func batch() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let email = "nora-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let contactId = try await contact(brokerage, phone: phone, email: email)
        let text: [String: Any] = ["channel": "sms", "contactId": contactId, "body": "Hi Nora, this is Ada.", "purpose": "manual"]
        let mail: [String: Any] = ["channel": "email", "contactId": contactId, "subject": "Your search", "body": "Three new homes.", "purpose": "manual"]
        func sendBatch(_ key: String?, _ messages: [[String: Any]]) async throws -> Stack.Answer {
            try await send(brokerage.adminToken, key: key, batch: messages)
        }
        #expect(try await sendBatch(nil, [text]).status == 400)
        // One bad message refuses the batch, names it, and stores none of the others.
        var bad = mail
        bad["subject"] = NSNull()
        let refused = try await sendBatch(UUID().uuidString, [text, bad])
        #expect(refused.status == 422 || refused.status == 400, "\(refused.text)")
        #expect(refused.errorField == "messages[1].subject", "\(refused.text)")
        let unknown = try await sendBatch(UUID().uuidString, [text, ["channel": "push", "userId": UUID().uuidString, "body": "x", "purpose": "manual"]])
        #expect(unknown.status == 404)
        #expect(unknown.errorField == "messages[1]")
        #expect(try await sendBatch(UUID().uuidString, []).errorField == "messages")
        try await stack.waitUntilIdle()
        let before = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)", token: brokerage.adminToken)
        #expect(before["items"]?.array?.count == 0, "\(before.text)")

        let key = UUID().uuidString
        let first = try await sendBatch(key, [text, mail])
        #expect(first.status == 202, "\(first.text)")
        let items = first["items"]?.array ?? []
        #expect(items.map { $0["channel"]?.string } == ["sms", "email"])
        #expect(items.map { $0["to"]?.string } == [phone, email])
        let again = try await sendBatch(key, [text, mail])
        #expect(again.status == 202)
        #expect(again.text == first.text)
        #expect(again.headers.first(name: "Idempotent-Replayed") == "true")
        #expect(try await sendBatch(key, [mail, text]).errorCode == "idempotency_key_reused")
        try await stack.waitUntilIdle()
        let log = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)", token: brokerage.adminToken)
        #expect(log["items"]?.array?.count == 2, "\(log.text)")
        let sent = try await providerRequests(to: phone).filter { $0["path"]?.string?.hasSuffix("/Messages.json") == true }
        #expect(sent.count == 1)
        for item in items {
            let id = try #require(item["id"]?.string)
            #expect(try await message(id)["state"]?.string == "sent")
        }

        // Twins of a batch sent at once: one is stored, the others wait for it and answer what it answered.
        let racedKey = UUID().uuidString
        let json = Stack.json(["messages": [text, mail]])
        let (shared, token) = (stack, brokerage.adminToken)
        let answers = try await withThrowingTaskGroup(of: Stack.Answer.self) { group in
            for _ in 0..<6 {
                group.addTask {
                    try await shared.call(.POST, .notifications, "/v1/messages/batch", token: token, json: json, headers: [("Idempotency-Key", racedKey)])
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.allSatisfy { $0.status == 202 }, "\(answers.map(\.status))")
        #expect(Set(answers.map(\.text)).count == 1)
        #expect(answers.filter { $0.headers.first(name: "Idempotent-Replayed") == "true" }.count == 5)
        try await stack.waitUntilIdle()
        let raced = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)", token: brokerage.adminToken)
        #expect(raced["items"]?.array?.count == 4, "one batch per key: \(raced.text)")
    }

    @Test("NT-1: a batch whose messages carry their own keys stores each once under its key, as if sent alone with it: regrouped retries send nothing twice; a key reused with another body, beside the header or twice in a batch is refused, and a refused batch stores none")
    func keyedBatch() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let email = "kim-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let contactId = try await contact(brokerage, phone: phone, email: email)
        let text: [String: Any] = ["channel": "sms", "contactId": contactId, "body": "Hi Kim, this is Ada.", "purpose": "manual"]
        let mail: [String: Any] = ["channel": "email", "contactId": contactId, "subject": "Your search", "body": "Two new homes.", "purpose": "manual"]
        let later: [String: Any] = ["channel": "sms", "contactId": contactId, "body": "See you at 5.", "purpose": "manual"]
        func keyed(_ key: String, _ message: [String: Any]) -> [String: Any] {
            var message = message
            message["idempotencyKey"] = key
            return message
        }
        func sendBatch(_ messages: [[String: Any]], header: String? = nil) async throws -> Stack.Answer {
            try await send(brokerage.adminToken, key: header, batch: messages)
        }
        let (k1, k2, k3, k4) = (UUID().uuidString, UUID().uuidString, UUID().uuidString, UUID().uuidString)
        #expect(try await sendBatch([keyed(k1, text)], header: k1).status == 400)
        #expect(try await sendBatch([keyed(k1, text), mail]).errorField == "messages[1].idempotencyKey")
        #expect(try await sendBatch([keyed(k1, text), keyed(k1, mail)]).errorField == "messages[1].idempotencyKey")
        #expect(try await send(brokerage.adminToken, keyed(k1, text)).errorField == "idempotencyKey")
        let unknownUser: [String: Any] = ["channel": "push", "userId": UUID().uuidString, "body": "x", "purpose": "manual"]
        let refused = try await sendBatch([keyed(k4, later), keyed(UUID().uuidString, unknownUser)])
        #expect(refused.status == 404 && refused.errorField == "messages[1]", "\(refused.text)")

        // Sent alone by the header first; the same key on the message answers that message.
        let alone = try await sendBatch([text], header: k1)
        #expect(alone.status == 202, "\(alone.text)")
        let first = try await sendBatch([keyed(k1, text), keyed(k2, mail)])
        #expect(first.status == 202, "\(first.text)")
        let firstItems = first["items"]?.array ?? []
        #expect(firstItems.first?["id"] == alone["items"]?.array?.first?["id"])
        #expect(firstItems.map { $0["channel"]?.string } == ["sms", "email"])
        #expect(first.headers.first(name: "Idempotent-Replayed") == nil)
        let regrouped = try await sendBatch([keyed(k2, mail), keyed(k3, later)])
        #expect(regrouped.status == 202, "\(regrouped.text)")
        #expect(regrouped["items"]?.array?.first?["id"] == firstItems.last?["id"])
        let replayed = try await sendBatch([keyed(k3, later), keyed(k1, text)])
        #expect(replayed.headers.first(name: "Idempotent-Replayed") == "true")
        #expect(replayed["items"]?.array?.map { $0["id"] } == [regrouped["items"]?.array?.last?["id"], firstItems.first?["id"]])
        // A replayed message before a refused one: the refusal names its place in the request.
        let misplaced = try await sendBatch([keyed(k1, text), keyed(UUID().uuidString, unknownUser)])
        #expect(misplaced.status == 404 && misplaced.errorField == "messages[1]", "\(misplaced.text)")
        let reused = try await sendBatch([keyed(k4, later), keyed(k2, text)])
        #expect(reused.errorCode == "idempotency_key_reused" && reused.errorField == "messages[1].idempotencyKey", "\(reused.text)")

        try await stack.waitUntilIdle()
        let log = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)", token: brokerage.adminToken)
        #expect(log["items"]?.array?.count == 3, "one message per key, none of the refused batches': \(log.text)")
        let texts = try await providerRequests(to: phone).filter { $0["path"]?.string?.hasSuffix("/Messages.json") == true }
        #expect(texts.count == 2)
    }

    @Test("NT-2, NT-3, NT-6: a text goes out in Twilio's wire format, its status callback marks it delivered, forged and replayed callbacks change nothing, and the contact's timeline shows it")
    func twilioWireFormat() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let contactId = try await contact(brokerage, phone: phone)
        let accepted = try await send(brokerage.adminToken, ["channel": "sms", "contactId": contactId, "body": "Tour at 5? Reply YES & I'll book.", "purpose": "manual"])
        #expect(accepted.status == 202, "\(accepted.text)")
        #expect(accepted["state"] == .string("queued"))
        let id = try #require(accepted["id"]?.string)
        try await stack.waitUntilIdle()
        let sent = try await message(id)
        #expect(sent["state"] == .string("sent"), "\(sent.text)")
        let sid = try #require(sent["providerId"]?.string)
        #expect(sid.hasPrefix("SM"))
        let request = try #require(try await providerRequests(to: phone).first)
        #expect(request["path"]?.string == "/2010-04-01/Accounts/\(accountSid)/Messages.json")
        #expect(request["contentType"]?.string == "application/x-www-form-urlencoded")
        #expect(request["authorization"]?.string == "Basic " + Data("\(accountSid):\(authToken)".utf8).base64EncodedString())
        #expect(request["idempotencyKey"]?.string == id.lowercased())
        #expect(request["fields"]?["To"] == .string(phone))
        #expect(request["fields"]?["From"] == .string("+13125550100"))
        #expect(request["fields"]?["Body"] == .string("Tour at 5? Reply YES & I'll book."))
        #expect(request["fields"]?["StatusCallback"] == .string("\(publicURL)/webhooks/twilio/status"))

        let fields = [("MessageSid", sid), ("MessageStatus", "delivered"), ("AccountSid", accountSid)]
        let forged = try await webhook("/webhooks/twilio/status", fields, signature: twilioSignature(path: "/webhooks/twilio/status", fields: fields, token: "wrong-token-0123456789"))
        #expect(forged.status == 403)
        let unsigned = try await stack.callRaw(.POST, .notifications, "/webhooks/twilio/status", token: nil, body: "MessageSid=\(sid)&MessageStatus=delivered",
                                               contentType: "application/x-www-form-urlencoded")
        #expect(unsigned.status == 403)
        #expect(try await message(id)["state"] == .string("sent"))
        let callback = try await webhook("/webhooks/twilio/status", fields)
        #expect(callback.status == 204)
        let replay = try await webhook("/webhooks/twilio/status", fields)
        #expect(replay.status == 204)
        let delivered = try await message(id)
        #expect(delivered["state"] == .string("delivered"))
        #expect(delivered["version"] == .number(3), "queued, sent, delivered: the replay changed nothing")
        try await stack.waitUntilIdle()
        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(contactId)/timeline", token: brokerage.adminToken)
        let entry = try #require(timeline["items"]?.array?.first { $0["kind"] == .string("message") }, "\(timeline.text)")
        #expect(entry["data"]?["state"] == .string("delivered"))
    }

    @Test("NT-5: STOP in any case with punctuation opts out at once with exactly one confirmation; later texts are suppressed; START opts back in; HELP gets help; a forged inbound changes nothing")
    func optOutWords() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let contactId = try await contact(brokerage, phone: phone)
        let service = try await stack.serviceToken(.smartplans)
        let forgedFields = [("MessageSid", "SMforged"), ("From", phone), ("To", "+13125550100"), ("Body", "STOP")]
        let forged = try await webhook("/webhooks/twilio/messages", forgedFields, signature: "bm90IGEgc2lnbmF0dXJl")
        #expect(forged.status == 403)
        #expect(try await stack.call(.GET, .notifications, "/v1/consent/opt-outs?number=%2B\(phone.dropFirst())", token: brokerage.adminToken)["optedOut"] == .bool(false))

        let notAKeyword = try await inboundText(from: phone, body: "please don't stop texting me")
        #expect(notAKeyword.status == 200)
        let sid = "SM" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        #expect(try await inboundText(from: phone, body: "  Stop! ", sid: sid).status == 200)
        #expect(try await inboundText(from: phone, body: "  Stop! ", sid: sid).status == 200, "a replayed webhook")
        #expect(try await inboundText(from: phone, body: "opt out").status == 200)
        try await stack.waitUntilIdle()
        let consent = try await stack.call(.GET, .notifications, "/v1/consent/opt-outs?number=%2B\(phone.dropFirst())", token: brokerage.adminToken)
        #expect(consent["optedOut"] == .bool(true), "\(consent.text)")
        #expect(consent["history"]?.array?.count == 2)
        let confirmations = try await providerRequests(to: phone).filter { $0["fields"]?["Body"]?.string?.contains("unsubscribed") == true }
        #expect(confirmations.count == 1, "exactly one confirmation")
        #expect(confirmations.first?["fields"]?["Body"]?.string?.contains("START") == true)

        try await moveToDaytime()
        let automated = try await send(service, ["channel": "sms", "contactId": contactId, "body": "New listings for you", "purpose": "automated"])
        #expect(automated["state"] == .string("suppressed"))
        #expect(automated["reason"] == .string("opted_out"))
        let manual = try await send(brokerage.adminToken, ["channel": "sms", "contactId": contactId, "body": "Just checking in", "purpose": "manual"])
        #expect(manual["state"] == .string("suppressed"), "manual messages respect opt-outs too")

        #expect(try await inboundText(from: phone, body: "Start").status == 200)
        #expect(try await inboundText(from: phone, body: "help").status == 200)
        try await stack.waitUntilIdle()
        #expect(try await stack.call(.GET, .notifications, "/v1/consent/opt-outs?number=%2B\(phone.dropFirst())", token: brokerage.adminToken)["optedOut"] == .bool(false))
        let bodies = try await providerRequests(to: phone).compactMap { $0["fields"]?["Body"]?.string }
        #expect(bodies.contains { $0.contains("subscribed again") })
        #expect(bodies.contains { $0.contains("reply STOP to unsubscribe") })
        let again = try await send(service, ["channel": "sms", "contactId": contactId, "body": "New listings for you", "purpose": "automated"])
        #expect(again["state"] == .string("queued"))

        let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(contactId)/timeline?limit=200", token: brokerage.adminToken)
        let inbound = timeline["items"]?.array?.filter { $0["kind"] == .string("communication") && $0["data"]?["direction"] == .string("inbound") } ?? []
        #expect(inbound.count == 5, "every distinct inbound text is on the timeline once (NT-6): \(timeline.text)")
    }

    @Test("NT-5, NT-4: an automated text at 22:30 the night before daylight saving starts is held, not dropped, until 08:00 local — 13:00 UTC, not 14:00 — and then sent")
    func quietHoursAcrossDST() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let contactId = try await contact(brokerage, phone: phone)
        let now = try await clock()
        var chicago = Calendar(identifier: .gregorian)
        chicago.timeZone = try #require(TimeZone(identifier: "America/Chicago"))
        var year = chicago.component(.year, from: now)
        var saturday: Date
        repeat {
            // The second Sunday of March, and 22:30 on the Saturday before it.
            let march = try #require(chicago.date(from: DateComponents(year: year, month: 3, day: 1)))
            let sunday = try #require(chicago.nextDate(after: march.addingTimeInterval(-1), matching: DateComponents(weekday: 1), matchingPolicy: .nextTime))
            let secondSunday = try #require(chicago.date(byAdding: .day, value: 7, to: sunday))
            saturday = try #require(chicago.date(byAdding: DateComponents(day: -1, hour: 22, minute: 30), to: secondSunday))
            year += 1
        } while saturday <= now
        try await setClock(saturday)
        let service = try await stack.serviceToken(.smartplans)
        let held = try await send(service, ["channel": "sms", "contactId": contactId, "body": "Open house tomorrow!", "purpose": "automated"])
        #expect(held.status == 202)
        #expect(held["state"] == .string("held"), "\(held.text)")
        #expect(held["reason"] == .string("quiet_hours"))
        let until = try #require(held["holdUntil"]?.string.flatMap(RFC3339.date(from:)))
        #expect(until.timeIntervalSince(saturday) == 8.5 * 3600, "22:30 CST to 08:00 CDT is 8.5 hours, not 9.5")
        #expect(chicago.component(.hour, from: until) == 8)
        let id = try #require(held["id"]?.string)
        try await setClock(until.addingTimeInterval(-60))
        #expect(try await message(id)["state"] == .string("held"))
        #expect(try await providerRequests(to: phone).isEmpty)
        try await setClock(until)
        try await stack.waitUntilIdle()
        #expect(try await message(id)["state"] == .string("sent"))
        #expect(try await providerRequests(to: phone).count == 1)

        // A fixed window asked by the caller (NT-4): 10:00–19:00 in Chicago holds until 10:00.
        let windowed = try await send(service, ["channel": "sms", "contactId": contactId, "body": "Price drop", "purpose": "automated",
                                                "window": ["start": "10:00", "end": "19:00", "timeZone": "America/Chicago"]])
        #expect(windowed["state"] == .string("held"))
        #expect(windowed["reason"] == .string("sending_window"))
        let windowOpens = try #require(windowed["holdUntil"]?.string.flatMap(RFC3339.date(from:)))
        #expect(abs(windowOpens.timeIntervalSince(until) - 2 * 3600) < 1, "10:00 is two hours after 08:00")
    }

    @Test("ST-7: a held automated text to a contact who is then archived never leaves; later automated messages are suppressed as archived; the agent's own text still goes")
    func archiveStopsAutomation() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let contactId = try await contact(brokerage, phone: phone)
        var chicago = Calendar(identifier: .gregorian)
        chicago.timeZone = try #require(TimeZone(identifier: "America/Chicago"))
        let night = try #require(chicago.nextDate(after: try await clock(), matching: DateComponents(hour: 22, minute: 30), matchingPolicy: .nextTime))
        try await setClock(night)
        let service = try await stack.serviceToken(.smartplans)
        let held = try await send(service, ["channel": "sms", "contactId": contactId, "body": "New listings for you", "purpose": "automated"])
        #expect(held["state"] == .string("held") && held["reason"] == .string("quiet_hours"), "\(held.text)")
        let id = try #require(held["id"]?.string)
        let until = try #require(held["holdUntil"]?.string.flatMap(RFC3339.date(from:)))

        let archived = try await stack.call(.POST, .contacts, "/v1/contacts/\(contactId)/status", token: brokerage.adminToken,
                                            json: #"{"status":"archive","reason":"not interested"}"#)
        #expect(archived.status == 200, "\(archived.text)")
        try await stack.waitUntilIdle()
        let suppressed = try await message(id)
        #expect(suppressed["state"] == .string("suppressed") && suppressed["reason"] == .string("archived"), "\(suppressed.text)")
        try await setClock(until.addingTimeInterval(60))
        try await stack.waitUntilIdle()
        #expect(try await providerRequests(to: phone).isEmpty, "the held text never left")

        let later = try await send(service, ["channel": "sms", "contactId": contactId, "body": "Still looking?", "purpose": "automated"])
        #expect(later["state"] == .string("suppressed") && later["reason"] == .string("archived"), "\(later.text)")
        let manual = try await send(brokerage.adminToken, ["channel": "sms", "contactId": contactId, "body": "Thanks for letting me know", "purpose": "manual"])
        #expect(manual.status == 202 && manual["state"] == .string("queued"), "\(manual.text)")
        try await stack.waitUntilIdle()
        #expect(try await providerRequests(to: phone).count == 1, "only the agent's own text went")
    }

    @Test("CAN-SPAM: an automated e-mail carries the office's postal address and a signed one-click unsubscribe link; unsubscribing is recorded with when and how and suppresses that company's later automated e-mail only; manual e-mail still goes; without a postal address automated e-mail is not sent")
    func canSpam() async throws {
        let brokerage = try await stack.newCompany()
        let address = "100 Main St, Chicago, IL 60601"
        let patched = try await stack.call(.PATCH, .contacts, "/v1/entities/\(brokerage.rootEntityId)", token: brokerage.adminToken,
                                           json: Stack.json(["postalAddress": address]))
        #expect(patched.status == 200 && patched["postalAddress"]?.string == address, "\(patched.text)")
        let bad = try await stack.call(.PATCH, .contacts, "/v1/entities/\(brokerage.rootEntityId)", token: brokerage.adminToken, json: #"{"postalAddress":"Chicago"}"#)
        #expect(bad.status == 422 && bad.errorField == "postalAddress")
        let email = "jane-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let contactId = try await contact(brokerage, phone: Self.randomPhone(), email: email)
        let service = try await stack.serviceToken(.smartplans)
        let mail: [String: Any] = ["channel": "email", "contactId": contactId, "subject": "New listings", "body": "Three new homes.", "purpose": "automated"]
        let sent = try await send(service, mail)
        #expect(sent["state"] == .string("queued"), "\(sent.text)")
        #expect(sent["body"]?.string?.contains(address) == true, "\(sent.text)")
        let link = try #require(sent["unsubscribeURL"]?.string, "\(sent.text)")
        #expect(sent["body"]?.string?.contains(link) == true)
        try await stack.waitUntilIdle()
        let delivered = try #require(try await providerRequests(to: email).first)
        #expect(delivered["json"]?["Headers"]?["List-Unsubscribe"] == .string("<\(link)>"), "\(delivered)")
        #expect(delivered["json"]?["Headers"]?["List-Unsubscribe-Post"] == .string("List-Unsubscribe=One-Click"))

        let path = try #require(link.range(of: "/unsubscribe/").map { String(link[$0.lowerBound...]) })
        let page = try await stack.call(.GET, .notifications, path, token: nil)
        #expect(page.status == 200 && page.text.contains("<form method=\"post\">"), "opening the link only asks: \(page.text)")
        #expect(try await send(service, mail)["state"] == .string("queued"), "opening the page unsubscribed nobody")
        let done = try await stack.callRaw(.POST, .notifications, path, token: nil, body: "List-Unsubscribe=One-Click",
                                           contentType: "application/x-www-form-urlencoded")
        #expect(done.status == 200 && done.text.contains("Unsubscribed"), "\(done.text)")
        let forged = try await stack.call(.POST, .notifications, path.replacingOccurrences(of: ".", with: "x."), token: nil)
        #expect(forged.status == 404)

        let later = try await send(service, mail)
        #expect(later["state"] == .string("suppressed") && later["reason"] == .string("unsubscribed"), "\(later.text)")
        let manual = try await send(brokerage.adminToken, ["channel": "email", "contactId": contactId, "subject": "Hi", "body": "Call me?", "purpose": "manual"])
        #expect(manual["state"] == .string("queued"), "\(manual.text)")
        let ledger = try await stack.call(.GET, .notifications, "/v1/consent/opt-outs?number=\(email)", token: brokerage.adminToken)
        #expect(ledger["optedOut"] == .bool(true) && ledger["binds"] == .string("this_company")
                && ledger["history"]?.array?.first?["how"] == .string("one-click unsubscribe link"), "\(ledger.text)")

        // Another brokerage: the unsubscribe was from the first one's e-mail only; and without a postal address nothing automated goes.
        let other = try await stack.newCompany()
        let otherContact = try await contact(other, phone: Self.randomPhone(), email: email)
        var otherMail = mail
        otherMail["contactId"] = otherContact
        let unaddressed = try await send(service, otherMail)
        #expect(unaddressed["state"] == .string("suppressed") && unaddressed["reason"] == .string("no_postal_address"), "\(unaddressed.text)")
        _ = try await stack.call(.PATCH, .contacts, "/v1/entities/\(other.rootEntityId)", token: other.adminToken,
                                 json: Stack.json(["postalAddress": "9 Elm St, Austin, TX 78701"]))
        try await stack.waitUntilIdle()
        #expect(try await send(service, otherMail)["state"] == .string("queued"), "unsubscribed from one brokerage, not from every one")
    }

    @Test("NT-5: stricter state rules — a Florida contact gets at most 3 automated texts in 24 hours; the 4th is held until the first leaves the window")
    func stateCap() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let contactId = try await contact(brokerage, phone: phone, state: "FL")
        try await moveToDaytime()
        let service = try await stack.serviceToken(.automation)
        var states: [String] = []
        for index in 0..<4 {
            let answer = try await send(service, ["channel": "sms", "contactId": contactId, "body": "Update \(index)", "purpose": "automated"])
            states.append(answer["state"]?.string ?? answer.text)
            try await stack.waitUntilIdle()
        }
        #expect(states == ["queued", "queued", "queued", "held"])
        let log = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)&state=held", token: brokerage.adminToken)
        #expect(log["items"]?.array?.first?["reason"] == .string("daily_cap"))
    }

    @Test("NT-5: the Do-Not-Call list — bulk import reports bad rows, listed numbers are never texted or called, manual or not, and each suppression is logged")
    func doNotCall() async throws {
        let brokerage = try await stack.newCompany()
        let phone = Self.randomPhone()
        let contactId = try await contact(brokerage, phone: phone)
        let imported = try await stack.call(.POST, .notifications, "/v1/consent/dnc", token: brokerage.adminToken,
                                            json: Stack.json(["numbers": [phone, "not a number", "(312) 555-0000"], "source": "national registry"]))
        #expect(imported.status == 200, "\(imported.text)")
        #expect(imported["added"] == .number(2))
        #expect(imported["errors"]?.array?.first?["field"] == .string("numbers[1]"))
        let lookup = try await stack.call(.GET, .notifications, "/v1/consent/dnc?number=%2B\(phone.dropFirst())", token: brokerage.adminToken)
        #expect(lookup["listed"] == .bool(true))
        #expect(lookup["source"] == .string("national registry"))
        let call = try await send(brokerage.adminToken, ["channel": "voice", "contactId": contactId, "body": "Hello", "purpose": "manual"])
        #expect(call["state"] == .string("suppressed"))
        #expect(call["reason"] == .string("dnc"))
        let other = try await stack.newCompany()
        let elsewhere = try await stack.call(.GET, .notifications, "/v1/consent/dnc?number=%2B\(phone.dropFirst())", token: other.adminToken)
        #expect(elsewhere["listed"] == .bool(false), "each brokerage keeps its own list")
        let agentLookup = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(contactId)", token: other.adminToken)
        #expect(agentLookup.status == 404, "another company's contact is as unknown as a missing one: \(agentLookup.text)")
    }

    @Test("NT-7, NT-3: a 500 and Twilio's 20429 are retried with backoff, the contact's timeline saying why the text waits and then that it was sent; 21211 fails at once; 21610 fails and records the opt-out")
    func retries() async throws {
        let brokerage = try await stack.newCompany()
        try await moveToDaytime()
        let service = try await stack.serviceToken(.automation)
        let flaky = Self.randomPhone()
        let flakyContact = try await contact(brokerage, phone: flaky)
        try await script(to: flaky, [["status": 500], ["status": 429, "code": 20429]])
        let first = try await send(service, ["channel": "sms", "contactId": flakyContact, "body": "Retry me", "purpose": "automated"])
        let id = try #require(first["id"]?.string)
        // Its send failed and waits on the clock for the retry: not idle, but settled.
        try await stack.waitUntilSettled()
        #expect(try await message(id)["state"] == .string("queued"))
        func timelineEntry() async throws -> String? {
            let timeline = try await stack.call(.GET, .contacts, "/v1/contacts/\(flakyContact)/timeline", token: brokerage.adminToken)
            return timeline["items"]?.array?.first { $0["id"]?.string == id }?["summary"]?.string
        }
        // Not told of while queued, the text is on the timeline once its first try failed, saying why it waits.
        let waiting = try await timelineEntry()
        #expect(waiting == "Text queued: http 500", "\(String(describing: waiting))")
        for attempt in 0..<2 {
            try await moveClock(by: 600, settleOnly: attempt == 0)
        }
        let left = try await timelineEntry()
        #expect(left == "Text sent", "\(String(describing: left))")
        let sent = try await message(id)
        #expect(sent["state"] == .string("sent"), "\(sent.text)")
        #expect(sent["attempts"] == .number(3))
        let attempts = try await stack.call(.GET, .notifications, "/v1/messages/\(id)/attempts", token: service)
        #expect(attempts["items"]?.array?.compactMap { $0["outcome"]?.string } == ["transient", "transient", "sent"])

        let invalid = Self.randomPhone()
        try await script(to: invalid, [["status": 400, "code": 21211]])
        let invalidId = try #require(try await send(service, ["channel": "sms", "contactId": try await contact(brokerage, phone: invalid),
                                                              "body": "Hello", "purpose": "automated"])["id"]?.string)
        try await stack.waitUntilIdle()
        let failed = try await message(invalidId)
        #expect(failed["state"] == .string("failed"))
        #expect(failed["reason"] == .string("provider_21211"))
        #expect(failed["attempts"] == .number(1))

        let unsubscribed = Self.randomPhone()
        try await script(to: unsubscribed, [["status": 400, "code": 21610]])
        let unsubscribedId = try #require(try await send(service, ["channel": "sms", "contactId": try await contact(brokerage, phone: unsubscribed),
                                                                   "body": "Hello", "purpose": "automated"])["id"]?.string)
        try await stack.waitUntilIdle()
        #expect(try await message(unsubscribedId)["reason"] == .string("provider_21610"))
        let consent = try await stack.call(.GET, .notifications, "/v1/consent/opt-outs?number=%2B\(unsubscribed.dropFirst())", token: brokerage.adminToken)
        #expect(consent["optedOut"] == .bool(true))
    }

    @Test("NT-1, NT-6: a voice call answers with TwiML <Say> and <Gather>; the keypress is recorded once and published to the service that asked")
    func voiceGather() async throws {
        let brokerage = try await stack.newCompany()
        try await moveToDaytime()
        let phone = Self.randomPhone()
        let contactId = try await contact(brokerage, phone: phone)
        let routing = try await stack.serviceToken(.routing)
        let call = try await send(routing, ["channel": "voice", "contactId": contactId, "body": "New lead: press 1 to accept, 2 to decline.",
                                            "purpose": "automated", "gather": ["numDigits": 1], "reference": "offer-123"])
        let id = try #require(call["id"]?.string)
        try await stack.waitUntilIdle()
        let request = try #require(try await providerRequests(to: phone).first)
        #expect(request["path"]?.string == "/2010-04-01/Accounts/\(accountSid)/Calls.json")
        #expect(request["fields"]?["Url"] == .string("\(publicURL)/webhooks/twilio/voice/\(id.lowercased())"))
        let twiml = try await webhook("/webhooks/twilio/voice/\(id)", [("CallSid", "CA1"), ("AccountSid", accountSid)])
        #expect(twiml.status == 200)
        #expect(twiml.text.contains("<Gather input=\"dtmf\" numDigits=\"1\""))
        #expect(twiml.text.contains("<Say>New lead: press 1 to accept, 2 to decline.</Say>"))
        let before = try await stack.metric(.routing, "events_received_total", ["type": "message.keypress", "outcome": "handled"])
        let fields = [("CallSid", "CA1"), ("Digits", "1"), ("AccountSid", accountSid)]
        #expect(try await webhook("/webhooks/twilio/gather/\(id)", fields).status == 200)
        #expect(try await webhook("/webhooks/twilio/gather/\(id)", fields).status == 200)
        #expect(try await webhook("/webhooks/twilio/gather/\(id)", [("CallSid", "CA1"), ("Digits", "2")], signature: "Zm9yZ2Vk").status == 403)
        try await stack.waitUntilIdle()
        #expect(try await message(id)["digits"] == .string("1"))
        let after = try await stack.metric(.routing, "events_received_total", ["type": "message.keypress", "outcome": "handled"])
        #expect(after - before == 1)
    }

    @Test("X-1, NT-5: consent per role: an admin records and lifts their company's opt-out for their own contact's number and it binds that company only; agents may not; another company sees none of it; a STOP binds every company and only START lifts it")
    func consentPerRole() async throws {
        let first = try await stack.newCompany(), second = try await stack.newCompany()
        let phone = Self.randomPhone()
        let query = "/v1/consent/opt-outs?number=%2B\(phone.dropFirst())"
        let ours = try await contact(first, phone: phone)
        let agentEmail = "agent-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        _ = try await stack.call(.POST, .contacts, "/v1/users", token: first.adminToken, json: Stack.json([
            "role": "agent", "firstName": "Al", "lastName": "Agent", "email": agentEmail, "password": "agent password 1", "entityIds": [first.rootEntityId],
        ]))
        let agent = try await stack.login(agentEmail, "agent password 1")
        let record = ["number": phone, "how": "asked on the phone not to be texted"]

        #expect(try await stack.call(.POST, .notifications, "/v1/consent/opt-outs", token: agent, json: Stack.json(record)).status == 403)
        let stranger = try await stack.call(.POST, .notifications, "/v1/consent/opt-outs", token: second.adminToken, json: Stack.json(record))
        #expect(stranger.status == 422, "not a contact of theirs: \(stranger.text)")
        #expect(stranger.errorField == "number")
        let recorded = try await stack.call(.POST, .notifications, "/v1/consent/opt-outs", token: first.adminToken, json: Stack.json(record))
        #expect(recorded.status == 201, "\(recorded.text)")
        #expect(recorded["binds"] == .string("this_company"))
        #expect(try await stack.call(.GET, .notifications, query, token: agent)["optedOut"] == .bool(true), "the agent reads their company's record")

        // Another company: not opted out, and none of the first company's records.
        let elsewhere = try await stack.call(.GET, .notifications, query, token: second.adminToken)
        #expect(elsewhere["optedOut"] == .bool(false), "\(elsewhere.text)")
        #expect(elsewhere["history"]?.array?.isEmpty == true)
        let theirs = try await contact(second, phone: phone)
        #expect(try await send(first.adminToken, ["channel": "sms", "contactId": ours, "body": "Hi", "purpose": "manual"])["reason"] == .string("opted_out"))
        let other = try await send(second.adminToken, ["channel": "sms", "contactId": theirs, "body": "Hi", "purpose": "manual"])
        #expect(other.status == 202 && other["state"] != .string("suppressed"), "\(other.text)")

        #expect(try await stack.call(.DELETE, .notifications, query, token: agent).status == 403)
        let lifted = try await stack.call(.DELETE, .notifications, query, token: first.adminToken)
        #expect(lifted.status == 200, "\(lifted.text)")
        #expect(lifted["optedOut"] == .bool(false))
        #expect(lifted["history"]?.array?.count == 2)

        // The recipient's own STOP binds every company, and no admin lifts it.
        #expect(try await inboundText(from: phone, body: "STOP").status == 200)
        try await stack.waitUntilIdle()
        let stopped = try await stack.call(.GET, .notifications, query, token: second.adminToken)
        #expect(stopped["optedOut"] == .bool(true))
        #expect(stopped["binds"] == .string("every_company"))
        #expect(stopped["history"]?.array?.map { $0["recordedBy"] } == [.string("recipient")], "\(stopped.text)")
        let refused = try await stack.call(.DELETE, .notifications, query, token: first.adminToken)
        #expect(refused.status == 409)
        #expect(refused.errorCode == "recipient_opt_out")
        #expect(try await send(second.adminToken, ["channel": "sms", "contactId": theirs, "body": "Hi", "purpose": "manual"])["reason"] == .string("opted_out"))
        #expect(try await inboundText(from: phone, body: "START").status == 200)
        try await stack.waitUntilIdle()
    }

    @Test("X-1: an office admin reads and messages only the contacts their office owns and its people; another office's are 404, in the log as by id")
    func officeAdminScope() async throws {
        let brokerage = try await stack.newCompany()
        func office(_ name: String) async throws -> String {
            let answer = try await stack.call(.POST, .contacts, "/v1/entities", token: brokerage.adminToken,
                                              json: Stack.json(["parentId": brokerage.rootEntityId, "kind": "office", "name": name]))
            return try #require(answer["id"]?.string, "\(answer.text)")
        }
        func person(_ role: String, in entity: String) async throws -> (id: String, email: String) {
            let email = "\(role)-\(UUID().uuidString.prefix(8).lowercased())@example.com"
            let answer = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
                "role": role, "firstName": "Pat", "lastName": "Person", "email": email, "password": "person password 1", "entityIds": [entity],
            ]))
            return (try #require(answer["id"]?.string, "\(answer.text)"), email)
        }
        func ownedContact(by entity: String) async throws -> String {
            let answer = try await stack.call(.POST, .contacts, "/v1/contacts", token: brokerage.adminToken, json: Stack.json([
                "status": "active_lead", "firstName": "Oona", "lastName": "Owned", "phones": [Self.randomPhone()], "ownerEntityId": entity,
            ]))
            return try #require(answer["id"]?.string, "\(answer.text)")
        }
        let north = try await office("North"), south = try await office("South")
        let admin = try await person("office_admin", in: north)
        let southAgent = try await person("agent", in: south)
        let northAgent = try await person("agent", in: north)
        let ours = try await ownedContact(by: north), theirs = try await ownedContact(by: south)
        try await stack.waitUntilIdle()
        try await moveToDaytime()
        let token = try await stack.login(admin.email, "person password 1")
        let company = brokerage.adminToken
        let southMessage = try #require(try await send(company, ["channel": "sms", "contactId": theirs, "body": "South news", "purpose": "manual"])["id"]?.string)
        let southNotice = try #require(try await send(company, ["channel": "push", "userId": southAgent.id, "body": "South desk", "purpose": "manual"])["id"]?.string)
        try await stack.waitUntilIdle()

        // Another office's contact and people: as if they did not exist.
        #expect(try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(theirs)", token: token).status == 404)
        #expect(try await stack.call(.GET, .notifications, "/v1/messages/\(southMessage)", token: token).status == 404)
        #expect(try await stack.call(.GET, .notifications, "/v1/messages/\(southNotice)", token: token).status == 404)
        #expect(try await stack.call(.GET, .notifications, "/v1/messages?userId=\(southAgent.id)", token: token).status == 404)
        #expect(try await send(token, ["channel": "sms", "contactId": theirs, "body": "hi", "purpose": "manual"]).status == 404)
        #expect(try await send(token, ["channel": "push", "userId": southAgent.id, "body": "hi", "purpose": "manual"]).status == 404)
        // Their own office's: reachable, and the unfiltered log holds only those.
        let mine = try await send(token, ["channel": "sms", "contactId": ours, "body": "North news", "purpose": "manual"])
        #expect(mine.status == 202, "\(mine.text)")
        #expect(try await send(token, ["channel": "push", "userId": northAgent.id, "body": "North desk", "purpose": "manual"]).status == 202)
        try await stack.waitUntilIdle()
        let byContact = try await stack.call(.GET, .notifications, "/v1/messages?contactId=\(ours)", token: token)
        #expect(byContact.status == 200)
        #expect(byContact["items"]?.array?.count == 1)
        let log = try await stack.call(.GET, .notifications, "/v1/messages", token: token)
        let ids = Set(log["items"]?.array?.compactMap { $0["id"]?.string } ?? [])
        #expect(ids.count == 2, "\(log.text)")
        #expect(!ids.contains(southMessage) && !ids.contains(southNotice))
        // The company admin still sees the whole company.
        let everything = try await stack.call(.GET, .notifications, "/v1/messages", token: company)
        #expect(everything["items"]?.array?.count == 4, "\(everything.text)")
    }

    @Test("X-1, X-2: bad input names the field; agents reach only their contacts; people cannot send automated messages")
    func badInputAndAccess() async throws {
        let brokerage = try await stack.newCompany()
        let contactId = try await contact(brokerage, phone: Self.randomPhone())
        let cases: [([String: Any], String)] = [
            (["channel": "fax", "contactId": contactId, "body": "x", "purpose": "manual"], "channel"),
            (["channel": "sms", "body": "x", "purpose": "manual"], "contactId"),
            (["channel": "sms", "contactId": contactId, "body": "", "purpose": "manual"], "body"),
            (["channel": "email", "contactId": contactId, "body": "x", "purpose": "manual"], "subject"),
            (["channel": "sms", "contactId": contactId, "body": "x", "purpose": "automated"], "purpose"),
            (["channel": "sms", "contactId": contactId, "body": "x", "purpose": "manual", "gather": ["numDigits": 1]], "gather"),
            (["channel": "sms", "contactId": contactId, "body": "x", "purpose": "manual", "window": ["start": "19:00", "end": "10:00", "timeZone": "America/Chicago"]], "window.end"),
            (["channel": "sms", "contactId": contactId, "body": "x", "purpose": "manual", "window": ["start": "10:00", "end": "19:00", "timeZone": "Mars/Olympus"]], "window.timeZone"),
        ]
        for (body, field) in cases {
            let answer = try await send(brokerage.adminToken, body)
            #expect(answer.status == 422 || answer.status == 400, "\(field): \(answer.text)")
            #expect(answer.errorField == field, "\(answer.text)")
        }
        // An unknown value names the values the field takes, not the Swift type behind it.
        let fax = try await send(brokerage.adminToken, cases[0].0)
        #expect(fax.body["error"]?["message"] == .string("channel 'fax' is not one of sms, email, voice, push"), "\(fax.text)")
        let email = "agent-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let created = try await stack.call(.POST, .contacts, "/v1/users", token: brokerage.adminToken, json: Stack.json([
            "role": "agent", "firstName": "Al", "lastName": "Agent", "email": email, "password": "agent password 1", "entityIds": [brokerage.rootEntityId],
        ]))
        let agentId = try #require(created["id"]?.string, "\(created.text)")
        let agent = try await stack.login(email, "agent password 1")
        let notTheirs = try await send(agent, ["channel": "sms", "contactId": contactId, "body": "hi", "purpose": "manual"])
        #expect(notTheirs.status == 404)
        // Assigned a moment ago, before notifications' replica has heard: contacts has the last word.
        let assigned = try await stack.call(.POST, .contacts, "/v1/contacts/\(contactId)/assignment", token: brokerage.adminToken,
                                            json: Stack.json(["agentId": agentId]))
        #expect(assigned.status == 200, "\(assigned.text)")
        let nowTheirs = try await send(agent, ["channel": "sms", "contactId": contactId, "body": "Hi, this is Al.", "purpose": "manual"])
        #expect(nowTheirs.status == 202, "\(nowTheirs.text)")
        let other = try await stack.newCompany()
        #expect(try await send(other.adminToken, ["channel": "sms", "contactId": contactId, "body": "hi", "purpose": "manual"]).status == 404)
        #expect(try await stack.call(.GET, .notifications, "/v1/messages/\(UUID().uuidString)", token: brokerage.adminToken).status == 404)
        #expect(try await stack.call(.POST, .notifications, "/v1/messages", json: "{}", headers: [("Idempotency-Key", "k")]).status == 401)
    }
}
