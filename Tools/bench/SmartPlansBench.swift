import Foundation
import Logging
import Models
import PostgresNIO

/// `bench smartplans` (SP-3, SP-6, SP-7, SP-10 at volume), against a stack on the wall clock:
/// BENCH_ENROLLMENTS (100,000) contacts imported (10,000 a CSV), half enrolled in a plan whose one
/// step is a call task (made in contacts) and half in one whose step is an e-mail (accepted by
/// notifications; an e-mail rather than a text, whose 10:00–19:00 Chicago window would hold it on
/// most hours of the day), 10,000 a request. Figures:
/// - the first bulk enrollment of 10,000 contacts (target under 2 s);
/// - steps per second from the first enrollment until every enrollment has run its step and
///   finished (target ≥ 2,000/s), beside a floor: the same number of step-log rows by bare
///   multi-row INSERTs (10,000 a statement) into a copy of the step log;
/// - notifications' own acceptance rate of the plan's e-mails over the same time, and contacts'
///   of the tasks, so it says which part bounds the total;
/// - exactly once: one step-log row, one task or one message per enrollment;
/// - CPU per step per service.
/// Settings: SMARTPLANS_URL (or SMARTPLANS_PORT), BENCH_ENROLLMENTS, BENCH_DEADLINE (seconds, 1,800).
extension Bench {
    static func smartPlansScenario(_ setup: Setup) async throws {
        let environment = ProcessInfo.processInfo.environment
        let smartplansURL = environment["SMARTPLANS_URL"] ?? "http://127.0.0.1:\(environment["SMARTPLANS_PORT"] ?? "8085")"
        let total = max((Int(environment["BENCH_ENROLLMENTS"] ?? "") ?? 100_000) / 2 * 2, 2)
        let deadline = Int(environment["BENCH_DEADLINE"] ?? "") ?? 1_800
        let (token, root) = try await company(setup)
        let (patched, _) = try await call(.PATCH, setup.contactsURL + "/v1/entities/\(root)", token: token,
                                          body: json(["postalAddress": "1 Bench Street, Chicago, IL 60601"]))
        guard patched == 200 else { throw Failure(description: "the postal address (CAN-SPAM) was refused (\(patched))") }
        let agentEmail = "plans-agent-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        _ = try await call(.POST, setup.contactsURL + "/v1/users", token: token, body: json([
            "role": "agent", "firstName": "Plan", "lastName": "Agent", "email": agentEmail, "password": "agent password 1", "entityIds": [root]]))
        let run = String(UUID().uuidString.prefix(6)).lowercased()
        print("bench smartplans: importing \(total) contacts …")
        let importStart = ContinuousClock.now
        for chunk in stride(from: 0, to: total, by: 10_000) {
            var csv = "First Name,Last Name,Email,Status,Assigned Agent\n"
            for index in chunk..<min(chunk + 10_000, total) { csv += "Plan\(index),Bench,plan\(index)-\(run)@example.com,active_lead,\(agentEmail)\n" }
            let (imported, answer) = try await call(.POST, setup.contactsURL + "/v1/contacts/import", token: token, body: csv, contentType: "text/csv")
            guard imported == 200 else { throw Failure(description: "import answered \(imported): \(answer)") }
        }
        let importSeconds = milliseconds(since: importStart) / 1000
        let contacts: [String] = try await withDatabase(setup) { client, logger in
            var ids: [String] = []
            for try await id in try await client.query("""
                SELECT c.id FROM contacts.contacts c JOIN contacts.entities e ON e.company_id = c.company_id WHERE e.id = \(root)::uuid ORDER BY c.id
                """, logger: logger).decode(UUID.self) { ids.append(id.lowercasedString) }
            return ids
        }
        guard contacts.count == total else { throw Failure(description: "\(contacts.count) of \(total) contacts imported") }
        // SmartPlans enrolls only contacts its replica has.
        let replicated = try await waitForCount(setup, "the contacts in SmartPlans' replica", """
            SELECT count(*)::int FROM smartplans.contact_replica c JOIN contacts.entities e ON e.company_id = c.company_id WHERE e.id = \(root)::uuid
            """, reaches: total, seconds: 600)
        print(String(format: "  imported in %.1f s, all in SmartPlans' replica %.1f s later", importSeconds, replicated.seconds))

        func plan(_ name: String, _ step: [String: Any]) async throws -> String {
            let (status, answer) = try await call(.POST, smartplansURL + "/v1/smartplans/plans", token: token,
                                                  body: json(["name": name, "durationDays": 30, "steps": [step]]))
            guard status == 201, case .string(let id)? = answer["id"] else { throw Failure(description: "plan refused (\(status)): \(answer)") }
            return id
        }
        // SP-6 makes tasks 08:00–17:00 Chicago only: outside those hours a call-task step would wait
        // for the morning. A stack on the virtual clock (CLOCK=virtual) is moved to the next noon
        // there, so the issue's half-and-half runs at any hour; on the wall clock the "task" half
        // is e-mails too, and the line below says so.
        var chicago = Calendar(identifier: .gregorian)
        chicago.timeZone = TimeZone(identifier: "America/Chicago") ?? .gmt
        let platform = try await platformToken(setup)
        var hour = chicago.component(.hour, from: Date())
        if !(8..<16).contains(hour), case (200, let state) = try await call(.GET, setup.contactsURL + "/v1/admin/clock", token: platform),
           case .string(let text)? = state["now"], let now = RFC3339.date(from: text),
           let noon = chicago.nextDate(after: now, matching: DateComponents(hour: 12, minute: 0), matchingPolicy: .nextTime) {
            let (moved, _) = try await call(.POST, setup.contactsURL + "/v1/admin/clock", token: platform,
                                            body: json(["advanceSeconds": noon.timeIntervalSince(now).rounded(.up)]))
            if moved == 200 {
                hour = 12
                print("  the stack's virtual clock was moved to 12:00 in Chicago, inside SP-6's 08:00–17:00")
            }
        }
        let tasksNow = (8..<16).contains(hour)
        if !tasksNow {
            print("  it is \(hour):xx in Chicago, outside SP-6's 08:00–17:00: both halves are e-mail steps this run (CLOCK=virtual runs the mix at any hour)")
        }
        let calls = tasksNow ? try await plan("Bench calls \(run)", ["kind": "call", "title": "Call {contact.first.name}", "days": 1])
            : try await plan("Bench e-mails too \(run)", ["kind": "email", "subject": "Hi {contact.first.name}", "body": "Another note."])
        let mails = try await plan("Bench e-mails \(run)", ["kind": "email", "subject": "Hello {contact.first.name}", "body": "A note from {agent.first.name}."])

        let floor = try await withDatabase(setup) { client, logger -> Double in
            try await client.query("CREATE TABLE IF NOT EXISTS public.bench_step_log (LIKE smartplans.step_log INCLUDING ALL)", logger: logger)
            let start = ContinuousClock.now
            for chunk in stride(from: 0, to: total, by: 10_000) {
                let count = min(10_000, total - chunk)
                try await client.query("""
                    INSERT INTO public.bench_step_log (enrollment_id, seq, step_index, plan_id, kind, outcome, detail, at)
                    SELECT gen_random_uuid(), 1, 0, gen_random_uuid(), 'call', 'done', NULL, now() FROM generate_series(1, \(count))
                    """, logger: logger)
            }
            let took = milliseconds(since: start)
            try await client.query("DROP TABLE public.bench_step_log", logger: logger)
            return took
        }

        print("enrolling \(total / 2) contacts in a one-step \(tasksNow ? "call-task" : "e-mail") plan and \(total / 2) in a one-step e-mail plan, 10,000 a request; "
              + "floor = the same number of step-log rows by bare multi-row INSERTs of 10,000")
        let cpuBefore = CPUUse.sample(runDir: setup.runDir)
        let start = ContinuousClock.now
        var firstEnroll = 0.0
        var outcomes: [String: Int] = [:]
        for (offset, chunk) in stride(from: 0, to: total, by: 10_000).enumerated() {
            let ids = Array(contacts[chunk..<min(chunk + 10_000, total)])
            let planId = chunk < total / 2 ? calls : mails
            let sent = ContinuousClock.now
            let (status, answer) = try await call(.POST, smartplansURL + "/v1/smartplans/plans/\(planId)/enrollments", token: token,
                                                  body: json(["contactIds": ids]))
            if offset == 0 { firstEnroll = milliseconds(since: sent) }
            guard status == 200, case .array(let items)? = answer["items"] else { throw Failure(description: "enrollment answered \(status): \(answer)") }
            for item in items { if case .string(let outcome)? = item["outcome"] { outcomes[outcome, default: 0] += 1 } }
        }
        let enrolled = milliseconds(since: start) / 1000
        // Asked whether any advance job is still waiting or running (through their partial
        // indexes; the first found answers), not by counting: counting the finished enrollments
        // scanned the whole table, and counting the waiting jobs read every one of tens of
        // thousands (40-60 ms of the database's CPU each time), which the run measured as its own.
        _ = try await waitForCount(setup, "the enrollments' runs", """
            SELECT (NOT EXISTS (SELECT FROM smartplans.jobs WHERE kind = 'smartplans.advance' AND state IN ('available', 'retryable', 'running')))::int
            """, reaches: 1, seconds: deadline, failing: false)
        let elapsed = milliseconds(since: start) / 1000
        let cpuAfter = CPUUse.sample(runDir: setup.runDir)
        // What the steps set off after their outcomes: the messages' timeline entries, the tasks'
        // events in accountability. Counted too, so no work is left out of the cost of a step.
        let tail = try await drained(setup, outboxes: ["contacts", "smartplans", "notifications"], jobs: ["notifications", "contacts"],
                                  seconds: deadline, every: .milliseconds(250))
        let cpuQuiet = CPUUse.sample(runDir: setup.runDir)
        // Counted once both CPU samples are taken.
        let (finished, steps, done, failed, tasks, messages, mailSpan, taskSpan) = try await withDatabase(setup) { client, logger
            -> (Int, Int, Int, Int, Int, Int, Double, Double) in
            let plans = [calls, mails]
            let ran = try await client.query("""
                SELECT count(*)::int FROM smartplans.enrollments WHERE plan_id = ANY(\(plans)::uuid[]) AND state IN ('finished', 'stopped')
                """, logger: logger).collect().first?.decode(Int.self) ?? 0
            let log = try await client.query("""
                SELECT count(*)::int, count(*) FILTER (WHERE outcome = 'done')::int, count(*) FILTER (WHERE outcome = 'failed')::int
                FROM smartplans.step_log WHERE plan_id = ANY(\(plans)::uuid[])
                """, logger: logger).collect().first?.decode((Int, Int, Int).self) ?? (0, 0, 0)
            let made = try await client.query("""
                SELECT count(*)::int, coalesce(extract(epoch FROM max(t.created_at) - min(t.created_at)), 0)::float8
                FROM contacts.tasks t JOIN contacts.entities e ON e.company_id = t.company_id WHERE e.id = \(root)::uuid AND t.kind = 'call'
                """, logger: logger).collect().first?.decode((Int, Double).self) ?? (0, 0)
            let sent = try await client.query("""
                SELECT count(*)::int, coalesce(extract(epoch FROM max(m.created_at) - min(m.created_at)), 0)::float8
                FROM notifications.messages m JOIN contacts.entities e ON e.company_id = m.company_id
                WHERE e.id = \(root)::uuid AND m.doc::jsonb->>'reference' LIKE 'smartplans-%'
                """, logger: logger).collect().first?.decode((Int, Double).self) ?? (0, 0)
            return (ran, log.0, log.1, log.2, made.0, sent.0, sent.1, made.1)
        }
        // Its floor: 10,000 rows by the same bare INSERT as the steps' floor.
        line("bulk enrollment of 10,000 contacts (target < 2 s)", firstEnroll, unit: "ms", floor: floor * Double(min(10_000, total)) / Double(total))
        print(String(format: "  all %d enrolled in %.1f s (%@)", total, enrolled,
                     outcomes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") as NSString))
        let rate = Double(finished) / max(elapsed, 0.001)
        let floorRate = Double(total) / max(floor / 1000, 0.001)
        print(String(format: "steps: %d of %d enrollments ran their step in %.1f s: %.0f steps/s (target >= 2,000)   floor %.0f rows/s   ratio %.2fx",
                     finished, total, elapsed, rate, floorRate, floorRate / max(rate, 0.001)))
        // Spans come from the rows' own times: on a virtual clock those stand still.
        if mailSpan + taskSpan > 0.1 {
            print(String(format: "  notifications accepted %d plan e-mails over %.1f s (%.0f/s); contacts made %d call tasks over %.1f s (%.0f/s)",
                         messages, mailSpan, Double(messages) / max(mailSpan, 0.001), tasks, taskSpan, Double(tasks) / max(taskSpan, 0.001)))
        }
        print("  exactly once: \(steps) step-log rows (\(done) done, \(failed) failed), \(tasks) tasks and \(messages) e-mails for \(total) enrollments"
              + (steps == total && tasks + messages == total ? "" : " — NOT one each"))
        if let cpu = CPUUse.line(from: cpuBefore, to: cpuAfter, items: max(finished, 1), unit: "step") { print(cpu) }
        if let bound = CPUUse.bound(from: cpuBefore, to: cpuAfter, items: max(finished, 1), unit: "step") { print(bound) }
        print(String(format: "  every event the steps caused was delivered %.1f s after the last step (%.0f steps/s to quiet); counting that tail:", tail,
                     Double(finished) / max(elapsed + tail, 0.001)))
        if let cpu = CPUUse.line(from: cpuBefore, to: cpuQuiet, items: max(finished, 1), unit: "step") { print(cpu) }
    }
}
