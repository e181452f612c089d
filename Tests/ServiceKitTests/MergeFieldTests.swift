import Foundation
import Models
import Testing
@testable import ServiceKit

/// The shared merge-field templates (SP-4, BA-8), without a database.
@Suite("Merge-field templates")
struct MergeFieldTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func contact(first: String? = "Jane", phone: String? = "+13125550142") -> Contact {
        Contact(id: UUID(), companyId: UUID(), ownerEntityId: UUID(), status: .newLead, firstName: first, lastName: "Doe", emails: ["jane@example.com"],
                phones: phone.map { [$0] } ?? [], leadType: .buyer, source: "Zillow", sourceId: nil, tags: [], assignedAgentId: nil, lenderId: nil, pondId: nil,
                address: Address(city: "Chicago", state: "IL"), searchInterest: SearchInterest(area: "Lincoln Park", priceMin: 450_000, priceMax: 1_250_000),
                listing: nil, agentSiteAgentId: nil, origin: .website, behavioralAlerts: true, version: 1, createdAt: now, updatedAt: now)
    }

    static let agent = User(id: UUID(), companyId: nil, role: .agent, entityIds: [], firstName: "Alice", lastName: "Archer", email: "alice@demo.example",
                            mobilePhone: "+13125550101", timeZone: "America/Chicago", rotation: Rotation(inRotation: true), prefersPush: false, active: true,
                            version: 1, createdAt: now, updatedAt: now)

    @Test("SP-4, BA-8: every field renders from the contact, their agent, office and company; prices and phones in words people read")
    func rendersEveryField() throws {
        let values = MergeValues(contact: Self.contact(), agent: Self.agent, officeName: "Downtown Office", companyName: "Demo Realty")
        let template = try MessageTemplate("Hi {contact.first.name}, homes in {contact.search.area} from {contact.search.price.min} to "
                                           + "{contact.search.price.max}. Call {agent.full.name} at {agent.phone} ({office.name}, {company.name}). "
                                           + "We have {contact.phone} for you, a {contact.lead.type} ({contact.status}).", field: "body")
        #expect(template.render(values) == "Hi Jane, homes in Lincoln Park from $450,000 to $1,250,000. Call Alice Archer at (312) 555-0101 "
                + "(Downtown Office, Demo Realty). We have (312) 555-0142 for you, a Buyer (New lead).")
        for field in MergeField.allCases where ![.contactStreet, .contactPostalCode, .searchPropertyType].contains(field) {
            #expect(values[field] != nil, "\(field.rawValue) has a value for a full contact")
        }
    }

    @Test("SP-2, SP-4: a team plan's step owned by a role speaks as the role's agent: every agent field is theirs (none left of the contact's agent), the contact's fields stay")
    func roleAgent() throws {
        let values = MergeValues(contact: Self.contact(), agent: Self.agent, officeName: "Downtown Office", companyName: "Demo Realty")
        let isa = values.with(agent: MergeValues.AgentFacts(firstName: "Isa", lastName: "Inside", email: "isa@demo.example", phone: nil))
        let template = try MessageTemplate("Hi {contact.first.name}, {agent.full.name} ({agent.email}) here, {agent.phone|call the office}. {office.name}", field: "body")
        #expect(template.render(isa) == "Hi Jane, Isa Inside (isa@demo.example) here, call the office. Downtown Office")
        #expect(template.render(values) == "Hi Jane, Alice Archer (alice@demo.example) here, (312) 555-0101. Downtown Office")
    }

    @Test("SP-4: an unknown field is refused naming the input and the field; unclosed and stray braces too; {{ and }} are literal; a fallback fills a missing value")
    func validation() throws {
        #expect(throws: TemplateProblem(field: "steps[2].body", token: "{contact.nickname}",
                                        message: "unknown merge field {contact.nickname}; the fields are "
                                            + MergeField.allCases.map { "{\($0.rawValue)}" }.joined(separator: ", "))) {
            try MessageTemplate("Hi {contact.nickname}", field: "steps[2].body")
        }
        #expect(throws: TemplateProblem.self) { try MessageTemplate("Hi {contact.first.name", field: "body") }
        #expect(throws: TemplateProblem.self) { try MessageTemplate("Hi }", field: "body") }
        #expect(throws: TemplateProblem.self) { try MessageTemplate("Hi {contact.first.name|{agent.first.name}}", field: "body") }
        let values = MergeValues(contact: Self.contact(first: nil, phone: nil), agent: nil, officeName: nil, companyName: "Demo Realty")
        #expect(try MessageTemplate("Hi {Contact.First.Name|there}, {{not a field}} from {company.name}.", field: "body").render(values)
                == "Hi there, {not a field} from Demo Realty.")
        #expect(try MessageTemplate("Call {agent.first.name}", field: "body").render(values) == "Call ", "no agent: the field is empty")
    }
}
