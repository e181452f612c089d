import NIOCore
import Synchronization

/// Waits that end. A job, a claim or a delivery that waits on the database or a peer gives up at
/// its deadline even when what it waits on never answers and ignores cancellation (a pool request
/// stranded while the database restarted, a peer that accepted the connection and went silent).
/// Past the deadline the caller gets `Deadline.Passed` at once; the work is cancelled and left to
/// end on its own, and whatever it still writes is fenced off by its caller (a job's lease token).
package enum Deadline {
    package struct Passed: Error, CustomStringConvertible {
        package var description: String
        package init(_ description: String) { self.description = description }
    }

    /// `body`'s result, or `Passed(problem)` once `limit` has passed, whichever comes first.
    package static func run<T: Sendable>(_ limit: Duration, _ problem: @autoclosure () -> String,
                                         _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let outcome = Outcome<T>()
        let problem = problem()
        let work = Task {
            do { outcome.finish(.success(try await body())) } catch { outcome.finish(.failure(error)) }
        }
        // An event-loop timer, not a sleeping task: no thread hop per call (see `LoopTimer`).
        let timer = LoopTimer.loop.scheduleTask(in: LoopTimer.amount(limit)) {
            if outcome.finish(.failure(Passed(problem))) { work.cancel() }
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await outcome.value()
        } onCancel: {
            outcome.finish(.failure(CancellationError()))
            work.cancel()
        }
    }

    /// `run`, saying what did not finish: "`what` did not finish within `limit`".
    package static func run<T: Sendable>(_ limit: Duration, doing what: String,
                                         _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await run(limit, "\(what) did not finish within \(limit)", body)
    }

    /// The first result given, handed to the one waiter whether it came before or after it waits.
    private final class Outcome<T: Sendable>: Sendable {
        private struct State {
            var result: Result<T, any Error>?
            var waiter: CheckedContinuation<T, any Error>?
        }

        private let state = Mutex(State())

        /// False when a result was given before.
        @discardableResult
        func finish(_ result: Result<T, any Error>) -> Bool {
            let (first, waiter) = state.withLock { state -> (Bool, CheckedContinuation<T, any Error>?) in
                guard state.result == nil else { return (false, nil) }
                state.result = result
                defer { state.waiter = nil }
                return (true, state.waiter)
            }
            waiter?.resume(with: result)
            return first
        }

        func value() async throws -> T {
            try await withCheckedThrowingContinuation { continuation in
                let ready = state.withLock { state -> Result<T, any Error>? in
                    if let result = state.result { return result }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        }
    }
}
