#!/bin/sh
# The first start: a cluster in the empty data directory. Local connections are checked
# by uid (peer: uid 999 is the superuser postgres), TCP ones by password.
set -eu
if [ -s "$PGDATA/PG_VERSION" ]; then
    echo "initdb: $PGDATA already holds a cluster"
    exit 0
fi
initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
# Clients may come from outside the container (podman run -p 5432:5432).
echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
echo "initdb: made a cluster in $PGDATA"
