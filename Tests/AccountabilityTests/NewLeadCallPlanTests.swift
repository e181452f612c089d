import Foundation
import Models
import Testing
@testable import Accountability

/// AC-1 and AC-3 as pure functions.
@Suite("New-lead calls (AC-1 … AC-3)")
struct NewLeadCallPlanTests {
    static let chicago = TimeZone(identifier: "America/Chicago")!
    static func date(_ text: String) -> Date { RFC3339.date(from: text)! }
    static let weekdays = WeeklyWindow.officeHours(OfficeHoursDay.standardWeek, timeZone: chicago)

    @Test("AC-1: calls spread over the open hours of the lead's first 3 days, in the office's zone: a Friday-evening lead is called on Monday, not over the weekend")
    func weekend() {
        // Friday 2026-12-04 18:00 CST: closed until Monday 09:00, and 3 days end Monday 18:00 CST.
        let times = NewLeadCallPlan.times(created: Self.date("2026-12-05T00:00:00Z"), calls: 3, hours: Self.weekdays)
        #expect(times == [Self.date("2026-12-07T15:00:00Z"), Self.date("2026-12-07T17:40:00Z"), Self.date("2026-12-07T20:20:00Z")])
    }

    @Test("AC-1: a lead in office hours is called at once, the rest at equal shares of the open time; across the spring-forward the hours stay 09:00–17:00 local")
    func spreadAndDST() {
        // Friday 2027-03-12 10:00 CST; the clocks go forward on Sunday the 14th.
        let times = NewLeadCallPlan.times(created: Self.date("2027-03-12T16:00:00Z"), calls: 2, hours: Self.weekdays)
        // 3 days end Monday 16:00Z, which is 11:00 CDT after the change (10:00 if the zone had stayed CST). Open: Friday
        // 10:00–17:00 CST (7 h) and Monday 09:00–11:00 CDT (2 h): 9 h; the second call 4.5 h in, at 14:30 CST on Friday.
        #expect(times == [Self.date("2027-03-12T16:00:00Z"), Self.date("2027-03-12T20:30:00Z")])
        let monday = NewLeadCallPlan.times(created: Self.date("2027-03-13T16:00:00Z"), calls: 1, hours: Self.weekdays)
        #expect(monday == [Self.date("2027-03-15T14:00:00Z")], "09:00 CDT is 14:00Z after the change")
        #expect(NewLeadCallPlan.times(created: Self.date("2027-03-13T16:00:00Z"), calls: 3, hours: WeeklyWindow(timeZone: Self.chicago, days: [:])).isEmpty)
    }

    @Test("AC-3: the calls stop when the lead is deleted, transferred, leaves new lead, texts or e-mails, a call is logged contacted or bad number, or the agent connected")
    func stopReasons() {
        let agent = UUID()
        let lead = NewLeadCallPlan.LeadState(status: .newLead, deleted: false, assignedAgentId: agent, hasPhone: true)
        #expect(NewLeadCallPlan.stopReason(lead: lead, agentId: agent, communications: [], connected: false) == nil)
        #expect(NewLeadCallPlan.stopReason(lead: nil, agentId: agent, communications: [], connected: false) == "the lead was deleted")
        var moved = lead
        moved.assignedAgentId = UUID()
        #expect(NewLeadCallPlan.stopReason(lead: moved, agentId: agent, communications: [], connected: false) == "the lead was transferred to another agent")
        var active = lead
        active.status = .activeLead
        #expect(NewLeadCallPlan.stopReason(lead: active, agentId: agent, communications: [], connected: false)?.contains("no longer new lead") == true)
        #expect(NewLeadCallPlan.stopReason(lead: lead, agentId: agent, communications: [.init(channel: .text, direction: .inbound, outcome: nil)],
                                           connected: false) == "the lead texted")
        #expect(NewLeadCallPlan.stopReason(lead: lead, agentId: agent, communications: [.init(channel: .call, direction: .outbound, outcome: .badNumber)],
                                           connected: false) == "a call to the lead was logged as bad number")
        #expect(NewLeadCallPlan.stopReason(lead: lead, agentId: agent, communications: [.init(channel: .call, direction: .outbound, outcome: .noAnswer),
                                                                                         .init(channel: .text, direction: .outbound, outcome: nil)],
                                           connected: false) == nil, "an unanswered call or the agent's own text does not stop them")
        #expect(NewLeadCallPlan.stopReason(lead: lead, agentId: agent, communications: [], connected: true)?.contains("connected") == true)
    }

    @Test("AC-1: the call names the lead, the area and the price range, and offers 1 to connect")
    func script() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let contact = Contact(id: UUID(), companyId: UUID(), ownerEntityId: UUID(), status: .newLead, firstName: "Lena", lastName: "Lead", emails: [],
                              phones: ["+13125550142"], leadType: .buyer, source: nil, sourceId: nil, tags: [], assignedAgentId: nil, lenderId: nil, pondId: nil,
                              address: nil, searchInterest: SearchInterest(area: "Hyde Park", priceMin: 300_000, priceMax: 450_000), listing: nil,
                              agentSiteAgentId: nil, origin: .website, behavioralAlerts: true, version: 1, createdAt: now, updatedAt: now)
        #expect(NewLeadCallPlan.script(contact)
                == "You have a new lead: Lena Lead, interested in Hyde Park, between $300,000 and $450,000. Press 1 to be connected to the lead now.")
    }
}
