import Foundation

/// Local opening hours for each ISO weekday (1 = Monday … 7 = Sunday) in one time zone: office
/// hours, quiet-hours rules, a caller's "10:00–19:00 America/Chicago". Times are wall-clock
/// minutes, so a window keeps its local hours across daylight-saving changes.
public struct WeeklyWindow: Sendable, Hashable {
    public struct Span: Sendable, Hashable {
        public var open: Int
        public var close: Int
        public init(open: Int, close: Int) {
            self.open = open
            self.close = close
        }
    }

    public var timeZone: TimeZone
    public var days: [Int: Span]

    public init(timeZone: TimeZone, days: [Int: Span]) {
        self.timeZone = timeZone
        self.days = days
    }

    /// The same hours every day of the week.
    public static func daily(open: Int, close: Int, timeZone: TimeZone) -> WeeklyWindow {
        WeeklyWindow(timeZone: timeZone, days: Dictionary(uniqueKeysWithValues: (1...7).map { ($0, Span(open: open, close: close)) }))
    }

    public static func officeHours(_ days: [OfficeHoursDay], timeZone: TimeZone) -> WeeklyWindow {
        var spans: [Int: Span] = [:]
        for day in days {
            if let open = Self.minutes(day.open), let close = Self.minutes(day.close), open < close { spans[day.weekday] = Span(open: open, close: close) }
        }
        return WeeklyWindow(timeZone: timeZone, days: spans)
    }

    /// "HH:MM" (24-hour) as minutes after midnight; "24:00" is the end of the day.
    public static func minutes(_ text: String) -> Int? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]),
              (0...59).contains(minute), (0...24).contains(hour), hour < 24 || minute == 0 else { return nil }
        return hour * 60 + minute
    }

    private var calendar: Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar
    }

    /// ISO weekday and minute of the day of `date`, on the local wall clock.
    public func local(_ date: Date) -> (weekday: Int, minute: Int) {
        let parts = calendar.dateComponents([.weekday, .hour, .minute], from: date)
        let weekday = ((parts.weekday ?? 1) + 5) % 7 + 1
        return (weekday, (parts.hour ?? 0) * 60 + (parts.minute ?? 0))
    }

    public func isOpen(at date: Date) -> Bool {
        let now = local(date)
        guard let span = days[now.weekday] else { return false }
        return now.minute >= span.open && now.minute < span.close
    }

    /// The first instant at or after `date` when the window is open; nil when it never opens.
    public func nextOpening(atOrAfter date: Date) -> Date? {
        if isOpen(at: date) { return date }
        let calendar = calendar
        let startOfToday = calendar.startOfDay(for: date)
        for offset in 0...7 {
            guard let day = calendar.date(byAdding: .day, value: offset, to: startOfToday) else { continue }
            let weekday = local(day).weekday
            guard let span = days[weekday] else { continue }
            // Set the wall-clock time on that local day; the calendar resolves the UTC offset of
            // that day, so 08:00 stays 08:00 on both sides of a daylight-saving change.
            guard let opening = calendar.date(bySettingHour: span.open / 60, minute: span.open % 60, second: 0, of: day) else { continue }
            if opening >= date { return opening }
        }
        return nil
    }
}

/// The earliest instant at or after `date` when every window is open at once.
public func earliestCommonOpening(_ windows: [WeeklyWindow], atOrAfter date: Date) -> Date? {
    var candidate = date
    for _ in 0..<64 {
        var moved = false
        for window in windows {
            guard let next = window.nextOpening(atOrAfter: candidate) else { return nil }
            if next > candidate {
                candidate = next
                moved = true
            }
        }
        if !moved { return candidate }
    }
    return nil
}
