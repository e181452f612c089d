import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

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

    /// The compliance decision for `message` now (NT-4, NT-5).
    func decide(_ message: Message, recipient: Recipient?, on connection: PostgresConnection) async throws -> SendDecision {
        if message.purpose == .compliance { return .send }
        let now = clock.now
        let facts = message.channel == .push
            ? (optedOut: false, onDNC: false, recentAutomated: [])
            : try await store.consent(address: message.to, companyId: message.companyId, since: now.addingTimeInterval(-24 * 3600),
                                      recentLimit: policy.recentSendsNeeded(channel: message.channel, purpose: message.purpose,
                                                                            toContact: message.contactId != nil),
                                      on: connection)
        var window: WeeklyWindow?
        if let requested = message.window {
            window = try await sendingWindow(requested, companyId: message.companyId, on: connection)
            if window == nil { return .suppress(reason: "window_entity_unknown") }
        }
        let context = SendContext(channel: message.channel, purpose: message.purpose, address: message.to, optedOut: facts.optedOut,
                                  onDNC: facts.onDNC, recipientTimeZone: message.contactId == nil ? nil : recipient?.timeZone,
                                  recipientState: recipient?.state, window: window, automatedSentInLastDay: facts.recentAutomated)
        return policy.decide(context, now: now)
    }

    func sendingWindow(_ requested: SendingWindow, companyId: UUID, on connection: PostgresConnection) async throws -> WeeklyWindow? {
        if let entity = requested.entityId { return try await store.officeHours(entity, companyId: companyId, on: connection) }
        guard let start = requested.start.flatMap(WeeklyWindow.minutes), let end = requested.end.flatMap(WeeklyWindow.minutes),
              let zone = requested.timeZone.flatMap(TimeZone.init(identifier:)) else { return nil }
        return .daily(open: start, close: end, timeZone: zone)
    }

    /// Applies a decision to a message about to be stored or re-checked: state, reason, job.
    func apply(_ decision: SendDecision, to message: inout Message, on connection: PostgresConnection) async throws {
        let now = clock.now
        message.updatedAt = now
        switch decision {
        case .send:
            message.state = .queued
            message.reason = nil
            message.holdUntil = nil
            _ = try await jobs.schedule(kind: Self.jobKind, payload: JobPayload(messageId: message.id), runAt: now, maxAttempts: 8,
                                        on: connection, logger: logger)
        case .hold(let until, let reason):
            message.state = .held
            message.reason = reason
            message.holdUntil = until
            _ = try await jobs.schedule(kind: Self.jobKind, payload: JobPayload(messageId: message.id), runAt: until, maxAttempts: 8,
                                        on: connection, logger: logger)
        case .suppress(let reason):
            message.state = .suppressed
            message.reason = reason
            message.holdUntil = nil
        }
    }

    var jobHandler: JobHandler {
        JobHandler(kind: Self.jobKind, maxAttempts: 8) { job, connection, logger in
            try await run(try job.decode(JobPayload.self).messageId, job: job, on: connection)
        }
    }

    /// The job: re-check, reconcile an attempt that crashed unrecorded, send, record.
    func run(_ id: UUID, job: Job, on connection: PostgresConnection) async throws {
        guard var message = try await store.lockMessage(id, on: connection), message.state == .queued || message.state == .held else { return }
        if message.state == .held, let until = message.holdUntil, until > clock.now { return }
        var recipient: Recipient?
        if let contactId = message.contactId { recipient = try await store.contactRecipient(contactId, on: connection) }
        let decision = try await decide(message, recipient: recipient, on: connection)
        guard decision == .send else {
            try await apply(decision, to: &message, on: connection)
            try await store.save(&message, on: connection)
            try await store.publishUpdate(message, on: connection)
            return
        }
        let provider = providers.provider(for: message.channel)
        // The attempt count came with the message: with none yet there is nothing to reconcile.
        let earlier = message.attempts == 0 ? [] : try await store.attempts(id)
        if let unrecorded = earlier.last(where: { $0.outcome == "in_flight" }) {
            if let providerId = await provider.find(message, attemptStarted: unrecorded.startedAt) {
                try await store.finishAttempt(id, number: unrecorded.number, outcome: "reconciled", providerId: providerId, error: nil, at: clock.now)
                try await markSent(&message, provider: provider.name, providerId: providerId, attempts: unrecorded.number, on: connection)
                return
            }
            try await store.finishAttempt(id, number: unrecorded.number, outcome: "not_found_at_provider", providerId: nil, error: nil, at: clock.now)
        }
        let number = try await store.startAttempt(id, at: clock.now)
        let result = await provider.send(message, from: providers.sender(for: message.channel))
        switch result {
        case .accepted(let providerId):
            try await store.finishAttempt(id, number: number, outcome: "sent", providerId: providerId, error: nil, at: clock.now)
            try await markSent(&message, provider: provider.name, providerId: providerId, attempts: number, on: connection)
        case .failed(.transient(let reason)):
            try await store.finishAttempt(id, number: number, outcome: "transient", providerId: nil, error: reason, at: clock.now)
            guard job.attempt < job.maxAttempts else {
                try await markFailed(&message, reason: "gave_up_\(reason)", attempts: number, on: connection)
                return
            }
            // The job table retries with backoff and jitter on the service clock (NT-7).
            throw TransientProviderFailure(reason: reason)
        case .failed(.permanent(let reason)):
            try await store.finishAttempt(id, number: number, outcome: "permanent", providerId: nil, error: reason, at: clock.now)
            try await markFailed(&message, reason: reason, attempts: number, on: connection)
        case .failed(.unsubscribed):
            try await store.finishAttempt(id, number: number, outcome: "permanent", providerId: nil, error: "provider_21610", at: clock.now)
            try await store.recordConsent(number: message.to, optOut: true, how: "provider reported the number unsubscribed (21610)",
                                          by: provider.name, at: clock.now, on: connection)
            try await markFailed(&message, reason: "provider_21610", attempts: number, on: connection)
        }
    }

    private func markSent(_ message: inout Message, provider: String, providerId: String, attempts: Int, on connection: PostgresConnection) async throws {
        let now = clock.now
        message.state = .sent
        message.reason = nil
        message.holdUntil = nil
        message.provider = provider
        message.providerId = providerId
        message.sentAt = now
        message.updatedAt = now
        message.attempts = attempts
        try await store.save(&message, on: connection)
        try await store.publishUpdate(message, on: connection)
    }

    private func markFailed(_ message: inout Message, reason: String, attempts: Int, on connection: PostgresConnection) async throws {
        message.state = .failed
        message.reason = reason
        message.updatedAt = clock.now
        message.attempts = attempts
        try await store.save(&message, on: connection)
        try await store.publishUpdate(message, on: connection)
    }
}

struct TransientProviderFailure: Error, CustomStringConvertible {
    var reason: String
    var description: String { "transient provider failure: \(reason)" }
}
