import Foundation

public struct Company: Codable, Sendable, Hashable {
    public var id: UUID
    public var name: String
    public var bypassListingAgent: Bool
    public var createdAt: Date
    public init(id: UUID, name: String, bypassListingAgent: Bool, createdAt: Date) {
        self.id = id
        self.name = name
        self.bypassListingAgent = bypassListingAgent
        self.createdAt = createdAt
    }
}

public struct Entity: Codable, Sendable, Hashable {
    public var id: UUID
    public var companyId: UUID
    public var parentId: UUID?
    public var kind: EntityKind
    public var name: String
    public var timeZone: String
    public var officeHours: [OfficeHoursDay]
    /// The office's (or the company's) postal address, which every automated e-mail carries
    /// (CAN-SPAM); an entity without one uses the nearest above it.
    public var postalAddress: String?
    public var version: Int
    public var createdAt: Date
    public var updatedAt: Date
    public init(id: UUID, companyId: UUID, parentId: UUID?, kind: EntityKind, name: String, timeZone: String, officeHours: [OfficeHoursDay],
                postalAddress: String? = nil, version: Int, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.companyId = companyId
        self.parentId = parentId
        self.kind = kind
        self.name = name
        self.timeZone = timeZone
        self.officeHours = officeHours
        self.postalAddress = postalAddress
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

public struct User: Codable, Sendable, Hashable {
    public var id: UUID
    public var companyId: UUID?
    public var role: Role
    public var entityIds: [UUID]
    public var firstName: String
    public var lastName: String
    public var email: String
    public var mobilePhone: String?
    public var timeZone: String
    public var rotation: Rotation
    public var prefersPush: Bool
    /// The agent's own lender, attached to the leads routed to them unless the routing rule
    /// names another (RT-6).
    public var lenderId: UUID?
    public var active: Bool
    public var version: Int
    public var createdAt: Date
    public var updatedAt: Date
    public init(id: UUID, companyId: UUID?, role: Role, entityIds: [UUID], firstName: String, lastName: String, email: String, mobilePhone: String?, timeZone: String, rotation: Rotation, prefersPush: Bool, lenderId: UUID? = nil, active: Bool, version: Int, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.companyId = companyId
        self.role = role
        self.entityIds = entityIds
        self.firstName = firstName
        self.lastName = lastName
        self.email = email
        self.mobilePhone = mobilePhone
        self.timeZone = timeZone
        self.rotation = rotation
        self.prefersPush = prefersPush
        self.lenderId = lenderId
        self.active = active
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// A page of a list: `nextCursor` is absent on the last page.
public struct Page<Item: Codable & Sendable>: Codable, Sendable {
    public var items: [Item]
    public var nextCursor: String?
    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}
