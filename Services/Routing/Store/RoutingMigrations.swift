import ServiceKit

/// Routing's own tables, in the order they were added.
enum RoutingMigrations {
    static let all: [Migration] = DirectoryReplica.migrations + ContactReplica.migrations + CallAnswers.migrations + [
        Migration("CreateRoutingRules", [
            """
            CREATE TABLE routing_rules (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                entity_id uuid NOT NULL,
                position int NOT NULL,
                is_default boolean NOT NULL,
                doc jsonb NOT NULL,
                version int NOT NULL)
            """,
            // RT-2: one default rule per scope.
            "CREATE UNIQUE INDEX routing_rules_one_default ON routing_rules (entity_id) WHERE is_default",
            "CREATE INDEX routing_rules_entity ON routing_rules (entity_id, position)",
            // RT-8: the round-robin position of each rule, shared by every replica (row lock).
            "CREATE TABLE rotation_positions (rule_id uuid PRIMARY KEY, position bigint NOT NULL)",
            "CREATE TABLE routing_settings (company_id uuid PRIMARY KEY, doc jsonb NOT NULL)",
        ]),
        Migration("CreateLeadRoutings", [
            """
            CREATE TABLE lead_routings (
                contact_id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                state text NOT NULL,
                doc jsonb NOT NULL)
            """,
            """
            CREATE TABLE offers (
                id uuid PRIMARY KEY,
                contact_id uuid NOT NULL,
                company_id uuid NOT NULL,
                round int NOT NULL,
                agent_id uuid NOT NULL,
                rule_id uuid,
                mode text NOT NULL,
                state text NOT NULL,
                offered_at timestamptz NOT NULL,
                expires_at timestamptz NOT NULL,
                decided_at timestamptz)
            """,
            // RT-15: exactly one agent ever gets a lead; the database refuses a second acceptance.
            "CREATE UNIQUE INDEX offers_one_acceptance ON offers (contact_id) WHERE state = 'accepted'",
            "CREATE INDEX offers_contact ON offers (contact_id, round)",
            "CREATE INDEX offers_agent_open ON offers (agent_id) WHERE state = 'open'",
            """
            CREATE TABLE routing_log (
                id bigserial PRIMARY KEY,
                contact_id uuid NOT NULL,
                doc jsonb NOT NULL)
            """,
            "CREATE INDEX routing_log_contact ON routing_log (contact_id, id)",
        ]),
    ] + DirectoryReplica.userPreferences + DirectoryReplica.userLender + DirectoryReplica.entityAddress
}
