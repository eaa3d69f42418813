"""The job wrapper: runs one row's command and keeps its row and run folder up to date.

The same code runs every job, whatever launched it: the local backend forks
it, a batch system runs ``python -m runner.jobwrapper RUN_FOLDER``. It

1. records its pid and host (``wrapper.json``) and marks the row Running,
2. starts a watcher thread that touches the heartbeat and forwards metrics the
   script reports (``metrics.jsonl``) to the row, batched, every half second,
3. runs the command with stdout/stderr going to the run folder,
4. on SIGTERM/SIGINT ends the command's whole process tree (Cancelled),
5. writes the exit record (``exit.json``), then the final status, exit code,
   walltime, error and metrics into the row.

Sheet writes that fail are kept in ``pending_updates.jsonl`` for
``sheetrun sync``; a sheet problem never fails the job itself. Imports stay
light (no pandas, torch or gspread) because this runs once per job.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

from runner import columns as C
from runner.columns import Status
from runner.report import read_metrics_log
from runner.rundir import (FORWARD_INTERVAL_S, HEARTBEAT_INTERVAL_S, RunDir, format_walltime,
                           read_json, write_json)

KILL_GRACE_S = 5.0
REMOTE_FORWARD_INTERVAL_S = 10.0
# the thread-count variables sheetrun sets for a job (local: cores / jobs; SLURM: --cpus-per-task)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
ERROR_MAX_CHARS = 300


_SHEETS: dict = {}


def _sheet(location: str):
    """One sheet object per location for the job's life (a remote sheet keeps its connection)."""
    if location not in _SHEETS:
        from runner.sheet import open_sheet
        _SHEETS[location] = open_sheet(location)
    return _SHEETS[location]


def push_to_sheet(rd: RunDir, sheet_location: str, run_id: str, values: dict,
                  skip_statuses=()) -> bool:
    """Write values into the run's row; on failure keep them in the run folder.

    Writes held back earlier go first, in the same transaction, so a held-back
    "Running" can never land after the final status.
    """
    try:
        batches = rd.pending_batches() + [(values, skip_statuses)]
        if not _sheet(sheet_location).update_in_order(run_id, batches):
            print(f"sheetrun: no row has run_id {run_id} any more (deleted, or rerun); "
                  f"not written: {values}", file=sys.stderr)
        rd.clear_pending()
        return True
    except Exception as exc:           # the sheet is optional for the job's success
        rd.add_pending(values, skip_statuses)
        print(f"sheetrun: could not update the sheet ({type(exc).__name__}: {exc}); "
              f"kept in {rd.pending}", file=sys.stderr)
        return False


def last_line(path: str, max_bytes: int = 16384) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    for line in reversed(tail.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 3] + "..."


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def load_results(rd: RunDir) -> tuple[dict, str]:
    """Metrics from runner.report plus a script's own results.json (flat object)."""
    metrics, _ = read_metrics_log(rd.metrics_log)
    problem = ""
    try:
        results = read_json(rd.results, None)
    except ValueError as exc:
        results, problem = None, f"results.json is not valid JSON: {exc}"
    if results is not None:
        if isinstance(results, dict) and all(not isinstance(v, (dict, list)) for v in results.values()):
            metrics.update(results)
        else:
            problem = "results.json must be a flat JSON object of name: value"
    reserved = [k for k in metrics if C.is_reserved(k)]
    for k in reserved:
        metrics.pop(k)
    return metrics, problem


def final_row_values(record: dict, metrics: dict) -> dict:
    """The cells a finished job writes: status, exit code, walltime, error, metrics."""
    values = {C.STATUS: record["status"], C.EXIT_CODE: record["exit_code"],
              C.WALLTIME: format_walltime(record["walltime_s"]), C.ERROR: record["error"], **metrics}
    if record["status"] == Status.COMPLETED:
        values[C.WHETHER_TO_RUN] = "0"
    return values


def kill_tree(pid: int, sig: int) -> None:
    """Signal a process group led by ``pid`` (the command runs in its own session)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def slurm_job_id() -> str | None:
    """``<array>_<task>`` (or the plain job id) when running inside a SLURM job."""
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def slurm_stop_reason() -> tuple[str, str] | None:
    """Why SLURM signalled this job, when it was not a plain cancel: (status, error).

    Asked once, right after the signal: a time limit shows as Reason=TimeLimit, a
    requeue (the node went down, preemption with requeue) as the job already PENDING.
    """
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    from runner.slurm.client import SlurmClient, SlurmError

    try:
        info = SlurmClient(timeout_s=10).job_info(job_id)
    except SlurmError:
        return None
    reason, state = info.get("Reason", ""), info.get("JobState", "")
    if state in ("PENDING", "REQUEUED", "REQUEUE_HOLD"):      # stopped in order to run again
        return Status.SUBMITTED, "requeued by SLURM (node failure or preemption); it will run again"
    if reason == "TimeLimit" or state == "TIMEOUT":
        return Status.TIMEOUT, f"time limit reached (TimeLimit={info.get('TimeLimit', '?')})"
    if "Preempt" in reason or state == "PREEMPTED":
        return Status.CANCELLED, "preempted by SLURM"
    return None


def thread_env(job_env: dict) -> dict:
    """Under SLURM, thread counts follow --cpus-per-task unless the row set them."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if not cpus:
        return {}
    return {var: cpus for var in THREAD_VARS if var not in job_env}


def run_job(run_dir: str) -> int:
    rd = RunDir(run_dir)
    job = read_json(rd.job)
    sheet, run_id = job["sheet"], job["run_id"]
    started = time.time()
    job_id = slurm_job_id() or job.get("job_id") or str(os.getpid())
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    if requeued:            # SLURM runs this job again: the earlier attempt's ending is void
        for stale in (rd.exit_record, rd.metrics):
            if os.path.exists(stale):
                os.unlink(stale)
    write_json(rd.wrapper, {"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                            "job_id": job_id})

    stop = threading.Event()
    # a remote sheet has a per-minute request quota shared by every job: forward less often
    interval = REMOTE_FORWARD_INTERVAL_S if "://" in sheet else FORWARD_INTERVAL_S
    if job.get("sheet_writes") == "runner":       # a live runner writes the row from the run folder
        def push(values, skip_statuses=()):
            return True
    else:
        def push(values, skip_statuses=()):
            return push_to_sheet(rd, sheet, run_id, values, skip_statuses)

    def watch() -> None:
        """Heartbeat, and forward newly reported metrics to the row in one write per tick."""
        offset, last_beat = 0, 0.0
        while not stop.is_set():
            now = time.time()
            if now - last_beat >= HEARTBEAT_INTERVAL_S:
                with open(rd.heartbeat, "w") as f:
                    f.write(f"{now:.3f}\n")
                last_beat = now
            new, offset = read_metrics_log(rd.metrics_log, offset)
            new = {k: v for k, v in new.items() if not C.is_reserved(k)}
            if new:
                push(new)
            stop.wait(interval)

    push({C.STATUS: Status.RUNNING, C.JOB_ID: job_id, C.ERROR: ""},
         skip_statuses=() if requeued else Status.TERMINAL)
    watcher = threading.Thread(target=watch, daemon=True)   # the only pusher until joined
    watcher.start()

    env = dict(os.environ)
    env.update(thread_env(job.get("env", {})))
    env.update(job.get("env", {}))
    env.update({"SHEETRUN_RUN_DIR": rd.path, "SHEETRUN_SHEET": sheet, "SHEETRUN_RUN_ID": run_id})
    cancelled: list[str] = []
    proc = None

    def on_signal(signum, _frame):
        cancelled.append(signal_name(signum))
        if proc is not None:
            kill_tree(proc.pid, signal.SIGTERM)
            # escalate if the command ignores SIGTERM
            timer = threading.Timer(KILL_GRACE_S, kill_tree, (proc.pid, signal.SIGKILL))
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    launch_error = ""
    with open(rd.stdout, "ab") as out, open(rd.stderr, "ab") as err:
        try:
            proc = subprocess.Popen(job["argv"], cwd=job["cwd"], env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
        except OSError as exc:
            launch_error = f"{type(exc).__name__}: {exc}"
    if proc is not None:
        write_json(rd.wrapper, dict(read_json(rd.wrapper), child_pid=proc.pid))
        if cancelled:                        # a signal arrived before the child existed
            on_signal(signal.SIGTERM, None)
        code = proc.wait()                   # blocking: returns the moment the command exits
        kill_tree(proc.pid, signal.SIGKILL)   # leftovers of the command's session
    else:
        code = 127
    ended = time.time()
    stop.set()
    watcher.join()

    metrics, results_problem = load_results(rd)
    write_json(rd.metrics, metrics)
    if cancelled:
        status, error = slurm_stop_reason() or (Status.CANCELLED, f"cancelled ({cancelled[0]})")
    elif launch_error:
        status, error = Status.FAILED, launch_error
    elif code == 0:
        status, error = Status.COMPLETED, results_problem
    else:
        status = Status.FAILED
        error = last_line(rd.stderr) or (f"killed by {signal_name(-code)}" if code < 0
                                         else f"exited with code {code}")
        if code < 0 and last_line(rd.stderr):
            error = f"killed by {signal_name(-code)}; last stderr line: {error}"
    record = {"status": status, "exit_code": code, "error": one_line(error),
              "started": started, "ended": ended, "walltime_s": ended - started,
              "host": socket.gethostname()}
    write_json(rd.exit_record, record)

    # The exit record is the truth: it also corrects a row that sync marked Lost meanwhile.
    push(final_row_values(record, metrics))
    return 0 if status == Status.COMPLETED else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m runner.jobwrapper RUN_FOLDER", file=sys.stderr)
        return 2
    try:
        return run_job(argv[0])
    except Exception:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
