import Foundation
import Hummingbird
import NIOPosix
import Models
import ServiceKit

/// `POST /v1/contacts/import`: a whole CSV in one request (ST-4). Good rows are imported, bad
/// ones reported by row and column; rows that match a contact by e-mail or phone update it, so
/// importing the same file twice creates nobody twice.
struct ImportController {
    let contacts: ContactStore
    let directory: DirectoryStore
    let access: ContactAccess
    let outbox: Outbox
    let clock: any ServiceClock
    let maxBytes: Int

    struct Result: Encodable, Sendable {
        var imported: Int
        var updated: Int
        var unchanged: Int
        var errors: [CSVImport.RowError]
        var ignoredColumns: [String]
    }

    /// Contacts per `contacts.imported` event: large enough to keep the outbox small, small
    /// enough to keep each event well under a megabyte.
    static let eventBatch = 200

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/contacts/import") { request, context -> Result in
            let identity = try context.requireIdentity()
            try access.requireWriter(identity)
            let contentType = request.headers[.contentType]?.lowercased() ?? ""
            guard contentType.hasPrefix("text/csv") || contentType.hasPrefix("application/csv") else {
                throw APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "send the file as text/csv", field: "body")
            }
            let buffer = try await request.body.collect(upTo: maxBytes)
            guard let text = String(validating: buffer.readableBytesView, as: UTF8.self) else {
                throw APIError.badRequest("the CSV must be UTF-8 text", field: "body", code: "malformed_csv")
            }
            guard !text.utf8.contains(0) else { throw APIError.badRequest("the CSV contains a NUL character", field: "body", code: "malformed_csv") }
            let scope = try await access.scope(identity)
            let owner = try await ownerEntity(request, identity: identity, scope: scope)
            // Seconds of CPU for a large file: on the thread pool, not on an event loop whose
            // connections would wait meanwhile.
            let parsed = try await NIOThreadPool.singleton.runIfActive { try CSVImport.parse(text) }
            return try await importRows(parsed, scope: scope, owner: owner, identity: identity)
        }
    }

    private func importRows(_ parsed: CSVImport.Parsed, scope: ContactAccess.Scope, owner: UUID, identity: Identity) async throws -> Result {
        var errors = parsed.errors
        let actor = try await access.actor(identity)
        let importActor = Actor(kind: .import, id: actor.id, name: actor.name)
        let agents = try await agentsByEmail(companyId: scope.companyId)

        // Every contact the file's e-mails and phones already belong to, in one query.
        let emails = Set(parsed.rows.flatMap { $0.draft.emails.map(\.value) })
        let phones = Set(parsed.rows.flatMap { $0.draft.phones.map(\.e164) })
        let matches = try await contacts.matching(companyId: scope.companyId, emails: Array(emails), phones: Array(phones))
        var owners: [String: UUID] = [:]
        for (id, points) in matches { for point in points { owners[point] = id } }
        let existing = Dictionary(uniqueKeysWithValues: try await contacts.contacts(Array(matches.keys), companyId: scope.companyId).map { ($0.id, $0) })

        let now = clock.now
        let plan = try await NIOThreadPool.singleton.runIfActive { [access, owners] in
            Self.plan(parsed, existing: existing, owners: owners, agents: agents, scope: scope, owner: owner, identity: identity,
                      actor: importActor, now: now, access: access)
        }
        errors += plan.errors
        // Encoded by the store on the thread pool while the database writes the rows.
        let changed = plan.creates + plan.updates
        let before = plan.before
        let events: @Sendable () throws -> [OutgoingEvent] = { [outbox, importActor] in
            try stride(from: 0, to: changed.count, by: Self.eventBatch).map { start in
                let batch = Array(changed[start..<min(start + Self.eventBatch, changed.count)])
                return try outbox.envelope(EventType.contactsImported, version: 1, companyId: scope.companyId, subjectId: nil,
                                           data: ContactsImported(contacts: batch, actor: importActor,
                                                                  changes: batch.map { ImportedChange(before: before[$0.id], after: $0) }))
            }
        }
        guard try await contacts.importBatch(creates: plan.creates, updates: plan.updates, timeline: plan.timeline, events: events) else {
            throw APIError.conflict("contacts in this file changed while it was imported; import it again", code: "version_conflict")
        }
        errors.sort { ($0.row, $0.field) < ($1.row, $1.field) }
        return Result(imported: plan.creates.count, updated: plan.updates.count, unchanged: plan.unchanged, errors: errors, ignoredColumns: parsed.ignoredColumns)
    }

    struct Plan: Sendable {
        var creates: [Contact]
        var updates: [Contact]
        /// The updated contacts as they were before the import.
        var before: [UUID: Contact]
        var timeline: [TimelineEntry]
        var unchanged: Int
        var errors: [CSVImport.RowError]
    }

    /// What the rows do to the company's contacts: a row matching a contact by e-mail or phone
    /// merges into it (a later row into the result of an earlier one), any other row creates one.
    private static func plan(_ parsed: CSVImport.Parsed, existing: [UUID: Contact], owners: [String: UUID], agents: [String: UUID],
                             scope: ContactAccess.Scope, owner: UUID, identity: Identity, actor importActor: Actor, now: Date,
                             access: ContactAccess) -> Plan {
        var owners = owners
        var errors: [CSVImport.RowError] = []
        var current: [UUID: Contact] = existing
        let originals: [UUID: Contact] = existing
        var created: [UUID] = []
        var createdSet = Set<UUID>()
        var updatedSet = Set<UUID>()
        var unchanged = 0
        var timeline: [TimelineEntry] = []
        for row in parsed.rows {
            let points = row.draft.emails.map { "email:" + $0.value } + row.draft.phones.map { "phone:" + $0.e164 }
            let matched = Set(points.compactMap { owners[$0] })
            var agentId: UUID?
            if let email = row.assignedAgentEmail {
                guard let id = agents[email] else {
                    errors.append(CSVImport.RowError(row: row.row, field: "Assigned Agent", message: "no active agent has the e-mail \(email)"))
                    continue
                }
                agentId = id
            }
            if identity.role == .agent { agentId = identity.userId }
            guard matched.count <= 1 else {
                errors.append(CSVImport.RowError(row: row.row, field: "Email", message: "the e-mail and phone belong to two different contacts"))
                continue
            }
            if let id = matched.first, let before = current[id] {
                guard createdSet.contains(id) || access.allows(scope, before) else {
                    errors.append(CSVImport.RowError(row: row.row, field: "Email", message: "matches a contact you do not hold"))
                    continue
                }
                var after = ContactRules.merge(row.draft, into: before)
                if let agentId { after.assignedAgentId = agentId }
                let records = ContactHistory.changes(from: before, to: after, actor: importActor, reason: "CSV import")
                guard !records.isEmpty else {
                    unchanged += 1
                    continue
                }
                if !createdSet.contains(id) {
                    after.version = (originals[id]?.version ?? before.version) + 1
                    after.updatedAt = now
                    updatedSet.insert(id)
                }
                timeline += records.map { TimelineEntry(contactId: id, kind: $0.kind, at: now, actor: importActor, summary: $0.summary, data: $0.data) }
                current[id] = after
                for point in after.emails.map({ "email:" + $0 }) + after.phones.map({ "phone:" + $0 }) { owners[point] = id }
            } else {
                let draft = row.draft
                let contact = Contact(
                    id: UUID.random(), companyId: scope.companyId, ownerEntityId: owner, status: draft.status ?? .newLead, firstName: draft.firstName,
                    lastName: draft.lastName, emails: draft.emails.map(\.value), phones: draft.phones.map(\.e164), leadType: draft.leadType,
                    source: draft.source, sourceId: nil, tags: draft.tags, assignedAgentId: agentId, lenderId: nil, pondId: nil,
                    address: draft.address, searchInterest: draft.searchInterest, listing: nil, agentSiteAgentId: nil, origin: .import,
                    behavioralAlerts: draft.behavioralAlerts ?? true, version: 1, createdAt: now, updatedAt: now)
                current[contact.id] = contact
                created.append(contact.id)
                createdSet.insert(contact.id)
                for point in points { owners[point] = contact.id }
                timeline += ContactHistory.changes(from: nil, to: contact, actor: importActor).map {
                    TimelineEntry(contactId: contact.id, kind: $0.kind, at: now, actor: importActor, summary: $0.summary, data: $0.data)
                }
            }
        }
        return Plan(creates: created.compactMap { current[$0] }, updates: updatedSet.compactMap { current[$0] },
                    before: originals.filter { updatedSet.contains($0.key) }, timeline: timeline,
                    unchanged: unchanged, errors: errors)
    }

    private func agentsByEmail(companyId: UUID) async throws -> [String: UUID] {
        var result: [String: UUID] = [:]
        var cursor: UUID?
        repeat {
            let page = try await directory.users(companyId: companyId, inAny: nil, after: cursor, limit: 500)
            for user in page where user.active && user.role != .lender { result[user.email.lowercased()] = user.id }
            cursor = page.count == 500 ? page.last?.id : nil
        } while cursor != nil
        return result
    }

    private func ownerEntity(_ request: Request, identity: Identity, scope: ContactAccess.Scope) async throws -> UUID {
        var requested: UUID?
        if let text = request.uri.queryParameters["ownerEntityId"] {
            guard let id = UUID(uuidString: String(text)) else {
                throw APIError.validation("ownerEntityId", "ownerEntityId is not an entity you may use")
            }
            requested = id
        }
        return try await access.ownerEntity(requested, identity: identity, scope: scope)
    }
}

extension ImportController.Result: ResponseEncodable {}
