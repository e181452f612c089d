import Foundation

/// ST-1: exactly one of these.
public enum ContactStatus: String, WireEnum {
    case sphere, prospect
    case newLead = "new_lead"
    case activeLead = "active_lead"
    case client, contract, closed, archive
}

public enum LeadType: String, WireEnum {
    case buyer, seller, renter, agent
}

/// How a contact came to be (ST-2); routing applies only to source origins (RT-5).
public enum CreationOrigin: String, WireEnum {
    case website, dropbox, zapier, manual, `import`

    /// Website, dropbox and zapier leads came in from a source: they are routed and start as new leads.
    public var isSource: Bool { [.website, .dropbox, .zapier].contains(self) }
}

public struct Address: Codable, Sendable, Hashable {
    public var street: String?
    public var city: String?
    public var state: String?
    public var postalCode: String?
    public init(street: String? = nil, city: String? = nil, state: String? = nil, postalCode: String? = nil) {
        self.street = street
        self.city = city
        self.state = state
        self.postalCode = postalCode
    }
}

/// What a buyer or renter is looking for (routing criteria RT-4).
public struct SearchInterest: Codable, Sendable, Hashable {
    public var area: String?
    public var propertyType: String?
    public var mls: String?
    public var priceMin: Int?
    public var priceMax: Int?
    public init(area: String? = nil, propertyType: String? = nil, mls: String? = nil, priceMin: Int? = nil, priceMax: Int? = nil) {
        self.area = area
        self.propertyType = propertyType
        self.mls = mls
        self.priceMin = priceMin
        self.priceMax = priceMax
    }
}

/// The listing a lead registered on, for listing-agent routing (RT-18).
public struct ListingInterest: Codable, Sendable, Hashable {
    public var listingId: String
    public var listingAgentId: UUID?
    public var coListingAgentId: UUID?
    public init(listingId: String, listingAgentId: UUID? = nil, coListingAgentId: UUID? = nil) {
        self.listingId = listingId
        self.listingAgentId = listingAgentId
        self.coListingAgentId = coListingAgentId
    }
}

public struct Contact: Codable, Sendable, Hashable {
    public var id: UUID
    public var companyId: UUID
    public var ownerEntityId: UUID
    public var status: ContactStatus
    public var firstName: String?
    public var lastName: String?
    public var emails: [String]
    public var phones: [String]
    public var leadType: LeadType?
    public var source: String?
    public var sourceId: UUID?
    public var tags: [String]
    public var assignedAgentId: UUID?
    public var lenderId: UUID?
    public var pondId: UUID?
    public var address: Address?
    public var searchInterest: SearchInterest?
    public var listing: ListingInterest?
    /// Set for leads from an agent's own site: they always go to that agent (RT-17).
    public var agentSiteAgentId: UUID?
    public var origin: CreationOrigin
    public var behavioralAlerts: Bool
    public var version: Int
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: UUID, companyId: UUID, ownerEntityId: UUID, status: ContactStatus, firstName: String?, lastName: String?,
                emails: [String], phones: [String], leadType: LeadType?, source: String?, sourceId: UUID?, tags: [String],
                assignedAgentId: UUID?, lenderId: UUID?, pondId: UUID?, address: Address?, searchInterest: SearchInterest?,
                listing: ListingInterest?, agentSiteAgentId: UUID?, origin: CreationOrigin, behavioralAlerts: Bool, version: Int,
                createdAt: Date, updatedAt: Date) {
        self.id = id
        self.companyId = companyId
        self.ownerEntityId = ownerEntityId
        self.status = status
        self.firstName = firstName
        self.lastName = lastName
        self.emails = emails
        self.phones = phones
        self.leadType = leadType
        self.source = source
        self.sourceId = sourceId
        self.tags = tags
        self.assignedAgentId = assignedAgentId
        self.lenderId = lenderId
        self.pondId = pondId
        self.address = address
        self.searchInterest = searchInterest
        self.listing = listing
        self.agentSiteAgentId = agentSiteAgentId
        self.origin = origin
        self.behavioralAlerts = behavioralAlerts
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// Who or what made a change, for the timeline (ST-5) and the events.
public struct Actor: Codable, Sendable, Hashable {
    public enum Kind: String, WireEnum {
        case user, service, source, integration, `import`
    }
    public var kind: Kind
    /// A user id, a service name, a lead source id or an integration name.
    public var id: String
    public var name: String?
    public init(kind: Kind, id: String, name: String? = nil) {
        self.kind = kind
        self.id = id
        self.name = name
    }
}

/// Every contact event carries the contact as it is after the change (so replicas keep the
/// newest version whatever the order of arrival) and what changed.
public struct ContactChanged: Codable, Sendable, Hashable {
    public var contact: Contact
    public var actor: Actor
    public var change: ContactChange

    public init(contact: Contact, actor: Actor, change: ContactChange) {
        self.contact = contact
        self.actor = actor
        self.change = change
    }
}

public struct ContactChange: Codable, Sendable, Hashable {
    public var previousStatus: ContactStatus?
    public var reason: String?
    public var tagsAdded: [String]?
    public var tagsRemoved: [String]?
    public var previousAgentId: UUID?
    public init(previousStatus: ContactStatus? = nil, reason: String? = nil, tagsAdded: [String]? = nil, tagsRemoved: [String]? = nil, previousAgentId: UUID? = nil) {
        self.previousStatus = previousStatus
        self.reason = reason
        self.tagsAdded = tagsAdded
        self.tagsRemoved = tagsRemoved
        self.previousAgentId = previousAgentId
    }
}

public enum CommunicationChannel: String, WireEnum {
    case call, text, email
}

public enum CommunicationDirection: String, WireEnum {
    case inbound, outbound
}

/// The outcome of a call an agent logs.
public enum CallOutcome: String, WireEnum {
    case contacted
    case leftVoicemail = "left_voicemail"
    case noAnswer = "no_answer"
    case badNumber = "bad_number"
}

/// A call, text or e-mail with a contact, logged by an agent or recorded by notifications.
public struct Communication: Codable, Sendable, Hashable {
    public var id: UUID
    public var contactId: UUID
    public var companyId: UUID
    public var channel: CommunicationChannel
    public var direction: CommunicationDirection
    public var outcome: CallOutcome?
    public var subject: String?
    public var body: String?
    public var userId: UUID?
    public var at: Date
    public init(id: UUID, contactId: UUID, companyId: UUID, channel: CommunicationChannel, direction: CommunicationDirection,
                outcome: CallOutcome?, subject: String?, body: String?, userId: UUID?, at: Date) {
        self.id = id
        self.contactId = contactId
        self.companyId = companyId
        self.channel = channel
        self.direction = direction
        self.outcome = outcome
        self.subject = subject
        self.body = body
        self.userId = userId
        self.at = at
    }
}
