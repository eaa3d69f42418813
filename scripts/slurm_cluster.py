"""A throwaway single-node SLURM cluster in a folder, for tests, benches and trying the backend.

    python scripts/slurm_cluster.py start /tmp/slurm     # prints: export SLURM_CONF=/tmp/slurm/slurm.conf
    python scripts/slurm_cluster.py stop /tmp/slurm

Starts munged (its own key and socket), slurmctld and slurmd directly (no
systemd) from the Debian packages ``slurmctld slurmd slurm-client munge``,
with every file (config, state, spool, logs, pid files) inside the folder and
free TCP ports, so it touches nothing system-wide and several can coexist.
Clients find it through ``SLURM_CONF``. The node offers ``cpus`` CPUs
(default 8, more than the machine may have: ``config_overrides``) and
``DefMemPerCPU`` is set so that jobs without ``--mem`` do not each claim the
whole node. No slurmdbd: ``sacct`` is unavailable, as on many small clusters. Job
credentials live 10 s (``cred_expire``) instead of 120 s, which is also how
long SLURM holds a requeued job before running it again.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing_binaries() -> list[str]:
    return [b for b in DAEMONS + ("sbatch", "squeue", "scontrol", "scancel") if shutil.which(b) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: str, cpus: int = 8, memory_mb: int = 8000, max_array_size: int = 1001) -> str:
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "log"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    p = lambda name: os.path.join(folder, name)  # noqa: E731
    conf = f"""\
ClusterName=sheetrun
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={p('munge.socket')},cred_expire=10
CredType=cred/munge
StateSaveLocation={p('state')}
SlurmdSpoolDir={p('spool')}
SlurmctldPidFile={p('slurmctld.pid')}
SlurmdPidFile={p('slurmd.pid')}
SlurmctldLogFile={p('log/slurmctld.log')}
SlurmdLogFile={p('log/slurmd.log')}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=600
MaxArraySize={max_array_size}
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    path = p("slurm.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def start(folder: str, cpus: int = 8, max_array_size: int = 1001, timeout: float = 30.0) -> str:
    """Start the three daemons; returns the path for ``SLURM_CONF`` once the node is idle."""
    missing = missing_binaries()
    if missing:
        raise RuntimeError("SLURM is not installed (missing " + ", ".join(missing) +
                           "); apt-get install slurmctld slurmd slurm-client munge")
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    conf = write_config(folder, cpus=cpus, max_array_size=max_array_size)
    key = os.path.join(folder, "munge.key")
    with open(key, "wb") as f:
        f.write(os.urandom(1024))
    os.chmod(key, 0o600)
    log = lambda name: os.path.join(folder, "log", name)  # noqa: E731
    env = dict(os.environ, SLURM_CONF=conf)
    subprocess.run(["munged", f"--key-file={key}", f"--socket={os.path.join(folder, 'munge.socket')}",
                    f"--pid-file={os.path.join(folder, 'munged.pid')}", f"--log-file={log('munged.log')}",
                    f"--seed-file={os.path.join(folder, 'munge.seed')}", "--force"], check=True, env=env)
    subprocess.run(["slurmctld", "-f", conf, "-i"], check=True, env=env)      # -i: ignore old state
    subprocess.run(["slurmd", "-f", conf], check=True, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env)
        if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
            return conf
        time.sleep(0.3)
    stop(folder)
    raise RuntimeError(f"the SLURM node did not come up in {timeout:.0f}s; see {folder}/log/")


def stop(folder: str) -> None:
    """Stop the daemons by their pid files (slurmd first)."""
    for name in ("slurmd", "slurmctld", "munged"):
        pidfile = os.path.join(folder, f"{name}.pid")
        try:
            pid = int(open(pidfile).read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("folder")
    parser.add_argument("--cpus", type=int, default=8)
    args = parser.parse_args(argv)
    if args.action == "start":
        print(f"export SLURM_CONF={start(args.folder, cpus=args.cpus)}")
    else:
        stop(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
