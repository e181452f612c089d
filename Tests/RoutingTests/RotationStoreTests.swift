import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit
import Testing
import TestSupport
@testable import Routing

/// Round robin against a real PostgreSQL, as two routing processes would run it: two connection
/// pools on one schema, deciding leads at the same time (RT-8).
@Suite("Routing rotation in the database")
struct RotationStoreTests {
    @Test("RT-8: two routing processes deciding 60 leads at once hand out every slot of the round robin exactly once, each decision with its one assignment job, and the position survives a restart")
    func replicasShareTheRotation() async throws {
        try await TestDatabase.withSchema(migrations: RoutingMigrations.all) { first, schema in
            try await TestDatabase.withClient(schema: schema) { second in
                let company = RoutingRulesTests.company, entity = RoutingRulesTests.entity
                let agents = (0..<3).map { _ in UUID() }
                try await Self.directory(company: company, entity: entity, agents: agents, on: first)
                let clock = ManualClock()
                @Sendable func router(_ client: PostgresClient) -> LeadRouter {
                    LeadRouter(store: RoutingStore(client: client, logger: TestDatabase.logger), jobs: JobQueue(), clock: clock,
                               random: { 0.5 }, logger: TestDatabase.logger)
                }
                let processes = [router(first), router(second)]
                let leads = (0..<60).map { _ in RoutingRulesTests.lead() }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, lead) in leads.enumerated() {
                        let process = processes[index % 2]
                        group.addTask {
                            try await process.store.client.transaction(logger: TestDatabase.logger) { connection in
                                try await process.newLead(lead, on: connection)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                var received: [UUID: Int] = [:]
                for lead in leads {
                    let routing = try await first.withConnection { try await processes[0].store.routing(lead.id, on: $0) }
                    #expect(routing?.state == .assigned)
                    if let agent = routing?.assignedAgentId { received[agent, default: 0] += 1 }
                }
                #expect(received.count == 3 && received.values.allSatisfy { $0 == 20 }, "a slot given twice would leave the shares uneven: \(received)")
                // Each decision wrote its assignment job in the statement that saved it, once: the
                // same round's job saved again is not a second one.
                @Sendable func assignJobs() async throws -> (Int, Int) {
                    try await first.query("SELECT count(*)::int, count(DISTINCT unique_key)::int FROM jobs WHERE kind = \(LeadRouter.assignJob)",
                                          logger: TestDatabase.logger).decode((Int, Int).self).first { _ in true } ?? (0, 0)
                }
                #expect(try await assignJobs() == (60, 60))
                if let routing = try await first.withConnection({ try await processes[0].store.routing(leads[0].id, on: $0) }) {
                    let again = try ScheduledJob(kind: LeadRouter.assignJob, payload: ["again": true], runAt: clock.now, maxAttempts: 1,
                                                 uniqueKey: "assign:\(routing.contactId):\(routing.round)")
                    try await first.withConnection { connection in
                        try await processes[0].store.save(routing, logging: RoutingLogEntry(at: clock.now, round: routing.round, kind: .assigned, summary: "again"),
                                                          job: again, on: connection)
                    }
                }
                #expect(try await assignJobs() == (60, 60))

                // A new process (a restart) continues from the stored position: the next three leads go to three different agents.
                try await TestDatabase.withClient(schema: schema) { restarted in
                    let process = router(restarted)
                    var next: [UUID] = []
                    for lead in (0..<3).map({ _ in RoutingRulesTests.lead() }) {
                        try await restarted.transaction(logger: TestDatabase.logger) { try await process.newLead(lead, on: $0) }
                        if let agent = try await restarted.withConnection({ try await process.store.routing(lead.id, on: $0) })?.assignedAgentId {
                            next.append(agent)
                        }
                    }
                    #expect(Set(next) == Set(agents), "\(next)")
                }
            }
        }
    }

    @Test("RT-1, X-3: a delivered batch reads once which of its new leads are routed: a lead routed before and a second copy of one in the batch are not routed again")
    func batchKnowsItsRoutedLeads() async throws {
        try await TestDatabase.withSchema(migrations: RoutingMigrations.all) { client, _ in
            let agents = (0..<3).map { _ in UUID() }
            try await Self.directory(company: RoutingRulesTests.company, entity: RoutingRulesTests.entity, agents: agents, on: client)
            let router = LeadRouter(store: RoutingStore(client: client, logger: TestDatabase.logger), jobs: JobQueue(), clock: ManualClock(),
                                    random: { 0.5 }, logger: TestDatabase.logger)
            let earlier = RoutingRulesTests.lead(), fresh = RoutingRulesTests.lead()
            try await client.transaction(logger: TestDatabase.logger) { try await router.newLead(earlier, on: $0) }
            func created(_ contact: Contact) throws -> ReceivedEvent {
                try ReceivedEvent(OutgoingEvent(EventEnvelope(type: EventType.contactCreated, version: 1, occurredAt: Date(), companyId: contact.companyId,
                                                              subjectId: contact.id, data: try JSONValue(encoding: ContactChanged(
                                                                contact: contact, actor: Actor(kind: .source, id: "site", name: "Site"), change: ContactChange())))))
            }
            let batch = [try created(earlier), try created(fresh), try created(fresh)]
            try await BatchMemo.$current.withValue(BatchMemo(events: batch)) {
                try await client.transaction(logger: TestDatabase.logger) { connection in
                    for contact in [earlier, fresh, fresh] { try await router.newLead(contact, on: connection) }
                }
            }
            for contact in [earlier, fresh] {
                let log = try await client.withConnection { try await router.store.log(contactId: contact.id, on: $0) }
                #expect(log.filter { $0.kind == .assigned }.count == 1, "\(log.map(\.summary))")
            }
        }
    }

    /// The directory replica as the directory's events would have written it: one office open all
    /// week, three agents in rotation.
    static func directory(company: UUID, entity: UUID, agents: [UUID], on client: PostgresClient) async throws {
        let allWeek = "[" + (1...7).map { #"{"weekday":\#($0),"open":"00:00","close":"23:59"}"# }.joined(separator: ",") + "]"
        try await client.query("""
            INSERT INTO directory_entities (id, company_id, parent_id, kind, name, time_zone, office_hours, version)
            VALUES (\(entity), \(company), NULL, 'company', 'Rotation Realty', 'America/Chicago', \(allWeek)::jsonb, 1)
            """, logger: TestDatabase.logger)
        for (index, agent) in agents.enumerated() {
            try await client.query("""
                INSERT INTO directory_users (id, company_id, role, entity_ids, first_name, last_name, email, mobile_phone, time_zone,
                    in_rotation, rotation_until, active, prefers_push, version)
                VALUES (\(agent), \(company), 'agent', \([entity]), \("Agent\(index)"), 'Rotation', \("agent\(index)@example.com"), NULL,
                    'America/Chicago', true, NULL, true, false, 1)
                """, logger: TestDatabase.logger)
        }
    }
}
