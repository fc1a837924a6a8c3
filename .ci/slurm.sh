#!/usr/bin/env bash
# A single-node Slurm on this machine (munge, slurmctld, slurmd), for the worker
# launcher test (agent/tests/slurm.rs). Prints the SLURM_CONF path on its last line
# when `srun` works, or why it cannot start, and exits 1. Needs root and Debian's
# `slurm-wlm` and `munge` (.ci/run installs them where apt allows). Started daemons
# are left running for the test; a second call finds them and only checks.
set -u
dir=${NIGHTSHIFT_SLURM_DIR:-/tmp/nightshift-slurm}
conf="$dir/slurm.conf"
say() { echo "slurm: $*" >&2; }
for b in munged slurmctld slurmd srun sinfo; do
  command -v "$b" >/dev/null 2>&1 || { say "no $b (install slurm-wlm and munge)"; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { say "not root: cannot start munged and slurmd"; exit 1; }
# A machine with its own Slurm (a cluster node) is left alone.
if [ -e /etc/slurm/slurm.conf ] || [ -e /etc/slurm-llnl/slurm.conf ]; then
  say "this machine has its own Slurm configuration: not starting another"
  exit 1
fi
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
host=$(hostname -s)
cpus=$(nproc)
if [ ! -f "$conf" ]; then
  cat > "$conf" <<CONF
ClusterName=nightshift
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
fi
export SLURM_CONF="$conf"
# munge: a key, then the daemon.
if ! pgrep -x munged >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    (mungekey -c -f -k /etc/munge/munge.key 2>/dev/null ||
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null)
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
  chmod 400 /etc/munge/munge.key
  if command -v runuser >/dev/null 2>&1 && id munge >/dev/null 2>&1; then
    runuser -u munge -- munged || { say "munged did not start"; exit 1; }
  else
    munged --force || { say "munged did not start"; exit 1; }
  fi
fi
# Ours, by their pid files: a daemon of another Slurm is not taken for ours.
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
running "$dir/slurmctld.pid" || slurmctld -f "$conf" || { say "slurmctld did not start"; exit 1; }
running "$dir/slurmd.pid" || slurmd -f "$conf" || { say "slurmd did not start"; exit 1; }
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    if timeout 20 srun --ntasks=1 true 2>/dev/null; then
      echo "$conf"
      exit 0
    fi
  fi
  sleep 0.5
done
say "the node did not come up: $(sinfo -h 2>&1 | head -n 2)"
tail -n 5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 2>/dev/null
exit 1
