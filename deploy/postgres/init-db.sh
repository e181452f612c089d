#!/usr/bin/env bash
# Creates the database, one login role and one schema per service, and the shared virtual-clock
# row. Idempotent. Used by scripts/run and by the postgres container in docker-compose.
# Needs: psql on PATH; PGHOST, PGPORT, PGUSER, PGPASSWORD for a superuser; CRM_DATABASE;
# CRM_PASSWORD_<SERVICE> for each service role.
set -euo pipefail
db=${CRM_DATABASE:-crm}
services=(contacts routing automation accountability smartplans notifications)
psql_su() { psql -v ON_ERROR_STOP=1 -X -q "$@"; }

if [ -z "$(psql_su -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
  psql_su -d postgres -c "CREATE DATABASE \"$db\""
fi
for svc in "${services[@]}"; do
  var="CRM_PASSWORD_${svc^^}"
  password=${!var:?$var must be set}
  psql_su -d "$db" -v role="$svc" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')\gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'password')\gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'role', :'role')\gexec
SELECT format('REVOKE ALL ON SCHEMA public FROM %I', :'role')\gexec
SQL
done
# The services' working sets are in memory (or on SSD): a random read costs about what a
# sequential one does. At the default 4, lookups of a few hundred keys by ANY(array) or a join
# to unnest planned whole-table scans of tables of 10,000 rows.
psql_su -d postgres -c "ALTER DATABASE \"$db\" SET random_page_cost = 1.1"
psql_su -d "$db" <<'SQL'
CREATE SCHEMA IF NOT EXISTS platform;
CREATE TABLE IF NOT EXISTS platform.clock (id int PRIMARY KEY CHECK (id = 1), now timestamptz NOT NULL);
INSERT INTO platform.clock (id, now) VALUES (1, date_trunc('second', now())) ON CONFLICT (id) DO NOTHING;
SQL
for svc in "${services[@]}"; do
  psql_su -d "$db" -c "GRANT USAGE ON SCHEMA platform TO \"$svc\"; GRANT SELECT, UPDATE ON platform.clock TO \"$svc\";"
done
