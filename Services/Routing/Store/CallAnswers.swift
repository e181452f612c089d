import Foundation
import Models
import ServiceKit

/// Keys agents press on the calls routing asks notifications to place (RT-16: 1 accept,
/// 2 decline), kept per call so an offer can be decided from them.
enum CallAnswers {
    static let migrations: [Migration] = [
        Migration("CreateCallAnswers", [
            """
            CREATE TABLE call_answers (
                message_id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                user_id uuid,
                contact_id uuid,
                digits text NOT NULL,
                reference text,
                at timestamptz NOT NULL)
            """,
            "CREATE INDEX call_answers_reference ON call_answers (reference)",
        ]),
    ]

    static var handler: EventHandler {
        EventHandler(name: "routing.keypress", eventType: EventType.messageKeypress) { event, connection, logger in
            let pressed = try event.data(MessageKeypress.self)
            try await connection.query("""
                INSERT INTO call_answers (message_id, company_id, user_id, contact_id, digits, reference, at)
                VALUES (\(pressed.messageId), \(pressed.companyId), \(pressed.userId), \(pressed.contactId), \(pressed.digits), \(pressed.reference), \(pressed.at))
                ON CONFLICT (message_id) DO NOTHING
                """, logger: logger)
        }
    }
}
