import Foundation
import Models
import PostgresNIO
import ServiceKit

/// Finds who a message is for and whether the caller may reach them: services anyone,
/// admins their company's contacts and users, agents and lenders their own contacts.
struct Recipients: Sendable {
    let store: MessageStore
    let peers: PeerClient

    func resolve(contactId: UUID?, userId: UUID?, identity: Identity, on connection: PostgresConnection) async throws -> Recipient {
        if let contactId {
            guard var recipient = try await contact(contactId, on: connection), identity.isService || identity.companyId == recipient.companyId else {
                throw APIError.notFound("contact \(contactId)")
            }
            if !identity.isService && !identity.role.isAdmin && recipient.assignedAgentId != identity.userId {
                // The replica may not have the assignment of a moment ago yet: contacts has the last word.
                guard let current = try await fromContacts(contactId, on: connection), current.assignedAgentId == identity.userId else {
                    throw APIError.notFound("contact \(contactId)")
                }
                recipient = current
            }
            return recipient
        }
        guard let userId, let recipient = try await store.userRecipient(userId, on: connection),
              identity.isService || identity.companyId == recipient.companyId else {
            throw APIError.notFound("user \(userId?.uuidString.lowercased() ?? "")")
        }
        return recipient
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
        let response = try await peers.get(from: .contacts, path: "/v1/contacts/\(id.uuidString.lowercased())")
        guard response.status == 200 else { return nil }
        let contact = try JSONCoding.decoder.decode(Contact.self, from: Data(response.body.utf8))
        return store.recipient(from: contact, entityZone: try await store.entityZone(contact.ownerEntityId, on: connection))
    }
}
