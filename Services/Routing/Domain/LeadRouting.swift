import Foundation
import Models

/// Where a lead's routing stands.
enum RoutingState: String, Codable, Sendable {
    /// Offers are out and nobody has accepted yet (RT-13).
    case offering
    case assigned
    /// Routed to a pond (RT-6).
    case pond
    /// A seller address-only lead, kept with the entity's admin until contact details arrive (RT-17).
    case awaitingContactInfo = "awaiting_contact_info"
    /// Manual and imported leads are not routed (RT-5).
    case notRouted = "not_routed"
    /// No rule found an agent who could take it.
    case unassigned
}

enum OfferMode: String, Codable, Sendable {
    /// One agent at a time, in order (round robin, weighted).
    case sequential
    /// Everyone at once; the first to accept gets it (RT-10).
    case blast
    /// The listing agent, with the listing-agent timeout (RT-19).
    case listing
}

/// One rule as this lead's routing saw it (RT-20).
struct RuleOutcome: Codable, Sendable, Hashable {
    var ruleId: UUID
    var name: String
    var isDefault: Bool
    var matched: Bool
    var checks: [CriterionCheck]
    /// Why a matching rule still did not take the lead, or how it took it.
    var note: String?
}

/// The routing of one lead: the current round's decision and what it waits for.
struct LeadRouting: Codable, Sendable, Hashable {
    var contactId: UUID
    var companyId: UUID
    var entityId: UUID
    /// Goes up when the lead is routed again (contact details arrived, the listing agent timed out).
    var round: Int
    var state: RoutingState
    var mode: OfferMode?
    var ruleId: UUID?
    var ruleName: String?
    var assignedAgentId: UUID?
    var pondId: UUID?
    var lenderId: UUID?
    var timeoutAgentId: UUID?
    var timeoutAt: Date?
    var windowMinutes: Int?
    /// Sequential offers: the agents not offered yet, in order.
    var queue: [UUID]
    var channels: [DeliveryChannel]
    var skipListingAgent: Bool
    var rules: [RuleOutcome]
    /// One sentence an admin reads: why the lead is where it is.
    var summary: String
    var startedAt: Date
    var updatedAt: Date
}

enum OfferState: String, WireEnum {
    case open, accepted, declined, lapsed
    case timedOut = "timed_out"
    /// Another agent accepted first, or the lead was routed elsewhere.
    case closed
}

struct Offer: Codable, Sendable, Hashable {
    var id: UUID
    var contactId: UUID
    var companyId: UUID
    var round: Int
    var agentId: UUID
    var ruleId: UUID?
    var mode: OfferMode
    var state: OfferState
    var offeredAt: Date
    /// When this agent's window closes.
    var expiresAt: Date
    var decidedAt: Date?
}

/// One line of the lead's routing history (RT-20).
struct RoutingLogEntry: Codable, Sendable, Hashable {
    enum Kind: String, Codable, Sendable {
        case evaluated, offered, notified, accepted, declined, lapsed, timedOut = "timed_out", assigned, pond, held, notRouted = "not_routed"
        case unassigned, notificationFailed = "notification_failed", followUpScheduled = "follow_up_scheduled"
        /// Someone assigned the lead by hand while routing was still deciding.
        case reassigned
    }
    var at: Date
    var round: Int
    var kind: Kind
    var agentId: UUID?
    var offerId: UUID?
    var channel: DeliveryChannel?
    var messageId: UUID?
    var summary: String
}
