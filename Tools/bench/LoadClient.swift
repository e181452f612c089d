import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The load's HTTP/1.1 client: keep-alive connections to one host, each carrying one request at
/// a time, opened as the load needs them; an answer is read to its status and end. The bench
/// shares this 2-core machine with the stack it measures, and AsyncHTTPClient's per-request work
/// took a quarter of the machine at 1,000 requests/s: CPU the stack then did not have, and
/// latency that was the client's. Setup and checks keep using AsyncHTTPClient.
final class LoadClient: Sendable {
    let host: String
    let port: Int
    private let idle = Mutex<[LoadConnection]>([])

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// The answer's status. A connection the server closed while idle is replaced, once.
    func send(_ method: HTTPMethod, path: String, headers: [(String, String)], body: ByteBuffer?) async throws -> Int {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        head.headers.add(name: "Content-Length", value: "\(body?.readableBytes ?? 0)")
        if let reused = idle.withLock({ $0.popLast() }) {
            if let status = try? await reused.send(head, body: body) {
                idle.withLock { $0.append(reused) }
                return status
            }
            reused.close()
        }
        let connection = try await LoadConnection.open(host: host, port: port)
        let status = try await connection.send(head, body: body)
        idle.withLock { $0.append(connection) }
        return status
    }

    private static let clients = Mutex<[String: LoadClient]>([:])

    /// One client per host and port.
    static func shared(host: String, port: Int) -> LoadClient {
        clients.withLock { clients in
            if let known = clients["\(host):\(port)"] { return known }
            let client = LoadClient(host: host, port: port)
            clients["\(host):\(port)"] = client
            return client
        }
    }
}

struct LoadConnection: Sendable {
    let channel: any Channel
    let handler: StatusHandler

    static func open(host: String, port: Int) async throws -> LoadConnection {
        let handler = StatusHandler()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port).get()
        return LoadConnection(channel: channel, handler: handler)
    }

    func send(_ head: HTTPRequestHead, body: ByteBuffer?) async throws -> Int {
        let promise = channel.eventLoop.makePromise(of: Int.self)
        let channel = channel, handler = handler
        channel.eventLoop.execute {
            guard channel.isActive, handler.pending == nil else {
                promise.fail(ChannelError.ioOnClosedChannel)
                return
            }
            handler.pending = promise
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        return try await promise.futureResult.get()
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// Completes the request in flight with its answer's status. Its state is only touched on its
/// channel's event loop (the pipeline's callbacks and `LoadConnection.send`'s `execute`).
final class StatusHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    var pending: EventLoopPromise<Int>?
    private var status = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body:
            break
        case .end:
            let promise = pending
            pending = nil
            promise?.succeed(status)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error) {
        let promise = pending
        pending = nil
        promise?.fail(error)
    }
}
