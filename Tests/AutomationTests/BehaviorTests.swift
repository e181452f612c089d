import Foundation
import Models
import ServiceKit
import Testing
@testable import Automation

/// BA-2's six behaviors and the guards of BA-3 … BA-7, BA-9, BA-11, without a database.
@Suite("Behaviors and their guards")
struct BehaviorTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)
    static let hour: TimeInterval = 3_600
    static let day: TimeInterval = 86_400

    static func event(_ kind: ActivityEvent.Kind, _ offset: TimeInterval, listing: String? = nil, new: Bool = true) -> Behaviors.Activity {
        Behaviors.Activity(id: UUID(), kind: kind, at: start.addingTimeInterval(offset), listingId: listing, isNew: new)
    }

    static func fired(_ activity: [Behaviors.Activity], before: Date? = nil, fired: Behaviors.Fired = .init()) -> [Behavior] {
        Behaviors.evaluate(activity, before: before, fired: fired).map(\.behavior)
    }

    @Test("BA-2 (a): a visit 14 or more days after the last activity fires; 13 days does not; a first visit ever does not")
    func returned() {
        #expect(Self.fired([Self.event(.siteVisit, 0, new: false), Self.event(.siteVisit, 14 * Self.day)]) == [.returned])
        #expect(Self.fired([Self.event(.siteVisit, 0, new: false), Self.event(.siteVisit, 13 * Self.day)]).isEmpty)
        #expect(Self.fired([Self.event(.siteVisit, 0)]).isEmpty)
        // The activity before the loaded window counts as the last one.
        #expect(Self.fired([Self.event(.siteVisit, 20 * Self.day)], before: Self.start) == [.returned])
    }

    @Test("BA-2 (b): 5 visits within 7 days fire once, at the fifth; a new window starts after it; 5 visits over 8 days do not")
    func frequentVisits() {
        let five = (0..<5).map { Self.event(.siteVisit, Double($0) * Self.day) }
        let firings = Behaviors.evaluate(five, before: nil, fired: .init())
        #expect(firings.map(\.behavior) == [.frequentVisits])
        #expect(firings.first?.at == five[4].at)
        #expect(firings.first?.eventIds == five.map(\.id))
        // Four more after the firing are not a new crossing; the fifth after it is.
        let after = (5..<9).map { Self.event(.siteVisit, Double($0) * Self.day) }
        #expect(Self.fired(five + after) == [.frequentVisits])
        #expect(Self.fired(five + after + [Self.event(.siteVisit, 9 * Self.day)]) == [.frequentVisits, .frequentVisits])
        let spread = (0..<5).map { Self.event(.siteVisit, Double($0) * 2 * Self.day) }
        #expect(Self.fired(spread).isEmpty)
    }

    @Test("BA-2 (c), (d): 5 properties within 24 hours and 10 within 7 days; the same listing twice counts once; windows slide over event time, late events included")
    func viewing() {
        let burst = (0..<5).map { Self.event(.propertyView, Double($0) * Self.hour, listing: "L\($0)") }
        #expect(Self.fired(burst) == [.viewingBurst])
        let sameTwice = (0..<5).map { Self.event(.propertyView, Double($0) * Self.hour, listing: "L\($0 % 4)") }
        #expect(Self.fired(sameTwice).isEmpty)
        // Out of order: the set is evaluated by event time, not arrival.
        #expect(Self.fired(burst.reversed()) == [.viewingBurst])
        let week = (0..<10).map { Self.event(.propertyView, Double($0) * 15 * Self.hour, listing: "W\($0)") }
        #expect(Self.fired(week) == [.viewingWeek])
        // A window that fired before (its crossing at or before the last firing) does not fire again.
        var fired = Behaviors.Fired()
        fired.lastWindow[.viewingBurst] = burst[4].at
        #expect(Self.fired(burst.map { var old = $0; old.isNew = false; return old } + [Self.event(.propertyView, 5 * Self.hour, listing: "L9")],
                           fired: fired).isEmpty)
    }

    @Test("BA-2 (e), (f): the same property viewed 3 times fires once per property; a favorite fires once per property")
    func perProperty() {
        let views = (0..<3).map { Self.event(.propertyView, Double($0) * Self.day, listing: "P1") }
        let firings = Behaviors.evaluate(views, before: nil, fired: .init())
        #expect(firings.map(\.behavior) == [.repeatViews])
        #expect(firings.first?.key == "P1")
        var fired = Behaviors.Fired()
        fired.listings[.repeatViews] = ["P1"]
        #expect(Self.fired(views + [Self.event(.propertyView, 4 * Self.day, listing: "P1")], fired: fired).isEmpty)
        #expect(Self.fired([Self.event(.favorite, 0, listing: "F1"), Self.event(.favorite, Self.hour, listing: "F1")]) == [.favorite])
        fired.listings[.favorite] = ["F1"]
        #expect(Self.fired([Self.event(.favorite, 0, listing: "F1")], fired: fired).isEmpty)
        #expect(Self.fired([Self.event(.favorite, 0, listing: "F2")], fired: fired) == [.favorite])
    }

    @Test("BA-2: nothing fires from old events alone; a firing needs an event not seen before")
    func onlyNewEventsFire() {
        let old = (0..<5).map { Self.event(.propertyView, Double($0) * Self.hour, listing: "L\($0)", new: false) }
        #expect(Self.fired(old).isEmpty)
    }

    static let now = start.addingTimeInterval(60 * day)

    static func contact(_ status: ContactStatus = .activeLead, age: TimeInterval = 30 * day, phone: Bool = true, email: Bool = true,
                        alerts: Bool = true, agent: UUID? = UUID()) -> BehaviorMessages.Contact {
        BehaviorMessages.Contact(status: status, createdAt: now.addingTimeInterval(-age), hasPhone: phone, hasEmail: email, behavioralAlerts: alerts,
                                 assignedAgentId: agent)
    }

    static func plan(_ contact: BehaviorMessages.Contact, settings: BehaviorSettings = .init(), lastContact: TimeInterval? = nil) -> BehaviorMessages.Plan {
        BehaviorMessages.plan(.viewingBurst, contact: contact, settings: settings, lastAgentContact: lastContact.map { now.addingTimeInterval(-$0) }, now: now)
    }

    @Test("BA-7: text by default, e-mail without a phone, nothing without either; the agent is alerted")
    func channel() {
        #expect(Self.plan(Self.contact()).leadChannel == .sms)
        #expect(Self.plan(Self.contact(phone: false)).leadChannel == .email)
        #expect(Self.plan(Self.contact(phone: false, email: false)).leadSuppressed == .noPhoneOrEmail)
        #expect(Self.plan(Self.contact()).alertAgent)
    }

    @Test("BA-3: only monitored statuses get lead messages; a scope can turn a status off; the agent still hears")
    func monitoredStatuses() {
        #expect(Self.plan(Self.contact(.closed)).leadSuppressed == .statusNotMonitored)
        #expect(Self.plan(Self.contact(.closed)).alertAgent)
        var settings = BehaviorSettings()
        settings.monitoredStatuses = [.newLead, .prospect]
        #expect(Self.plan(Self.contact(.activeLead), settings: settings).leadSuppressed == .statusNotMonitored)
        #expect(Self.plan(Self.contact(.prospect), settings: settings).leadChannel == .sms)
    }

    @Test("BA-4: a contact with behavioral alerts turned off gets no behavioral message")
    func optOut() {
        #expect(Self.plan(Self.contact(alerts: false)).leadSuppressed == .optedOut)
    }

    @Test("BA-5: no lead message when the agent reached out within 3 days; 3 days and more, the message goes")
    func agentContacted() {
        #expect(Self.plan(Self.contact(), lastContact: 2 * Self.day).leadSuppressed == .agentContactedRecently)
        #expect(Self.plan(Self.contact(), lastContact: 3 * Self.day).leadChannel == .sms)
    }

    @Test("BA-6: a contact less than 14 days in the CRM gets no message, but the agent is alerted")
    func newContact() {
        let plan = Self.plan(Self.contact(age: 13 * Self.day))
        #expect(plan.leadSuppressed == .newContact)
        #expect(plan.alertAgent)
        #expect(Self.plan(Self.contact(age: 14 * Self.day)).leadChannel == .sms)
    }

    @Test("BA-9: a behavior's agent alert and its lead message switch off apart")
    func switches() {
        var settings = BehaviorSettings()
        settings.agentAlertsOff = [.viewingBurst]
        let quiet = Self.plan(Self.contact(), settings: settings)
        #expect(quiet.leadChannel == .sms && !quiet.alertAgent && quiet.alertSuppressed == .agentAlertOff)
        settings = BehaviorSettings()
        settings.leadMessagesOff = [.viewingBurst]
        let alertOnly = Self.plan(Self.contact(), settings: settings)
        #expect(alertOnly.leadSuppressed == .leadMessageOff && alertOnly.alertAgent)
    }

    @Test("BA-9: alerts decided together reach each agent as one e-mail naming every contact and behavior; each lead's message stays its own")
    func alertsPerAgent() throws {
        let (alice, bob) = (UUID(), UUID())
        func item(_ agent: UUID?, _ name: String, _ behavior: Behavior, listing: String? = nil, text: Bool = false,
                  contact: UUID = UUID()) -> BehaviorEngine.Decided {
            let firing = UUID()
            let message = BehaviorEngine.Outgoing(channel: .sms, contactId: contact, body: "Hi \(name)", reference: "behavior:\(firing)")
            return .init(firing: firing, messages: text ? [message] : [], alert: agent.map { ($0, .init(contactId: contact, behavior: behavior, contactName: name, listing: listing)) },
                         note: .init(contactId: contact, id: firing, kind: "behavior", summary: name, actorName: "Behavioral automation", data: [:]))
        }
        let items = [item(alice, "Ann Lee", .viewingBurst), item(bob, "Ben Cho", .favorite, listing: "L9", text: true),
                     item(alice, "Cy Park", .repeatViews, listing: "L2"), item(nil, "Di Roe", .returned, text: true)]
        let job = BehaviorEngine.delivery(items)
        // Two lead texts, Alice's two alerts in one e-mail, Bob's one alert as it always read.
        #expect(job.messages.count == 4 && job.timeline.count == 4)
        #expect(job.messages.filter { $0.channel == .sms }.count == 2)
        let toAlice = try #require(job.messages.firstIndex { $0.userId == alice })
        #expect(job.firings[toAlice] == [items[0].firing, items[2].firing])
        #expect(job.messages[toAlice].subject == "2 of your leads are active on the website right now")
        #expect(job.messages[toAlice].body == """
            - Ann Lee viewed 5 properties within 24 hours.
            - Cy Park \(Behavior.repeatViews.summary) (listing L2).

            A good moment to reach out.
            """)
        let toBob = try #require(job.messages.firstIndex { $0.userId == bob })
        #expect(job.firings[toBob] == [items[1].firing])
        #expect(job.messages[toBob].subject == "Ben Cho \(Behavior.favorite.summary)")
        #expect(job.messages[toBob].body == "Ben Cho \(Behavior.favorite.summary) (listing L9). A good moment to reach out.")
        // One contact's several behaviors at once: its name once in the subject.
        let ann = try #require(items[0].alert?.1.contactId)
        let twice = BehaviorEngine.delivery([items[0], item(alice, "Ann Lee", .viewingWeek, contact: ann)])
        #expect(twice.messages.map(\.subject) == ["Ann Lee: 2 signs of interest just now"])
    }

    @Test("BA-11: an archived contact gets no behavioral message, and no alert goes about it")
    func archived() {
        let plan = Self.plan(Self.contact(.archive))
        #expect(plan.leadSuppressed == .archived && !plan.alertAgent)
    }

    @Test("BA-8: a scope's template replaces the default; an unknown merge field is refused, naming the behavior and the field")
    func templates() throws {
        var settings = BehaviorSettings()
        settings.templates = ["favorite": .init(text: "Hi {contact.first.name}!", emailSubject: nil, emailBody: nil)]
        try settings.validate()
        #expect(settings.template(for: .favorite).text == "Hi {contact.first.name}!")
        #expect(settings.template(for: .favorite).emailSubject == BehaviorMessages.defaultTemplate(.favorite).emailSubject)
        settings.templates = ["favorite": .init(text: "Hi {contact.nickname}", emailSubject: nil, emailBody: nil)]
        #expect(throws: APIError.self) { try settings.validate() }
        do { try settings.validate() } catch let error as APIError { #expect(error.field == "templates.favorite.text") } catch {}
        settings.templates = ["bought_a_boat": .init(text: "Hi", emailSubject: nil, emailBody: nil)]
        do { try settings.validate() } catch let error as APIError { #expect(error.field == "templates.bought_a_boat") } catch {}
        for behavior in Behavior.allCases {
            let template = BehaviorMessages.defaultTemplate(behavior)
            for text in [template.text, template.emailSubject, template.emailBody].compactMap({ $0 }) { _ = try MessageTemplate(text, field: "default") }
        }
    }
}
