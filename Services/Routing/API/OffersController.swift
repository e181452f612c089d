import Foundation
import Hummingbird
import Models
import NIOCore
import PostgresNIO
import ServiceKit

extension VoiceReply: ResponseEncodable {}

/// Offers as agents answer them: in the app (`/v1/offers`), on the signed offer page
/// (`/offers/{token}`, RT-15), and on the phone (`/v1/voice/keypresses`, RT-16).
struct OffersController {
    let router: LeadRouter
    let links: OfferLink
    let page: OfferPage

    var store: RoutingStore { router.store }
    var clock: any ServiceClock { router.clock }

    struct LeadSummary: Codable, Sendable {
        var contactId: UUID
        var name: String
        var interest: String
        var priceRange: String?
    }

    struct OfferView: Codable, Sendable, ResponseEncodable {
        var id: UUID
        var state: OfferState
        var mode: OfferMode
        var agentId: UUID
        var offeredAt: Date
        var expiresAt: Date
        var decidedAt: Date?
        var lead: LeadSummary?
    }

    struct AnswerView: ResponseEncodable {
        var answer: LeadRouter.Answer
        var offer: OfferView
    }

    static func summary(_ contact: Contact?) -> LeadSummary? {
        contact.map { LeadSummary(contactId: $0.id, name: LeadDecider.leadName($0), interest: OfferMessage.interest($0), priceRange: OfferMessage.priceRange($0)) }
    }

    func view(_ offer: Offer, on connection: PostgresConnection) async throws -> OfferView {
        OfferView(id: offer.id, state: offer.state, mode: offer.mode, agentId: offer.agentId, offeredAt: offer.offeredAt, expiresAt: offer.expiresAt,
                  decidedAt: offer.decidedAt, lead: Self.summary(try await store.contact(offer.contactId, on: connection)))
    }

    func register(open: RouterGroup<AppContext>, authenticated: RouterGroup<AppContext>) {
        authenticated.get("/v1/offers") { _, context -> Page<OfferView> in
            let identity = try context.requireIdentity()
            guard let agent = identity.userId else { throw APIError.forbidden }
            return try await store.client.withConnection { connection in
                var items: [OfferView] = []
                for offer in try await store.openOffers(agentId: agent, on: connection) { items.append(try await view(offer, on: connection)) }
                return Page(items: items, nextCursor: nil)
            }
        }
        authenticated.post("/v1/offers/{id}/acceptance") { _, context -> AnswerView in
            try await answer(context, accept: true)
        }
        authenticated.post("/v1/offers/{id}/decline") { _, context -> AnswerView in
            try await answer(context, accept: false)
        }

        open.get("/offers/{token}") { _, context -> Response in
            let token = try context.parameters.require("token")
            return try await store.client.withConnection { connection in
                let id: UUID
                switch links.verify(token, now: clock.now) {
                case .valid(let valid): id = valid
                case .expired: return page.render(.linkExpired, lead: nil, token: token)
                case .invalid: return page.render(.invalid, lead: nil, token: token)
                }
                guard let offer = try await store.offer(id, on: connection) else { return page.render(.invalid, lead: nil, token: token) }
                let lead = Self.summary(try await store.contact(offer.contactId, on: connection))
                return page.render(try await pageState(of: offer, on: connection), lead: lead, token: token, offer: offer, now: clock.now)
            }
        }
        open.post("/offers/{token}/acceptance") { _, context -> Response in
            try await answerPage(context, accept: true)
        }
        open.post("/offers/{token}/decline") { _, context -> Response in
            try await answerPage(context, accept: false)
        }

        authenticated.post("/v1/voice/keypresses") { request, context -> VoiceReply in
            let identity = try context.requireIdentity()
            guard identity.isService else { throw APIError.forbidden }
            let press = try await request.decodeJSON(as: VoiceKeypress.self, context: context)
            return try await voice(press)
        }
    }

    private func answer(_ context: AppContext, accept: Bool) async throws -> AnswerView {
        let identity = try context.requireIdentity()
        let id = try context.pathID("id")
        guard let agent = identity.userId else { throw APIError.notFound("offer \(id)") }
        let (answer, offer) = try await store.client.transaction(logger: store.logger) { connection in
            try await router.answer(id, agentId: agent, accept: accept, on: connection)
        }
        switch answer {
        case .takenByOther where accept:
            throw APIError.conflict("another agent already accepted this lead", code: "already_accepted")
        case .expired:
            throw APIError.conflict("this offer is closed: its window passed or the lead moved on", code: "offer_closed")
        case .declined where accept:
            throw APIError.conflict("you declined this offer", code: "offer_declined")
        default:
            return try await store.client.withConnection { AnswerView(answer: answer, offer: try await view(offer, on: $0)) }
        }
    }

    /// The link is the agent's credential for its one offer; answering needs a POST, so a link
    /// preview that only fetches the page changes nothing.
    private func answerPage(_ context: AppContext, accept: Bool) async throws -> Response {
        let token = try context.parameters.require("token")
        let id: UUID
        switch links.verify(token, now: clock.now) {
        case .valid(let valid): id = valid
        case .expired: return page.render(.linkExpired, lead: nil, token: token)
        case .invalid: return page.render(.invalid, lead: nil, token: token)
        }
        return try await store.client.transaction(logger: store.logger) { connection in
            guard let offer = try await store.offer(id, on: connection) else { return page.render(.invalid, lead: nil, token: token) }
            let (answer, decided) = try await router.answer(id, agentId: offer.agentId, accept: accept, on: connection)
            let lead = Self.summary(try await store.contact(offer.contactId, on: connection))
            let state: OfferPage.State = switch answer {
            case .accepted, .alreadyYours: .yours
            case .takenByOther: .taken
            case .declined: .declined
            case .expired: try await pageState(of: try await store.offer(id, on: connection) ?? offer, on: connection)
            }
            return page.render(state, lead: lead, token: token, offer: decided, now: clock.now)
        }
    }

    /// What happened to an offer, from the lead's routing and its other offers (RT-15).
    private func pageState(of offer: Offer, on connection: PostgresConnection) async throws -> OfferPage.State {
        OfferPage.state(of: offer, routing: try await store.routing(offer.contactId, on: connection),
                        offers: try await store.offers(contactId: offer.contactId, on: connection), now: clock.now)
    }

    /// RT-16: 1 accept / 2 decline; then 1 connect / 2 a follow-up call task for later today.
    func voice(_ press: VoiceKeypress) async throws -> VoiceReply {
        guard let reference = press.reference, reference.hasPrefix("offer:"), let offerId = UUID(uuidString: String(reference.dropFirst(6))) else {
            throw APIError.validation("reference", "the call is not one of routing's offers")
        }
        guard let agent = press.userId else { throw APIError.validation("userId", "the call was not to an agent") }
        return try await store.client.transaction(logger: store.logger) { connection in
            guard let offer = try await store.offer(offerId, on: connection), offer.agentId == agent else { throw APIError.notFound("offer \(offerId)") }
            let name = try await store.contact(offer.contactId, on: connection).map(LeadDecider.leadName) ?? "the lead"
            if press.step == 1 {
                switch press.digits {
                case "1":
                    let (answer, _) = try await router.answer(offerId, agentId: agent, accept: true, on: connection)
                    switch answer {
                    case .accepted, .alreadyYours:
                        return VoiceReply(say: "\(name) is your lead. Press 1 to connect to \(name) now, or 2 to schedule a follow-up call for later today.",
                                          gather: GatherSpec(numDigits: 1, timeoutSeconds: 10, answeredBy: .routing))
                    case .takenByOther: return VoiceReply(say: "Sorry, another agent already accepted this lead. Goodbye.")
                    case .declined: return VoiceReply(say: "You declined this lead earlier. Goodbye.")
                    case .expired: return VoiceReply(say: "Sorry, this offer has closed. Goodbye.")
                    }
                case "2":
                    let (answer, _) = try await router.answer(offerId, agentId: agent, accept: false, on: connection)
                    return VoiceReply(say: answer == .declined ? "You declined the lead. It goes to the next agent. Goodbye." : "This offer has already closed. Goodbye.")
                default:
                    return VoiceReply(say: "That was not one of the choices. The offer stays open: use the link in your text or e-mail. Goodbye.")
                }
            }
            guard try await store.offer(offerId, on: connection)?.state == .accepted else { return VoiceReply(say: "This lead is not yours. Goodbye.") }
            switch press.digits {
            case "1":
                return VoiceReply(say: "Connecting you to \(name).", dialContactId: offer.contactId)
            case "2":
                var zone = TimeZone.gmt
                if let contact = try await store.contact(offer.contactId, on: connection),
                   let entity = try await store.entity(contact.ownerEntityId, on: connection), let local = TimeZone(identifier: entity.timeZone) {
                    zone = local
                }
                let due = FollowUp.due(now: clock.now, timeZone: zone)
                try await router.jobs.schedule(kind: LeadRouter.followUpJob,
                                               payload: RoutingJobs.FollowUpJob(contactId: offer.contactId, agentId: agent, offerId: offer.id, round: offer.round, dueAt: due),
                                               runAt: clock.now, uniqueKey: "follow-up:\(offer.id)", on: connection, logger: store.logger)
                return VoiceReply(say: "A call to \(name) is on your task list for later today. Goodbye.")
            default:
                return VoiceReply(say: "That was not one of the choices. The lead is yours; call them from the app. Goodbye.")
            }
        }
    }
}

/// "Later today" for a follow-up call chosen on the phone (RT-16).
enum FollowUp {
    /// Two hours from now, but not past 20:00 local; late in the evening, a quarter of an hour from now.
    static func due(now: Date, timeZone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let inTwoHours = now.addingTimeInterval(2 * 3600)
        guard let evening = calendar.date(bySettingHour: 20, minute: 0, second: 0, of: now) else { return inTwoHours }
        if inTwoHours <= evening { return inTwoHours }
        return max(evening, now.addingTimeInterval(15 * 60))
    }
}
