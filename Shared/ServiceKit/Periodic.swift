import Foundation
import Logging
import Models
import PostgresNIO

/// When a periodic schedule comes round, on the wall clock of a time zone (DST included).
package enum Recurrence: Sendable, Hashable {
    case hourly(minute: Int)
    case daily(hour: Int, minute: Int)
    /// `day` 1 … 28, so every month has it.
    case monthly(day: Int, hour: Int, minute: Int)

    private var components: DateComponents {
        switch self {
        case .hourly(let minute): DateComponents(minute: minute, second: 0)
        case .daily(let hour, let minute): DateComponents(hour: hour, minute: minute, second: 0)
        case .monthly(let day, let hour, let minute): DateComponents(day: day, hour: hour, minute: minute, second: 0)
        }
    }

    /// The first occurrence strictly after `date` in `zone`; a time that a spring-forward skips
    /// is taken at the first instant after the gap.
    package func next(after date: Date, in zone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        return calendar.nextDate(after: date, matching: components, matchingPolicy: .nextTime, repeatedTimePolicy: .first)
    }

    /// The period an occurrence belongs to, named in its zone: "2026-12-06", "2026-12" or
    /// "2026-12-06T06". One run per period is what the schedule promises.
    package func period(of occurrence: Date, in zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = calendar.dateComponents([.year, .month, .day, .hour], from: occurrence)
        let (year, month, day, hour) = (parts.year ?? 0, parts.month ?? 0, parts.day ?? 0, parts.hour ?? 0)
        switch self {
        case .hourly: return String(format: "%04d-%02d-%02dT%02d", year, month, day, hour)
        case .daily: return String(format: "%04d-%02d-%02d", year, month, day)
        case .monthly: return String(format: "%04d-%02d", year, month)
        }
    }
}

/// One of the places a schedule runs for, on its own clock (an office in its time zone).
package struct PeriodicScope: Sendable, Hashable {
    package var id: String
    package var timeZone: TimeZone

    package init(id: String, timeZone: TimeZone) {
        self.id = id
        self.timeZone = timeZone
    }

    /// One run for the whole service, on UTC.
    package static let everywhere: @Sendable (PostgresConnection, Logger) async throws -> [PeriodicScope] = { _, _ in
        [PeriodicScope(id: "all", timeZone: .gmt)]
    }

    /// Every entity of `kinds` in the directory replica, each in its own time zone.
    package static func entities(_ kinds: [EntityKind]) -> @Sendable (PostgresConnection, Logger) async throws -> [PeriodicScope] {
        { connection, logger in
            let rows = try await connection.query(
                "SELECT id, time_zone FROM directory_entities WHERE kind = ANY(\(kinds.map(\.rawValue))) ORDER BY id", logger: logger)
            var scopes: [PeriodicScope] = []
            for try await (id, zone) in rows.decode((UUID, String).self) {
                scopes.append(PeriodicScope(id: id.lowercasedString, timeZone: TimeZone(identifier: zone) ?? .gmt))
            }
            return scopes
        }
    }
}

/// One period's run of a schedule for one scope: the payload of its job.
package struct PeriodicRun: Codable, Sendable, Hashable {
    package var schedule: String
    package var scope: String
    package var timeZone: String
    package var period: String
    package var dueAt: Date
}

/// Work a service does on the service clock at set local times ("daily at 06:00 in each office's
/// time zone", "the first of each month"), declared in a few lines. Each period's run is one job
/// whose unique key names the schedule, the scope and the period, so however many replicas
/// schedule it and however often a service restarts, a period runs once; the run schedules the
/// next. A period missed entirely (the service was down, the virtual clock jumped) is skipped:
/// the next run is the first occurrence after now, and `PeriodicRun.dueAt` says which it is.
package struct PeriodicSchedule: Sendable {
    package var name: String
    package var recurrence: Recurrence
    package var scopes: @Sendable (PostgresConnection, Logger) async throws -> [PeriodicScope]
    package var handle: @Sendable (PeriodicRun, PostgresConnection, Logger) async throws -> Void

    package init(name: String, recurrence: Recurrence,
                 scopes: @escaping @Sendable (PostgresConnection, Logger) async throws -> [PeriodicScope] = PeriodicScope.everywhere,
                 handle: @escaping @Sendable (PeriodicRun, PostgresConnection, Logger) async throws -> Void) {
        self.name = name
        self.recurrence = recurrence
        self.scopes = scopes
        self.handle = handle
    }

    package var jobKind: String { "periodic.\(name)" }

    /// Schedules the run of the first occurrence after `after` for `scope` (nothing when it is
    /// scheduled already).
    package func scheduleNext(for scope: PeriodicScope, after: Date, jobs: JobQueue, on connection: PostgresConnection, logger: Logger) async throws {
        guard let due = recurrence.next(after: after, in: scope.timeZone) else { return }
        let run = PeriodicRun(schedule: name, scope: scope.id, timeZone: scope.timeZone.identifier,
                              period: recurrence.period(of: due, in: scope.timeZone), dueAt: due)
        try await jobs.schedule(kind: jobKind, payload: run, runAt: due, uniqueKey: "periodic:\(name):\(run.scope):\(run.period)",
                                on: connection, logger: logger)
    }

    /// The run's job: the work, then the next period's job, in one transaction.
    package func jobHandler(clock: any ServiceClock, jobs: JobQueue) -> JobHandler {
        JobHandler(kind: jobKind) { job, connection, logger in
            let run = try job.decode(PeriodicRun.self)
            try await handle(run, connection, logger)
            let zone = TimeZone(identifier: run.timeZone) ?? .gmt
            try await scheduleNext(for: PeriodicScope(id: run.scope, timeZone: zone), after: max(run.dueAt, clock.now), jobs: jobs,
                                   on: connection, logger: logger)
        }
    }
}

/// Keeps every scope of every schedule with its next run: at start and every hour (a new office
/// gets its runs within the hour), itself a periodic schedule of the kit's.
package enum PeriodicScheduler {
    package static func ensure(_ schedules: [PeriodicSchedule], now: Date, jobs: JobQueue, on connection: PostgresConnection, logger: Logger) async throws {
        for schedule in schedules {
            for scope in try await schedule.scopes(connection, logger) {
                try await schedule.scheduleNext(for: scope, after: now, jobs: jobs, on: connection, logger: logger)
            }
        }
    }

    /// The service's schedules plus the kit's hourly one that keeps them all scheduled.
    package static func withKeeper(_ schedules: [PeriodicSchedule], clock: any ServiceClock, jobs: JobQueue) -> [PeriodicSchedule] {
        guard !schedules.isEmpty else { return [] }
        let keeper = PeriodicSchedule(name: "kit.keep-schedules", recurrence: .hourly(minute: 0)) { _, connection, logger in
            try await ensure(schedules, now: clock.now, jobs: jobs, on: connection, logger: logger)
        }
        return schedules + [keeper]
    }
}
