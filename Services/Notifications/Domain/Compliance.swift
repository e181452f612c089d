import Foundation
import Models

/// What an inbound text asks for (NT-5, CTIA keywords).
enum InboundKeyword: Equatable {
    case optOut, optIn, help

    static let optOutWords: Set<String> = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "OPT OUT"]
    static let optInWords: Set<String> = ["START", "YES", "UNSTOP"]
    static let helpWords: Set<String> = ["HELP", "INFO"]

    /// The whole message must be the keyword: case, surrounding spaces and punctuation do not
    /// count, so "Stop." and "  stop!! " opt out while "please don't stop" does not.
    init?(body: String) {
        let trimmed = body.trimmingCharacters(in: CharacterSet.whitespacesAndNewlines.union(.punctuationCharacters).union(.symbols))
        let word = trimmed.uppercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
        if Self.optOutWords.contains(word) {
            self = .optOut
        } else if Self.optInWords.contains(word) {
            self = .optIn
        } else if Self.helpWords.contains(word) {
            self = .help
        } else {
            return nil
        }
    }
}

/// A stricter rule for recipients in one US state: its own calling hours and a cap on automated
/// messages per rolling 24 hours (Florida, Oklahoma, Maryland by default).
struct StateRule: Sendable, Hashable {
    var open: Int
    var close: Int
    var maxPerDay: Int?

    static let defaults: [String: StateRule] = [
        "FL": StateRule(open: 8 * 60, close: 20 * 60, maxPerDay: 3),
        "OK": StateRule(open: 8 * 60, close: 20 * 60, maxPerDay: 3),
        "MD": StateRule(open: 8 * 60, close: 20 * 60, maxPerDay: 3),
    ]

    /// `FL=08:00-20:00/3,TX=09:00-21:00` — the hours, and after a slash the daily cap.
    static func parse(_ text: String) throws(StateRuleError) -> [String: StateRule] {
        var rules: [String: StateRule] = [:]
        for item in text.split(separator: ",").map({ $0.trimmedSpaces() }) where !item.isEmpty {
            let pair = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, let state = USStates.code(pair[0]) else { throw StateRuleError(item: item) }
            let capParts = pair[1].split(separator: "/", maxSplits: 1).map(String.init)
            let hours = capParts[0].split(separator: "-").map(String.init)
            guard hours.count == 2, let open = WeeklyWindow.minutes(hours[0]), let close = WeeklyWindow.minutes(hours[1]), open < close else {
                throw StateRuleError(item: item)
            }
            var cap: Int?
            if capParts.count == 2 {
                guard let value = Int(capParts[1]), value > 0 else { throw StateRuleError(item: item) }
                cap = value
            }
            rules[state] = StateRule(open: open, close: close, maxPerDay: cap)
        }
        return rules
    }
}

struct StateRuleError: Error {
    var item: String
}

/// Everything the send decision needs to know, gathered by the store.
struct SendContext: Sendable {
    var channel: MessageChannel
    var purpose: MessagePurpose
    var address: String
    var optedOut: Bool
    var onDNC: Bool
    /// The recipient's time zone (contacts only; users are reached any time), or every zone
    /// their area code spans, and US state.
    var recipientTimeZones: [TimeZone]
    var recipientState: String?
    /// The caller's window (office hours of an entity or a fixed local window).
    var window: WeeklyWindow?
    /// When the automated messages sent to this recipient in the last 24 hours went out.
    var automatedSentInLastDay: [Date]
    /// ST-7, BA-11: the recipient is an archived contact.
    var recipientArchived = false
    /// CAN-SPAM, for an automated e-mail to a contact: the address unsubscribed from this
    /// company's automated e-mail, and whether the company has a postal address to show.
    var emailUnsubscribed = false
    var postalAddressMissing = false
}

enum SendDecision: Equatable {
    case send
    case hold(until: Date, reason: String)
    case suppress(reason: String)
}

/// The compliance rules of NT-5 and the sending windows of NT-4, decided without a database.
struct CompliancePolicy: Sendable {
    /// TCPA: no automated text or call outside 08:00–21:00 in the recipient's time zone.
    var quietOpen = 8 * 60
    var quietClose = 21 * 60
    var stateRules: [String: StateRule] = StateRule.defaults

    /// How many of the latest automated sends to the address `decide` may look at: daily caps
    /// apply to automated texts and calls to contacts (`recipientTimeZones` are a contact's), and
    /// a cap only ever counts its last `cap` sends.
    func recentSendsNeeded(channel: MessageChannel, purpose: MessagePurpose, toContact: Bool) -> Int {
        guard purpose == .automated, toContact, channel == .sms || channel == .voice else { return 0 }
        return stateRules.values.compactMap(\.maxPerDay).max() ?? 0
    }

    func decide(_ context: SendContext, now: Date) -> SendDecision {
        // ST-7: archiving stops all automation; the agent's own messages still go.
        if context.purpose == .automated && context.recipientArchived { return .suppress(reason: "archived") }
        // CAN-SPAM: an unsubscribe is honoured at once; an e-mail that cannot say where the
        // sender is may not be sent. The agent's own e-mails are not marketing and still go.
        if context.purpose == .automated && context.channel == .email {
            if context.emailUnsubscribed { return .suppress(reason: "unsubscribed") }
            if context.postalAddressMissing { return .suppress(reason: "no_postal_address") }
        }
        let phoneChannel = context.channel == .sms || context.channel == .voice
        if phoneChannel && context.optedOut { return .suppress(reason: "opted_out") }
        if phoneChannel && context.onDNC { return .suppress(reason: "dnc") }
        if context.channel == .email && context.optedOut { return .suppress(reason: "opted_out") }

        var windows: [(WeeklyWindow, String)] = []
        if let window = context.window { windows.append((window, "sending_window")) }
        var cap: Int?
        if context.purpose == .automated && phoneChannel, !context.recipientTimeZones.isEmpty {
            var open = quietOpen, close = quietClose
            if let state = context.recipientState, let rule = stateRules[state] {
                open = max(open, rule.open)
                close = min(close, rule.close)
                cap = rule.maxPerDay
            }
            // A number whose area code spans zones may be in any of them: the strictest reading
            // sends only while the window is open in every one.
            for zone in context.recipientTimeZones {
                windows.append((.daily(open: open, close: close, timeZone: zone), "quiet_hours"))
            }
        }
        var earliest = now
        var reason: String?
        if let cap, context.automatedSentInLastDay.count >= cap {
            // The oldest of the last `cap` sends leaves the rolling 24 hours first.
            let recent = context.automatedSentInLastDay.sorted().suffix(cap)
            if let oldest = recent.first {
                earliest = oldest.addingTimeInterval(24 * 3600)
                reason = "daily_cap"
            }
        }
        guard let opening = earliestCommonOpening(windows.map(\.0), atOrAfter: earliest) else {
            return .suppress(reason: "window_never_opens")
        }
        if opening <= now { return .send }
        if reason == nil {
            reason = windows.first { !$0.0.isOpen(at: now) }?.1 ?? "sending_window"
        }
        return .hold(until: opening, reason: reason ?? "sending_window")
    }
}

/// Where a contact is on the clock: the state of its address, else the area code of its phone,
/// with every zone the code spans (its main zone first).
enum RecipientZone {
    static func resolve(state: String?, phone: String?) -> (timeZones: [TimeZone], state: String)? {
        if let state, let code = USStates.code(state), let zone = USStates.timeZones[code].flatMap(TimeZone.init(identifier:)) {
            return ([zone], code)
        }
        if let phone, phone.hasPrefix("+1"), phone.count == 12 {
            let areaCode = String(phone.dropFirst(2).prefix(3))
            if let code = AreaCodes.state[areaCode] {
                let names = AreaCodes.zones[areaCode] ?? [AreaCodes.zoneOverride[areaCode] ?? USStates.timeZones[code]].compactMap { $0 }
                let zones = names.compactMap(TimeZone.init(identifier:))
                if !zones.isEmpty { return (zones, code) }
            }
        }
        return nil
    }
}

/// How a provider's refusal is treated (NT-7).
enum ProviderFailure: Equatable, Sendable {
    /// Try again later: timeouts, 429, 5xx, Twilio 20429 and 30003.
    case transient(String)
    /// Never try again: invalid number, not a mobile, sender cannot text, unreachable …
    case permanent(String)
    /// Twilio 21610: the recipient replied STOP to the sending number; record the opt-out too.
    case unsubscribed

    static let transientTwilioCodes: Set<Int> = [20429, 30003, 20500, 20503]

    static func classify(httpStatus: Int, twilioCode: Int?) -> ProviderFailure {
        if twilioCode == 21610 { return .unsubscribed }
        if let code = twilioCode, transientTwilioCodes.contains(code) { return .transient("provider_\(code)") }
        if httpStatus == 429 || httpStatus >= 500 { return .transient("http_\(httpStatus)") }
        if let code = twilioCode { return .permanent("provider_\(code)") }
        return .permanent("http_\(httpStatus)")
    }

    /// Transient failures where the provider never answered: the message was not tried.
    static let unreached: Set<String> = ["provider_unreachable", "not_sent", "local_store_unavailable"]

    /// Twilio reports delivery failures in status callbacks with the same codes.
    static func classifyCallback(errorCode: Int?) -> String {
        errorCode.map { "provider_\($0)" } ?? "undelivered"
    }
}
