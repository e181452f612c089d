import AsyncHTTPClient
import Foundation
import Histogram
import Logging
import Models
import NIOCore
import NIOHTTP1
import PostgresNIO
import Synchronization

/// `swift run -c release bench <scenario>`: drives a running stack (started by scripts/run,
/// best with BUILD_CONFIGURATION=release) and prints each figure beside a floor measured in the
/// same run. Scenarios: `import` (a 10,000-row CSV against a bare multi-row INSERT of the same
/// rows) and `intake` (leads at a steady rate against a bare HTTP round trip).
///
/// Settings from the environment: RUN_DIR (where scripts/run keeps its secrets; default .run),
/// CONTACTS_URL, PG_PORT, BENCH_ROWS, BENCH_RATE, BENCH_SECONDS.
@main
struct Bench {
    static func main() async throws {
        let arguments = CommandLine.arguments.dropFirst()
        guard let scenario = arguments.first, ["import", "intake", "messages", "speed-to-lead", "ingest", "accountability", "smartplans"].contains(scenario) else {
            print("usage: bench import|intake|messages|speed-to-lead|ingest|accountability|smartplans")
            exit(2)
        }
        let setup = try Setup.fromEnvironment()
        switch scenario {
        case "import": try await importScenario(setup)
        case "messages": try await messagesScenario(setup)
        case "speed-to-lead": try await speedToLeadScenario(setup)
        case "ingest": try await ingestScenario(setup)
        case "accountability": try await accountabilityScenario(setup)
        case "smartplans": try await smartPlansScenario(setup)
        default: try await intakeScenario(setup)
        }
    }

    struct Setup {
        var contactsURL: String
        var automationURL: String
        var notificationsURL: String
        var routingURL: String
        var runDir: String
        var pgPort: Int
        var rows: Int
        var rate: Int
        var seconds: Int

        static func fromEnvironment() throws -> Setup {
            let environment = ProcessInfo.processInfo.environment
            return Setup(contactsURL: environment["CONTACTS_URL"] ?? "http://127.0.0.1:\(environment["CONTACTS_PORT"] ?? "8081")",
                         automationURL: environment["AUTOMATION_URL"] ?? "http://127.0.0.1:\(environment["AUTOMATION_PORT"] ?? "8083")",
                         notificationsURL: environment["NOTIFICATIONS_URL"] ?? "http://127.0.0.1:\(environment["NOTIFICATIONS_PORT"] ?? "8086")",
                         routingURL: environment["ROUTING_URL"] ?? "http://127.0.0.1:\(environment["ROUTING_PORT"] ?? "8082")",
                         runDir: environment["RUN_DIR"] ?? ".run", pgPort: Int(environment["PG_PORT"] ?? "") ?? 55432,
                         rows: Int(environment["BENCH_ROWS"] ?? "") ?? 10_000, rate: Int(environment["BENCH_RATE"] ?? "") ?? 500,
                         seconds: Int(environment["BENCH_SECONDS"] ?? "") ?? 10)
        }

        func secret(_ name: String) throws -> String {
            try String(contentsOfFile: "\(runDir)/secrets/\(name)", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    // MARK: HTTP

    /// The client of setup, checks and speed-to-lead's leads (whose answers are read; the other
    /// loads go through `LoadClient`). AsyncHTTPClient's shared one opens at most 8 connections to
    /// a host, and an open-loop load queues inside it once answers are slow, which the figures
    /// would then count as the system's.
    static let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        return configuration
    }())

    static func call(_ method: HTTPMethod, _ url: String, token: String? = nil, headers: [(String, String)] = [], body: String? = nil,
                     contentType: String = "application/json") async throws -> (Int, JSONValue) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await http.execute(request, timeout: .seconds(120))
        let buffer = try await response.body.collect(upTo: 64 << 20)
        return (Int(response.status.code), (try? JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))) ?? .null)
    }

    /// The status alone, for the load's requests (floors included), sent by `LoadClient`: the
    /// bench shares the machine with the stack it measures.
    static func status(_ method: HTTPMethod, _ url: String, token: String? = nil, headers: [(String, String)] = [], body: String? = nil)
        async throws -> Int {
        guard let scheme = url.range(of: "http://"), let slash = url[scheme.upperBound...].firstIndex(of: "/") else {
            throw Failure(description: "the load's URLs are plain http with a path: \(url)")
        }
        let authority = url[scheme.upperBound..<slash]
        let parts = authority.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw Failure(description: "no port in \(url)") }
        var all = headers
        if let token { all.append(("Authorization", "Bearer \(token)")) }
        if body != nil { all.append(("Content-Type", "application/json")) }
        return try await LoadClient.shared(host: String(parts[0]), port: port)
            .send(method, path: String(url[slash...]), headers: all, body: body.map { ByteBuffer(string: $0) })
    }

    static func json(_ object: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: object)) ?? Data(), as: UTF8.self)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The platform admin's token.
    static func platformToken(_ setup: Setup) async throws -> String {
        let (status, login) = try await call(.POST, setup.contactsURL + "/v1/auth/login", body: json([
            "email": ProcessInfo.processInfo.environment["PLATFORM_ADMIN_EMAIL"] ?? "platform-admin@example.com",
            "password": try setup.secret("platform-admin"),
        ]))
        guard status == 200, case .string(let platform)? = login["token"] else { throw Failure(description: "platform admin login failed (\(status))") }
        return platform
    }

    /// A fresh brokerage for this run: its admin token and root entity.
    static func company(_ setup: Setup) async throws -> (token: String, root: String) {
        let platform = try await platformToken(setup)
        let (created, answer) = try await call(.POST, setup.contactsURL + "/v1/companies", token: platform, body: json([
            "name": "Bench Realty \(UUID().uuidString.prefix(6))", "timeZone": "America/Chicago",
            "admin": ["firstName": "Bench", "lastName": "Admin", "email": "bench-\(UUID().uuidString.prefix(8).lowercased())@example.com",
                      "password": "bench password 1"],
        ]))
        guard created == 201, case .string(let token)? = answer["adminToken"], case .string(let root)? = answer["rootEntity"]?["id"] else {
            throw Failure(description: "company creation failed (\(created))")
        }
        return (token, root)
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    static func line(_ figure: String, _ value: Double, unit: String, floor: Double) {
        print(String(format: "%-44@ %10.1f %@   floor %10.1f %@   ratio %6.2fx", figure as NSString, value, unit, floor, unit, value / max(floor, 0.001)))
    }

    // MARK: ingest

    /// BA-1, BA-2 under load: batches of website activity for BENCH_ROWS contacts (10,000, each
    /// with an agent) at BENCH_RATE events/s for BENCH_SECONDS, behaviors evaluated on every
    /// batch, against the same events by one bare multi-row INSERT into a copy of the activity
    /// table; then how long after its triggering event each behavior (c)'s agent alert was
    /// accepted by notifications.
    static func ingestScenario(_ setup: Setup) async throws {
        let (token, root) = try await company(setup)
        let agentEmail = "ingest-agent-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        _ = try await call(.POST, setup.contactsURL + "/v1/users", token: token, body: json([
            "role": "agent", "firstName": "Ingest", "lastName": "Agent", "email": agentEmail, "password": "agent password 1", "entityIds": [root]]))
        let run = String(UUID().uuidString.prefix(6)).lowercased()
        var csv = "First Name,Last Name,Email,Status,Assigned Agent\n"
        for index in 0..<setup.rows { csv += "Shopper\(index),Bench,shopper\(index)-\(run)@example.com,active_lead,\(agentEmail)\n" }
        let (imported, answer) = try await call(.POST, setup.contactsURL + "/v1/contacts/import", token: token, body: csv, contentType: "text/csv")
        guard imported == 200 else { throw Failure(description: "import answered \(imported): \(answer)") }
        let (siteStatus, site) = try await call(.POST, setup.automationURL + "/v1/automation/sites", token: token, body: json(["name": "Bench", "entityId": root]))
        guard siteStatus == 201, case .string(let key)? = site["apiKey"] else { throw Failure(description: "site creation failed (\(siteStatus))") }
        try await settled(setup)
        let contacts: [String] = try await withDatabase(setup) { client, logger in
            var ids: [String] = []
            for try await id in try await client.query("""
                SELECT c.id FROM contacts.contacts c JOIN contacts.entities e ON e.company_id = c.company_id WHERE e.id = \(root)::uuid ORDER BY c.id
                """, logger: logger).decode(UUID.self) { ids.append(id.lowercasedString) }
            return ids
        }
        // The automation replica has every contact before the load starts.
        try await Task.sleep(for: .seconds(3))
        let rate = setup.rate < 1000 ? 5_000 : setup.rate
        let batchSize = Int(ProcessInfo.processInfo.environment["BENCH_BATCH"] ?? "") ?? 500
        let total = rate * setup.seconds
        let batches = max(total / batchSize, 1)
        // Burst (the default): event i goes to contact i % n, every contact sees one view per pass,
        // and the fifth pass makes all of them cross (c) within its two seconds — the worst case.
        // BENCH_SPREAD=1: contact c's views come at c, 2c … 5c in the order, so contacts cross (c)
        // one after another over the whole run (more in its first half) beside the same event load.
        let spread = ProcessInfo.processInfo.environment["BENCH_SPREAD"] == "1"
        var order: [(contact: Int, view: Int)] = []
        if spread {
            for contact in 0..<contacts.count { for view in 0..<5 { order.append((contact: contact, view: view)) } }
            order.sort { first, second in
                let (a, b) = (first.contact * (first.view + 1), second.contact * (second.view + 1))
                return a != b ? a < b : first.contact < second.contact
            }
        }
        let plan = order
        // BENCH_CROSSING=N: only N % of the contacts cross (c); the others' fifth view is their
        // first listing again (four properties, one twice: nothing fires), so the same event load
        // carries the alerts a busy brokerage sees rather than one per contact.
        let crossing = min(max(Int(ProcessInfo.processInfo.environment["BENCH_CROSSING"] ?? "") ?? 100, 0), 100)
        @Sendable func listing(contact: Int, view: Int) -> String {
            view == 4 && contact % 100 >= crossing ? "L0" : "L\(view)"
        }
        @Sendable func events(_ batch: Int) -> (body: String, rows: [(String, String, String)]) {
            let now = Date()
            var rows: [(String, String, String)] = []
            var list: [[String: Any]] = []
            for offset in 0..<batchSize {
                let index = batch * batchSize + offset
                let (contact, listing) = spread && index < plan.count
                    ? (contacts[plan[index].contact], listing(contact: plan[index].contact, view: plan[index].view))
                    : (contacts[index % contacts.count], listing(contact: index % contacts.count, view: index / contacts.count))
                let id = UUID().lowercasedString
                rows.append((id, contact, listing))
                list.append(["id": id, "kind": "property_view", "at": RFC3339.string(from: now), "contactId": contact,
                             "listing": ["listingId": listing, "price": 450_000]])
            }
            return (json(["events": list]), rows)
        }
        let floor = try await withDatabase(setup) { client, logger in
            try await client.query("CREATE TABLE IF NOT EXISTS public.bench_activity (LIKE automation.activity INCLUDING ALL)", logger: logger)
            var took: [Double] = []
            for attempt in 0..<3 {
                let rows = events(attempt).rows
                let start = ContinuousClock.now
                try await client.query("""
                    INSERT INTO public.bench_activity (company_id, id, kind, at, contact_id, doc, evaluated)
                    SELECT e.company_id, r.id::uuid, 'property_view', now(), r.contact::uuid, jsonb_build_object('listing', jsonb_build_object('listingId', r.listing)), true
                    FROM unnest(\(rows.map(\.0)), \(rows.map(\.1)), \(rows.map(\.2))) AS r(id, contact, listing), contacts.entities e WHERE e.id = \(root)::uuid
                    """, logger: logger)
                took.append(milliseconds(since: start))
            }
            try await client.query("DROP TABLE public.bench_activity", logger: logger)
            return took.sorted()[1]
        }
        let sentAt = Mutex([String: Date]())
        let batchesPerSecond = max(rate / batchSize, 1)
        print("bench ingest: \(contacts.count) contacts (\(crossing) % of them crossing (c)\(spread ? ", one after another" : ", all in the fifth pass")), "
              + "\(total) property views in batches of \(batchSize) at \(rate) events/s for \(setup.seconds) s; "
              + "floor = one batch by a bare multi-row INSERT into a copy of the activity table (its indexes, no behaviors), the median of three")
        let cpuBefore = CPUUse.sample(runDir: setup.runDir)
        let start = ContinuousClock.now
        let load = try await steadyLoad(rate: batchesPerSecond, count: batches) { batch in
            let (body, rows) = events(batch)
            let sent = Date()
            let code = try await Self.status(.POST, setup.automationURL + "/v1/activity", headers: [("X-Site-Key", key)], body: body)
            // The fifth view of a contact crosses behavior (c).
            sentAt.withLock { map in for row in rows where row.2 == "L4" { map[row.1] = sent } }
            return code == 200
        }
        let sending = milliseconds(since: start) / 1000
        // Every behavior evaluated and acted on: no automation job left.
        let drained = try await withDatabase(setup) { client, logger -> Double in
            let deadline = ContinuousClock.now + .seconds(300)
            while ContinuousClock.now < deadline {
                // Due or running work only: the periodic schedules always have a job waiting for its hour.
                let left = try await client.query("""
                    SELECT count(*)::int FROM automation.jobs WHERE state IN ('running', 'retryable') OR (state = 'available' AND run_at <= now())
                    """, logger: logger).collect().first?.decode(Int.self) ?? 0
                if left == 0 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            return milliseconds(since: start) / 1000
        }
        let cpuAfter = CPUUse.sample(runDir: setup.runDir)
        let accepted: [(String, Date, UUID)] = try await withDatabase(setup) { client, logger in
            var rows: [(String, Date, UUID)] = []
            for try await (contact, at, message) in try await client.query("""
                SELECT f.contact_id, m.created_at, m.id FROM automation.behavior_firings f
                CROSS JOIN LATERAL jsonb_array_elements_text(f.outcome->'messageIds') AS sent(id)
                JOIN notifications.messages m ON m.id = sent.id::uuid AND m.user_id IS NOT NULL
                JOIN contacts.entities e ON e.company_id = f.company_id WHERE e.id = \(root)::uuid AND f.behavior = 'viewing_burst'
                """, logger: logger).decode((UUID, Date, UUID).self) { rows.append((contact.lowercasedString, at, message)) }
            return rows
        }
        var alerts = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        let sent = sentAt.withLock { $0 }
        for (contact, at, _) in accepted {
            guard let from = sent[contact] else { continue }
            _ = alerts.record(UInt64(max(0, at.timeIntervalSince(from)) * 1_000_000))
        }
        line("one batch of \(batchSize) (p50 of the load)", load.p50, unit: "ms", floor: floor)
        line("one batch of \(batchSize) (p99 of the load)", load.p99, unit: "ms", floor: floor)
        print(String(format: "sustained: %.0f events/s sent (%d failed batches); all evaluated and acted on %.1f s after the first batch (%.0f events/s end to end)",
                     Double(batches * batchSize) / sending, load.failures, drained, Double(batches * batchSize) / drained))
        print(String(format: "behavior (c) agent alerts accepted by notifications: %d of %d crossing contacts, in %d e-mails; after the triggering batch was sent: p50 %.0f ms, p99 %.0f ms, max %.0f ms",
                     accepted.count, sent.count, Set(accepted.map(\.2)).count, Double(alerts.valueAtPercentile(50)) / 1000, Double(alerts.valueAtPercentile(99)) / 1000, Double(alerts.max) / 1000))
        if let cpu = CPUUse.line(from: cpuBefore, to: cpuAfter, items: batches * batchSize / 1000, unit: "1,000 events") { print(cpu) }
    }

    // MARK: import

    static func importScenario(_ setup: Setup) async throws {
        let (token, root) = try await company(setup)
        let run = String(UUID().uuidString.prefix(6)).lowercased()
        let statuses = ["new_lead", "sphere", "client", "prospect"]
        var rows: [(first: String, last: String, email: String, phone: String, status: String, tags: String)] = []
        for index in 0..<setup.rows {
            let email = "bench\(index)-\(run)@example.com"
            let phone = String(format: "+1312%07d", 2_000_000 + index)
            rows.append((first: "First\(index)", last: "Last\(index)", email: email, phone: phone, status: statuses[index % 4],
                         tags: index % 3 == 0 ? "buyer;hot" : "seller"))
        }
        var csv = "First Name,Last Name,Email,Phone,Status,Tags,Source\n"
        for row in rows { csv += "\(row.first),\(row.last),\(row.email),\(row.phone),\(row.status),\"\(row.tags)\",bench\n" }

        let floorRows = rows.map { ($0.first, $0.last, $0.email, $0.phone, $0.status) }
        let floor = try await importFloor(setup, rows: floorRows, into: .bareCopy)
        let keyedFloor = try await importFloor(setup, rows: floorRows, into: .contacts(rootEntity: root))

        let start = ContinuousClock.now
        let (status, answer) = try await call(.POST, setup.contactsURL + "/v1/contacts/import", token: token, body: csv, contentType: "text/csv")
        let took = milliseconds(since: start)
        guard status == 200, answer["imported"] == .number(Double(setup.rows)) else {
            throw Failure(description: "import answered \(status): \(answer)")
        }
        // The first import's events are still being taken in by the five other services: the
        // re-import is timed on a settled system, not against their catch-up.
        let settling = ContinuousClock.now
        try await settled(setup)
        let settledAfter = milliseconds(since: settling)
        let again = ContinuousClock.now
        let (reStatus, reAnswer) = try await call(.POST, setup.contactsURL + "/v1/contacts/import", token: token, body: csv, contentType: "text/csv")
        let reTook = milliseconds(since: again)
        guard reStatus == 200, reAnswer["imported"] == .number(0) else { throw Failure(description: "re-import answered \(reStatus): \(reAnswer)") }
        print("bench import: \(setup.rows) rows (\(csv.utf8.count / 1024) KiB), floor = the same rows by one bare multi-row INSERT and commit "
              + "into contacts (its keys, indexes and foreign keys; deleted after), the median of three")
        line("import \(setup.rows) rows (target: within 5x of the floor)", took, unit: "ms", floor: keyedFloor)
        print(String(format: "(the other services had taken in the import's events %.0f ms after its answer)", settledAfter))
        line("re-import (all matched, nothing new)", reTook, unit: "ms", floor: keyedFloor)
        print(String(format: "import throughput: %.0f rows/s", Double(setup.rows) / (took / 1000)))
        // What the table's keys and indexes cost the floor itself: the same INSERT into a copy of
        // contacts that has none.
        print("beside the same INSERT into a copy of contacts without keys, indexes or foreign keys:")
        line("import \(setup.rows) rows", took, unit: "ms", floor: floor)
    }

    enum FloorTable {
        /// A fresh table with the columns of contacts and nothing else: no keys, no indexes.
        case bareCopy
        /// The contacts table, rows of the company whose root entity this is; deleted after each try.
        case contacts(rootEntity: String)
    }

    /// `body` with a client of the stack's database, as its superuser.
    static func withDatabase<Result: Sendable>(_ setup: Setup, _ body: @Sendable (PostgresClient, Logger) async throws -> Result) async throws -> Result {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        var configuration = PostgresClient.Configuration(host: "127.0.0.1", port: setup.pgPort, username: "postgres",
                                                         password: try setup.secret("postgres-superuser"), database: "crm", tls: .disable)
        configuration.options.maximumConnections = 2
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client, logger)
        }
    }

    /// Polls `query` (one integer) until it reaches `target`; the seconds it took. Past `seconds`
    /// it fails, or with `failing: false` answers the count it got to.
    @discardableResult
    static func waitForCount(_ setup: Setup, _ what: String, _ query: PostgresQuery, reaches target: Int, seconds: Int, failing: Bool = true) async throws
        -> (count: Int, seconds: Double) {
        let start = ContinuousClock.now
        let count = try await withDatabase(setup) { client, logger -> Int in
            let deadline = ContinuousClock.now + .seconds(seconds)
            while true {
                let count = try await client.query(query, logger: logger).collect().first?.decode(Int.self) ?? 0
                if count >= target { return count }
                guard ContinuousClock.now < deadline else {
                    if failing { throw Failure(description: "\(what): \(count) of \(target) after \(seconds) s") }
                    return count
                }
                // A count over a big table is itself work for the database the run is measuring:
                // asked every 100 ms at first, then about 50 times over the wait so far (≤ 2 % late).
                let waited = milliseconds(since: start)
                try await Task.sleep(for: .milliseconds(Int(min(1_000, max(100, waited / 50)))))
            }
        }
        return (count, milliseconds(since: start) / 1000)
    }

    /// Waits until contacts' outbox holds nothing undelivered: every subscriber has its events.
    static func settled(_ setup: Setup) async throws {
        try await drained(setup, outboxes: ["contacts"])
    }

    /// Waits until the outboxes of `services` hold nothing undelivered and the job queues of
    /// `jobs` nothing due or running; answers how long it took. Asked whether any is left (the
    /// first found answers), not how many: counting a busy outbox cost the database what a run
    /// measures. `every` spaces the questions.
    @discardableResult
    static func drained(_ setup: Setup, outboxes services: [String], jobs: [String] = [], seconds: Int = 120,
                        every interval: Duration = .milliseconds(20)) async throws -> Double {
        let start = ContinuousClock.now
        try await withDatabase(setup) { client, logger in
            let deadline = ContinuousClock.now + .seconds(seconds)
            let query = (services.map { "EXISTS (SELECT FROM \($0).outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL)" }
                + jobs.map { "EXISTS (SELECT FROM \($0).jobs WHERE state IN ('running', 'retryable') OR (state = 'available' AND run_at <= now()))" })
                .joined(separator: " OR ")
            func pending() async throws -> Int {
                for try await count in try await client.query(PostgresQuery(unsafeSQL: "SELECT (\(query))::int"), logger: logger).decode(Int.self) {
                    return count
                }
                return 0
            }
            while try await pending() > 0 {
                guard ContinuousClock.now < deadline else {
                    throw Failure(description: "the events of \(services.joined(separator: ", ")) were not delivered within \(seconds) s")
                }
                try await Task.sleep(for: interval)
            }
        }
        return milliseconds(since: start) / 1000
    }

    /// The same rows by one multi-row INSERT and commit; the median of three.
    static func importFloor(_ setup: Setup, rows: [(String, String, String, String, String)], into target: FloorTable) async throws -> Double {
        try await withDatabase(setup) { client, logger in
            var timings: [Double] = []
            var owner = "id, id"
            if case .contacts(let root) = target {
                let company = try await client.query("SELECT company_id FROM contacts.entities WHERE id = \(root)::uuid", logger: logger)
                    .collect().first?.decode(UUID.self)
                guard let company, UUID(uuidString: root) != nil else { throw Failure(description: "the bench company \(root) is not stored") }
                owner = "'\(company.uuidString)'::uuid, '\(root)'::uuid"
            }
            for _ in 0..<3 {
                let table: String
                switch target {
                case .bareCopy:
                    table = "public.bench_floor_\(UUID().uuidString.prefix(8).lowercased())"
                    try await client.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(table) (LIKE contacts.contacts INCLUDING DEFAULTS)"), logger: logger)
                case .contacts:
                    table = "contacts.contacts"
                }
                let ids = rows.map { _ in UUID() }
                let start = ContinuousClock.now
                try await client.withTransaction(logger: logger) { connection in
                    var bindings = PostgresBindings()
                    try bindings.append(ids, context: .default)
                    try bindings.append(rows.map(\.0), context: .default)
                    try bindings.append(rows.map(\.1), context: .default)
                    try bindings.append(rows.map(\.2), context: .default)
                    try bindings.append(rows.map(\.3), context: .default)
                    try bindings.append(rows.map(\.4), context: .default)
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        INSERT INTO \(table) (id, company_id, owner_entity_id, status, first_name, last_name, emails, phones, origin,
                            created_at, updated_at)
                        SELECT id, \(owner), status, first, last, ARRAY[email], ARRAY[phone], 'import', now(), now()
                        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS r(id, first, last, email, phone, status)
                        """, binds: bindings), logger: logger)
                }
                timings.append(milliseconds(since: start))
                switch target {
                case .bareCopy: try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE \(table)"), logger: logger)
                case .contacts: try await client.query("DELETE FROM contacts.contacts WHERE id = ANY(\(ids))", logger: logger)
                }
            }
            return timings.sorted()[1]
        }
    }

    // MARK: intake

    static func intakeScenario(_ setup: Setup) async throws {
        let (token, root) = try await company(setup)
        let (status, source) = try await call(.POST, setup.contactsURL + "/v1/lead-sources", token: token, body: json([
            "name": "Bench site", "origin": "website", "entityId": root,
        ]))
        guard status == 201, case .string(let key)? = source["apiKey"] else { throw Failure(description: "lead source creation failed (\(status))") }
        let total = setup.rate * setup.seconds
        print("bench intake: \(total) leads at \(setup.rate)/s, floor = GET /health/live at the same rate (bare HTTP round trip)")

        let floor = try await steadyLoad(rate: setup.rate, count: max(total / 2, 1)) { _ in
            try await Self.status(.GET, setup.contactsURL + "/health/live") == 200
        }
        let run = UUID().uuidString.prefix(6).lowercased()
        // Written before the clock starts: the load's own work is not the system's. The warm-up's
        // leads come first, each lead a new person.
        let warmCount = setup.rate * 2
        let bodies = (0..<(warmCount + total)).map { index in
            json(["firstName": "Lead\(index)", "lastName": "Bench", "email": "lead\(index)-\(run)@example.com",
                  "phone": String(format: "+1773%07d", 2_000_000 + index), "tags": ["bench"],
                  "searchInterest": ["area": "Lincoln Park", "priceMin": 300000, "priceMax": 500000]])
        }
        try await warmUp("leads", rate: setup.rate) { index in
            try await Self.status(.POST, setup.contactsURL + "/v1/leads", headers: [("X-Api-Key", key)], body: bodies[index]) == 201
        }
        let cpuBefore = CPUUse.sample(runDir: setup.runDir)
        let intake = try await steadyLoad(rate: setup.rate, count: total) { index in
            try await Self.status(.POST, setup.contactsURL + "/v1/leads", headers: [("X-Api-Key", key)], body: bodies[warmCount + index]) == 201
        }
        line("intake p50", intake.p50, unit: "ms", floor: floor.p50)
        line("intake p99 (target <= 20 ms)", intake.p99, unit: "ms", floor: floor.p99)
        line("intake max", intake.max, unit: "ms", floor: floor.max)
        line("intake throughput (target >= 500/s)", intake.throughput, unit: "/s", floor: floor.throughput)
        print("intake failures: \(intake.failures) of \(total)")
        // Sampled once the events of the last leads have reached every service.
        try await Task.sleep(for: .milliseconds(500))
        if let cpu = CPUUse.line(from: cpuBefore, to: CPUUse.sample(runDir: setup.runDir), items: total, unit: "lead") { print(cpu) }
    }

    /// Messages accepted by POST /v1/messages at a steady rate, then the time until the local
    /// provider has recorded every one (pushes to a user: no quiet hours, no consent lookups
    /// beyond the opt-out ledger).
    static func messagesScenario(_ setup: Setup) async throws {
        let rate = Int(ProcessInfo.processInfo.environment["BENCH_RATE"] ?? "") ?? 1000
        let (token, _) = try await company(setup)
        let (_, me) = try await call(.GET, setup.contactsURL + "/v1/auth/me", token: token)
        guard case .string(let userId)? = me["id"] ?? me["user"]?["id"] else { throw Failure(description: "no user id in /v1/auth/me") }
        let total = rate * setup.seconds
        print("bench messages: \(total) pushes at \(rate)/s through the local provider, floor = GET /health/live at the same rate")
        let floor = try await steadyLoad(rate: rate, count: max(total / 2, 1)) { _ in
            try await Self.status(.GET, setup.notificationsURL + "/health/live") == 200
        }
        let run = UUID().uuidString.prefix(8)
        let bodies = (0..<total).map { index in
            json(["channel": "push", "userId": userId, "subject": "New lead", "body": "Lead \(index) is waiting", "purpose": "manual"])
        }
        try await warmUp("pushes", rate: rate) { index in
            try await Self.status(.POST, setup.notificationsURL + "/v1/messages", token: token,
                                  headers: [("Idempotency-Key", "bench-warm-\(run)-\(index)")], body: bodies[index % total]) == 202
        }
        let sentBefore = try await sentCount(setup)
        let cpuBefore = CPUUse.sample(runDir: setup.runDir)
        let started = ContinuousClock.now
        // The sent count every quarter second while messages arrive: the rate they leave at once
        // the first two seconds have filled the pipeline is the sustained one (the whole run's
        // count over its length also holds the last messages' way out, below the rate by that
        // much even when nothing waits).
        let sampler = Task { () -> [(seconds: Double, sent: Double)] in
            var samples: [(seconds: Double, sent: Double)] = []
            while !Task.isCancelled {
                if let count = try? await sentCount(setup) { samples.append((milliseconds(since: started) / 1000, count - sentBefore)) }
                try? await Task.sleep(for: .milliseconds(250))
            }
            return samples
        }
        let accept = try await steadyLoad(rate: rate, count: total) { index in
            try await Self.status(.POST, setup.notificationsURL + "/v1/messages", token: token, headers: [("Idempotency-Key", "\(run)-\(index)")],
                             body: bodies[index]) == 202
        }
        let acceptedBy = milliseconds(since: started)
        sampler.cancel()
        let window = await sampler.value.filter { $0.seconds >= 2 && $0.seconds * 1000 <= acceptedBy }
        var sent = 0.0
        while ContinuousClock.now - started < .seconds(300) {
            sent = try await sentCount(setup) - sentBefore
            if sent >= Double(total - accept.failures) { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let allSentBy = milliseconds(since: started)
        let cpuAfter = CPUUse.sample(runDir: setup.runDir)
        line("accept p50", accept.p50, unit: "ms", floor: floor.p50)
        line("accept p99 (target <= 15 ms)", accept.p99, unit: "ms", floor: floor.p99)
        line("accept throughput", accept.throughput, unit: "/s", floor: floor.throughput)
        if let first = window.first, let last = window.last, last.seconds > first.seconds {
            line("sent while \(rate)/s arrive, after the first 2 s (target >= 1000/s)", (last.sent - first.sent) / (last.seconds - first.seconds),
                 unit: "/s", floor: floor.throughput)
        } else {
            print("sent rate not measured: BENCH_SECONDS must exceed 2")
        }
        print("messages: \(Int(sent)) of \(total) sent, the last \(String(format: "%.0f", allSentBy - acceptedBy)) ms after the last was accepted "
              + "(\(String(format: "%.1f", sent / (allSentBy / 1000)))/s over the whole run); accept failures: \(accept.failures)")
        if let cpu = CPUUse.line(from: cpuBefore, to: cpuAfter, items: total, unit: "message accepted and sent") { print(cpu) }

        // The same number of pushes from a producer that batches (routing's notices, a plan's
        // step): POST /v1/messages/batch with BENCH_BATCH each. Not the target's measure, which
        // is one message per request; it shows what the sending side sustains without the
        // per-request cost.
        let size = max(1, min(20, Int(ProcessInfo.processInfo.environment["BENCH_BATCH"] ?? "") ?? 10))
        let requests = max(1, total / size)
        try await Task.sleep(for: .seconds(3))
        let batchedBefore = try await sentCount(setup)
        let batchStarted = ContinuousClock.now
        let batchBodies = (0..<requests).map { index in
            json(["messages": (0..<size).map { item -> [String: Any] in
                ["channel": "push", "userId": userId, "subject": "New lead", "body": "Lead \(index)-\(item) is waiting", "purpose": "manual"]
            }])
        }
        let batched = try await steadyLoad(rate: max(1, rate / size), count: requests) { index in
            try await Self.status(.POST, setup.notificationsURL + "/v1/messages/batch", token: token,
                             headers: [("Idempotency-Key", "\(run)-batch-\(index)")], body: batchBodies[index]) == 202
        }
        var batchedSent = 0.0
        while ContinuousClock.now - batchStarted < .seconds(300) {
            batchedSent = try await sentCount(setup) - batchedBefore
            if batchedSent >= Double((requests - batched.failures) * size) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let batchSeconds = milliseconds(since: batchStarted) / 1000
        print("batched: \(requests) requests of \(size) pushes at \(max(1, rate / size)) requests/s (not the target's measure)")
        line("  batch accept p50", batched.p50, unit: "ms", floor: floor.p50)
        line("  batch accept p99", batched.p99, unit: "ms", floor: floor.p99)
        line("  batched accepted -> sent throughput", batchedSent / batchSeconds, unit: "/s", floor: floor.throughput)
        print("  \(Int(batchedSent)) of \(requests * size) sent in \(String(format: "%.1f", batchSeconds)) s, request failures: \(batched.failures)")
    }

    /// From `POST /v1/leads` to the lead's assignment recorded by routing and its first notice
    /// accepted by notifications (the `notified` entry of the lead's routing history, stamped by
    /// routing's wall clock on this machine), at each rate of BENCH_RATES (default 50,100,200).
    static func speedToLeadScenario(_ setup: Setup) async throws {
        let rates = (ProcessInfo.processInfo.environment["BENCH_RATES"] ?? "50,100,200").split(separator: ",").compactMap { Int($0) }
        let (token, root) = try await company(setup)
        let allWeek = (1...7).map { ["weekday": $0, "open": "00:00", "close": "23:59"] as [String: Any] }
        _ = try await call(.PATCH, setup.contactsURL + "/v1/entities/\(root)", token: token, body: json(["officeHours": allWeek]))
        for index in 0..<5 {
            _ = try await call(.POST, setup.contactsURL + "/v1/users", token: token, body: json([
                "role": "agent", "firstName": "Agent\(index)", "lastName": "Bench", "email": "agent\(index)-\(UUID().uuidString.prefix(8).lowercased())@example.com",
                "password": "agent password 1", "entityIds": [root], "mobilePhone": String(format: "+1312555%04d", 1000 + index),
            ]))
        }
        let (status, source) = try await call(.POST, setup.contactsURL + "/v1/lead-sources", token: token, body: json([
            "name": "Bench site", "origin": "website", "entityId": root,
        ]))
        guard status == 201, case .string(let key)? = source["apiKey"] else { throw Failure(description: "lead source creation failed (\(status))") }
        try await Task.sleep(for: .seconds(2))
        print("bench speed-to-lead: leads at each rate for \(setup.seconds) s; default round robin, text + e-mail + push per lead; floor = GET /health/live of routing")
        @Sendable func postLead(_ index: Int, run: String) async throws -> (code: Int, answer: JSONValue) {
            try await call(.POST, setup.contactsURL + "/v1/leads", headers: [("X-Api-Key", key)], body: json([
                "firstName": "Lead\(index)", "lastName": "Speed", "email": "lead\(index)-\(run)@example.com", "leadType": "buyer",
            ]))
        }
        if let first = rates.first {
            let run = UUID().uuidString.prefix(6).lowercased()
            try await warmUp("leads", rate: first) { index in try await postLead(index, run: run).code == 201 }
        }
        var best: Int?
        for rate in rates {
            let total = rate * setup.seconds
            let floor = try await steadyLoad(rate: rate, count: max(total / 2, 1)) { _ in
                try await Self.status(.GET, setup.routingURL + "/health/live") == 200
            }
            let run = UUID().uuidString.prefix(6).lowercased()
            let sent = Mutex([Int: (id: String, at: Date)]())
            let cpuBefore = CPUUse.sample(runDir: setup.runDir)
            let intake = try await steadyLoad(rate: rate, count: total) { index in
                let at = Date()
                let (code, answer) = try await postLead(index, run: run)
                guard code == 201, case .string(let id)? = answer["contact"]?["id"] else { return false }
                sent.withLock { $0[index] = (id, at) }
                return true
            }
            // Sampled once the last leads' notices are out, before the routing histories are read.
            try await Task.sleep(for: .milliseconds(500))
            let cpuAfter = CPUUse.sample(runDir: setup.runDir)
            let leads = sent.withLock { $0 }
            var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
            var missing = 0
            let deadline = ContinuousClock.now + .seconds(120)
            var slowest: [(index: Int, ms: Double)] = []
            // Where the time went, from the routing history's own stamps: the request until
            // routing decided (contacts' answer, the event's delivery, the decision), and
            // from then until the notice was accepted (its job and requests).
            var toRouting = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
            var toNotified = toRouting
            for (index, lead) in leads {
                var notified: Date?
                var decided: Date?
                while notified == nil && ContinuousClock.now < deadline {
                    let (_, why) = try await call(.GET, setup.routingURL + "/v1/leads/\(lead.id)/routing", token: token)
                    if case .array(let history)? = why["history"] {
                        func first(_ kind: String?) -> Date? {
                            history.compactMap { entry -> Date? in
                                guard kind.map({ entry["kind"] == .string($0) }) ?? true, case .string(let at)? = entry["at"] else { return nil }
                                return RFC3339.date(from: at)
                            }.min()
                        }
                        notified = first("notified")
                        decided = first(nil)
                    }
                    if notified == nil { try await Task.sleep(for: .milliseconds(200)) }
                }
                guard let notified else { missing += 1; continue }
                let took = max(0, notified.timeIntervalSince(lead.at))
                _ = histogram.record(UInt64(took * 1_000_000))
                slowest.append((index, took * 1000))
                if let decided {
                    _ = toRouting.record(UInt64(max(0, decided.timeIntervalSince(lead.at)) * 1_000_000))
                    _ = toNotified.record(UInt64(max(0, notified.timeIntervalSince(decided)) * 1_000_000))
                }
            }
            // When the tail happened: spikes clustered in time point at a pause, spread ones at load.
            let tail = slowest.sorted { $0.ms > $1.ms }.prefix(5)
                .map { String(format: "%.0f ms at +%.1f s", $0.ms, Double($0.index) / Double(rate)) }.joined(separator: ", ")
            let p50 = Double(histogram.valueAtPercentile(50)) / 1000, p99 = Double(histogram.valueAtPercentile(99)) / 1000
            print("at \(rate) leads/s (\(total) leads, \(intake.failures) intake failures, \(missing) never notified):")
            print("  slowest: \(tail)")
            line("  lead -> offer/assignment notified p50", p50, unit: "ms", floor: floor.p50)
            line("  lead -> offer/assignment notified p99", p99, unit: "ms", floor: floor.p99)
            line("  lead -> offer/assignment notified max", Double(histogram.max) / 1000, unit: "ms", floor: floor.max)
            print(String(format: "  of which: lead -> routing decided p50 %.1f p99 %.1f ms; decided -> notified p50 %.1f p99 %.1f ms",
                         Double(toRouting.valueAtPercentile(50)) / 1000, Double(toRouting.valueAtPercentile(99)) / 1000,
                         Double(toNotified.valueAtPercentile(50)) / 1000, Double(toNotified.valueAtPercentile(99)) / 1000))
            line("  intake throughput", intake.throughput, unit: "/s", floor: floor.throughput)
            if let cpu = CPUUse.line(from: cpuBefore, to: cpuAfter, items: total, unit: "lead") { print(cpu) }
            if p99 < 100, missing == 0, intake.failures == 0 { best = rate }
        }
        print("targets: p99 <= 50 ms at 50 leads/s; highest rate tried with p99 < 100 ms: \(best.map { "\($0) leads/s" } ?? "none")")
    }

    static func sentCount(_ setup: Setup) async throws -> Double {
        var request = HTTPClientRequest(url: setup.notificationsURL + "/metrics")
        request.method = .GET
        let response = try await http.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 16 << 20))
        return text.split(separator: "\n").filter { $0.hasPrefix("jobs_finished_total{") && $0.contains("message.send") && $0.contains("completed") }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
    }

    final class Recorder: Sendable {
        let state = Mutex((histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three), failures: 0,
                           trace: [(index: Int, micros: UInt64)]()))
    }

    struct LoadResult {
        var p50: Double
        var p99: Double
        var max: Double
        var throughput: Double
        var failures: Int
    }

    /// Steady state is the measure: a fresh stack's first requests make every service's
    /// connections, prepared statements and caches, and the load client's connections, which
    /// the figures would otherwise count (a cluster of slow answers in the first 200 ms of an
    /// intake run was a third of its slowest hundredth). Two seconds at the rate, printed and not
    /// counted, then two for the stack to settle.
    static func warmUp(_ what: String, rate: Int, _ request: @escaping @Sendable (Int) async throws -> Bool) async throws {
        let warm = try await steadyLoad(rate: rate, count: rate * 2, request)
        print("warm-up: \(rate * 2) \(what) at \(rate)/s, not counted (p99 \(String(format: "%.1f", warm.p99)) ms, \(warm.failures) failures)")
        try await Task.sleep(for: .seconds(2))
    }

    /// How many loads this run has made, to name their traces.
    static let loads = Atomic<Int>(0)

    /// Open loop: request i starts at i/rate whatever the others do, so a slow answer cannot
    /// hide the queue it causes (latency counts from the planned start).
    static func steadyLoad(rate: Int, count: Int, _ request: @escaping @Sendable (Int) async throws -> Bool) async throws -> LoadResult {
        let start = ContinuousClock.now
        let interval = Duration.nanoseconds(1_000_000_000 / Int64(rate))
        let recorded = Recorder()
        // BENCH_TRACE=FILE writes each request's planned start and latency, to see when in the
        // run the slow answers came: FILE.1 for the scenario's first load, FILE.2 for its next…
        let tracePath = ProcessInfo.processInfo.environment["BENCH_TRACE"].map { "\($0).\(loads.add(1, ordering: .relaxed).newValue)" }
        let tracing = tracePath != nil
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                let planned = start + interval * index
                try? await Task.sleep(until: planned, clock: .continuous)
                group.addTask {
                    let ok = (try? await request(index)) ?? false
                    let elapsed = ContinuousClock.now - planned
                    let micros = UInt64(max(0, elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000))
                    recorded.state.withLock { state in
                        _ = state.histogram.record(micros)
                        if !ok { state.failures += 1 }
                        if tracing { state.trace.append((index, micros)) }
                    }
                }
            }
        }
        let (histogram, failures, trace) = recorded.state.withLock { ($0.histogram, $0.failures, $0.trace) }
        let seconds = milliseconds(since: start) / 1000
        if let tracePath {
            let lines = trace.sorted { $0.index < $1.index }.map { "\(Double($0.index) * 1000 / Double(rate)) \(Double($0.micros) / 1000)" }
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: tracePath))
        }
        return LoadResult(p50: Double(histogram.valueAtPercentile(50)) / 1000, p99: Double(histogram.valueAtPercentile(99)) / 1000,
                          max: Double(histogram.max) / 1000, throughput: Double(count) / seconds, failures: failures)
    }
}
