import Foundation
import Models
import ServiceKit
import Testing
@testable import Automation

/// BA-1's input rules, without a database.
@Suite("Website activity (BA-1)")
struct ActivityRulesTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func event(_ kind: ActivityEvent.Kind, contact: UUID? = UUID(), visitor: String? = nil, listing: ActivityEvent.Listing? = nil,
                      at: Date = now) -> ActivityEvent {
        ActivityEvent(id: UUID(), kind: kind, at: at, contactId: contact, visitorId: visitor, listing: listing, message: nil)
    }

    func field(_ events: [ActivityEvent]) -> String? {
        do {
            try ActivityRules.validate(events, now: Self.now, field: { "events[\($0)]" })
            return nil
        } catch let error as APIError {
            return error.field
        } catch {
            return "?"
        }
    }

    @Test("BA-1: every event names a contact or a visitor, a listing when it is about one, a time not in the future; the problem names the event; at most 1,000 a request")
    func validation() {
        let listing = ActivityEvent.Listing(listingId: "MLS-1", mls: "MRED", price: 450_000, area: "Hyde Park", propertyType: "condo", listingAgentId: nil)
        #expect(field([Self.event(.siteVisit), Self.event(.propertyView, listing: listing), Self.event(.question, contact: nil, visitor: "v1")]) == nil)
        #expect(field([Self.event(.siteVisit), Self.event(.propertyView)]) == "events[1].listing")
        #expect(field([Self.event(.favorite, contact: nil, visitor: nil, listing: listing)]) == "events[0].visitorId")
        #expect(field([Self.event(.siteVisit, at: Self.now.addingTimeInterval(3600))]) == "events[0].at")
        #expect(field([Self.event(.showingRequest, listing: .init(listingId: "", mls: nil, price: nil, area: nil, propertyType: nil, listingAgentId: nil))])
                == "events[0].listing.listingId")
        #expect(field([]) == "events")
        #expect(field(Array(repeating: Self.event(.siteVisit), count: 1_001)) == "events")
        #expect(field([Self.event(.siteVisit, at: Self.now.addingTimeInterval(-30 * 86_400))]) == nil, "a late event counts at its own time")
    }
}
