import Foundation
import Hummingbird
import HummingbirdTesting
import Models
import Testing
@testable import ServiceKit

@Suite("JSON errors naming the field (X-2)")
struct APIErrorTests {
    struct Inner: Decodable { var open: String }
    struct Body: Decodable {
        var name: String
        var count: Int
        var days: [Inner]
        var email: EmailAddress?
    }

    func decodeError(_ json: String) -> APIError {
        do {
            _ = try JSONCoding.decoder.decode(Body.self, from: Data(json.utf8))
            return APIError(.ok, code: "none", message: "")
        } catch let error as DecodingError {
            return APIError.fromDecoding(error)
        } catch {
            return APIError.from(error)
        }
    }

    @Test("missing, wrong-typed, null and malformed fields map to codes and field paths")
    func decodingErrors() {
        #expect(decodeError(#"{"count": 1, "days": []}"#).field == "name")
        #expect(decodeError(#"{"count": 1, "days": []}"#).code == "missing_field")
        #expect(decodeError(#"{"name": "a", "count": "x", "days": []}"#).field == "count")
        #expect(decodeError(#"{"name": "a", "count": "x", "days": []}"#).code == "wrong_type")
        #expect(decodeError(#"{"name": "a", "count": 1, "days": [{"open": 9}]}"#).field == "days[0].open")
        #expect(decodeError(#"{"name": null, "count": 1, "days": []}"#).field == "name")
        #expect(decodeError(#"{"name": "a", "count": 1, "days": [], "email": "nope"}"#).field == "email")
        #expect(decodeError(#"{"name": "a", "#).code == "malformed_json")
        #expect(decodeError(#"{"name": "a", "count": 1, "days": [], "email": "nope"}"#).status == .unprocessableContent)
    }

    @Test("X-2: an unknown value of a closed set names the field and the values it takes, in the body and in a query")
    func unknownEnumValues() throws {
        struct Message: Decodable { var channel: MessageChannel; var statuses: [ContactStatus] }
        func error(_ json: String) -> APIError {
            do {
                _ = try JSONCoding.decoder.decode(Message.self, from: Data(json.utf8))
                return APIError(.ok, code: "none", message: "")
            } catch {
                return APIError.from(error)
            }
        }
        let channel = error(#"{"channel": "fax", "statuses": []}"#)
        #expect(channel.status == .unprocessableContent)
        #expect(channel.code == "invalid_field")
        #expect(channel.field == "channel")
        #expect(channel.message == "channel 'fax' is not one of sms, email, voice, push")
        let status = error(#"{"channel": "sms", "statuses": ["new_lead", "bogus"]}"#)
        #expect(status.field == "statuses[1]")
        #expect(status.message == "statuses[1] 'bogus' is not one of sphere, prospect, new_lead, active_lead, client, contract, closed, archive")
        #expect(error(#"{"channel": 3, "statuses": []}"#).code == "wrong_type")
        #expect(error(#"{"channel": "push", "statuses": ["active_lead"]}"#).code == "none")
        #expect(try LeadType.value("seller", field: "leadType") == .seller)
        #expect(throws: APIError.validation("leadType", "leadType 'renters' is not one of buyer, seller, renter, agent")) {
            try LeadType.value("renters", field: "leadType")
        }
    }

    func app() -> some ApplicationProtocol {
        BodyLimit.bytes.store(1024, ordering: .relaxed)
        let router = Router(context: AppContext.self)
        router.add(middleware: TraceMiddleware())
        router.add(middleware: APIErrorMiddleware())
        router.post("/echo") { request, context -> [String: String] in
            let body = try await request.decodeJSON(as: [String: String].self, context: context)
            return body
        }
        router.get("/boom") { _, _ -> String in
            struct Secret: Error {}
            throw Secret()
        }
        return Application(router: router)
    }

    func errorBody(_ response: TestResponse) throws -> [String: String?] {
        let json = try JSONDecoder().decode([String: [String: String?]].self, from: Data(buffer: response.body))
        return json["error"] ?? [:]
    }

    @Test("oversized bodies get 413, unknown routes 404, unexpected failures 500 — all as JSON errors")
    func routeErrors() async throws {
        try await app().test(.router) { client in
            let json: HTTPFields = [.contentType: "application/json"]
            let big = "{\"a\": \"" + String(repeating: "x", count: 4096) + "\"}"
            let tooLarge = try await client.execute(uri: "/echo", method: .post, headers: json, body: ByteBuffer(string: big))
            #expect(tooLarge.status == .contentTooLarge)
            #expect(try errorBody(tooLarge)["code"] == "body_too_large")
            let wrongType = try await client.execute(uri: "/echo", method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "{}"))
            #expect(wrongType.status == .unsupportedMediaType)
            let malformed = try await client.execute(uri: "/echo", method: .post, headers: json, body: ByteBuffer(string: "{"))
            #expect(malformed.status == .badRequest)
            #expect(try errorBody(malformed)["field"] == "body")
            let missing = try await client.execute(uri: "/nowhere", method: .get)
            #expect(missing.status == .notFound)
            #expect(try errorBody(missing)["code"] == "not_found")
            let boom = try await client.execute(uri: "/boom", method: .get)
            #expect(boom.status == .internalServerError)
            let body = try errorBody(boom)
            #expect(body["code"] == "internal_error")
            #expect(body["message"]??.contains("Secret") == false)
            #expect(boom.headers[.traceparent] != nil)
            let fine = try await client.execute(uri: "/echo", method: .post, headers: json, body: ByteBuffer(string: #"{"a":"b"}"#))
            #expect(fine.status == .ok)
        }
    }
}

@Suite("NUL characters in JSON bodies (X-2)")
struct NULTests {
    /// `\U0000` is no JSON escape at all: the JSON decoder refuses it as malformed.
    @Test("raw and escaped NULs are found; an escaped backslash before u0000 is text", arguments: [
        (#"{"a":"x\u0000y"}"#, true), (#"{"a":"x\U0000"}"#, false), ("{\"a\":\"\u{0}\"}", true),
        (#"{"a":"x\\u0000"}"#, false), (#"{"a":"x\\\u0000"}"#, true), (#"{"a":"\u0001"}"#, false), (#"{"a":"plain"}"#, false),
    ])
    func detection(json: String, expected: Bool) {
        #expect(APIRequestDecoder.containsNUL(Array(json.utf8)) == expected)
    }
}
