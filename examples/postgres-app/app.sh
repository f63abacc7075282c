#!/bin/sh
# The app: a heartbeat row every second, through psql. Stops at once on TERM.
set -eu
sleeper=
# The sleep is waited for too: nothing of the app outlives it.
trap 'kill $sleeper 2>/dev/null || true; wait $sleeper 2>/dev/null || true; echo "app: stopping"; exit 0' TERM INT
echo "app: started (uid $(id -u))"
while :; do
    id=$(psql --no-psqlrc --tuples-only --no-align --quiet \
        --command "INSERT INTO heartbeats (pid) VALUES ($$) RETURNING id")
    echo "app: heartbeat $id"
    sleep 1 &
    sleeper=$!
    wait $sleeper
done
