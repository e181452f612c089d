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
        Migration("CreateLeadSources", [
            """
            CREATE TABLE lead_sources (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL REFERENCES companies (id),
                entity_id uuid NOT NULL REFERENCES entities (id),
                name text NOT NULL,
                origin text NOT NULL CHECK (origin IN ('website', 'dropbox', 'zapier')),
                agent_id uuid REFERENCES users (id),
                key_prefix text NOT NULL,
                key_hash bytea NOT NULL UNIQUE,
                active boolean NOT NULL DEFAULT true,
                created_at timestamptz NOT NULL)
            """,
            "CREATE INDEX lead_sources_company ON lead_sources (company_id)",
        ]),
        Migration("CreatePonds", [
            """
            CREATE TABLE ponds (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL REFERENCES companies (id),
                entity_id uuid NOT NULL REFERENCES entities (id),
                name text NOT NULL,
                created_at timestamptz NOT NULL)
            """,
        ]),
        Migration("CreateContacts", [
            """
            CREATE TABLE contacts (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL REFERENCES companies (id),
                owner_entity_id uuid NOT NULL REFERENCES entities (id),
                status text NOT NULL,
                first_name text,
                last_name text,
                emails text[] NOT NULL DEFAULT '{}',
                phones text[] NOT NULL DEFAULT '{}',
                lead_type text,
                source text,
                source_id uuid REFERENCES lead_sources (id),
                tags text[] NOT NULL DEFAULT '{}',
                assigned_agent_id uuid REFERENCES users (id),
                lender_id uuid REFERENCES users (id),
                pond_id uuid REFERENCES ponds (id),
                address jsonb,
                search_interest jsonb,
                listing jsonb,
                agent_site_agent_id uuid REFERENCES users (id),
                origin text NOT NULL,
                behavioral_alerts boolean NOT NULL DEFAULT true,
                version int NOT NULL DEFAULT 1,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                deleted_at timestamptz)
            """,
            "CREATE INDEX contacts_list ON contacts (company_id, created_at DESC, id DESC) WHERE deleted_at IS NULL",
            "CREATE INDEX contacts_status ON contacts (company_id, status) WHERE deleted_at IS NULL",
            "CREATE INDEX contacts_agent ON contacts (assigned_agent_id) WHERE deleted_at IS NULL",
            "CREATE INDEX contacts_tags ON contacts USING gin (tags)",
            """
            CREATE TABLE contact_points (
                company_id uuid NOT NULL,
                kind text NOT NULL CHECK (kind IN ('email', 'phone')),
                value text NOT NULL,
                contact_id uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
                PRIMARY KEY (company_id, kind, value))
            """,
            "CREATE INDEX contact_points_contact ON contact_points (contact_id)",
        ]),
        Migration("CreateTimeline", [
            """
            CREATE TABLE timeline (
                id uuid PRIMARY KEY,
                contact_id uuid NOT NULL REFERENCES contacts (id),
                company_id uuid NOT NULL,
                kind text NOT NULL,
                at timestamptz NOT NULL,
                seq bigserial,
                actor jsonb NOT NULL,
                summary text NOT NULL,
                data jsonb NOT NULL DEFAULT '{}')
            """,
            "CREATE INDEX timeline_contact ON timeline (contact_id, at DESC, seq DESC)",
        ]),
        Migration("CreateTasks", [
            """
            CREATE TABLE tasks (
                id uuid PRIMARY KEY,
                contact_id uuid NOT NULL REFERENCES contacts (id),
                company_id uuid NOT NULL,
                kind text NOT NULL CHECK (kind IN ('task', 'call', 'text')),
                title text NOT NULL,
                description text,
                links text[] NOT NULL DEFAULT '{}',
                priority text NOT NULL DEFAULT 'none',
                due_at timestamptz,
                assignee_id uuid REFERENCES users (id),
                completed_at timestamptz,
                call_outcome text,
                version int NOT NULL DEFAULT 1,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL)
            """,
            "CREATE INDEX tasks_contact ON tasks (contact_id, created_at)",
            "CREATE INDEX tasks_assignee ON tasks (assignee_id, due_at) WHERE completed_at IS NULL",
        ]),
        Migration("CreateTransactionIntegrations", [
            """
            CREATE TABLE transaction_integrations (
                company_id uuid PRIMARY KEY REFERENCES companies (id),
                secret text NOT NULL,
                created_at timestamptz NOT NULL)
            """,
            """
            CREATE TABLE transaction_deliveries (
                company_id uuid NOT NULL,
                delivery_id text NOT NULL,
                received_at timestamptz NOT NULL,
                PRIMARY KEY (company_id, delivery_id))
            """,
        ]),
        // Whether another contact of the company holds one of the points, each probed by its key.
        // A function, so a new contact's one statement can ask it and keep its one plan: asked
        // inline, an array of unknown length made the planner plan that statement on every run.
        Migration("PointsHeld", [
            """
            CREATE FUNCTION points_held(company uuid, kinds text[], vals text[]) RETURNS boolean
            LANGUAGE plpgsql STABLE AS $$
            BEGIN
                FOR i IN 1 .. coalesce(array_length(kinds, 1), 0) LOOP
                    IF EXISTS (SELECT FROM contact_points WHERE company_id = company AND kind = kinds[i] AND value = vals[i]) THEN
                        RETURN true;
                    END IF;
                END LOOP;
                RETURN false;
            END $$
            """,
        ]),
        // RT-6: an agent's own lender, attached to the leads routed to them unless a rule names one.
        Migration("AddUserLender", ["ALTER TABLE users ADD COLUMN lender_id uuid REFERENCES users (id)"]),
        // AC-4, AC-5: why an agent is out of rotation, shown to them and their admins.
        Migration("AddUserRotationReason", ["ALTER TABLE users ADD COLUMN rotation_reason text"]),
        // CAN-SPAM: the postal address every automated e-mail carries, per office or company.
        Migration("AddEntityPostalAddress", ["ALTER TABLE entities ADD COLUMN postal_address text"]),
        // A timeline entry or task no longer locks its contact's row. A foreign key's check takes
        // FOR KEY SHARE on the contact: every entry of a delivery log, a plan's step or a task
        // wrote a lock to the contact's tuple (WAL, a dirtied page), and entries for one contact
        // from concurrent transactions made multixacts that every later read of the contact
        // resolved. Contacts are never deleted (only marked `deleted_at`), so the inserts' own
        // check that the contact exists, in the same statement, keeps what the key kept.
        Migration("EntriesWithoutContactLocks", [
            "ALTER TABLE timeline DROP CONSTRAINT timeline_contact_id_fkey",
            "ALTER TABLE tasks DROP CONSTRAINT tasks_contact_id_fkey",
        ]),
    ]
}
