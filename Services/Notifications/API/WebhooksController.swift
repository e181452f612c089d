import Foundation
import Hummingbird
import Logging
import Models
import NIOCore
import PostgresNIO
import ServiceKit

/// What the inbound webhooks need to know about the deployment.
struct WebhookSettings: Sendable {
    /// The base URL the providers call (Twilio signs the full URL it used).
    var publicURL: String
    var twilioAuthToken: String?
    var emailSecret: String?
    var optOutReply: String
    var optInReply: String
    var helpReply: String
}

/// `/webhooks/…`: inbound texts, calls and e-mails, delivery receipts and voice keypresses from
/// the providers (NT-6). Every one is signed; forged ones get 403 and change nothing, replayed
/// ones are recognised by the provider's id and change nothing twice.
struct WebhooksController {
    let store: MessageStore
    let sender: Sender
    let settings: WebhookSettings
    let peers: PeerClient
    let clock: any ServiceClock

    /// Replies sent for no contact (an unknown number texted STOP) belong to no company.
    static let platformCompany = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    func register(on group: RouterGroup<AppContext>) {
        group.post("/webhooks/twilio/messages") { request, context -> Response in
            let form = try await verifiedForm(request, context: context)
            guard let sid = form["MessageSid"] ?? form["SmsSid"], let from = form["From"] else {
                throw APIError.validation("MessageSid", "MessageSid and From are required")
            }
            try await receive(channel: .sms, providerId: sid, from: PhoneNumber(from)?.e164 ?? from, to: form["To"], subject: nil,
                              body: form["Body"] ?? "")
            return Self.twiml("<Response/>")
        }

        group.post("/webhooks/twilio/calls") { request, context -> Response in
            let form = try await verifiedForm(request, context: context)
            guard let sid = form["CallSid"], let from = form["From"] else { throw APIError.validation("CallSid", "CallSid and From are required") }
            try await receive(channel: .voice, providerId: sid, from: PhoneNumber(from)?.e164 ?? from, to: form["To"], subject: nil, body: "Inbound call")
            return Self.twiml("<Response><Say>Thank you for calling. Your agent will call you back shortly.</Say></Response>")
        }

        group.post("/webhooks/twilio/status") { request, context -> Response in
            let form = try await verifiedForm(request, context: context)
            guard let sid = form["MessageSid"] ?? form["CallSid"], let status = form["MessageStatus"] ?? form["CallStatus"] else {
                throw APIError.validation("MessageSid", "MessageSid (or CallSid) and MessageStatus (or CallStatus) are required")
            }
            try await statusCallback(sid: sid, status: status.lowercased(), errorCode: form["ErrorCode"].flatMap { Int($0) })
            return Response(status: .noContent)
        }

        group.post("/webhooks/twilio/voice/{id}") { request, context -> Response in
            _ = try await verifiedForm(request, context: context)
            guard let message = try await store.message(try context.pathID("id")), message.channel == .voice else {
                throw APIError.notFound("call")
            }
            return Self.twiml(voiceScript(message))
        }

        group.post("/webhooks/twilio/gather/{id}") { request, context -> Response in
            let form = try await verifiedForm(request, context: context)
            let id = try context.pathID("id")
            guard let digits = form["Digits"], !digits.isEmpty, digits.count <= 20, digits.allSatisfy({ $0.isNumber || $0 == "*" || $0 == "#" }) else {
                throw APIError.validation("Digits", "Digits must be the keys pressed")
            }
            let step = request.uri.queryParameters["step"].flatMap { Int(String($0)) } ?? 1
            guard (1...10).contains(step) else { throw APIError.validation("step", "step must be from 1 to 10") }
            let message = try await keypress(id, digits: digits, step: step)
            guard let service = message.gather?.answeredBy else { return Self.twiml("<Response><Say>Thank you. Goodbye.</Say></Response>") }
            return Self.twiml(await nextStep(of: message, asking: service, digits: digits, step: step))
        }

        group.post("/webhooks/twilio/dial/{id}/machine") { request, context -> Response in
            let form = try await verifiedForm(request, context: context)
            guard let answeredBy = form["AnsweredBy"], Self.answeredBy.contains(answeredBy) else {
                throw APIError.validation("AnsweredBy", "AnsweredBy must be one of \(Self.answeredBy.sorted().joined(separator: ", "))")
            }
            try await dialAnswered(try context.pathID("id"), by: answeredBy)
            return Response(status: .noContent)
        }

        group.post("/webhooks/twilio/dial/{id}") { request, context -> Response in
            let form = try await verifiedForm(request, context: context)
            guard let status = form["DialCallStatus"], Self.dialStatuses.contains(status) else {
                throw APIError.validation("DialCallStatus", "DialCallStatus must be one of \(Self.dialStatuses.sorted().joined(separator: ", "))")
            }
            let seconds = try form["DialCallDuration"].map { text -> Int in
                guard let value = Int(text), (0...86_400).contains(value) else {
                    throw APIError.validation("DialCallDuration", "DialCallDuration is whole seconds")
                }
                return value
            }
            let answered = try await dialEnded(try context.pathID("id"), status: status, seconds: seconds)
            return Self.twiml("<Response><Say>\(answered ? "The call with the lead has ended." : "The lead did not answer.") Goodbye.</Say><Hangup/></Response>")
        }

        group.post("/webhooks/email/inbound") { request, context -> Response in
            struct InboundEmail: Decodable {
                var messageId: String
                var from: String
                var to: String?
                var subject: String?
                var text: String
            }
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            guard let secret = settings.emailSecret, let signed = WebhookSignature.headers(of: request),
                  WebhookSignature.verify(signed, secret: secret, body: Array(body.readableBytesView))
            else { throw APIError(.forbidden, code: "bad_signature", message: "the webhook's signature does not verify") }
            let email: InboundEmail
            do {
                email = try JSONCoding.decoder.decode(InboundEmail.self, from: Data(body.readableBytesView))
            } catch let error as DecodingError {
                throw APIError.fromDecoding(error)
            }
            guard let from = EmailAddress(email.from) else { throw APIError.validation("from", "not an e-mail address") }
            guard !email.messageId.isEmpty, email.messageId.count <= 500 else { throw APIError.validation("messageId", "messageId must be 1 to 500 characters") }
            try await receive(channel: .email, providerId: email.messageId, from: from.value, to: email.to, subject: email.subject, body: email.text)
            return Response(status: .noContent)
        }
    }

    /// The form parameters, once `X-Twilio-Signature` proves Twilio sent them.
    func verifiedForm(_ request: Request, context: AppContext) async throws -> [String: String] {
        let forged = APIError(.forbidden, code: "bad_signature", message: "the webhook's X-Twilio-Signature does not verify")
        guard let token = settings.twilioAuthToken, let signature = request.headers[.init("X-Twilio-Signature")!] else { throw forged }
        let body = Array(try await request.body.collect(upTo: context.maxUploadSize).readableBytesView)
        let url = settings.publicURL + request.uri.description
        if request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true {
            guard TwilioSignature.verifyJSON(signature: signature, url: url, body: body, authToken: token) else { throw forged }
            let object = (try? JSONCoding.decoder.decode([String: String].self, from: Data(body))) ?? [:]
            return object
        }
        let parameters = FormBody.parse(body)
        guard TwilioSignature.verify(signature: signature, url: url, parameters: parameters, authToken: token) else { throw forged }
        return Dictionary(parameters, uniquingKeysWith: { first, _ in first })
    }

    /// An inbound text, call or e-mail: logged once per matching contact and published; an
    /// opt-out, opt-in or help keyword is acted on at once (NT-5, NT-6).
    func receive(channel: MessageChannel, providerId: String, from: String, to: String?, subject: String?, body: String) async throws {
        let now = clock.now
        let matches = try await store.contactsReachedAt(from)
        try await store.client.transaction(logger: store.logger) { connection in
            guard try await store.firstReceipt(provider: channel == .email ? "email" : "twilio", providerId: providerId, kind: "inbound",
                                               at: now, on: connection) else { return }
            for match in matches {
                let message = Message(id: UUID.random(), companyId: match.companyId, channel: channel, direction: .inbound, purpose: .manual,
                                      state: .delivered, reason: nil, contactId: match.contactId, userId: nil, to: to ?? "", from: from,
                                      subject: subject, body: body, window: nil, gather: nil, digits: nil, holdUntil: nil, attempts: 0,
                                      provider: channel == .email ? "email" : "twilio", providerId: providerId, reference: nil,
                                      requestedBy: "recipient", createdAt: now, updatedAt: now, sentAt: nil, deliveredAt: now)
                try await store.insert(message, on: connection)
            }
            guard channel == .sms, let keyword = InboundKeyword(body: body) else { return }
            let company = matches.first?.companyId ?? Self.platformCompany
            let word = body.trimmedWhitespace().prefix(20)
            switch keyword {
            case .optOut:
                // Confirmed once: a second STOP from an opted-out number changes nothing.
                if try await store.recordConsent(number: from, optOut: true, how: "replied \"\(word)\" by text", by: "recipient", at: now, on: connection) {
                    try await reply(settings.optOutReply, to: from, companyId: company, on: connection)
                }
            case .optIn:
                if try await store.recordConsent(number: from, optOut: false, how: "replied \"\(word)\" by text", by: "recipient", at: now, on: connection) {
                    try await reply(settings.optInReply, to: from, companyId: company, on: connection)
                }
            case .help:
                try await reply(settings.helpReply, to: from, companyId: company, on: connection)
            }
        }
    }

    /// A compliance reply: no marketing, sent at once even to an opted-out number.
    private func reply(_ text: String, to number: String, companyId: UUID, on connection: PostgresConnection) async throws {
        let now = clock.now
        var message = Message(id: UUID.random(), companyId: companyId, channel: .sms, direction: .outbound, purpose: .compliance, state: .queued,
                              reason: nil, contactId: nil, userId: nil, to: number, from: sender.providers.fromNumber, subject: nil, body: text,
                              window: nil, gather: nil, digits: nil, holdUntil: nil, attempts: 0, provider: nil, providerId: nil, reference: nil,
                              requestedBy: "notifications", createdAt: now, updatedAt: now, sentAt: nil, deliveredAt: nil)
        let runAt = sender.settle(.send, &message)
        try await store.insert(message, job: try sender.job(for: message, runAt: runAt), on: connection)
    }

    /// Twilio's delivery receipts move a message forward only: sent → delivered or failed.
    func statusCallback(sid: String, status: String, errorCode: Int?) async throws {
        let now = clock.now
        try await store.client.transaction(logger: store.logger) { connection in
            guard var message = try await store.lockMessage(provider: "twilio", providerId: sid, on: connection) else {
                store.logger.notice("status callback for a message this service did not send", metadata: ["sid": "\(sid)"])
                return
            }
            let next: (MessageState, String?)?
            switch status {
            case "delivered", "read", "completed", "answered": next = (.delivered, nil)
            case "undelivered", "failed": next = (.failed, ProviderFailure.classifyCallback(errorCode: errorCode))
            case "busy", "no-answer", "canceled": next = (.failed, "call_\(status)")
            case "sent": next = message.state == .queued ? (.sent, nil) : nil
            default: next = nil
            }
            guard let (state, reason) = next, message.state != state, message.state != .delivered, message.state != .failed else { return }
            if errorCode == 21610 {
                try await store.recordConsent(number: message.to, optOut: true, how: "provider reported the number unsubscribed (21610)",
                                              by: "twilio", at: now, on: connection)
            }
            message.state = state
            message.reason = reason
            message.updatedAt = now
            if state == .delivered { message.deliveredAt = now }
            try await store.saveAndPublish(&message, on: connection)
        }
    }

    /// The call's first digits are its answer; the service that asked hears them once.
    @discardableResult
    func keypress(_ id: UUID, digits: String, step: Int = 1) async throws -> Message {
        let now = clock.now
        return try await store.client.transaction(logger: store.logger) { connection in
            guard var message = try await store.lockMessage(id, on: connection), message.channel == .voice else { throw APIError.notFound("call") }
            // Later questions of a menu are answered by the service that asked; the log keeps the first.
            guard message.digits == nil, step == 1 else { return message }
            message.digits = digits
            message.updatedAt = now
            try await store.saveAndPublish(&message, on: connection)
            let pressed = MessageKeypress(messageId: message.id, companyId: message.companyId, contactId: message.contactId, userId: message.userId,
                                          digits: digits, reference: message.reference, requestedBy: message.requestedBy, at: now)
            try await store.outbox.publish(try store.outbox.envelope(EventType.messageKeypress, version: 1, companyId: message.companyId,
                                                                     subjectId: message.id, data: pressed), on: connection, logger: store.logger)
            return message
        }
    }

    static let dialStatuses: Set<String> = ["completed", "answered", "busy", "no-answer", "failed", "canceled"]
    static let answeredBy: Set<String> = ["human", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax", "unknown"]

    /// The machine detection's verdict on a dial, kept (once) for its end to report.
    func dialAnswered(_ id: UUID, by answeredBy: String) async throws {
        try await store.client.transaction(logger: store.logger) { connection in
            guard try await store.lockMessage(id, on: connection)?.channel == .voice else { throw APIError.notFound("call") }
            try await connection.query("""
                INSERT INTO dials (message_id, answered_by, at) VALUES (\(id), \(answeredBy), \(clock.now))
                ON CONFLICT (message_id) DO UPDATE SET answered_by = EXCLUDED.answered_by WHERE dials.answered_by IS NULL
                """, logger: store.logger)
        }
    }

    /// A dial's end, recorded and published once (`message.dialed`) for the service that asked
    /// for it. Whether the party answered.
    func dialEnded(_ id: UUID, status: String, seconds: Int?) async throws -> Bool {
        let now = clock.now
        return try await store.client.transaction(logger: store.logger) { connection in
            guard let message = try await store.lockMessage(id, on: connection), message.channel == .voice else { throw APIError.notFound("call") }
            let recorded = try await connection.query("""
                INSERT INTO dials (message_id, status, seconds, at) VALUES (\(id), \(status), \(seconds), \(now))
                ON CONFLICT (message_id) DO UPDATE SET status = EXCLUDED.status, seconds = EXCLUDED.seconds, at = EXCLUDED.at WHERE dials.status IS NULL
                RETURNING answered_by
                """, logger: store.logger).collect()
            let dialed = MessageDialed(messageId: message.id, companyId: message.companyId, userId: message.userId, reference: message.reference,
                                       requestedBy: message.requestedBy, status: status, answeredBy: try recorded.first?.decode(String?.self),
                                       seconds: seconds, at: now)
            if !recorded.isEmpty {
                try await store.outbox.publish(try store.outbox.envelope(EventType.messageDialed, version: 1, companyId: message.companyId,
                                                                         subjectId: message.id, data: dialed), on: connection, logger: store.logger)
            }
            return dialed.answered
        }
    }

    /// Asks the service behind a menu what the keys did and what the call says next (RT-16).
    func nextStep(of message: Message, asking service: ServiceName, digits: String, step: Int) async -> String {
        let pressed = VoiceKeypress(messageId: message.id, companyId: message.companyId, userId: message.userId, contactId: message.contactId,
                                     reference: message.reference, digits: digits, step: step)
        let reply: VoiceReply
        do {
            let answer = try await peers.post(to: service, path: "/v1/voice/keypresses", body: pressed)
            guard answer.status == 200 else { throw APIError(.badGateway, code: "menu_unavailable", message: "\(service.rawValue) answered \(answer.status)") }
            reply = try JSONCoding.decoder.decode(VoiceReply.self, from: Data(answer.body.utf8))
        } catch {
            store.logger.warning("voice menu service did not answer", metadata: ["service": "\(service.rawValue)", "error": "\(error)"])
            return "<Response><Say>Sorry, your choice could not be recorded. Please use the link we sent you. Goodbye.</Say></Response>"
        }
        let say = "<Say>\(HTMLText.escape(reply.say))</Say>"
        if let contactId = reply.dialContactId {
            guard let phone = try? await store.client.withConnection({ try await store.contactRecipient(contactId, on: $0) })?.phone else {
                return "<Response>\(say)<Say>The lead has no phone number on file. Goodbye.</Say></Response>"
            }
            let dial = HTMLText.escape("\(settings.publicURL)/webhooks/twilio/dial/\(message.id.lowercasedString)")
            return "<Response>\(say)<Dial action=\"\(dial)\" method=\"POST\" timeout=\"30\"><Number machineDetection=\"Enable\" "
                + "amdStatusCallback=\"\(dial)/machine\" amdStatusCallbackMethod=\"POST\">\(HTMLText.escape(phone))</Number></Dial></Response>"
        }
        if let gather = reply.gather { return question(say, gather: gather, message: message, step: step + 1) }
        return "<Response>\(say)<Hangup/></Response>"
    }

    func voiceScript(_ message: Message) -> String {
        let say = "<Say>\(HTMLText.escape(message.body))</Say>"
        guard let gather = message.gather else { return "<Response>\(say)</Response>" }
        return question(say, gather: gather, message: message, step: 1)
    }

    /// A `<Gather>` around the words, posting the keys to this call's gather webhook for `step`.
    func question(_ say: String, gather: GatherSpec, message: Message, step: Int) -> String {
        let query = step == 1 ? "" : "?step=\(step)"
        let action = HTMLText.escape("\(settings.publicURL)/webhooks/twilio/gather/\(message.id.lowercasedString)\(query)")
        return "<Response><Gather input=\"dtmf\" numDigits=\"\(min(max(gather.numDigits, 1), 10))\" timeout=\"\(min(max(gather.timeoutSeconds ?? 5, 1), 60))\" "
            + "action=\"\(action)\" method=\"POST\">\(say)</Gather><Say>We did not receive a choice. Goodbye.</Say></Response>"
    }

    static func twiml(_ xml: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/xml; charset=utf-8"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>" + xml)))
    }
}
