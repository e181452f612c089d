import Foundation
import Logging
import Models
import PostgresNIO
import ServiceKit

enum SmartPlansMigrations {
    static let own: [Migration] = [
        Migration("CreatePlans", [
            """
            CREATE TABLE plans (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                doc jsonb NOT NULL,
                updated_at timestamptz NOT NULL)
            """,
            "CREATE INDEX plans_company ON plans (company_id)",
            // Every version's steps, so a contact enrolled under one continues in the next (SP-10).
            """
            CREATE TABLE plan_versions (
                plan_id uuid NOT NULL,
                version int NOT NULL,
                steps jsonb NOT NULL,
                PRIMARY KEY (plan_id, version))
            """,
            """
            CREATE TABLE enrollments (
                id uuid PRIMARY KEY,
                plan_id uuid NOT NULL,
                company_id uuid NOT NULL,
                contact_id uuid NOT NULL,
                state text NOT NULL,
                step_index int NOT NULL,
                repetition int NOT NULL,
                plan_version int NOT NULL,
                seq int NOT NULL,
                enrolled_at timestamptz NOT NULL,
                ends_at timestamptz NOT NULL,
                next_at timestamptz,
                reason text,
                UNIQUE (plan_id, contact_id))
            """,
            "CREATE INDEX enrollments_contact ON enrollments (contact_id)",
            // What each step did, once per enrollment, run and step: the plan's figures and the contact's history.
            """
            CREATE TABLE step_log (
                enrollment_id uuid NOT NULL,
                seq int NOT NULL,
                step_index int NOT NULL,
                plan_id uuid NOT NULL,
                kind text NOT NULL,
                outcome text NOT NULL,
                detail text,
                at timestamptz NOT NULL,
                PRIMARY KEY (enrollment_id, seq, step_index))
            """,
            "CREATE INDEX step_log_plan ON step_log (plan_id)",
        ]),
        // SP-1: the company's shared library of plans (SP-8: published without triggers).
        Migration("CreateDesigns", [
            "CREATE TABLE designs (id uuid PRIMARY KEY, company_id uuid NOT NULL, doc jsonb NOT NULL, updated_at timestamptz NOT NULL)",
            "CREATE INDEX designs_company ON designs (company_id, updated_at DESC)",
        ]),
        Migration("CreateLibrary", [
            "CREATE TABLE library (id uuid PRIMARY KEY, company_id uuid NOT NULL, doc jsonb NOT NULL, published_at timestamptz NOT NULL)",
            "CREATE INDEX library_company ON library (company_id, published_at DESC)",
        ]),
    ]
}

/// Plans and their versions, enrollments and the step log, in smartplans' schema.
struct PlanStore: Sendable {
    let client: PostgresClient
    let logger: Logger

    func insert(_ plan: Plan, on connection: PostgresConnection) async throws {
        try await connection.query("""
            INSERT INTO plans (id, company_id, doc, updated_at) VALUES (\(plan.id), \(plan.companyId), \(try JSONCoding.string(plan))::jsonb, \(plan.updatedAt))
            ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at
            """, logger: logger)
        try await connection.query("""
            INSERT INTO plan_versions (plan_id, version, steps) VALUES (\(plan.id), \(plan.version), \(try JSONCoding.string(plan.steps))::jsonb)
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }

    /// The plan's document alone (triggers, activation): its steps' version is unchanged.
    func save(_ plan: Plan, on connection: PostgresConnection) async throws {
        try await connection.query("UPDATE plans SET doc = \(try JSONCoding.string(plan))::jsonb, updated_at = \(plan.updatedAt) WHERE id = \(plan.id)", logger: logger)
    }

    func plan(_ id: UUID, on connection: PostgresConnection, forUpdate: Bool = false) async throws -> Plan? {
        let query: PostgresQuery = forUpdate ? "SELECT doc::text FROM plans WHERE id = \(id) FOR UPDATE" : "SELECT doc::text FROM plans WHERE id = \(id)"
        return try await documents(Plan.self, query, on: connection).first
    }

    func plans(companyId: UUID) async throws -> [Plan] {
        try await documents(Plan.self, "SELECT doc::text FROM plans WHERE company_id = \(companyId) ORDER BY updated_at DESC, id")
    }

    func steps(of planId: UUID, version: Int, on connection: PostgresConnection) async throws -> [PlanStep]? {
        try await documents([PlanStep].self, "SELECT steps::text FROM plan_versions WHERE plan_id = \(planId) AND version = \(version)", on: connection).first
    }

    /// The JSON documents (plans, designs, library plans …) a query's one text column holds, read
    /// whole (so the caller may query the same connection next) and decoded.
    func documents<Document: Decodable>(_ type: Document.Type, _ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [Document] {
        let rows = if let connection { try await connection.query(query, logger: logger) } else { try await client.query(query, logger: logger) }
        return try await rows.collect().map { try JSONCoding.decode(type, json: try $0.decode(String.self)) }
    }
}
