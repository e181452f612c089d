import Foundation
import Models

/// AC-1 … AC-3 without a database: when the system calls an agent about a new lead, what the
/// call says, and when the calls stop.
enum NewLeadCallPlan {
    /// The first 3 days of a lead, over which its calls are spread.
    static let horizon: TimeInterval = 3 * 86_400

    /// `calls` instants spread evenly over the open time of the agent's office in the lead's first
    /// 3 days (its zone, DST included): the first as soon as the office is open, the others at equal
    /// shares of the open time after it. Fewer when the office is never open in those days.
    static func times(created: Date, calls: Int, hours: WeeklyWindow) -> [Date] {
        let end = created.addingTimeInterval(horizon)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = hours.timeZone
        var spans: [(Date, Date)] = []
        let first = calendar.startOfDay(for: created)
        for offset in -1...4 {
            guard let day = calendar.date(byAdding: .day, value: offset, to: first), let span = hours.days[hours.local(day.addingTimeInterval(43_200)).weekday],
                  let open = calendar.date(bySettingHour: span.open / 60, minute: span.open % 60, second: 0, of: day) else { continue }
            let close = span.close >= 24 * 60 ? (calendar.date(byAdding: .day, value: 1, to: day) ?? day)
                : (calendar.date(bySettingHour: span.close / 60, minute: span.close % 60, second: 0, of: day) ?? day)
            let start = max(open, created), stop = min(close, end)
            if start < stop { spans.append((start, stop)) }
        }
        let total = spans.reduce(0) { $0 + $1.1.timeIntervalSince($1.0) }
        guard calls > 0, total > 0 else { return [] }
        return (0..<calls).compactMap { index -> Date? in
            var offset = total * Double(index) / Double(calls)
            for (start, stop) in spans {
                let length = stop.timeIntervalSince(start)
                if offset < length { return start.addingTimeInterval(offset) }
                offset -= length
            }
            return nil
        }
    }

    /// What the lead's contact replica and logged communications say, for AC-3.
    struct LeadState: Sendable, Hashable {
        var status: ContactStatus
        var deleted: Bool
        var assignedAgentId: UUID?
        var hasPhone: Bool
    }

    struct Communication: Sendable, Hashable {
        var channel: CommunicationChannel
        var direction: CommunicationDirection
        var outcome: CallOutcome?
    }

    /// AC-3: why the calls about this lead to `agentId` stop, or nil to go on.
    static func stopReason(lead: LeadState?, agentId: UUID, communications: [Communication], connected: Bool) -> String? {
        guard let lead, !lead.deleted else { return "the lead was deleted" }
        if connected { return "the agent was connected to the lead (talked or left a voicemail)" }
        if lead.status != .newLead { return "the lead's status is no longer new lead" }
        if lead.assignedAgentId != agentId { return "the lead was transferred to another agent" }
        if !lead.hasPhone { return "the lead has no phone number" }
        if let logged = communications.first(where: { $0.channel == .call && $0.direction == .outbound && [.contacted, .badNumber].contains($0.outcome) }) {
            return "a call to the lead was logged as \(logged.outcome == .badNumber ? "bad number" : "contacted")"
        }
        if let reply = communications.first(where: { $0.direction == .inbound && ($0.channel == .text || $0.channel == .email) }) {
            return "the lead \(reply.channel == .text ? "texted" : "e-mailed")"
        }
        return nil
    }

    /// What the call says to the agent (AC-1): the lead's name, area and price range, then the choice.
    static func script(_ contact: Contact) -> String {
        let name = [contact.firstName, contact.lastName].compactMap { $0 }.joined(separator: " ")
        var about = [String]()
        if let area = contact.searchInterest?.area { about.append("interested in \(area)") }
        let values = MergeValues(contact: contact, agent: nil, officeName: nil, companyName: nil)
        switch (values[.searchPriceMin], values[.searchPriceMax]) {
        case let (low?, high?): about.append("between \(low) and \(high)")
        case let (low?, nil): about.append("from \(low)")
        case let (nil, high?): about.append("up to \(high)")
        default: break
        }
        return "You have a new lead: \(name.isEmpty ? "a new contact" : name)" + (about.isEmpty ? "" : ", " + about.joined(separator: ", "))
            + ". Press 1 to be connected to the lead now."
    }
}
