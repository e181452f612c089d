import Foundation
import Models

/// What a change to a contact means: the timeline entries it writes (ST-5, ST-9) and the events
/// it publishes (ST-11). Pure: the old and new contact in, the record out.
enum ContactHistory {
    struct Record: Sendable, Equatable {
        var kind: String
        var summary: String
        var data: JSONValue
        var eventType: String
        var change: ContactChange
    }

    static func describe(_ actor: Actor) -> String {
        switch actor.kind {
        case .user: actor.name ?? "a user"
        case .source: "lead source \(actor.name ?? actor.id)"
        case .integration: "the \(actor.name ?? actor.id) integration"
        case .import: "a CSV import"
        case .service: "the \(actor.id) service"
        }
    }

    static func changes(from old: Contact?, to new: Contact, actor: Actor, reason: String? = nil) -> [Record] {
        guard let old else {
            let how = new.origin.isSource ? "came in from \(describe(actor))" : "was created by \(describe(actor))"
            return [Record(kind: "created", summary: "Contact \(how) as \(ContactRules.label(new.status))",
                           data: .object(["status": .string(new.status.rawValue), "origin": .string(new.origin.rawValue)]),
                           eventType: ContactEvents.created, change: ContactChange(reason: reason))]
        }
        var records: [Record] = []
        if old.status != new.status {
            records.append(Record(
                kind: "status_change",
                summary: ContactRules.statusSummary(from: old.status, to: new.status, reason: reason) + " (by \(describe(actor)))",
                data: .object(["from": .string(old.status.rawValue), "to": .string(new.status.rawValue), "reason": reason.map(JSONValue.string) ?? .null]),
                eventType: ContactEvents.statusChanged, change: ContactChange(previousStatus: old.status, reason: reason)))
        }
        let added = new.tags.filter { !old.tags.contains($0) }
        let removed = old.tags.filter { !new.tags.contains($0) }
        if !added.isEmpty || !removed.isEmpty {
            var parts: [String] = []
            if !added.isEmpty { parts.append("added \(added.map { "#\($0)" }.joined(separator: ", "))") }
            if !removed.isEmpty { parts.append("removed \(removed.map { "#\($0)" }.joined(separator: ", "))") }
            records.append(Record(
                kind: "tags", summary: "Tags \(parts.joined(separator: "; ")) by \(describe(actor))",
                data: .object(["added": .array(added.map(JSONValue.string)), "removed": .array(removed.map(JSONValue.string))]),
                eventType: ContactEvents.tagsChanged, change: ContactChange(tagsAdded: added, tagsRemoved: removed)))
        }
        if old.assignedAgentId != new.assignedAgentId || old.pondId != new.pondId {
            let target = new.assignedAgentId.map { "agent \($0.lowercasedString)" } ?? new.pondId.map { "pond \($0.lowercasedString)" } ?? "nobody"
            records.append(Record(
                kind: "assignment", summary: "Assigned to \(target) by \(describe(actor))",
                data: .object(["agentId": new.assignedAgentId.map { .string($0.lowercasedString) } ?? .null,
                               "previousAgentId": old.assignedAgentId.map { .string($0.lowercasedString) } ?? .null,
                               "pondId": new.pondId.map { .string($0.lowercasedString) } ?? .null]),
                eventType: ContactEvents.assigned, change: ContactChange(reason: reason, previousAgentId: old.assignedAgentId)))
        }
        let fields = changedFields(old, new)
        if !fields.isEmpty {
            records.append(Record(
                kind: "updated", summary: "Updated \(fields.joined(separator: ", ")) (by \(describe(actor)))",
                data: .object(["fields": .array(fields.map(JSONValue.string))]),
                eventType: ContactEvents.updated, change: ContactChange(reason: reason)))
        }
        return records
    }

    /// Fields other than status, tags and assignment, which have records of their own.
    static func changedFields(_ old: Contact, _ new: Contact) -> [String] {
        var fields: [String] = []
        if old.firstName != new.firstName { fields.append("first name") }
        if old.lastName != new.lastName { fields.append("last name") }
        if old.emails != new.emails { fields.append("e-mails") }
        if old.phones != new.phones { fields.append("phones") }
        if old.leadType != new.leadType { fields.append("lead type") }
        if old.source != new.source { fields.append("source") }
        if old.lenderId != new.lenderId { fields.append("lender") }
        if old.address != new.address { fields.append("address") }
        if old.searchInterest != new.searchInterest { fields.append("search interest") }
        if old.listing != new.listing { fields.append("listing") }
        if old.behavioralAlerts != new.behavioralAlerts { fields.append("behavioral alerts") }
        if old.ownerEntityId != new.ownerEntityId { fields.append("owner") }
        return fields
    }
}

enum ContactEvents {
    static let created = EventType.contactCreated
    static let updated = EventType.contactUpdated
    static let statusChanged = EventType.contactStatusChanged
    static let tagsChanged = EventType.contactTagsChanged
    static let assigned = EventType.contactAssigned
}
