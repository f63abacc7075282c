#!/bin/sh
# The app's role, database and schema; each statement does nothing when already done,
# so this runs at every start.
set -eu
sql() {
    psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 --host /run/postgresql "$@"
}
sql --dbname postgres --set password="$APP_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE app LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app')
\gexec
ALTER ROLE app PASSWORD :'password';
SELECT 'CREATE DATABASE app OWNER app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app')
\gexec
SQL
sql --dbname app <<'SQL'
CREATE TABLE IF NOT EXISTS heartbeats (
    id bigserial PRIMARY KEY,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE heartbeats OWNER TO app;
SQL
echo "migrate: schema is up to date"
