import Foundation
import Models
import ServiceKit

/// SP-3, SP-5, SP-6, SP-1's delays and restarts: what a plan does for one contact from where it
/// stands, as a pure function of the steps, the position and the time. The job that runs a plan
/// and the preview that shows a contact's whole future both walk it.
enum PlanRunner {
    /// Where an enrolled contact stands: the next step to run and how many restarts are behind it.
    struct Position: Codable, Sendable, Hashable {
        var stepIndex: Int
        var repetition: Int
    }

    enum Action: Sendable, Hashable {
        /// `body` empty with `html`: the plain text is taken from the rendered HTML.
        case email(step: Int, subject: String, body: String, html: String?)
        case text(step: Int, body: String)
        /// A task, call task or text task (SP-1, SP-6) for the step's agent.
        case task(step: Int, kind: ContactTask.Kind, title: String, dueAt: Date)
        case enroll(step: Int, planId: UUID)

        var step: Int {
            switch self {
            case .email(let step, _, _, _), .text(let step, _), .task(let step, _, _, _), .enroll(let step, _): step
            }
        }
    }

    struct Advance: Sendable, Equatable {
        /// What to do now, in order.
        var actions: [Action]
        /// Where to continue and when; nil when the plan is over for the contact.
        var next: Position?
        var nextAt: Date?
    }

    static let chicago = TimeZone(identifier: "America/Chicago") ?? .gmt
    /// SP-5: texts 10:00–19:00 Chicago; one due outside is held for the next morning, between
    /// 10:00 and 14:00 (`heldTextMinutes`).
    static let textWindow = (open: 10 * 60, close: 19 * 60)
    static let heldTextSpread = 4 * 60
    /// SP-6: tasks are made 08:00–17:00 Chicago.
    static let taskWindow = (open: 8 * 60, close: 17 * 60)

    /// SP-5: how long after 10:00 a contact's held texts go (0 ..< 4 h), the same for every text
    /// of the contact and read from its id, so a night's held texts of a whole campaign leave
    /// spread over the morning instead of all at 10:00, and the preview knows the minute.
    static func heldTextMinutes(_ contactId: UUID) -> Int {
        let bytes = contactId.uuid
        return (Int(bytes.0) << 8 | Int(bytes.1)) % heldTextSpread
    }

    /// The steps from `position` at `now`: consecutive steps run at once, a delay or a window
    /// stops the walk until its time, and the plan ends at its last step or at `endsAt`. A text
    /// held for the morning goes `heldTextMinutes` after 10:00.
    static func advance(_ steps: [PlanStep], from position: Position, now: Date, endsAt: Date, heldTextMinutes: Int = 0) -> Advance {
        guard now < endsAt else { return Advance(actions: [], next: nil, nextAt: nil) }
        var actions: [Action] = []
        var index = position.stepIndex, repetition = position.repetition
        // A restart jumps back; validation puts a delay before every restart, so this ends.
        for _ in 0..<(steps.count * 2 + 2) {
            guard index < steps.count else { return Advance(actions: actions, next: nil, nextAt: nil) }
            let step = steps[index]
            switch step.kind {
            case .email:
                actions.append(.email(step: index, subject: step.subject ?? "", body: step.body ?? "", html: step.html))
            case .text where step.mode == .task, .task, .call:
                let opening = nextOpening(taskWindow, atOrAfter: now)
                if opening > now { return wait(actions, Position(stepIndex: index, repetition: repetition), until: opening, endsAt: endsAt) }
                let kind: ContactTask.Kind = step.kind == .call ? .call : step.kind == .text ? .text : .task
                actions.append(.task(step: index, kind: kind, title: step.title ?? "", dueAt: now.addingTimeInterval(Double(step.days ?? 0) * 86_400)))
            case .text:
                let opening = nextOpening(textWindow, atOrAfter: now)
                if opening > now {
                    return wait(actions, Position(stepIndex: index, repetition: repetition),
                                until: opening.addingTimeInterval(Double(heldTextMinutes) * 60), endsAt: endsAt)
                }
                let body = step.bodies.map { $0.isEmpty ? "" : $0[repetition % $0.count] } ?? step.body ?? ""
                actions.append(.text(step: index, body: body))
            case .addToPlan:
                if let planId = step.planId { actions.append(.enroll(step: index, planId: planId)) }
            case .delay:
                let until = now.addingTimeInterval(Double(step.days ?? 0) * 86_400 + Double(step.hours ?? 0) * 3_600)
                return wait(actions, Position(stepIndex: index + 1, repetition: repetition), until: until, endsAt: endsAt)
            case .restart:
                if step.times.map({ repetition < $0 }) ?? true {
                    index = 0
                    repetition += 1
                    continue
                }
            }
            index += 1
        }
        return Advance(actions: actions, next: nil, nextAt: nil)
    }

    /// A run of an enrolled contact's plan, due at `dueAt` and running at `now` (later, when the
    /// queue was busy, the service restarted or the clock moved days at once): it walks from the
    /// time it was due, so the plan keeps the calendar its preview showed whenever its runs get to
    /// go, and answers that time (the steps' plan time) with what to do.
    static func run(_ steps: [PlanStep], from position: Position, dueAt: Date?, now: Date, endsAt: Date, contactId: UUID) -> (at: Date, advance: Advance) {
        let at = min(dueAt ?? now, now)
        return (at, advance(steps, from: position, now: at, endsAt: endsAt, heldTextMinutes: heldTextMinutes(contactId)))
    }

    private static func wait(_ actions: [Action], _ next: Position, until: Date, endsAt: Date) -> Advance {
        until < endsAt ? Advance(actions: actions, next: next, nextAt: until) : Advance(actions: actions, next: nil, nextAt: nil)
    }

    /// `date` when inside the daily window (minutes from midnight, Chicago), else its next opening.
    static func nextOpening(_ window: (open: Int, close: Int), atOrAfter date: Date) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = chicago
        let parts = calendar.dateComponents([.hour, .minute], from: date)
        let minute = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
        if minute >= window.open && minute < window.close { return date }
        let day = minute < window.open ? date : calendar.date(byAdding: .day, value: 1, to: date) ?? date
        return calendar.date(bySettingHour: window.open / 60, minute: window.open % 60, second: 0, of: day) ?? date
    }

    /// An e-mail step as it leaves for one contact: the subject and text with the contact's values,
    /// and a design's HTML with them escaped (a name never becomes markup); without a text of its
    /// own, a design's plain text is read from its rendered HTML.
    static func renderEmail(subject: String, body: String, html: String?, values: MergeValues,
                            templates: inout Templates) throws -> (subject: String, body: String, html: String?) {
        func parse(_ text: String) throws -> MessageTemplate { try templates.parse(text) }
        let renderedHTML = try html.map { try parse($0).render(MergeValues(values: values.values.mapValues(HTMLText.escape))) }
        let text = body.isEmpty ? renderedHTML.map(HTMLText.plainText) ?? "" : try parse(body).render(values)
        return (try parse(subject).render(values), text, renderedHTML)
    }

    /// A run's or a claim's step texts, each parsed once however many contacts it is rendered for
    /// (parsing was most of rendering a step's e-mail).
    struct Templates {
        private var parsed: [String: MessageTemplate] = [:]

        mutating func parse(_ text: String) throws -> MessageTemplate {
            if let known = parsed[text] { return known }
            let template = try TemplatePreviewController.parse(text, field: "step")
            parsed[text] = template
            return template
        }

        mutating func render(_ text: String, _ values: MergeValues) throws -> String {
            try parse(text).render(values)
        }
    }

    /// SP-1's preview: every action a plan makes for a contact enrolled at `start`, with when, over
    /// its whole life (at most `limit` actions), without sending anything.
    static func preview(_ steps: [PlanStep], start: Date, durationDays: Int, heldTextMinutes: Int = 0, limit: Int = 500) -> [(at: Date, action: Action)] {
        let endsAt = start.addingTimeInterval(Double(durationDays) * 86_400)
        var result: [(at: Date, action: Action)] = []
        var position = Position(stepIndex: 0, repetition: 0)
        var now = start
        while result.count < limit {
            let advance = advance(steps, from: position, now: now, endsAt: endsAt, heldTextMinutes: heldTextMinutes)
            result += advance.actions.map { (now, $0) }
            guard let next = advance.next, let at = advance.nextAt else { break }
            position = next
            now = at
        }
        return Array(result.prefix(limit))
    }

    /// SP-10: an edited plan keeps an enrolled contact at the step with the same id; a step that
    /// is gone sends it to the step that now stands where it stood (or the end).
    static func map(_ position: Position, from old: [PlanStep], to new: [PlanStep]) -> Position {
        guard position.stepIndex < old.count else { return Position(stepIndex: new.count, repetition: position.repetition) }
        if let id = old[position.stepIndex].id, let index = new.firstIndex(where: { $0.id == id }) {
            return Position(stepIndex: index, repetition: position.repetition)
        }
        return Position(stepIndex: min(position.stepIndex, new.count), repetition: position.repetition)
    }
}
