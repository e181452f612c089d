import Foundation
import Hummingbird
import Models
import NIOCore
import Synchronization

/// The one error every route answers with: `{"error": {"code", "message", "field"}}`.
package struct APIError: HTTPResponseError, Sendable, Equatable {
    package var status: HTTPResponse.Status
    /// Stable, snake_case; clients branch on it.
    package var code: String
    package var message: String
    /// The request field at fault (a JSON path such as `officeHours[2].open`), when there is one.
    package var field: String?

    package init(_ status: HTTPResponse.Status, code: String, message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    package static func validation(_ field: String, _ message: String, code: String = "invalid_field") -> APIError {
        APIError(.unprocessableContent, code: code, message: message, field: field)
    }

    package static func badRequest(_ message: String, field: String? = nil, code: String = "bad_request") -> APIError {
        APIError(.badRequest, code: code, message: message, field: field)
    }

    package static let unauthorized = APIError(.unauthorized, code: "unauthorized", message: "a valid bearer token is required")
    package static let forbidden = APIError(.forbidden, code: "forbidden", message: "this role may not do that")

    package static func notFound(_ what: String) -> APIError {
        APIError(.notFound, code: "not_found", message: "\(what) was not found")
    }

    package static func conflict(_ message: String, code: String = "conflict") -> APIError {
        APIError(.conflict, code: code, message: message)
    }

    struct Body: Encodable {
        struct Detail: Encodable {
            var code: String
            var message: String
            var field: String?
        }
        var error: Detail
    }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        var encoder = JSONEncoder()
        encoder = JSONCoding.encoder
        let data = try encoder.encode(Body(error: .init(code: code, message: message, field: field)))
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Maps any error a route or the framework throws onto an APIError, so no error leaves
    /// the service in another shape.
    package static func from(_ error: any Error) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as DecodingError:
            return fromDecoding(error)
        case let error as PeerClient.Unreachable:
            // Another service of this system is down: the caller may retry; it is not their input.
            return APIError(.serviceUnavailable, code: "peer_unavailable", message: "the \(error.service.rawValue) service is not answering; try again shortly")
        case let error where DatabaseUnavailable.describes(error):
            return APIError(.serviceUnavailable, code: "database_unavailable", message: "the database is not answering; try again shortly")
        case is NIOTooManyBytesError:
            return APIError(.contentTooLarge, code: "body_too_large", message: "the request body is larger than this service accepts", field: "body")
        case let error as HTTPError:
            switch error.status {
            case .contentTooLarge:
                return APIError(.contentTooLarge, code: "body_too_large", message: "the request body is larger than this service accepts", field: "body")
            case .notFound:
                return APIError(.notFound, code: "not_found", message: error.body ?? "no such route")
            case .methodNotAllowed:
                return APIError(.methodNotAllowed, code: "method_not_allowed", message: "this route does not take that method")
            case .unsupportedMediaType:
                return APIError(.unsupportedMediaType, code: "unsupported_media_type", message: error.body ?? "unsupported content type")
            case .badRequest:
                return APIError(.badRequest, code: "bad_request", message: error.body ?? "bad request")
            default:
                return APIError(error.status, code: error.status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_"),
                                message: error.body ?? error.status.reasonPhrase)
            }
        default:
            return APIError(.internalServerError, code: "internal_error", message: "the service failed to handle this request")
        }
    }

    package static func fromDecoding(_ error: DecodingError) -> APIError {
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return .validation(field, "\(field) is required", code: "missing_field")
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            return .validation(field.isEmpty ? "body" : field, "\(field.isEmpty ? "the body" : field) must be \(describe(type))", code: "wrong_type")
        case .valueNotFound(let type, let context):
            let field = path(context.codingPath)
            return .validation(field, "\(field) must be \(describe(type)), not null", code: "missing_field")
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            if field.isEmpty {
                return APIError(.badRequest, code: "malformed_json", message: "the body is not valid JSON", field: "body")
            }
            // A closed set's own message already reads after the field's name.
            let separator = context.debugDescription.hasPrefix("'") ? " " : ": "
            return .validation(field, field + separator + context.debugDescription)
        @unknown default:
            return APIError(.badRequest, code: "malformed_json", message: "the body could not be read", field: "body")
        }
    }

    static func path(_ codingPath: [any CodingKey]) -> String {
        var result = ""
        for key in codingPath {
            if let index = key.intValue {
                result += "[\(index)]"
            } else {
                result += result.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return result
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: "a whole number"
        case is Double.Type, is Float.Type: "a number"
        case is Bool.Type: "true or false"
        case is [Any].Type: "an array"
        default:
            if "\(type)".hasPrefix("Array") { "an array" } else if "\(type)".hasPrefix("Dictionary") { "an object" } else { "a \(type)" }
        }
    }
}

/// The methods each route path answers, filled once the routes are registered, so a known path
/// asked with another method gets 405 and an `Allow` header rather than 404.
package final class RouteMethods: Sendable {
    private let table = Mutex<[(segments: [Substring], methods: [String])]>([])

    package init() {}

    package func load(_ routes: [(path: String, method: String)]) {
        let grouped = Dictionary(grouping: routes, by: \.path)
        table.withLock { table in
            table = grouped.map { path, routes in
                (path.split(separator: "/"), Array(Set(routes.map(\.method))).sorted())
            }
        }
    }

    /// The methods of the most literal route template `path` matches (`/v1/contacts/import`
    /// before `/v1/contacts/{id}`); nil when none does.
    package func allowed(for path: String) -> [String]? {
        let segments = path.split(separator: "/")
        return table.withLock { table in
            table.compactMap { template -> (literals: Int, methods: [String])? in
                guard template.segments.count == segments.count else { return nil }
                var literals = 0
                for (pattern, segment) in zip(template.segments, segments) {
                    if pattern == segment {
                        literals += 1
                    } else if !(pattern.hasPrefix("{") && pattern.hasSuffix("}")) && !pattern.hasPrefix(":") {
                        return nil
                    }
                }
                return (literals, template.methods)
            }.max { $0.literals < $1.literals }?.methods
        }
    }
}

extension APIError {
    /// An error about one item of a request's list names it: `messages[1].body`, `tasks[0]`.
    package static func naming<T>(_ item: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch var error as APIError {
            error.field = item + (error.field.map { "." + $0 } ?? "")
            throw error
        }
    }
}

/// Turns every thrown error into the JSON error shape, and logs the ones that are ours (5xx).
package struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let routeMethods: RouteMethods?

    package init(routeMethods: RouteMethods? = nil) {
        self.routeMethods = routeMethods
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            var apiError = APIError.from(error)
            if apiError.status == .notFound, apiError.message == "no such route",
               let allowed = routeMethods?.allowed(for: request.uri.path), !allowed.contains(request.method.rawValue) {
                apiError = APIError(.methodNotAllowed, code: "method_not_allowed", message: "\(request.uri.path) answers \(allowed.joined(separator: ", ")) only")
                var response = try apiError.response(from: request, context: context)
                response.headers[.allow] = allowed.joined(separator: ", ")
                return response
            }
            if apiError.status.code >= 500 {
                context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))", "path": "\(request.uri.path)"])
            }
            return try apiError.response(from: request, context: context)
        }
    }
}

extension WireEnum {
    /// `text` as a value of the set, or the 422 naming `field` and the values it takes.
    package static func value(_ text: String, field: String) throws -> Self {
        guard let value = Self(rawValue: text) else { throw APIError.validation(field, "\(field) \(unknownValue(text))") }
        return value
    }
}
