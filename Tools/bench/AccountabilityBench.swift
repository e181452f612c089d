import AsyncHTTPClient
import Foundation
import Histogram
import Logging
import Models
import NIOCore
import NIOHTTP1
import PostgresNIO

/// `bench accountability` (AC-4, AC-5, AC-7), against a stack on the wall clock:
///
/// 1. The daily rotation check of one office of BENCH_AGENTS (5,000) agents with 30 days of calls
///    and tasks (20 each), from its job's insertion until the job is completed, beside a floor: the
///    same per-agent figures (days since the last login, tasks and calls due and completed over 30
///    days) by one bare aggregate query over the same rows, the median of three. Then how long the
///    enforcement jobs the check scheduled (rotation in contacts, e-mails) took to drain.
/// 2. GET /v1/accountability/analytics of a BENCH_ANALYTICS_AGENTS (50) agent office with a year of
///    history, over one year, BENCH_REQUESTS (20) times as JSON and as CSV, beside a bare HTTP round
///    trip (GET /health/live of accountability) and the store's own reads by bare SQL.
///
/// What is seeded how: the company, its two offices, the agents (POST /v1/users, no password, so
/// no bcrypt) and the rotation rules (PUT /v1/accountability/rules) through the APIs, so contacts
/// and every replica know them and the enforcement can take agents out of rotation and mail them.
/// The history the check and the analytics read is written by SQL straight into accountability's
/// replica tables, which contacts' events would otherwise fill one by one: the agents' last logins
/// (`directory_users.last_login_at`), their tasks and calls (`task_replica`), and for the analytics
/// office a year of new leads (`contact_replica`), outbound calls (`communication_replica`) and
/// past violations (`violations`). The rules' `updatedAt` is moved 60 days back (a login interval
/// counts from the rules' last change at the earliest). The check is started as the kit starts
/// it: the periodic job of the office for today's period (its kind, payload and unique key), due
/// now, with the wake-up the kit sends after scheduling a job.
///
/// Settings: ACCOUNTABILITY_URL (or ACCOUNTABILITY_PORT), BENCH_AGENTS, BENCH_ANALYTICS_AGENTS,
/// BENCH_REQUESTS, with Setup's RUN_DIR, CONTACTS_URL and PG_PORT.
extension Bench {
    /// `PeriodicRun` of ServiceKit (Shared/ServiceKit/Periodic.swift), which this target does not link.
    struct RotationCheckRun: Encodable {
        var schedule: String
        var scope: String
        var timeZone: String
        var period: String
        var dueAt: Date
    }

    static let rotationSchedule = "accountability.rotation-check"
    static let officeZone = "America/Chicago"
    static let loginIntervalDays = 7
    static let minCompletionPercent = 80
    static let tasksPerAgent = 20

    static func accountabilityScenario(_ setup: Setup) async throws {
        let environment = ProcessInfo.processInfo.environment
        let accountabilityURL = environment["ACCOUNTABILITY_URL"] ?? "http://127.0.0.1:\(environment["ACCOUNTABILITY_PORT"] ?? "8084")"
        let agentCount = max(Int(environment["BENCH_AGENTS"] ?? "") ?? 5_000, 1)
        let analyticsCount = max(Int(environment["BENCH_ANALYTICS_AGENTS"] ?? "") ?? 50, 1)
        let requests = max(Int(environment["BENCH_REQUESTS"] ?? "") ?? 20, 2)

        // The admin clock routes exist only under CLOCK=virtual, where a job due on the wall
        // clock would wait for the shared clock instead.
        let (clockStatus, _) = try await call(.GET, accountabilityURL + "/v1/admin/clock")
        guard clockStatus == 404 else {
            throw Failure(description: "accountability answers /v1/admin/clock (\(clockStatus)): this scenario needs the stack on CLOCK=wall")
        }

        let (token, root) = try await company(setup)
        let run = String(UUID().uuidString.prefix(6)).lowercased()
        let office = try await createOffice(setup, token: token, root: root, name: "Bench Rotation \(run)")
        let analyticsOffice = try await createOffice(setup, token: token, root: root, name: "Bench Analytics \(run)")
        let bothOffices: [UUID] = [office, analyticsOffice]
        try await waitForCount(setup, "the offices in accountability's directory",
                                   "SELECT count(*)::int FROM accountability.directory_entities WHERE id = ANY(\(bothOffices))",
                                   reaches: 2, seconds: 120)

        // AC-4's rules on the rotation office, through the API; set 60 days ago.
        let (rulesStatus, rulesAnswer) = try await call(.PUT, accountabilityURL + "/v1/accountability/rules/\(office.lowercasedString)",
                                                        token: token, body: json([
                                                            "rotation": ["enabled": true, "loginIntervalDays": loginIntervalDays,
                                                                         "minCompletionPercent": minCompletionPercent] as [String: Any]]))
        guard rulesStatus == 200 else { throw Failure(description: "rules answered \(rulesStatus): \(rulesAnswer)") }
        let rulesSince = Date().addingTimeInterval(-60 * 86_400)
        try await withDatabase(setup) { client, logger -> Void in
            _ = try await client.query("""
                UPDATE accountability.accountability_rules SET doc = jsonb_set(doc, '{updatedAt}', to_jsonb(\(RFC3339.string(from: rulesSince))::text))
                WHERE entity_id = \(office)
                """, logger: logger)
        }

        print("bench accountability: seeding \(agentCount) agents in rotation (POST /v1/users) and \(analyticsCount) for analytics …")
        let seeding = ContinuousClock.now
        let failedAgents = try await createAgents(setup, token: token, office: office, count: agentCount, label: "Rotation", run: run)
        let failedAnalytics = try await createAgents(setup, token: token, office: analyticsOffice, count: analyticsCount, label: "Analytics", run: run)
        guard failedAgents == 0, failedAnalytics == 0 else {
            throw Failure(description: "\(failedAgents + failedAnalytics) of \(agentCount + analyticsCount) agents were not created")
        }
        let created = milliseconds(since: seeding) / 1000
        let replicated = try await waitForCount(setup, "the agents in accountability's directory", """
            SELECT count(*)::int FROM accountability.directory_users WHERE entity_ids && \(bothOffices)
            """, reaches: agentCount + analyticsCount, seconds: 900).seconds
        print(String(format: "  agents created in %.1f s, all in accountability's directory %.1f s later", created, replicated))

        let seededAt = Date()
        let seeded = try await withDatabase(setup) { client, logger
            -> (rotation: (logins: Int, tasks: Int), analytics: (contacts: Int, calls: Int, tasks: Int, violations: Int)) in
            let rotation = try await seedRotationHistory(client: client, logger: logger, office: office, now: seededAt)
            let history = try await seedAnalyticsHistory(client: client, logger: logger, office: analyticsOffice, now: seededAt)
            _ = try await client.query("""
                ANALYZE accountability.directory_users, accountability.task_replica, accountability.contact_replica,
                    accountability.communication_replica, accountability.violations
                """, logger: logger)
            return (rotation: rotation, analytics: history)
        }
        print("  by SQL: \(seeded.rotation.logins) last logins and \(seeded.rotation.tasks) tasks and calls due over 30 days (rotation office); "
              + "\(seeded.analytics.contacts) new leads, \(seeded.analytics.calls) outbound calls, \(seeded.analytics.tasks) tasks and calls, "
              + "\(seeded.analytics.violations) violations over a year (analytics office)")

        try await benchRotationCheck(setup, accountabilityURL: accountabilityURL, token: token, office: office, agents: agentCount, rulesSince: rulesSince)
        try await benchAnalytics(setup, accountabilityURL: accountabilityURL, token: token, office: analyticsOffice, agents: analyticsCount, requests: requests)
    }

    // MARK: the daily check

    static func benchRotationCheck(_ setup: Setup, accountabilityURL: String, token: String, office: UUID, agents: Int, rulesSince: Date) async throws {
        // The floor, on a warm cache as the check will be.
        let floor = try await withDatabase(setup) { client, logger -> (ms: Double, agents: Int, violators: Int) in
            var timings: [Double] = []
            var violators = 0, checked = 0
            for _ in 0..<3 {
                let start = ContinuousClock.now
                let figures = try await rotationFigures(client: client, logger: logger, office: office, now: Date(), fresh: rulesSince)
                timings.append(milliseconds(since: start))
                checked = figures.count
                violators = figures.filter { figure in
                    figure.loginDays >= loginIntervalDays || (figure.due > 0 && figure.completed * 100 / figure.due < minCompletionPercent)
                }.count
            }
            return (ms: timings.sorted()[1], agents: checked, violators: violators)
        }
        guard floor.agents == agents else { throw Failure(description: "the floor found \(floor.agents) agents in rotation, not \(agents)") }

        let now = Date()
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: officeZone) ?? TimeZone.current
        let day = calendar.dateComponents([.year, .month, .day], from: now)
        let period = String(format: "%04d-%02d-%02d", day.year ?? 0, day.month ?? 0, day.day ?? 0)
        let scope = office.lowercasedString
        let payload = String(decoding: try JSONCoding.encoder.encode(
            RotationCheckRun(schedule: rotationSchedule, scope: scope, timeZone: officeZone, period: period, dueAt: now)), as: UTF8.self)
        let kind = "periodic.\(rotationSchedule)"
        let key = "periodic:\(rotationSchedule):\(scope):\(period)"
        let handlerBefore = await jobSecondsSum(accountabilityURL, kind: kind)

        print("rotation check: \(agents) agents, \(tasksPerAgent) tasks and calls each over 30 days, rules: login every \(loginIntervalDays) days, "
              + "\(minCompletionPercent)% completed; floor = the same per-agent figures by one bare aggregate query, the median of three")
        let cpuBefore = CPUUse.sample(runDir: setup.runDir)
        let triggered = ContinuousClock.now
        // The job the kit would have scheduled for 06:00; one the keeper already wrote for this
        // period is made due now instead.
        let outcome = try await withDatabase(setup) { client, logger
            -> (ms: Double, state: String, attempts: Int, lastError: String?, waited: Double?) in
            let id = try await client.query("""
                INSERT INTO accountability.jobs AS j (kind, unique_key, payload, run_at)
                VALUES (\(kind), \(key), \(payload)::jsonb, \(now.addingTimeInterval(-1)))
                ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
                DO UPDATE SET run_at = EXCLUDED.run_at, payload = EXCLUDED.payload, created_at = now() WHERE j.state = 'available'
                RETURNING j.id
                """, logger: logger).collect().first?.decode(Int64.self)
            guard let id else {
                throw Failure(description: "the office's check of \(period) has run already (the bench crossed 06:00 in \(officeZone)); run it again")
            }
            _ = try await client.query("SELECT 1 FROM (SELECT pg_notify('wake_accountability', 'jobs')) AS wake", logger: logger).collect()
            let deadline = ContinuousClock.now + .seconds(300)
            while true {
                if let row = try await client.query("""
                    SELECT state, attempts, last_error, extract(epoch FROM finished_at - created_at)::float8 FROM accountability.jobs WHERE id = \(id)
                    """, logger: logger).collect().first {
                    let (state, attempts, lastError, waited) = try row.decode((String, Int, String?, Double?).self)
                    if state == "completed" || state == "discarded" {
                        return (ms: milliseconds(since: triggered), state: state, attempts: attempts, lastError: lastError, waited: waited)
                    }
                    guard ContinuousClock.now < deadline else {
                        throw Failure(description: "the check was \(state) after 300 s (\(attempts) attempts): \(lastError ?? "")")
                    }
                }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        let cpuAfter = CPUUse.sample(runDir: setup.runDir)
        let handlerAfter = await jobSecondsSum(accountabilityURL, kind: kind)
        guard outcome.state == "completed" else {
            throw Failure(description: "the check was discarded after \(outcome.attempts) attempts: \(outcome.lastError ?? "")")
        }
        line("rotation check, \(agents) agents (target <= 5 s)", outcome.ms, unit: "ms", floor: floor.ms)
        if let after = handlerAfter {
            line("  of which the job's handler and commit", (after - (handlerBefore ?? 0)) * 1000, unit: "ms", floor: floor.ms)
        }
        if let waited = outcome.waited {
            print(String(format: "  claimed %.0f ms after its insertion (finished_at, stamped at its transaction's start, minus created_at)", waited * 1000))
        }
        if outcome.attempts > 1 { print("  the check ran \(outcome.attempts) times (the job's deadline is 20 s): \(outcome.lastError ?? "")") }
        if let cpu = CPUUse.line(from: cpuBefore, to: cpuAfter, items: agents, unit: "agent checked") { print(cpu) }

        // What it recorded, and the enforcement it scheduled.
        let recorded = try await withDatabase(setup) { client, logger -> (ids: [UUID], login: Int, completion: Int) in
            var ids: [UUID] = []
            var login = 0, completion = 0
            for try await (id, loginBroken, completionBroken) in try await client.query("""
                SELECT id, (doc->'figures') @> '[{"rule": "login_interval"}]'::jsonb, (doc->'figures') @> '[{"rule": "completion"}]'::jsonb
                FROM accountability.violations WHERE entity_id = \(office) AND kind = 'rotation' AND period = \(period)
                """, logger: logger).decode((UUID, Bool, Bool).self) {
                ids.append(id)
                if loginBroken { login += 1 }
                if completionBroken { completion += 1 }
            }
            return (ids: ids, login: login, completion: completion)
        }
        print("  violations recorded: \(recorded.ids.count) (login interval \(recorded.login), completion \(recorded.completion)); "
              + "the floor's figures break the rules for \(floor.violators)")

        let cpuEnforceBefore = CPUUse.sample(runDir: setup.runDir)
        let keys = recorded.ids.map { "enforce:\($0.uuidString)" }
        let drained = try await withDatabase(setup) { client, logger
            -> (seconds: Double, pending: Int, completed: Int, discarded: Int, total: Int, enforced: Int, lastError: String?) in
            let deadline = ContinuousClock.now + .seconds(600)
            while true {
                let row = try await client.query("""
                    SELECT count(*) FILTER (WHERE state IN ('available', 'running', 'retryable'))::int, count(*) FILTER (WHERE state = 'completed')::int,
                        count(*) FILTER (WHERE state = 'discarded')::int, count(*)::int, max(last_error)
                    FROM accountability.jobs WHERE kind = 'accountability.enforce' AND unique_key = ANY(\(keys))
                    """, logger: logger).collect().first
                let (pending, completed, discarded, total, lastError) = try row?.decode((Int, Int, Int, Int, String?).self) ?? (0, 0, 0, 0, nil)
                if pending == 0 || ContinuousClock.now >= deadline {
                    let enforced = try await client.query("""
                        SELECT count(*)::int FROM accountability.violations WHERE id = ANY(\(recorded.ids)) AND doc ? 'enforcedAt'
                        """, logger: logger).collect().first?.decode(Int.self) ?? 0
                    return (seconds: milliseconds(since: triggered) / 1000 - outcome.ms / 1000, pending: pending, completed: completed,
                            discarded: discarded, total: total, enforced: enforced, lastError: lastError)
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let cpuEnforceAfter = CPUUse.sample(runDir: setup.runDir)
        print(String(format: "  enforcement: %d jobs (%d completed, %d discarded, %d still pending) drained %.1f s after the check finished; "
                     + "%d violations enforced (out of rotation in contacts, agent and admins e-mailed)",
                     drained.total, drained.completed, drained.discarded, drained.pending, drained.seconds, drained.enforced))
        if drained.total != recorded.ids.count { print("  (\(recorded.ids.count) violations but \(drained.total) enforcement jobs found)") }
        if let error = drained.lastError, drained.pending > 0 || drained.discarded > 0 { print("  an enforcement error: \(error)") }
        if let cpu = CPUUse.line(from: cpuEnforceBefore, to: cpuEnforceAfter, items: max(drained.total, 1), unit: "violation enforced") { print(cpu) }

        // The bench office is not checked again tomorrow at 06:00.
        let (deleted, _) = try await call(.DELETE, accountabilityURL + "/v1/accountability/rules/\(office.lowercasedString)", token: token)
        if deleted != 204 { print("  (the bench office's rules were not deleted: \(deleted))") }
    }

    struct RotationFigure: Sendable {
        var agent: UUID
        var loginDays: Int
        var due: Int
        var completed: Int
    }

    /// AC-4's figures of every agent the check would read, in one statement: the days since the
    /// last login (counted from the rules' change at the earliest) and the tasks and calls due over
    /// the last 30 days with how many were completed.
    static func rotationFigures(client: PostgresClient, logger: Logger, office: UUID, now: Date, fresh: Date) async throws -> [RotationFigure] {
        let entities: [UUID] = [office]
        let since = now.addingTimeInterval(-30 * 86_400)
        var figures: [RotationFigure] = []
        for try await (agent, days, due, completed) in try await client.query("""
            SELECT u.id, floor(extract(epoch FROM \(now) - greatest(coalesce(u.last_login_at, \(fresh)), \(fresh))) / 86400)::int,
                count(t.due_at)::int, count(t.completed_at)::int
            FROM accountability.directory_users u
            LEFT JOIN accountability.task_replica t
                ON t.assignee_id = u.id AND t.due_at >= \(since) AND t.due_at <= \(now) AND t.kind IN ('task', 'call')
            WHERE u.entity_ids && \(entities) AND u.active AND u.role IN ('agent', 'team_admin', 'office_admin')
                AND (u.in_rotation OR u.rotation_until <= \(now))
            GROUP BY u.id
            """, logger: logger).decode((UUID, Int, Int, Int).self) {
            figures.append(RotationFigure(agent: agent, loginDays: days, due: due, completed: completed))
        }
        return figures
    }

    /// Every 7th agent (by id) last logged in 10 days ago, the others within 2 days; every 5th
    /// completed half of their tasks and calls, the others all but one. About 31% break a rule.
    static func seedRotationHistory(client: PostgresClient, logger: Logger, office: UUID, now: Date) async throws -> (logins: Int, tasks: Int) {
        let entities: [UUID] = [office]
        let logins = try await client.query("""
            WITH r AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM accountability.directory_users WHERE entity_ids && \(entities)),
            updated AS (
                UPDATE accountability.directory_users u
                SET last_login_at = \(now) - CASE WHEN r.n % 7 = 0 THEN interval '10 days' ELSE interval '1 minute' * (r.n % 2880) END
                FROM r WHERE u.id = r.id RETURNING 1)
            SELECT count(*)::int FROM updated
            """, logger: logger).collect().first?.decode(Int.self) ?? 0
        let spacing = max(1, 700 / tasksPerAgent)
        let tasks = try await client.query("""
            WITH r AS (
                SELECT id, company_id, row_number() OVER (ORDER BY id) AS n FROM accountability.directory_users WHERE entity_ids && \(entities)),
            inserted AS (
                INSERT INTO accountability.task_replica (id, contact_id, company_id, kind, assignee_id, due_at, completed_at, call_outcome, version, created_at)
                SELECT gen_random_uuid(), gen_random_uuid(), r.company_id, CASE WHEN k % 2 = 0 THEN 'call' ELSE 'task' END, r.id,
                    \(now) - interval '1 hour' * (k * \(spacing) + 1),
                    CASE WHEN k = \(tasksPerAgent - 1) OR (r.n % 5 = 0 AND k % 2 = 1) THEN NULL
                         ELSE \(now) - interval '1 hour' * (k * \(spacing) + 2) END,
                    NULL, 1, \(now) - interval '31 days'
                FROM r CROSS JOIN generate_series(0, \(tasksPerAgent - 1)) AS k
                RETURNING 1)
            SELECT count(*)::int FROM inserted
            """, logger: logger).collect().first?.decode(Int.self) ?? 0
        return (logins, tasks)
    }

    // MARK: analytics

    static func benchAnalytics(_ setup: Setup, accountabilityURL: String, token: String, office: UUID, agents: Int, requests: Int) async throws {
        _ = try? await settled(setup)
        let to = Date()
        let from = to.addingTimeInterval(-365 * 86_400)
        let base = accountabilityURL + "/v1/accountability/analytics?entityId=\(office.lowercasedString)"
            + "&from=\(RFC3339.string(from: from))&to=\(RFC3339.string(from: to))"
        let (status, answer) = try await call(.GET, base + "&format=json", token: token)
        guard status == 200, case .array(let rows)? = answer["agents"] else { throw Failure(description: "analytics answered \(status): \(answer)") }
        func number(_ field: String) -> Int {
            if case .number(let value)? = answer["total"]?[field] { return Int(value) }
            return -1
        }
        print("analytics: \(rows.count) agents over 365 days: \(number("callsMade")) calls made, \(number("tasksDue")) tasks due "
              + "(\(number("tasksCompleted")) completed, \(number("callsMissed")) calls missed), \(number("violations")) violations, "
              + "\(number("newLeads")) new leads (\(number("leadsContacted")) contacted); "
              + "\(requests) requests each, one at a time; floor = GET /health/live of accountability")
        if rows.count != agents { print("  (expected \(agents) agents)") }

        _ = try await timeGets(accountabilityURL + "/health/live", token: nil, count: 3)
        let floor = try await timeGets(accountabilityURL + "/health/live", token: nil, count: requests)
        _ = try await timeGets(base + "&format=json", token: token, count: 3)
        let sqlFloor = try await withDatabase(setup) { client, logger -> Double in
            var timings: [Double] = []
            for _ in 0..<5 {
                let start = ContinuousClock.now
                try await analyticsReads(client: client, logger: logger, office: office, from: from, to: to)
                timings.append(milliseconds(since: start))
            }
            return timings.sorted()[2]
        }
        let cpuBefore = CPUUse.sample(runDir: setup.runDir)
        let asJSON = try await timeGets(base + "&format=json", token: token, count: requests)
        let asCSV = try await timeGets(base + "&format=csv", token: token, count: requests)
        let cpuAfter = CPUUse.sample(runDir: setup.runDir)
        line("analytics JSON p50", asJSON.p50, unit: "ms", floor: floor.p50)
        line("analytics JSON p99 (target <= 200 ms)", asJSON.p99, unit: "ms", floor: floor.p99)
        line("analytics CSV p50", asCSV.p50, unit: "ms", floor: floor.p50)
        line("analytics CSV p99 (target <= 200 ms)", asCSV.p99, unit: "ms", floor: floor.p99)
        line("analytics JSON p50 vs its SQL reads", asJSON.p50, unit: "ms", floor: sqlFloor)
        print("  answers: JSON \(asJSON.bytes / 1024) KiB, CSV \(asCSV.bytes / 1024) KiB; failures: JSON \(asJSON.failures), CSV \(asCSV.failures)")
        if let cpu = CPUUse.line(from: cpuBefore, to: cpuAfter, items: requests * 2, unit: "analytics request") { print(cpu) }
    }

    /// `count` GETs one after another: p50 and p99 in ms, the last answer's size, non-200 answers.
    static func timeGets(_ url: String, token: String?, count: Int) async throws -> (p50: Double, p99: Double, bytes: Int, failures: Int) {
        var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        var bytes = 0, failures = 0
        for _ in 0..<count {
            var request = HTTPClientRequest(url: url)
            request.method = .GET
            if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            let start = ContinuousClock.now
            let response = try await http.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 64 << 20)
            _ = histogram.record(UInt64(milliseconds(since: start) * 1000))
            bytes = body.readableBytes
            if response.status.code != 200 { failures += 1 }
        }
        return (Double(histogram.valueAtPercentile(50)) / 1000, Double(histogram.valueAtPercentile(99)) / 1000, bytes, failures)
    }

    /// The statements AccountabilityStore runs for one office's analytics (`agents(of:)` and
    /// `activity(of:from:to:)`), rows read and dropped.
    static func analyticsReads(client: PostgresClient, logger: Logger, office: UUID, from: Date, to: Date) async throws {
        let entities: [UUID] = [office]
        var ids: [UUID] = []
        for try await (id, _) in try await client.query("""
            SELECT id, first_name || ' ' || last_name FROM accountability.directory_users
            WHERE entity_ids && \(entities) AND role IN ('agent', 'team_admin', 'office_admin') ORDER BY last_name, first_name, id
            """, logger: logger).decode((UUID, String).self) { ids.append(id) }
        _ = try await client.query("""
            SELECT user_id, count(*)::int FROM accountability.communication_replica
            WHERE user_id = ANY(\(ids)) AND channel = 'call' AND direction = 'outbound' AND at >= \(from) AND at < \(to) GROUP BY user_id
            """, logger: logger).collect()
        _ = try await client.query("""
            SELECT assignee_id, kind = 'call', completed_at IS NOT NULL, coalesce(completed_at <= due_at, false), count(*)::int
            FROM accountability.task_replica
            WHERE assignee_id = ANY(\(ids)) AND due_at >= \(from) AND due_at < \(to) AND kind IN ('task', 'call') GROUP BY 1, 2, 3, 4
            """, logger: logger).collect()
        _ = try await client.query("""
            SELECT agent_id, count(*)::int FROM accountability.violations
            WHERE agent_id = ANY(\(ids)) AND created_at >= \(from) AND created_at < \(to) GROUP BY agent_id
            """, logger: logger).collect()
        _ = try await client.query("""
            SELECT c.assigned_agent_id,
                (SELECT extract(epoch FROM min(m.at) - c.created_at) / 60 FROM accountability.communication_replica m
                 WHERE m.user_id = c.assigned_agent_id AND m.contact_id = c.id AND m.direction = 'outbound' AND m.at >= c.created_at)::float8
            FROM accountability.contact_replica c
            WHERE c.assigned_agent_id = ANY(\(ids)) AND c.created_at >= \(from) AND c.created_at < \(to) AND NOT c.deleted
              AND c.origin IN ('website', 'dropbox', 'zapier')
            """, logger: logger).collect()
    }

    /// A year for each agent of the office: 250 website leads (one every 35 h), 9 in 10 called 6
    /// times from 1 to 240 minutes after they came in; 1,000 tasks and calls (one every 525 min), 9
    /// in 10 completed, a seventh of those late; 3 violations.
    static func seedAnalyticsHistory(client: PostgresClient, logger: Logger, office: UUID, now: Date) async throws
        -> (contacts: Int, calls: Int, tasks: Int, violations: Int) {
        let entities: [UUID] = [office]
        let contacts = try await client.query("""
            WITH inserted AS (
                INSERT INTO accountability.contact_replica (id, company_id, owner_entity_id, status, assigned_agent_id, tags, origin, phones, emails,
                    behavioral_alerts, version, created_at, snapshot)
                SELECT gen_random_uuid(), u.company_id, \(office), 'new_lead', u.id, '{}'::text[], 'website', '{}'::text[], '{}'::text[], false, 1,
                    \(now) - interval '365 days' + interval '1 hour' * (k * 35 + 1), '{"bench": true}'::jsonb
                FROM accountability.directory_users u CROSS JOIN generate_series(0, 249) AS k
                WHERE u.entity_ids && \(entities)
                RETURNING 1)
            SELECT count(*)::int FROM inserted
            """, logger: logger).collect().first?.decode(Int.self) ?? 0
        let calls = try await client.query("""
            WITH inserted AS (
                INSERT INTO accountability.communication_replica (id, contact_id, channel, direction, outcome, user_id, at)
                SELECT gen_random_uuid(), c.id, 'call', 'outbound', 'contacted', c.assigned_agent_id,
                    c.created_at + o.after + interval '1 minute' * ((hashtext(c.id::text) & 2147483647) % 240 + 1)
                FROM accountability.contact_replica c
                CROSS JOIN (VALUES (interval '0 days'), (interval '1 day'), (interval '3 days'), (interval '7 days'), (interval '14 days'),
                                   (interval '30 days')) AS o(after)
                WHERE c.owner_entity_id = \(office) AND (hashtext(c.id::text) & 2147483647) % 10 <> 0
                  AND c.created_at + o.after + interval '1 minute' * ((hashtext(c.id::text) & 2147483647) % 240 + 1) < \(now)
                RETURNING 1)
            SELECT count(*)::int FROM inserted
            """, logger: logger).collect().first?.decode(Int.self) ?? 0
        let tasks = try await client.query("""
            WITH inserted AS (
                INSERT INTO accountability.task_replica (id, contact_id, company_id, kind, assignee_id, due_at, completed_at, call_outcome, version, created_at)
                SELECT gen_random_uuid(), gen_random_uuid(), u.company_id, CASE WHEN k % 2 = 0 THEN 'call' ELSE 'task' END, u.id,
                    \(now) - interval '365 days' + interval '1 minute' * (k * 525 + 1),
                    CASE WHEN k % 10 = 0 THEN NULL
                         WHEN k % 7 = 0 THEN least(\(now) - interval '365 days' + interval '1 minute' * (k * 525 + 1) + interval '1 day', \(now))
                         ELSE \(now) - interval '365 days' + interval '1 minute' * (k * 525 + 1) - interval '1 hour' END,
                    NULL, 1, \(now) - interval '366 days'
                FROM accountability.directory_users u CROSS JOIN generate_series(0, 999) AS k
                WHERE u.entity_ids && \(entities)
                RETURNING 1)
            SELECT count(*)::int FROM inserted
            """, logger: logger).collect().first?.decode(Int.self) ?? 0
        let violations = try await client.query("""
            WITH v AS (
                SELECT gen_random_uuid() AS id, u.company_id, u.id AS agent_id, u.first_name || ' ' || u.last_name AS name,
                    \(now) - interval '1 day' * (m * 100 + 3) AS at
                FROM accountability.directory_users u CROSS JOIN generate_series(0, 2) AS m
                WHERE u.entity_ids && \(entities)),
            inserted AS (
                INSERT INTO accountability.violations (id, company_id, entity_id, agent_id, kind, period, created_at, doc)
                SELECT v.id, v.company_id, \(office), v.agent_id, 'rotation', to_char(v.at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), v.at,
                    jsonb_build_object('id', v.id, 'companyId', v.company_id, 'entityId', \(office), 'agentId', v.agent_id,
                        'agentName', v.name, 'kind', 'rotation'::text, 'period', to_char(v.at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                        'figures', '[]'::jsonb, 'emailed', '[]'::jsonb,
                        'createdAt', to_char(v.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
                FROM v
                RETURNING 1)
            SELECT count(*)::int FROM inserted
            """, logger: logger).collect().first?.decode(Int.self) ?? 0
        return (contacts, calls, tasks, violations)
    }

    // MARK: helpers

    static func createOffice(_ setup: Setup, token: String, root: String, name: String) async throws -> UUID {
        let (status, answer) = try await call(.POST, setup.contactsURL + "/v1/entities", token: token, body: json([
            "parentId": root, "kind": "office", "name": name, "timeZone": officeZone,
            "postalAddress": "100 N LaSalle St, Chicago, IL 60602"]))
        guard status == 201, case .string(let id)? = answer["id"], let office = UUID(uuidString: id) else {
            throw Failure(description: "office creation failed (\(status)): \(answer)")
        }
        return office
    }

    /// Agents of `office` through contacts' API, 16 requests at a time; how many failed.
    static func createAgents(_ setup: Setup, token: String, office: UUID, count: Int, label: String, run: String) async throws -> Int {
        let lanes = min(16, count)
        let entity = office.lowercasedString
        let url = setup.contactsURL + "/v1/users"
        return try await withThrowingTaskGroup(of: Int.self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    var failed = 0
                    for index in stride(from: lane, to: count, by: lanes) {
                        let body = Self.json(["role": "agent", "firstName": "Agent\(index)", "lastName": label,
                                              "email": "\(label.lowercased())\(index)-\(run)@example.com", "entityIds": [entity]])
                        let (status, _) = try await Self.call(.POST, url, token: token, body: body)
                        if status != 201 { failed += 1 }
                    }
                    return failed
                }
            }
            var failed = 0
            for try await lost in group { failed += lost }
            return failed
        }
    }

    /// The seconds a service's handlers of `kind` have run in all (`job_duration_seconds_sum`
    /// of its /metrics); nil when it has none yet.
    static func jobSecondsSum(_ url: String, kind: String) async -> Double? {
        var request = HTTPClientRequest(url: url + "/metrics")
        request.method = .GET
        guard let response = try? await http.execute(request, timeout: .seconds(30)),
              let body = try? await response.body.collect(upTo: 16 << 20) else { return nil }
        let values = String(buffer: body).split(separator: "\n")
            .filter { $0.hasPrefix("job_duration_seconds_sum") && $0.contains("\"\(kind)\"") }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        return values.isEmpty ? nil : values.reduce(0, +)
    }
}
