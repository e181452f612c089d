import Foundation
import Logging
import Models
import PostgresNIO
import Testing
@testable import ServiceKit
import TestSupport

/// Periodic schedules, reusable unique keys and undecodable payloads (issue 24's kit parts).
@Suite("Kit: periodic schedules, reusable keys, undecodable payloads")
struct PeriodicTests {
    let jobs = JobQueue()

    static func date(_ text: String) -> Date { RFC3339.date(from: text) ?? .distantPast }

    func runner(_ client: PostgresClient, clock: any ServiceClock, handlers: [JobHandler]) -> JobRunner {
        var settings = JobRunner.Settings()
        settings.pollInterval = .milliseconds(50)
        settings.workers = 2
        return JobRunner(client: client, clock: clock, handlers: handlers, doorbell: Doorbell(), logger: TestDatabase.logger, settings: settings)
    }

    @Test("X-5: a daily 06:00 schedule in two offices' zones, over a month of virtual days with two replicas and a restart, runs once per office per day, at 06:00 local across the DST change")
    func dailyOverAMonth() async throws {
        try await TestDatabase.withSchema { client, _ in
            let clock = ManualClock(Self.date("2027-03-01T00:00:00Z"))
            let zones = ["chicago": "America/Chicago", "seattle": "America/Los_Angeles"]
            let runs = Recorder<PeriodicRun>()
            let schedule = PeriodicSchedule(name: "daily-check", recurrence: .daily(hour: 6, minute: 0), scopes: { _, _ in
                zones.sorted { $0.key < $1.key }.compactMap { id, zone in TimeZone(identifier: zone).map { PeriodicScope(id: id, timeZone: $0) } }
            }) { run, _, _ in runs.append(run) }
            let schedules = PeriodicScheduler.withKeeper([schedule], clock: clock, jobs: jobs)
            @Sendable func boot() async throws -> JobRunner {
                try await client.withConnection { connection in
                    try await PeriodicScheduler.ensure(schedules, now: clock.now, jobs: jobs, on: connection, logger: TestDatabase.logger)
                }
                return runner(client, clock: clock, handlers: schedules.map { $0.jobHandler(clock: clock, jobs: jobs) })
            }
            var replicas = [try await boot(), try await boot()]
            for day in 1...31 {
                clock.advance(by: 86_400)
                if day == 15 { replicas[1] = try await boot() }
                // The hourly keeper's runs come due too: drain until nothing is left to run.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for replica in replicas + replicas { group.addTask { while try await replica.runNext() != nil {} } }
                    try await group.waitForAll()
                }
            }
            let all = runs.all
            for (scope, zone) in zones {
                let mine = all.filter { $0.scope == scope }
                #expect(mine.count == 31, "\(scope): \(mine.map(\.period))")
                #expect(Set(mine.map(\.period)).count == 31, "one run per day")
                var calendar = Calendar(identifier: .gregorian)
                calendar.timeZone = try #require(TimeZone(identifier: zone))
                #expect(mine.allSatisfy { calendar.component(.hour, from: $0.dueAt) == 6 && calendar.component(.minute, from: $0.dueAt) == 0 })
                #expect(Set(mine.map { calendar.component(.day, from: $0.dueAt) }) == Set(1...31))
            }
            let pending = try await client.query("SELECT count(*)::int FROM jobs WHERE kind = 'periodic.daily-check' AND state = 'available'",
                                                 logger: TestDatabase.logger).first(Int.self)
            #expect(pending == 2, "each office has exactly its next day's run waiting")
        }
    }

    @Test("X-5: occurrences on the wall clock: daily across spring-forward, monthly on the first, hourly; periods are named in the zone")
    func recurrences() throws {
        let chicago = try #require(TimeZone(identifier: "America/Chicago"))
        // 2027-03-14 is the spring-forward Sunday: 06:00 CDT is 11:00Z, the day before 06:00 CST was 12:00Z.
        #expect(Recurrence.daily(hour: 6, minute: 0).next(after: Self.date("2027-03-13T12:00:00Z"), in: chicago) == Self.date("2027-03-14T11:00:00Z"))
        // 02:30 does not exist that night: the first instant after the gap.
        #expect(Recurrence.daily(hour: 2, minute: 30).next(after: Self.date("2027-03-14T06:00:00Z"), in: chicago) == Self.date("2027-03-14T08:00:00Z"))
        let monthly = Recurrence.monthly(day: 1, hour: 0, minute: 0)
        let first = try #require(monthly.next(after: Self.date("2027-01-20T00:00:00Z"), in: chicago))
        #expect(first == Self.date("2027-02-01T06:00:00Z"))
        #expect(monthly.period(of: first, in: chicago) == "2027-02")
        #expect(Recurrence.hourly(minute: 0).next(after: Self.date("2027-01-20T10:15:00Z"), in: .gmt) == Self.date("2027-01-20T11:00:00Z"))
        #expect(Recurrence.daily(hour: 23, minute: 30).period(of: Self.date("2027-01-21T05:30:00Z"), in: chicago) == "2027-01-20")
    }

    @Test("X-5: a reusable unique key is free again once its job has finished, cancelled or discarded; a plain key is held for ever")
    func reusableKeys() async throws {
        try await TestDatabase.withSchema { client, _ in
            let clock = ManualClock()
            let worker = runner(client, clock: clock, handlers: [JobHandler(kind: "check") { _, _, _ in }])
            @Sendable func schedule(_ key: String, reusable: Bool) async throws -> Int64 {
                try await client.withConnection { connection in
                    try await jobs.schedule(kind: "check", payload: ["n": 1], runAt: clock.now, uniqueKey: key, keyReusable: reusable,
                                            on: connection, logger: TestDatabase.logger)
                }
            }
            let first = try await schedule("follow-up:1", reusable: true)
            #expect(try await schedule("follow-up:1", reusable: true) == first, "taken while it waits")
            _ = try await worker.runNext()
            let second = try await schedule("follow-up:1", reusable: true)
            #expect(second != first, "free once completed")
            try await client.withConnection { try await jobs.cancel(uniqueKey: "follow-up:1", on: $0, logger: TestDatabase.logger) }
            #expect(try await schedule("follow-up:1", reusable: true) != second, "free once cancelled")

            let plain = try await schedule("decision:1", reusable: false)
            while try await worker.runNext() != nil {}
            #expect(try await schedule("decision:1", reusable: false) == plain, "a plain key stays taken after its job finished")
        }
    }

    @Test("X-5: a payload that cannot be decoded discards its job at once with the reason, instead of retrying or running with nothing")
    func undecodablePayload() async throws {
        try await TestDatabase.withSchema { client, _ in
            struct Typed: Codable { var contactId: UUID }
            let clock = ManualClock()
            let ran = Recorder<UUID>()
            let worker = runner(client, clock: clock, handlers: [JobHandler(kind: "typed") { job, _, _ in ran.append(try job.decode(Typed.self).contactId) }])
            let id = try await client.withConnection { connection in
                try await jobs.schedule(kind: "typed", payload: ["contactId": "not-a-uuid"], runAt: clock.now, on: connection, logger: TestDatabase.logger)
            }
            _ = try await worker.runNext()
            let rows = try await client.query("SELECT state, attempts, last_error FROM jobs WHERE id = \(id)", logger: TestDatabase.logger)
            var found = false
            for try await (state, attempts, error) in rows.decode((String, Int, String?).self) {
                found = true
                #expect(state == "discarded" && attempts == 1, "\(state) after \(attempts)")
                #expect(error?.contains("undecodable payload: job \(id) (typed) is not a Typed") == true, "\(error ?? "")")
            }
            #expect(found)
            #expect(ran.all.isEmpty)
        }
    }

    @Test("X-5: retention deletes finished jobs, handled inbox rows and delivered outbox rows past their age, in batches, and nothing still waiting or recent")
    func retention() async throws {
        try await TestDatabase.withSchema { client, _ in
            let logger = TestDatabase.logger
            try await client.query("""
                INSERT INTO jobs (kind, payload, run_at, state, finished_at)
                SELECT 'old', '{}', now(), 'completed', now() - interval '10 days' FROM generate_series(1, 1200)
                """, logger: logger)
            try await client.query("""
                INSERT INTO jobs (kind, payload, run_at, state, finished_at) VALUES
                    ('recent', '{}', now(), 'completed', now() - interval '1 day'),
                    ('failed', '{}', now(), 'discarded', now() - interval '10 days'),
                    ('waiting', '{}', now() - interval '10 days', 'available', NULL)
                """, logger: logger)
            try await client.query("""
                INSERT INTO inbox (event_id, handler, event_type, handled_at)
                SELECT gen_random_uuid(), 'h', 't', now() - (CASE WHEN n <= 700 THEN interval '9 days' ELSE interval '1 hour' END)
                FROM generate_series(1, 710) n
                """, logger: logger)
            try await client.query("""
                INSERT INTO outbox (event_id, event_type, subscriber, payload, created_at, delivered_at)
                SELECT gen_random_uuid(), 't', 's', '{}', now() - interval '9 days', CASE WHEN n <= 3 THEN now() - interval '9 days' END
                FROM generate_series(1, 5) n
                """, logger: logger)
            let deleted = try await Retention.prune(days: 7, client: client, logger: logger)
            #expect(deleted["jobs"] == 1200 && deleted["inbox"] == 700 && deleted["outbox"] == 3, "\(deleted)")
            let kinds = try await client.query("SELECT kind FROM jobs ORDER BY kind", logger: logger).collect().map { try $0.decode(String.self) }
            #expect(kinds == ["failed", "recent", "waiting"], "a discarded job is kept four times as long; waiting and recent ones stay")
            #expect(try await client.query("SELECT count(*)::int FROM inbox", logger: logger).first(Int.self) == 10)
            #expect(try await client.query("SELECT count(*)::int FROM outbox WHERE delivered_at IS NULL", logger: logger).first(Int.self) == 2,
                    "undelivered events are never pruned")
        }
    }
}
