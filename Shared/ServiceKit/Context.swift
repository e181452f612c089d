import Foundation
import Hummingbird
import Models
import NIOCore
import Synchronization

/// The request context of every service: who is calling, and the body limit.
package struct AppContext: RequestContext {
    package var coreContext: CoreRequestContextStorage
    package var identity: Identity?

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        identity = nil
    }

    package var maxUploadSize: Int { BodyLimit.bytes.load(ordering: .relaxed) }
    package var requestDecoder: APIRequestDecoder { APIRequestDecoder() }
    package var responseEncoder: APIResponseEncoder { APIResponseEncoder() }

    /// A UUID path parameter; anything else names no resource, so it is "no such route" (404,
    /// or 405 where the path exists for other methods).
    package func pathID(_ name: String) throws -> UUID {
        guard let text = parameters.get(name), let id = UUID(uuidString: text) else {
            throw APIError(.notFound, code: "not_found", message: "no such route")
        }
        return id
    }

    /// The caller, or 401 for routes that reached here without authentication.
    package func requireIdentity() throws -> Identity {
        guard let identity else { throw APIError.unauthorized }
        return identity
    }
}

/// The body limit is read by every request context; set once at boot from `MAX_BODY_BYTES`.
package enum BodyLimit {
    package static let bytes = Atomic<Int>(2 << 20)
}

/// JSON bodies only, decoded with the house dialect; any failure names the field at fault.
package struct APIRequestDecoder: RequestDecoder {
    package func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        if let contentType = request.headers[.contentType], !contentType.lowercased().hasPrefix("application/json") {
            throw APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "send the body as application/json", field: "body")
        }
        let buffer = try await request.body.collect(upTo: context.maxUploadSize)
        guard buffer.readableBytes > 0 else {
            throw APIError(.badRequest, code: "missing_body", message: "a JSON body is required", field: "body")
        }
        let bytes = Array(buffer.readableBytesView)
        if Self.containsNUL(bytes) {
            throw APIError(.badRequest, code: "nul_character", message: "text may not contain the NUL character (\\u0000)", field: "body")
        }
        do {
            return try JSONCoding.decoder.decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw APIError.fromDecoding(error)
        }
    }
}

extension APIRequestDecoder {
    /// True when the JSON has a raw NUL byte or a `\u0000` escape (one not itself escaped):
    /// PostgreSQL text cannot hold NUL, so no field of ours can.
    static func containsNUL(_ bytes: [UInt8]) -> Bool {
        let escape: [UInt8] = Array("u0000".utf8)
        var backslashes = 0
        for (index, byte) in bytes.enumerated() {
            if byte == 0 { return true }
            if byte == UInt8(ascii: "\\") {
                backslashes += 1
                continue
            }
            if backslashes % 2 == 1, byte == UInt8(ascii: "u"), index + 4 < bytes.count,
               Array(bytes[index..<(index + 5)]) == escape {
                return true
            }
            backslashes = 0
        }
        return false
    }
}

package struct APIResponseEncoder: ResponseEncoder {
    package func encode(_ value: some Encodable, from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONCoding.encoder.encode(value)
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension Request {
    /// Decodes the JSON body with the house dialect and the context's size limit.
    package func decodeJSON<T: Decodable>(as type: T.Type, context: AppContext) async throws -> T {
        try await context.requestDecoder.decode(type, from: self, context: context)
    }
}

/// A Codable value answered with a chosen status (201 for creations, …).
package struct JSONResponse<Value: Encodable & Sendable>: ResponseGenerator {
    package var status: HTTPResponse.Status
    package var value: Value

    package init(_ status: HTTPResponse.Status = .ok, _ value: Value) {
        self.status = status
        self.value = value
    }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try APIResponseEncoder().encode(value, from: request, context: context)
        response.status = status
        return response
    }
}

/// `limit` and `cursor` query parameters of every list.
package struct Paging: Sendable {
    package var limit: Int
    package var after: UUID?

    package init(_ request: Request) throws {
        let query = request.uri.queryParameters
        if let text = query["limit"].map(String.init) {
            guard let value = Int(text), (1...200).contains(value) else {
                throw APIError.validation("limit", "limit must be a whole number from 1 to 200")
            }
            limit = value
        } else {
            limit = 50
        }
        if let cursor = query["cursor"].map(String.init) {
            guard let data = Data(base64URLEncoded: cursor), let text = String(data: data, encoding: .utf8), let id = UUID(uuidString: text) else {
                throw APIError.validation("cursor", "cursor is not one this service gave out")
            }
            after = id
        }
    }

    package static func cursor(after id: UUID) -> String {
        Data(id.uuidString.utf8).base64URLEncodedString()
    }
}

extension Page: ResponseEncodable {}
