import Foundation
import Logging
import Models
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization
import Testing
@testable import ServiceKit
import TestSupport

/// X-4: the kit survives what goes wrong around it: its database restarting, a job that never
/// returns, a peer that stops answering half-way.
@Suite("Faults: a database restart under load, a stuck job, a silent peer")
struct FaultTests {
    struct Payload: Codable, Sendable { var n: Int }

    @Test("X-4: a pool under load survives its database restarting (every connection dropped, new ones refused for a while) and serves again once it is back")
    func poolSurvivesDatabaseRestart() async throws {
        let (proxy, proxied) = try await RestartableProxy.toTestDatabase()
        // The same pool configuration as a service's, through the proxy.
        let client = try Database.makeClient(url: proxied, schema: "public", poolSize: 4, logger: TestDatabase.logger)
        let (before, during, after) = try await TestDatabase.running([client]) {
            let load = Load()
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Eight callers for four connections, so requests queue in the pool as they do in a
                // busy service.
                for _ in 0..<8 {
                    group.addTask {
                        while load.phase < 3 {
                            let ok = (try? await Deadline.run(.seconds(3), "query") {
                                try await client.query("SELECT 1", logger: TestDatabase.logger).collect().count == 1
                            }) ?? false
                            if ok {
                                load.succeeded()
                            } else {
                                try await Task.sleep(for: .milliseconds(20))
                            }
                        }
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(700))
                    load.phase = 1
                    // As `pg_ctl restart -m immediate` looks from a client: every connection cut,
                    // then connections refused until the server is back.
                    try await proxy.restart(downFor: .milliseconds(1500))
                    load.phase = 2
                    try await Task.sleep(for: .seconds(3))
                    load.phase = 3
                }
                try await group.waitForAll()
            }
            return load.counts
        }
        try await proxy.stop()
        // Reaching here means the process survived; the pool served before, and serves again after.
        #expect(before > 0)
        #expect(after > 0, "no query succeeded in the 3 s after the database came back (\(during) during the restart)")
    }

    @Test("X-4: a transaction whose connection the database cuts fails at once as database_unavailable (503); nothing is left waiting on the dead connection")
    func transactionOnCutConnection() async throws {
        try await TestDatabase.withSchema { direct, schema in
            let client = try Database.makeClient(url: try TestDatabase.url(), schema: schema, poolSize: 2, logger: TestDatabase.logger)
            try await TestDatabase.running([client]) {
                let started = ContinuousClock.now
                // PostgresNIO's own withTransaction sent ROLLBACK on the cut connection here, a
                // statement its closed channel drops: the caller waited for ever. Bounded, so a
                // regression fails instead of hanging the suite.
                let failure = try await Deadline.run(.seconds(10), "the transaction on a cut connection") { () -> String in
                    do {
                        try await client.transaction(logger: TestDatabase.logger) { connection in
                            let pid = try await connection.query("SELECT pg_backend_pid()", logger: TestDatabase.logger).first(Int32.self) ?? 0
                            Task {
                                try await Task.sleep(for: .milliseconds(200))
                                try await direct.query("SELECT pg_terminate_backend(\(pid))", logger: TestDatabase.logger)
                            }
                            do {
                                _ = try await connection.query("SELECT pg_sleep(30)", logger: TestDatabase.logger).collect()
                            } catch {
                                // Once the closed channel's handlers are gone, a statement is dropped.
                                try await Task.sleep(for: .milliseconds(200))
                                throw error
                            }
                        }
                        return "committed"
                    } catch {
                        return APIError.from(error).code
                    }
                }
                #expect(failure == "database_unavailable")
                #expect(ContinuousClock.now - started < .seconds(5))
                // The pool drops the dead connection and serves the next caller.
                let next = try await Deadline.run(.seconds(5), "the next transaction") {
                    try await client.transaction(logger: TestDatabase.logger) { connection in
                        try await connection.query("SELECT 1", logger: TestDatabase.logger).first(Int32.self)
                    }
                }
                #expect(next == 1)
                #expect(APIError.from(DatabaseUnavailable()).status == .serviceUnavailable)
            }
        }
    }

    /// Schedules one job of `handler`'s kind and runs it once: its id, the outcome and how long it took.
    func runOne(_ handler: JobHandler, settings: JobRunner.Settings, client: PostgresClient) async throws
        -> (Int64, (jobId: Int64, outcome: JobRunner.Outcome)?, Duration) {
        let clock = ManualClock()
        let runner = JobRunner(client: client, clock: clock, handlers: [handler], doorbell: Doorbell(), logger: TestDatabase.logger,
                               settings: settings, random: { 0 })
        let id = try await client.withConnection { connection in
            try await JobQueue().schedule(kind: handler.kind, payload: Payload(n: 1), runAt: clock.now, on: connection, logger: TestDatabase.logger)
        }
        let started = ContinuousClock.now
        let outcome = try await runner.runNext()
        return (id, outcome, ContinuousClock.now - started)
    }

    @Test("X-4: a job whose handler never returns is abandoned at its deadline and retried; its lease is not renewed past it, and its late writes are fenced off")
    func stuckJobIsAbandonedAtItsDeadline() async throws {
        try await TestDatabase.withSchema { client, _ in
            let gate = Gate()
            let handler = JobHandler(kind: "stuck") { _, connection, logger in
                // Holds its transaction and ignores cancellation until the test lets it go.
                await gate.wait()
                try await connection.query("SELECT 1", logger: logger)
            }
            var settings = JobRunner.Settings()
            settings.lease = .seconds(6)
            settings.jobDeadline = .seconds(1)
            let (id, outcome, took) = try await runOne(handler, settings: settings, client: client)
            #expect(outcome?.jobId == id)
            #expect(outcome?.outcome == .retrying)
            // Well before the 6 s lease would have let the rescuer take it.
            #expect(took < .seconds(4), "took \(took)")
            let row = try await client.query("SELECT state, lease_token IS NULL, last_error FROM jobs WHERE id = \(id)",
                                             logger: TestDatabase.logger).collect()
            let (state, unleased, error) = try row[0].decode((String, Bool, String?).self)
            #expect(state == "retryable")
            #expect(unleased)
            #expect(error?.contains("did not finish within") == true)
            #expect(error?.contains("while running its handler") == true, "it had its connection")
            // The abandoned handler finishing late completes nothing: its lease token is gone.
            gate.open()
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await client.query("SELECT state FROM jobs WHERE id = \(id)", logger: TestDatabase.logger).first(String.self) == "retryable")
        }
    }

    @Test("X-4: a job whose database restarts under its query is retried, and its query ends instead of hanging on the dropped connection")
    func jobOnDroppedConnection() async throws {
        let (proxy, proxied) = try await RestartableProxy.toTestDatabase()
        try await TestDatabase.withSchema { direct, schema in
            let client = try Database.makeClient(url: proxied, schema: schema, poolSize: 4, logger: TestDatabase.logger)
            let ended = Recorder<String>()
            let started = Recorder<Bool>()
            try await TestDatabase.running([client]) {
                let handler = JobHandler(kind: "slow") { _, connection, logger in
                    started.append(true)
                    do {
                        _ = try await connection.query("SELECT pg_sleep(30)", logger: logger).collect()
                        ended.append("answered")
                    } catch {
                        ended.append("failed")
                        throw error
                    }
                }
                var settings = JobRunner.Settings()
                settings.jobDeadline = .seconds(2)
                let runner = JobRunner(client: client, ledger: direct, clock: ManualClock(), handlers: [handler], doorbell: Doorbell(),
                                       logger: TestDatabase.logger, settings: settings, random: { 0 })
                _ = try await direct.withConnection { connection in
                    try await JobQueue().schedule(kind: "slow", payload: Payload(n: 1), runAt: ManualClock().now, on: connection, logger: TestDatabase.logger)
                }
                async let outcome = runner.runNext()
                // Cut once the handler's query is under way (a busy machine starts the job late).
                let begun = ContinuousClock.now + .seconds(10)
                while started.all.isEmpty, ContinuousClock.now < begun { try await Task.sleep(for: .milliseconds(20)) }
                try await Task.sleep(for: .milliseconds(300))
                try await proxy.restart(downFor: .milliseconds(200))
                #expect(try await outcome?.outcome == .retrying)
                // The handler's query ends once its connection is closed, well before its 30 s sleep.
                let deadline = ContinuousClock.now + .seconds(5)
                while ended.all.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
                #expect(ended.all == ["failed"])
            }
        }
        try await proxy.stop()
    }

    @Test("X-4: a job calling a peer that accepts the request and never finishes its answer fails at the call's deadline and is retried")
    func silentPeerFailsTheJob() async throws {
        let peer = try await SilentPeer.start()
        try await TestDatabase.withSchema { client, _ in
            let peers = PeerClient(service: .routing, peers: [.contacts: "http://127.0.0.1:\(peer.port)"],
                                   tokens: await TokenService(secret: "test-secret-0123456789abcdef0123456789"), timeout: .seconds(1))
            let handler = JobHandler(kind: "call") { _, _, _ in
                _ = try await peers.post(to: .contacts, path: "/v1/contacts/x/assignment", body: Payload(n: 1), idempotent: true)
            }
            var settings = JobRunner.Settings()
            settings.jobDeadline = .seconds(20)
            let (id, outcome, took) = try await runOne(handler, settings: settings, client: client)
            #expect(outcome?.jobId == id)
            #expect(outcome?.outcome == .retrying)
            // Three attempts of at most 1 s and a second's grace each, with their short pauses.
            #expect(took < .seconds(10), "took \(took)")
            let error = try await client.query("SELECT last_error FROM jobs WHERE id = \(id)", logger: TestDatabase.logger).first(String.self)
            #expect(error?.contains("unreachable") == true, "\(error ?? "")")
        }
        try await peer.stop()
    }
}

/// Queries that succeeded in each phase of a load: before, during and after a fault.
final class Load: Sendable {
    private let state = Mutex<(phase: Int, counts: [Int])>((0, [0, 0, 0]))

    var phase: Int {
        get { state.withLock { $0.phase } }
        set { state.withLock { $0.phase = newValue } }
    }

    func succeeded() {
        state.withLock { state in if state.phase < 3 { state.counts[state.phase] += 1 } }
    }

    var counts: (Int, Int, Int) { state.withLock { ($0.counts[0], $0.counts[1], $0.counts[2]) } }
}

/// A wait a test ends by hand, deaf to cancellation (as a stranded pool request is).
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let open = state.withLock { state -> Bool in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if open { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// A TCP proxy to PostgreSQL that can act out a server restart: cut every connection, refuse new
/// ones for a while, then accept again on the same port.
final class RestartableProxy: Sendable {
    let port: Int
    private let targetHost: String
    private let targetPort: Int
    private let server: Mutex<(any Channel)?>
    private let open: Open

    final class Open: Sendable {
        let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
    }

    private init(port: Int, targetHost: String, targetPort: Int, server: any Channel, open: Open) {
        self.port = port
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.server = Mutex(server)
        self.open = open
    }

    /// A proxy to the test database, and the database URL that goes through it.
    static func toTestDatabase() async throws -> (RestartableProxy, String) {
        let target = try DatabaseURL(try TestDatabase.url())
        let proxy = try await start(to: target.host, port: target.port)
        var url = URLComponents(string: try TestDatabase.url())
        url?.host = "127.0.0.1"
        url?.port = proxy.port
        guard let proxied = url?.string else { throw ConfigError(variable: "TEST_DATABASE_URL", problem: "is not a URL") }
        return (proxy, proxied)
    }

    static func start(to host: String, port: Int) async throws -> RestartableProxy {
        let open = Open()
        let server = try await listen(on: 0, to: host, port: port, open: open)
        return RestartableProxy(port: server.localAddress?.port ?? 0, targetHost: host, targetPort: port, server: server, open: open)
    }

    private static func listen(on localPort: Int, to host: String, port: Int, open: Open) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop).connect(host: host, port: port).flatMapThrowing { outbound in
                    try inbound.pipeline.syncOperations.addHandler(Relay(to: outbound))
                    try outbound.pipeline.syncOperations.addHandler(Relay(to: inbound))
                    open.channels.withLock { $0[ObjectIdentifier(inbound)] = inbound; $0[ObjectIdentifier(outbound)] = outbound }
                    inbound.setOption(.autoRead, value: true).whenComplete { _ in }
                }
            }
            .bind(host: "127.0.0.1", port: localPort).get()
    }

    func restart(downFor: Duration) async throws {
        try await server.withLock { $0 }?.close()
        server.withLock { $0 = nil }
        for channel in open.channels.withLock({ open in defer { open = [:] }; return Array(open.values) }) {
            try? await channel.close()
        }
        try await Task.sleep(for: downFor)
        let server = try await Self.listen(on: port, to: targetHost, port: targetPort, open: open)
        self.server.withLock { $0 = server }
    }

    func stop() async throws {
        try? await server.withLock { $0 }?.close()
        for channel in open.channels.withLock({ Array($0.values) }) { try? await channel.close() }
    }

    /// Passes bytes to the other side and closes it when this side closes.
    final class Relay: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let partner: any Channel
        init(to partner: any Channel) { self.partner = partner }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            partner.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) {
            partner.close(promise: nil)
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// An HTTP peer that reads the request, sends the head of an answer promising a body, and then
/// says nothing more.
final class SilentPeer: Sendable {
    let port: Int
    private let server: any Channel

    private init(port: Int, server: any Channel) {
        self.port = port
        self.server = server
    }

    static func start() async throws -> SilentPeer {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Stall()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return SilentPeer(port: server.localAddress?.port ?? 0, server: server)
    }

    func stop() async throws { try await server.close() }

    final class Stall: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var answered = false
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !answered else { return }
            answered = true
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\":"
            context.writeAndFlush(NIOAny(ByteBuffer(string: head)), promise: nil)
        }
    }
}
