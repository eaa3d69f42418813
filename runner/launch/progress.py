"""What a person sees while ``sheetrun run`` works: a live summary line, a line per
finished row, and a results table at the end (rich; plain lines when not a TTY)."""
from __future__ import annotations

import time
from collections import Counter

from rich.console import Console
from rich.live import Live
from rich.table import Table as RichTable
from rich.text import Text

from runner.core.columns import Status
from runner.core.console import make_console

STYLE = {Status.COMPLETED: "green", Status.FAILED: "red", Status.CANCELLED: "yellow",
         Status.LOST: "magenta", Status.TIMEOUT: "red", Status.RUNNING: "cyan",
         Status.SUBMITTED: "dim", Status.SKIPPED: "yellow"}


MAX_METRIC_COLUMNS = 4
QUIET_ABOVE = 30       # rows; above this a terminal shows only rows that did not complete
TABLE_ROWS = 50        # the results table lists every row up to this many, else those that did not complete


def _fmt(value) -> str:
    if value is None:
        return ""
    return format(value, ".4g") if isinstance(value, float) else str(value)


def print_skipped(console: Console, skipped) -> None:
    """Rows left alone, and why: an earlier run (a sheetrun, a job, its processes) still holds them,
    or their command was not confirmed."""
    from runner.core.rowrefs import ranges

    by_reason: dict[str, list[int]] = {}
    for number, why in skipped:
        by_reason.setdefault(why, []).append(number)
    for why, numbers in by_reason.items():
        which = f"row {numbers[0]}" if len(numbers) == 1 else f"rows {ranges(numbers)}"
        console.print(Text(f"sheetrun: {which} not started: {why}", style="yellow"), highlight=False,
                      soft_wrap=True)


def print_warnings(console: Console, planned, notes=()) -> None:
    """What deserves a look but does not stop anything: about the sheet, then per row."""
    for note in notes:
        console.print(Text(f"sheetrun: {note}", style="yellow"), highlight=False, soft_wrap=True)
    for p in planned:
        for warning in (p.spec.warnings if p.ok and p.spec is not None else []):
            console.print(Text(f"! row {p.number}: {warning}", style="yellow"), highlight=False, soft_wrap=True)


class Progress:
    def __init__(self, console: Console | None = None, sheet_name: str = "", show: list[str] | None = None):
        self.console = console or make_console(stderr=True)
        self.show = show            # the metrics the results table shows (None: the last reported)
        self.sheet_name = sheet_name
        self.live: Live | None = None
        self.counts: dict[str, int] = {}
        self.total = 0
        self.t0 = time.time()
        self._last = 0.0

    def start(self, planned, skipped=(), notes=()) -> None:
        print_skipped(self.console, skipped)
        print_warnings(self.console, planned, notes)
        self.total = len(planned)
        self.counts = Counter(p.status for p in planned)
        for p in planned:
            if not p.ok:
                line = Text(f"✗ row {p.number}", style="red")
                line.append(f" not run: {p.error}")         # user text: printed literally
                self.console.print(line, highlight=False, soft_wrap=True)
        if self.console.is_terminal:
            self.live = Live(self._line(), console=self.console, auto_refresh=False, transient=True)
            self.live.start()

    def _move(self, old: str, new: str) -> None:
        self.counts[old] = self.counts.get(old, 0) - 1
        self.counts[new] = self.counts.get(new, 0) + 1

    def started(self, outcome) -> None:
        self._move(Status.SUBMITTED, Status.RUNNING)

    def finished(self, outcome, previous: str) -> None:
        self._move(previous, outcome.status)
        if self.live and self.total > QUIET_ABOVE and outcome.status == Status.COMPLETED:
            self.tick()            # many rows on a terminal: the live line counts them
            return
        mark = "✓" if outcome.status == Status.COMPLETED else "✗"
        if not self.console.is_terminal:     # a log file or a pipe: a plain line, no rendering
            line = f"{mark} row {outcome.number} {outcome.run_id} {outcome.status}"
            line += f"  {outcome.walltime}" * bool(outcome.walltime) + f"  {outcome.error}" * bool(outcome.error)
            self.console.file.write(line + "\n")
            self.console.file.flush()
            return
        style = STYLE.get(outcome.status, "")
        text = Text(f"{mark} row {outcome.number} {outcome.run_id} ", style=style)
        text.append(outcome.status, style=f"bold {style}")
        if outcome.walltime:
            text.append(f"  {outcome.walltime}")
        if outcome.error:
            text.append(f"  {outcome.error}", style="dim" if outcome.status == Status.COMPLETED else "")
        self.console.print(text, highlight=False)
        self.tick(force=True)

    def retrying(self, outcome, attempt: int, tries: int) -> None:
        """A row that failed runs again (--retries)."""
        self._move(outcome.status, Status.SUBMITTED)
        line = f"↻ row {outcome.number} runs again: try {attempt} of {tries}"
        if self.console.is_terminal:
            self.console.print(Text(line, style="yellow"), highlight=False)
        else:
            self.console.file.write(line + "\n")
            self.console.file.flush()
        self.tick(force=True)

    def _line(self) -> Text:
        done = sum(self.counts.get(s, 0) for s in Status.TERMINAL)
        elapsed = time.time() - self.t0
        text = Text(f"{self.sheet_name}  [{done}/{self.total}]  ")
        for status in (Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.SKIPPED, Status.CANCELLED,
                       Status.LOST):
            n = self.counts.get(status, 0)
            if n:
                text.append(f"{status.lower()} {n}  ", style=STYLE.get(status, ""))
        queued = self.counts.get(Status.SUBMITTED, 0)
        if queued:
            text.append(f"queued {queued}  ", style="dim")
        text.append(f"{int(elapsed // 60)}:{int(elapsed % 60):02d}", style="dim")
        return text

    def tick(self, force: bool = False) -> None:
        now = time.time()
        if self.live and (force or now - self._last > 0.25):
            self._last = now
            self.live.update(self._line(), refresh=True)

    def stop(self, result) -> None:
        if self.live:
            self.live.stop()
        table = RichTable()
        metric_names: list[str] = []
        for o in result.outcomes:
            metric_names += [m for m in o.metrics if m not in metric_names]
        metric_names = self.show or metric_names[-MAX_METRIC_COLUMNS:]   # else the last reported: the headline
        errors = any(o.error for o in result.outcomes)
        widths = {"row": 3, "run_id": 9, "status": 9, "walltime": 9}   # never squeezed away
        for col in ("row", "run_id", "status", "walltime", *metric_names):
            metric = col in metric_names
            table.add_column(Text(col), no_wrap=True, justify="right" if metric else "left",
                             min_width=widths.get(col), overflow="ellipsis",
                             max_width=14 if metric and self.console.is_terminal else None)
        if errors:
            table.add_column("error", overflow="fold", ratio=1)
        shown = sorted(result.outcomes, key=lambda o: o.number)
        if len(shown) > TABLE_ROWS:            # a long run: the rows that need a look (all are in the sheet)
            shown = [o for o in shown if o.status != Status.COMPLETED][:TABLE_ROWS]
        for o in shown:
            values = [Text(_fmt(o.metrics.get(m))) for m in metric_names]     # user text: literal
            table.add_row(str(o.number), Text(o.run_id), Text(o.status, style=STYLE.get(o.status, "")),
                          o.walltime, *values, *([Text(o.error)] if errors else []))
        if result.outcomes:
            counts = Counter(o.status for o in result.outcomes)
            line = Text(self.sheet_name, style="bold")
            line.append(": " + ", ".join(f"{n} {status}" for status, n in counts.most_common()))
            if len(result.outcomes) > TABLE_ROWS:
                line.append("  (rows that did not complete below; every row is in the sheet)")
            self.console.print(line, highlight=False)
            if shown:
                self.console.print(table)
        if result.interrupted:
            self.console.print(Text(f"interrupted by {result.interrupted}", style="yellow"))


class SubmitProgress:
    """What a person sees while rows are submitted to a batch system."""

    def __init__(self, console: Console | None = None):
        self.console = console or make_console(stderr=True)

    def start(self, planned, skipped=(), notes=()) -> None:
        print_skipped(self.console, skipped)
        print_warnings(self.console, planned, notes)

    def stop(self, result) -> None:
        pass

    def finished(self, outcome, previous: str) -> None:
        pass

    def submitted(self, numbers: list[int], array_id: str) -> None:
        from runner.core.rowrefs import ranges

        self.console.print(Text(f"submitted rows {ranges(numbers)} as job array {array_id}"), highlight=False)
