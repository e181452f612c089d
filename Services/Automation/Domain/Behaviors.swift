import Foundation
import Models

/// BA-2: the six behaviors, as a pure function of a contact's activity and what has fired before.
enum Behavior: String, WireEnum, CaseIterable {
    /// (a) revisits the site after 14 or more days away.
    case returned
    /// (b) visits 5 times within 7 days.
    case frequentVisits = "frequent_visits"
    /// (c) views 5 properties within 24 hours.
    case viewingBurst = "viewing_burst"
    /// (d) views 10 properties within 7 days.
    case viewingWeek = "viewing_week"
    /// (e) views the same property 3 times.
    case repeatViews = "repeat_views"
    /// (f) favorites a property.
    case favorite

    /// Count behaviors: how many within how long, over which kind of activity.
    var threshold: (count: Int, window: TimeInterval)? {
        switch self {
        case .frequentVisits: (5, 7 * 86_400)
        case .viewingBurst: (5, 86_400)
        case .viewingWeek: (10, 7 * 86_400)
        case .returned, .repeatViews, .favorite: nil
        }
    }

    /// What an agent reads: "viewed 5 properties within 24 hours".
    var summary: String {
        switch self {
        case .returned: "came back to the website after 14 or more days away"
        case .frequentVisits: "visited the website 5 times within 7 days"
        case .viewingBurst: "viewed 5 properties within 24 hours"
        case .viewingWeek: "viewed 10 properties within 7 days"
        case .repeatViews: "viewed the same property 3 times"
        case .favorite: "saved a property as a favorite"
        }
    }
}

enum Behaviors {
    static let awayBeforeReturn: TimeInterval = 14 * 86_400
    static let repeatViews = 3
    /// How far back a contact's activity matters to a new event: the longest window and the
    /// 14 days away, with a day to spare.
    static let lookBack: TimeInterval = 15 * 86_400

    /// One activity as the rules see it.
    struct Activity: Sendable, Hashable {
        var id: UUID
        var kind: ActivityEvent.Kind
        var at: Date
        var listingId: String?
        /// Not evaluated before: a firing needs at least one of these.
        var isNew: Bool
    }

    /// A behavior crossed. `key` makes it once: the crossing event's time for a window (a new
    /// window starts after it), the listing for (e) and (f).
    struct Firing: Sendable, Hashable {
        var behavior: Behavior
        var key: String
        var at: Date
        var listingId: String?
        /// The events that made it, oldest first.
        var eventIds: [UUID]
    }

    /// What fired before, per behavior: for windows the latest firing's time (events up to it
    /// were used), for (e) and (f) the listings.
    struct Fired: Sendable {
        var lastWindow: [Behavior: Date] = [:]
        var listings: [Behavior: Set<String>] = [:]
    }

    /// The firings that `activity` (the contact's recent events, old and new, in any order; for
    /// (e) every view of the listings the new events name) makes now. `before` is the contact's
    /// latest activity older than everything in `activity`, if any: a first visit ever is not a
    /// return.
    static func evaluate(_ activity: [Activity], before: Date?, fired: Fired) -> [Firing] {
        let events = activity.sorted { ($0.at, $0.id) < ($1.at, $1.id) }
        var firings: [Firing] = []

        // (a) a visit 14 or more days after the activity before it.
        var previous = before
        for event in events {
            if event.kind == .siteVisit, event.isNew, let last = previous, event.at.timeIntervalSince(last) >= awayBeforeReturn {
                firings.append(Firing(behavior: .returned, key: RFC3339.string(from: event.at), at: event.at, listingId: nil, eventIds: [event.id]))
            }
            previous = max(previous ?? event.at, event.at)
        }

        // (b), (c), (d): windows sliding over event time, restarting after each firing.
        for behavior in [Behavior.frequentVisits, .viewingBurst, .viewingWeek] {
            guard let (count, window) = behavior.threshold else { continue }
            let kind: ActivityEvent.Kind = behavior == .frequentVisits ? .siteVisit : .propertyView
            var since = fired.lastWindow[behavior] ?? .distantPast
            var inWindow: [Activity] = []
            for event in events where event.kind == kind && event.at > since {
                inWindow.append(event)
                inWindow.removeAll { event.at.timeIntervalSince($0.at) >= window }
                // Views count properties: the same listing twice in a window is one.
                let counted = kind == .propertyView ? Set(inWindow.compactMap(\.listingId)).count : inWindow.count
                guard counted >= count else { continue }
                if inWindow.contains(where: \.isNew) {
                    firings.append(Firing(behavior: behavior, key: RFC3339.string(from: event.at), at: event.at, listingId: nil, eventIds: inWindow.map(\.id)))
                }
                since = event.at
                inWindow = []
            }
        }

        // (e) the same property viewed 3 times; (f) a favorite: once per property.
        var views: [String: [Activity]] = [:]
        for event in events where event.kind == .propertyView {
            guard let listing = event.listingId else { continue }
            views[listing, default: []].append(event)
        }
        for (listing, seen) in views.sorted(by: { $0.key < $1.key })
        where seen.count >= repeatViews && !(fired.listings[.repeatViews]?.contains(listing) ?? false) && seen.contains(where: \.isNew) {
            let third = seen[repeatViews - 1]
            firings.append(Firing(behavior: .repeatViews, key: listing, at: third.at, listingId: listing, eventIds: seen.prefix(repeatViews).map(\.id)))
        }
        var favorited: Set<String> = fired.listings[.favorite] ?? []
        for event in events where event.kind == .favorite && event.isNew {
            guard let listing = event.listingId, !favorited.contains(listing) else { continue }
            favorited.insert(listing)
            firings.append(Firing(behavior: .favorite, key: listing, at: event.at, listingId: listing, eventIds: [event.id]))
        }
        return firings
    }
}
