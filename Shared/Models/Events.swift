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
/// `entity.upserted` carries an `Entity`, `user.upserted` a `User` (the same views the API answers).
public enum EventType {
    public static let entityUpserted = "entity.upserted"
    public static let userUpserted = "user.upserted"
    public static let userLoggedIn = "user.logged_in"
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
