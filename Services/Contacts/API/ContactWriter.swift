import Foundation
import Models
import ServiceKit

/// Writes a contact change with everything that goes with it: the timeline entries and the
/// events ContactHistory says it makes, in one transaction. Every door (API, intake, import,
/// integrations) changes contacts through here.
struct ContactWriter: Sendable {
    let store: ContactStore
    let outbox: Outbox
    let clock: any ServiceClock

    func write(old: Contact?, new: Contact, actor: Actor, reason: String? = nil) async throws -> Contact {
        var contact = new
        let now = clock.now
        if let old {
            let records = ContactHistory.changes(from: old, to: contact, actor: actor, reason: reason)
            guard !records.isEmpty else { return old }
            contact.version = old.version + 1
            contact.updatedAt = now
            let write = try makeWrite(contact, records: records, actor: actor, at: now)
            do {
                guard try await store.update(write, previous: old) else {
                    throw APIError.conflict("the contact changed meanwhile; read it again", code: "version_conflict")
                }
            } catch let taken as ContactPointTaken {
                throw Self.duplicate(taken, in: contact)
            }
        } else {
            do {
                try await create(contact, actor: actor, reason: reason)
            } catch let taken as ContactPointTaken {
                throw Self.duplicate(taken, in: contact)
            }
        }
        return contact
    }

    /// Writes a new contact; an e-mail or phone another contact holds is `ContactPointTaken`.
    func create(_ contact: Contact, actor: Actor, reason: String? = nil) async throws {
        let records = ContactHistory.changes(from: nil, to: contact, actor: actor, reason: reason)
        try await store.create(try makeWrite(contact, records: records, actor: actor, at: clock.now))
    }

    func delete(_ contact: Contact, actor: Actor) async throws {
        var deleted = contact
        deleted.version += 1
        let now = clock.now
        deleted.updatedAt = now
        let event = try outbox.envelope(EventType.contactDeleted, version: deleted.version, companyId: deleted.companyId, subjectId: deleted.id,
                                        data: ContactChanged(contact: deleted, actor: actor, change: ContactChange()))
        let entry = TimelineEntry(contactId: deleted.id, kind: "deleted", at: now, actor: actor, summary: "Deleted by \(ContactHistory.describe(actor))")
        guard try await store.softDelete(ContactWrite(contact: deleted, timeline: [entry], events: [event]), at: now) else {
            throw APIError.conflict("the contact changed meanwhile; read it again", code: "version_conflict")
        }
    }

    func makeWrite(_ contact: Contact, records: [ContactHistory.Record], actor: Actor, at: Date) throws -> ContactWrite {
        let timeline = records.map {
            TimelineEntry(contactId: contact.id, kind: $0.kind, at: at, actor: actor, summary: $0.summary, data: $0.data)
        }
        let events = try records.map {
            var event = try outbox.envelope($0.eventType, version: contact.version, companyId: contact.companyId, subjectId: contact.id,
                                            data: ContactChanged(contact: contact, actor: actor, change: $0.change))
            event.causedBy = actor.kind == .service ? ServiceName(rawValue: actor.id) : nil
            return event
        }
        return ContactWrite(contact: contact, timeline: timeline, events: events)
    }

    static func duplicate(_ taken: ContactPointTaken, in contact: Contact) -> APIError {
        let list = taken.kind == "email" ? contact.emails : contact.phones
        let index = list.firstIndex(of: taken.value) ?? 0
        return APIError(.conflict, code: "duplicate_contact",
                        message: "contact \(taken.contactId.lowercasedString) already has \(taken.value)",
                        field: "\(taken.kind == "email" ? "emails" : "phones")[\(index)]")
    }
}
