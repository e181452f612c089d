import Foundation
import Hummingbird
import Models
import Mustache
import NIOCore

/// The HTML page an offer's link opens (RT-15), readable on a phone.
struct OfferPage: Sendable {
    /// What the page tells its opener; every closed state says what really happened (RT-15).
    enum State: String, Sendable {
        case open, yours, taken, declined
        /// The agent's own window passed before they answered; the lead moved on.
        case lapsed
        /// Nobody accepted in time, and the rule's timeout agent got the lead.
        case timedOut
        /// The lead went to another agent some other way (an admin's assignment, routing again).
        case reassigned
        /// The lead went to this agent without their acceptance (they were the timeout agent).
        case assignedToYou
        /// The offer was taken back before anyone accepted (the lead was archived, deleted or routed again).
        case withdrawn
        /// The link is older than links live (404).
        case linkExpired
        /// The link is damaged or names no offer (404).
        case invalid
    }

    let template: MustacheTemplate

    init() throws {
        template = try MustacheTemplate(string: Self.source)
    }

    /// What an opener sees: once anyone accepted, everyone else sees "already accepted"; an offer
    /// that closed otherwise says how, from the lead's routing and its other offers.
    static func state(of offer: Offer, routing: LeadRouting?, offers: [Offer], now: Date) -> State {
        switch offer.state {
        case .accepted: return .yours
        case .declined: return .declined
        case .open where now < offer.expiresAt: return .open
        case .open, .lapsed, .timedOut, .closed:
            if offers.contains(where: { $0.state == .accepted && $0.agentId != offer.agentId }) { return .taken }
            if routing?.state == .assigned, let owner = routing?.assignedAgentId {
                if owner == offer.agentId { return .assignedToYou }
                return offers.contains { $0.state == .timedOut } ? .timedOut : .reassigned
            }
            return offer.state == .closed ? .withdrawn : .lapsed
        }
    }

    func render(_ state: State, lead: OffersController.LeadSummary?, token: String, offer: Offer? = nil, now: Date? = nil) -> Response {
        var values: [String: Any] = [
            "token": token,
            state.rawValue: true,
            "title": Self.titles[state] ?? "New lead",
        ]
        if let lead {
            values["name"] = lead.name
            if !lead.interest.isEmpty { values["interest"] = lead.interest }
            if let price = lead.priceRange { values["price"] = price }
        }
        if let offer, state == .open {
            values["expires"] = RFC3339.string(from: offer.expiresAt)
            values["remaining"] = Self.remaining(from: now ?? offer.offeredAt, until: offer.expiresAt)
        }
        let status: HTTPResponse.Status = state == .invalid || state == .linkExpired ? .notFound : .ok
        return Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: template.render(values))))
    }

    /// How long the offer stays open, as an agent glancing at a phone reads it.
    static func remaining(from now: Date, until end: Date) -> String {
        let minutes = Int((end.timeIntervalSince(now) / 60).rounded(.up))
        switch minutes {
        case ..<1: return "less than a minute"
        case 1: return "1 more minute"
        case 2..<90: return "\(minutes) more minutes"
        case 90..<(36 * 60): return "about \(Int((Double(minutes) / 60).rounded())) more hours"
        default: return "about \(Int((Double(minutes) / 1440).rounded())) more days"
        }
    }

    static let titles: [State: String] = [
        .open: "New lead for you",
        .yours: "The lead is yours",
        .taken: "This lead was already accepted",
        .declined: "You declined this lead",
        .lapsed: "Your time to accept ran out",
        .timedOut: "This lead went to the timeout agent",
        .reassigned: "This lead went to another agent",
        .assignedToYou: "The lead is yours",
        .withdrawn: "This offer was withdrawn",
        .linkExpired: "This link has expired",
        .invalid: "This link is not valid",
    ]

    static let source = """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="robots" content="noindex">
    <title>{{title}}</title>
    <style>
      body { font-family: -apple-system, system-ui, "Segoe UI", Roboto, sans-serif; margin: 0; background: #f4f5f7; color: #1c1e21; }
      main { max-width: 28rem; margin: 0 auto; padding: 1.5rem 1rem; }
      .card { background: #fff; border-radius: 12px; padding: 1.25rem; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
      h1 { font-size: 1.35rem; margin: 0 0 1rem; }
      .name { font-size: 1.6rem; font-weight: 700; margin: 0; }
      .detail { color: #4b4f56; margin: .35rem 0 0; font-size: 1.05rem; }
      form { margin-top: 1.25rem; }
      button { width: 100%; font-size: 1.2rem; padding: .9rem; border: 0; border-radius: 10px; margin-top: .6rem; cursor: pointer; }
      .accept { background: #1a7f37; color: #fff; }
      .decline { background: #e4e6eb; color: #1c1e21; }
      .note { margin-top: 1rem; color: #4b4f56; }
      .done { font-size: 1.15rem; }
    </style>
    </head>
    <body>
    <main>
    <div class="card">
      <h1 id="title">{{title}}</h1>
      {{#name}}<p class="name" id="lead-name">{{name}}</p>{{/name}}
      {{#interest}}<p class="detail" id="lead-interest">{{interest}}</p>{{/interest}}
      {{#price}}<p class="detail" id="lead-price">{{price}}</p>{{/price}}
      {{#open}}
      <form method="post" action="/offers/{{token}}/acceptance"><button class="accept" id="accept" type="submit">Accept</button></form>
      <form method="post" action="/offers/{{token}}/decline"><button class="decline" id="decline" type="submit">Decline</button></form>
      <p class="note">The first agent to accept gets the lead. Open for <time datetime="{{expires}}" id="remaining">{{remaining}}</time>.</p>
      {{/open}}
      {{#yours}}<p class="done" id="outcome">You accepted this lead. Call them now: the first five minutes count most.</p>{{/yours}}
      {{#taken}}<p class="done" id="outcome">This lead was already accepted by another agent.</p>{{/taken}}
      {{#declined}}<p class="done" id="outcome">You declined this lead; it went to the next agent.</p>{{/declined}}
      {{#lapsed}}<p class="done" id="outcome">Your time to accept this lead ran out before you answered, so it was offered on.</p>{{/lapsed}}
      {{#timedOut}}<p class="done" id="outcome">Nobody accepted this lead in time, so it went to the rule's timeout agent.</p>{{/timedOut}}
      {{#reassigned}}<p class="done" id="outcome">This lead was assigned to another agent.</p>{{/reassigned}}
      {{#assignedToYou}}<p class="done" id="outcome">Nobody accepted in time, so the lead was assigned to you. Call them now.</p>{{/assignedToYou}}
      {{#withdrawn}}<p class="done" id="outcome">This offer was withdrawn before anyone accepted: the lead is no longer being offered.</p>{{/withdrawn}}
      {{#linkExpired}}<p class="done" id="outcome">This link has expired.</p>{{/linkExpired}}
      {{#invalid}}<p class="done" id="outcome">The link is damaged.</p>{{/invalid}}
    </div>
    </main>
    </body>
    </html>
    """
}
