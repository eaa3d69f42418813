"""Why a script failed, in one line for its row's ``error`` cell.

What a terminal would show is recovered from the end of the script's output:
terminal escapes (colours, cursor moves) are removed, a line rewritten with
carriage returns counts as its last state, and progress-bar lines (tqdm and
the like) are dropped. Then:

- a Python traceback gives its exception line (``ValueError: bad lr``);
- otherwise the exit code or signal is always said, with the last meaningful
  line of output: ``exit code 3; last output: loading shard 7``.

The result is one line, at most ``columns.ERROR_MAX_CHARS`` long; the whole
output stays in ``stderr.log`` / ``stdout.log``.
"""
from __future__ import annotations

import re
import signal

from runner.core.columns import ERROR_MAX_CHARS, cap

# CSI (colours, cursor), OSC (titles, links) and two-character escape sequences
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_PROGRESS = re.compile(
    r"^\s*(?:.{0,60}:\s*)?\d{1,3}%\s*\||"            # tqdm:   "epoch 3:  45%|████▌     | 45/100"
    r"[█▉▊▋▌▍▎▏■━╸─]{3,}|"                           # block / line bars (tqdm, rich, keras)
    r"\d+/\d+\s*\[\d+:\d+(?::\d+)?<|"                 # "45/100 [00:03<00:04"
    r"\b\d+(?:\.\d+)?\s*(?:it/s|s/it)\b|"             # rates
    r"^\s*\d+/\d+\s*\[[=>.\s]*\]")                    # keras: "12/50 [====>....]"
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure|Fault)?(?::\s.*|)$")
_TRACEBACK = "Traceback (most recent call last):"
_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")


def clean_lines(text: str) -> list[str]:
    """The lines a terminal would show, escapes removed, progress bars left out."""
    out = []
    for raw in text.split("\n"):
        line = raw.rstrip("\r").split("\r")[-1]          # a line rewritten in place: its last state
        line = _ESCAPES.sub("", line).rstrip()
        if line.strip() and not _PROGRESS.search(line):
            out.append(line)
    return out


def exception_line(lines: list[str]) -> str:
    """The exception line of the last Python traceback in ``lines``, or ''."""
    start = max((i for i, line in enumerate(lines) if line.strip() == _TRACEBACK), default=None)
    if start is None:
        return ""
    for line in lines[start + 1:]:
        if line[:1].isspace() or line.strip().startswith("^") or line.startswith(_CHAIN):
            continue                                     # frames, source lines, carets
        if _EXCEPTION.match(line.strip()):
            return line.strip()
    return ""


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def summarize(code: int | None, stderr_tail: str, stdout_tail: str = "") -> str:
    """The ``error`` cell for a script that ended with ``code`` (negative: killed by a signal)."""
    lines = clean_lines(stderr_tail)
    found = exception_line(lines)
    if found:
        return cap(found, ERROR_MAX_CHARS)
    how = f"killed by {signal_name(-code)}" if code is not None and code < 0 else f"exit code {code}"
    last = (lines or clean_lines(stdout_tail) or [""])[-1].strip()
    text = f"{how}; last output: {' '.join(last.split())}" if last else how
    return cap(text, ERROR_MAX_CHARS)


def tail(path: str, max_bytes: int = 65536) -> str:
    """The end of a log file, as text ('' if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
