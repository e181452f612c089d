import Foundation
import Models
import PostgresNIO
import ServiceKit
import Testing
import TestSupport
@testable import Contacts

@Suite("Contact writes: one statement for one contact or ten thousand (ST-1, ST-4)")
struct ContactStoreTests {
    static let now = Date(timeIntervalSince1970: 1_900_000_000)

    func contact(company: UUID, entity: UUID, _ change: (inout Contact) -> Void = { _ in }) -> Contact {
        var contact = Contact(
            id: UUID.random(), companyId: company, ownerEntityId: entity, status: .newLead, firstName: nil, lastName: nil, emails: [],
            phones: [], leadType: nil, source: nil, sourceId: nil, tags: [], assignedAgentId: nil, lenderId: nil, pondId: nil,
            address: nil, searchInterest: nil, listing: nil, agentSiteAgentId: nil, origin: .import, behavioralAlerts: true,
            version: 1, createdAt: Self.now, updatedAt: Self.now)
        change(&contact)
        return contact
    }

    /// A store on a new schema with one company and its root entity.
    static func acme(_ client: PostgresClient) async throws -> (ContactStore, company: UUID, entity: UUID) {
        let logger = TestDatabase.logger
        let store = ContactStore(client: client, outbox: Outbox(service: .contacts, clock: WallClock()), logger: logger)
        let (company, entity) = (UUID.random(), UUID.random())
        try await client.query("INSERT INTO companies (id, name, created_at) VALUES (\(company), 'Acme', now())", logger: logger)
        try await client.query("""
            INSERT INTO entities (id, company_id, kind, name, time_zone, office_hours, created_at, updated_at)
            VALUES (\(entity), \(company), 'company', 'Acme', 'America/Chicago', '{}', now(), now())
            """, logger: logger)
        return (store, company, entity)
    }

    @Test("ST-4: an import's contacts, points and timeline read back as written, whatever their text holds")
    func importRoundTrip() async throws {
        try await TestDatabase.withSchema(migrations: ContactsMigrations.all) { client, _ in
            let (store, company, entity) = try await Self.acme(client)
            // Text that an array literal or a JSON document must carry as it is.
            let odd = contact(company: company, entity: entity) {
                $0.firstName = "Ann \"Nan\" O'Neil"
                $0.lastName = "back\\slash, {braces}"
                $0.emails = ["ann@example.com", "a.b@example.org"]
                $0.phones = ["+13125550101"]
                $0.tags = ["NULL", "two words", "comma,inside", "quote\"d", "back\\slash", "{}", "é"]
                $0.leadType = .buyer
                $0.source = "zillow"
                $0.address = Address(street: "1 Main St, Apt \"B\"", city: "Chicago", state: "IL", postalCode: "60601")
                $0.searchInterest = SearchInterest(area: "Loop", propertyType: nil, mls: nil, priceMin: 100_000, priceMax: nil)
                $0.listing = ListingInterest(listingId: "MLS-1")
                $0.behavioralAlerts = false
            }
            let bare = contact(company: company, entity: entity) { $0.phones = ["+13125550102"] }
            let actor = Actor(kind: .import, id: "u1", name: "Dana")
            let entries = [odd, bare].map {
                TimelineEntry(contactId: $0.id, kind: "created", at: Self.now, actor: actor, summary: "Created \"by\" import",
                              data: .object(["status": .string("new_lead"), "n": .number(1)]))
            }
            #expect(try await store.importBatch(creates: [odd, bare], updates: [], timeline: entries, events: { [] }))
            let stored = try await store.contacts([odd.id, bare.id], companyId: company)
            #expect(Set(stored) == [odd, bare])
            #expect(try await store.matching(companyId: company, emails: ["a.b@example.org"], phones: ["+13125550102"])
                    == [odd.id: ["email:a.b@example.org"], bare.id: ["phone:+13125550102"]])
            let timeline = try await store.timeline(contactId: odd.id, before: nil, limit: 10).map(\.0)
            #expect(timeline == [entries[0]])

            // An update at the stored version lands; one at a stale version changes nothing.
            var changed = odd
            changed.tags = ["only"]
            changed.emails = ["new@example.com"]
            changed.version = 2
            #expect(try await store.importBatch(creates: [], updates: [changed], timeline: [], events: { [] }))
            #expect(try await store.contacts([odd.id], companyId: company) == [changed])
            #expect(try await store.matching(companyId: company, emails: ["ann@example.com", "new@example.com"], phones: [])
                    == [odd.id: ["email:new@example.com"]])
            #expect(try await store.importBatch(creates: [], updates: [changed], timeline: [], events: { [] }) == false)

            // A point another contact holds fails the whole import.
            let thief = contact(company: company, entity: entity) { $0.emails = ["new@example.com"] }
            #expect(try await store.importBatch(creates: [thief], updates: [], timeline: [], events: { [] }) == false)
            #expect(try await store.contacts([thief.id], companyId: company).isEmpty)
        }
    }

    @Test("ST-9: a timeline entry is written only for a contact that exists, in every conflict mode, without locking the contact's row")
    func entriesNeedTheirContact() async throws {
        try await TestDatabase.withSchema(migrations: ContactsMigrations.all) { client, _ in
            let logger = TestDatabase.logger
            let (store, company, entity) = try await Self.acme(client)
            let known = contact(company: company, entity: entity) { $0.phones = ["+13125550109"] }
            #expect(try await store.importBatch(creates: [known], updates: [], timeline: [], events: { [] }))
            let actor = Actor(kind: .service, id: "smartplans")
            func entry(_ contactId: UUID) -> (TimelineEntry, UUID) {
                (TimelineEntry(contactId: contactId, kind: "smartplan", at: Self.now, actor: actor, summary: "Step 1", data: .object(["version": .number(1)])),
                 company)
            }
            func lockedBy() async throws -> String? {
                try await client.query("SELECT xmax::text FROM contacts WHERE id = \(known.id)", logger: logger).collect().first?.decode(String.self)
            }
            let before = try await lockedBy()
            let modes: [ContactStore.TimelineConflict] = [.none, .keepExisting, .replaceNewer(field: "version")]
            for mode in modes {
                _ = try await client.withConnection { connection in
                    try await store.writeTimeline([entry(known.id), entry(UUID.random())], onConflict: mode, on: connection)
                }
            }
            let rows = try await client.query("SELECT contact_id FROM timeline", logger: logger).collect().map { try $0.decode(UUID.self) }
            #expect(rows == [known.id, known.id, known.id], "one entry per mode, none for the stranger")
            // No foreign key: writing an entry takes no lock on its contact (its tuple's xmax, where a lock is written, is unchanged).
            #expect(try await lockedBy() == before)
        }
    }

    @Test("ST-1, ST-11: a lead's contact, points, timeline and events are one statement; a held point or a stale version writes none of them")
    func singleWrites() async throws {
        try await TestDatabase.withSchema(migrations: ContactsMigrations.all) { client, _ in
            let logger = TestDatabase.logger
            let outbox = Outbox(service: .contacts, clock: WallClock())
            let store = ContactStore(client: client, outbox: outbox, logger: logger)
            let (company, entity) = (UUID.random(), UUID.random())
            try await client.query("INSERT INTO companies (id, name, created_at) VALUES (\(company), 'Acme', now())", logger: logger)
            try await client.query("""
                INSERT INTO entities (id, company_id, kind, name, time_zone, office_hours, created_at, updated_at)
                VALUES (\(entity), \(company), 'company', 'Acme', 'America/Chicago', '{}', now(), now())
                """, logger: logger)
            let actor = Actor(kind: .source, id: "s1", name: "Website")
            func write(_ contact: Contact, kind: String, type: String) throws -> ContactWrite {
                ContactWrite(contact: contact,
                             timeline: [TimelineEntry(contactId: contact.id, kind: kind, at: Self.now, actor: actor, summary: kind)],
                             events: [try outbox.envelope(type, version: contact.version, companyId: company, subjectId: contact.id,
                                                          data: ContactChanged(contact: contact, actor: actor, change: ContactChange()))])
            }
            func count(_ table: String, _ contact: Contact) async throws -> Int {
                let column = table == "outbox_events" ? "(payload::jsonb->>'subjectId')::uuid" : "contact_id"
                return try await client.query(PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(table) WHERE \(column) = '\(contact.id.uuidString)'"),
                                              logger: logger).collect().first?.decode(Int.self) ?? -1
            }
            let ann = contact(company: company, entity: entity) {
                $0.firstName = "Ann"
                $0.emails = ["ann@example.com"]
                $0.phones = ["+13125550101"]
            }
            try await store.create(try write(ann, kind: "created", type: EventType.contactCreated))
            #expect(try await store.contacts([ann.id], companyId: company) == [ann])
            #expect(try await store.matching(companyId: company, emails: ["ann@example.com"], phones: ["+13125550101"])
                    == [ann.id: ["email:ann@example.com", "phone:+13125550101"]])
            #expect(try await count("timeline", ann) == 1)
            #expect(try await count("outbox_events", ann) == 1)

            // The phone is Ann's: nothing of Bob's is written, and the error names the phone, not the free e-mail.
            let bob = contact(company: company, entity: entity) {
                $0.emails = ["bob@example.com"]
                $0.phones = ["+13125550101"]
            }
            await #expect(throws: ContactPointTaken(kind: "phone", value: "+13125550101", contactId: ann.id)) {
                try await store.create(try write(bob, kind: "created", type: EventType.contactCreated))
            }
            #expect(try await store.contacts([bob.id], companyId: company).isEmpty)
            #expect(try await store.matching(companyId: company, emails: ["bob@example.com"], phones: []).isEmpty)
            #expect(try await count("outbox_events", bob) == 0)

            // A change at the stored version lands with its entry and event; the same change again is stale and writes nothing.
            var assigned = ann
            assigned.status = .activeLead
            assigned.version = 2
            #expect(try await store.update(try write(assigned, kind: "status", type: EventType.contactStatusChanged), previous: ann))
            #expect(try await store.contacts([ann.id], companyId: company) == [assigned])
            #expect(try await store.update(try write(assigned, kind: "status", type: EventType.contactStatusChanged), previous: ann) == false)
            #expect(try await count("timeline", ann) == 2)
            #expect(try await count("outbox_events", ann) == 2)
        }
    }
}
