"""sheetrun's runner program: what ``__RUNNER__`` becomes inside a cell.

    python .../runner/run_cmd.py --config_path CONFIG.yaml

Runs the program a runner config describes (``runner.rowspec.programs``: ``exec_path``,
``kwargs``, flags, ``conda_env``...), as stnd's ``run_cmd/main.py`` does: the
program's stdout passes through, and for each ``take_last_dict`` column the
last match in it is reported (``runner.report``). Its exit status is the
program's. A row whose ``path_to_main`` is ``__RUNNER__`` does not need it: the
job host runs such programs directly.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

if __package__ in (None, ""):                 # run as a file: .../runner/run_cmd.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runner import report  # noqa: E402
from runner.core.cells import CellError, resolve_path  # noqa: E402
from runner.rowspec import programs  # noqa: E402
from runner.rowspec.allow import Allowance, AllowError  # noqa: E402
from runner.rowspec.config import ConfigError, load_yaml  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_cmd.py", description="run the program a runner config describes")
    parser.add_argument("--config_path", "--config", dest="config", required=True)
    args = parser.parse_args(argv)
    try:
        config = load_yaml(args.config)
        root = os.environ.get("PROJECT_ROOT_PROVIDED_FOR_STUNED") or os.getcwd()
        command = programs.argv(config, root)
        take_last = {c: re.compile(r) for c, r in programs.take_last(config).items()}
        exec_typed = str(config.get("exec_path") or "")
        refused = Allowance.load(root).program_problem(config, resolve_path(exec_typed, root), exec_typed)
    except (ConfigError, programs.ProgramError, CellError, AllowError) as exc:
        print(f"run_cmd: {exc}", file=sys.stderr)
        return 2
    if refused:                                # what the machine's owner did not allow (runner.rowspec.allow)
        print(f"run_cmd: {refused}", file=sys.stderr)
        return 2
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, errors="replace")
    last: dict = {}
    for line in proc.stdout:
        sys.stdout.write(line)
        for column, regex in take_last.items():
            matches = regex.findall(line)
            if matches and last.get(column) != matches[-1]:
                value = matches[-1]
                last[column] = value
                report({column: str(value) if isinstance(value, tuple) else value})
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
