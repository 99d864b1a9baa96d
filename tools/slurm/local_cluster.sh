#!/usr/bin/env bash
# A one-node Slurm cluster on loopback, for trying tools/slurm/make_shards.sbatch and for tests/test_slurm.py.
#
#   tools/slurm/local_cluster.sh start DIR     # munged, slurmctld and slurmd; prints `export SLURM_CONF=DIR/slurm.conf`
#   SLURM_CONF=DIR/slurm.conf sbatch --array=0-1 tools/slurm/make_shards.sbatch ...
#   tools/slurm/local_cluster.sh stop DIR      # stops the three daemons started in DIR
#
# Needs root and Debian's slurm-wlm and munge (apt-get install -y slurm-wlm munge). Everything lives in DIR: its own
# munge key and socket, the daemons' state, spool, logs and PID files, so the system's munge and Slurm (if any)
# are left alone. One node, named frostline1, at 127.0.0.1 with this machine's CPUs; SlurmUser=root,
# select/cons_tres (CR_CPU), proctrack/linuxproc, task/none (no CPU binding: the job script passes
# --workers "$SLURM_CPUS_PER_TASK"). The ports are free ones picked at start (SLURM_PORTS="ctld,slurmd" to choose).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
dir=$(realpath -m "$2")

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

stop_pidfiles() {    # SIGTERM the processes whose PIDs the files hold (only those), then wait up to 10 s for them
    local file pids=()
    for file in "$@"; do
        [[ -s $file ]] && pids+=("$(cat "$file")")
    done
    [[ ${#pids[@]} -gt 0 ]] && kill "${pids[@]}" 2>/dev/null
    for _ in $(seq 100); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
    rm -f "$@"
}

case $action in
stop)
    stop_pidfiles "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"
    exit 0 ;;
start) ;;
*) usage ;;
esac

for cmd in munged slurmctld slurmd sbatch; do
    command -v "$cmd" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v "$cmd" >/dev/null || { echo "$0: $cmd not found: apt-get install -y slurm-wlm munge" >&2; exit 3; }
done
[[ $(id -u) -eq 0 ]] || { echo "$0: the one-node cluster runs its daemons as root (SlurmUser=root)" >&2; exit 3; }

mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
chmod 0700 "$dir" "$dir/munge"
if [[ ! -s $dir/munge/munge.key ]]; then
    head -c 1024 /dev/urandom > "$dir/munge/munge.key"
    chmod 0400 "$dir/munge/munge.key"
fi
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
       --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"

IFS=, read -r ctld_port slurmd_port <<< "${SLURM_PORTS:-$(free_port),$(free_port)}"
host=$(hostname -s)
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)    # below what slurmd measures
cat > "$dir/slurm.conf" <<EOF
ClusterName=frostline
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=600
InactiveLimit=0
NodeName=frostline1 NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=frostline1 Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$dir/slurm.conf

slurmctld -i -f "$SLURM_CONF"
slurmd -N frostline1 -f "$SLURM_CONF"

for _ in $(seq 300); do    # up to 30 s for the node to register as idle
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [[ $state == idle ]] && { echo "export SLURM_CONF=$SLURM_CONF"; exit 0; }
    sleep 0.1
done
echo "$0: the node did not come up (state: ${state:-none}); see $dir/slurmctld.log and $dir/slurmd.log" >&2
tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
exit 4
