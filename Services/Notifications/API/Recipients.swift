import Foundation
import Models
import PostgresNIO
import ServiceKit

/// Finds who a message is for and whether the caller may reach them (X-1): services anyone,
/// admins their company's contacts and users, agents and lenders their own contacts.
struct Recipients: Sendable {
    let store: MessageStore
    let peers: PeerClient

    /// The recipient if the caller may reach them (X-1): services anyone; company admins their
    /// company; office and team admins the contacts their entities own and the users of those
    /// entities; agents and lenders their assigned contacts and any user of their company.
    /// Another company's, or one out of the caller's reach, is 404.
    func resolve(contactId: UUID?, userId: UUID?, identity: Identity, on connection: PostgresConnection) async throws -> Recipient {
        if let contactId {
            let unknown = APIError.notFound("contact \(contactId)")
            guard var recipient = try await contact(contactId, on: connection), identity.isService || identity.companyId == recipient.companyId else {
                throw unknown
            }
            if let managed = try await managedEntities(identity, on: connection) {
                // The replica may not have an ownership change of a moment ago: contacts has the last word.
                if !(recipient.ownerEntityId.map(managed.contains) ?? false) {
                    guard let current = try await fromContacts(contactId, on: connection), current.ownerEntityId.map(managed.contains) ?? false else {
                        throw unknown
                    }
                    recipient = current
                }
            } else if !identity.isService && !identity.role.isAdmin && recipient.assignedAgentId != identity.userId {
                // The replica may not have the assignment of a moment ago yet: contacts has the last word.
                guard let current = try await fromContacts(contactId, on: connection), current.assignedAgentId == identity.userId else {
                    throw unknown
                }
                recipient = current
            }
            return recipient
        }
        let unknown = APIError.notFound("user \(userId?.lowercasedString ?? "")")
        guard let userId, let recipient = try await store.userRecipient(userId, on: connection),
              identity.isService || identity.companyId == recipient.companyId else {
            throw unknown
        }
        if userId != identity.userId, let managed = try await managedEntities(identity, on: connection),
           try await store.userEntities(userId, on: connection).isDisjoint(with: managed) {
            throw unknown
        }
        return recipient
    }

    /// An office or team admin's entities and those under them (nil: not limited by entity).
    func managedEntities(_ identity: Identity, on connection: PostgresConnection) async throws -> Set<UUID>? {
        try await DirectoryReplica.managedEntities(of: identity, on: connection, logger: store.logger)
    }

    func managedEntities(_ identity: Identity) async throws -> Set<UUID>? {
        guard identity.role == .officeAdmin || identity.role == .teamAdmin else { return nil }
        return try await store.client.withConnection { connection in try await managedEntities(identity, on: connection) }
    }

    func requireVisibleUser(_ id: UUID, identity: Identity) async throws {
        _ = try await store.client.withConnection { connection in
            try await resolve(contactId: nil, userId: id, identity: identity, on: connection)
        }
    }

    func requireVisibleContact(_ id: UUID, identity: Identity) async throws {
        _ = try await store.client.withConnection { connection in
            try await resolve(contactId: id, userId: nil, identity: identity, on: connection)
        }
    }

    /// The replica first; a contact created a moment ago may not have reached it yet, so
    /// contacts itself is asked then.
    private func contact(_ id: UUID, on connection: PostgresConnection) async throws -> Recipient? {
        if let found = try await store.contactRecipient(id, on: connection) { return found }
        return try await fromContacts(id, on: connection)
    }

    private func fromContacts(_ id: UUID, on connection: PostgresConnection) async throws -> Recipient? {
        let response = try await peers.get(from: .contacts, path: "/v1/contacts/\(id.lowercasedString)")
        guard response.status == 200 else { return nil }
        let contact = try JSONCoding.decoder.decode(Contact.self, from: Data(response.body.utf8))
        return store.recipient(from: contact, entityZone: try await store.entityZone(contact.ownerEntityId, on: connection))
    }
}
