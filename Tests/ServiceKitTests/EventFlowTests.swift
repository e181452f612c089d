import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import Models
import NIOCore
import NIOPosix
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing
@testable import ServiceKit
import TestSupport

@Suite("Outbox and inbox: events delivered until confirmed, handled exactly once (X-3)")
struct EventFlowTests {
    static let secret = String(repeating: "e", count: 40)
    let effects = Migration("CreateEffects", ["CREATE TABLE effects (event_id uuid, handler text)"])

    func counter(_ name: String) -> EventHandler {
        EventHandler(name: name, eventType: EventType.userUpserted) { event, connection, logger in
            try await connection.query("INSERT INTO effects VALUES (\(event.id), \(name))", logger: logger)
        }
    }

    func effectCount(_ client: PostgresClient) async throws -> Int {
        let rows = try await client.query("SELECT count(*)::int FROM effects", logger: TestDatabase.logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    func event() throws -> ReceivedEvent {
        let user = UUID(), company = UUID()
        return try ReceivedEvent(OutgoingEvent(EventEnvelope(type: EventType.userUpserted, version: 1, occurredAt: Date(), companyId: company, subjectId: user,
                             data: try JSONValue(encoding: User(
                                id: user, companyId: company, role: .agent, entityIds: [], firstName: "A", lastName: "B",
                                email: "a@b.example", mobilePhone: nil, timeZone: "UTC", rotation: Rotation(inRotation: true),
                                prefersPush: false, active: true, version: 1, createdAt: Date(), updatedAt: Date())))))
    }

    @Test("a duplicate event is handled once, even when copies arrive at the same moment")
    func duplicates() async throws {
        try await TestDatabase.withSchema(migrations: [effects]) { client, _ in
            let inbox = Inbox(client: client, handlers: [counter("first"), counter("second")])
            let event = try event()
            #expect(try await inbox.receive(event, logger: TestDatabase.logger) == .handled)
            #expect(try await inbox.receive(event, logger: TestDatabase.logger) == .duplicate)
            #expect(try await effectCount(client) == 2)

            let concurrent = try self.event()
            let outcomes = try await withThrowingTaskGroup(of: InboxOutcome?.self) { group in
                for _ in 0..<8 {
                    group.addTask { try? await inbox.receive(concurrent, logger: TestDatabase.logger) }
                }
                var outcomes: [InboxOutcome?] = []
                for try await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            #expect(outcomes.filter { $0 == .handled }.count >= 1)
            #expect(try await effectCount(client) == 4)
        }
    }

    @Test("a handler that fails leaves no inbox row, so the redelivery is handled")
    func failedHandlerRetried() async throws {
        try await TestDatabase.withSchema(migrations: [effects]) { client, _ in
            struct Boom: Error {}
            let failing = EventHandler(name: "h", eventType: EventType.userUpserted) { event, connection, logger in
                try await connection.query("INSERT INTO effects VALUES (\(event.id), 'h')", logger: logger)
                throw Boom()
            }
            let event = try event()
            await #expect(throws: Boom.self) { try await Inbox(client: client, handlers: [failing]).receive(event, logger: TestDatabase.logger) }
            #expect(try await effectCount(client) == 0)
            #expect(try await Inbox(client: client, handlers: [counter("h")]).receive(event, logger: TestDatabase.logger) == .handled)
            #expect(try await effectCount(client) == 1)
        }
    }

    @Test("an event is delivered even when the receiver was down when it was published")
    func deliveredAfterReceiverComesUp() async throws {
        try await TestDatabase.withSchema(migrations: [effects]) { senderClient, _ in
            try await TestDatabase.withSchema(migrations: [effects]) { receiverClient, _ in
                let port = try await Self.freePort()
                let tokens = await TokenService(secret: Self.secret)
                let peers = PeerClient(service: .contacts, peers: Dictionary(uniqueKeysWithValues: ServiceName.allCases.map { ($0, "http://127.0.0.1:\(port)") }),
                                       tokens: tokens, timeout: .seconds(2))
                let outbox = Outbox(service: .contacts, clock: WallClock())
                let event = try event()
                try await senderClient.transaction(logger: TestDatabase.logger) { connection in
                    try await outbox.publish(try OutgoingEvent(header: event.header, data: try event.data(User.self)), on: connection, logger: TestDatabase.logger)
                }
                let subscribers = Subscriptions.subscribers(of: event.type).count
                var dispatcher = OutboxDispatcher(service: .contacts, client: senderClient, peers: peers, bells: OutboxBells(for: .contacts), logger: TestDatabase.logger)
                dispatcher.backoff = Backoff(base: 0.2, cap: 0.5)
                // Nobody listens yet: the attempt fails and the rows stay pending.
                #expect(try await dispatcher.dispatchBatch() == subscribers)
                #expect(try await pending(senderClient) == subscribers)

                let router = Router(context: AppContext.self)
                router.add(middleware: APIErrorMiddleware())
                EventsController(inbox: Inbox(client: receiverClient, handlers: [counter("h")]))
                    .register(on: router.group().add(middleware: AuthMiddleware(tokens: tokens)))
                let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: TestDatabase.logger)
                let group = ServiceGroup(configuration: .init(services: [app], logger: TestDatabase.logger))
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { try await group.run() }
                    let deadline = ContinuousClock.now + .seconds(20)
                    while try await pending(senderClient) > 0, ContinuousClock.now < deadline {
                        _ = try await dispatcher.dispatchBatch()
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    await group.triggerGracefulShutdown()
                    try await tasks.waitForAll()
                }
                #expect(try await pending(senderClient) == 0)
                // Every subscriber row reached the same receiver here; its inbox handled the event once.
                #expect(try await effectCount(receiverClient) == 1)
            }
        }
    }

    @Test("X-3: an event published again, in the same statement or a later transaction, gets one delivery row per subscriber")
    func publishedOnce() async throws {
        try await TestDatabase.withSchema { client, _ in
            let outbox = Outbox(service: .contacts, clock: WallClock())
            let received = try event()
            let event = try OutgoingEvent(header: received.header, data: try received.data(User.self))
            let other = try OutgoingEvent(header: EventHeader(type: EventType.userUpserted, version: 1, occurredAt: Date(), companyId: UUID(), subjectId: UUID()),
                                          data: try received.data(User.self))
            try await client.transaction(logger: TestDatabase.logger) { connection in
                try await outbox.publish([event, event], on: connection, logger: TestDatabase.logger)
            }
            try await client.transaction(logger: TestDatabase.logger) { connection in
                try await outbox.publish([event, other], on: connection, logger: TestDatabase.logger)
            }
            let subscribers = Subscriptions.subscribers(of: event.type).count
            #expect(subscribers > 0)
            let rows = try await client.query("""
                SELECT count(*) FILTER (WHERE event_id = \(event.id))::int, count(*) FILTER (WHERE event_id = \(other.id))::int,
                       (SELECT count(*)::int FROM outbox_events)
                FROM outbox
                """, logger: TestDatabase.logger)
            for try await (first, second, payloads) in rows.decode((Int, Int, Int).self) {
                #expect(first == subscribers)
                #expect(second == subscribers)
                #expect(payloads == 2)
            }
        }
    }

    @Test("X-3: a lane's claim marks the rows just delivered and claims the next ones in one statement, never a row it is marking")
    func claimMarksDelivered() async throws {
        try await TestDatabase.withSchema { client, _ in
            for _ in 0..<3 {
                try await client.query("INSERT INTO outbox (event_id, event_type, subscriber, payload) VALUES (\(UUID()), 'x', 'routing', '{}')",
                                       logger: TestDatabase.logger)
            }
            let first = try await client.execute(KitStatements.ClaimLane(subscriber: "routing", limit: 2), logger: TestDatabase.logger)
            var claimed: [Int64] = []
            for try await row in first { claimed.append(row.0) }
            #expect(claimed.count == 2)
            // One delivery outlived its lease: its row is due again, and is the one being marked.
            try await client.query("UPDATE outbox SET locked_until = now() - interval '1 second' WHERE id = \(claimed[0])", logger: TestDatabase.logger)
            let next = try await client.execute(KitStatements.ClaimLane(subscriber: "routing", limit: 2, delivered: claimed), logger: TestDatabase.logger)
            var again: [Int64] = []
            for try await row in next { again.append(row.0) }
            #expect(again.count == 1)
            #expect(!claimed.contains(again[0]))
            let rows = try await client.query("""
                SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL)::int, count(*) FILTER (WHERE delivered_at IS NULL AND locked_until > now())::int
                FROM outbox
                """, logger: TestDatabase.logger)
            for try await (delivered, held) in rows.decode((Int, Int).self) {
                #expect(delivered == 2)
                #expect(held == 1)
            }
        }
    }

    @Test("an event the receiver rejects as malformed is kept, not retried forever")
    func rejectedKept() async throws {
        try await TestDatabase.withSchema { client, _ in
            try await client.query("""
                INSERT INTO outbox (event_id, event_type, subscriber, payload) VALUES (\(UUID()), 'x', 'nobody', '{}')
                """, logger: TestDatabase.logger)
            let tokens = await TokenService(secret: Self.secret)
            let dispatcher = OutboxDispatcher(service: .contacts, client: client, peers: PeerClient(service: .contacts, peers: [:], tokens: tokens),
                                              bells: OutboxBells(for: .contacts), logger: TestDatabase.logger)
            #expect(try await dispatcher.dispatchBatch() == 1)
            #expect(try await pending(client) == 0)
            let rows = try await client.query("SELECT count(*)::int FROM outbox WHERE gave_up_at IS NOT NULL", logger: TestDatabase.logger)
            for try await count in rows.decode(Int.self) { #expect(count == 1) }
        }
    }

    func pending(_ client: PostgresClient) async throws -> Int {
        let rows = try await client.query("SELECT count(*)::int FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL", logger: TestDatabase.logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }
}

@Suite("Event wire format")
struct EventWireTests {
    @Test("an outgoing event's JSON is the envelope; a receiver reads header and typed payload from it")
    func roundTrip() throws {
        let login = UserLoggedIn(userId: UUID(), companyId: UUID(), at: Date(timeIntervalSince1970: 1_800_000_000))
        let outgoing = try OutgoingEvent(header: EventHeader(type: EventType.userLoggedIn, version: 3, occurredAt: Date(timeIntervalSince1970: 1_800_000_001),
                                                             companyId: login.companyId, subjectId: login.userId), data: login)
        let envelope = try JSONCoding.decoder.decode(EventEnvelope.self, from: Data(try outgoing.json().utf8))
        #expect(envelope.id == outgoing.id)
        #expect(envelope.version == 3)
        let received = try ReceivedEvent(outgoing)
        #expect(try received.data(UserLoggedIn.self) == login)
        #expect(throws: APIError.self) { try received.data(User.self) }
        #expect(throws: DecodingError.self) { try ReceivedEvent(body: Data(#"{"id":"\#(UUID())","type":"x","version":1,"occurredAt":"2026-01-01T00:00:00Z"}"#.utf8)) }
    }
}

@Suite("Inbox batches (X-3)")
struct InboxBatchTests {
    let effects = Migration("CreateEffects", ["CREATE TABLE effects (event_id uuid, handler text)"])

    func event() throws -> ReceivedEvent {
        try ReceivedEvent(OutgoingEvent(header: EventHeader(type: EventType.userLoggedIn, version: 1, occurredAt: Date(), companyId: UUID(), subjectId: UUID()),
                                        data: UserLoggedIn(userId: UUID(), companyId: UUID(), at: Date())))
    }

    @Test("a batch handles each new event once, skips the ones seen before, and rolls back whole when a handler fails")
    func batch() async throws {
        try await TestDatabase.withSchema(migrations: [effects]) { client, _ in
            let recording = EventHandler(name: "h", eventType: EventType.userLoggedIn) { event, connection, logger in
                try await connection.query("INSERT INTO effects VALUES (\(event.id), 'h')", logger: logger)
            }
            let inbox = Inbox(client: client, handlers: [recording])
            let (first, second) = (try event(), try event())
            #expect(try await inbox.receive(first, logger: TestDatabase.logger) == .handled)
            #expect(try await inbox.receive(batch: [first, second, second], logger: TestDatabase.logger) == [.duplicate, .handled, .duplicate])
            let rows = try await client.query("SELECT count(*)::int FROM effects", logger: TestDatabase.logger)
            for try await count in rows.decode(Int.self) { #expect(count == 2) }

            struct Boom: Error {}
            let failing = EventHandler(name: "h", eventType: EventType.userLoggedIn) { event, _, _ in throw Boom() }
            let third = try event()
            await #expect(throws: Boom.self) { try await Inbox(client: client, handlers: [failing]).receive(batch: [third], logger: TestDatabase.logger) }
            #expect(try await inbox.receive(batch: [third], logger: TestDatabase.logger) == [.handled])
        }
    }

    @Test("X-3: in a batch a batch-taking handler runs once over all its events, before the others run event by event, in order")
    func batchTakersFirst() async throws {
        try await TestDatabase.withSchema { client, _ in
            let calls = Mutex<[String]>([])
            let many = EventHandler.batched(name: "many", eventType: EventType.userLoggedIn) { events, _, _ in
                calls.withLock { $0.append("many:\(events.count)") }
            }
            let one = EventHandler(name: "one", eventType: EventType.userLoggedIn) { event, _, _ in
                calls.withLock { $0.append("one:\(event.id)") }
            }
            let (first, second, third) = (try event(), try event(), try event())
            let outcomes = try await Inbox(client: client, handlers: [many, one]).receive(batch: [first, second, first, third], logger: TestDatabase.logger)
            #expect(outcomes == [.handled, .handled, .duplicate, .handled])
            #expect(calls.withLock { $0 } == ["many:3", "one:\(first.id)", "one:\(second.id)", "one:\(third.id)"])
        }
    }
}

@Suite("Outbox retries on auth failures (X-3)")
struct OutboxAuthRetryTests {
    @Test("X-3: a receiver that refuses the sender's token (another JWT_SECRET) is retried, never given up")
    func wrongSecretRetried() async throws {
        try await TestDatabase.withSchema { senderClient, _ in
            try await TestDatabase.withSchema { receiverClient, _ in
                let port = try await EventFlowTests.freePort()
                let senderTokens = await TokenService(secret: String(repeating: "a", count: 40))
                let receiverTokens = await TokenService(secret: String(repeating: "b", count: 40))
                let router = Router(context: AppContext.self)
                router.add(middleware: APIErrorMiddleware())
                EventsController(inbox: Inbox(client: receiverClient, handlers: []))
                    .register(on: router.group().add(middleware: AuthMiddleware(tokens: receiverTokens)))
                let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: TestDatabase.logger)
                let group = ServiceGroup(configuration: .init(services: [app], logger: TestDatabase.logger))
                let peers = PeerClient(service: .contacts, peers: Dictionary(uniqueKeysWithValues: ServiceName.allCases.map { ($0, "http://127.0.0.1:\(port)") }),
                                       tokens: senderTokens)
                let outbox = Outbox(service: .contacts, clock: WallClock())
                try await senderClient.transaction(logger: TestDatabase.logger) { connection in
                    try await outbox.publish(try OutgoingEvent(header: EventHeader(type: EventType.userLoggedIn, version: 1, occurredAt: Date(),
                                                                                   companyId: UUID(), subjectId: UUID()),
                                                               data: UserLoggedIn(userId: UUID(), companyId: UUID(), at: Date())),
                                             on: connection, logger: TestDatabase.logger)
                }
                let dispatcher = OutboxDispatcher(service: .contacts, client: senderClient, peers: peers, bells: OutboxBells(for: .contacts), logger: TestDatabase.logger)
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { try await group.run() }
                    try await Task.sleep(for: .milliseconds(300))
                    #expect(try await dispatcher.dispatchBatch() == 1)
                    await group.triggerGracefulShutdown()
                    try await tasks.waitForAll()
                }
                let rows = try await senderClient.query(
                    "SELECT count(*)::int FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL AND last_error LIKE '%401%'", logger: TestDatabase.logger)
                for try await pending in rows.decode(Int.self) { #expect(pending == 1) }
            }
        }
    }
}

@Suite("Contact replica from batches (X-3)")
struct ContactReplicaBatchTests {
    func contact(_ id: UUID, version: Int, status: ContactStatus, company: UUID) -> Contact {
        Contact(id: id, companyId: company, ownerEntityId: company, status: status, firstName: "V\(version)", lastName: nil, emails: [], phones: [],
                leadType: nil, source: nil, sourceId: nil, tags: [], assignedAgentId: nil, lenderId: nil, pondId: nil, address: nil,
                searchInterest: nil, listing: nil, agentSiteAgentId: nil, origin: .manual, behavioralAlerts: true, version: version,
                createdAt: Date(), updatedAt: Date())
    }

    func event(_ type: String, _ contact: Contact) throws -> ReceivedEvent {
        try ReceivedEvent(OutgoingEvent(header: EventHeader(type: type, version: contact.version, occurredAt: Date(), companyId: contact.companyId,
                                                            subjectId: contact.id),
                                        data: ContactChanged(contact: contact, actor: Actor(kind: .service, id: "contacts"), change: ContactChange())))
    }

    @Test("X-3: one batch with several versions of a contact, out of order, leaves the newest; a deletion in it marks the contact deleted")
    func newestWins() async throws {
        try await TestDatabase.withSchema(migrations: ContactReplica.migrations) { client, _ in
            let inbox = Inbox(client: client, handlers: ContactReplica.handlers(for: .automation))
            let company = UUID(), kept = UUID(), gone = UUID()
            let batch = [
                try event(EventType.contactCreated, contact(kept, version: 1, status: .newLead, company: company)),
                try event(EventType.contactStatusChanged, contact(kept, version: 3, status: .client, company: company)),
                try event(EventType.contactUpdated, contact(kept, version: 2, status: .activeLead, company: company)),
                try event(EventType.contactCreated, contact(gone, version: 1, status: .newLead, company: company)),
                try event(EventType.contactDeleted, contact(gone, version: 2, status: .newLead, company: company)),
            ]
            #expect(try await inbox.receive(batch: batch, logger: TestDatabase.logger) == Array(repeating: .handled, count: 5))
            let rows = try await client.query("SELECT id, status, version, deleted FROM contact_replica ORDER BY version", logger: TestDatabase.logger)
            var found: [UUID: (String, Int, Bool)] = [:]
            for try await (id, status, version, deleted) in rows.decode((UUID, String, Int, Bool).self) { found[id] = (status, version, deleted) }
            #expect(found[kept]?.0 == "client" && found[kept]?.1 == 3 && found[kept]?.2 == false)
            #expect(found[gone]?.1 == 2 && found[gone]?.2 == true)
            // The same batch again changes nothing: every event is a duplicate.
            #expect(try await inbox.receive(batch: batch, logger: TestDatabase.logger) == Array(repeating: .duplicate, count: 5))

            // An import carries many contacts: a newer version of one known, an older of another,
            // and a new one, whose snapshot is the contact as the event told it.
            let fresh = contact(UUID(), version: 1, status: .sphere, company: company)
            let imported = try ReceivedEvent(OutgoingEvent(
                header: EventHeader(type: EventType.contactsImported, version: 1, occurredAt: Date(), companyId: company, subjectId: nil),
                data: ContactsImported(contacts: [contact(kept, version: 4, status: .prospect, company: company),
                                                  contact(gone, version: 1, status: .client, company: company), fresh],
                                       actor: Actor(kind: .import, id: "admin"))))
            let communication = Communication(id: UUID(), contactId: fresh.id, companyId: company, channel: .call, direction: .outbound,
                                              outcome: nil, subject: nil, body: nil, userId: nil, at: Date())
            var called = fresh
            called.version = 2
            called.status = .activeLead
            let logged = try ReceivedEvent(OutgoingEvent(
                header: EventHeader(type: EventType.communicationLogged, version: 1, occurredAt: Date(), companyId: company, subjectId: fresh.id),
                data: CommunicationLogged(communication: communication, contact: called, actor: Actor(kind: .service, id: "contacts"))))
            #expect(try await inbox.receive(batch: [imported, logged], logger: TestDatabase.logger) == [.handled, .handled])
            let after = try await client.query("SELECT id, status, version, deleted, snapshot::text FROM contact_replica", logger: TestDatabase.logger)
            var now: [UUID: (String, Int, Bool, String)] = [:]
            for try await (id, status, version, deleted, snapshot) in after.decode((UUID, String, Int, Bool, String).self) {
                now[id] = (status, version, deleted, snapshot)
            }
            #expect(now[kept]?.0 == "prospect" && now[kept]?.1 == 4)
            #expect(now[gone]?.1 == 2 && now[gone]?.2 == true)
            #expect(now[fresh.id]?.0 == "active_lead" && now[fresh.id]?.1 == 2)
            let snapshot = try now[fresh.id].map { try JSONCoding.decoder.decode(Contact.self, from: Data($0.3.utf8)) }
            #expect(snapshot?.id == called.id && snapshot?.status == .activeLead && snapshot?.version == 2 && snapshot?.firstName == "V1")
        }
    }
}
