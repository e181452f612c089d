import Models

/// Which service receives which event: the whole flow of the system, in one table.
/// The outbox writes one row per subscriber listed here, in the transaction of the change.
package enum Subscriptions {
    package static let table: [String: [ServiceName]] = [
        EventType.entityUpserted: [.routing, .automation, .accountability, .smartplans, .notifications],
        EventType.userUpserted: [.routing, .automation, .accountability, .smartplans, .notifications],
        EventType.userLoggedIn: [.accountability],
        EventType.contactCreated: contactReaders,
        EventType.contactUpdated: contactReaders,
        EventType.contactStatusChanged: contactReaders,
        EventType.contactTagsChanged: contactReaders,
        EventType.contactAssigned: contactReaders,
        EventType.contactDeleted: contactReaders,
        EventType.contactsImported: contactReaders,
        EventType.tagRenamed: contactReaders,
        EventType.tagDeleted: contactReaders,
        EventType.communicationLogged: [.automation, .accountability],
        EventType.taskChanged: [.accountability],
        EventType.activityRequested: [.accountability],
        EventType.messageUpdated: [.contacts],
        EventType.messageFailed: [.smartplans],
        EventType.messageKeypress: [.routing],
        EventType.messageDialed: [.accountability],
    ]

    /// The services that decide on contacts (routing, behaviors, accountability, plans) and the
    /// one that resolves them to numbers, addresses and time zones (notifications).
    static let contactReaders: [ServiceName] = [.routing, .automation, .accountability, .smartplans, .notifications]

    /// How long a subscriber's delivery lane lets events gather after it is woken, so they
    /// travel in one request and one transaction instead of one each. Routing (speed to lead)
    /// and contacts (the timeline) take every event at once. Notifications takes them 50 ms
    /// later: its replica only resolves contacts to numbers and addresses, and a contact it does
    /// not have yet, or whose assignment it has not seen yet, is asked of contacts itself. The
    /// services that only keep replicas for decisions measured in minutes take them a tenth of
    /// a second later, in batches.
    package static let linger: [ServiceName: Duration] = [
        .notifications: .milliseconds(50),
        .automation: .milliseconds(100),
        .accountability: .milliseconds(100),
        .smartplans: .milliseconds(100),
    ]

    /// Events a service caused that are not sent back to it. Routing writes the assignments it
    /// decides through contacts, and its own record of the lead already says who has it; its
    /// contact replica keeps what offers and notices show (names, interests), which an
    /// assignment does not change. Sent back, every routed lead cost one more delivery and
    /// transaction in routing that changed nothing. An assignment made by anyone else still
    /// reaches routing: the lead was assigned by hand, and open offers are withdrawn.
    package static let notEchoed: [String: Set<ServiceName>] = [
        EventType.contactAssigned: [.routing],
    ]

    package static func subscribers(of type: String, causedBy: ServiceName? = nil) -> [ServiceName] {
        let all = table[type] ?? []
        guard let causedBy, notEchoed[type]?.contains(causedBy) == true else { return all }
        return all.filter { $0 != causedBy }
    }

    /// The event types `service` receives.
    package static func events(for service: ServiceName) -> Set<String> {
        Set(table.filter { $0.value.contains(service) }.keys)
    }
}
