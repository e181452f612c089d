import ServiceKit

/// Notifications' own tables, in the order they were added.
enum NotificationsMigrations {
    static let all: [Migration] = DirectoryReplica.migrations + ContactReplica.migrations + [
        Migration("CreateMessages", [
            """
            CREATE TABLE messages (
                id uuid PRIMARY KEY,
                company_id uuid NOT NULL,
                channel text NOT NULL,
                direction text NOT NULL,
                purpose text NOT NULL,
                state text NOT NULL,
                contact_id uuid,
                user_id uuid,
                to_address text NOT NULL,
                provider text,
                provider_id text,
                created_at timestamptz NOT NULL,
                sent_at timestamptz,
                doc jsonb NOT NULL)
            """,
            "CREATE INDEX messages_contact ON messages (contact_id, created_at DESC, id DESC) WHERE contact_id IS NOT NULL",
            "CREATE INDEX messages_user ON messages (user_id, created_at DESC, id DESC) WHERE user_id IS NOT NULL",
            "CREATE INDEX messages_company ON messages (company_id, created_at DESC, id DESC)",
            "CREATE UNIQUE INDEX messages_provider_id ON messages (provider, provider_id, company_id) WHERE provider_id IS NOT NULL",
            """
            CREATE INDEX messages_automated_sent ON messages (to_address, sent_at)
                WHERE purpose = 'automated' AND direction = 'outbound' AND sent_at IS NOT NULL
            """,
        ]),
        Migration("CreateIdempotencyKeys", [
            """
            CREATE TABLE idempotency_keys (
                caller text NOT NULL,
                key text NOT NULL,
                fingerprint text NOT NULL,
                status int NOT NULL,
                response text NOT NULL,
                created_at timestamptz NOT NULL,
                PRIMARY KEY (caller, key))
            """,
        ]),
        Migration("CreateMessageAttempts", [
            // No foreign key: the sender holds the message row while another connection writes
            // the attempt, and a key-share lock would wait on it.
            """
            CREATE TABLE message_attempts (
                message_id uuid NOT NULL,
                number int NOT NULL,
                started_at timestamptz NOT NULL,
                finished_at timestamptz,
                outcome text NOT NULL,
                provider_id text,
                error text,
                PRIMARY KEY (message_id, number))
            """,
        ]),
        Migration("CreateConsent", [
            """
            CREATE TABLE dnc_numbers (
                company_id uuid NOT NULL,
                number text NOT NULL,
                source text NOT NULL,
                added_by text NOT NULL,
                added_at timestamptz NOT NULL,
                PRIMARY KEY (company_id, number))
            """,
            """
            CREATE TABLE opt_out_ledger (
                id uuid PRIMARY KEY,
                number text NOT NULL,
                action text NOT NULL,
                how text NOT NULL,
                recorded_by text NOT NULL,
                at timestamptz NOT NULL,
                seq bigserial)
            """,
            "CREATE INDEX opt_out_ledger_number ON opt_out_ledger (number, seq DESC)",
            """
            CREATE TABLE opt_outs (
                number text PRIMARY KEY,
                opted_out boolean NOT NULL,
                updated_at timestamptz NOT NULL)
            """,
        ]),
        Migration("CreateWebhookReceipts", [
            """
            CREATE TABLE webhook_receipts (
                provider text NOT NULL,
                provider_id text NOT NULL,
                kind text NOT NULL,
                received_at timestamptz NOT NULL,
                PRIMARY KEY (provider, provider_id, kind))
            """,
        ]),
        Migration("CreateLocalDeliveries", [
            """
            CREATE TABLE local_deliveries (
                id text PRIMARY KEY,
                message_id uuid NOT NULL UNIQUE,
                channel text NOT NULL,
                to_address text NOT NULL,
                subject text,
                body text NOT NULL,
                at timestamptz NOT NULL)
            """,
        ]),
    ] + DirectoryReplica.userPreferences + [
        // X-1, NT-5: an opt-out someone asked a brokerage for by hand (a call, an e-mail) binds that
        // brokerage; the recipient's own STOP binds every company, and stays in `opt_outs`. A
        // ledger row names the company whose record it is (NULL: the recipient's own word).
        Migration("OptOutsPerCompany", [
            "ALTER TABLE opt_out_ledger ADD COLUMN company_id uuid",
            """
            CREATE TABLE company_opt_outs (
                company_id uuid NOT NULL,
                number text NOT NULL,
                at timestamptz NOT NULL,
                PRIMARY KEY (company_id, number))
            """,
        ]),
    ] + DirectoryReplica.userLender + DirectoryReplica.entityAddress + [
        // CAN-SPAM: an address unsubscribed from one company's automated e-mail (the ledger keeps
        // when and how).
        Migration("CreateEmailUnsubscribes", [
            """
            CREATE TABLE email_unsubscribes (
                company_id uuid NOT NULL,
                address text NOT NULL,
                at timestamptz NOT NULL,
                PRIMARY KEY (company_id, address))
            """,
        ]),
        // AC-1, AC-3: how a call's <Dial> to the lead ended, and who or what answered, each
        // recorded once (the machine's verdict and the dial's end arrive as two webhooks).
        Migration("CreateDials", [
            """
            CREATE TABLE dials (
                message_id uuid PRIMARY KEY,
                answered_by text,
                status text,
                seconds integer,
                at timestamptz NOT NULL)
            """,
        ]),
        // A message's document is only ever stored and read whole (the columns beside it are what
        // queries look at): as jsonb, every write parsed it and every read printed it again, a
        // message's 1-2 KB three or four times over its life.
        Migration("MessageDocumentAsText", ["ALTER TABLE messages ALTER COLUMN doc TYPE text USING doc::text"]),
    ]
}
