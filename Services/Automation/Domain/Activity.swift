import Foundation
import Models
import ServiceKit

/// BA-1: one thing a visitor or contact did on the brokerage's website.
struct ActivityEvent: Codable, Sendable, Hashable {
    enum Kind: String, WireEnum {
        case siteVisit = "site_visit"
        case propertyView = "property_view"
        case favorite
        case showingRequest = "showing_request"
        case question
    }

    struct Listing: Codable, Sendable, Hashable {
        var listingId: String
        var mls: String?
        var price: Int?
        var area: String?
        var propertyType: String?
        var listingAgentId: UUID?
    }

    /// The sender's own id for the event: the same id twice counts once.
    var id: UUID
    var kind: Kind
    /// When it happened; late and out-of-order events count at their own time.
    var at: Date
    var contactId: UUID?
    /// The tracker's anonymous visitor id, until the visitor becomes a lead.
    var visitorId: String?
    var listing: Listing?
    /// A showing request's or question's words.
    var message: String?
}

enum ActivityRules {
    static let batchLimit = 1_000

    /// Every event checked, each problem naming the event (`events[3].listing.listingId`).
    static func validate(_ events: [ActivityEvent], now: Date, field: (Int) -> String) throws {
        guard !events.isEmpty else { throw APIError.validation("events", "events must hold at least one event") }
        guard events.count <= batchLimit else { throw APIError.validation("events", "at most \(batchLimit) events a request") }
        for (index, event) in events.enumerated() {
            let name = field(index)
            guard event.contactId != nil || !(event.visitorId ?? "").isEmpty else {
                throw APIError.validation("\(name).visitorId", "an event names its contactId or its visitorId")
            }
            if let visitor = event.visitorId, visitor.count > 200 { throw APIError.validation("\(name).visitorId", "visitorId is at most 200 characters") }
            guard event.at <= now.addingTimeInterval(300) else { throw APIError.validation("\(name).at", "an event cannot happen in the future") }
            guard event.at >= now.addingTimeInterval(-400 * 86_400) else { throw APIError.validation("\(name).at", "an event is at most 400 days old") }
            switch event.kind {
            case .propertyView, .favorite, .showingRequest:
                guard let listing = event.listing else { throw APIError.validation("\(name).listing", "a \(event.kind.rawValue) names its listing") }
                guard !listing.listingId.isEmpty, listing.listingId.count <= 100 else {
                    throw APIError.validation("\(name).listing.listingId", "listingId is 1 to 100 characters")
                }
                if let price = listing.price, price < 0 || price > 1_000_000_000 { throw APIError.validation("\(name).listing.price", "price is 0 to 1,000,000,000") }
            case .siteVisit, .question:
                break
            }
            if let message = event.message, message.count > 5_000 { throw APIError.validation("\(name).message", "message is at most 5,000 characters") }
        }
    }
}
