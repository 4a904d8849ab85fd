#!/usr/bin/env bash
# Stops the localhost SLURM that .ci/slurm-up.sh started (by pid file).
set -u
for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
exit 0
