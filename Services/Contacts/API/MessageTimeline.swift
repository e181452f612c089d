import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// Notifications' delivery log on the contact's timeline (NT-3): an outbound message is one
/// entry that follows its state; an inbound text, call or e-mail is a logged communication and
/// is published as one (NT-6 → BA-10, AC-3, AC-6), as is a manual message once it is sent.
struct MessageTimeline: Sendable {
    let contacts: ContactStore
    let outbox: Outbox

    /// A delivered batch's updates in a few statements: its contacts read at once, each
    /// message's newest version written (an entry follows its message's version, whatever order
    /// the updates arrive in).
    var handler: EventHandler {
        EventHandler.batched(name: "timeline.message", eventType: EventType.messageUpdated) { events, connection, _ in
            try await record(try events.map { try $0.data(MessageUpdated.self).message }, on: connection)
        }
    }

    func record(_ updates: [Message], on connection: PostgresConnection) async throws {
        var newest: [UUID: Message] = [:]
        var sent: Set<UUID> = []
        for message in updates where message.contactId != nil {
            if message.state == .sent { sent.insert(message.id) }
            if let known = newest[message.id], known.version >= message.version { continue }
            newest[message.id] = message
        }
        let messages = newest.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        let known = try await contacts.contacts(Array(Set(messages.compactMap(\.contactId))), on: connection)
        var entries: [(TimelineEntry, UUID)] = []
        var logged: [UUID: OutgoingEvent] = [:]
        for message in messages {
            guard let contactId = message.contactId, let contact = known[contactId], contact.companyId == message.companyId else { continue }
            let channel: CommunicationChannel = switch message.channel {
            case .sms, .push: .text
            case .email: .email
            case .voice: .call
            }
            let actor = Self.actor(message)
            // An inbound message is the lead's communication; an agent's own text or e-mail counts as
            // their contact with the lead, once, when it leaves (the batch saw it sent).
            if message.direction == .inbound || (message.purpose == .manual && sent.contains(message.id)) {
                let communication = Communication(id: message.id, contactId: contactId, companyId: message.companyId, channel: channel,
                                                  direction: message.direction == .inbound ? .inbound : .outbound, outcome: nil,
                                                  subject: message.subject, body: message.body, userId: UUID(uuidString: message.requestedBy),
                                                  at: message.sentAt ?? message.createdAt)
                logged[message.id] = try outbox.envelope(EventType.communicationLogged, version: contact.version, companyId: contact.companyId,
                                                         subjectId: contact.id, data: CommunicationLogged(communication: communication, contact: contact,
                                                                                                          actor: actor))
            }
            if message.direction == .inbound {
                entries.append((TimelineEntry(id: message.id, contactId: contactId, kind: "communication", at: message.createdAt, actor: actor,
                                              summary: "Inbound \(channel.rawValue) from \(message.from ?? "unknown")", data: Self.data(message)),
                                message.companyId))
                continue
            }
            var summary = "\(Self.noun(message.channel)) \(message.state.rawValue)"
            if let reason = message.reason { summary += ": \(ContactRules.words(reason))" }
            if let until = message.holdUntil, message.state == .held { summary += " until \(RFC3339.string(from: until))" }
            entries.append((TimelineEntry(id: message.id, contactId: contactId, kind: "message", at: message.createdAt, actor: actor, summary: summary,
                                          data: Self.data(message)), message.companyId))
        }
        let written = try await contacts.writeTimeline(entries, onConflict: .replaceNewer(field: "version"), on: connection)
        let publish = messages.compactMap { written.contains($0.id) ? logged[$0.id] : nil }
        try await outbox.publish(publish, on: connection, logger: contacts.logger)
    }

    static func actor(_ message: Message) -> Actor {
        if message.direction == .inbound { return Actor(kind: .integration, id: message.provider ?? "notifications", name: "inbound \(message.channel.rawValue)") }
        if UUID(uuidString: message.requestedBy) != nil { return Actor(kind: .user, id: message.requestedBy) }
        return Actor(kind: .service, id: message.requestedBy)
    }

    static func noun(_ channel: MessageChannel) -> String {
        switch channel {
        case .sms: "Text"
        case .email: "E-mail"
        case .voice: "Call"
        case .push: "Push"
        }
    }

    static func data(_ message: Message) -> JSONValue {
        var object: [String: JSONValue] = [
            "messageId": .string(message.id.lowercasedString), "channel": .string(message.channel.rawValue),
            "direction": .string(message.direction.rawValue), "state": .string(message.state.rawValue), "purpose": .string(message.purpose.rawValue),
            "body": .string(message.body), "updatedAt": .string(RFC3339.string(from: message.updatedAt)), "version": .number(Double(message.version)),
        ]
        if let reason = message.reason { object["reason"] = .string(reason) }
        if let subject = message.subject { object["subject"] = .string(subject) }
        if let until = message.holdUntil { object["holdUntil"] = .string(RFC3339.string(from: until)) }
        if let digits = message.digits { object["digits"] = .string(digits) }
        return .object(object)
    }
}
