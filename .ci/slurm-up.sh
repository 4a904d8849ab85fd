#!/usr/bin/env bash
# A real single-node SLURM on localhost for tests/test_slurm.py (Debian packages, root).
# Idempotent: installs slurmctld/slurmd/munge if missing, writes the config, starts the
# daemons and waits until the node is idle. Facts behind each step: ../shared/SLURM-CI.md.
# Not root, no apt-get, or no Debian packages reachable: prints why and exits 1 (the
# SLURM test then skips with that reason). Tear down with .ci/slurm-down.sh.
set -euo pipefail

say() { echo "slurm-up: $*"; }

if [ "$(id -u)" != 0 ]; then say "needs root to install and start SLURM"; exit 1; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || { say "no apt-get: install slurmctld, slurmd and munge yourself"; exit 1; }
    say "installing slurmctld slurmd slurm-client munge"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

if sinfo -h -o %T 2>/dev/null | grep -qx idle; then say "already up"; exit 0; fi

host=$(hostname -s)
mkdir -p /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/munge /etc/slurm
chown munge:munge /run/munge
if [ ! -f /etc/munge/munge.key ]; then mungekey --create >/dev/null 2>&1 || /usr/sbin/mungekey --create; fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then runuser -u munge -- /usr/sbin/munged; fi

nodeline=$(slurmd -C | head -n 1)
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=${host}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
GresTypes=gpu
${nodeline} Gres=gpu:1 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# a fake GPU: rules with resources gpu=1 become sbatch --gpus=1, which needs a gpu gres
echo "NodeName=${host} Name=gpu File=/dev/null" > /etc/slurm/gres.conf

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
    if [ "$state" = idle ]; then say "node ${host} idle"; exit 0; fi
    sleep 1
done
say "node did not become idle (state: ${state:-none}); see /var/log/slurm/"
exit 1
