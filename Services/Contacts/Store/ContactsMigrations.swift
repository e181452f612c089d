import ServiceKit

enum ContactsMigrations {
    static let all: [Migration] = [
        Migration("CreateCompanies", [
            """
            CREATE TABLE companies (
                id uuid PRIMARY KEY,
                name text NOT NULL,
                bypass_listing_agent boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL)
            """,
        ]),
        Migration("CreateEntities", [
            """
            CREATE TABLE entities (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL REFERENCES companies (id),
                parent_id uuid REFERENCES entities (id),
                kind text NOT NULL CHECK (kind IN ('company', 'office', 'team')),
                name text NOT NULL,
                time_zone text NOT NULL,
                office_hours jsonb NOT NULL,
                version int NOT NULL DEFAULT 1,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL)
            """,
            "CREATE INDEX entities_company ON entities (company_id)",
            "CREATE INDEX entities_parent ON entities (parent_id)",
        ]),
        Migration("CreateUsers", [
            """
            CREATE TABLE users (
                id uuid PRIMARY KEY,
                company_id uuid REFERENCES companies (id),
                role text NOT NULL,
                entity_ids uuid[] NOT NULL DEFAULT '{}',
                first_name text NOT NULL,
                last_name text NOT NULL,
                email text NOT NULL,
                mobile_phone text,
                time_zone text NOT NULL,
                password_hash text,
                in_rotation boolean NOT NULL DEFAULT true,
                rotation_until timestamptz,
                prefers_push boolean NOT NULL DEFAULT false,
                active boolean NOT NULL DEFAULT true,
                version int NOT NULL DEFAULT 1,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL)
            """,
            "CREATE UNIQUE INDEX users_email ON users (lower(email))",
            "CREATE INDEX users_company ON users (company_id)",
            "CREATE INDEX users_entities ON users USING gin (entity_ids)",
        ]),
        Migration("CreateLogins", [
            """
            CREATE TABLE logins (
                id bigserial PRIMARY KEY,
                user_id uuid NOT NULL REFERENCES users (id),
                at timestamptz NOT NULL)
            """,
            "CREATE INDEX logins_user ON logins (user_id, at DESC)",
        ]),
    ]
}
