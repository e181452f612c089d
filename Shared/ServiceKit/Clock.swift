import Foundation
import Logging
import Models
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// The only source of "now" for domain code, so tests can move time instead of sleeping.
package protocol ServiceClock: Sendable {
    var now: Date { get }
}

package struct WallClock: ServiceClock {
    package init() {}
    package var now: Date { Date() }
}

/// A clock that only moves when told to. Under `CLOCK=virtual` every service keeps one, kept in
/// step with the shared row `platform.clock` that `POST /v1/admin/clock` moves.
package final class VirtualClock: ServiceClock {
    private let current: Mutex<Date>

    package init(_ start: Date) {
        current = Mutex(start)
    }

    package var now: Date { current.withLock { $0 } }

    /// Moves forward only: a stale notification never takes the clock back.
    package func advance(to date: Date) {
        current.withLock { value in
            if date > value { value = date }
        }
    }
}

/// The shared row behind every service's virtual clock.
package enum SharedClockStore {
    package static let channel = "platform_clock"

    /// Creates the row if this role may (tests, first start); otherwise the stack script has.
    package static func load(_ client: PostgresClient, logger: Logger) async throws -> Date {
        do {
            if let date = try await read(client, logger: logger) { return date }
        } catch {
            logger.notice("platform.clock is missing; creating it", metadata: ["error": "\(String(reflecting: error))"])
        }
        do {
            try await client.query("CREATE SCHEMA IF NOT EXISTS platform", logger: logger)
            try await client.query("CREATE TABLE IF NOT EXISTS platform.clock (id int PRIMARY KEY CHECK (id = 1), now timestamptz NOT NULL)", logger: logger)
            let start = Date()
            try await client.query("INSERT INTO platform.clock (id, now) VALUES (1, \(start)) ON CONFLICT (id) DO NOTHING", logger: logger)
        } catch {
            throw ConfigError(variable: "CLOCK", problem: "is virtual but the table platform.clock cannot be read or created (\(String(reflecting: error)))")
        }
        guard let date = try await read(client, logger: logger) else {
            throw ConfigError(variable: "CLOCK", problem: "is virtual but platform.clock has no row")
        }
        return date
    }

    package static func read(_ client: PostgresClient, logger: Logger) async throws -> Date? {
        let rows = try await client.query("SELECT now FROM platform.clock WHERE id = 1", logger: logger)
        for try await date in rows.decode(Date.self) { return date }
        return nil
    }

    /// Moves the shared clock forward (never back) and tells every service.
    package static func advance(_ client: PostgresClient, to date: Date, logger: Logger) async throws -> Date {
        try await client.transaction(logger: logger) { connection in
            let rows = try await connection.query(
                "UPDATE platform.clock SET now = greatest(now, \(date)) WHERE id = 1 RETURNING now", logger: logger)
            var result = date
            for try await value in rows.decode(Date.self) { result = value }
            let payload = RFC3339.string(from: result)
            try await connection.query("SELECT pg_notify(\(channel), \(payload))", logger: logger)
            return result
        }
    }
}

/// Wakes whoever waits on it (the job runner, the outbox dispatcher). A ring while nobody
/// waits is kept, so a wake-up that races a wait is never lost.
package final class Doorbell: Sendable {
    private struct State {
        var pending = false
        var nextID: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    package init() {}

    package func ring() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if state.waiters.isEmpty {
                state.pending = true
                return []
            }
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Wakes one waiter, or the next to wait: one new job needs one worker, not all of them.
    package func ringOne() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let id = state.waiters.keys.min() else {
                state.pending = true
                return nil
            }
            return state.waiters.removeValue(forKey: id)
        }
        waiter?.resume()
    }

    /// Returns when rung, when `timeout` passed, or when the task is cancelled. The timeout is an
    /// event-loop timer (`LoopTimer`), not a sleeping child task.
    package func wait(timeout: Duration) async {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    if Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow {
                    continuation.resume()
                } else {
                    // Fires after a ring only to find the waiter gone.
                    LoopTimer.loop.scheduleTask(in: LoopTimer.amount(timeout)) { self.stopWaiting(id) }
                }
            }
        } onCancel: {
            stopWaiting(id)
        }
    }

    private func stopWaiting(_ id: UInt64) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
    }
}

/// `Task.sleep` on NIO's event loops. With those as the concurrency executor, `Task.sleep` still
/// goes through Dispatch's timers and resumes on a Dispatch thread: in a busy service the timer
/// wake-ups and thread hops of every job's lease renewer and every doorbell's timeout were a sixth
/// of its CPU, most of it in context switches.
package enum LoopTimer {
    static var loop: any EventLoop { MultiThreadedEventLoopGroup.currentEventLoop ?? MultiThreadedEventLoopGroup.singleton.any() }

    static func amount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    /// Throws `CancellationError` when the task is cancelled first, as `Task.sleep` does.
    package static func sleep(for duration: Duration) async throws {
        let sleeper = Sleeper()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                guard sleeper.start(continuation) else { return }
                let timer = loop.scheduleTask(in: amount(duration)) { sleeper.finish(nil) }
                sleeper.keep(timer)
            }
        } onCancel: {
            sleeper.finish(CancellationError())
        }
    }

    private final class Sleeper: Sendable {
        private struct State {
            var continuation: CheckedContinuation<Void, any Error>?
            var timer: Scheduled<Void>?
            var done = false
        }

        private let state = Mutex(State())

        /// False when cancelled before it began (the continuation is then resumed).
        func start(_ continuation: CheckedContinuation<Void, any Error>) -> Bool {
            let cancelled = state.withLock { state -> Bool in
                if state.done { return true }
                state.continuation = continuation
                return false
            }
            if cancelled { continuation.resume(throwing: CancellationError()) }
            return !cancelled
        }

        func keep(_ timer: Scheduled<Void>) {
            let done = state.withLock { state -> Bool in
                if !state.done { state.timer = timer }
                return state.done
            }
            if done { timer.cancel() }
        }

        func finish(_ error: (any Error)?) {
            let (continuation, timer) = state.withLock { state -> (CheckedContinuation<Void, any Error>?, Scheduled<Void>?) in
                state.done = true
                defer { state.continuation = nil; state.timer = nil }
                return (state.continuation, state.timer)
            }
            if error != nil { timer?.cancel() }
            if let error { continuation?.resume(throwing: error) } else { continuation?.resume() }
        }
    }
}
