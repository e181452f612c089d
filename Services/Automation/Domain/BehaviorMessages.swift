import Foundation
import Models
import ServiceKit

/// A scope's behavioral automation settings (BA-3, BA-8, BA-9, BA-10), set on an entity and
/// inherited by everything under it; a field left out keeps the default.
struct BehaviorSettings: Codable, Sendable, Hashable {
    struct Template: Codable, Sendable, Hashable {
        var text: String?
        var emailSubject: String?
        var emailBody: String?
    }

    /// BA-3: the statuses whose contacts get lead messages.
    var monitoredStatuses: [ContactStatus]?
    /// The behaviors whose lead message is off (BA-9: apart from the agent alert).
    var leadMessagesOff: [Behavior]?
    /// BA-9: the behaviors whose agent alert is off.
    var agentAlertsOff: [Behavior]?
    /// BA-8: per behavior (its raw value), the scope's own text and e-mail.
    var templates: [String: Template]?
    /// BA-10: the automatic status shift; on unless set false.
    var statusShift: Bool?

    static let defaultMonitored: [ContactStatus] = [.newLead, .activeLead, .prospect, .client, .sphere]

    var monitored: Set<ContactStatus> { Set(monitoredStatuses ?? Self.defaultMonitored) }
    var shiftsStatus: Bool { statusShift ?? true }

    /// 422 naming the setting at fault: unknown merge fields in a template, a behavior that does not exist.
    func validate() throws {
        for (name, template) in templates ?? [:] {
            guard Behavior(rawValue: name) != nil else {
                throw APIError.validation("templates.\(name)", "no behavior is called \(name); they are " + Behavior.allCases.map(\.rawValue).joined(separator: ", "))
            }
            if let text = template.text { _ = try TemplatePreviewController.parse(text, field: "templates.\(name).text") }
            if let subject = template.emailSubject { _ = try TemplatePreviewController.parse(subject, field: "templates.\(name).emailSubject") }
            if let body = template.emailBody { _ = try TemplatePreviewController.parse(body, field: "templates.\(name).emailBody") }
            if let text = template.text, text.count > 1_600 { throw APIError.validation("templates.\(name).text", "a text is at most 1,600 characters") }
        }
    }

    /// The text and e-mail a behavior sends: the scope's own where set, else the defaults.
    func template(for behavior: Behavior) -> Template {
        let own = templates?[behavior.rawValue]
        let fallback = BehaviorMessages.defaultTemplate(behavior)
        return Template(text: own?.text ?? fallback.text, emailSubject: own?.emailSubject ?? fallback.emailSubject,
                        emailBody: own?.emailBody ?? fallback.emailBody)
    }
}

/// What a behavior's firing sends, decided from the contact, the scope and the last time the
/// agent reached out; every message not sent has its reason.
enum BehaviorMessages {
    static let agentContactGuard: TimeInterval = 3 * 86_400
    static let newContactGuard: TimeInterval = 14 * 86_400

    enum Suppression: String, WireEnum {
        /// BA-11.
        case archived
        /// BA-3.
        case statusNotMonitored = "status_not_monitored"
        /// BA-4.
        case optedOut = "opted_out"
        /// BA-5.
        case agentContactedRecently = "agent_contacted_recently"
        /// BA-6.
        case newContact = "new_contact"
        /// BA-9: the scope switched this behavior's lead message off.
        case leadMessageOff = "lead_message_off"
        /// BA-7: neither a phone nor an e-mail.
        case noPhoneOrEmail = "no_phone_or_email"
        /// BA-9: the scope switched this behavior's agent alert off.
        case agentAlertOff = "agent_alert_off"
        case noAgent = "no_agent"
    }

    struct Contact: Sendable {
        var status: ContactStatus
        var createdAt: Date
        var hasPhone: Bool
        var hasEmail: Bool
        /// BA-4: false when the contact's behavioral alerts are turned off.
        var behavioralAlerts: Bool
        var assignedAgentId: UUID?
    }

    struct Plan: Sendable, Equatable {
        /// BA-7: text by default, e-mail without a phone; nil when not sent.
        var leadChannel: MessageChannel?
        var leadSuppressed: Suppression?
        var alertAgent: Bool
        var alertSuppressed: Suppression?
    }

    static func plan(_ behavior: Behavior, contact: Contact, settings: BehaviorSettings, lastAgentContact: Date?, now: Date) -> Plan {
        var plan = Plan(leadChannel: nil, leadSuppressed: nil, alertAgent: false, alertSuppressed: nil)
        // The lead message: the first guard that holds is the reason.
        if contact.status == .archive {
            plan.leadSuppressed = .archived
        } else if !settings.monitored.contains(contact.status) {
            plan.leadSuppressed = .statusNotMonitored
        } else if !contact.behavioralAlerts {
            plan.leadSuppressed = .optedOut
        } else if settings.leadMessagesOff?.contains(behavior) == true {
            plan.leadSuppressed = .leadMessageOff
        } else if now.timeIntervalSince(contact.createdAt) < newContactGuard {
            plan.leadSuppressed = .newContact
        } else if let last = lastAgentContact, now.timeIntervalSince(last) < agentContactGuard {
            plan.leadSuppressed = .agentContactedRecently
        } else if contact.hasPhone {
            plan.leadChannel = .sms
        } else if contact.hasEmail {
            plan.leadChannel = .email
        } else {
            plan.leadSuppressed = .noPhoneOrEmail
        }
        // The agent alert: BA-6 keeps it for new contacts; an archived contact stops everything (ST-7).
        if contact.status == .archive {
            plan.alertSuppressed = .archived
        } else if settings.agentAlertsOff?.contains(behavior) == true {
            plan.alertSuppressed = .agentAlertOff
        } else if contact.assignedAgentId == nil {
            plan.alertSuppressed = .noAgent
        } else {
            plan.alertAgent = true
        }
        return plan
    }

    static func defaultTemplate(_ behavior: Behavior) -> BehaviorSettings.Template {
        let text: String
        let subject: String
        switch behavior {
        case .returned:
            text = "Hi {contact.first.name|there}, welcome back! New homes have come on the market since your last visit. Want me to send you the best matches? - {agent.first.name|your agent}"
            subject = "Welcome back, {contact.first.name|there}"
        case .frequentVisits:
            text = "Hi {contact.first.name|there}, I see you've been searching a lot this week. Happy to set up a tour or answer questions anytime. - {agent.first.name|your agent}"
            subject = "Can I help with your search?"
        case .viewingBurst, .viewingWeek:
            text = "Hi {contact.first.name|there}, you've been looking at quite a few homes. Would you like to see any of them in person? - {agent.first.name|your agent}"
            subject = "Want to see some of these homes in person?"
        case .repeatViews:
            text = "Hi {contact.first.name|there}, looks like one home keeps catching your eye. Want me to check its details or set up a showing? - {agent.first.name|your agent}"
            subject = "That home you keep coming back to"
        case .favorite:
            text = "Hi {contact.first.name|there}, great pick on the home you saved! Want to schedule a showing? - {agent.first.name|your agent}"
            subject = "About the home you saved"
        }
        let body = text.replacingOccurrences(of: " - {agent.first.name|your agent}", with: "\n\n{agent.full.name|Your agent}\n{agent.phone|}")
        return BehaviorSettings.Template(text: text, emailSubject: subject, emailBody: body)
    }

    struct Alert: Sendable, Hashable {
        var contactId: UUID
        var behavior: Behavior
        var contactName: String
        var listing: String?

        var said: String { "\(contactName) \(behavior.summary)\(listing.map { " (listing \($0))" } ?? "")" }
    }

    /// BA-9: an agent's alerts decided together, as one e-mail naming each contact and behavior — a
    /// burst of activity (a newsletter's clicks, an open house's sign-ins) is one e-mail to read,
    /// not one per lead. A single alert: who, what, and the property when there is one.
    static func alerts(_ first: Alert, _ more: [Alert] = []) -> (subject: String, body: String) {
        guard !more.isEmpty else { return ("\(first.contactName) \(first.behavior.summary)", "\(first.said). A good moment to reach out.") }
        let all = [first] + more
        let leads = Set(all.map(\.contactId)).count
        let subject = leads == 1 ? "\(first.contactName): \(all.count) signs of interest just now" : "\(leads) of your leads are active on the website right now"
        return (subject, all.map { "- \($0.said)." }.joined(separator: "\n") + "\n\nA good moment to reach out.")
    }
}
