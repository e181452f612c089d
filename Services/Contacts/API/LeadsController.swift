import Crypto
import Foundation
import Hummingbird
import Models
import ServiceKit

extension LeadSource: ResponseEncodable {}

/// Lead sources (a website, a dropbox address, a Zapier zap) with their API keys, and
/// `POST /v1/leads`, where their leads come in.
struct LeadsController {
    let crm: CRMStore
    let contacts: ContactStore
    let writer: ContactWriter
    let access: ContactAccess
    let clock: any ServiceClock

    struct NewSource: Decodable {
        var name: String
        var origin: CreationOrigin
        var entityId: UUID
        var agentId: UUID?
    }

    struct CreatedSource: Encodable, Sendable {
        var source: LeadSource
        /// Shown once; only its hash is stored.
        var apiKey: String
    }

    /// What a website or integration sends for one lead.
    struct Lead: Decodable {
        var firstName: String?
        var lastName: String?
        var email: EmailAddress?
        var emails: [EmailAddress]?
        var phone: PhoneNumber?
        var phones: [PhoneNumber]?
        var leadType: LeadType?
        var source: String?
        var tags: [String]?
        var address: Address?
        var searchInterest: SearchInterest?
        var listing: ListingInterest?
    }

    struct IntakeResult: Encodable, Sendable {
        var contact: Contact
        /// False when the lead matched an existing contact by e-mail or phone and was merged into it.
        var created: Bool
    }

    func register(open: RouterGroup<AppContext>, authenticated: RouterGroup<AppContext>) {
        authenticated.post("/v1/lead-sources") { request, context -> JSONResponse<CreatedSource> in
            let identity = try context.requireIdentity()
            try identity.require(.companyAdmin, .officeAdmin, .teamAdmin)
            let input = try await request.decodeJSON(as: NewSource.self, context: context)
            guard input.origin.isSource else {
                throw APIError.validation("origin", "origin must be website, dropbox or zapier")
            }
            let companyId = try access.access.companyId(of: identity)
            guard try await access.directory.entity(input.entityId, companyId: companyId) != nil,
                  try await access.access.managedEntities(of: identity)?.contains(input.entityId) ?? true
            else { throw APIError.validation("entityId", "entityId is not an entity you manage") }
            if let agent = input.agentId {
                _ = try await access.assignableAgent(agent, companyId: companyId, field: "agentId")
            }
            let key = Self.newKey()
            let source = LeadSource(id: UUID.random(), companyId: companyId, entityId: input.entityId,
                                    name: try DirectoryRules.name(input.name, field: "name"), origin: input.origin, agentId: input.agentId,
                                    keyPrefix: String(key.prefix(10)), active: true, createdAt: clock.now)
            try await crm.createSource(source, key: key)
            return JSONResponse(.created, CreatedSource(source: source, apiKey: key))
        }
        authenticated.get("/v1/lead-sources") { _, context -> Page<LeadSource> in
            let identity = try context.requireIdentity()
            try identity.require(.companyAdmin, .officeAdmin, .teamAdmin)
            return Page(items: try await crm.sources(companyId: try access.access.companyId(of: identity)), nextCursor: nil)
        }
        authenticated.delete("/v1/lead-sources/{id}") { _, context -> HTTPResponse.Status in
            let identity = try context.requireIdentity()
            try identity.require(.companyAdmin, .officeAdmin, .teamAdmin)
            let id = try context.pathID("id")
            guard try await crm.deactivateSource(id, companyId: try access.access.companyId(of: identity)) else {
                throw APIError.notFound("lead source \(id)")
            }
            return .noContent
        }

        open.post("/v1/leads") { request, context -> JSONResponse<IntakeResult> in
            guard let key = request.headers[.init("X-Api-Key")!], !key.isEmpty, key.count <= 200,
                  let source = try await crm.source(key: key)
            else {
                throw APIError(.unauthorized, code: "invalid_api_key", message: "send the lead source's key in X-Api-Key")
            }
            let lead = try await request.decodeJSON(as: Lead.self, context: context)
            let draft = try ContactRules.validate(ContactDraft(
                status: .newLead, firstName: lead.firstName, lastName: lead.lastName,
                emails: (lead.email.map { [$0] } ?? []) + (lead.emails ?? []), phones: (lead.phone.map { [$0] } ?? []) + (lead.phones ?? []),
                leadType: lead.leadType, source: lead.source ?? source.name, tags: lead.tags ?? [], address: lead.address,
                searchInterest: lead.searchInterest, listing: lead.listing))
            let actor = Actor(kind: .source, id: source.id.lowercasedString, name: source.name)
            let now = clock.now
            let contact = Contact(
                id: UUID.random(), companyId: source.companyId, ownerEntityId: source.entityId, status: .newLead, firstName: draft.firstName,
                lastName: draft.lastName, emails: draft.emails.map(\.value), phones: draft.phones.map(\.e164), leadType: draft.leadType,
                source: draft.source, sourceId: source.id, tags: draft.tags, assignedAgentId: nil, lenderId: nil, pondId: nil,
                address: draft.address, searchInterest: draft.searchInterest, listing: draft.listing, agentSiteAgentId: source.agentId,
                origin: source.origin, behavioralAlerts: true, version: 1, createdAt: now, updatedAt: now)
            do {
                try await writer.create(contact, actor: actor)
                return JSONResponse(.created, IntakeResult(contact: contact, created: true))
            } catch let taken as ContactPointTaken {
                // A returning lead: merged into the contact they already are, status kept. Most
                // leads are new, so they are written first and looked up only when one is not.
                let matches = try await contacts.matching(companyId: source.companyId, emails: draft.emails.map(\.value), phones: draft.phones.map(\.e164))
                guard let existingId = matches.keys.sorted().first,
                      let existing = try await contacts.contact(existingId, companyId: source.companyId)
                else { throw ContactWriter.duplicate(taken, in: contact) }
                var merged = draft
                merged.status = nil
                let updated = try await writer.write(old: existing, new: ContactRules.merge(merged, into: existing), actor: actor,
                                                     reason: "registered again through \(source.name)")
                return JSONResponse(.ok, IntakeResult(contact: updated, created: false))
            }
        }
    }

    /// `lk_` and 32 random bytes, URL-safe.
    static func newKey() -> String {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        return "lk_" + bytes.base64URLEncodedString()
    }
}
