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

    package static func subscribers(of type: String) -> [ServiceName] {
        table[type] ?? []
    }

    /// The event types `service` receives.
    package static func events(for service: ServiceName) -> Set<String> {
        Set(table.filter { $0.value.contains(service) }.keys)
    }
}
