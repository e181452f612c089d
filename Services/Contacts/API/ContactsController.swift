import Foundation
import Hummingbird
import Models
import ServiceKit

extension Contact: ResponseEncodable {}

/// `/v1/contacts`: the CRM's contacts, their status, tags and assignment.
struct ContactsController {
    let store: ContactStore
    let writer: ContactWriter
    let access: ContactAccess
    let clock: any ServiceClock

    struct NewContact: Decodable {
        var status: ContactStatus?
        var firstName: String?
        var lastName: String?
        var emails: [EmailAddress]?
        var phones: [PhoneNumber]?
        var leadType: LeadType?
        var source: String?
        var tags: [String]?
        var address: Address?
        var searchInterest: SearchInterest?
        var listing: ListingInterest?
        var assignedAgentId: UUID?
        var lenderId: UUID?
        var ownerEntityId: UUID?
        var behavioralAlerts: Bool?

        var draft: ContactDraft {
            ContactDraft(status: status, firstName: firstName, lastName: lastName, emails: emails ?? [], phones: phones ?? [],
                         leadType: leadType, source: source, tags: tags ?? [], address: address, searchInterest: searchInterest,
                         listing: listing, assignedAgentId: assignedAgentId, lenderId: lenderId, behavioralAlerts: behavioralAlerts)
        }
    }

    /// A partial update; lists replace, absent fields stay. Status, tags and assignment have
    /// routes of their own so each change is recorded for what it is.
    struct ContactPatch: Decodable {
        var firstName: String?
        var lastName: String?
        var emails: [EmailAddress]?
        var phones: [PhoneNumber]?
        var leadType: LeadType?
        var source: String?
        var address: Address?
        var searchInterest: SearchInterest?
        var listing: ListingInterest?
        var lenderId: UUID?
        var ownerEntityId: UUID?
        var behavioralAlerts: Bool?
    }

    struct StatusChange: Decodable {
        var status: ContactStatus
        var reason: String?
        /// Only if the contact still has this status (409 otherwise): an automatic change never
        /// overwrites one a person made meanwhile.
        var fromStatus: ContactStatus?
    }

    struct Assignment: Decodable {
        var agentId: UUID?
        var pondId: UUID?
        /// The lender attached with the assignment (RT-6: a routing rule's lender overrides the agent's).
        var lenderId: UUID?
        /// Shown on the timeline; routing explains its decision here.
        var reason: String?
    }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/contacts") { request, context -> JSONResponse<Contact> in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            let input = try await request.decodeJSON(as: NewContact.self, context: context)
            let scope = try await access.scope(identity)
            var draft = try ContactRules.validate(input.draft)
            draft.status = try ContactRules.initialStatus(draft.status, origin: .manual)
            let owner = try await access.ownerEntity(input.ownerEntityId, identity: identity, scope: scope)
            var agent = draft.assignedAgentId
            if identity.role == .agent {
                // Agents keep what they enter; they do not hand contacts to others.
                guard agent == nil || agent == identity.userId else {
                    throw APIError.validation("assignedAgentId", "agents can only assign contacts to themselves")
                }
                agent = identity.userId
            } else if let agent {
                _ = try await access.assignableAgent(agent, companyId: scope.companyId, field: "assignedAgentId")
            }
            if let lender = draft.lenderId { try await access.lender(lender, companyId: scope.companyId, field: "lenderId") }
            let now = clock.now
            let contact = Contact(
                id: UUID.random(), companyId: scope.companyId, ownerEntityId: owner, status: draft.status ?? .newLead,
                firstName: draft.firstName, lastName: draft.lastName, emails: draft.emails.map(\.value), phones: draft.phones.map(\.e164),
                leadType: draft.leadType, source: draft.source, sourceId: nil, tags: draft.tags, assignedAgentId: agent,
                lenderId: draft.lenderId, pondId: nil, address: draft.address, searchInterest: draft.searchInterest,
                listing: draft.listing, agentSiteAgentId: nil, origin: .manual, behavioralAlerts: draft.behavioralAlerts ?? true,
                version: 1, createdAt: now, updatedAt: now)
            let created = try await writer.write(old: nil, new: contact, actor: try await access.actor(identity))
            return JSONResponse(.created, created)
        }

        group.get("/v1/contacts") { request, context -> Page<Contact> in
            let identity = try context.requireIdentity()
            let scope = try await access.scope(identity)
            var filter = try ContactQuery.filter(request, companyId: scope.companyId)
            filter.ownerEntities = scope.ownerEntities
            filter.onlyAssignedTo = scope.onlyAssignedTo
            if let lender = scope.onlyLenderOf {
                // Lenders see the contacts they are attached to, through the same filter shape.
                filter.onlyAssignedTo = nil
                filter.lenderId = lender
            }
            let limit = filter.limit
            filter.limit = limit + 1
            let found = try await store.list(filter)
            let page = Array(found.prefix(limit))
            let next = found.count > limit ? page.last.map { ContactQuery.cursor(after: $0, sort: filter.sort) } : nil
            return Page(items: page, nextCursor: next)
        }

        group.get("/v1/contacts/{id}") { _, context -> Contact in
            try await access.visible(try context.pathID("id"), try context.requireIdentity())
        }

        group.patch("/v1/contacts/{id}") { request, context -> Contact in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            let old = try await access.visible(try context.pathID("id"), identity)
            let patch = try await request.decodeJSON(as: ContactPatch.self, context: context)
            var draft = ContactDraft(firstName: patch.firstName ?? old.firstName, lastName: patch.lastName ?? old.lastName,
                                     emails: patch.emails ?? old.emails.compactMap(EmailAddress.init),
                                     phones: patch.phones ?? old.phones.compactMap(PhoneNumber.init),
                                     leadType: patch.leadType ?? old.leadType, source: patch.source ?? old.source, tags: old.tags,
                                     address: patch.address ?? old.address, searchInterest: patch.searchInterest ?? old.searchInterest,
                                     listing: patch.listing ?? old.listing, lenderId: patch.lenderId ?? old.lenderId)
            draft = try ContactRules.validate(draft)
            var contact = old
            contact.firstName = draft.firstName
            contact.lastName = draft.lastName
            contact.emails = draft.emails.map(\.value)
            contact.phones = draft.phones.map(\.e164)
            contact.leadType = draft.leadType
            contact.source = draft.source
            contact.address = draft.address
            contact.searchInterest = draft.searchInterest
            contact.listing = draft.listing
            if let lender = patch.lenderId, lender != old.lenderId {
                try await access.lender(lender, companyId: old.companyId, field: "lenderId")
                contact.lenderId = lender
            }
            if let behavioral = patch.behavioralAlerts { contact.behavioralAlerts = behavioral }
            if let owner = patch.ownerEntityId, owner != old.ownerEntityId {
                guard identity.role.isAdmin else { throw APIError.forbidden }
                contact.ownerEntityId = try await access.ownerEntity(owner, identity: identity, scope: try await access.scope(identity))
            }
            return try await writer.write(old: old, new: contact, actor: try await access.actor(identity))
        }

        group.delete("/v1/contacts/{id}") { _, context -> HTTPResponse.Status in
            let identity = try context.requireIdentity()
            try identity.require(.teamAdmin, .officeAdmin, .companyAdmin)
            let contact = try await access.visible(try context.pathID("id"), identity)
            try await writer.delete(contact, actor: try await access.actor(identity))
            return .noContent
        }

        group.post("/v1/contacts/{id}/status") { request, context -> Contact in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            let old = try await access.visible(try context.pathID("id"), identity)
            let change = try await request.decodeJSON(as: StatusChange.self, context: context)
            if let expected = change.fromStatus, expected != old.status {
                throw APIError.conflict("the contact's status is \(old.status.rawValue) now, not \(expected.rawValue)", code: "status_changed")
            }
            var contact = old
            contact.status = change.status
            let reason = try ContactRules.optionalText(change.reason, field: "reason", maxLength: 500)
            return try await writer.write(old: old, new: contact, actor: try await access.actor(identity), reason: reason ?? "manual")
        }

        group.put("/v1/contacts/{id}/tags/{tag}") { _, context -> Contact in
            try await changeTag(context, add: true)
        }
        group.delete("/v1/contacts/{id}/tags/{tag}") { _, context -> Contact in
            try await changeTag(context, add: false)
        }

        // SP-8: the company's tags, managed in its settings by its company admins. A rename or a
        // deletion reaches every contact at once, and plan triggers follow it.
        group.get("/v1/tags") { _, context -> TagList in
            let identity = try context.requireIdentity()
            try identity.require(.companyAdmin)
            guard let companyId = identity.companyId else { throw APIError.forbidden }
            return TagList(items: try await store.tags(companyId: companyId).map { TagList.Item(name: $0.0, contacts: $0.1) })
        }
        group.put("/v1/tags/{tag}") { request, context -> TagList.Item in
            let (tag, companyId, actor) = try await tagInSettings(context)
            let name = try ContactRules.tag(try await request.decodeJSON(as: TagRename.self, context: context).name, field: "name")
            guard name != tag else { throw APIError.validation("name", "the new name is the tag's name") }
            _ = try await store.replaceTag(tag, with: name, companyId: companyId, actor: actor, at: clock.now)
            return TagList.Item(name: name, contacts: try await store.tags(companyId: companyId).first { $0.0 == name }?.1 ?? 0)
        }
        group.delete("/v1/tags/{tag}") { _, context -> Response in
            let (tag, companyId, actor) = try await tagInSettings(context)
            _ = try await store.replaceTag(tag, with: nil, companyId: companyId, actor: actor, at: clock.now)
            return Response(status: .noContent)
        }

        group.post("/v1/contacts/{id}/assignment") { request, context -> Contact in
            let identity = try context.requireIdentity()
            try identity.require(.teamAdmin, .officeAdmin, .companyAdmin, .service)
            let old = try await access.visible(try context.pathID("id"), identity)
            let assignment = try await request.decodeJSON(as: Assignment.self, context: context)
            let reason = try ContactRules.optionalText(assignment.reason, field: "reason", maxLength: 500)
            var contact = old
            switch (assignment.agentId, assignment.pondId) {
            case (let agent?, nil):
                _ = try await access.assignableAgent(agent, companyId: old.companyId, field: "agentId")
                contact.assignedAgentId = agent
                contact.pondId = nil
            case (nil, let pond?):
                guard try await store.pondExists(pond, companyId: old.companyId) else {
                    throw APIError.validation("pondId", "pondId names no pond of this company")
                }
                contact.assignedAgentId = nil
                contact.pondId = pond
            default:
                throw APIError.validation("agentId", "give exactly one of agentId or pondId")
            }
            if let lender = assignment.lenderId {
                guard let (user, _) = try await access.directory.user(lender), user.companyId == old.companyId, user.role == .lender, user.active else {
                    throw APIError.validation("lenderId", "lenderId names no active lender of this company")
                }
                contact.lenderId = lender
            }
            return try await writer.write(old: old, new: contact, actor: try await access.actor(identity), reason: reason ?? "manual")
        }
    }

    struct TagList: ResponseEncodable {
        struct Item: ResponseEncodable {
            var name: String
            var contacts: Int
        }
        var items: [Item]
    }

    struct TagRename: Decodable { var name: String }

    private func tagInSettings(_ context: AppContext) async throws -> (tag: String, companyId: UUID, actor: Actor) {
        let identity = try context.requireIdentity()
        try identity.require(.companyAdmin)
        guard let companyId = identity.companyId else { throw APIError.forbidden }
        let raw = try context.parameters.require("tag")
        return (try ContactRules.tag(raw.removingPercentEncoding ?? raw, field: "tag"), companyId, try await access.actor(identity))
    }

    private func changeTag(_ context: AppContext, add: Bool) async throws -> Contact {
        let identity = try context.requireIdentity()
        try access.requireWriter(identity)
        let old = try await access.visible(try context.pathID("id"), identity)
        let raw = try context.parameters.require("tag")
        let tag = try ContactRules.tag(raw.removingPercentEncoding ?? raw, field: "tag")
        var contact = old
        if add {
            guard !contact.tags.contains(tag) else { return old }
            contact.tags.append(tag)
            guard contact.tags.count <= ContactRules.maxTags else { throw APIError.validation("tag", "a contact has at most \(ContactRules.maxTags) tags") }
        } else {
            contact.tags.removeAll { $0 == tag }
        }
        return try await writer.write(old: old, new: contact, actor: try await access.actor(identity))
    }
}

/// The query string of `GET /v1/contacts` (ST-6).
enum ContactQuery {
    static func filter(_ request: Request, companyId: UUID) throws -> ContactFilter {
        let query = request.uri.queryParameters
        var filter = ContactFilter(companyId: companyId)
        func list(_ name: String) -> [String] {
            query.getAll(name).flatMap { $0.split(separator: ",") }.map { String($0).trimmedSpaces() }.filter { !$0.isEmpty }
        }
        filter.statuses = try list("status").map { try ContactStatus.value($0, field: "status") }
        filter.leadTypes = try list("leadType").map { try LeadType.value($0, field: "leadType") }
        filter.tags = try list("tag").map { try ContactRules.tag($0, field: "tag") }
        if let text = query["assignedAgentId"] {
            guard let id = UUID(uuidString: String(text)) else { throw APIError.validation("assignedAgentId", "assignedAgentId must be a UUID") }
            filter.assignedAgentId = id
        }
        if let text = query["pondId"] {
            guard let id = UUID(uuidString: String(text)) else { throw APIError.validation("pondId", "pondId must be a UUID") }
            filter.pondId = id
        }
        if let source = query["source"] { filter.source = String(source).lowercased() }
        for (name, keyPath) in [("createdFrom", \ContactFilter.createdFrom), ("createdTo", \ContactFilter.createdTo)] {
            if let text = query[Substring(name)] {
                guard let date = RFC3339.date(from: String(text)) else { throw APIError.validation(name, "\(name) must be an RFC 3339 time") }
                filter[keyPath: keyPath] = date
            }
        }
        if let text = query["sort"] {
            guard let sort = ContactFilter.Sort(rawValue: String(text)) else {
                throw APIError.validation("sort", "sort must be one of \(ContactFilter.Sort.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.sort = sort
        }
        if let text = query["limit"] {
            guard let limit = Int(String(text)), (1...200).contains(limit) else { throw APIError.validation("limit", "limit must be from 1 to 200") }
            filter.limit = limit
        }
        if let text = query["cursor"] {
            filter.after = try cursor(String(text), sort: filter.sort)
        }
        return filter
    }

    struct Cursor: Codable {
        var sort: String
        var at: Date
        var id: UUID
    }

    static func cursor(after contact: Contact, sort: ContactFilter.Sort) -> String {
        let value = Cursor(sort: sort.rawValue, at: sort.column == "created_at" ? contact.createdAt : contact.updatedAt, id: contact.id)
        let data = (try? JSONCoding.encoder.encode(value)) ?? Data()
        return data.base64URLEncodedString()
    }

    static func cursor(_ text: String, sort: ContactFilter.Sort) throws -> (Date, UUID) {
        guard let data = Data(base64URLEncoded: text), let value = try? JSONCoding.decoder.decode(Cursor.self, from: data) else {
            throw APIError.validation("cursor", "cursor is not one this service gave out")
        }
        guard value.sort == sort.rawValue else { throw APIError.validation("cursor", "cursor belongs to another sort order") }
        return (value.at, value.id)
    }
}
