import AsyncHTTPClient
import Foundation
import JWTKit
import Models
import NIOCore
import NIOHTTP1
import Testing

/// The running stack, as scripts/test started it: over HTTP only, with tokens.
struct Stack: Sendable {
    struct NotConfigured: Error, CustomStringConvertible {
        var variable: String
        var description: String { "\(variable) is not set: run the integration tests with scripts/test, which starts the stack" }
    }

    let urls: [ServiceName: String]
    let jwtSecret: String
    let platformAdminEmail: String
    let platformAdminPassword: String

    static func fromEnvironment() throws -> Stack {
        let environment = ProcessInfo.processInfo.environment
        func require(_ name: String) throws -> String {
            guard let value = environment[name], !value.isEmpty else { throw NotConfigured(variable: name) }
            return value
        }
        var urls: [ServiceName: String] = [:]
        for service in ServiceName.allCases {
            urls[service] = try require("STACK_\(service.rawValue.uppercased())_URL")
        }
        return Stack(urls: urls, jwtSecret: try require("JWT_SECRET"), platformAdminEmail: try require("PLATFORM_ADMIN_EMAIL"),
                     platformAdminPassword: try require("PLATFORM_ADMIN_PASSWORD"))
    }

    struct Answer: Sendable {
        var status: Int
        var body: JSONValue
        var text: String
        var headers: HTTPHeaders

        subscript(_ key: String) -> JSONValue? { body[key] }
        var errorField: String? { if case .string(let field)? = body["error"]?["field"] { field } else { nil } }
        var errorCode: String? { if case .string(let code)? = body["error"]?["code"] { code } else { nil } }
    }

    /// Runs a browser script of Tests/browser (headless Chromium through selenium, from the
    /// virtualenv scripts/test makes) with `arguments` after the screenshot folder's place in
    /// them; answers its exit status and what it printed.
    func browser(_ script: String, _ arguments: (_ shots: String) -> [String]) throws -> (status: Int32, log: String) {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = ProcessInfo.processInfo.environment["BROWSER_PYTHON"] ?? root.appendingPathComponent(".build-py/bin/python3").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        let shots = ProcessInfo.processInfo.environment["RUN_DIR"].map { "\($0)/screenshots" } ?? NSTemporaryDirectory()
        process.arguments = [root.appendingPathComponent("Tests/browser/\(script)").path] + arguments(shots)
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    func call(_ method: HTTPMethod, _ service: ServiceName, _ path: String, token: String? = nil, json: String? = nil,
              headers: [(String, String)] = []) async throws -> Answer {
        var request = HTTPClientRequest(url: urls[service]! + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 16 << 20)
        let text = String(buffer: buffer)
        let body = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .null
        return Answer(status: Int(response.status.code), body: body, text: text, headers: response.headers)
    }

    /// A request with a raw body of any content type.
    func callRaw(_ method: HTTPMethod, _ service: ServiceName, _ path: String, token: String?, body: String, contentType: String,
                 headers: [(String, String)] = []) async throws -> Answer {
        var request = HTTPClientRequest(url: urls[service]! + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.headers.add(name: "Content-Type", value: contentType)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let buffer = try await response.body.collect(upTo: 16 << 20)
        let text = String(buffer: buffer)
        return Answer(status: Int(response.status.code), body: (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .null,
                      text: text, headers: response.headers)
    }

    /// Encodes a value as a JSON body string.
    static func json(_ object: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: object)) ?? Data(), as: UTF8.self)
    }

    func login(_ email: String, _ password: String) async throws -> String {
        let answer = try await call(.POST, .contacts, "/v1/auth/login", json: Self.json(["email": email, "password": password]))
        guard answer.status == 200, case .string(let token)? = answer["token"] else {
            throw StackError(message: "login of \(email) failed: \(answer.status) \(answer.text)")
        }
        return token
    }

    func platformAdminToken() async throws -> String {
        try await login(platformAdminEmail, platformAdminPassword)
    }

    /// The stack's clock (virtual in tests), as the services see it.
    func clockNow() async throws -> Date {
        let answer = try await call(.GET, .contacts, "/v1/admin/clock", token: try await serviceToken())
        guard let now = answer["now"]?.string.flatMap(RFC3339.date(from:)) else { throw StackError(message: "no clock: \(answer.text)") }
        return now
    }

    /// A token signed with the stack's secret: how services identify themselves to each other.
    func serviceToken(_ service: ServiceName = .contacts) async throws -> String {
        try await sign(subject: service.rawValue, role: "service", companyId: nil, expiresIn: 600)
    }

    func sign(subject: String, role: String, companyId: String?, expiresIn: TimeInterval, secret: String? = nil) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret ?? jwtSecret), digestAlgorithm: .sha256)
        return try await keys.sign(Claims(sub: .init(value: subject), cid: companyId, role: role, ents: [],
                                          exp: .init(value: Date().addingTimeInterval(expiresIn)), iat: .init(value: Date())))
    }

    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var cid: String?
        var role: String
        var ents: [String]
        var exp: ExpirationClaim
        var iat: IssuedAtClaim
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// Waits until no service has due jobs, running jobs, retries waiting on the clock or
    /// undelivered events.
    func waitUntilIdle(timeout: Duration = .seconds(30)) async throws {
        try await waitUntilQuiet(allowingRetries: false, timeout: timeout)
    }

    /// Waits until nothing is due, running or undelivered, while failed jobs may wait on the
    /// virtual clock for their retry: for a test that looks at a job between its attempts.
    func waitUntilSettled(timeout: Duration = .seconds(30)) async throws {
        try await waitUntilQuiet(allowingRetries: true, timeout: timeout)
    }

    private func waitUntilQuiet(allowingRetries: Bool, timeout: Duration) async throws {
        let token = try await serviceToken()
        let deadline = ContinuousClock.now + timeout
        var busy: [String] = []
        // Two quiet rounds in a row: within one round, a service asked early may be handed work
        // by one asked later that finished it just before its turn.
        var quietRounds = 0
        while ContinuousClock.now < deadline {
            busy = []
            for service in ServiceName.allCases {
                let answer = try await call(.GET, service, "/v1/admin/idle", token: token)
                let quiet = answer["idle"] == .bool(true)
                    || (allowingRetries && ["dueJobs", "runningJobs", "pendingEvents"].allSatisfy { answer[$0] == .number(0) })
                if !quiet { busy.append("\(service.rawValue): \(answer.text)") }
            }
            quietRounds = busy.isEmpty ? quietRounds + 1 : 0
            if quietRounds == 2 { return }
            try await Task.sleep(for: .milliseconds(busy.isEmpty ? 10 : 50))
        }
        throw StackError(message: "the stack did not become \(allowingRetries ? "settled" : "idle") within \(timeout): \(busy.joined(separator: "; "))")
    }

    /// A Prometheus counter's value, summed over series whose labels contain every `labels` pair.
    func metric(_ service: ServiceName, _ name: String, _ labels: [String: String] = [:]) async throws -> Double {
        let answer = try await call(.GET, service, "/metrics")
        var total = 0.0
        for line in answer.text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            guard labels.allSatisfy({ line.contains("\($0.key)=\"\($0.value)\"") }) else { continue }
            total += Double(line.split(separator: " ").last ?? "0") ?? 0
        }
        return total
    }

    /// A new company with its admin; returns the admin's token and the ids.
    func newCompany(_ name: String = "Test Realty \(UUID().uuidString.prefix(6))") async throws -> Brokerage {
        let email = "admin-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let answer = try await call(.POST, .contacts, "/v1/companies", token: try await platformAdminToken(), json: Self.json([
            "name": name, "timeZone": "America/Chicago",
            "admin": ["firstName": "Ada", "lastName": "Admin", "email": email, "password": "correct horse battery"],
        ]))
        guard answer.status == 201, case .string(let token)? = answer["adminToken"],
              case .string(let companyId)? = answer["company"]?["id"], case .string(let rootId)? = answer["rootEntity"]?["id"]
        else { throw StackError(message: "company creation failed: \(answer.status) \(answer.text)") }
        return Brokerage(adminToken: token, adminEmail: email, companyId: companyId, rootEntityId: rootId)
    }

    struct Brokerage: Sendable {
        var adminToken: String
        var adminEmail: String
        var companyId: String
        var rootEntityId: String
    }
}

struct StackError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension JSONValue {
    var string: String? { if case .string(let value) = self { value } else { nil } }
    var array: [JSONValue]? { if case .array(let value) = self { value } else { nil } }
    var number: Double? { if case .number(let value) = self { value } else { nil } }
}
