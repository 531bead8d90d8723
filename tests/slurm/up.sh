#!/usr/bin/env bash
# Bring up a two-node SLURM on this machine for the tests: Debian's packages, no accounting,
# and fake GPUs (a `gpu` GRES backed by character devices) so GPU-requesting jobs can be
# scheduled on a machine without one. Both nodes are `slurmd` daemons on this host, told apart
# by name (`slurmd -N`) and port: SLURM's "multiple slurmd" setup, which Debian's build
# accepts. They share this host's filesystem, as nodes share a network filesystem. Daemons are
# started directly (no systemd). Idempotent: a cluster that already answers with this
# configuration is left as it is. Needs root.
#   NODES       nodes (default 2), named node1, node2, ...
#   FAKE_GPUS   GPUs each node offers (default 2)
#   NODE_CPUS   CPUs each node offers, whatever the hardware has (default 2: a job of the tests
#               fills a node, so jobs that run at the same time land on different nodes)
set -euo pipefail
NODES=${NODES:-2}
FAKE_GPUS=${FAKE_GPUS:-2}
NODE_CPUS=${NODE_CPUS:-2}
HOST=$(hostname -s)

[ "$(id -u)" = 0 ] || { echo "up.sh: needs root (it writes /etc/slurm and starts daemons)" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q slurmctld slurmd slurm-client munge
fi

# munge: one key, shared by the controller and the nodes (they are the same machine)
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
fi

# fake GPUs: SLURM only needs device files to count; these behave like /dev/null
NAMES=()
for ((n = 1; n <= NODES; n++)); do
    NAMES+=("node$n")
    mkdir -p /var/lib/slurm-fake-gpu/node$n /var/spool/slurmd/node$n
    for ((i = 0; i < FAKE_GPUS; i++)); do
        [ -c /var/lib/slurm-fake-gpu/node$n/gpu$i ] || mknod /var/lib/slurm-fake-gpu/node$n/gpu$i c 1 3
    done
done

mkdir -p /etc/slurm /var/spool/slurmctld /var/log/slurm
MEMORY_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
# The job-step plugin drops SLURM_CONF inside jobs, so the config must sit at the default path.
OLD_CONF=$(cat /etc/slurm/slurm.conf /etc/slurm/gres.conf 2>/dev/null || true)
{
cat <<CONF
ClusterName=alpacare-test
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
# one spool directory, pid file and log per node: %n is the node's name
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# no accounting daemon: job records live only in the controller, for MinJobAge seconds,
# which must stay well above the executor's first status check
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
ReturnToService=2
# the nodes may claim more CPUs and memory than the hardware has (a test machine is small)
SlurmdParameters=config_overrides
GresTypes=gpu
CONF
for ((n = 1; n <= NODES; n++)); do
    echo "NodeName=node$n NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((17000 + n)) CPUs=$NODE_CPUS RealMemory=$MEMORY_MB Gres=gpu:fake:$FAKE_GPUS State=UNKNOWN"
done
echo "PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
} > /etc/slurm/slurm.conf
{
echo "AutoDetect=off"
for ((n = 1; n <= NODES; n++)); do
    echo "NodeName=node$n Name=gpu Type=fake File=/var/lib/slurm-fake-gpu/node$n/gpu[0-$((FAKE_GPUS - 1))]"
done
} > /etc/slurm/gres.conf

daemons() { pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; }
if [ "$OLD_CONF" != "$(cat /etc/slurm/slurm.conf /etc/slurm/gres.conf)" ]; then
    # a changed configuration: stop the daemons this script started (their pid files, this
    # layout's and the one-node layout's), and forget the old nodes' saved state
    for pidfile in /run/slurmctld.pid /run/slurmd.pid /run/slurmd-*.pid; do
        [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    for _ in $(seq 30); do daemons || break; sleep 1; done
    rm -f /var/spool/slurmctld/node_state*
fi
pgrep -x slurmctld >/dev/null || slurmctld
for name in "${NAMES[@]}"; do
    pid=$(cat "/run/slurmd-$name.pid" 2>/dev/null || true)
    { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || slurmd -N "$name"
done

for _ in $(seq 60); do
    ready=0
    for name in "${NAMES[@]}"; do
        state=$(sinfo -h -n "$name" -o %T 2>/dev/null || true)
        case "$state" in
            idle*|mixed*|allocated*) ready=$((ready + 1)) ;;
            down*|drain*) scontrol update nodename="$name" state=resume 2>/dev/null || true ;;
        esac
    done
    if [ "$ready" = "$NODES" ]; then echo "up.sh: SLURM up, nodes ${NAMES[*]}"; sinfo -N; exit 0; fi
    sleep 1
done
echo "up.sh: not every node became idle:" >&2
sinfo -N >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd-*.log >&2 || true
exit 1
