#!/usr/bin/env bash
# Bring up a one-node SLURM on this machine for the tests: Debian's packages, no accounting,
# and fake GPUs (a `gpu` GRES backed by character devices) so GPU-requesting jobs can be
# scheduled on a machine without one. Daemons are started directly (no systemd). Idempotent:
# a cluster that already answers is left as it is. Needs root.
#   FAKE_GPUS   GPUs the node offers (default 4)
#   NODE_CPUS   CPUs the node offers, whatever the hardware has (default 8)
set -euo pipefail
FAKE_GPUS=${FAKE_GPUS:-4}
NODE_CPUS=${NODE_CPUS:-8}
NODE=$(hostname -s)

[ "$(id -u)" = 0 ] || { echo "up.sh: needs root (it writes /etc/slurm and starts daemons)" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q slurmctld slurmd slurm-client munge
fi

# munge: one key, shared by the controller and the node (they are the same machine)
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
mkdir -p /var/lib/slurm-fake-gpu
for ((i = 0; i < FAKE_GPUS; i++)); do
    [ -c /var/lib/slurm-fake-gpu/gpu$i ] || mknod /var/lib/slurm-fake-gpu/gpu$i c 1 3
done

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
MEMORY_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
# The job-step plugin drops SLURM_CONF inside jobs, so the config must sit at the default path.
OLD_CONF=$(cat /etc/slurm/slurm.conf /etc/slurm/gres.conf 2>/dev/null || true)
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=alpacare-test
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
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
# the node may claim more CPUs and memory than the hardware has (a test machine is small)
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$MEMORY_MB Gres=gpu:fake:$FAKE_GPUS State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=$NODE Name=gpu Type=fake File=/var/lib/slurm-fake-gpu/gpu[0-$((FAKE_GPUS - 1))]
CONF

if [ "$OLD_CONF" != "$(cat /etc/slurm/slurm.conf /etc/slurm/gres.conf)" ]; then
    # a changed configuration: restart the daemons this script started (their pid files)
    for pidfile in /run/slurmctld.pid /run/slurmd.pid; do
        [ -s $pidfile ] && kill "$(cat $pidfile)" 2>/dev/null || true
    done
    for _ in $(seq 30); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 1; done
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 60); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$state" in
        idle*|mixed*|allocated*) echo "up.sh: SLURM up, node $NODE $state"; sinfo; exit 0 ;;
        down*|drain*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "up.sh: node $NODE did not become idle (state: ${state:-none}); logs in /var/log/slurm/" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
