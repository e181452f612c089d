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
    /// A call, text or e-mail logged with a contact (`CommunicationLogged`).
    public static let communicationLogged = "communication.logged"
    /// A message of the delivery log changed state or arrived (`MessageUpdated`).
    public static let messageUpdated = "message.updated"
    /// Keys pressed on a voice call (`MessageKeypress`), for the service that asked.
    public static let messageKeypress = "message.keypress"
    /// All the contact events that carry `ContactChanged`.
    public static let contactChanges = [contactCreated, contactUpdated, contactStatusChanged, contactTagsChanged, contactAssigned, contactDeleted]
}

public struct ContactsImported: Codable, Sendable, Hashable {
    public var contacts: [Contact]
    public var actor: Actor
    public init(contacts: [Contact], actor: Actor) {
        self.contacts = contacts
        self.actor = actor
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
