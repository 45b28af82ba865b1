#!/usr/bin/env bash
# Stop the SLURM test cluster that up.sh started: exactly the daemons whose pids up.sh recorded in
# $IRNO_SLURM_STATE/run (and that still run the program it started), in reverse order of start.
# Jobs still running are cancelled first. Packages, configuration, the accounting database and
# logs stay, so the next up.sh is quick. Safe to run when nothing is up.
set -euo pipefail

STATE=${IRNO_SLURM_STATE:-/var/lib/irno-slurm}
RUN=$STATE/run

say() { echo "down.sh: $*"; }

[[ $(id -u) == 0 ]] || { echo "down.sh: error: must run as root" >&2; exit 2; }
[[ -d $RUN ]] || { say "nothing to stop (no $RUN)"; exit 0; }

# stop NAME PROGRAM: SIGTERM the recorded pid if it still runs PROGRAM, wait, then SIGKILL.
stop() {
    local pidfile=$RUN/$1.pid pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$2"* ]]; then
        say "stopping $1 (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            say "$1 (pid $pid) ignored SIGTERM for 10 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# Job steps run under slurmstepd, which outlives slurmd: cancel the jobs so that none outlives
# the cluster, and give them KillWait (5 s) to end.
if [[ -s $RUN/slurmctld.pid && $(scontrol ping 2>/dev/null) == *UP* ]]; then
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [[ -n $jobs ]]; then
        say "cancelling the jobs still queued or running: $jobs"
        # shellcheck disable=SC2086 # one word per job id
        scancel $jobs || true
        for _ in $(seq 150); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.1
        done
    fi
fi

stop slurmd slurmd
stop slurmctld slurmctld
stop slurmdbd slurmdbd
stop mariadbd mariadbd
stop munged munged
say "down"
