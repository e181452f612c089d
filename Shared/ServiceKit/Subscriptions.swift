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
        EventType.communicationLogged: [.automation, .accountability],
        EventType.messageUpdated: [.contacts],
        EventType.messageKeypress: [.routing],
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

    package static func subscribers(of type: String) -> [ServiceName] {
        table[type] ?? []
    }

    /// The event types `service` receives.
    package static func events(for service: ServiceName) -> Set<String> {
        Set(table.filter { $0.value.contains(service) }.keys)
    }
}
