import Foundation

/// How a message leaves (NT-1).
public enum MessageChannel: String, WireEnum {
    case sms, email, voice, push
}

/// Automated messages obey quiet hours and state caps (NT-5); manual ones, sent by an agent
/// from the app, still obey opt-outs and the Do-Not-Call list.
public enum MessagePurpose: String, WireEnum {
    case automated, manual
    /// Opt-out and help replies the service sends itself; callers cannot ask for it.
    case compliance
}

/// The delivery log's states (NT-3).
public enum MessageState: String, WireEnum {
    case queued, held, sent, delivered, failed, suppressed
}

public enum MessageDirection: String, WireEnum {
    case outbound, inbound
}

/// Only in the office hours of an entity, or only between two local times in a time zone (NT-4).
public struct SendingWindow: Codable, Sendable, Hashable {
    public var entityId: UUID?
    public var start: String?
    public var end: String?
    public var timeZone: String?
    public init(entityId: UUID? = nil, start: String? = nil, end: String? = nil, timeZone: String? = nil) {
        self.entityId = entityId
        self.start = start
        self.end = end
        self.timeZone = timeZone
    }
}

/// A voice call's keypad question: the call says the body and waits for this many digits.
public struct GatherSpec: Codable, Sendable, Hashable {
    public var numDigits: Int
    public var timeoutSeconds: Int?
    /// The service that answers each keypress with the call's next step (`VoiceKeypress` →
    /// `VoiceReply`), for menus whose next words depend on what the keys did (RT-16).
    public var answeredBy: ServiceName?
    public init(numDigits: Int, timeoutSeconds: Int? = nil, answeredBy: ServiceName? = nil) {
        self.numDigits = numDigits
        self.timeoutSeconds = timeoutSeconds
        self.answeredBy = answeredBy
    }
}

/// Notifications asks the call's `answeredBy` service what to say after keys were pressed
/// (`POST /v1/voice/keypresses`); `step` counts the questions asked on this call, from 1.
public struct VoiceKeypress: Codable, Sendable, Hashable {
    public var messageId: UUID
    public var companyId: UUID
    public var userId: UUID?
    public var contactId: UUID?
    public var reference: String?
    public var digits: String
    public var step: Int
    public init(messageId: UUID, companyId: UUID, userId: UUID?, contactId: UUID?, reference: String?, digits: String, step: Int) {
        self.messageId = messageId
        self.companyId = companyId
        self.userId = userId
        self.contactId = contactId
        self.reference = reference
        self.digits = digits
        self.step = step
    }
}

/// The call's next step: words, then another question, a transfer to a contact, or goodbye.
public struct VoiceReply: Codable, Sendable, Hashable {
    public var say: String
    public var gather: GatherSpec?
    /// Connect the caller to this contact's first phone number.
    public var dialContactId: UUID?
    public init(say: String, gather: GatherSpec? = nil, dialContactId: UUID? = nil) {
        self.say = say
        self.gather = gather
        self.dialContactId = dialContactId
    }
}

/// One message of the delivery log, outbound or inbound.
public struct Message: Codable, Sendable, Hashable {
    public var id: UUID
    public var companyId: UUID
    public var channel: MessageChannel
    public var direction: MessageDirection
    public var purpose: MessagePurpose
    public var state: MessageState
    /// Why it is held, suppressed or failed (`quiet_hours`, `opted_out`, `dnc`, `provider_21211` …).
    public var reason: String?
    public var contactId: UUID?
    public var userId: UUID?
    /// The number, address or device the message went to (or came from, inbound).
    public var to: String
    public var from: String?
    public var subject: String?
    public var body: String
    /// An e-mail's HTML part (a saved design, SP-1); `body` is then its plain-text alternative.
    public var html: String?
    public var window: SendingWindow?
    public var gather: GatherSpec?
    public var digits: String?
    public var holdUntil: Date?
    public var attempts: Int
    /// Goes up by one with every change, so readers keep the latest whatever the arrival order.
    public var version: Int = 1
    public var provider: String?
    public var providerId: String?
    /// What the asking service wants back with a keypress (an offer id, a task id …).
    public var reference: String?
    /// Who asked: a service name or a user id.
    public var requestedBy: String
    public var createdAt: Date
    public var updatedAt: Date
    public var sentAt: Date?
    public var deliveredAt: Date?
    /// An automated e-mail's one-click unsubscribe link (CAN-SPAM), also sent as List-Unsubscribe.
    public var unsubscribeURL: String?
    /// false: a failure the provider answers is final, even one it calls temporary (its sending
    /// limit); only a provider that could not be reached is tried again (SP-7's e-mails). Absent: retried.
    public var retry: Bool?

    public init(id: UUID, companyId: UUID, channel: MessageChannel, direction: MessageDirection, purpose: MessagePurpose, state: MessageState,
                reason: String?, contactId: UUID?, userId: UUID?, to: String, from: String?, subject: String?, body: String,
                window: SendingWindow?, gather: GatherSpec?, digits: String?, holdUntil: Date?, attempts: Int, provider: String?,
                providerId: String?, reference: String?, requestedBy: String, createdAt: Date, updatedAt: Date, sentAt: Date?, deliveredAt: Date?) {
        self.id = id
        self.companyId = companyId
        self.channel = channel
        self.direction = direction
        self.purpose = purpose
        self.state = state
        self.reason = reason
        self.contactId = contactId
        self.userId = userId
        self.to = to
        self.from = from
        self.subject = subject
        self.body = body
        self.window = window
        self.gather = gather
        self.digits = digits
        self.holdUntil = holdUntil
        self.attempts = attempts
        self.provider = provider
        self.providerId = providerId
        self.reference = reference
        self.requestedBy = requestedBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.sentAt = sentAt
        self.deliveredAt = deliveredAt
    }
}

/// `message.updated`: a message's state changed, or an inbound one arrived (the contact's timeline
/// shows it; an inbound one is logged as a communication).
public struct MessageUpdated: Codable, Sendable, Hashable {
    public var message: Message
    public init(message: Message) {
        self.message = message
    }
}

/// `message.keypress`: the recipient of a voice call pressed keys (RT-16 reads it).
public struct MessageKeypress: Codable, Sendable, Hashable {
    public var messageId: UUID
    public var companyId: UUID
    public var contactId: UUID?
    public var userId: UUID?
    public var digits: String
    public var reference: String?
    public var requestedBy: String
    public var at: Date
    public init(messageId: UUID, companyId: UUID, contactId: UUID?, userId: UUID?, digits: String, reference: String?, requestedBy: String, at: Date) {
        self.messageId = messageId
        self.companyId = companyId
        self.contactId = contactId
        self.userId = userId
        self.digits = digits
        self.reference = reference
        self.requestedBy = requestedBy
        self.at = at
    }
}

/// `message.dialed`: the party a call's `<Dial>` rang (the lead an agent asked to be bridged to,
/// AC-1) hung up or never answered. `status` is the provider's DialCallStatus (completed,
/// answered, busy, no-answer, failed, canceled); `answeredBy` its answering-machine detection's
/// verdict when it came first (human, machine_start, machine_end_beep, machine_end_silence,
/// machine_end_other, fax, unknown).
public struct MessageDialed: Codable, Sendable, Hashable {
    public var messageId: UUID
    public var companyId: UUID
    public var userId: UUID?
    public var reference: String?
    public var requestedBy: String
    public var status: String
    public var answeredBy: String?
    public var seconds: Int?
    public var at: Date
    public init(messageId: UUID, companyId: UUID, userId: UUID?, reference: String?, requestedBy: String, status: String, answeredBy: String?,
                seconds: Int?, at: Date) {
        self.messageId = messageId
        self.companyId = companyId
        self.userId = userId
        self.reference = reference
        self.requestedBy = requestedBy
        self.status = status
        self.answeredBy = answeredBy
        self.seconds = seconds
        self.at = at
    }

    /// The dialed line picked up: a person, or their voicemail.
    public var answered: Bool { status == "completed" || status == "answered" }
    /// A machine (voicemail, fax) answered, as far as the detection could tell.
    public var reachedMachine: Bool { answeredBy.map { $0.hasPrefix("machine") || $0 == "fax" } ?? false }
}
