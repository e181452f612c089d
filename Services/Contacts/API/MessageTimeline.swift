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

    var handler: EventHandler {
        EventHandler(name: "timeline.message", eventType: EventType.messageUpdated) { event, connection, logger in
            try await record(try event.data(MessageUpdated.self).message, on: connection)
        }
    }

    func record(_ message: Message, on connection: PostgresConnection) async throws {
        guard let contactId = message.contactId, let contact = try await contacts.contact(contactId, companyId: message.companyId, on: connection) else { return }
        let channel: CommunicationChannel = switch message.channel {
        case .sms, .push: .text
        case .email: .email
        case .voice: .call
        }
        let actor = Self.actor(message)
        let communication = Communication(id: message.id, contactId: contactId, companyId: message.companyId, channel: channel,
                                          direction: message.direction == .inbound ? .inbound : .outbound, outcome: nil,
                                          subject: message.subject, body: message.body, userId: UUID(uuidString: message.requestedBy),
                                          at: message.sentAt ?? message.createdAt)
        let logged = try outbox.envelope(EventType.communicationLogged, version: contact.version, companyId: contact.companyId, subjectId: contact.id,
                                         data: CommunicationLogged(communication: communication, contact: contact, actor: actor))
        if message.direction == .inbound {
            let entry = TimelineEntry(id: message.id, contactId: contactId, kind: "communication", at: message.createdAt, actor: actor,
                                      summary: "Inbound \(channel.rawValue) from \(message.from ?? "unknown")",
                                      data: Self.data(message))
            if try await contacts.writeTimeline([(entry, message.companyId)], replacingNewer: "version", on: connection).contains(message.id) {
                try await outbox.publish([logged], on: connection, logger: contacts.logger)
            }
            return
        }
        var summary = "\(Self.noun(message.channel)) \(message.state.rawValue)"
        if let reason = message.reason { summary += ": \(ContactRules.words(reason))" }
        if let until = message.holdUntil, message.state == .held { summary += " until \(RFC3339.string(from: until))" }
        let entry = TimelineEntry(id: message.id, contactId: contactId, kind: "message", at: message.createdAt, actor: actor, summary: summary,
                                  data: Self.data(message))
        let written = try await contacts.writeTimeline([(entry, message.companyId)], replacingNewer: "version", on: connection)
        // An agent's own text or e-mail counts as their contact with the lead, once, when it leaves.
        if written.contains(message.id), message.purpose == .manual, message.state == .sent {
            try await outbox.publish([logged], on: connection, logger: contacts.logger)
        }
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
