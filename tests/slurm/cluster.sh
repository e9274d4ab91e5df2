#!/usr/bin/env bash
# A single-node SLURM cluster on loopback for the CI tier (Debian's slurm-wlm 22.05 + munge).
#   tests/slurm/cluster.sh install   apt-get install slurm-wlm munge (root)
#   tests/slurm/cluster.sh start     write /etc/slurm/slurm.conf, start munged, slurmctld, slurmd
#   tests/slurm/cluster.sh stop      stop exactly the daemons this script started
# No systemd and no slurmdbd: job status comes from squeue (MinJobAge keeps finished jobs
# visible), and every finished job is recorded by jobcomp/filetxt in $STATE/jobcomp.log.
# PID 1 here does not reap daemons, so a stopped daemon lingers as a zombie: liveness is read
# from /proc/PID/stat, not `kill -0`.
set -euo pipefail
STATE=${SLURM_TEST_STATE:-/tmp/icldistill-slurm}
CONF=/etc/slurm/slurm.conf

alive() {  # alive PID: running and not a zombie
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $(awk '{print $3}' <<<"${stat##*)}") != Z ]]
}

wait_for() {  # wait_for SECONDS COMMAND...
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        (( $(date +%s) < deadline )) || return 1
        sleep 0.5
    done
}

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
}

start() {
    rm -rf "$STATE"/ctld "$STATE"/spool
    mkdir -p "$STATE"/{spool,ctld,log} /etc/slurm /run/munge /var/log/munge /var/lib/munge /etc/munge
    local host node
    host=$(hostname)
    # the node as slurmd sees it, plus two GPUs without devices (GRES count only), so that
    # GPU jobs go through SLURM's real GRES scheduling (--gpus) on a machine without GPUs
    node="$(slurmd -C | head -1) Gres=gpu:2"
    printf "AutoDetect=off\nNodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=gpu File=/dev/zero\n" "$host" "$host" > /etc/slurm/gres.conf
    cat > "$CONF" <<CONF
ClusterName=icldistill-ci
SlurmctldHost=${host}(127.0.0.1)
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
GresTypes=gpu
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
AccountingStorageType=accounting_storage/none
MinJobAge=300
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MpiDefault=none
SchedulerType=sched/backfill
${node}
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chmod 400 /etc/munge/munge.key
    fi
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    munged --force --pid-file "$STATE/munged.pid" --socket /run/munge/munge.socket.2
    wait_for 10 test -S /run/munge/munge.socket.2
    slurmctld -f "$CONF"
    wait_for 20 scontrol ping
    slurmd -f "$CONF"
    wait_for 30 bash -c "sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)'"
    sinfo
}

stop() {
    local name pid
    scancel --user="$(id -un)" 2>/dev/null || true
    for name in slurmd slurmctld munged; do
        [[ -s "$STATE/$name.pid" ]] || continue
        pid=$(cat "$STATE/$name.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 40); do alive "$pid" || break; sleep 0.25; done
        if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
        rm -f "$STATE/$name.pid"
    done
}

"${1:?usage: cluster.sh install|start|stop}"
