import Foundation
import Models
import ServiceKit
import Testing
@testable import SmartPlans

/// SP-1, SP-3, SP-5, SP-6, SP-10 and the preview, as pure functions of the plan and the calendar.
@Suite("SmartPlans: running a plan and previewing it")
struct PlanRunnerTests {
    static var chicago: Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = PlanRunner.chicago
        return calendar
    }

    /// A Chicago wall time on 2027-03-10 (a Wednesday; DST starts 2027-03-14).
    static func at(_ hour: Int, _ minute: Int = 0, day: Int = 10) -> Date {
        chicago.date(from: DateComponents(year: 2027, month: 3, day: day, hour: hour, minute: minute)) ?? .distantPast
    }

    static func step(_ kind: PlanStep.Kind, title: String? = nil, subject: String? = nil, body: String? = nil, bodies: [String]? = nil,
                     days: Int? = nil, hours: Int? = nil, times: Int? = nil) -> PlanStep {
        PlanStep(id: UUID(), kind: kind, title: title, subject: subject, body: body, bodies: bodies, days: days, hours: hours, planId: nil, times: times, role: nil)
    }

    @Test("SP-7: a text notifications refuses for want of an SMS provider is skipped with that reason; any other refusal, or an e-mail's, failed")
    func textWithoutProvider() {
        let noProvider = #"{"error":{"code":"no_sms_provider","message":"no SMS provider is configured: texts and calls cannot be sent","field":"channel"}}"#
        let skipped = PlanEngine.refused(channel: .sms, answer: noProvider, what: "the text")
        #expect(skipped.outcome == "skipped" && skipped.detail == "no SMS provider is configured")
        #expect(skipped.summary == "skipped the text: no SMS provider is configured")
        let other = #"{"error":{"code":"invalid_field","message":"the contact has no phone","field":"contactId"}}"#
        #expect(PlanEngine.refused(channel: .sms, answer: other, what: "the text").outcome == "failed")
        #expect(PlanEngine.refused(channel: .email, answer: noProvider, what: "the e-mail").outcome == "failed")
    }

    @Test("SP-3: consecutive steps without a delay run at once, in order; a delay stops the walk until its time")
    func consecutiveSteps() {
        let steps = [Self.step(.email, subject: "Hi", body: "One"), Self.step(.email, subject: "Hi", body: "Two"), Self.step(.delay, days: 2),
                     Self.step(.email, subject: "Hi", body: "Three")]
        let now = Self.at(12)
        let first = PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: now, endsAt: now.addingTimeInterval(30 * 86_400))
        #expect(first.actions.map(\.step) == [0, 1])
        #expect(first.next == .init(stepIndex: 3, repetition: 0) && first.nextAt == now.addingTimeInterval(2 * 86_400))
        let second = PlanRunner.advance(steps, from: .init(stepIndex: 3, repetition: 0), now: now.addingTimeInterval(2 * 86_400),
                                        endsAt: now.addingTimeInterval(30 * 86_400))
        #expect(second.actions.map(\.step) == [3] && second.next == nil)
    }

    @Test("SP-3, ST-9: what one run did (enrolled, its steps at once, finished) is one timeline entry saying each in order, its id the run's on every retry; a lone entry stays as it is")
    func oneEntryPerRun() {
        let (enrollment, contact) = (UUID(), UUID())
        func note(_ summary: String, step: Int) -> ServiceTimelineEntry {
            .init(contactId: contact, id: PlanEngine.entryId(enrollment, seq: 1, step: step), kind: "smartplan", summary: summary, actorName: "SmartPlans",
                  data: ["planId": "p"])
        }
        let run = [note("Enrolled in SmartPlan \"Hot\".", step: -3), note("SmartPlan \"Hot\", step 1: sent the e-mail \"Hi\".", step: 0),
                   note("SmartPlan \"Hot\" finished.", step: -2)]
        let merged = PlanEngine.runEntry(run, enrollmentId: enrollment, seq: 1)
        #expect(merged.count == 1 && merged.first?.contactId == contact && merged.first?.data == ["planId": "p"])
        #expect(merged.first?.summary == "Enrolled in SmartPlan \"Hot\". SmartPlan \"Hot\", step 1: sent the e-mail \"Hi\". SmartPlan \"Hot\" finished.")
        #expect(merged.first?.id == PlanEngine.runEntry(run, enrollmentId: enrollment, seq: 1).first?.id)
        #expect(merged.first?.id != PlanEngine.runEntry(run, enrollmentId: enrollment, seq: 2).first?.id)
        #expect(PlanEngine.runEntry([run[1]], enrollmentId: enrollment, seq: 1) == [run[1]])
    }

    @Test("SP-5: a text goes 10:00–19:00 Chicago; one due at 20:00 is held for the next day, one due at 07:00 for that day, and held texts go between 10:00 and 14:00, each contact at its own minute; e-mails go whenever")
    func textWindow() {
        let steps = [Self.step(.text, body: "Hello")]
        let late = PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: Self.at(20), endsAt: .distantFuture)
        #expect(late.actions.isEmpty && late.nextAt == Self.at(10, day: 11) && late.next == .init(stepIndex: 0, repetition: 0))
        let early = PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: Self.at(7), endsAt: .distantFuture)
        #expect(early.nextAt == Self.at(10))
        #expect(PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: Self.at(18, 59), endsAt: .distantFuture).actions.count == 1)
        let email = [Self.step(.email, subject: "S", body: "B")]
        #expect(PlanRunner.advance(email, from: .init(stepIndex: 0, repetition: 0), now: Self.at(23), endsAt: .distantFuture).actions.count == 1)
        // Across the DST change (Sunday 2027-03-14), 10:00 is still 10:00 on the wall.
        let saturday = PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: Self.at(21, day: 13), endsAt: .distantFuture)
        #expect(saturday.nextAt == Self.at(10, day: 14))
        // A campaign's held texts leave over the morning, 10:00–14:00, each contact's at its own minute, every time.
        let minutes = (0..<2_000).map { _ in PlanRunner.heldTextMinutes(UUID()) }
        #expect(minutes.allSatisfy { (0..<240).contains($0) } && Set(minutes.map { $0 / 60 }) == [0, 1, 2, 3], "spread over the four hours")
        let contact = UUID(), minute = PlanRunner.heldTextMinutes(contact)
        #expect(PlanRunner.heldTextMinutes(contact) == minute)
        let held = PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: Self.at(20), endsAt: .distantFuture, heldTextMinutes: minute)
        #expect(held.actions.isEmpty && held.nextAt == Self.at(10, minute, day: 11))
        let sent = PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: Self.at(10, minute, day: 11), endsAt: .distantFuture,
                                      heldTextMinutes: minute)
        #expect(sent.actions == [.text(step: 0, body: "Hello")], "at its minute the held text goes")
    }

    @Test("SP-3, SP-5, SP-6, SP-1: a 90-day plan run by the engine's rule on a clock moved in steps of hours, and once by ten days, makes exactly the preview's steps at the preview's plan times, across the DST change: texts 10:00–19:00 Chicago (held ones at the contact's minute), tasks 08:00–17:00, in CST and CDT alike")
    func quarterInClockSteps() {
        let steps = [Self.step(.email, subject: "Welcome", body: "B"), Self.step(.text, body: "Hi"), Self.step(.call, title: "Call", days: 1),
                     Self.step(.delay, hours: 13), Self.step(.text, bodies: ["one", "two", "three"]), Self.step(.task, title: "Check in", days: 2),
                     Self.step(.delay, days: 6), Self.step(.restart)]
        let contact = UUID(), start = Self.at(20, 30, day: 1)  // Monday 2027-03-01, 20:30 CST: the first text is held.
        let endsAt = start.addingTimeInterval(90 * 86_400)
        let preview = PlanRunner.preview(steps, start: start, durationDays: 90, heldTextMinutes: PlanRunner.heldTextMinutes(contact))
        var ran: [(at: Date, action: PlanRunner.Action)] = []
        var position = PlanRunner.Position(stepIndex: 0, repetition: 0)
        var due: Date? = start
        var now = start, tick = 0
        while due != nil, now < endsAt.addingTimeInterval(86_400) {
            // The clock moves 1 to 7 hours at a time (once ten days at once); every run due by then goes.
            tick += 1
            now = now.addingTimeInterval(tick == 40 ? 10 * 86_400 : Double(1 + tick % 7) * 3_600)
            while let dueAt = due, dueAt <= now {
                let run = PlanRunner.run(steps, from: position, dueAt: dueAt, now: now, endsAt: endsAt, contactId: contact)
                ran += run.advance.actions.map { (run.at, $0) }
                position = run.advance.next ?? position
                due = run.advance.nextAt
            }
        }
        #expect(ran.count == preview.count && ran.count > 40, "\(ran.count) run, \(preview.count) previewed")
        #expect(zip(ran, preview).allSatisfy { $0.at == $1.at && $0.action == $1.action }, "the same steps at the same times")
        let calendar = Self.chicago
        for (at, action) in preview {
            let minute = calendar.component(.hour, from: at) * 60 + calendar.component(.minute, from: at)
            switch action {
            case .text: #expect((10 * 60..<19 * 60).contains(minute), "SP-5 at \(at)")
            case .task: #expect((8 * 60..<17 * 60).contains(minute), "SP-6 at \(at)")
            default: break
            }
        }
        let first = preview.first { if case .text = $0.action { true } else { false } }
        #expect(first?.at == Self.at(10, PlanRunner.heldTextMinutes(contact), day: 2), "the evening's text held for the contact's minute the next morning")
        let afterChange = preview.filter { $0.at > Self.at(12, day: 14) }
        #expect(afterChange.contains { if case .text = $0.action { true } else { false } }, "texts after the clocks went forward, still in the window")
        #expect(preview.allSatisfy { $0.at < endsAt }, "nothing after the plan's 90 days")
    }

    @Test("SP-6, SP-1: a task, call or text-task step makes its task 08:00–17:00 Chicago, due the step's days later; a text task needs its title")
    func taskWindow() {
        let steps = [Self.step(.call, title: "Call {contact.first.name}", days: 2)]
        let evening = PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: Self.at(18), endsAt: .distantFuture)
        #expect(evening.actions.isEmpty && evening.nextAt == Self.at(8, day: 11))
        let morning = PlanRunner.advance(steps, from: .init(stepIndex: 0, repetition: 0), now: Self.at(9), endsAt: .distantFuture)
        #expect(morning.actions == [.task(step: 0, kind: .call, title: "Call {contact.first.name}", dueAt: Self.at(9, day: 12))])
        // A text task (SP-1) is a task: made in the task window at 08:00, not held for the texts' 10:00.
        var textTask = Self.step(.text, title: "Text {contact.first.name} about the open house", days: 1)
        textTask.mode = .task
        let early = PlanRunner.advance([textTask], from: .init(stepIndex: 0, repetition: 0), now: Self.at(8, 30), endsAt: .distantFuture)
        #expect(early.actions == [.task(step: 0, kind: .text, title: "Text {contact.first.name} about the open house", dueAt: Self.at(8, 30, day: 11))])
        #expect(throws: APIError.self) { try PlanRules.validate(name: "P", durationDays: 30, steps: [Self.step(.text, body: "Hi")].map { var step = $0; step.mode = .task; return step },
                                                               owner: .personal, roles: nil) }
    }

    @Test("SP-1: a restart runs the plan again the given times, a dynamic text says its next message each time, and the plan's duration ends it")
    func restartAndDuration() {
        let steps = [Self.step(.email, subject: "S", body: "B"), Self.step(.text, bodies: ["first", "second", "third"]), Self.step(.delay, days: 1),
                     Self.step(.restart, times: 2)]
        let preview = PlanRunner.preview(steps, start: Self.at(12), durationDays: 30)
        #expect(preview.count == 6, "three runs of two messages: \(preview)")
        #expect(preview.compactMap { if case .text(_, let body) = $0.action { body } else { nil } } == ["first", "second", "third"])
        let forever = [Self.step(.email, subject: "S", body: "B"), Self.step(.delay, days: 7), Self.step(.restart)]
        #expect(PlanRunner.preview(forever, start: Self.at(12), durationDays: 30).count == 5, "weekly for 30 days: days 0, 7, 14, 21, 28")
    }

    @Test("SP-10: an edited plan keeps a contact at the step with the same id, wherever it moved")
    func editMapsPosition() {
        let kept = Self.step(.email, subject: "Kept", body: "B")
        let old = [Self.step(.email, subject: "A", body: "B"), kept]
        let new = [Self.step(.task, title: "New", days: 1), Self.step(.email, subject: "A2", body: "B"), kept]
        #expect(PlanRunner.map(.init(stepIndex: 1, repetition: 0), from: old, to: new) == .init(stepIndex: 2, repetition: 0))
    }

    @Test("SP-1, SP-4: a plan is 1–365 days of 1–100 steps; each step kind needs its fields; an unknown merge field is refused naming the step; a restart needs a delay before it")
    func validation() {
        func field(_ steps: [PlanStep], days: Int = 30) -> String? {
            do {
                try PlanRules.validate(name: "Nurture", durationDays: days, steps: steps, owner: .personal, roles: nil)
                return nil
            } catch let error as APIError {
                return error.field
            } catch {
                return "?"
            }
        }
        #expect(field([Self.step(.email, subject: "Hi", body: "Hello {contact.first.name}")]) == nil)
        #expect(field([Self.step(.email, subject: "Hi", body: "Hello {contact.nickname}")]) == "steps[0].body")
        #expect(field([Self.step(.email, subject: "Hi", body: "x")], days: 366) == "durationDays")
        #expect(field([Self.step(.text)]) == "steps[0].body")
        #expect(field([Self.step(.email, subject: "S", body: "B"), Self.step(.restart)]) == "steps[1].kind")
        #expect(field([Self.step(.delay)]) == "steps[0].days")
        #expect(field([Self.step(.task, title: "T")]) == "steps[0].days")
        #expect(field([]) == "steps")
    }

    @Test("SP-8, SP-9: a trigger tag newly added enrolls (in any case), another tag does not; a status that becomes a trigger status enrolls, one that stays does not; is-not enrolls a change to any other status; at most 10 tags")
    func triggers() throws {
        let tags = PlanTriggers(tags: ["Hot"], statusBecomes: nil, statusIsNot: nil)
        #expect(tags.matches(tagsAdded: ["hot"], status: .activeLead, statusBefore: .activeLead, created: false))
        #expect(!tags.matches(tagsAdded: ["cold"], status: .activeLead, statusBefore: .activeLead, created: false))
        #expect(!tags.matches(tagsAdded: [], status: .activeLead, statusBefore: .activeLead, created: false), "a contact that had the tag")
        let becomes = PlanTriggers(tags: nil, statusBecomes: [.client], statusIsNot: nil)
        #expect(becomes.matches(tagsAdded: [], status: .client, statusBefore: .activeLead, created: false))
        #expect(!becomes.matches(tagsAdded: ["x"], status: .client, statusBefore: .client, created: false), "no status change")
        #expect(becomes.matches(tagsAdded: [], status: .client, statusBefore: nil, created: true))
        let isNot = PlanTriggers(tags: nil, statusBecomes: nil, statusIsNot: [.newLead])
        #expect(isNot.matches(tagsAdded: [], status: .activeLead, statusBefore: .newLead, created: false))
        #expect(!isNot.matches(tagsAdded: [], status: .newLead, statusBefore: .activeLead, created: false))
        #expect(throws: APIError.self) { try PlanTriggers(tags: (0..<11).map { "t\($0)" }, statusBecomes: nil, statusIsNot: nil).validate() }
    }

    @Test("SP-1, SP-4: a design's HTML gets the contact's values escaped, its plain text is read from the rendered HTML, and a step's own text wins")
    func designRendering() throws {
        let values = MergeValues(values: [.contactFirstName: "Al <b>& Co"])
        var templates = PlanRunner.Templates()
        let email = try PlanRunner.renderEmail(subject: "For {contact.first.name}", body: "", html: "<style>p{{color:red}}</style><p>Hi {contact.first.name}</p><br><a href=\"https://x.test/a?b=1&amp;c=2\">Listing</a>",
                                               values: values, templates: &templates)
        #expect(email.subject == "For Al <b>& Co")
        #expect(email.html == "<style>p{color:red}</style><p>Hi Al &lt;b&gt;&amp; Co</p><br><a href=\"https://x.test/a?b=1&amp;c=2\">Listing</a>")
        #expect(email.body == "Hi Al <b>& Co\n\n[https://x.test/a?b=1&c=2] Listing")
        let own = try PlanRunner.renderEmail(subject: "S", body: "Text for {contact.first.name}", html: "<p>x</p>", values: values, templates: &templates)
        #expect(own.body == "Text for Al <b>& Co" && own.html == "<p>x</p>")
    }
}
