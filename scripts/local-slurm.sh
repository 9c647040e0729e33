#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying `vae-train -m hydra/launcher=slurm ...` and for the tests.
#
#   scripts/local-slurm.sh start     install slurm-wlm + munge if missing (Debian), configure, start; idempotent
#   scripts/local-slurm.sh status    the node, the partitions, the queue
#   scripts/local-slurm.sh stop      cancel every job, stop the daemons
#
# Runs as root and without systemd (containers, CI). What it does differently from a stock install, and why:
# - munged is started by hand (apt does not start it in a container), as the munge user, with a fresh key;
# - SelectType=select/cons_tres with CR_CPU: jobs share the node by CPU (the default select/linear runs one job
#   per node at a time, so a "parallel" sweep would run one job after another);
# - RealMemory is set to the machine's memory: otherwise it is 1 MB and any --mem (hydra.launcher.mem_gb) is refused;
# - no accounting database (slurmdbd needs a MySQL server): finished jobs stay visible to `scontrol` for an hour
#   (MinJobAge), and vae-cli's SLURM launcher reads job states from there when `sacct` has no accounting to read;
# - partitions "debug" (the default) and "gpu" (the same node: lets hydra.launcher.partition=gpu examples run here).
# State, logs and the config live in $VAE_CLI_SLURM_DIR (default /var/lib/vae-cli-slurm).
set -euo pipefail

STATE="${VAE_CLI_SLURM_DIR:-/var/lib/vae-cli-slurm}"
CONF_DIR=/etc/slurm
NODE="$(hostname -s)"

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "local-slurm: run as root (it installs packages and starts system daemons)" >&2
    exit 2
  fi
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
    return
  fi
  echo "local-slurm: installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
  if pgrep -x munged >/dev/null; then
    return
  fi
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
}

write_config() {
  local cpus mem_mb
  cpus="$(nproc)"
  mem_mb="$(awk '/MemTotal/ {print int($2 / 1024) - 512}' /proc/meminfo)"
  mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d"
  cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by vae-cli's scripts/local-slurm.sh: a one-node cluster for trying and testing (see the script).
ClusterName=vae-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=60
KillWait=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
}

start() {
  need_root
  install_packages
  start_munge
  write_config
  pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
  pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "local-slurm: up: node $NODE ($(nproc) CPUs), partitions debug (default) and gpu"
      return
    fi
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  echo "local-slurm: the node did not come up; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
  exit 1
}

stop() {
  need_root
  scancel --full --quiet -u root 2>/dev/null || true
  for daemon in slurmd slurmctld munged; do
    pkill -x "$daemon" 2>/dev/null || true
  done
  for _ in $(seq 1 30); do
    pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || { echo "local-slurm: stopped"; return; }
    sleep 0.5
  done
  pkill -9 -x slurmd 2>/dev/null || true
  pkill -9 -x slurmctld 2>/dev/null || true
  echo "local-slurm: stopped (forced)"
}

status() {
  if ! pgrep -x slurmctld >/dev/null; then
    echo "local-slurm: not running (scripts/local-slurm.sh start)"
    exit 3
  fi
  sinfo
  squeue
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: scripts/local-slurm.sh start|stop|status" >&2
    exit 2
    ;;
esac
