import Foundation
import Models
import ServiceKit
import Testing
@testable import Notifications

@Suite("Notifications domain rules (NT-4, NT-5, NT-6, NT-7)")
struct ComplianceTests {
    let chicago = TimeZone(identifier: "America/Chicago")!

    func date(_ text: String) -> Date { RFC3339.date(from: text)! }

    @Test("SP-7 (for every sender): with SMS_PROVIDER=none a text or call is refused when asked for, naming the channel and no_sms_provider; e-mail and push still go")
    func noPhoneProvider() throws {
        let env = ["DATABASE_URL": "postgres://notifications:pw@127.0.0.1:5432/crm", "JWT_SECRET": String(repeating: "s", count: 32)]
        let none = try NotificationSettings(try ServiceConfig(service: .notifications, environment: env.merging(["SMS_PROVIDER": "none"]) { _, new in new }))
        #expect(none.sms == .none && none.twilio == nil)
        #expect(try NotificationSettings(try ServiceConfig(service: .notifications, environment: env)).sms == .local, "the recording provider by default")
        struct Unused: MessageProvider {
            var name: String { "unused" }
            func send(_ message: Message, from: String?) async -> ProviderResult { .failed(.permanent("unused")) }
            func find(_ message: Message, attemptStarted: Date) async -> String? { nil }
        }
        let providers = Providers(sms: Unused(), voice: Unused(), email: Unused(), push: Unused(), fromNumber: nil, fromEmail: nil,
                                  phoneConfigured: none.sms != .none)
        for channel in [MessageChannel.sms, .voice] {
            #expect { try providers.requireProvider(for: channel) } throws: { error in
                let refused = error as? APIError
                return refused?.code == "no_sms_provider" && refused?.field == "channel" && refused?.status == .unprocessableContent
            }
        }
        try providers.requireProvider(for: .email)
        try providers.requireProvider(for: .push)
    }

    @Test("NT-5: Washington's area codes are Washington's, on Pacific time, and 689 (Orlando, an overlay of 407) is on Eastern, not Central")
    func areaCodeZones() throws {
        for areaCode in ["206", "253", "360", "425", "509", "564"] {
            let place = try #require(RecipientZone.resolve(state: nil, phone: "+1\(areaCode)5550123"), "\(areaCode)")
            #expect(place.state == "WA")
            #expect(place.timeZones.map(\.identifier) == ["America/Los_Angeles"])
        }
        let orlando = try #require(RecipientZone.resolve(state: nil, phone: "+16895550123"))
        #expect(orlando.state == "FL")
        #expect(orlando.timeZones.map(\.identifier) == ["America/New_York"])
        #expect(RecipientZone.resolve(state: nil, phone: "+14075550123")?.timeZones.first?.identifier == "America/New_York")
    }

    @Test("NT-5: every US area code in service has the state and zones the Postal Service's zip codes give it (an independent source); a code whose zip codes lie in several zones carries them all")
    func areaCodesAgainstZipCodes() throws {
        // Zones that keep the same clock all year are one zone (America/Detroit is New York's time).
        let instants = ["2026-01-15T12:00:00Z", "2026-03-10T12:00:00Z", "2026-07-15T12:00:00Z", "2026-11-03T12:00:00Z"].map(date)
        func clock(_ name: String) -> [Int]? { TimeZone(identifier: name).map { zone in instants.map { zone.secondsFromGMT(for: $0) } } }
        let tableZones = { (code: String) -> [String] in
            AreaCodes.zones[code] ?? [AreaCodes.zoneOverride[code] ?? USStates.timeZones[AreaCodes.state[code] ?? ""] ?? "?"]
        }
        for (code, served) in AreaCodeReference.served {
            let state = try #require(AreaCodes.state[code], "\(code) serves zip codes in \(served.states) but is not in the table")
            let majority = served.states.max { ($0.value, $1.key) < ($1.value, $0.key) }?.key
            #expect(served.states[state] != nil, "\(code): the table says \(state), its zip codes are in \(served.states)")
            if let majority, state != majority { #expect(served.states[state, default: 0] * 4 >= served.states[majority, default: 0], "\(code): \(state) against \(served.states)") }
            let clocks = Set(tableZones(code).compactMap(clock))
            #expect(clocks.count == tableZones(code).count, "\(code): every zone of the table is a zone, each a different clock: \(tableZones(code))")
            for (zone, zips) in served.zones where zips >= 3 {
                let other = try #require(clock(zone), "\(zone) is a time zone")
                #expect(clocks.contains(other), "\(code): \(zips) of its zip codes are on \(zone)'s clock, which the table does not give it (\(tableZones(code)))")
            }
        }
        // Codes opened after the reference's data: checked by the generator's other source only.
        let newer = Set(AreaCodes.state.keys).subtracting(AreaCodeReference.served.keys)
        #expect(newer == ["235", "274", "324", "327", "329", "353", "369", "645", "686", "728", "730", "738", "748", "821", "975"], "\(newer.sorted())")
    }

    @Test("NT-5: a number whose area code spans two zones is texted only while quiet hours are open in both (219, Gary and Michiana: Central and Eastern)")
    func twoZoneAreaCode() throws {
        let place = try #require(RecipientZone.resolve(state: nil, phone: "+12195550123"))
        #expect(place.state == "IN")
        #expect(Set(place.timeZones.map(\.identifier)) == ["America/New_York", "America/Chicago"])
        let policy = CompliancePolicy()
        let context = SendContext(channel: .sms, purpose: .automated, address: "+12195550123", optedOut: false, onDNC: false,
                                  recipientTimeZones: place.timeZones, recipientState: place.state, window: nil, automatedSentInLastDay: [])
        // 08:30 Eastern is 07:30 Central: held until 08:00 Central (09:00 Eastern).
        #expect(policy.decide(context, now: date("2026-11-24T13:30:00Z")) == .hold(until: date("2026-11-24T14:00:00Z"), reason: "quiet_hours"))
        // 20:30 Central is 21:30 Eastern: held until the next morning's 08:00 Central.
        #expect(policy.decide(context, now: date("2026-11-25T02:30:00Z")) == .hold(until: date("2026-11-25T14:00:00Z"), reason: "quiet_hours"))
        #expect(policy.decide(context, now: date("2026-11-24T15:00:00Z")) == .send)
    }

    @Test("NT-5: opt-out, opt-in and help words in any case, with spaces and punctuation; other texts are not keywords")
    func keywords() {
        for word in ["STOP", "stop", "  Stop! ", "StopAll", "unsubscribe", "CANCEL.", "end", "Quit", "revoke", "optout", "Opt Out", "opt   out"] {
            #expect(InboundKeyword(body: word) == .optOut, "\(word)")
        }
        for word in ["START", "yes", "Unstop!"] { #expect(InboundKeyword(body: word) == .optIn, "\(word)") }
        for word in ["HELP", "info?"] { #expect(InboundKeyword(body: word) == .help, "\(word)") }
        for text in ["please stop", "stop it", "", "STOPP", "Yes please"] { #expect(InboundKeyword(body: text) == nil, "\(text)") }
    }

    @Test("NT-5: 08:00 local across the spring-forward and fall-back weekends is the right UTC instant")
    func windowsAcrossDST() {
        let quiet = WeeklyWindow.daily(open: 8 * 60, close: 21 * 60, timeZone: chicago)
        // Saturday 2027-03-13 22:30 CST → Sunday 08:00 CDT = 13:00Z.
        #expect(quiet.nextOpening(atOrAfter: date("2027-03-14T04:30:00Z")) == date("2027-03-14T13:00:00Z"))
        // Saturday 2026-10-31 22:30 CDT → Sunday 08:00 CST = 14:00Z.
        #expect(quiet.nextOpening(atOrAfter: date("2026-11-01T03:30:00Z")) == date("2026-11-01T14:00:00Z"))
        #expect(quiet.isOpen(at: date("2027-03-14T13:00:00Z")))
        #expect(!quiet.isOpen(at: date("2027-03-14T12:59:00Z")))
        #expect(!quiet.isOpen(at: date("2027-03-15T02:00:00Z")), "21:00 CDT is closed")
    }

    @Test("NT-4: office hours skip the weekend; an intersection of windows finds the first instant all are open")
    func officeHours() {
        let office = WeeklyWindow.officeHours(OfficeHoursDay.standardWeek, timeZone: chicago)
        // Friday 2026-11-27 18:00 CST → Monday 09:00 CST.
        #expect(office.nextOpening(atOrAfter: date("2026-11-28T00:00:00Z")) == date("2026-11-30T15:00:00Z"))
        let evening = WeeklyWindow.daily(open: 16 * 60, close: 18 * 60, timeZone: chicago)
        #expect(earliestCommonOpening([office, evening], atOrAfter: date("2026-11-30T15:00:00Z")) == date("2026-11-30T22:00:00Z"))
        let never = WeeklyWindow(timeZone: chicago, days: [:])
        #expect(never.nextOpening(atOrAfter: date("2026-11-30T15:00:00Z")) == nil)
    }

    @Test("NT-5: opt-outs and DNC suppress texts and calls; quiet hours hold automated texts only; Florida caps at 3 a day")
    func decisions() {
        let policy = CompliancePolicy()
        let night = date("2026-11-24T04:00:00Z") // 22:00 in Chicago
        var context = SendContext(channel: .sms, purpose: .automated, address: "+13125550123", optedOut: false, onDNC: false,
                                  recipientTimeZones: [chicago], recipientState: "IL", window: nil, automatedSentInLastDay: [])
        #expect(policy.decide(context, now: night) == .hold(until: date("2026-11-24T14:00:00Z"), reason: "quiet_hours"))
        context.purpose = .manual
        #expect(policy.decide(context, now: night) == .send, "manual messages are not held by quiet hours")
        context.optedOut = true
        #expect(policy.decide(context, now: night) == .suppress(reason: "opted_out"))
        context.optedOut = false
        context.onDNC = true
        #expect(policy.decide(context, now: night) == .suppress(reason: "dnc"))
        context.onDNC = false
        context.purpose = .automated
        context.recipientState = "FL"
        let noon = date("2026-11-24T18:00:00Z")
        context.automatedSentInLastDay = [date("2026-11-24T15:00:00Z"), date("2026-11-24T16:00:00Z"), date("2026-11-24T17:00:00Z")]
        #expect(policy.decide(context, now: noon) == .hold(until: date("2026-11-25T15:00:00Z"), reason: "daily_cap"))
        context.automatedSentInLastDay.removeFirst()
        #expect(policy.decide(context, now: noon) == .send)
        // Florida's calling hours end at 20:00, not 21:00.
        #expect(policy.decide(context, now: date("2026-11-25T02:30:00Z")) == .hold(until: date("2026-11-25T14:00:00Z"), reason: "quiet_hours"))
    }

    @Test("ST-7: an automated message to an archived contact is suppressed as archived; a manual one is not")
    func archivedSuppressed() {
        var context = SendContext(channel: .email, purpose: .automated, address: "a@example.com", optedOut: false, onDNC: false,
                                  recipientTimeZones: [chicago], recipientState: "IL", window: nil, automatedSentInLastDay: [], recipientArchived: true)
        #expect(CompliancePolicy().decide(context, now: date("2026-11-24T18:00:00Z")) == .suppress(reason: "archived"))
        context.purpose = .manual
        #expect(CompliancePolicy().decide(context, now: date("2026-11-24T18:00:00Z")) == .send)
    }

    @Test("CAN-SPAM: an automated e-mail to an address unsubscribed from the company, or from a company with no postal address, is suppressed with the reason; a manual one goes")
    func canSpamDecisions() {
        var context = SendContext(channel: .email, purpose: .automated, address: "a@example.com", optedOut: false, onDNC: false,
                                  recipientTimeZones: [chicago], recipientState: "IL", window: nil, automatedSentInLastDay: [], emailUnsubscribed: true)
        let noon = date("2026-11-24T18:00:00Z")
        #expect(CompliancePolicy().decide(context, now: noon) == .suppress(reason: "unsubscribed"))
        context.emailUnsubscribed = false
        context.postalAddressMissing = true
        #expect(CompliancePolicy().decide(context, now: noon) == .suppress(reason: "no_postal_address"))
        context.purpose = .manual
        #expect(CompliancePolicy().decide(context, now: noon) == .send)
    }

    @Test("CAN-SPAM: an unsubscribe link names its company and address, and any change to it or another service's key makes it invalid")
    func unsubscribeLinks() throws {
        let links = UnsubscribeLink(secret: "a secret long enough for the test, 32+")
        let company = UUID()
        let token = links.token(companyId: company, address: "Jane@Example.com")
        let verified = try #require(links.verify(token))
        #expect(verified.companyId == company && verified.address == "jane@example.com")
        var tampered = Array(token)
        tampered[4] = tampered[4] == "A" ? "B" : "A"
        #expect(links.verify(String(tampered)) == nil)
        #expect(UnsubscribeLink(secret: "another secret entirely, 32 bytes+").verify(token) == nil)
        #expect(UnsubscribeLink.footer(companyName: "Demo Realty", postalAddress: "100 Main St\nChicago, IL 60601", url: "https://x/u/t")
                .contains("Demo Realty · 100 Main St, Chicago, IL 60601"))
    }

    @Test("NT-5: state rules parse from configuration; contacts are placed by state, else by area code")
    func stateRulesAndZones() throws {
        let rules = try StateRule.parse("TX=09:00-20:00/2, Georgia=08:00-21:00")
        #expect(rules["TX"] == StateRule(open: 540, close: 1200, maxPerDay: 2))
        #expect(rules["GA"] == StateRule(open: 480, close: 1260, maxPerDay: nil))
        #expect(throws: StateRuleError.self) { try StateRule.parse("XX=08:00-20:00") }
        #expect(throws: StateRuleError.self) { try StateRule.parse("FL=20:00-08:00") }
        #expect(RecipientZone.resolve(state: "fl", phone: nil)?.state == "FL")
        #expect(RecipientZone.resolve(state: nil, phone: "+13125550123")?.timeZones.first?.identifier == "America/Chicago")
        #expect(RecipientZone.resolve(state: nil, phone: "+12125550123")?.timeZones.first?.identifier == "America/New_York")
        #expect(RecipientZone.resolve(state: nil, phone: "+18085550123")?.timeZones.first?.identifier == "Pacific/Honolulu")
        #expect(RecipientZone.resolve(state: nil, phone: "+442071234567") == nil)
    }

    @Test("NT-6: X-Twilio-Signature matches Twilio's documented example and refuses any change")
    func twilioSignature() {
        // The example of Twilio's "Webhooks security" page.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2"
        let parameters = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"), ("From", "+12349013030"),
                          ("To", "+18005551212")]
        let token = "12345"
        let signature = TwilioSignature.compute(url: url, parameters: parameters, authToken: token)
        #expect(signature == "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        #expect(TwilioSignature.verify(signature: signature, url: url, parameters: parameters, authToken: token))
        #expect(!TwilioSignature.verify(signature: signature, url: url + "&x=1", parameters: parameters, authToken: token))
        #expect(!TwilioSignature.verify(signature: signature, url: url, parameters: parameters.dropLast(), authToken: token))
        #expect(!TwilioSignature.verify(signature: signature, url: url, parameters: parameters, authToken: "54321"))
        let body = Array(#"{"a":1}"#.utf8)
        let hash = "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        let jsonURL = "https://example.com/hook?bodySHA256=\(hash)"
        let jsonSignature = TwilioSignature.compute(url: jsonURL, parameters: [], authToken: token)
        #expect(TwilioSignature.verifyJSON(signature: jsonSignature, url: jsonURL, body: body, authToken: token))
        #expect(!TwilioSignature.verifyJSON(signature: jsonSignature, url: jsonURL, body: body + [32], authToken: token))
    }

    @Test("NT-7: transient provider failures are retried, permanent ones are not, 21610 records an opt-out")
    func providerFailures() {
        #expect(ProviderFailure.classify(httpStatus: 500, twilioCode: nil) == .transient("http_500"))
        #expect(ProviderFailure.classify(httpStatus: 429, twilioCode: 20429) == .transient("provider_20429"))
        #expect(ProviderFailure.classify(httpStatus: 400, twilioCode: 30003) == .transient("provider_30003"))
        for code in [21211, 21614, 21606, 30005, 30006] {
            #expect(ProviderFailure.classify(httpStatus: 400, twilioCode: code) == .permanent("provider_\(code)"))
        }
        #expect(ProviderFailure.classify(httpStatus: 400, twilioCode: 21610) == .unsubscribed)
        #expect(ProviderFailure.classify(httpStatus: 401, twilioCode: nil) == .permanent("http_401"))
    }
}
