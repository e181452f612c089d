import Foundation
import Models

/// One criterion of a rule against one lead, in words an admin reads (RT-20).
struct CriterionCheck: Codable, Sendable, Hashable {
    var criterion: String
    var matched: Bool
    var detail: String
}

/// RT-4, RT-5: whether a rule's criteria take a lead, criterion by criterion.
enum RuleMatcher {
    static func checks(_ criteria: RuleCriteria, lead: Contact) -> [CriterionCheck] {
        var checks: [CriterionCheck] = []
        if let sources = criteria.sources, !sources.isEmpty {
            let wanted = sources.joined(separator: ", ")
            // RT-5: a manual or imported lead never matches on source, whatever its source field says.
            if !lead.origin.isSource {
                checks.append(CriterionCheck(criterion: "source", matched: false,
                                             detail: "the lead was \(lead.origin == .import ? "imported" : "entered by hand"), so source criteria do not apply to it"))
            } else if let source = lead.source, sources.contains(where: { Self.same($0, source) }) {
                checks.append(CriterionCheck(criterion: "source", matched: true, detail: "source \"\(source)\" is one of \(wanted)"))
            } else {
                checks.append(CriterionCheck(criterion: "source", matched: false,
                                             detail: lead.source.map { "source \"\($0)\" is not one of \(wanted)" } ?? "the lead has no source"))
            }
        }
        if let hashtags = criteria.hashtags, !hashtags.isEmpty {
            let wanted = hashtags.map(Self.hashtag)
            let found = lead.tags.map(Self.hashtag).filter { wanted.contains($0) }
            checks.append(found.isEmpty
                ? CriterionCheck(criterion: "hashtags", matched: false,
                                 detail: lead.tags.isEmpty ? "the lead has no tags; the rule wants one of \(Self.list(wanted))"
                                     : "none of the lead's tags (\(Self.list(lead.tags.map(Self.hashtag)))) is one of \(Self.list(wanted))")
                : CriterionCheck(criterion: "hashtags", matched: true, detail: "the lead is tagged \(Self.list(found))"))
        }
        if let types = criteria.leadTypes, !types.isEmpty {
            let wanted = types.map(\.rawValue).joined(separator: ", ")
            if let type = lead.leadType {
                checks.append(CriterionCheck(criterion: "leadType", matched: types.contains(type),
                                             detail: types.contains(type) ? "the lead is a \(type.rawValue)" : "the lead is a \(type.rawValue), not one of \(wanted)"))
            } else {
                checks.append(CriterionCheck(criterion: "leadType", matched: false, detail: "the lead has no lead type; the rule wants \(wanted)"))
            }
        }
        checks += Self.textCriterion("propertyType", "property type", criteria.propertyTypes, lead.searchInterest?.propertyType)
        checks += Self.textCriterion("area", "area", criteria.areas, lead.searchInterest?.area)
        checks += Self.textCriterion("mls", "MLS", criteria.mls, lead.searchInterest?.mls)
        if criteria.priceMin != nil || criteria.priceMax != nil {
            checks.append(Self.price(criteria, lead: lead))
        }
        return checks
    }

    static func matches(_ checks: [CriterionCheck]) -> Bool { checks.allSatisfy(\.matched) }

    private static func textCriterion(_ key: String, _ label: String, _ wanted: [String]?, _ value: String?) -> [CriterionCheck] {
        guard let wanted, !wanted.isEmpty else { return [] }
        let list = wanted.joined(separator: ", ")
        guard let value, !value.isEmpty else {
            return [CriterionCheck(criterion: key, matched: false, detail: "the lead has no \(label); the rule wants \(list)")]
        }
        let matched = wanted.contains { same($0, value) }
        return [CriterionCheck(criterion: key, matched: matched, detail: matched ? "\(label) \"\(value)\" is one of \(list)" : "\(label) \"\(value)\" is not one of \(list)")]
    }

    /// The lead's price range (either end alone stands for both) must overlap the rule's.
    private static func price(_ criteria: RuleCriteria, lead: Contact) -> CriterionCheck {
        let ruleRange = "\(criteria.priceMin.map(money) ?? "any") to \(criteria.priceMax.map(money) ?? "any")"
        guard let low = lead.searchInterest?.priceMin ?? lead.searchInterest?.priceMax,
              let high = lead.searchInterest?.priceMax ?? lead.searchInterest?.priceMin else {
            return CriterionCheck(criterion: "price", matched: false, detail: "the lead has no price range; the rule wants \(ruleRange)")
        }
        let matched = high >= (criteria.priceMin ?? Int.min) && low <= (criteria.priceMax ?? Int.max)
        let leadRange = low == high ? money(low) : "\(money(low)) to \(money(high))"
        return CriterionCheck(criterion: "price", matched: matched,
                              detail: matched ? "price \(leadRange) is within \(ruleRange)" : "price \(leadRange) is outside \(ruleRange)")
    }

    static func money(_ amount: Int) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.groupingSeparator = ","
        formatter.locale = Locale(identifier: "en_US")
        return "$" + (formatter.string(from: NSNumber(value: amount)) ?? String(amount))
    }

    private static func same(_ a: String, _ b: String) -> Bool {
        a.trimmedSpaces().caseInsensitiveCompare(b.trimmedSpaces()) == .orderedSame
    }

    /// Tags compare without their `#` and case.
    static func hashtag(_ tag: String) -> String {
        var text = tag.trimmedSpaces().lowercased()
        while text.hasPrefix("#") { text.removeFirst() }
        return text
    }

    private static func list(_ tags: [String]) -> String { tags.map { "#\($0)" }.joined(separator: ", ") }
}
