import Foundation
import Logging
import PostgresNIO

/// Keeps the kit's tables small under years of traffic: finished jobs, handled inbox rows and
/// delivered outbox rows (with the payloads nothing points at any more) older than the
/// retention are deleted, a few hundred rows a statement so no lock or transaction grows with
/// the backlog. An hourly periodic schedule: one replica does it each hour.
package enum Retention {
    package static let batch = 500
    /// Statements per table and run: a first run over a large backlog spreads over hours.
    package static let maxRounds = 10

    /// Discarded jobs are failures someone may still be looking into: kept four times as long.
    static func statements(days: Int) -> [(table: String, sql: String)] {
        [
            ("jobs", """
                DELETE FROM jobs WHERE id IN (
                    SELECT id FROM jobs
                    WHERE (state IN ('completed', 'cancelled') AND finished_at < now() - make_interval(days => \(days)))
                       OR (state = 'discarded' AND finished_at < now() - make_interval(days => \(days * 4)))
                    LIMIT \(batch))
                """),
            ("inbox", """
                DELETE FROM inbox WHERE (event_id, handler) IN (
                    SELECT event_id, handler FROM inbox WHERE handled_at < now() - make_interval(days => \(days)) LIMIT \(batch))
                """),
            ("outbox", """
                DELETE FROM outbox WHERE id IN (
                    SELECT id FROM outbox WHERE delivered_at < now() - make_interval(days => \(days)) LIMIT \(batch))
                """),
            ("outbox_events", """
                DELETE FROM outbox_events WHERE event_id IN (
                    SELECT e.event_id FROM outbox_events e
                    WHERE e.created_at < now() - make_interval(days => \(days))
                      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.event_id)
                    LIMIT \(batch))
                """),
        ]
    }

    /// Deletes what is older than `days`, batch by batch; answers how many rows per table.
    @discardableResult
    package static func prune(days: Int, client: PostgresClient, logger: Logger) async throws -> [String: Int] {
        var deleted: [String: Int] = [:]
        for (table, sql) in statements(days: days) {
            for _ in 0..<maxRounds {
                let rows = try await client.query(PostgresQuery(unsafeSQL: sql + " RETURNING 1"), logger: logger).collect().count
                deleted[table, default: 0] += rows
                if rows < batch { break }
            }
        }
        if deleted.values.contains(where: { $0 > 0 }) { logger.info("retention pruned old rows", metadata: ["deleted": "\(deleted)"]) }
        return deleted
    }
}
