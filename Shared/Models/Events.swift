import Foundation

/// The envelope every event travels in, between every pair of services.
public struct EventEnvelope: Codable, Sendable, Hashable {
    public var id: UUID
    public var type: String
    /// The subject's version after the change, so receivers can ignore stale state.
    public var version: Int
    public var occurredAt: Date
    public var companyId: UUID?
    public var subjectId: UUID?
    public var data: JSONValue

    public init(id: UUID = UUID.random(), type: String, version: Int, occurredAt: Date, companyId: UUID?, subjectId: UUID?, data: JSONValue) {
        self.id = id
        self.type = type
        self.version = version
        self.occurredAt = occurredAt
        self.companyId = companyId
        self.subjectId = subjectId
        self.data = data
    }
}

/// Event type names. Which service receives which is in ServiceKit's `Subscriptions`.
/// `entity.upserted` carries an `Entity`, `user.upserted` a `User` (the same views the API answers).
public enum EventType {
    public static let entityUpserted = "entity.upserted"
    public static let userUpserted = "user.upserted"
    public static let userLoggedIn = "user.logged_in"
    /// Contact events carry `ContactChanged`: the contact after the change, who, and what (ST-11).
    public static let contactCreated = "contact.created"
    public static let contactUpdated = "contact.updated"
    public static let contactStatusChanged = "contact.status_changed"
    public static let contactTagsChanged = "contact.tags_changed"
    public static let contactAssigned = "contact.assigned"
    public static let contactDeleted = "contact.deleted"
    /// A batch of imported contacts (`ContactsImported`): one event per few hundred rows.
    public static let contactsImported = "contacts.imported"
    /// A company's tag renamed or deleted in its settings (`TagChanged`), for every contact that
    /// had it at once (SP-8: a plan's trigger follows the rename and goes with the deletion).
    public static let tagRenamed = "tag.renamed"
    public static let tagDeleted = "tag.deleted"
    /// A showing request or question from the website by a known contact (`ActivityRequested`, AC-6).
    public static let activityRequested = "activity.requested"
    /// A task created, changed or completed (`TaskChanged`).
    public static let taskChanged = "task.changed"
    /// A call, text or e-mail logged with a contact (`CommunicationLogged`).
    public static let communicationLogged = "communication.logged"
    /// A message of the delivery log changed state or arrived (`MessageUpdated`).
    public static let messageUpdated = "message.updated"
    /// An outbound message accepted earlier failed or was suppressed (`MessageUpdated`), for the
    /// service that asked when it follows its messages' fate (a SmartPlan's figures, SP-7); it
    /// hears nothing of the others' messages.
    public static let messageFailed = "message.failed"
    /// Keys pressed on a voice call (`MessageKeypress`), for the service that asked.
    public static let messageKeypress = "message.keypress"
    public static let messageDialed = "message.dialed"
    /// All the contact events that carry `ContactChanged`.
    public static let contactChanges = [contactCreated, contactUpdated, contactStatusChanged, contactTagsChanged, contactAssigned, contactDeleted]
}

/// `tag.renamed` (with `renamedTo`) and `tag.deleted`: the company's tag, how many of its
/// contacts had it, and who changed it.
public struct TagChanged: Codable, Sendable, Hashable {
    public var companyId: UUID
    public var tag: String
    public var renamedTo: String?
    public var contacts: Int
    public var actor: Actor
    public init(companyId: UUID, tag: String, renamedTo: String?, contacts: Int, actor: Actor) {
        self.companyId = companyId
        self.tag = tag
        self.renamedTo = renamedTo
        self.contacts = contacts
        self.actor = actor
    }
}

public struct ContactsImported: Codable, Sendable, Hashable {
    public var contacts: [Contact]
    public var actor: Actor
    /// What the import did to each contact, so SmartPlans triggers and behaviors fire on an
    /// imported status or tag as on a single change (absent from events written before).
    public var changes: [ImportedChange]?
    public init(contacts: [Contact], actor: Actor, changes: [ImportedChange]? = nil) {
        self.contacts = contacts
        self.actor = actor
        self.changes = changes
    }
}

/// One contact's change by an import: created, or its status and tags before and after.
public struct ImportedChange: Codable, Sendable, Hashable {
    public var contactId: UUID
    public var created: Bool
    /// Nil for a created contact.
    public var statusBefore: ContactStatus?
    public var status: ContactStatus
    public var tagsAdded: [String]
    public var tagsRemoved: [String]

    public init(before: Contact?, after: Contact) {
        contactId = after.id
        created = before == nil
        statusBefore = before?.status
        status = after.status
        let old = Set((before?.tags ?? []).map { $0.lowercased() })
        let new = Set(after.tags.map { $0.lowercased() })
        tagsAdded = after.tags.filter { !old.contains($0.lowercased()) }
        tagsRemoved = (before?.tags ?? []).filter { !new.contains($0.lowercased()) }
    }
}

public struct CommunicationLogged: Codable, Sendable, Hashable {
    public var communication: Communication
    public var contact: Contact
    public var actor: Actor
    public init(communication: Communication, contact: Contact, actor: Actor) {
        self.communication = communication
        self.contact = contact
        self.actor = actor
    }
}

public struct UserLoggedIn: Codable, Sendable, Hashable {
    public var userId: UUID
    public var companyId: UUID
    public var at: Date
    public init(userId: UUID, companyId: UUID, at: Date) {
        self.userId = userId
        self.companyId = companyId
        self.at = at
    }
}

/// A showing request or question a contact asked on the website (BA-1), for AC-6's follow-up check.
public struct ActivityRequested: Codable, Sendable, Hashable {
    public var activityId: UUID
    public var companyId: UUID
    public var contactId: UUID
    /// `showing_request` or `question`.
    public var kind: String
    public var at: Date
    public var listingId: String?
    public var message: String?
    public init(activityId: UUID, companyId: UUID, contactId: UUID, kind: String, at: Date, listingId: String?, message: String?) {
        self.activityId = activityId
        self.companyId = companyId
        self.contactId = contactId
        self.kind = kind
        self.at = at
        self.listingId = listingId
        self.message = message
    }
}
