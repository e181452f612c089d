import Foundation
import Hummingbird
import Models
import ServiceKit

/// `/v1/consent`: the company's Do-Not-Call list and the opt-out ledger per number (NT-5).
///
/// Whom an opt-out binds (X-1): a recipient's own word (a STOP or START text, a carrier's report
/// that the number unsubscribed) binds every company, because every company texts from the
/// platform's sending numbers and carriers block a number pair for every sender behind it; the
/// strictest reading and the carriers' sender-scoped one agree here. An opt-out asked of one
/// brokerage another way (a call, an e-mail) is recorded by that brokerage's admins, for numbers
/// of contacts they manage, and binds that brokerage; its admins may lift it, while a STOP is
/// lifted only by the recipient's START. A company reads the recipient's own word and its own
/// records, never another company's.
struct ConsentController {
    let store: MessageStore
    let recipients: Recipients
    let clock: any ServiceClock

    struct DNCImport: Decodable {
        var numbers: [String]
        var source: String?
        /// Services name the company; people act for their own.
        var companyId: UUID?
    }

    struct RowError: Codable, Sendable {
        var index: Int
        var field: String
        var message: String
    }

    struct DNCImported: ResponseEncodable {
        var added: Int
        var alreadyListed: Int
        var errors: [RowError]
    }

    struct DNCEntry: ResponseEncodable {
        var number: String
        var listed: Bool
        var source: String?
        var addedBy: String?
        var addedAt: Date?
    }

    struct OptOutRequest: Decodable {
        var number: String
        var how: String
        /// Services name the company; people act for their own.
        var companyId: UUID?
    }

    struct OptOutStatus: ResponseEncodable {
        var number: String
        var optedOut: Bool
        /// `every_company` (the recipient's own STOP), `this_company` (recorded by hand here), or
        /// absent when the number may be texted.
        var binds: String?
        var history: [OptOutEntry]

        init(number: String, view: MessageStore.OptOutView) {
            self.number = number
            optedOut = view.everyCompany || view.thisCompany
            binds = view.everyCompany ? "every_company" : view.thisCompany ? "this_company" : nil
            history = view.history
        }
    }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/consent/dnc") { request, context -> JSONResponse<DNCImported> in
            let identity = try context.requireIdentity()
            let body = try await request.decodeJSON(as: DNCImport.self, context: context)
            let company = try Self.company(identity, given: body.companyId, adminOnly: true)
            guard (1...50_000).contains(body.numbers.count) else { throw APIError.validation("numbers", "give 1 to 50,000 numbers") }
            let source = body.source ?? "manual"
            guard !source.isEmpty, source.count <= 100 else { throw APIError.validation("source", "source must be 1 to 100 characters") }
            var valid: [String] = []
            var errors: [RowError] = []
            for (index, text) in body.numbers.enumerated() {
                if let phone = PhoneNumber(text) {
                    valid.append(phone.e164)
                } else {
                    errors.append(RowError(index: index, field: "numbers[\(index)]", message: "not a phone number"))
                }
            }
            let unique = Array(Set(valid))
            let added = unique.isEmpty ? 0 : try await store.addDNC(unique, companyId: company, source: source, by: identity.subject, at: clock.now)
            return JSONResponse(.ok, DNCImported(added: added, alreadyListed: unique.count - added, errors: errors))
        }

        group.get("/v1/consent/dnc") { request, context -> DNCEntry in
            let identity = try context.requireIdentity()
            let number = try Self.number(request)
            let company = try Self.company(identity, given: try Self.companyQuery(request), adminOnly: false)
            guard let entry = try await store.dnc(number, companyId: company) else { return DNCEntry(number: number, listed: false) }
            return DNCEntry(number: number, listed: true, source: entry.source, addedBy: entry.addedBy, addedAt: entry.addedAt)
        }

        group.delete("/v1/consent/dnc") { request, context -> Response in
            let identity = try context.requireIdentity()
            let number = try Self.number(request)
            let company = try Self.company(identity, given: try Self.companyQuery(request), adminOnly: true)
            guard try await store.removeDNC(number, companyId: company) else { throw APIError.notFound("DNC entry \(number)") }
            return Response(status: .noContent)
        }

        group.get("/v1/consent/opt-outs") { request, context -> OptOutStatus in
            let identity = try context.requireIdentity()
            let number = try Self.number(request, email: true)
            // A service without a company reads only the recipient's own word.
            let company = identity.isService ? try Self.companyQuery(request) : try Self.company(identity, given: try Self.companyQuery(request), adminOnly: false)
            return OptOutStatus(number: number, view: try await store.optOutHistory(number, companyId: company))
        }

        // Recording an opt-out someone asked for another way (a call, an e-mail), for a contact
        // the admin manages. Opting back in is the recipient's own START, or the lifting of this
        // company's own record below.
        group.post("/v1/consent/opt-outs") { request, context -> JSONResponse<OptOutStatus> in
            let identity = try context.requireIdentity()
            let body = try await request.decodeJSON(as: OptOutRequest.self, context: context)
            guard let phone = PhoneNumber(body.number) else { throw APIError.validation("number", "not a phone number") }
            let how = body.how.trimmedWhitespace()
            guard !how.isEmpty, how.count <= 200 else { throw APIError.validation("how", "how must be 1 to 200 characters") }
            let company = try await managedNumber(phone.e164, identity: identity, given: body.companyId)
            try await store.client.transaction(logger: store.logger) { connection in
                _ = try await store.recordCompanyConsent(number: phone.e164, optOut: true, companyId: company, how: how, by: identity.subject,
                                                         at: clock.now, on: connection)
            }
            return JSONResponse(.created, OptOutStatus(number: phone.e164, view: try await store.optOutHistory(phone.e164, companyId: company)))
        }

        group.delete("/v1/consent/opt-outs") { request, context -> OptOutStatus in
            let identity = try context.requireIdentity()
            let number = try Self.number(request)
            let company = try await managedNumber(number, identity: identity, given: try Self.companyQuery(request))
            let how = request.uri.queryParameters["how"].map { String($0).trimmedWhitespace() } ?? "lifted by hand"
            guard !how.isEmpty, how.count <= 200 else { throw APIError.validation("how", "how must be 1 to 200 characters") }
            let lifted = try await store.client.transaction(logger: store.logger) { connection in
                try await store.recordCompanyConsent(number: number, optOut: false, companyId: company, how: how, by: identity.subject,
                                                     at: clock.now, on: connection)
            }
            let view = try await store.optOutHistory(number, companyId: company)
            guard lifted else {
                if view.everyCompany {
                    throw APIError.conflict("the recipient opted out by text; only their START lifts it", code: "recipient_opt_out")
                }
                throw APIError.notFound("opt-out of \(number) recorded by your company")
            }
            return OptOutStatus(number: number, view: view)
        }
    }

    /// The company whose consent record an admin (or a service naming the company) may change for
    /// `number`: people, only for the phone of a contact they manage (X-1).
    func managedNumber(_ number: String, identity: Identity, given: UUID?) async throws -> UUID {
        let company = try Self.company(identity, given: given, adminOnly: true)
        if identity.isService { return company }
        for match in try await store.contactsReachedAt(number) where match.companyId == company {
            let reachable = try await store.client.withConnection { connection in
                (try? await recipients.resolve(contactId: match.contactId, userId: nil, identity: identity, on: connection)) != nil
            }
            if reachable { return company }
        }
        throw APIError.validation("number", "\(number) is not the phone of a contact you manage")
    }

    /// A phone number, or (reading only) an e-mail address, whose unsubscribes are in the ledger too.
    static func number(_ request: Request, email: Bool = false) throws -> String {
        guard let text = request.uri.queryParameters["number"].map(String.init) else { throw APIError.validation("number", "number is required") }
        if email, text.contains("@") {
            guard let address = EmailAddress(text) else { throw APIError.validation("number", "not an e-mail address") }
            return address.value.lowercased()
        }
        guard let phone = PhoneNumber(text) else { throw APIError.validation("number", "not a phone number") }
        return phone.e164
    }

    static func companyQuery(_ request: Request) throws -> UUID? {
        guard let text = request.uri.queryParameters["companyId"].map(String.init) else { return nil }
        guard let id = UUID(uuidString: text) else { throw APIError.validation("companyId", "companyId must be a UUID") }
        return id
    }

    static func company(_ identity: Identity, given: UUID?, adminOnly: Bool) throws -> UUID {
        if identity.isService {
            guard let given else { throw APIError.validation("companyId", "services name the company") }
            return given
        }
        guard let company = identity.companyId else { throw APIError.forbidden }
        if let given, given != company { throw APIError.notFound("company \(given)") }
        if adminOnly && !identity.role.isAdmin { throw APIError.forbidden }
        return company
    }
}
