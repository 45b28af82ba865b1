#!/usr/bin/env bash
# Start a single-node SLURM test cluster on this machine: munged, MariaDB + slurmdbd (so `sacct`
# answers, as on real clusters), slurmctld and `slurmd -N localhost`, a GPU and a CPU partition on
# the one node (feature `testnode`), and two fake GPUs of model `fake` (Gres=gpu:fake:2 on
# /dev/null and /dev/zero: `--gpus=N` and `--gpus=fake:N` jobs schedule and see
# CUDA_VISIBLE_DEVICES, so two GPU jobs run side by side and a 2-GPU job can start DDP; there is
# no CUDA behind them, so a job that wants one fails as on a node without a driver).
#
# For Debian 12, as root, without systemd or cgroups (containers, CI). Installs the Debian packages
# when missing. Idempotent: when everything is up already it only says so (so a change to the
# configuration below takes effect after down.sh). Every daemon runs in the foreground under
# `setsid`, with its pid in $IRNO_SLURM_STATE/run, so down.sh stops exactly what this script
# started and nothing else.
#
#   tests/slurm/up.sh          # bring the cluster up (prints the seconds it took)
#   tests/slurm/down.sh        # stop it again
#
# Environment: IRNO_SLURM_STATE (default /var/lib/irno-slurm) holds pids, logs, the database and
# SLURM's spool; IRNO_SLURM_DB_PORT (default 3306) is the loopback port of the database.
# Exit status: 0 up, 1 failed (the log to read is named), 2 cannot run here (not root, not Debian).
set -euo pipefail

STATE=${IRNO_SLURM_STATE:-/var/lib/irno-slurm}
DB_PORT=${IRNO_SLURM_DB_PORT:-3306}
RUN=$STATE/run
LOG=$STATE/log
CLUSTER=irno
PARTITION=gpu
CPU_PARTITION=cpu
ACCOUNT=irno  # a second account for root besides its default "root": tests can see -A take effect
QOS=high      # a second QOS besides `normal`: tests can see --qos take effect
MARK="# Written by the irno test cluster (tests/slurm/up.sh)."
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
START=$EPOCHREALTIME

say() { echo "up.sh: $*"; }
die() { echo "up.sh: error: $*" >&2; exit "${2:-1}"; }

[[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts system daemons)" 2
if ! command -v apt-get >/dev/null || [[ ! -r /etc/debian_version ]]; then die "needs Debian (apt-get)" 2; fi

# pid of a daemon we started, if it still runs that program; empty otherwise.
alive() {
    local pidfile=$RUN/$1.pid pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    [[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$2"* ]] && echo "$pid"
    return 0
}

# start NAME PROGRAM ARGS...: run one daemon in the foreground, detached, and record its pid.
start() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$LOG/$name.out" 2>&1 &
    echo $! >"$RUN/$name.pid"
}

# wait_for DAEMON SECONDS COMMAND...: poll until COMMAND succeeds; fail early if DAEMON died.
wait_for() {
    local daemon=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        # (only the pid: right after the start it may still be setsid or setpriv, not yet $daemon)
        [[ -d /proc/$(<"$RUN/$daemon.pid") ]] || die "$daemon exited; see $LOG/$daemon.*"
        ((SECONDS < deadline)) || die "$daemon did not answer \`$*\` within ${seconds} s; see $LOG/$daemon.*"
        sleep 0.5
    done
}

node_idle() { [[ $(sinfo -h -n localhost -o %T 2>/dev/null) == idle* ]]; }

if [[ -n $(alive munged munged) && -n $(alive mariadbd mariadbd) && -n $(alive slurmdbd slurmdbd) &&
    -n $(alive slurmctld slurmctld) && -n $(alive slurmd slurmd) ]] && node_idle; then
    say "already up (state in $STATE); nothing to do"
    exit 0
fi

mkdir -p "$RUN" "$LOG" "$STATE/slurmctld" "$STATE/slurmd"
chmod 755 "$STATE"

# --- packages -------------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    # Keep the packages' own start scripts from launching daemons we would not own.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$LOG/apt.out" 2>&1 || die "apt-get install failed; see $LOG/apt.out"
fi
mkdir -p /run/munge /etc/slurm

# --- configuration, generated for this host --------------------------------------------------------
if [[ -e /etc/slurm/slurm.conf ]] && ! grep -qF "$MARK" /etc/slurm/slurm.conf; then
    die "/etc/slurm/slurm.conf exists and was not written by this script; refusing to replace it" 2
fi
# The node as slurmd sees it (sockets, cores, threads, memory); keep 10 % of memory for the OS.
read -r CPUS BOARDS SOCKETS CORES THREADS MEMORY < <(slurmd -C | awk -v RS='[ \n]+' -F= '
    /^CPUs=/{c=$2} /^Boards=/{b=$2} /^SocketsPerBoard=/{s=$2} /^CoresPerSocket=/{k=$2}
    /^ThreadsPerCore=/{t=$2} /^RealMemory=/{m=$2} END{print c, b, s, k, t, m}')
MEMORY=$((MEMORY * 9 / 10))

write_if_changed() {  # write stdin to $1 through a temporary name, only when it differs
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else chmod "$2" "$tmp" && mv -f "$tmp" "$1"; fi
}

write_if_changed /etc/slurm/slurm.conf 644 <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits out the credential lifetime before it starts again (default 120 s).
AuthInfo=cred_expire=30
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.ownpid
SlurmdPidFile=$RUN/slurmd.ownpid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No systemd and no cgroups here: track a job's processes by process group, which (unlike
# proctrack/linuxproc's parent links) still finds a process orphaned when its parent died, so
# cancelling a job or reaching its time limit ends all of it.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default every job would ask for the whole node's memory.
DefMemPerCPU=1000
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# Record GPUs in AllocTRES, and job comments (Snakemake's rule names), for sacct.
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# A cancelled or timed-out job gets SIGTERM, then SIGKILL 5 s later (default 30 s).
KillWait=5
# Finished jobs stay visible to squeue for 5 minutes, long enough for status polling.
MinJobAge=300
# Schedule every 5 s (defaults 60 s and 30 s), so a requeued job starts soon after it may.
SchedulerParameters=sched_interval=5,bf_interval=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS Boards=$BOARDS SocketsPerBoard=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEMORY Gres=gpu:fake:2 Features=testnode State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=$CPU_PARTITION Nodes=localhost MaxTime=INFINITE State=UP
EOF

write_if_changed /etc/slurm/gres.conf 644 <<EOF
$MARK
# Two fake GPUs of model `fake`: SLURM wants a character device per GPU; jobs asking for --gpus=N
# schedule and see CUDA_VISIBLE_DEVICES (0, 1 or 0,1). Nothing is there: a job that wants CUDA
# fails as on a node without a driver; the tests' config runs on the CPU deliberately (device: cpu).
NodeName=localhost Name=gpu Type=fake File=/dev/null
NodeName=localhost Name=gpu Type=fake File=/dev/zero
EOF

if [[ ! -s $STATE/db.password ]]; then
    (umask 077 && head -c 32 /dev/urandom | sha256sum | cut -c1-32 >"$STATE/db.password")
fi
write_if_changed /etc/slurm/slurmdbd.conf 600 <<EOF
$MARK
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.ownpid
LogFile=$LOG/slurmdbd.log
AuthType=auth/munge
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(<"$STATE/db.password")
StorageLoc=slurm_acct_db
EOF

# --- munge -------------------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
chown munge:munge /run/munge
if [[ -z $(alive munged munged) ]]; then
    say "starting munged"
    start munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
fi
wait_for munged 20 bash -c 'munge -n | unmunge'

# --- MariaDB, a private instance on loopback ---------------------------------------------------------
DB_SOCKET=$STATE/mysql/mariadbd.sock  # in the datadir: mariadbd runs as mysql
if [[ ! -d $STATE/mysql/mysql ]]; then
    say "initialising the accounting database in $STATE/mysql"
    mkdir -p "$STATE/mysql"
    chown mysql:mysql "$STATE/mysql"
    mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" --skip-test-db \
        --auth-root-authentication-method=socket >"$LOG/mariadb-install.out" 2>&1 ||
        die "mariadb-install-db failed; see $LOG/mariadb-install.out"
fi
if [[ -z $(alive mariadbd mariadbd) ]]; then
    say "starting mariadbd on 127.0.0.1:$DB_PORT"
    # A small buffer pool is plenty for a test cluster (slurmdbd logs that it would like more).
    start mariadbd /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" \
        --socket="$DB_SOCKET" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --pid-file="$STATE/mysql/mariadbd.ownpid" --log-error="$LOG/mariadbd.log" \
        --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900
fi
wait_for mariadbd 60 mariadb-admin --no-defaults --socket="$DB_SOCKET" ping
mariadb --no-defaults --socket="$DB_SOCKET" -u root <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(<"$STATE/db.password")';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(<"$STATE/db.password")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF

# --- slurmdbd and the accounts ---------------------------------------------------------------------
if [[ -z $(alive slurmdbd slurmdbd) ]]; then
    say "starting slurmdbd"
    start slurmdbd /usr/sbin/slurmdbd -D
fi
wait_for slurmdbd 60 sacctmgr -n list cluster
# (grep without -q: it reads all of sacctmgr's output, so pipefail never sees a SIGPIPE)
if ! sacctmgr -n -P list cluster format=cluster | grep -x "$CLUSTER" >/dev/null; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! sacctmgr -n -P list account format=account | grep -x "$ACCOUNT" >/dev/null; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="irno tests" >/dev/null
fi
if ! sacctmgr -n -P list assoc user=root format=account | grep -x "$ACCOUNT" >/dev/null; then
    sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
fi
# A QOS besides the default `normal`, so that tests can see --qos take effect.
if ! sacctmgr -n -P list qos format=name | grep -x "$QOS" >/dev/null; then
    sacctmgr -i add qos "$QOS" >/dev/null
fi
if ! sacctmgr -n -P list assoc user=root account="$ACCOUNT" format=qos | tr ',' '\n' | grep -x "$QOS" >/dev/null; then
    sacctmgr -i modify user root where account="$ACCOUNT" set qos+="$QOS" >/dev/null
fi

# --- slurmctld and slurmd ----------------------------------------------------------------------------
if [[ -z $(alive slurmctld slurmctld) ]]; then
    say "starting slurmctld"
    start slurmctld /usr/sbin/slurmctld -D
fi
wait_for slurmctld 60 bash -c 'scontrol ping | grep -q UP'
if [[ -z $(alive slurmd slurmd) ]]; then
    say "starting slurmd"
    start slurmd /usr/sbin/slurmd -D -N localhost
fi
wait_for slurmd 60 bash -c "sinfo -h -n localhost -o %T | grep -qvE 'unk|down|not_responding'"
# A node left down or drained by an earlier, unclean stop is put back in service.
if ! node_idle; then
    scontrol update nodename=localhost state=resume 2>/dev/null || true
fi
wait_for slurmd 60 node_idle

say "up in $(awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b - a}') s: partitions $PARTITION and \
$CPU_PARTITION, account $ACCOUNT, node localhost (${CPUS} CPUs, ${MEMORY} MB, gpu:fake:2, feature testnode); logs in $LOG"
