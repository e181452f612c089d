import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// What a stopping service still waits on: the parts not yet stopped, the requests it is still
/// answering and the jobs still running, each with its age. A stop that takes longer than it
/// should says so by name in the log (`ShutdownWatchdog`), instead of a bare exit status.
package final class ShutdownProgress: Sendable {
    /// One per process: the middleware, the job runner and the watchdog report to the same one.
    package static let current = ShutdownProgress()

    private struct State {
        var nextID: UInt64 = 0
        var work: [UInt64: (what: String, since: ContinuousClock.Instant, isPart: Bool)] = [:]
        var stoppingSince: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    private let began = StartupGate()

    /// How long requests and jobs under way when a stop begins may go on: the HTTP server's drain,
    /// the job runner's release of running jobs and the close of connections still held all end
    /// by then, well inside `ShutdownWatchdog.gracePeriod`.
    package static let workGrace: Duration = .seconds(5)

    package init() {}

    /// Records `what` as under way until `ended(_:)` is called with the answer: a request, a job
    /// or a delivery, or, when `isPart`, a part of the service that is stopping.
    package func started(_ what: String, isPart: Bool = false) -> UInt64 {
        let now = ContinuousClock.now
        return state.withLock { state in
            defer { state.nextID += 1 }
            state.work[state.nextID] = (what, now, isPart)
            return state.nextID
        }
    }

    package func ended(_ id: UInt64) {
        _ = state.withLock { $0.work.removeValue(forKey: id) }
    }

    /// Notes when the stop began (the first call counts) and answers that instant.
    @discardableResult
    package func stopping() -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        let since = state.withLock { state in
            if state.stoppingSince == nil { state.stoppingSince = now }
            return state.stoppingSince ?? now
        }
        began.open()
        return since
    }

    /// Returns once a stop has begun (or the task is cancelled).
    package func untilStopping() async {
        await began.wait()
    }

    package var stoppingSince: ContinuousClock.Instant? { state.withLock { $0.stoppingSince } }

    /// What is still under way, oldest first, each with its age: "request GET /v1/x (4.2 s)".
    package func pending(now: ContinuousClock.Instant = .now) -> [String] {
        let work = state.withLock { Array($0.work.values) }
        return work.sorted { $0.since < $1.since }.map { "\($0.what) (\(Self.seconds(now - $0.since)) s)" }
    }

    /// Whether a part of the service is still stopping (as opposed to requests or jobs only).
    package var partsStopping: Bool { state.withLock { $0.work.values.contains { $0.isPart } } }

    static func seconds(_ duration: Duration) -> String {
        let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return String(format: "%.1f", value)
    }

    /// Runs `body` recorded as `what` under way.
    package func during<T>(_ what: String, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> sending T) async rethrows -> sending T {
        let id = started(what)
        defer { ended(id) }
        return try await body()
    }
}

/// Records each request under way (method and path), so a stop held up by a request names it.
struct InFlightMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = ShutdownProgress.current.started("request \(request.method.rawValue) \(request.uri.path)")
        defer { ShutdownProgress.current.ended(id) }
        return try await next(request, context)
    }
}

/// A part of the service (job runner, outbox dispatcher, database pool …) recorded as under way
/// from the moment the stop begins until it has stopped, so a slow stop names the part.
struct StoppingStage<Base: Service>: Service {
    let name: String
    let base: Base
    let logger: Logger

    private final class Slot: Sendable {
        let id = Mutex<UInt64?>(nil)
    }

    func run() async throws {
        let stage = Slot()
        defer {
            if let id = stage.id.withLock({ $0 }) {
                ShutdownProgress.current.ended(id)
                if let since = ShutdownProgress.current.stoppingSince {
                    logger.info("stopped", metadata: ["part": "\(name)", "seconds": "\(ShutdownProgress.seconds(.now - since))"])
                }
            }
        }
        try await withGracefulShutdownHandler {
            try await base.run()
        } onGracefulShutdown: {
            let id = ShutdownProgress.current.started(name, isPart: true)
            stage.id.withLock { $0 = id }
        }
    }
}

/// The service's background work (connection sweeper, wake listener, outbox dispatcher, job
/// runner) as one service that begins to stop as soon as the process does, alongside the HTTP
/// server's drain instead of after it: the application's group stops its services one after the
/// other, so a server draining a slow request and a runner giving its jobs their grace would
/// otherwise add up past the watchdog.
struct BackgroundWork: Service {
    let group: ServiceGroup

    let logger: Logger
    let progress: ShutdownProgress

    init(_ services: [any Service], logger: Logger, progress: ShutdownProgress = .current) {
        var configuration = ServiceGroupConfiguration(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [], logger: logger)
        // A part still waiting past the work's grace (a bookkeeping statement on a connection the
        // database dropped, whose own deadline is longer) is cancelled, so the stop does not wait
        // for its deadline.
        configuration.maximumGracefulShutdownDuration = ShutdownProgress.workGrace + .seconds(1)
        group = ServiceGroup(configuration: configuration)
        self.logger = logger
        self.progress = progress
    }

    func run() async throws {
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                do {
                    try await group.run()
                } catch where progress.stoppingSince != nil {
                    // A part cut short by the stop: the service is stopping anyway.
                    logger.notice("background work ended with an error while stopping", metadata: ["error": "\(String(reflecting: error))"])
                }
                return true
            }
            tasks.addTask {
                await withTaskGroup(of: Void.self) { first in
                    first.addTask { await progress.untilStopping() }
                    first.addTask { try? await gracefulShutdown() }
                    await first.next()
                    first.cancelAll()
                }
                if !Task.isCancelled { await group.triggerGracefulShutdown() }
                return false
            }
            // Until the work itself has ended; the trigger ends first on a normal stop.
            while let groupEnded = try await tasks.next() {
                if groupEnded {
                    tasks.cancelAll()
                    break
                }
            }
        }
        // The application's group counts a service that returns before the group asks it to stop
        // as a failure (exit status 1): the work stopped early, with the process, so it waits here
        // for the group's turn, which comes once the HTTP server has drained.
        try? await gracefulShutdown()
    }
}
