import Crypto
import Foundation
import Hummingbird
import Models
import NIOCore
import PostgresNIO
import ServiceKit

extension Message: ResponseEncodable {}

/// `/v1/messages`: every text, e-mail, call and push goes out here (NT-1), and the delivery
/// log answers what became of it (NT-3).
struct MessagesController {
    let store: MessageStore
    let sender: Sender
    let recipients: Recipients
    let clock: any ServiceClock

    struct NewMessage: Codable, Sendable {
        var channel: MessageChannel
        var contactId: UUID?
        var userId: UUID?
        var subject: String?
        var body: String
        /// e-mail only: an HTML part beside the plain-text body.
        var html: String?
        var purpose: MessagePurpose
        var window: SendingWindow?
        var gather: GatherSpec?
        var reference: String?
        /// In a batch: this message's own key, instead of the batch's `Idempotency-Key` header.
        var idempotencyKey: String?
        var retry: Bool?
    }

    struct Attempts: ResponseEncodable {
        var items: [AttemptRecord]
    }

    struct NewBatch: Codable, Sendable {
        var messages: [NewMessage]
    }

    struct AcceptedBatch: Codable, Sendable {
        var items: [Message]
    }

    static let batchLimit = 20
    /// A batch whose messages carry their own keys is stored by one statement planned once; the
    /// services' senders split at the same size.
    static let keyedBatchLimit = ContactMessage.keyedBatch

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/messages") { request, context -> Response in
            let identity = try context.requireIdentity()
            let key = try Self.idempotencyKey(request)
            let new = try await request.decodeJSON(as: NewMessage.self, context: context)
            if new.idempotencyKey != nil {
                throw APIError.validation("idempotencyKey", "a message alone is keyed by its Idempotency-Key header; idempotencyKey is for batches")
            }
            try Self.validate(new, identity: identity)
            try sender.providers.requireProvider(for: new.channel)
            let record = MessageStore.IdempotencyRecord(caller: Self.caller(identity), key: key,
                                                        fingerprint: SHA256.hash(data: try JSONCoding.encoder.encode(new)).hexString, status: 202)
            // The message, its key, its job and its event are one statement.
            return try await storingOnce(record) { connection in
                let recipient = try await recipients.resolve(contactId: new.contactId, userId: new.userId, identity: identity, on: connection)
                return try await accept(new, recipient: recipient, identity: identity, idempotency: record, on: connection)?.json
            }
        }

        group.post("/v1/messages/batch") { request, context -> Response in
            let identity = try context.requireIdentity()
            let batch = try await request.decodeJSON(as: NewBatch.self, context: context)
            // Keys on the messages or one on the batch (which the header then carries).
            let keyed = batch.messages.contains { $0.idempotencyKey != nil }
            if keyed, request.headers[.init("Idempotency-Key")!] != nil {
                throw APIError(.badRequest, code: "idempotency_key_invalid",
                               message: "a batch whose messages carry their own idempotencyKey takes no Idempotency-Key header", field: "Idempotency-Key")
            }
            let key = keyed ? nil : try Self.idempotencyKey(request)
            let limit = keyed ? Self.keyedBatchLimit : Self.batchLimit
            guard (1...limit).contains(batch.messages.count) else {
                throw APIError.validation("messages", "send 1 to \(limit) messages (\(Self.keyedBatchLimit) when each carries its idempotencyKey)")
            }
            var keys = Set<String>()
            for (index, new) in batch.messages.enumerated() {
                try await Self.naming(index) {
                    try Self.validate(new, identity: identity)
                    try sender.providers.requireProvider(for: new.channel)
                    guard keyed else { return }
                    guard let own = new.idempotencyKey, Self.validKey(own) else {
                        throw APIError.validation("idempotencyKey", "give every message of the batch an idempotencyKey of 1 to 255 visible ASCII characters")
                    }
                    guard keys.insert(own).inserted else { throw APIError.validation("idempotencyKey", "each message of a batch has its own key") }
                }
            }
            guard let key else { return try await acceptKeyed(batch.messages, identity: identity) }
            let record = MessageStore.IdempotencyRecord(caller: Self.caller(identity), key: key,
                                                        fingerprint: SHA256.hash(data: try JSONCoding.encoder.encode(batch)).hexString, status: 202)
            // The messages, their jobs and events and the key are one statement, after the reads
            // that decide each message.
            return try await storingOnce(record) { connection in
                let entries = try await composeAll(batch.messages, identity: identity, on: connection)
                let json = String(decoding: try JSONCoding.encoder.encode(AcceptedBatch(items: entries.map(\.message))), as: UTF8.self)
                return try await store.insertBatch(entries, idempotency: record, response: json, at: clock.now, on: connection) ? json : nil
            }
        }

        group.get("/v1/messages") { request, context -> Page<Message> in
            let identity = try context.requireIdentity()
            let query = request.uri.queryParameters
            let paging = try Paging(request)
            let contactId = try query["contactId"].map { try Self.uuid(String($0), field: "contactId") }
            let userId = try query["userId"].map { try Self.uuid(String($0), field: "userId") }
            var state: MessageState?
            if let text = query["state"].map(String.init) { state = try MessageState.value(text, field: "state") }
            var list = MessageStore.ListQuery(companyId: nil, contactId: contactId, userId: userId, state: state, after: paging.after, limit: paging.limit + 1)
            if !identity.isService {
                guard let company = identity.companyId else { throw APIError.forbidden }
                list.companyId = company
                if identity.role.isAdmin {
                    // Office and team admins read what concerns their entities' contacts and users.
                    if let contactId { try await recipients.requireVisibleContact(contactId, identity: identity) }
                    if let userId { try await recipients.requireVisibleUser(userId, identity: identity) }
                    list.entities = try await recipients.managedEntities(identity)
                } else {
                    // Agents and lenders read the log of their own contacts and of themselves.
                    if let contactId {
                        try await recipients.requireVisibleContact(contactId, identity: identity)
                    } else if userId != identity.userId {
                        throw APIError.validation("contactId", "give contactId of one of your contacts, or your own userId")
                    }
                }
            }
            let items = try await store.list(list)
            let page = Array(items.prefix(paging.limit))
            return Page(items: page, nextCursor: items.count > paging.limit ? page.last.map { Paging.cursor(after: $0.id) } : nil)
        }

        group.get("/v1/messages/{id}") { _, context -> Message in
            try await visibleMessage(try context.pathID("id"), identity: try context.requireIdentity())
        }

        group.get("/v1/messages/{id}/attempts") { _, context -> Attempts in
            let message = try await visibleMessage(try context.pathID("id"), identity: try context.requireIdentity())
            return Attempts(items: try await store.attempts(message.id))
        }
    }

    static func caller(_ identity: Identity) -> String {
        "\(identity.role.rawValue):\(identity.subject)"
    }

    /// An error about one message of a batch names it: `messages[1].body`.
    static func naming<T>(_ index: Int, _ body: () async throws -> T) async throws -> T {
        try await APIError.naming("messages[\(index)]", body)
    }

    /// Runs `store`, which writes what a request makes together with its key in one statement
    /// and answers the JSON stored with the key, or nil when the key was taken; no transaction.
    /// A key taken by an earlier try of the request or by a twin sent alongside it (whose
    /// statement this one's waited for) answers what was stored. So does a retry that now
    /// fails, whatever changed since: it was answered before.
    func storingOnce(_ record: MessageStore.IdempotencyRecord, _ store: (PostgresConnection) async throws -> String?) async throws -> Response {
        try await self.store.client.autocommit(logger: self.store.logger) { connection in
            do {
                if let json = try await store(connection) { return Self.raw(status: record.status, json: json, replayed: false) }
            } catch let error as APIError {
                if let answer = try await storedAnswer(record, on: connection) { return answer }
                throw error
            }
            guard let answer = try await storedAnswer(record, on: connection) else { throw Self.inProgress }
            return answer
        }
    }

    /// The answer stored with the request's key: its replay, or 422 when the key came with another
    /// body; nil when the key is unknown.
    func storedAnswer(_ record: MessageStore.IdempotencyRecord, on connection: PostgresConnection) async throws -> Response? {
        guard let stored = try await store.storedKey(caller: record.caller, key: record.key, on: connection) else { return nil }
        guard stored.fingerprint == record.fingerprint else { throw Self.keyReused }
        return Self.raw(status: stored.status, json: stored.response, replayed: true)
    }

    static let keyReused = APIError(.unprocessableContent, code: "idempotency_key_reused",
                                    message: "this Idempotency-Key was used with a different request body", field: "Idempotency-Key")

    static let inProgress = APIError(.conflict, code: "request_in_progress", message: "a request with this Idempotency-Key is still being processed",
                                     field: "Idempotency-Key")

    /// Stores a new outbound message with the compliance decision of now, its send job and its
    /// event; with the request's key, when given, and the message as its answer. Nil when the key
    /// was taken meanwhile: nothing is stored then.
    func accept(_ new: NewMessage, recipient: Recipient, identity: Identity, idempotency: MessageStore.IdempotencyRecord?,
                on connection: PostgresConnection) async throws -> (message: Message, json: String)? {
        var lookups = ComplianceLookups()
        var message = draft(new, recipient: recipient, identity: identity)
        let job = try await settle(&message, recipient: recipient, lookups: &lookups, on: connection)
        let stored = try await store.insert(message, job: job, idempotency: idempotency, on: connection)
        return stored.stored ? (message, stored.doc) : nil
    }

    /// A batch's messages as the compliance decision of now leaves them, with their send jobs:
    /// their recipients and compliance facts read together, not a statement or three each.
    /// `positions`: each message's place in the request, when they are some of its messages.
    func composeAll(_ news: [NewMessage], positions: [Int]? = nil, identity: Identity, on connection: PostgresConnection) async throws
        -> [(message: Message, job: ScheduledJob?)] {
        // A service's contacts from the replica in one read; the others (users, a contact the
        // replica has not yet, a person's request with its scope) one by one.
        let known = identity.isService ? try await store.contactRecipients(news.compactMap(\.contactId), on: connection) : [:]
        var resolved: [String: Recipient] = [:]
        var drafts: [(message: Message, recipient: Recipient)] = []
        for (index, new) in news.enumerated() {
            let id = new.contactId.map { "contact:\($0)" } ?? new.userId.map { "user:\($0)" }
            let recipient = try await Self.naming(positions?[index] ?? index) {
                if let contactId = new.contactId, let found = known[contactId] { return found }
                if let id, let found = resolved[id] { return found }
                return try await recipients.resolve(contactId: new.contactId, userId: new.userId, identity: identity, on: connection)
            }
            if let id { resolved[id] = recipient }
            drafts.append((draft(new, recipient: recipient, identity: identity), recipient))
        }
        var lookups = try await sender.lookups(for: drafts.filter { !$0.message.to.isEmpty }.map { ($0.message, $0.recipient) }, on: connection)
        var entries: [(message: Message, job: ScheduledJob?)] = []
        for (draft, recipient) in drafts {
            var message = draft
            let job = try await settle(&message, recipient: recipient, lookups: &lookups, on: connection)
            entries.append((message, job))
        }
        return entries
    }

    /// A batch whose messages carry their own keys: each is stored once under its key, as if it
    /// had been sent alone in a batch with that `Idempotency-Key` (the same fingerprint and
    /// answer), so a caller may regroup its retries. A key known already answers what it stored;
    /// with another body it refuses the batch. Nothing is stored unless every message is accepted.
    func acceptKeyed(_ news: [NewMessage], identity: Identity) async throws -> Response {
        let caller = Self.caller(identity)
        var fingerprints: [String] = []
        for var new in news {
            new.idempotencyKey = nil
            fingerprints.append(SHA256.hash(data: try JSONCoding.encoder.encode(NewBatch(messages: [new]))).hexString)
        }
        let keys = news.map { $0.idempotencyKey ?? "" }
        return try await store.client.autocommit(logger: store.logger) { connection in
            var items = [String?](repeating: nil, count: news.count)
            func replay(_ stored: [String: MessageStore.StoredKey], _ indices: some Sequence<Int>) throws {
                for index in indices {
                    guard let known = stored[keys[index]] else { continue }
                    guard known.fingerprint == fingerprints[index] else {
                        var error = Self.keyReused
                        error.field = "messages[\(index)].idempotencyKey"
                        throw error
                    }
                    let answer = try JSONCoding.decoder.decode(AcceptedBatch.self, from: Data(known.response.utf8))
                    guard let message = answer.items.first else { throw Self.inProgress }
                    items[index] = String(decoding: try JSONCoding.encoder.encode(message), as: UTF8.self)
                }
            }
            try replay(try await store.storedKeys(caller: caller, keys: keys, on: connection), news.indices)
            let fresh = news.indices.filter { items[$0] == nil }
            if !fresh.isEmpty {
                let composed = try await composeAll(fresh.map { news[$0] }, positions: fresh, identity: identity, on: connection)
                var entries: [MessageStore.KeyedEntry] = []
                for (index, entry) in zip(fresh, composed) {
                    let doc = String(decoding: try JSONCoding.encoder.encode(entry.message), as: UTF8.self)
                    entries.append(.init(message: entry.message, doc: doc, job: entry.job, key: keys[index], fingerprint: fingerprints[index]))
                    items[index] = doc
                }
                let stored = try await store.insertKeyed(entries, caller: caller, at: clock.now, on: connection)
                // A key a twin took meanwhile answers what the twin stored.
                let taken = fresh.filter { !stored.contains(keys[$0]) }
                if !taken.isEmpty {
                    for index in taken { items[index] = nil }
                    try replay(try await store.storedKeys(caller: caller, keys: taken.map { keys[$0] }, on: connection), taken)
                    guard taken.allSatisfy({ items[$0] != nil }) else { throw Self.inProgress }
                }
            }
            let json = "{\"items\":[" + items.map { $0 ?? "null" }.joined(separator: ",") + "]}"
            return Self.raw(status: 202, json: json, replayed: fresh.isEmpty)
        }
    }

    /// A new outbound message before the compliance decision: who it is to and from what.
    func draft(_ new: NewMessage, recipient: Recipient, identity: Identity) -> Message {
        let now = clock.now
        let address: String?
        switch new.channel {
        case .sms, .voice: address = recipient.phone
        case .email: address = recipient.email
        case .push: address = recipient.userId?.lowercasedString
        }
        var message = Message(id: UUID.random(), companyId: recipient.companyId, channel: new.channel, direction: .outbound, purpose: new.purpose,
                              state: .queued, reason: nil, contactId: recipient.contactId, userId: recipient.userId, to: address ?? "",
                              from: nil, subject: new.subject, body: new.body, window: new.window, gather: new.gather, digits: nil,
                              holdUntil: nil, attempts: 0, provider: nil, providerId: nil, reference: new.reference,
                              requestedBy: identity.isService ? identity.subject : (identity.userId?.lowercasedString ?? identity.subject),
                              createdAt: now, updatedAt: now, sentAt: nil, deliveredAt: nil)
        message.html = new.html
        message.retry = new.retry == false ? false : nil
        message.from = sender.providers.sender(for: new.channel)
        return message
    }

    /// A drafted message as the compliance decision of now leaves it (its footer, state and
    /// reason), with its send job; one with no address is suppressed saying which.
    func settle(_ message: inout Message, recipient: Recipient, lookups: inout ComplianceLookups, on connection: PostgresConnection) async throws
        -> ScheduledJob? {
        let decision: SendDecision
        if message.to.isEmpty {
            decision = .suppress(reason: message.channel == .email ? "no_email_address" : "no_phone_number")
        } else {
            try await sender.addUnsubscribeFooter(&message, ownerEntityId: recipient.ownerEntityId, lookups: &lookups, on: connection)
            decision = try await sender.decide(message, recipient: recipient, lookups: &lookups, on: connection)
        }
        let runAt = sender.settle(decision, &message)
        return try sender.job(for: message, runAt: runAt)
    }

    func visibleMessage(_ id: UUID, identity: Identity) async throws -> Message {
        guard let message = try await store.message(id) else { throw APIError.notFound("message \(id)") }
        if identity.isService { return message }
        guard identity.companyId == message.companyId else { throw APIError.notFound("message \(id)") }
        if identity.role == .companyAdmin || message.userId == identity.userId || message.requestedBy == identity.userId?.lowercasedString {
            return message
        }
        // Office and team admins, agents and lenders: a message about a contact or user they reach.
        if let contactId = message.contactId, (try? await recipients.requireVisibleContact(contactId, identity: identity)) != nil { return message }
        if identity.role.isAdmin, let userId = message.userId, (try? await recipients.requireVisibleUser(userId, identity: identity)) != nil {
            return message
        }
        throw APIError.notFound("message \(id)")
    }

    /// The IETF draft's header is a structured-field string (`"abc"`); a bare token is taken too.
    static func idempotencyKey(_ request: Request) throws -> String {
        guard let header = request.headers[.init("Idempotency-Key")!] else {
            throw APIError(.badRequest, code: "idempotency_key_missing", message: "send an Idempotency-Key header", field: "Idempotency-Key")
        }
        var key = header.trimmedSpaces()
        if key.count >= 2, key.hasPrefix("\""), key.hasSuffix("\"") { key = String(key.dropFirst().dropLast()) }
        guard validKey(key) else {
            throw APIError(.badRequest, code: "idempotency_key_invalid", message: "Idempotency-Key must be 1 to 255 visible ASCII characters",
                           field: "Idempotency-Key")
        }
        return key
    }

    /// 1 to 255 visible ASCII characters, without quotes or backslashes.
    static func validKey(_ key: String) -> Bool {
        (1...255).contains(key.utf8.count) && key.unicodeScalars.allSatisfy { (0x21...0x7e).contains($0.value) && $0 != "\"" && $0 != "\\" }
    }

    static func validate(_ new: NewMessage, identity: Identity) throws {
        guard (new.contactId == nil) != (new.userId == nil) else {
            throw APIError.validation("contactId", "give exactly one recipient: contactId or userId")
        }
        switch new.purpose {
        case .compliance:
            throw APIError.validation("purpose", "purpose must be automated or manual")
        case .automated where !identity.isService:
            throw APIError.validation("purpose", "people send manual messages; automated ones come from the services")
        default:
            break
        }
        if !identity.isService && identity.companyId == nil { throw APIError.forbidden }
        if new.channel == .push && new.userId == nil { throw APIError.validation("userId", "push notifications go to users") }
        let limits: [MessageChannel: Int] = [.sms: 1600, .voice: 4000, .email: 100_000, .push: 2000]
        let trimmed = new.body.trimmedWhitespace()
        guard !trimmed.isEmpty, new.body.count <= limits[new.channel, default: 1600] else {
            throw APIError.validation("body", "body must be 1 to \(limits[new.channel, default: 1600]) characters for \(new.channel.rawValue)")
        }
        if let html = new.html {
            guard new.channel == .email else { throw APIError.validation("html", "only e-mails have an HTML part") }
            guard !html.trimmedWhitespace().isEmpty, html.count <= 500_000 else { throw APIError.validation("html", "html is 1 to 500,000 characters") }
        }
        switch new.channel {
        case .email:
            guard let subject = new.subject, !subject.trimmedSpaces().isEmpty, subject.count <= 200,
                  !subject.contains(where: \.isNewline) else {
                throw APIError.validation("subject", "an e-mail needs a subject of 1 to 200 characters on one line")
            }
        case .push:
            if let subject = new.subject, subject.count > 200 { throw APIError.validation("subject", "a push title is at most 200 characters") }
        case .sms, .voice:
            if new.subject != nil { throw APIError.validation("subject", "only e-mails and pushes have a subject") }
        }
        if let gather = new.gather {
            guard new.channel == .voice else { throw APIError.validation("gather", "only voice calls gather keypresses") }
            guard (1...10).contains(gather.numDigits) else { throw APIError.validation("gather.numDigits", "numDigits must be from 1 to 10") }
            if let timeout = gather.timeoutSeconds, !(1...60).contains(timeout) {
                throw APIError.validation("gather.timeoutSeconds", "timeoutSeconds must be from 1 to 60")
            }
            if let service = gather.answeredBy {
                // Only a service may have its own API asked; never this one.
                guard identity.isService, service != .notifications else {
                    throw APIError.validation("gather.answeredBy", "answeredBy names the service that asked for the call")
                }
            }
        }
        if let reference = new.reference, reference.isEmpty || reference.count > 200 {
            throw APIError.validation("reference", "reference must be 1 to 200 characters")
        }
        if let window = new.window {
            if window.entityId != nil {
                guard window.start == nil, window.end == nil, window.timeZone == nil else {
                    throw APIError.validation("window", "give either entityId or start, end and timeZone")
                }
            } else {
                guard let start = window.start, let open = WeeklyWindow.minutes(start) else {
                    throw APIError.validation("window.start", "start must be a local time HH:MM")
                }
                guard let end = window.end, let close = WeeklyWindow.minutes(end), close > open else {
                    throw APIError.validation("window.end", "end must be a local time HH:MM after start")
                }
                guard let zone = window.timeZone, TimeZone(identifier: zone) != nil, zone.contains("/") || zone == "UTC" else {
                    throw APIError.validation("window.timeZone", "timeZone must be an IANA time zone such as America/Chicago")
                }
            }
        }
    }

    static func uuid(_ text: String, field: String) throws -> UUID {
        guard let id = UUID(uuidString: text) else { throw APIError.validation(field, "\(field) must be a UUID") }
        return id
    }

    static func raw(status: Int, json: String, replayed: Bool) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if replayed { headers[.init("Idempotent-Replayed")!] = "true" }
        return Response(status: HTTPResponse.Status(code: status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: json)))
    }
}
