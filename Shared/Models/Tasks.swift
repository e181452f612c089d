import Foundation

/// A task on a contact (ST-10): a to-do, a call to make or a text to send, for its assignee.
public struct ContactTask: Codable, Sendable, Hashable {
    public enum Kind: String, WireEnum { case task, call, text }
    public enum Priority: String, WireEnum { case none, high, medium, low }

    public var id: UUID
    public var contactId: UUID
    public var companyId: UUID
    public var kind: Kind
    public var title: String
    public var description: String?
    public var links: [String]
    public var priority: Priority
    public var dueAt: Date?
    public var assigneeId: UUID?
    public var completedAt: Date?
    public var callOutcome: CallOutcome?
    public var version: Int
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: UUID, contactId: UUID, companyId: UUID, kind: Kind, title: String, description: String?, links: [String], priority: Priority,
                dueAt: Date?, assigneeId: UUID?, completedAt: Date?, callOutcome: CallOutcome?, version: Int, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.contactId = contactId
        self.companyId = companyId
        self.kind = kind
        self.title = title
        self.description = description
        self.links = links
        self.priority = priority
        self.dueAt = dueAt
        self.assigneeId = assigneeId
        self.completedAt = completedAt
        self.callOutcome = callOutcome
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// `task.changed`: a task created, changed or completed, as it is after (AC-4, AC-7 count them).
public struct TaskChanged: Codable, Sendable, Hashable {
    public enum Change: String, WireEnum { case created, updated, completed }
    public var change: Change
    public var task: ContactTask
    public var actor: Actor
    public init(change: Change, task: ContactTask, actor: Actor) {
        self.change = change
        self.task = task
        self.actor = actor
    }
}
