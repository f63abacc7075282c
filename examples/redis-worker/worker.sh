#!/bin/sh
# The worker: takes each job from the list "jobs" and pushes "JOB done by PID" to "done".
#
# bundle-init sends the stop signal to the worker's whole process group (signal-group =
# yes in jobs.bundle): the redis-cli waiting in BLPOP gets it too, since the shell would
# only act on its own signal once that redis-cli returned. The trap makes the shell wait
# for its children to end before it exits, so nothing of the worker outlives it.
set -eu
trap 'echo "worker: stopping"; exit 0' TERM INT
echo "worker: started (pid $$)"
while :; do
    # BLPOP answers the list's name and the job, on two lines; 0 waits for ever.
    redis-cli -h 127.0.0.1 --raw BLPOP jobs 0 | {
        read -r list
        read -r job
        redis-cli -h 127.0.0.1 RPUSH done "$job done by $$" >/dev/null
        echo "worker: $job done"
    }
done
