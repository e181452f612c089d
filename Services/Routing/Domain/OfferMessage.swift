import Foundation
import Models

/// What an agent reads or hears about a lead: an offer with its link or keypad question, or
/// the notice of an assignment.
struct OfferMessage: Sendable, Hashable {
    var channel: MessageChannel
    var subject: String?
    var body: String
    var gather: GatherSpec?

    /// "buyer in Austin, condo, $300,000 to $450,000": what the lead wants, from what is known.
    static func interest(_ contact: Contact) -> String {
        var parts: [String] = []
        if let type = contact.leadType { parts.append(type.rawValue) }
        if let area = contact.searchInterest?.area { parts.append("in \(area)") }
        if let property = contact.searchInterest?.propertyType { parts.append(property) }
        if let listing = contact.listing { parts.append("listing \(listing.listingId)") }
        return parts.joined(separator: " ")
    }

    static func priceRange(_ contact: Contact) -> String? {
        switch (contact.searchInterest?.priceMin, contact.searchInterest?.priceMax) {
        case let (low?, high?): "\(RuleMatcher.money(low)) to \(RuleMatcher.money(high))"
        case let (low?, nil): "from \(RuleMatcher.money(low))"
        case let (nil, high?): "up to \(RuleMatcher.money(high))"
        case (nil, nil): nil
        }
    }

    static func compose(contact: Contact, channel: DeliveryChannel, offer: Offer?, link: String?) -> OfferMessage {
        let name = LeadDecider.leadName(contact)
        let about = [interest(contact), priceRange(contact)].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ", ")
        let lead = about.isEmpty ? name : "\(name) (\(about))"
        let source = contact.source.map { " from \($0)" } ?? ""
        guard offer != nil, let link else {
            let text = "New lead\(source) assigned to you: \(lead). Call them now: the first five minutes count most."
            switch channel {
            case .call: return OfferMessage(channel: .voice, body: "You have a new lead\(source): \(lead). Please call them now.")
            case .text: return OfferMessage(channel: .sms, body: text)
            case .push: return OfferMessage(channel: .push, subject: "New lead: \(name)", body: text)
            case .email: return OfferMessage(channel: .email, subject: "New lead assigned to you: \(name)", body: text)
            }
        }
        let text = "New lead\(source) for you: \(lead). Accept or decline: \(link)"
        switch channel {
        case .call:
            return OfferMessage(channel: .voice, body: "New lead\(source): \(lead). Press 1 to accept, 2 to decline.",
                                gather: GatherSpec(numDigits: 1, timeoutSeconds: 10, answeredBy: .routing))
        case .text: return OfferMessage(channel: .sms, body: text)
        case .push: return OfferMessage(channel: .push, subject: "New lead offer: \(name)", body: text)
        case .email:
            return OfferMessage(channel: .email, subject: "New lead offer: \(name)",
                                body: "\(text)\n\nThe first agent to accept gets the lead; the offer is open until \(offer.map { RFC3339.string(from: $0.expiresAt) } ?? "").")
        }
    }
}
