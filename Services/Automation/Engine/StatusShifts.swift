import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

/// BA-10: moves a new lead or prospect to active lead on its first real two-way contact, through
/// contacts (with the reason on the timeline), and e-mails the agent. A job per contact, once.
struct StatusShifts: Sendable {
    let client: PostgresClient
    let jobs: JobQueue
    let peers: PeerClient
    let clock: any ServiceClock
    let logger: Logger

    static let job = "automation.status-shift"

    struct ShiftJob: Codable, Sendable {
        var contactId: UUID
        var fromStatus: ContactStatus
        var reason: String
        var agentId: UUID?
        var name: String
    }

    var eventHandler: EventHandler {
        EventHandler(name: "automation.status-shift", eventType: EventType.communicationLogged) { event, connection, _ in
            let logged = try event.data(CommunicationLogged.self)
            let item = logged.communication
            let current = StatusShift.Communication(id: item.id, channel: item.channel, direction: item.direction, outcome: item.outcome, at: item.at)
            let contact = logged.contact
            guard contact.status == .newLead || contact.status == .prospect,
                  try await BehaviorEngine.settings(for: contact.ownerEntityId, on: connection, logger: logger).settings.shiftsStatus else { return }
            var earlier: [StatusShift.Communication] = []
            for try await (id, channel, direction, outcome, at) in try await connection.query("""
                SELECT id, channel, direction, outcome, at FROM communication_replica WHERE contact_id = \(contact.id) AND id <> \(item.id)
                """, logger: logger).decode((UUID, String, String, String?, Date).self) {
                guard let channel = CommunicationChannel(rawValue: channel), let direction = CommunicationDirection(rawValue: direction) else { continue }
                earlier.append(.init(id: id, channel: channel, direction: direction, outcome: outcome.flatMap(CallOutcome.init(rawValue:)), at: at))
            }
            guard StatusShift.shifts(status: contact.status, createdAt: contact.createdAt, communication: current, earlier: earlier) else { return }
            let name = [contact.firstName, contact.lastName].compactMap { $0 }.joined(separator: " ")
            try await jobs.schedule(kind: Self.job, payload: ShiftJob(contactId: contact.id, fromStatus: contact.status, reason: StatusShift.reason(current),
                                                                      agentId: contact.assignedAgentId, name: name.isEmpty ? "A lead" : name),
                                    runAt: clock.now, uniqueKey: "status-shift:\(contact.id)", on: connection, logger: logger)
        }
    }

    var jobHandler: JobHandler {
        JobHandler(kind: Self.job) { job, _, _ in try await shift(try job.decode(ShiftJob.self)) }
    }

    func shift(_ job: ShiftJob) async throws {
        struct StatusChange: Encodable {
            var status: ContactStatus
            var reason: String
            var fromStatus: ContactStatus
        }
        let changed = try await peers.post(to: .contacts, path: "/v1/contacts/\(job.contactId.lowercasedString)/status",
                                           body: StatusChange(status: .activeLead, reason: "Automatic status shift: \(job.reason)", fromStatus: job.fromStatus))
        // 409: someone changed the status meanwhile, and their change stands.
        guard changed.status != 409, try changed.succeeded(from: .contacts, "contacts' status"), let agentId = job.agentId else { return }
        try await UserMail(messages: [UserMail.Mail(userId: agentId, subject: "\(job.name) is now an active lead",
                                                    body: "\(job.name) moved from \(job.fromStatus == .prospect ? "prospect" : "new lead") to active lead: \(job.reason).",
                                                    reference: "status-shift:\(job.contactId.lowercasedString)")])
            .send(with: peers, key: "automation-status-shift-\(job.contactId.lowercasedString)")
    }
}
