import Foundation
import Hummingbird
import Models
import PostgresNIO
import ServiceKit

extension BehaviorSettings: ResponseEncodable {}

/// A scope's behavior settings (BA-3, BA-8, BA-9, BA-10) and a contact's behaviors with what
/// each sent or why it sent nothing.
struct BehaviorController {
    let client: PostgresClient
    let clock: any ServiceClock
    let logger: Logger

    struct ScopeSettings: ResponseEncodable {
        var entityId: UUID
        /// The entity whose settings apply (itself or the nearest above it), nil for the defaults.
        var inheritedFrom: UUID?
        var settings: BehaviorSettings
        /// Every behavior's text and e-mail as they will be sent (the scope's own or the defaults).
        var templates: [String: BehaviorSettings.Template]
        var monitoredStatuses: [ContactStatus]
    }

    struct FiringView: Codable, Sendable {
        var id: UUID
        var behavior: Behavior
        var summary: String
        var at: Date
        var firedAt: Date
        var listingId: String?
        var eventIds: [UUID]
        var outcome: BehaviorEngine.Outcome?
    }

    struct Firings: ResponseEncodable { var items: [FiringView] }

    func register(on group: RouterGroup<AppContext>) {
        group.get("/v1/automation/settings/{entityId}") { _, context -> ScopeSettings in
            let identity = try context.requireIdentity()
            let entityId = try context.pathID("entityId")
            return try await client.withConnection { connection in
                try await requireManaged(entityId, identity: identity, on: connection)
                return try await scope(entityId, on: connection)
            }
        }
        group.put("/v1/automation/settings/{entityId}") { request, context -> ScopeSettings in
            let identity = try context.requireIdentity()
            let entityId = try context.pathID("entityId")
            let settings = try await request.decodeJSON(as: BehaviorSettings.self, context: context)
            try settings.validate()
            return try await client.withConnection { connection in
                let companyId = try await requireManaged(entityId, identity: identity, on: connection)
                try await connection.query("""
                    INSERT INTO behavior_settings (entity_id, company_id, doc, updated_at)
                    VALUES (\(entityId), \(companyId), \(String(decoding: try JSONCoding.encoder.encode(settings), as: UTF8.self))::jsonb, \(clock.now))
                    ON CONFLICT (entity_id) DO UPDATE SET doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at
                    """, logger: logger)
                return try await scope(entityId, on: connection)
            }
        }
        group.get("/v1/automation/contacts/{id}/behaviors") { _, context -> Firings in
            let identity = try context.requireIdentity()
            let contactId = try context.pathID("id")
            // 404 unless the caller may see the contact.
            _ = try await TemplatePreviewController(client: client, logger: logger).values(for: contactId, identity: identity)
            var items: [FiringView] = []
            for try await (id, name, at, firedAt, listing, events, outcome) in try await client.query("""
                SELECT id, behavior, at, fired_at, listing_id, event_ids, outcome::text FROM behavior_firings
                WHERE contact_id = \(contactId) ORDER BY fired_at DESC, at DESC LIMIT 200
                """, logger: logger).decode((UUID, String, Date, Date, String?, [UUID], String?).self) {
                guard let behavior = Behavior(rawValue: name) else { continue }
                let decoded = try outcome.map { try JSONCoding.decoder.decode(BehaviorEngine.Outcome.self, from: Data($0.utf8)) }
                items.append(FiringView(id: id, behavior: behavior, summary: behavior.summary, at: at, firedAt: firedAt, listingId: listing,
                                        eventIds: events, outcome: decoded))
            }
            return Firings(items: items)
        }
    }

    /// The entity's company when the caller administers it; 404 for another company's entity.
    @discardableResult
    private func requireManaged(_ entityId: UUID, identity: Identity, on connection: PostgresConnection) async throws -> UUID {
        guard identity.role.isAdmin || identity.isPlatformAdmin else { throw APIError.forbidden }
        var company: UUID?
        for try await id in try await connection.query("SELECT company_id FROM directory_entities WHERE id = \(entityId)", logger: logger)
            .decode(UUID.self) { company = id }
        guard let company, identity.isPlatformAdmin || company == identity.companyId else { throw APIError.notFound("entity \(entityId)") }
        if let managed = try await DirectoryReplica.managedEntities(of: identity, on: connection, logger: logger), !managed.contains(entityId) {
            throw APIError.forbidden
        }
        return company
    }

    private func scope(_ entityId: UUID, on connection: PostgresConnection) async throws -> ScopeSettings {
        let (from, settings) = try await BehaviorEngine.settings(for: entityId, on: connection, logger: logger)
        var templates: [String: BehaviorSettings.Template] = [:]
        for behavior in Behavior.allCases { templates[behavior.rawValue] = settings.template(for: behavior) }
        return ScopeSettings(entityId: entityId, inheritedFrom: from, settings: settings, templates: templates,
                             monitoredStatuses: ContactStatus.allCases.filter { settings.monitored.contains($0) })
    }
}
