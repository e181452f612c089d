import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import ServiceKit

@Suite("Stopping: what a stop waits on, and the background work that stops with the server")
struct ShutdownTests {
    @Test("X-4: a stop names what it still waits on, oldest first, and tells the parts still stopping from requests and jobs")
    func progressNamesWhatIsPending() async throws {
        let progress = ShutdownProgress()
        let request = progress.started("request POST /v1/events")
        let part = progress.started("job runner", isPart: true)
        #expect(progress.pending().map { $0.prefix(while: { $0 != "(" }) } == ["request POST /v1/events ", "job runner "])
        #expect(progress.partsStopping)
        progress.ended(part)
        #expect(!progress.partsStopping)
        #expect(progress.pending().count == 1)
        progress.ended(request)
        #expect(progress.pending().isEmpty)

        // The first call marks the stop; waiting for it returns once it has begun.
        #expect(progress.stoppingSince == nil)
        let first = progress.stopping()
        #expect(progress.stopping() == first)
        await progress.untilStopping()
    }

    @Test("X-4: background work begins to stop as soon as the process does, not after the HTTP server has drained")
    func backgroundWorkStopsWithTheProcess() async throws {
        let stopped = Flag()
        let progress = ShutdownProgress()
        let work = BackgroundWork([UntilShutdown(stopped: stopped)], logger: Logger(label: "test"), progress: progress)
        // The process-wide stop ends the work at once; the service itself returns only when its
        // group asks (a service that returns earlier is a failure to its group).
        let group = ServiceGroup(configuration: .init(services: [.init(service: work)], gracefulShutdownSignals: [], logger: Logger(label: "test")))
        async let running: Void = group.run()
        try await Task.sleep(for: .milliseconds(50))
        #expect(!stopped.value)
        progress.stopping()
        // Waits for the work to see the stop (the suite runs beside many others), at most 10 s.
        for _ in 0..<1_000 where !stopped.value { try await Task.sleep(for: .milliseconds(10)) }
        #expect(stopped.value, "stopped with the process, before the group asked")
        await group.triggerGracefulShutdown()
        try await running
    }

    final class Flag: Sendable {
        private let state = Mutex(false)
        var value: Bool { state.withLock { $0 } }
        func set() { state.withLock { $0 = true } }
    }

    struct UntilShutdown: Service {
        let stopped: Flag
        func run() async throws {
            try? await gracefulShutdown()
            stopped.set()
        }
    }
}
