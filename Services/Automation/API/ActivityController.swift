import Crypto
import Foundation
import Hummingbird
import Models
import ServiceKit

extension Site: ResponseEncodable {}

/// BA-1: the websites that send activity (keys shown once), the activity itself (one event or
/// batches of up to 1,000, by a site's key or a service token), and the join of an anonymous
/// visitor to the contact they became.
struct ActivityController {
    let store: ActivityStore
    let clock: any ServiceClock
    let peers: PeerClient

    struct NewSite: Decodable {
        var name: String
        var entityId: UUID
    }

    struct CreatedSite: ResponseEncodable {
        var site: Site
        var apiKey: String
    }

    struct Sites: ResponseEncodable { var items: [Site] }

    struct Batch: Decodable {
        var events: [ActivityEvent]
        /// Service tokens name the company; a site's key says it.
        var companyId: UUID?
        /// The sender's clock when it sent the batch: a browser's clock may be off by minutes or
        /// days, so each event's time is moved by the difference from this service's clock.
        var sentAt: Date?
    }

    struct Ingested: ResponseEncodable {
        var received: Int
        var stored: Int
        var duplicates: Int
    }

    struct Identify: Decodable {
        var visitorId: String
        var contactId: UUID
        var companyId: UUID?
    }

    struct Joined: ResponseEncodable { var joined: Int }

    func register(open: RouterGroup<AppContext>, authenticated: RouterGroup<AppContext>) {
        authenticated.post("/v1/automation/sites") { request, context -> JSONResponse<CreatedSite> in
            let identity = try context.requireIdentity()
            guard identity.role.isAdmin, let companyId = identity.companyId else { throw APIError.forbidden }
            let input = try await request.decodeJSON(as: NewSite.self, context: context)
            let name = input.name.trimmingCharacters(in: .whitespacesAndNewlines)
            guard (1...100).contains(name.count) else { throw APIError.validation("name", "name is 1 to 100 characters") }
            let managed = try await store.client.withConnection { try await DirectoryReplica.managedEntities(of: identity, on: $0, logger: store.logger) }
            let owner = try await store.client.query(
                "SELECT 1 FROM directory_entities WHERE id = \(input.entityId) AND company_id = \(companyId)", logger: store.logger).collect().count == 1
            guard owner, managed?.contains(input.entityId) ?? true else { throw APIError.validation("entityId", "entityId is not an entity you manage") }
            let key = "site_" + SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64URLEncodedString()
            let site = Site(id: UUID.random(), companyId: companyId, entityId: input.entityId, name: name, keyPrefix: String(key.prefix(12)), active: true,
                            createdAt: clock.now)
            try await store.create(site, key: String(key))
            return JSONResponse(.created, CreatedSite(site: site, apiKey: String(key)))
        }
        authenticated.get("/v1/automation/sites") { _, context -> Sites in
            let identity = try context.requireIdentity()
            guard identity.role.isAdmin, let companyId = identity.companyId else { throw APIError.forbidden }
            return Sites(items: try await store.sites(companyId: companyId))
        }
        authenticated.delete("/v1/automation/sites/{id}") { _, context -> Response in
            let identity = try context.requireIdentity()
            guard identity.role.isAdmin, let companyId = identity.companyId else { throw APIError.forbidden }
            guard try await store.deactivate(try context.pathID("id"), companyId: companyId) else { throw APIError.notFound("site") }
            return Response(status: .noContent)
        }
        // A site's key (X-Site-Key) on the open route; a service token on the authenticated one.
        open.post("/v1/activity") { request, context -> Ingested in
            let site = try await site(request)
            return try await ingest(request, context: context, companyId: site.companyId)
        }
        authenticated.post("/v1/activity/events") { request, context -> Ingested in
            guard try context.requireIdentity().isService else { throw APIError.forbidden }
            return try await ingest(request, context: context, companyId: nil)
        }
        open.post("/v1/activity/identify") { request, context -> Joined in
            let site = try await site(request)
            let input = try await request.decodeJSON(as: Identify.self, context: context)
            guard !input.visitorId.isEmpty, input.visitorId.count <= 200 else { throw APIError.validation("visitorId", "visitorId is 1 to 200 characters") }
            guard try await isContact(input.contactId, of: site.companyId) else {
                throw APIError.validation("contactId", "contactId names no contact of this company")
            }
            return Joined(joined: try await store.identify(visitorId: input.visitorId, contactId: input.contactId, companyId: site.companyId))
        }
    }

    /// From the replica, or from contacts when the replica has not heard of it yet: a lead form
    /// identifies its visitor the moment contacts answers it, before the contact's event arrives.
    private func isContact(_ contactId: UUID, of companyId: UUID) async throws -> Bool {
        let known = try await store.client.withConnection { try await store.knownContacts([contactId], companyId: companyId, on: $0) }
        if !known.isEmpty { return true }
        let answer = try await peers.get(from: .contacts, path: "/v1/contacts/\(contactId.lowercasedString)")
        guard try answer.succeeded(from: .contacts, "contacts' contact") else { return false }
        struct Owner: Decodable { var companyId: UUID }
        return (try? JSONCoding.decoder.decode(Owner.self, from: Data(answer.body.utf8)).companyId) == companyId
    }

    private func site(_ request: Request) async throws -> Site {
        guard let key = request.headers[.init("X-Site-Key")!], !key.isEmpty, key.count <= 200, let site = try await store.site(key: key) else {
            throw APIError(.unauthorized, code: "invalid_site_key", message: "send the site's key in X-Site-Key")
        }
        return site
    }

    private func ingest(_ request: Request, context: AppContext, companyId siteCompany: UUID?) async throws -> Ingested {
        let body = try await request.body.collect(upTo: 4 << 20)
        var batch: Batch
        do {
            if body.readableBytesView.first(where: { !$0.isWhitespaceASCII }) == UInt8(ascii: "{"),
               let single = try? JSONCoding.decoder.decode(ActivityEvent.self, from: Data(body.readableBytesView)) {
                batch = Batch(events: [single], companyId: nil)
            } else {
                batch = try JSONCoding.decoder.decode(Batch.self, from: Data(body.readableBytesView))
            }
        } catch let error as DecodingError {
            throw APIError.fromDecoding(error)
        }
        guard let companyId = siteCompany ?? batch.companyId else { throw APIError.validation("companyId", "a service names the company") }
        if let sentAt = batch.sentAt {
            let skew = clock.now.timeIntervalSince(sentAt)
            for index in batch.events.indices { batch.events[index].at = batch.events[index].at.addingTimeInterval(skew) }
        }
        try ActivityRules.validate(batch.events, now: clock.now, field: { "events[\($0)]" })
        let named = Set(batch.events.compactMap(\.contactId))
        let known = try await store.client.withConnection { try await store.knownContacts(named, companyId: companyId, on: $0) }
        if let index = batch.events.firstIndex(where: { $0.contactId.map { !known.contains($0) } ?? false }) {
            throw APIError.validation("events[\(index)].contactId", "contactId names no contact of this company")
        }
        let stored = try await store.ingest(batch.events, companyId: companyId)
        return Ingested(received: batch.events.count, stored: stored, duplicates: batch.events.count - stored)
    }
}

private extension UInt8 {
    var isWhitespaceASCII: Bool { self == 0x20 || self == 0x0A || self == 0x0D || self == 0x09 }
}
