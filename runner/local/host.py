"""The local job host: one process per ``sheetrun run`` that runs all of its jobs.

The local backend starts it (``python -m runner.local.host``) in its own
session, so a Ctrl-C at the terminal reaches only the runner, with two pipes:
commands from the runner (JSON lines: start a run folder, stop, kill) and
events back ("started", and "exit" with the exit record). The host

- starts each command through :class:`runner.jobwrapper.JobRun` — a vfork and
  an exec, no Python process per job — in its own session, set to get
  SIGKILL if the host dies;
- is a child subreaper: what a script abandons (a ``setsid()`` daemon, a
  double fork) comes to the host, which ends it with its job;
- writes down every process of each job as it sees them (pid and start
  time, the run folder's ``processes.jsonl``), so that ``sheetrun cancel`` and
  ``sheetrun sync`` find what a job left even after this host was killed, and
  whatever the processes' environment says. A process that came to the host
  is the job's whose tree it was seen in, else whose run id it carries, else
  whose session it is in, else the only running job's;
- keeps each job's heartbeat, honours ``sheetrun cancel`` (the run folder's
  marker) and turns a stop request into SIGKILL after the grace period;
- outlives the runner: when the runner is gone (its command pipe closes),
  every running job writes its own row from then on, and the host ends when
  they have.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time

from runner.core import procs
from runner.core.records import ExitRecord
from runner.core.rundir import RunDir
from runner.core.sheetref import SheetRef
from runner.job.delivery import push_to_sheet
from runner.job.failure import signal_name
from runner.job.results import final_row_values
from runner.job.wrapper import FORWARD_INTERVAL_S, HEARTBEAT_INTERVAL_S, REMOTE_FORWARD_INTERVAL_S, JobRun

TICK_S = 0.5
TRACK_S = 0.25          # how often each job's process tree is looked at


class JobHost:
    def __init__(self, commands_fd: int, events_fd: int):
        self.commands_fd = commands_fd
        self.events_fd = events_fd
        os.set_blocking(events_fd, False)
        self.outbox: list[tuple[bytes, dict]] = []   # events not yet taken by the runner
        self.runs: dict[int, JobRun] = {}            # command pid -> its run
        self.runner_alive = True
        self._commands = b""
        self._stop_reason = ""

    # -- talking to the runner ---------------------------------------------------------------
    def send(self, message: dict) -> bool:
        if not self.runner_alive:
            return False
        self.outbox.append(((json.dumps(message, default=str) + "\n").encode(), message))
        self._flush()
        return True

    def _flush(self) -> None:
        while self.outbox and self.runner_alive:
            data, message = self.outbox[0]
            try:
                n = os.write(self.events_fd, data)
            except BlockingIOError:
                return
            except OSError:
                self._runner_gone("its pipe is closed")
                return
            if n < len(data):
                self.outbox[0] = (data[n:], message)
                return
            self.outbox.pop(0)

    def _runner_gone(self, why: str) -> None:
        """From now on every job writes its own row; what the runner never received goes too."""
        if not self.runner_alive:
            return
        self.runner_alive = False
        for fd in (self.commands_fd, self.events_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        for _, message in self.outbox:
            if message.get("event") == "exit":
                run_dir = message.get("folder", "")
                push_to_sheet(RunDir(run_dir), message["sheet"], message["run_id"],
                              final_row_values(ExitRecord.from_json(message["record"]), message["metrics"]), (),
                              message.get("cwd"))
        self.outbox.clear()
        for run in self.runs.values():
            run.channel.switch(f"the runner is gone ({why})")

    def _read_commands(self) -> None:
        try:
            chunk = os.read(self.commands_fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._runner_gone("it ended, or was killed")
            return
        self._commands += chunk
        *lines, self._commands = self._commands.split(b"\n")
        for line in lines:
            try:
                self._command(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                print(f"sheetrun host: bad command {line[:200]!r}: {exc}", file=sys.stderr, flush=True)

    def _command(self, command: dict) -> None:
        op = command["op"]
        if op == "start":
            self._start(command["folder"], command.get("env") or {})
        elif op in ("stop", "kill"):
            for run in self._matching(command.get("run_id")):
                run.stop(command.get("reason", "stopped"), grace_s=0 if op == "kill" else
                         float(command.get("grace_s", 5.0)))
                if op == "kill":
                    run.escalate()

    def _matching(self, run_id: str | None) -> list[JobRun]:
        return [r for r in self.runs.values() if run_id in (None, r.run_id)]

    # -- jobs ----------------------------------------------------------------------------------
    def _start(self, folder: str, env: dict) -> None:
        def send(message: dict) -> bool:
            if message.get("event") == "exit":      # enough to write the row if the runner is gone
                message = dict(message, folder=run.rd.path, sheet=run.job.sheet, cwd=run.job.cwd)
            return self.send(message)

        try:
            run = JobRun(folder, send=send, extra_env=env, kind="host")
        except (OSError, ValueError, KeyError) as exc:
            print(f"sheetrun host: cannot read the job in {folder}: {exc}", file=sys.stderr, flush=True)
            return
        if self._stop_reason:
            run.cancelled.append(self._stop_reason)
            run.finish(None)
        elif run.start():
            self.runs[run.proc.pid] = run
        else:
            run.finish(None)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.runs.pop(pid, None)
            if run is None:
                continue                     # an orphan that came to us and has now ended
            code = os.waitstatus_to_exitcode(status)
            run.proc.returncode = code
            self._end_leftovers(run)
            run.finish(code)

    def _track(self) -> None:
        """Write down the processes of every running job: its command's tree, and the orphans
        that came to us with theirs."""
        for pid, run in self.runs.items():
            run.processes.add(procs.tree(pid))
        sole = next(iter(self.runs.values())) if len(self.runs) == 1 else None
        for pid in procs.children(os.getpid()):
            if pid not in self.runs:
                owner = self._owner(pid, self.runs.values(), sole)
                if owner is not None:
                    owner.processes.add(procs.tree(pid))

    @staticmethod
    def _owner(pid: int, runs, fallback: JobRun | None = None) -> JobRun | None:
        """The job among ``runs`` that an orphan which came to us belongs to: whose tree it was seen
        in, whose run id it carries, whose session it is in; else ``fallback`` (None: not told)."""
        runs = list(runs)
        for run in runs:
            if pid in run.processes.known:
                return run
        tag = _tag(pid)
        for run in runs:
            if tag == run.run_id:
                return run
        try:
            session = os.getsid(pid)
        except OSError:
            return None
        for run in runs:
            if session == run.proc.pid:
                return run
        return fallback

    def _end_leftovers(self, run: JobRun) -> None:
        """End what the finished command left: its session, and its orphans that came to us."""
        try:
            os.killpg(run.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        for _ in range(20):
            kids = procs._own_children()
            if kids is None:
                procs.end(procs.job_processes(run.run_id, run.rd.processes), 0)
                return
            alone = None if self.runs else run        # no other job: whatever came to us is its
            mine = [pid for pid in kids if pid not in self.runs and self._owner(pid, [run], alone) is run]
            if not mine:
                return
            procs.signal_all([p for p in map(_process, mine) if p is not None], signal.SIGKILL)
            for pid in mine:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass

    # -- the loop ------------------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        self._stop_reason = signal_name(signum)
        for run in self.runs.values():
            run.stop(self._stop_reason)

    def run(self) -> int:
        procs.become_subreaper()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)          # wakes select at once
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        last_beat = last_forward = last_track = 0.0
        while self.runner_alive or self.runs:
            readers = [wake_r] + ([self.commands_fd] if self.runner_alive else [])
            writers = [self.events_fd] if self.outbox and self.runner_alive else []
            ready_r, ready_w, _ = select.select(readers, writers, [], TICK_S)
            if wake_r in ready_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            if self.runner_alive and self.commands_fd in ready_r:
                self._read_commands()
            if ready_w:
                self._flush()
            self._reap()
            now = time.time()
            look = now - last_track >= TRACK_S          # process trees and cancel markers, 4 times a second
            if look:
                last_track = now
                self._track()
            for run in self.runs.values():
                if look and not run.cancelled and run.rd.cancel_requested():
                    run.stop("sheetrun cancel")
                run.watch(now)
            if now - last_beat >= HEARTBEAT_INTERVAL_S:
                last_beat = now
                for run in self.runs.values():
                    if now - run.started >= HEARTBEAT_INTERVAL_S:     # short jobs need none
                        run.heartbeat(now)
            if not self.runner_alive and now - last_forward >= FORWARD_INTERVAL_S:
                last_forward = now
                for run in self.runs.values():
                    remote = SheetRef.parse(run.job.sheet).remote
                    if run.forward_due(now, REMOTE_FORWARD_INTERVAL_S if remote else 0.0):
                        run.channel.forward_metrics()
        procs.end_orphans()
        return 0


def _tag(pid: int) -> str | None:
    """The run id in a process's environment, if any."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    key = procs.RUN_ID_VAR.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode("utf-8", "replace")
    return None


def _process(pid: int):
    try:
        return procs.psutil.Process(pid)
    except procs.psutil.Error:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.local.host",
                                     description="run the jobs of one local sheetrun launch")
    parser.add_argument("--commands-fd", type=int, required=True)
    parser.add_argument("--events-fd", type=int, required=True)
    args = parser.parse_args(argv)
    return JobHost(args.commands_fd, args.events_fd).run()


if __name__ == "__main__":
    sys.exit(main())
