import AsyncHTTPClient
import Foundation
import Logging
import Models
import NIOCore
import NIOHTTP1
import PostgresNIO
import ServiceKit

enum ProviderResult: Equatable, Sendable {
    case accepted(providerId: String)
    case failed(ProviderFailure)
}

/// One way out for a channel (NT-2). `send` carries the message id as the idempotency key
/// where the provider takes one; `find` asks the provider whether an earlier attempt that
/// crashed before it was recorded did go out (reconciliation), nil when it did not or the
/// provider cannot say.
protocol MessageProvider: Sendable {
    var name: String { get }
    func send(_ message: Message, from: String?) async -> ProviderResult
    func find(_ message: Message, attemptStarted: Date) async -> String?
    /// Sends several messages of one channel; the results in the messages' order.
    func send(_ messages: [Message], from: String?) async -> [ProviderResult]
}

extension MessageProvider {
    /// The remote providers take one message per request: they are sent side by side.
    func send(_ messages: [Message], from: String?) async -> [ProviderResult] {
        await withTaskGroup(of: (Int, ProviderResult).self) { group in
            for (index, message) in messages.enumerated() {
                group.addTask { (index, await send(message, from: from)) }
            }
            var results = [ProviderResult](repeating: .failed(.transient("not_sent")), count: messages.count)
            for await (index, result) in group { results[index] = result }
            return results
        }
    }
}

/// Which provider serves which channel, and the sender's number and address.
struct Providers: Sendable {
    var sms: any MessageProvider
    var voice: any MessageProvider
    var email: any MessageProvider
    var push: any MessageProvider
    var fromNumber: String?
    var fromEmail: String?
    /// False with SMS_PROVIDER=none: texts and calls have no way out.
    var phoneConfigured = true

    /// SP-7 and every sender: a text or call without a phone provider is refused when asked for
    /// (`no_sms_provider`), so the caller can skip it and say why, instead of a message queued to fail.
    func requireProvider(for channel: MessageChannel) throws {
        if (channel == .sms || channel == .voice) && !phoneConfigured {
            throw APIError.validation("channel", "no SMS provider is configured: texts and calls cannot be sent", code: "no_sms_provider")
        }
    }

    func provider(for channel: MessageChannel) -> any MessageProvider {
        switch channel {
        case .sms: sms
        case .voice: voice
        case .email: email
        case .push: push
        }
    }

    func sender(for channel: MessageChannel) -> String? {
        switch channel {
        case .sms, .voice: fromNumber
        case .email: fromEmail
        case .push: nil
        }
    }
}

/// Records every message and sends nothing: the default for development and tests.
struct LocalProvider: MessageProvider {
    let client: PostgresClient
    let logger: Logger
    let clock: any ServiceClock
    var name: String { "local" }

    func send(_ message: Message, from: String?) async -> ProviderResult {
        await send([message], from: from)[0]
    }

    func send(_ messages: [Message], from: String?) async -> [ProviderResult] {
        let ids = messages.map { "local-\($0.id.lowercasedString)" }
        do {
            // The message id is unique here, so a repeated attempt records nothing twice.
            try await client.prepared(RecordDeliveries.self, .values(
                ids, messages.map(\.id), messages.map(\.channel.rawValue), messages.map(\.to), messages.map { $0.subject != nil },
                messages.map { $0.subject ?? "" }, messages.map(\.body), clock.now), logger: logger)
            return ids.map { .accepted(providerId: $0) }
        } catch {
            return messages.map { _ in .failed(.transient("local_store_unavailable")) }
        }
    }

    /// The message id is unique here, so a repeated attempt records nothing twice.
    enum RecordDeliveries: PreparedSQL {
        static let sql = """
            INSERT INTO local_deliveries (id, message_id, channel, to_address, subject, body, at)
            SELECT d.id, d.message_id, d.channel, d.to_address, CASE WHEN d.has_subject THEN d.subject END, d.body, $8
            FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[])
                AS d(id, message_id, channel, to_address, has_subject, subject, body)
            ON CONFLICT (message_id) DO NOTHING
            """
    }

    func find(_ message: Message, attemptStarted: Date) async -> String? {
        try? await client.query("SELECT id FROM local_deliveries WHERE message_id = \(message.id)", logger: logger)
            .first(String.self)
    }
}

/// The HTTP side shared by the remote providers.
struct ProviderHTTP: Sendable {
    let http: HTTPClient
    let timeout: TimeAmount

    struct Reply: Sendable {
        var status: Int
        var body: [UInt8]
    }

    func call(_ method: HTTPMethod, _ url: String, headers: [(String, String)], body: [UInt8]?) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await http.execute(request, timeout: timeout)
        let buffer = try await response.body.collect(upTo: 1 << 20)
        return Reply(status: Int(response.status.code), body: Array(buffer.readableBytesView))
    }
}

/// Twilio's REST API (or any server that speaks it): Messages and Calls, form-encoded, basic
/// auth; status callbacks and the call's TwiML come back to this service's webhooks.
struct TwilioProvider: MessageProvider {
    let baseURL: String
    let accountSid: String
    let authToken: String
    let publicURL: String
    let http: ProviderHTTP
    let logger: Logger
    var name: String { "twilio" }

    private var authorization: String {
        "Basic " + Data("\(accountSid):\(authToken)".utf8).base64EncodedString()
    }

    private var accountURL: String { "\(baseURL)/2010-04-01/Accounts/\(accountSid)" }

    func send(_ message: Message, from: String?) async -> ProviderResult {
        var fields = [("To", message.to), ("From", from ?? ""), ("StatusCallback", "\(publicURL)/webhooks/twilio/status")]
        let resource: String
        if message.channel == .voice {
            resource = "Calls.json"
            fields.append(("Url", "\(publicURL)/webhooks/twilio/voice/\(message.id.lowercasedString)"))
        } else {
            resource = "Messages.json"
            fields.append(("Body", message.body))
        }
        do {
            let reply = try await http.call(.POST, "\(accountURL)/\(resource)", headers: [
                ("Authorization", authorization), ("Content-Type", "application/x-www-form-urlencoded"),
                ("Idempotency-Key", message.id.lowercasedString), ("Accept", "application/json"),
            ], body: Array(FormBody.encode(fields).utf8))
            struct Created: Decodable { var sid: String }
            struct Failure: Decodable { var code: Int? }
            if (200..<300).contains(reply.status), let created = try? JSONDecoder().decode(Created.self, from: Data(reply.body)) {
                return .accepted(providerId: created.sid)
            }
            let code = (try? JSONDecoder().decode(Failure.self, from: Data(reply.body)))?.code
            return .failed(.classify(httpStatus: reply.status, twilioCode: code))
        } catch {
            logger.warning("twilio unreachable", metadata: ["error": "\(error)"])
            return .failed(.transient("provider_unreachable"))
        }
    }

    /// Twilio has no lookup by our key, so an unrecorded attempt is matched by recipient, time
    /// and (for texts) the exact body.
    func find(_ message: Message, attemptStarted: Date) async -> String? {
        let day = ISO8601DateFormatter.string(from: attemptStarted, timeZone: .gmt, formatOptions: [.withFullDate])
        let isCall = message.channel == .voice
        var query = URLComponents()
        query.queryItems = [URLQueryItem(name: "To", value: message.to), URLQueryItem(name: isCall ? "StartTime>" : "DateSent>", value: day)]
        guard let reply = try? await http.call(.GET, "\(accountURL)/\(isCall ? "Calls" : "Messages").json?\(query.percentEncodedQuery ?? "")",
                                               headers: [("Authorization", authorization), ("Accept", "application/json")], body: nil),
              reply.status == 200 else { return nil }
        struct Item: Decodable { var sid: String; var body: String? }
        struct Page: Decodable { var messages: [Item]?; var calls: [Item]? }
        guard let page = try? JSONDecoder().decode(Page.self, from: Data(reply.body)) else { return nil }
        if isCall { return page.calls?.first?.sid }
        return page.messages?.first { $0.body == message.body }?.sid
    }
}

/// E-mail through an HTTP send API (Mailpit's `POST /api/v1/send`).
struct HTTPEmailProvider: MessageProvider {
    let baseURL: String
    let http: ProviderHTTP
    let logger: Logger
    var name: String { "email-http" }

    func send(_ message: Message, from: String?) async -> ProviderResult {
        struct Address: Encodable { var Email: String }
        struct Body: Encodable {
            var From: Address
            var To: [Address]
            var Subject: String
            var Text: String
            var HTML: String?
            var Headers: [String: String]
        }
        let body = Body(From: Address(Email: from ?? ""), To: [Address(Email: message.to)], Subject: message.subject ?? "", Text: message.body, HTML: message.html,
                        Headers: ["X-Message-Key": message.id.lowercasedString].merging(
                            message.unsubscribeURL.map { ["List-Unsubscribe": "<\($0)>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"] } ?? [:],
                            uniquingKeysWith: { first, _ in first }))
        do {
            let reply = try await http.call(.POST, "\(baseURL)/api/v1/send", headers: [
                ("Content-Type", "application/json"), ("Idempotency-Key", message.id.lowercasedString),
            ], body: Array(try JSONEncoder().encode(body)))
            struct Sent: Decodable { var ID: String }
            if (200..<300).contains(reply.status), let sent = try? JSONDecoder().decode(Sent.self, from: Data(reply.body)) {
                return .accepted(providerId: sent.ID)
            }
            return .failed(.classify(httpStatus: reply.status, twilioCode: nil))
        } catch {
            return .failed(.transient("provider_unreachable"))
        }
    }

    /// Mailpit can be searched by header; the key we set finds an unrecorded send.
    func find(_ message: Message, attemptStarted: Date) async -> String? {
        var query = URLComponents()
        query.queryItems = [URLQueryItem(name: "query", value: "header:X-Message-Key:\(message.id.lowercasedString)")]
        guard let reply = try? await http.call(.GET, "\(baseURL)/api/v1/search?\(query.percentEncodedQuery ?? "")", headers: [], body: nil),
              reply.status == 200 else { return nil }
        struct Item: Decodable { var ID: String }
        struct Page: Decodable { var messages: [Item] }
        return (try? JSONDecoder().decode(Page.self, from: Data(reply.body)))?.messages.first?.ID
    }
}

/// Push notifications through an HTTP gateway: `POST {base}/push` with the user, title and body.
struct HTTPPushProvider: MessageProvider {
    let baseURL: String
    let token: String?
    let http: ProviderHTTP
    var name: String { "push-http" }

    func send(_ message: Message, from: String?) async -> ProviderResult {
        struct Body: Encodable { var userId: String; var title: String?; var body: String; var idempotencyKey: String }
        let body = Body(userId: message.to, title: message.subject, body: message.body, idempotencyKey: message.id.lowercasedString)
        var headers = [("Content-Type", "application/json"), ("Idempotency-Key", message.id.lowercasedString)]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        do {
            let reply = try await http.call(.POST, "\(baseURL)/push", headers: headers, body: Array(try JSONEncoder().encode(body)))
            struct Sent: Decodable { var id: String }
            if (200..<300).contains(reply.status), let sent = try? JSONDecoder().decode(Sent.self, from: Data(reply.body)) {
                return .accepted(providerId: sent.id)
            }
            return .failed(.classify(httpStatus: reply.status, twilioCode: nil))
        } catch {
            return .failed(.transient("provider_unreachable"))
        }
    }

    func find(_ message: Message, attemptStarted: Date) async -> String? { nil }
}
