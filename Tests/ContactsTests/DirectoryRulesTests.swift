import Foundation
import Models
import ServiceKit
import Testing
@testable import Contacts

@Suite("Directory rules: names, time zones, office hours, passwords, roles")
struct DirectoryRulesTests {
    @Test("office hours: one entry per weekday, HH:MM, opening before closing; sorted by weekday")
    func officeHours() throws {
        let sorted = try DirectoryRules.officeHours([OfficeHoursDay(weekday: 3, open: "08:30", close: "12:00"), OfficeHoursDay(weekday: 1, open: "09:00", close: "24:00")])
        #expect(sorted.map(\.weekday) == [1, 3])
        let bad: [([OfficeHoursDay], String)] = [
            ([OfficeHoursDay(weekday: 0, open: "09:00", close: "17:00")], "officeHours[0].weekday"),
            ([OfficeHoursDay(weekday: 1, open: "9:00", close: "17:00")], "officeHours[0].open"),
            ([OfficeHoursDay(weekday: 1, open: "09:00", close: "17:60")], "officeHours[0].close"),
            ([OfficeHoursDay(weekday: 1, open: "17:00", close: "09:00")], "officeHours[0].close"),
            ([OfficeHoursDay(weekday: 2, open: "09:00", close: "10:00"), OfficeHoursDay(weekday: 2, open: "11:00", close: "12:00")], "officeHours[1].weekday"),
        ]
        for (days, field) in bad {
            let error = try #require(throws: APIError.self) { try DirectoryRules.officeHours(days) }
            #expect(error.field == field)
        }
    }

    @Test("time zones must be IANA names")
    func timeZones() throws {
        #expect(try DirectoryRules.timeZone("America/Chicago") == "America/Chicago")
        #expect(try DirectoryRules.timeZone("UTC") == "UTC")
        for bad in ["Mars/Olympus", "CST", "", "America/"] {
            #expect(throws: APIError.self) { try DirectoryRules.timeZone(bad) }
        }
    }

    @Test("names are trimmed, non-empty, bounded and free of control characters")
    func names() throws {
        #expect(try DirectoryRules.name("  Downtown ", field: "name") == "Downtown")
        for bad in ["", "   ", String(repeating: "x", count: 101), "Bad\u{7}Name"] {
            #expect(throws: APIError.self) { try DirectoryRules.name(bad, field: "name") }
        }
    }

    @Test("passwords: at least 10 characters, at most bcrypt's 72 bytes")
    func passwords() {
        #expect(throws: APIError.self) { try DirectoryRules.password("short") }
        #expect(throws: APIError.self) { try DirectoryRules.password(String(repeating: "é", count: 40)) }
        #expect(throws: Never.self) { try DirectoryRules.password("long enough password") }
    }

    @Test("admins never grant more than they hold; agents grant nothing")
    func roles() {
        #expect(DirectoryRules.mayGrant(.companyAdmin, caller: .companyAdmin))
        #expect(!DirectoryRules.mayGrant(.platformAdmin, caller: .companyAdmin))
        #expect(!DirectoryRules.mayGrant(.service, caller: .platformAdmin))
        #expect(DirectoryRules.mayGrant(.officeAdmin, caller: .officeAdmin))
        #expect(!DirectoryRules.mayGrant(.companyAdmin, caller: .officeAdmin))
        #expect(!DirectoryRules.mayGrant(.officeAdmin, caller: .teamAdmin))
        #expect(DirectoryRules.mayGrant(.agent, caller: .teamAdmin))
        for role in Role.allCases {
            #expect(!DirectoryRules.mayGrant(role, caller: .agent))
            #expect(!DirectoryRules.mayGrant(role, caller: .lender))
        }
    }

    @Test("offices hang under the company, teams under offices")
    func hierarchy() {
        #expect(DirectoryRules.allowedParent(for: .office) == .company)
        #expect(DirectoryRules.allowedParent(for: .team) == .office)
        #expect(DirectoryRules.allowedParent(for: .company) == nil)
    }
}
