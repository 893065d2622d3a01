#!/bin/sh
# Test-only: what a stress-test "playbook run" does on its cluster, as evidence of overlap.
# Usage: record_run.sh FILE JOB_ID TICKS
# Appends "start JOB TIME PID", then "tick JOB TIME" every 0.1 s TICKS times, then "end JOB TIME"
# to FILE (one file per cluster). A run that is killed stops ticking; one that outlives its job
# keeps ticking, so its lines show up inside the next job's run.
set -eu
file=$1
job=$2
ticks=$3
now() { date +%s.%N; }
echo "start $job $(now) $$" >>"$file"
i=0
while [ "$i" -lt "$ticks" ]; do
    sleep 0.1
    echo "tick $job $(now)" >>"$file"
    i=$((i + 1))
done
echo "end $job $(now)" >>"$file"
