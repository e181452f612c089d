import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// Compliance facts read ahead for many messages at once (a batch's, a claim's), so that deciding
/// each costs no statement of its own.
struct ComplianceLookups: Sendable {
    var consent: [MessageStore.ConsentAsk: MessageStore.ConsentFacts] = [:]
    var email: [MessageStore.EmailAsk: MessageStore.EmailFacts] = [:]
}

/// Decides, holds, sends and records messages: the one path every outbound message takes, at
/// acceptance and again when its job runs (an opt-out may have arrived meanwhile).
struct Sender: Sendable {
    static let jobKind = "message.send"

    struct JobPayload: Codable, Sendable {
        var messageId: UUID
    }

    let store: MessageStore
    let providers: Providers
    let policy: CompliancePolicy
    let jobs: JobQueue
    let clock: any ServiceClock
    let logger: Logger
    /// Where recipients reach the one-click unsubscribe page, and how its links are signed.
    let publicURL: String
    let unsubscribeLinks: UnsubscribeLink

    /// The compliance decision for `message` now (NT-4, NT-5), from the facts read ahead in
    /// `lookups` (a fact not there is read now, and kept).
    func decide(_ message: Message, recipient: Recipient?, lookups: inout ComplianceLookups, on connection: PostgresConnection) async throws
        -> SendDecision {
        if message.purpose == .compliance { return .send }
        let now = clock.now
        var facts: MessageStore.ConsentFacts = (false, false, [])
        if let ask = consentAsk(message) {
            if let known = lookups.consent[ask] {
                facts = known
            } else {
                facts = try await store.consent(address: ask.address, companyId: ask.companyId, since: now.addingTimeInterval(-24 * 3600),
                                                recentLimit: ask.recentLimit, on: connection)
                lookups.consent[ask] = facts
            }
        }
        var window: WeeklyWindow?
        if let requested = message.window {
            window = try await sendingWindow(requested, companyId: message.companyId, on: connection)
            if window == nil { return .suppress(reason: "window_entity_unknown") }
        }
        var email: MessageStore.EmailFacts?
        if let ask = emailAsk(message, ownerEntityId: recipient?.ownerEntityId) { email = try await emailFacts(ask, lookups: &lookups, on: connection) }
        var context = SendContext(channel: message.channel, purpose: message.purpose, address: message.to, optedOut: facts.optedOut,
                                  onDNC: facts.onDNC, recipientTimeZones: message.contactId == nil ? [] : recipient?.timeZones ?? [],
                                  recipientState: recipient?.state, window: window, automatedSentInLastDay: facts.recentAutomated,
                                  recipientArchived: message.contactId != nil && recipient?.archived == true)
        if let email {
            context.emailUnsubscribed = email.unsubscribed
            context.postalAddressMissing = email.postalAddress == nil
        }
        return policy.decide(context, now: now)
    }

    /// The consent facts deciding `message` needs (none for pushes).
    func consentAsk(_ message: Message) -> MessageStore.ConsentAsk? {
        guard message.purpose != .compliance, message.channel != .push else { return nil }
        return .init(address: message.to, companyId: message.companyId,
                     recentLimit: policy.recentSendsNeeded(channel: message.channel, purpose: message.purpose, toContact: message.contactId != nil))
    }

    /// The CAN-SPAM facts an automated e-mail to a contact needs.
    func emailAsk(_ message: Message, ownerEntityId: UUID?) -> MessageStore.EmailAsk? {
        guard message.channel == .email, message.purpose == .automated, message.contactId != nil else { return nil }
        return .init(address: message.to, companyId: message.companyId, ownerEntityId: ownerEntityId)
    }

    private func emailFacts(_ ask: MessageStore.EmailAsk, lookups: inout ComplianceLookups, on connection: PostgresConnection) async throws
        -> MessageStore.EmailFacts {
        if let known = lookups.email[ask] { return known }
        let facts = try await store.emailFacts(address: ask.address, companyId: ask.companyId, ownerEntityId: ask.ownerEntityId, on: connection)
        lookups.email[ask] = facts
        return facts
    }

    /// Reads ahead, in two statements, the facts deciding `messages` will need: a batch's or a
    /// claim's messages are decided without a statement each.
    func lookups(for messages: [(message: Message, recipient: Recipient?)], on connection: PostgresConnection) async throws -> ComplianceLookups {
        var lookups = ComplianceLookups()
        lookups.consent = try await store.consents(messages.compactMap { consentAsk($0.message) }, since: clock.now.addingTimeInterval(-24 * 3600),
                                                   on: connection)
        lookups.email = try await store.emailFacts(messages.compactMap { emailAsk($0.message, ownerEntityId: $0.recipient?.ownerEntityId) },
                                                   on: connection)
        return lookups
    }

    func sendingWindow(_ requested: SendingWindow, companyId: UUID, on connection: PostgresConnection) async throws -> WeeklyWindow? {
        if let entity = requested.entityId { return try await store.officeHours(entity, companyId: companyId, on: connection) }
        guard let start = requested.start.flatMap(WeeklyWindow.minutes), let end = requested.end.flatMap(WeeklyWindow.minutes),
              let zone = requested.timeZone.flatMap(TimeZone.init(identifier:)) else { return nil }
        return .daily(open: start, close: end, timeZone: zone)
    }

    /// A decision's state and reason on a message about to be stored or re-checked; answers when
    /// its send job is to run, nil when it needs none.
    func settle(_ decision: SendDecision, _ message: inout Message) -> Date? {
        let now = clock.now
        message.updatedAt = now
        switch decision {
        case .send:
            message.state = .queued
            message.reason = nil
            message.holdUntil = nil
            return now
        case .hold(let until, let reason):
            message.state = .held
            message.reason = reason
            message.holdUntil = until
            return until
        case .suppress(let reason):
            message.state = .suppressed
            message.reason = reason
            message.holdUntil = nil
            return nil
        }
    }

    /// The send job of a new message, written by the statement that stores it.
    func job(for message: Message, runAt: Date?) throws -> ScheduledJob? {
        guard let runAt else { return nil }
        return try ScheduledJob(kind: Self.jobKind, payload: JobPayload(messageId: message.id), runAt: runAt, maxAttempts: Self.maxAttempts)
    }

    /// Applies a re-check's decision to a stored message: state, reason and, held again, its job.
    func apply(_ decision: SendDecision, to message: inout Message, on connection: PostgresConnection) async throws {
        guard let runAt = settle(decision, &message) else { return }
        _ = try await jobs.schedule(kind: Self.jobKind, payload: JobPayload(messageId: message.id), runAt: runAt, maxAttempts: Self.maxAttempts,
                                    on: connection, logger: logger)
    }

    static let maxAttempts = 8

    /// CAN-SPAM: an automated e-mail to a contact ends with the company's name and postal address
    /// and a one-click unsubscribe link, also given to the provider as List-Unsubscribe. Without a
    /// postal address it is not changed: the decision suppresses it.
    func addUnsubscribeFooter(_ message: inout Message, ownerEntityId: UUID?, lookups: inout ComplianceLookups, on connection: PostgresConnection)
        async throws {
        guard message.to.contains("@"), let ask = emailAsk(message, ownerEntityId: ownerEntityId) else { return }
        let facts = try await emailFacts(ask, lookups: &lookups, on: connection)
        guard let postal = facts.postalAddress else { return }
        let url = "\(publicURL)/unsubscribe/\(unsubscribeLinks.token(companyId: message.companyId, address: message.to))"
        message.unsubscribeURL = url
        message.body += UnsubscribeLink.footer(companyName: facts.companyName, postalAddress: postal, url: url)
        if let html = message.html { message.html = UnsubscribeLink.footer(companyName: facts.companyName, postalAddress: postal, url: url, into: html) }
    }

    /// ST-7: a contact archived: every automated message still held or queued for them is
    /// suppressed at once (their jobs then find nothing to send); manual ones go on.
    var archiveHandler: EventHandler {
        EventHandler(name: "notifications.archive", eventType: EventType.contactStatusChanged) { event, connection, _ in
            let contact = try event.data(ContactChanged.self).contact
            guard contact.status == .archive else { return }
            let ids = try await store.pendingAutomated(contactId: contact.id, on: connection)
            guard !ids.isEmpty else { return }
            var changed: [Message] = []
            for var message in try await store.lockMessages(ids, on: connection) where message.state == .held || message.state == .queued {
                _ = settle(.suppress(reason: "archived"), &message)
                changed.append(message)
            }
            try await store.saveAndPublish(&changed, on: connection)
        }
    }

    /// Message jobs due together go out together: one lock, one attempt write before the
    /// providers are called and one after, one save and one commit for the lot.
    var jobHandler: JobHandler {
        JobHandler(kind: Self.jobKind, maxAttempts: Self.maxAttempts, batchSize: 64) { jobs, connection, _ in
            try await run(jobs, on: connection)
        }
    }

    /// The job: re-check, reconcile an attempt that crashed unrecorded, send, record. Answers the
    /// jobs to retry later (transient provider failures), by job id.
    func run(_ jobs: [Job], on connection: PostgresConnection) async throws -> [Int64: any Error] {
        var retry: [Int64: any Error] = [:]
        var jobFor: [UUID: Job] = [:]
        for job in jobs {
            do { jobFor[try job.decode(JobPayload.self).messageId] = job } catch { retry[job.id] = error }
        }
        var changed: [Message] = []
        var sending: [(message: Message, job: Job)] = []
        let due = try await store.lockMessages(Array(jobFor.keys), on: connection).filter { message in
            guard jobFor[message.id] != nil, message.state == .queued || message.state == .held else { return false }
            return message.state != .held || (message.holdUntil.map { $0 <= clock.now } ?? true)
        }
        // The claim's recipients and compliance facts in three statements, not three a message.
        let recipients = try await store.contactRecipients(due.compactMap(\.contactId), on: connection)
        var lookups = try await lookups(for: due.map { ($0, $0.contactId.flatMap { recipients[$0] }) }, on: connection)
        for var message in due {
            guard let job = jobFor[message.id] else { continue }
            let recipient = message.contactId.flatMap { recipients[$0] }
            let decision = try await decide(message, recipient: recipient, lookups: &lookups, on: connection)
            guard decision == .send else {
                try await apply(decision, to: &message, on: connection)
                changed.append(message)
                continue
            }
            // The attempt count came with the message: with none yet there is nothing to reconcile.
            if message.attempts > 0, try await reconcile(&message) {
                changed.append(message)
                continue
            }
            sending.append((message, job))
        }
        if !sending.isEmpty {
            let numbers = try await store.startAttempts(sending.map(\.message.id), at: clock.now)
            let results = await send(sending.map(\.message))
            var ends: [MessageStore.AttemptEnd] = []
            for ((message, job), result) in zip(sending, results) {
                var message = message
                let number = numbers[message.id] ?? message.attempts + 1
                switch result {
                case .accepted(let providerId):
                    ends.append(.init(messageId: message.id, number: number, outcome: "sent", providerId: providerId))
                    markSent(&message, provider: providers.provider(for: message.channel).name, providerId: providerId, attempts: number)
                case .failed(.transient(let reason)):
                    ends.append(.init(messageId: message.id, number: number, outcome: "transient", error: reason))
                    guard job.attempt < job.maxAttempts else {
                        markFailed(&message, reason: "gave_up_\(reason)", attempts: number)
                        break
                    }
                    // Asked not to retry (SP-7: a plan's e-mail over the sending limit fails and the
                    // plan moves on), the provider's answer is final; one it never got is not a try.
                    if message.retry == false, !ProviderFailure.unreached.contains(reason) {
                        markFailed(&message, reason: reason, attempts: number)
                        break
                    }
                    // The job table retries with backoff and jitter on the service clock (NT-7).
                    retry[job.id] = TransientProviderFailure(reason: reason)
                    // A contact's queued message is not told of until it leaves (`MessageStore`):
                    // held up by the provider, its timeline says so at the first retry, with why.
                    if number == 1, message.contactId != nil {
                        message.reason = reason
                        message.updatedAt = clock.now
                        changed.append(message)
                    }
                    continue
                case .failed(.permanent(let reason)):
                    ends.append(.init(messageId: message.id, number: number, outcome: "permanent", error: reason))
                    markFailed(&message, reason: reason, attempts: number)
                case .failed(.unsubscribed):
                    ends.append(.init(messageId: message.id, number: number, outcome: "permanent", error: "provider_21610"))
                    try await store.recordConsent(number: message.to, optOut: true, how: "provider reported the number unsubscribed (21610)",
                                                  by: providers.provider(for: message.channel).name, at: clock.now, on: connection)
                    markFailed(&message, reason: "provider_21610", attempts: number)
                }
                changed.append(message)
            }
            try await store.finishAttempts(ends, at: clock.now)
        }
        try await store.saveAndPublish(&changed, on: connection)
        return retry
    }

    /// Each channel's messages to its provider at once; the results in the messages' order.
    private func send(_ messages: [Message]) async -> [ProviderResult] {
        var results = [ProviderResult](repeating: .failed(.transient("not_sent")), count: messages.count)
        for channel in MessageChannel.allCases {
            let indices = messages.indices.filter { messages[$0].channel == channel }
            guard !indices.isEmpty else { continue }
            let sent = await providers.provider(for: channel).send(indices.map { messages[$0] }, from: providers.sender(for: channel))
            for (index, result) in zip(indices, sent) { results[index] = result }
        }
        return results
    }

    /// An earlier attempt that crashed before it was recorded went out if the provider has it;
    /// true when it did, and the message is marked sent.
    private func reconcile(_ message: inout Message) async throws -> Bool {
        guard let unrecorded = try await store.attempts(message.id).last(where: { $0.outcome == "in_flight" }) else { return false }
        let provider = providers.provider(for: message.channel)
        guard let providerId = await provider.find(message, attemptStarted: unrecorded.startedAt) else {
            try await store.finishAttempts([.init(messageId: message.id, number: unrecorded.number, outcome: "not_found_at_provider")], at: clock.now)
            return false
        }
        try await store.finishAttempts([.init(messageId: message.id, number: unrecorded.number, outcome: "reconciled", providerId: providerId)],
                                       at: clock.now)
        markSent(&message, provider: provider.name, providerId: providerId, attempts: unrecorded.number)
        return true
    }

    private func markSent(_ message: inout Message, provider: String, providerId: String, attempts: Int) {
        let now = clock.now
        message.state = .sent
        message.reason = nil
        message.holdUntil = nil
        message.provider = provider
        message.providerId = providerId
        message.sentAt = now
        message.updatedAt = now
        message.attempts = attempts
    }

    private func markFailed(_ message: inout Message, reason: String, attempts: Int) {
        message.state = .failed
        message.reason = reason
        message.updatedAt = clock.now
        message.attempts = attempts
    }
}

struct TransientProviderFailure: Error, CustomStringConvertible {
    var reason: String
    var description: String { "transient provider failure: \(reason)" }
}
