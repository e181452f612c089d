import AsyncHTTPClient
import Foundation
import Logging
import Models
import NIOCore
import NIOHTTP1
import Synchronization

/// W3C trace context of the request being served, passed on to every peer call.
package enum TraceContext {
    @TaskLocal package static var traceparent: String?
}

/// Calls other services with this service's identity.
package final class PeerClient: Sendable {
    package struct Response: Sendable {
        package var status: Int
        package var body: String

        /// A job's reading of a peer's answer: 2xx is done (true); 5xx, 429 and 409 are worth
        /// retrying (thrown, so the job runs again); another 4xx is refused for good (false).
        package func succeeded(from service: ServiceName, _ what: String) throws -> Bool {
            if (200..<300).contains(status) { return true }
            if status >= 500 || status == 429 || status == 409 {
                throw Unreachable(service: service, underlying: "\(what) answered \(status): \(body.prefix(300))")
            }
            return false
        }
    }

    package struct Unreachable: Error, CustomStringConvertible {
        package var service: ServiceName
        package var underlying: String
        package var description: String { "\(service.rawValue) is unreachable: \(underlying)" }
        package init(service: ServiceName, underlying: String) {
            self.service = service
            self.underlying = underlying
        }
    }

    let service: ServiceName
    let peers: [ServiceName: String]
    let tokens: TokenService
    let http: HTTPClient
    let timeout: TimeAmount
    private let cachedToken = Mutex<(token: String, expires: Date)?>(nil)

    /// The services' client to each other. AsyncHTTPClient's shared one opens at most 8
    /// connections to a host, and calls beyond that queue inside it whatever the peer could take.
    package static let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        return configuration
    }())

    package init(service: ServiceName, peers: [ServiceName: String], tokens: TokenService, http: HTTPClient = PeerClient.http, timeout: TimeAmount = .seconds(5)) {
        self.service = service
        self.peers = peers
        self.tokens = tokens
        self.http = http
        self.timeout = timeout
    }

    private func serviceToken() async throws -> String {
        let now = Date()
        if let cached = cachedToken.withLock({ $0 }), cached.expires > now.addingTimeInterval(300) {
            return cached.token
        }
        let token = try await tokens.serviceToken(for: service, lifetime: 3600)
        cachedToken.withLock { $0 = (token, now.addingTimeInterval(3600)) }
        return token
    }

    /// POSTs an already-encoded JSON body. Not retried here: the outbox retries deliveries.
    package func postRawJSON(to peer: ServiceName, path: String, body: String, headers extra: [(String, String)] = []) async throws -> Response {
        try await send(.POST, to: peer, path: path, body: body, headers: extra, attempts: 1)
    }

    /// POSTs an encoded body of another content type (NDJSON batches of events).
    package func postRaw(to peer: ServiceName, path: String, body: String, contentType: String) async throws -> Response {
        try await send(.POST, to: peer, path: path, body: body, headers: [], attempts: 1, contentType: contentType)
    }

    /// POSTs a Codable body; retried only when the caller says the call is idempotent
    /// (it carries an `Idempotency-Key`, say).
    package func post(to peer: ServiceName, path: String, body: some Encodable, headers: [(String, String)] = [], idempotent: Bool = false) async throws -> Response {
        let json = String(decoding: try JSONCoding.encoder.encode(body), as: UTF8.self)
        return try await send(.POST, to: peer, path: path, body: json, headers: headers, attempts: idempotent ? 3 : 1)
    }

    /// PUTs set a state, so they are retried as GETs are.
    package func put(to peer: ServiceName, path: String, body: some Encodable) async throws -> Response {
        let json = String(decoding: try JSONCoding.encoder.encode(body), as: UTF8.self)
        return try await send(.PUT, to: peer, path: path, body: json, headers: [], attempts: 3)
    }

    /// GETs are idempotent: retried on connection failures and 502/503/504.
    package func get(from peer: ServiceName, path: String) async throws -> Response {
        try await send(.GET, to: peer, path: path, body: nil, headers: [], attempts: 3)
    }

    private func send(_ method: HTTPMethod, to peer: ServiceName, path: String, body: String?, headers extra: [(String, String)], attempts: Int,
                      contentType: String = "application/json") async throws -> Response {
        guard let base = peers[peer] else { throw Unreachable(service: peer, underlying: "no base URL configured") }
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(try await serviceToken())")
        request.headers.add(name: "Accept", value: "application/json")
        if let traceparent = TraceContext.traceparent {
            request.headers.add(name: "traceparent", value: traceparent)
        }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(string: body))
        }
        var lastError: (any Error)?
        for attempt in 1...max(attempts, 1) {
            do {
                // The client's timeout ends a request whose answer does not come; the deadline also
                // ends one whose body stops half-way.
                let answer = try await Deadline.run(.nanoseconds(timeout.nanoseconds) + .seconds(1),
                                                    "\(peer.rawValue) did not answer \(method) \(path) in time") { [http, timeout, request] in
                    let response = try await http.execute(request, timeout: timeout)
                    let buffer = try await response.body.collect(upTo: 8 << 20)
                    return Response(status: Int(response.status.code), body: String(buffer: buffer))
                }
                if attempt < attempts, [502, 503, 504].contains(answer.status) {
                    try await Task.sleep(for: .milliseconds(100 * attempt * attempt))
                    continue
                }
                return answer
            } catch {
                lastError = error
                if attempt < attempts { try await Task.sleep(for: .milliseconds(100 * attempt * attempt)) }
            }
        }
        throw Unreachable(service: peer, underlying: String(describing: lastError.map { String(describing: $0) } ?? "unknown"))
    }
}
