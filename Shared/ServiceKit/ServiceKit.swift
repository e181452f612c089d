import Foundation
import Hummingbird
import Logging
import Models
import NIOPosix
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// What a service's routes, event handlers and jobs are built from.
package struct ServiceEnvironment: Sendable {
    package let config: ServiceConfig
    package let client: PostgresClient
    package let clock: any ServiceClock
    package let tokens: TokenService
    package let outbox: Outbox
    package let jobs: JobQueue
    package let peers: PeerClient
    package let logger: Logger
    package var service: ServiceName { config.service }
}

/// The route groups a service adds to: `open` needs no bearer token (health, signed links,
/// API-key intake, provider webhooks that verify their own signatures); `authenticated` does.
package struct ServiceRoutes {
    package let open: RouterGroup<AppContext>
    package let authenticated: RouterGroup<AppContext>
}

/// What a service contributes beyond routes.
package struct ServiceParts: Sendable {
    package var migrations: [Migration]
    package var eventHandlers: [EventHandler] = []
    package var jobHandlers: [JobHandler] = []
    /// Work to do once the schema is current, before the service reports ready.
    package var afterMigrations: [@Sendable () async throws -> Void] = []
    /// Work at set local times (`PeriodicSchedule`), each period once whatever the replicas.
    package var periodic: [PeriodicSchedule] = []

    package init(migrations: [Migration], eventHandlers: [EventHandler] = [], jobHandlers: [JobHandler] = []) {
        self.migrations = migrations
        self.eventHandlers = eventHandlers
        self.jobHandlers = jobHandlers
    }
}

/// Opens once, when the schema is migrated and the clock loaded; background services wait on it.
package final class StartupGate: Sendable {
    private struct State {
        var open = false
        var nextID: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    package init() {}

    package func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when the gate opens, or when the task is cancelled: a service whose start failed
    /// (its database unreachable) must still shut down instead of waiting here for ever.
    package func wait() async {
        let id = state.withLock { state -> UInt64 in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.open || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    package var isOpen: Bool { state.withLock { $0.open } }
}

package enum ServiceKit {
    /// The whole of a service's `main`: configuration, build, run; a failure to start is one
    /// clear line on stderr and exit status 1, not a crash.
    package static func main<App: ApplicationProtocol>(_ service: ServiceName, build: (ServiceConfig) async throws -> App) async {
        // Tasks run on the event loops that do the I/O instead of hopping to Dispatch's pool and
        // back for every read and write: under load the hops (thread wake-ups and context
        // switches) cost more CPU than the work. Nothing here blocks a thread; bcrypt runs on
        // NIO's thread pool.
        if !NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor() {
            FileHandle.standardError.write(Data("\(service.rawValue): tasks run on the default executor\n".utf8))
        }
        do {
            let app = try await build(try ServiceConfig(service: service))
            var configuration = ServiceGroupConfiguration(
                services: [
                    .init(service: app),
                    .init(service: ShutdownWatchdog(service: service, logger: app.logger),
                          successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: app.logger)
            // Past this, what has not stopped is cancelled; the watchdog covers what ignores that.
            configuration.maximumGracefulShutdownDuration = ShutdownWatchdog.gracePeriod
            try await ServiceGroup(configuration: configuration).run()
        } catch {
            FileHandle.standardError.write(Data("\(service.rawValue): \(error)\n".utf8))
            exit(1)
        }
    }

    /// Builds a service: pool, migrations, clock, auth, outbox dispatcher, inbox, job runner,
    /// health, metrics and admin routes, then the service's own routes from `configure`.
    package static func buildApplication(
        config: ServiceConfig,
        configure: (ServiceEnvironment, ServiceRoutes) async throws -> ServiceParts
    ) async throws -> some ApplicationProtocol {
        Observability.bootstrap(logLevel: config.logLevel, format: config.logFormat)
        BodyLimit.bytes.store(config.maxBodyBytes, ordering: .relaxed)
        let logger = {
            var logger = Logger(label: config.service.rawValue)
            logger.logLevel = Logger.Level(rawValue: config.logLevel) ?? .info
            return logger
        }()
        try Database.validateIdentifier(config.schema)

        let client = try Database.makeClient(url: config.databaseURL, schema: config.schema, poolSize: config.databasePoolSize,
                                             tls: config.databaseTLS, caFile: config.databaseCAFile, logger: logger)
        let ledger = try Database.makeClient(url: config.databaseURL, schema: config.schema, poolSize: 6, durableCommits: false,
                                             tls: config.databaseTLS, caFile: config.databaseCAFile, logger: logger)
        let virtualClock = config.clockMode == .virtual ? VirtualClock(.distantPast) : nil
        let clock: any ServiceClock = virtualClock ?? WallClock()
        let tokens = await TokenService(secret: config.jwtSecret)
        let peers = PeerClient(service: config.service, peers: config.peers, tokens: tokens)
        let environment = ServiceEnvironment(
            config: config, client: client, clock: clock, tokens: tokens,
            outbox: Outbox(service: config.service, clock: clock), jobs: JobQueue(),
            peers: peers, logger: logger)
        let gate = StartupGate()
        let outboxBells = OutboxBells(for: config.service)
        let jobsBell = Doorbell()

        let router = Router(context: AppContext.self)
        router.add(middleware: InFlightMiddleware())
        router.add(middleware: WebsiteCORS(service: config.service))
        router.add(middleware: TraceMiddleware())
        router.add(middleware: MetricsMiddleware())
        let routeMethods = RouteMethods()
        router.add(middleware: APIErrorMiddleware(routeMethods: routeMethods))
        let open = router.group()
        let authenticated = router.group().add(middleware: AuthMiddleware(tokens: tokens))

        let parts = try await configure(environment, ServiceRoutes(open: open, authenticated: authenticated))
        let tracks = [("kit", KitMigrations.all), ("service", parts.migrations)]
        let migrationCount = KitMigrations.all.count + parts.migrations.count
        let inbox = Inbox(client: client, handlers: parts.eventHandlers)
        let unhandled = Subscriptions.events(for: config.service).subtracting(parts.eventHandlers.map(\.eventType))
        guard unhandled.isEmpty else {
            throw ConfigError(variable: "Subscriptions", problem: "lists \(unhandled.sorted()) for \(config.service.rawValue), which has no handler for them")
        }

        HealthController(client: client, schema: config.schema, migrationCount: migrationCount, gate: gate, logger: logger).register(on: open)
        EventsController(inbox: inbox).register(on: authenticated)
        if let virtualClock {
            AdminClockController(client: client, clock: virtualClock, schema: config.schema, jobsBell: jobsBell, logger: logger).register(on: authenticated)
        }

        routeMethods.load(router.routes.map { ("\($0.path)", $0.method.rawValue) })

        let retention = PeriodicSchedule(name: "kit.retention", recurrence: .hourly(minute: 17)) { _, _, logger in
            try await Retention.prune(days: config.retentionDays, client: client, logger: logger)
        }
        let schedules = PeriodicScheduler.withKeeper(parts.periodic + [retention], clock: clock, jobs: environment.jobs)
        let runner = JobRunner(
            client: client, ledger: ledger, clock: clock,
            handlers: parts.jobHandlers + schedules.map { $0.jobHandler(clock: clock, jobs: environment.jobs) }, doorbell: jobsBell, logger: logger,
            settings: {
                var settings = JobRunner.Settings()
                settings.workers = config.jobWorkers
                settings.linger = JobRunner.linger[config.service] ?? .zero
                return settings
            }())
        let dispatcher = OutboxDispatcher(service: config.service, client: ledger, peers: peers, bells: outboxBells, logger: logger)
        let listener = WakeListener(
            service: config.service, client: client, virtualClock: virtualClock, outboxBells: outboxBells, jobsBell: jobsBell, logger: logger)
        Wakeups.ringInProcess(for: [client, ledger]) { listener.ring(payload: $0) }

        var app = Application(
            router: router,
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: config.service.rawValue),
            services: [
                StoppingStage(name: "database pool", base: client, logger: logger),
                StoppingStage(name: "bookkeeping database pool", base: ledger, logger: logger),
                StoppingStage(name: "background work", base: BackgroundWork([
                    ConnectionSweeper(connections: HeldConnections.current, logger: logger),
                    StoppingStage(name: "wake listener", base: GatedService(gate: gate, base: listener), logger: logger),
                    StoppingStage(name: "outbox dispatcher", base: GatedService(gate: gate, base: dispatcher), logger: logger),
                    StoppingStage(name: "job runner", base: GatedService(gate: gate, base: runner), logger: logger),
                ], logger: logger), logger: logger),
            ],
            logger: logger)
        app.beforeServerStarts {
            // An unreachable database would otherwise be waited for in silence, forever; a slow
            // migration (a table rewrite) is given all the time it needs.
            try await Deadline.run(.seconds(30), "the database at \(Database.displayAddress(config.databaseURL)) did not answer within 30 seconds") {
                _ = try await client.query("SELECT 1", logger: logger).collect()
            }
            try await Database.migrate(client, schema: config.schema, tracks: tracks, logger: logger)
            if let virtualClock {
                virtualClock.advance(to: try await SharedClockStore.load(client, logger: logger))
            }
            for step in parts.afterMigrations { try await step() }
            if !schedules.isEmpty {
                try await client.withConnection { connection in
                    try await PeriodicScheduler.ensure(schedules, now: clock.now, jobs: environment.jobs, on: connection, logger: logger)
                }
            }
            gate.open()
            logger.info("service ready", metadata: ["port": "\(config.port)", "clock": "\(config.clockMode.rawValue)"])
        }
        return app
    }
}

/// Ends a stop that is not ending on its own. Once the work's grace (`ShutdownProgress.workGrace`)
/// is over, jobs have been released and held database connections closed; requests still
/// unanswered a moment later are stuck on a wait that will never end (PostgresNIO 1.33 leaves a
/// query written to a connection that closed meanwhile waiting for ever), and the HTTP server
/// would wait for them: they are abandoned, said by name, and the process exits with status 0,
/// its open transactions rolling back with its connections. A part of the service that has not
/// stopped by the end of the grace period plus a second is a fault: status 1. The normal path
/// ends well before either.
struct ShutdownWatchdog: Service {
    /// Inside the 10 s after which `docker stop`, Kubernetes' default and scripts/run kill.
    static let gracePeriod: Duration = .seconds(8)
    /// When a stop that is still going is worth a line in the log.
    static let slowAfter: Double = 3
    /// When requests still unanswered after the work's grace are abandoned.
    static let abandonAfter: Double = seconds(ShutdownProgress.workGrace) + 2

    let service: ServiceName
    let logger: Logger

    func run() async throws {
        try await gracefulShutdown()
        let logger = logger
        let progress = ShutdownProgress.current
        let began = progress.stopping()
        logger.info("stopping")
        let limit = Self.seconds(Self.gracePeriod) + 1
        // A thread of its own, not a task: it must fire even when every executor thread is stuck.
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: Self.slowAfter)
            logger.warning("still stopping", metadata: [
                "seconds": "\(ShutdownProgress.seconds(.now - began))", "waiting_on": "\(Self.describe(progress.pending()))"])
            Thread.sleep(forTimeInterval: Self.abandonAfter - Self.slowAfter)
            let unanswered = progress.pending()
            if !progress.partsStopping && !unanswered.isEmpty {
                logger.warning("requests still unanswered after the stop's grace are abandoned; their transactions roll back as the process exits", metadata: [
                    "seconds": "\(ShutdownProgress.seconds(.now - began))", "abandoned": "\(unanswered.joined(separator: "; "))"])
                exit(0)
            }
            Thread.sleep(forTimeInterval: max(0, limit - Self.abandonAfter))
            logger.error("shutdown did not finish within its grace period; exiting", metadata: [
                "seconds": "\(limit)", "waiting_on": "\(Self.describe(progress.pending()))"])
            exit(1)
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Nothing listed: what remains is the HTTP server closing its connections.
    static func describe(_ pending: [String]) -> String {
        pending.isEmpty ? "the HTTP server's connections" : pending.joined(separator: "; ")
    }
}

/// Starts `base` only once the gate opens (after migrations), so no worker queries a table
/// that does not exist yet.
struct GatedService<Base: Service>: Service {
    let gate: StartupGate
    let base: Base

    func run() async throws {
        try await cancelWhenGracefulShutdown { await gate.wait() }
        guard !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
        try await base.run()
    }
}

/// Listens for this service's wake-ups (a new outbox row, a job due now) and for moves of the
/// shared virtual clock, and rings the right doorbell. Polling covers any notification missed
/// while reconnecting.
struct WakeListener: Service {
    let service: ServiceName
    let client: PostgresClient
    let virtualClock: VirtualClock?
    let outboxBells: OutboxBells
    let jobsBell: Doorbell
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown {
                    try await client.withConnection { connection in
                        try await listen(on: connection)
                    }
                }
            } catch {
                if Task.isShuttingDownGracefully || Task.isCancelled { return }
                logger.warning("wake listener lost its connection; reconnecting", metadata: ["error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// One wake-up per transaction that scheduled jobs starts one worker, which wakes another as
    /// soon as it has claimed one; an outbox wake-up names the lanes to wake.
    func ring(payload: String) {
        if payload == JobQueue.wakeup { jobsBell.ringOne() } else { outboxBells.ring(payload: payload) }
    }

    private func listen(on connection: PostgresConnection) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            // A listening connection the server dropped may never say so (see
            // `HeldConnections`): a ping that does not answer in time closes
            // it, and the loop above listens again on a new one.
            group.addTask {
                while true {
                    try await cancelWhenGracefulShutdown { try await LoopTimer.sleep(for: .seconds(10)) }
                    do {
                        try await Deadline.run(.seconds(5), "the wake listener's ping did not answer within 5 s") {
                            _ = try await connection.query("SELECT 1", logger: logger).collect()
                        }
                    } catch {
                        connection.closeNow()
                        throw error
                    }
                }
            }
            group.addTask {
                for try await notification in try await connection.listen(WakeChannel.name(service)) {
                    ring(payload: notification.payload)
                }
            }
            if let virtualClock {
                group.addTask {
                    let notifications = try await connection.listen(SharedClockStore.channel)
                    // Catch up with moves made while this connection was not listening.
                    if let now = try await SharedClockStore.read(client, logger: logger) { virtualClock.advance(to: now) }
                    jobsBell.ring()
                    for try await notification in notifications {
                        if let date = RFC3339.date(from: notification.payload) { virtualClock.advance(to: date) }
                        jobsBell.ring()
                    }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
