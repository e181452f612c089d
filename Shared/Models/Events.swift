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

    public init(id: UUID = UUID(), type: String, version: Int, occurredAt: Date, companyId: UUID?, subjectId: UUID?, data: JSONValue) {
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
public enum EventType {
    public static let companyCreated = "company.created"
    public static let entityUpserted = "entity.upserted"
    public static let userUpserted = "user.upserted"
    public static let userLoggedIn = "user.logged_in"
}

public struct CompanyCreated: Codable, Sendable, Hashable {
    public var companyId: UUID
    public var name: String
    public var rootEntityId: UUID
    public init(companyId: UUID, name: String, rootEntityId: UUID) {
        self.companyId = companyId
        self.name = name
        self.rootEntityId = rootEntityId
    }
}

public struct EntityUpserted: Codable, Sendable, Hashable {
    public var entityId: UUID
    public var companyId: UUID
    public var parentId: UUID?
    public var kind: EntityKind
    public var name: String
    public var timeZone: String
    public var officeHours: [OfficeHoursDay]
    public init(entityId: UUID, companyId: UUID, parentId: UUID?, kind: EntityKind, name: String, timeZone: String, officeHours: [OfficeHoursDay]) {
        self.entityId = entityId
        self.companyId = companyId
        self.parentId = parentId
        self.kind = kind
        self.name = name
        self.timeZone = timeZone
        self.officeHours = officeHours
    }
}

public struct UserUpserted: Codable, Sendable, Hashable {
    public var userId: UUID
    public var companyId: UUID
    public var role: Role
    public var entityIds: [UUID]
    public var firstName: String
    public var lastName: String
    public var email: String
    public var mobilePhone: String?
    public var timeZone: String
    public var rotation: Rotation
    public var active: Bool
    public init(userId: UUID, companyId: UUID, role: Role, entityIds: [UUID], firstName: String, lastName: String, email: String, mobilePhone: String?, timeZone: String, rotation: Rotation, active: Bool) {
        self.userId = userId
        self.companyId = companyId
        self.role = role
        self.entityIds = entityIds
        self.firstName = firstName
        self.lastName = lastName
        self.email = email
        self.mobilePhone = mobilePhone
        self.timeZone = timeZone
        self.rotation = rotation
        self.active = active
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
