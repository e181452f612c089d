import Foundation
import Hummingbird
import Logging
import Models
import PostgresNIO

/// The merge-field list and a template's preview with a real contact's values (SP-4, BA-8), for
/// the services that keep templates (automation, SmartPlans). Reads the contact and directory
/// replicas; the caller sees only the contacts they may see elsewhere: an agent theirs, an
/// office or team admin those of their entities, a company admin the company's.
package struct TemplatePreviewController: Sendable {
    let client: PostgresClient
    let logger: Logger

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    struct Field: Codable, Sendable {
        var name: String
        var meaning: String
    }

    struct Fields: ResponseEncodable {
        var items: [Field]
    }

    struct PreviewRequest: Decodable {
        var contactId: UUID
        var subject: String?
        var body: String
    }

    struct Preview: ResponseEncodable {
        var subject: String?
        var body: String
        /// The fields the template uses that this contact has no value for (their fallback, or
        /// nothing, was used).
        var missing: [String]
    }

    package func register(on group: RouterGroup<AppContext>) {
        group.get("/v1/templates/fields") { _, context -> Fields in
            _ = try context.requireIdentity()
            return Fields(items: MergeField.allCases.map { Field(name: "{\($0.rawValue)}", meaning: $0.meaning) })
        }
        group.post("/v1/templates/preview") { request, context -> Preview in
            let identity = try context.requireIdentity()
            let input = try await request.decodeJSON(as: PreviewRequest.self, context: context)
            let subject = try input.subject.map { try Self.parse($0, field: "subject") }
            let body = try Self.parse(input.body, field: "body")
            let values = try await values(for: input.contactId, identity: identity)
            let used = (subject?.fields ?? []).union(body.fields)
            return Preview(subject: subject?.render(values), body: body.render(values),
                           missing: MergeField.allCases.filter { used.contains($0) && values[$0] == nil }.map { "{\($0.rawValue)}" })
        }
    }

    /// A template parsed, or the 422 that names the input and the field at fault.
    package static func parse(_ text: String, field: String) throws -> MessageTemplate {
        do {
            return try MessageTemplate(text, field: field)
        } catch {
            throw APIError.validation(error.field, error.message, code: "unknown_merge_field")
        }
    }

    /// The contact's merge values, or 404 when the caller may not see the contact.
    package func values(for contactId: UUID, identity: Identity) async throws -> MergeValues {
        try await client.withConnection { connection in
            guard let found = try await rows([contactId], withSnapshots: true, on: connection).first, let snapshot = found.snapshot,
                  try await visible(try JSONCoding.decoder.decode(Contact.self, from: Data(snapshot.utf8)), to: identity, on: connection) else {
                throw APIError.notFound("contact \(contactId)")
            }
            return found.values
        }
    }

    /// Many contacts' merge values in one read, as a service sees them (every contact of the
    /// replica; a deleted or unknown one is absent). The database picks the fields out of each
    /// snapshot: decoding whole snapshots was a sixth of SmartPlans' work per step.
    package func values(for contactIds: [UUID], on connection: PostgresConnection) async throws -> [UUID: MergeValues] {
        var found: [UUID: MergeValues] = [:]
        for row in try await rows(contactIds, withSnapshots: false, on: connection) { found[row.id] = row.values }
        return found
    }

    /// Users' own merge values as agents (a team plan's role agents, SP-2), by id.
    package func agents(_ ids: [UUID], on connection: PostgresConnection) async throws -> [UUID: MergeValues.AgentFacts] {
        guard !ids.isEmpty else { return [:] }
        var found: [UUID: MergeValues.AgentFacts] = [:]
        for try await (id, first, last, email, phone) in try await connection.query("""
            SELECT id, first_name, last_name, email, mobile_phone FROM directory_users WHERE id = ANY(\(Array(Set(ids))))
            """, logger: logger).decode((UUID, String?, String?, String?, String?).self) {
            found[id] = MergeValues.AgentFacts(firstName: first, lastName: last, email: email, phone: phone)
        }
        return found
    }

    /// Each contact's merge values, and its whole snapshot when asked for (to decide who may see it).
    private func rows(_ ids: [UUID], withSnapshots: Bool, on connection: PostgresConnection) async throws
        -> [(id: UUID, snapshot: String?, values: MergeValues)] {
        guard !ids.isEmpty else { return [] }
        return try await connection.prepared(Values.self, .values(Array(Set(ids)), withSnapshots), logger: logger).map { row in
            let (id, snapshot, first, last, email, phone, status, leadType, source, street, city, state, postalCode, area, propertyType, priceMin,
                 priceMax, agentFirst, agentLast, agentEmail, agentPhone, office, company) = try row.decode(
                (UUID, String?, String?, String?, String?, String?, String, String?, String?, String?, String?, String?, String?, String?, String?,
                 Int?, Int?, String?, String?, String?, String?, String?, String?).self)
            let contact = MergeValues.ContactFacts(
                firstName: first, lastName: last, email: email, phone: phone, status: status, leadType: leadType, source: source,
                address: Address(street: street, city: city, state: state, postalCode: postalCode),
                searchInterest: SearchInterest(area: area, propertyType: propertyType, priceMin: priceMin, priceMax: priceMax))
            let agent = agentFirst.map { MergeValues.AgentFacts(firstName: $0, lastName: agentLast ?? "", email: agentEmail ?? "", phone: agentPhone) }
            return (id, snapshot, MergeValues(contact: contact, agent: agent, officeName: office, companyName: company))
        }
    }

    private enum Values: PreparedSQL {
        static let sql = """
            SELECT c.id, CASE WHEN $2::bool THEN c.snapshot::text END, c.snapshot->>'firstName', c.snapshot->>'lastName', c.snapshot->'emails'->>0, c.snapshot->'phones'->>0,
                c.snapshot->>'status', c.snapshot->>'leadType', c.snapshot->>'source',
                c.snapshot->'address'->>'street', c.snapshot->'address'->>'city', c.snapshot->'address'->>'state',
                c.snapshot->'address'->>'postalCode', c.snapshot->'searchInterest'->>'area', c.snapshot->'searchInterest'->>'propertyType',
                (c.snapshot->'searchInterest'->>'priceMin')::int8, (c.snapshot->'searchInterest'->>'priceMax')::int8,
                u.first_name, u.last_name, u.email, u.mobile_phone,
                (WITH RECURSIVE up AS (
                    SELECT id, parent_id, kind, name FROM directory_entities WHERE id = c.owner_entity_id
                    UNION ALL SELECT e.id, e.parent_id, e.kind, e.name FROM directory_entities e JOIN up ON e.id = up.parent_id)
                 SELECT name FROM up WHERE kind = 'office' LIMIT 1),
                (SELECT name FROM directory_entities WHERE company_id = c.company_id AND kind = 'company' LIMIT 1)
            FROM contact_replica c LEFT JOIN directory_users u ON u.id = c.assigned_agent_id
            WHERE c.id = ANY($1::uuid[]) AND NOT c.deleted
            """
    }

    private func visible(_ contact: Contact, to identity: Identity, on connection: PostgresConnection) async throws -> Bool {
        if identity.isService || identity.isPlatformAdmin { return true }
        guard identity.companyId == contact.companyId else { return false }
        switch identity.role {
        case .companyAdmin: return true
        case .officeAdmin, .teamAdmin:
            return try await DirectoryReplica.managedEntities(of: identity, on: connection, logger: logger)?.contains(contact.ownerEntityId) ?? false
        case .agent: return contact.assignedAgentId != nil && contact.assignedAgentId == identity.userId
        default: return false
        }
    }
}
