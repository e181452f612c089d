import Foundation
import Testing
@testable import ServiceKit
import Models

@Suite("Bearer tokens (X-1)")
struct AuthTests {
    static let secret = String(repeating: "k", count: 40)

    func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    @Test("base64url: every byte string round-trips, without +, / or padding, as the base64 alphabet mapped")
    func base64URLRoundTrip() {
        for length in 0..<48 {
            let data = Data((0..<length).map { _ in UInt8.random(in: 0...255) } + [0xFB, 0xFF, 0xBF].prefix(length % 4))
            let text = data.base64URLEncodedString()
            #expect(!text.contains("+") && !text.contains("/") && !text.contains("="))
            #expect(text == data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: ""))
            #expect(Data(base64URLEncoded: text) == data)
        }
    }

    @Test("a token it issued verifies, with its claims")
    func roundTrip() async throws {
        let tokens = await TokenService(secret: Self.secret)
        let company = UUID(), entity = UUID(), user = UUID()
        let token = try await tokens.issue(subject: user.uuidString, companyId: company, role: .officeAdmin, entityIds: [entity])
        let identity = try await tokens.verify(token)
        #expect(identity.userId == user)
        #expect(identity.companyId == company)
        #expect(identity.role == .officeAdmin)
        #expect(identity.entityIds == [entity])
    }

    @Test("service tokens carry the service name")
    func serviceToken() async throws {
        let tokens = await TokenService(secret: Self.secret)
        let identity = try await tokens.verify(try await tokens.serviceToken(for: .routing))
        #expect(identity.isService)
        #expect(identity.subject == "routing")
    }

    @Test("expired, not-yet-valid, wrong-signature, alg none and malformed tokens are refused")
    func refused() async throws {
        let tokens = await TokenService(secret: Self.secret)
        let other = await TokenService(secret: String(repeating: "x", count: 40))
        let company = UUID()
        let expired = try await tokens.issue(subject: UUID().uuidString, companyId: company, role: .agent, entityIds: [],
                                             now: Date().addingTimeInterval(-7200), lifetime: 3600)
        let future = try await tokens.issue(subject: UUID().uuidString, companyId: company, role: .agent, entityIds: [],
                                            now: Date().addingTimeInterval(3600), lifetime: 3600)
        let forged = try await other.issue(subject: UUID().uuidString, companyId: company, role: .companyAdmin, entityIds: [])
        let valid = try await tokens.issue(subject: UUID().uuidString, companyId: company, role: .agent, entityIds: [])
        let parts = valid.split(separator: ".").map(String.init)
        let noneHeader = base64URL(Data(#"{"alg":"none","typ":"JWT"}"#.utf8))
        let algNone = "\(noneHeader).\(parts[1])."
        let algNoneSigned = "\(noneHeader).\(parts[1]).\(parts[2])"
        let hs512Header = base64URL(Data(#"{"alg":"HS512","typ":"JWT"}"#.utf8))
        let otherAlg = "\(hs512Header).\(parts[1]).\(parts[2])"
        // Same header and signature, claims changed to company admin.
        var claims = try JSONSerialization.jsonObject(with: Data(base64URLEncoded: parts[1])!) as! [String: Any]
        claims["role"] = "company_admin"
        let tampered = "\(parts[0]).\(base64URL(try JSONSerialization.data(withJSONObject: claims))).\(parts[2])"
        for token in [expired, future, forged, algNone, algNoneSigned, otherAlg, tampered, "", "abc", "a.b.c", "\(parts[0]).\(parts[1])"] {
            await #expect(throws: APIError.unauthorized) { try await tokens.verify(token) }
        }
    }

    @Test("X-1: a token verified once is remembered only for its own span: refused once expired, and before its nbf")
    func rememberedTokens() async throws {
        let tokens = await TokenService(secret: Self.secret)
        let token = try await tokens.issue(subject: UUID().uuidString, companyId: UUID(), role: .agent, entityIds: [], lifetime: 600)
        let identity = try await tokens.verify(token)
        #expect(try await tokens.verify(token) == identity)
        let now = Date()
        #expect(tokens.verified.identity(token, now: now) == identity)
        #expect(tokens.verified.identity(token, now: now.addingTimeInterval(601)) == nil)
        #expect(tokens.verified.identity(token + "x", now: now) == nil)
        tokens.verified.remember("t", identity, notBefore: now.addingTimeInterval(60), expires: now.addingTimeInterval(120))
        #expect(tokens.verified.identity("t", now: now) == nil)
        #expect(tokens.verified.identity("t", now: now.addingTimeInterval(90)) == identity)
        // The bound: a full cache starts over rather than grow.
        for index in 0..<VerifiedTokens.capacity { tokens.verified.remember("n\(index)", identity, notBefore: nil, expires: now.addingTimeInterval(60)) }
        #expect(tokens.verified.identity("t", now: now.addingTimeInterval(90)) == nil)
    }

    @Test("a person's token without a company is refused")
    func personWithoutCompany() async throws {
        let tokens = await TokenService(secret: Self.secret)
        let token = try await tokens.issue(subject: UUID().uuidString, companyId: nil, role: .agent, entityIds: [])
        await #expect(throws: APIError.unauthorized) { try await tokens.verify(token) }
    }
}
