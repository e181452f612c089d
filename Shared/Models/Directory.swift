import Foundation

/// The six services; the raw value is the service's name, schema and executable.
public enum ServiceName: String, WireEnum {
    case contacts, routing, automation, accountability, smartplans, notifications
}

/// Who a caller is. `service` is another service of this system acting on its own behalf.
public enum Role: String, WireEnum {
    case agent
    case teamAdmin = "team_admin"
    case officeAdmin = "office_admin"
    case companyAdmin = "company_admin"
    case lender
    case platformAdmin = "platform_admin"
    case service

    public var isAdmin: Bool {
        switch self {
        case .teamAdmin, .officeAdmin, .companyAdmin: true
        default: false
        }
    }
}

public enum EntityKind: String, WireEnum {
    case company, office, team
}

/// One day's opening in an entity's weekly schedule, in the entity's own time zone.
public struct OfficeHoursDay: Codable, Sendable, Hashable {
    /// ISO weekday: 1 = Monday … 7 = Sunday.
    public var weekday: Int
    /// "HH:MM", 24-hour clock.
    public var open: String
    public var close: String

    public init(weekday: Int, open: String, close: String) {
        self.weekday = weekday
        self.open = open
        self.close = close
    }

    /// Monday–Friday 09:00–17:00, the default of every new entity.
    public static let standardWeek: [OfficeHoursDay] = (1...5).map { OfficeHoursDay(weekday: $0, open: "09:00", close: "17:00") }
}

public struct Rotation: Codable, Sendable, Hashable {
    public var inRotation: Bool
    public var until: Date?
    /// Why the agent is out (AC-4: the rule broken, with the figures), for the agent and admins.
    public var reason: String?

    public init(inRotation: Bool, until: Date? = nil, reason: String? = nil) {
        self.inRotation = inRotation
        self.until = until
        self.reason = reason
    }
}
