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

@Suite("Automatic status shift (BA-10)")
struct StatusShiftTests {
    static let created = Date(timeIntervalSince1970: 1_800_000_000)
    static func item(_ channel: CommunicationChannel, _ direction: CommunicationDirection, _ outcome: CallOutcome? = nil, after seconds: Double) -> StatusShift.Communication {
        .init(id: UUID(), channel: channel, direction: direction, outcome: outcome, at: created.addingTimeInterval(seconds))
    }

    @Test("BA-10: the first inbound text, e-mail or call, or the first outbound call logged contacted, moves a new lead or prospect to active lead; not within 2 minutes of creation, not after an earlier one, not for other statuses or other communications")
    func shifts() {
        let text = Self.item(.text, .inbound, after: 300)
        #expect(StatusShift.shifts(status: .newLead, createdAt: Self.created, communication: text, earlier: []))
        #expect(StatusShift.shifts(status: .prospect, createdAt: Self.created, communication: Self.item(.call, .outbound, .contacted, after: 600), earlier: []))
        #expect(!StatusShift.shifts(status: .newLead, createdAt: Self.created, communication: Self.item(.text, .inbound, after: 90), earlier: []), "within 2 minutes")
        #expect(!StatusShift.shifts(status: .newLead, createdAt: Self.created, communication: text, earlier: [Self.item(.email, .inbound, after: 200)]))
        #expect(!StatusShift.shifts(status: .newLead, createdAt: Self.created, communication: text,
                                    earlier: [Self.item(.call, .outbound, .contacted, after: 200)]), "an earlier successful call")
        #expect(StatusShift.shifts(status: .newLead, createdAt: Self.created, communication: text,
                                   earlier: [Self.item(.call, .outbound, .noAnswer, after: 200), Self.item(.text, .outbound, after: 250)]),
                "an unanswered call or the agent's own text is not a conversation")
        #expect(!StatusShift.shifts(status: .client, createdAt: Self.created, communication: text, earlier: []))
        #expect(!StatusShift.shifts(status: .newLead, createdAt: Self.created, communication: Self.item(.call, .outbound, .leftVoicemail, after: 300), earlier: []))
        #expect(StatusShift.reason(text) == "the lead texted for the first time")
    }
}
