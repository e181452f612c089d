import Crypto
import Foundation
import Hummingbird
import Models
import ServiceKit

/// ST-8: a transaction-management system (DotLoop, SkySlope, DocuSign style) tells us a deal
/// went under contract or closed; the matching contact moves to `contract` or `closed`.
///
/// Each company has a signing secret. A delivery carries `X-Company-Id`, `X-Timestamp` (Unix
/// seconds) and `X-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`. Old
/// timestamps (over 5 minutes), bad signatures and replayed delivery ids change nothing.
struct TransactionsController {
    let crm: CRMStore
    let contacts: ContactStore
    let writer: ContactWriter
    let access: ContactAccess
    let clock: any ServiceClock

    struct Delivery: Decodable {
        var deliveryId: String
        var status: String
        var email: EmailAddress?
        var phone: PhoneNumber?
        var transactionId: String?
        var provider: String?
    }

    struct Outcome: ResponseEncodable {
        var outcome: String
        var contactId: UUID?
    }

    struct Secret: ResponseEncodable {
        var secret: String
    }

    func register(open: RouterGroup<AppContext>, authenticated: RouterGroup<AppContext>) {
        authenticated.post("/v1/integrations/transactions/secret") { _, context -> Secret in
            let identity = try context.requireIdentity()
            try identity.require(.companyAdmin)
            let secret = "whsec_" + SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.hexString
            try await crm.setIntegrationSecret(secret, companyId: try access.access.companyId(of: identity), at: clock.now)
            return Secret(secret: secret)
        }

        open.post("/v1/integrations/transactions") { request, context -> Outcome in
            let forged = APIError(.forbidden, code: "bad_signature", message: "the delivery's signature does not verify")
            guard let companyText = request.headers[.init("X-Company-Id")!], let companyId = UUID(uuidString: companyText),
                  let signed = WebhookSignature.headers(of: request)
            else { throw APIError(.unauthorized, code: "unsigned", message: "send X-Company-Id, X-Timestamp and X-Signature") }
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            guard let secret = try await crm.integrationSecret(companyId: companyId),
                  WebhookSignature.verify(signed, secret: secret, body: Array(body.readableBytesView))
            else { throw forged }
            let delivery: Delivery
            do {
                delivery = try JSONCoding.decoder.decode(Delivery.self, from: Data(body.readableBytesView))
            } catch let error as DecodingError {
                throw APIError.fromDecoding(error)
            }
            guard !delivery.deliveryId.isEmpty, delivery.deliveryId.count <= 200 else {
                throw APIError.validation("deliveryId", "deliveryId must be 1 to 200 characters")
            }
            guard let status = Self.status(for: delivery.status) else {
                throw APIError.validation("status", "status must be under_contract, pending, closed or sold")
            }
            guard try await crm.recordDelivery(delivery.deliveryId, companyId: companyId, at: clock.now) else {
                return Outcome(outcome: "duplicate", contactId: nil)
            }
            let matches = try await contacts.matching(companyId: companyId, emails: delivery.email.map { [$0.value] } ?? [],
                                                      phones: delivery.phone.map { [$0.e164] } ?? [])
            guard matches.count == 1, let id = matches.keys.first, let old = try await contacts.contact(id, companyId: companyId) else {
                return Outcome(outcome: matches.isEmpty ? "unmatched" : "ambiguous", contactId: nil)
            }
            var contact = old
            contact.status = status
            let provider = delivery.provider.flatMap { try? ContactRules.optionalText($0, field: "provider", maxLength: 50) } ?? "transaction management"
            _ = try await writer.write(old: old, new: contact, actor: Actor(kind: .integration, id: "transactions", name: provider),
                                       reason: "transaction integration")
            return Outcome(outcome: old.status == status ? "unchanged" : "updated", contactId: id)
        }
    }

    static func status(for text: String) -> ContactStatus? {
        switch text.lowercased() {
        case "under_contract", "pending", "contract", "in_contract": .contract
        case "closed", "sold", "complete", "completed": .closed
        default: nil
        }
    }
}
