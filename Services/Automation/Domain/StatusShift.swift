import Foundation
import Models

/// BA-10, the automatic status shift, without a database.
enum StatusShift {
    struct Communication: Sendable, Hashable {
        var id: UUID
        var channel: CommunicationChannel
        var direction: CommunicationDirection
        var outcome: CallOutcome?
        var at: Date
    }

    /// Whether `communication` moves the contact to active lead: a new lead or prospect, on the
    /// first inbound text, e-mail or call, or the first outbound call logged as contacted; only if
    /// it had no earlier inbound communication and no earlier successful outbound call, and not
    /// within 2 minutes of its creation.
    static func shifts(status: ContactStatus, createdAt: Date, communication: Communication, earlier: [Communication]) -> Bool {
        guard status == .newLead || status == .prospect else { return false }
        guard communication.at.timeIntervalSince(createdAt) >= 120 else { return false }
        let qualifies = communication.direction == .inbound || (communication.channel == .call && communication.outcome == .contacted)
        guard qualifies else { return false }
        let before = earlier.filter { $0.id != communication.id && $0.at <= communication.at }
        return !before.contains { $0.direction == .inbound || ($0.channel == .call && $0.direction == .outbound && $0.outcome == .contacted) }
    }

    static func reason(_ communication: Communication) -> String {
        switch (communication.direction, communication.channel) {
        case (.inbound, .text): "the lead texted for the first time"
        case (.inbound, .email): "the lead e-mailed for the first time"
        case (.inbound, .call): "the lead called for the first time"
        default: "the first call to the lead was logged as contacted"
        }
    }
}
