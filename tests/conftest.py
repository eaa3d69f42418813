"""Shared fixtures: a throwaway project with a result sheet, configs and scripts."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPTS = {
    # reads its config, reports two metrics
    "ok.py": """
        import argparse, yaml
        from runner import report
        parser = argparse.ArgumentParser()
        parser.add_argument("--config", required=True)
        cfg = yaml.safe_load(open(parser.parse_args().config))
        report(score=cfg["x"] * 2, label=str(cfg["name"]))
        print("done", cfg["x"])
    """,
    "crash.py": """
        import sys
        print("about to fail")
        raise ValueError("bad learning rate: -1")
    """,
    "exit3.py": """
        import sys
        sys.exit(3)
    """,
    # writes a file per run so ordering can be checked, then optionally sleeps
    "stamp.py": """
        import sys, time, os, yaml
        cfg = yaml.safe_load(open(sys.argv[2]))
        with open(cfg["log"], "a") as f:
            f.write(f"start {cfg['name']} {time.time()}\\n")
        time.sleep(cfg.get("sleep", 0))
        with open(cfg["log"], "a") as f:
            f.write(f"end {cfg['name']} {time.time()}\\n")
        if cfg.get("fail"):
            sys.exit(1)
    """,
    # reports, then waits until told to go on (to observe mid-run state)
    "wait.py": """
        import sys, time, os, yaml
        from runner import report
        cfg = yaml.safe_load(open(sys.argv[2]))
        report(progress=1)
        gate = cfg["gate"]
        while not os.path.exists(gate):
            time.sleep(0.05)
        report(progress=2)
    """,
    # starts a grandchild and sleeps forever (for cancellation tests)
    "sleeper.py": """
        import subprocess, sys, time, os, yaml
        cfg = yaml.safe_load(open(sys.argv[2]))
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(cfg["pidfile"], "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(600)
    """,
    "results_json.py": """
        import json, os
        with open(os.path.join(os.environ["SHEETRUN_RUN_DIR"], "results.json"), "w") as f:
            json.dump({"top1": 0.75, "note": "no import of runner"}, f)
    """,
    # starts a daemon (its own session, as setsid() gives) and either sleeps or exits at once
    "daemon.py": """
        import subprocess, sys, time, os, yaml
        cfg = yaml.safe_load(open(sys.argv[2]))
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 start_new_session=True)
        with open(cfg["pidfile"], "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        if cfg.get("name") == "linger":
            time.sleep(600)
    """,
    # fills the filesystem holding cfg['log'] with a file, then exits 0 (printing nothing:
    # its own logs are on that filesystem too)
    "fill.py": """
        import subprocess, sys, yaml
        cfg = yaml.safe_load(open(sys.argv[2]))
        subprocess.run(["dd", "if=/dev/zero", "of=" + cfg["log"], "bs=4k"], stderr=subprocess.DEVNULL)
    """,
    "env.py": """
        import os
        from runner import report
        report(omp=os.environ.get("OMP_NUM_THREADS"), custom=os.environ.get("MY_VAR", "unset"),
               cwd=os.getcwd())
    """,
}

DEFAULT_CONFIG = """
name: <placeholder>
x: 1
lr: 0.1
nested:
  depth: 2
  tags: [a, b]
log: unused
gate: unused
pidfile: unused
"""


class Project:
    def __init__(self, root: str):
        self.root = root
        self.sheets = os.path.join(root, "result_sheets")
        os.makedirs(self.sheets)
        os.makedirs(os.path.join(root, "default_configs"))
        os.makedirs(os.path.join(root, "scripts"))
        for name, body in SCRIPTS.items():
            self.write(f"scripts/{name}", textwrap.dedent(body))
        self.write("default_configs/base.yaml", DEFAULT_CONFIG)

    def write(self, rel: str, text: str) -> str:
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def sheet(self, header: list[str], rows: list[list], name: str = "sheet.csv") -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(r)
        return self.write(f"result_sheets/{name}", buf.getvalue())

    def read(self, name: str = "sheet.csv") -> list[dict]:
        with open(os.path.join(self.sheets, name), newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def sheetrun(self, *args, timeout=120, cwd=None, check=None, env=None) -> subprocess.CompletedProcess:
        full_env = dict(os.environ, **(env or {}))
        proc = subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd or "/", stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, env=full_env)
        if check is not None:
            assert proc.returncode == check, proc.stdout + proc.stderr
        return proc

    def popen(self, *args) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd="/", stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def processes_under(path: str) -> list:
    """Live processes that belong to runs under ``path``: a job's (its run folder is there) or a
    sheetrun / job host started on a sheet there (the path is on its command line)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            run_dir = proc.environ().get("SHEETRUN_RUN_DIR", "")
            if run_dir.startswith(path) or any(path in arg for arg in proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def end_processes(procs) -> None:
    import psutil

    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


@pytest.fixture
def project(tmp_path) -> Project:
    yield Project(str(tmp_path / "proj"))
    # a test that failed half-way may leave jobs running (they outlive a killed runner by design)
    end_processes(processes_under(str(tmp_path)))


@pytest.fixture(autouse=True)
def user_folders_of_its_own(tmp_path, monkeypatch):
    """Each test is a user of its own: sheetrun's per-user files (the commands confirmed on shared sheets,
    the user's allow file) live in the test's folder, never in the machine's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "user-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "user-config"))


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind(tmp_path_factory):
    """The suite leaves no process behind: every job, runner and job host it started has ended."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    deadline = time.time() + 10
    while processes_under(base) and time.time() < deadline:
        time.sleep(0.2)
    left = processes_under(base)
    if left:
        described = [" ".join(p.cmdline())[:200] for p in left]
        end_processes(left)
        pytest.fail(f"{len(left)} process(es) outlived the test suite: {described}")


def job_host_pid(project: "Project", row: dict) -> int:
    """The pid of the process running a row's job (the local job host, or a job wrapper)."""
    import json

    with open(os.path.join(project.root, row["run_folder"], "wrapper.json")) as f:
        return int(json.load(f)["pid"])


def can_mount() -> str:
    """'' where this process may mount a tmpfs (root on Linux), else why not."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return "mounting a tmpfs needs root on Linux"
    probe = tempfile.mkdtemp()
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                             capture_output=True, text=True)
        if out.returncode != 0:
            return f"cannot mount a tmpfs here: {out.stderr.strip()}"
        subprocess.run(["umount", probe], check=True)
        return ""
    finally:
        os.rmdir(probe)


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a small real filesystem (a tmpfs) that can be filled up."""
    why = can_mount()
    if why:
        if os.environ.get("SHEETRUN_REQUIRE_MOUNT"):
            pytest.fail(why)
        pytest.skip(why)
    mounted = []

    def make(size: str, name: str = "small") -> str:
        path = str(tmp_path / name)
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True)
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", path], check=False)


def fill_up(directory: str) -> str:
    """Fill the filesystem holding ``directory``; returns the filler file (delete it to free)."""
    filler = os.path.join(directory, ".filler")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], stderr=subprocess.DEVNULL)
    return filler


def wait_for(predicate, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def shipped_sheet(path: str) -> tuple[list[str], list[dict]]:
    """A shipped sheet as it ships, even after the Quick start ran it in this checkout: only the
    columns a person writes (inputs, ``name``, ``notes``), and rows that ran set to run again."""
    from runner.core import columns as C

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    header = [c for c in rows[0] if C.is_input_column(c) or c == "notes"]
    out = []
    for r in rows:
        ran = bool(r.get(C.RUN_ID) or r.get(C.STATUS))
        out.append({c: ("1" if c == C.WHETHER_TO_RUN and ran else r[c]) for c in header})
    return header, out


BASE = ["path_to_main", "path_to_default_config", "whether_to_run"]
CFG = "default_configs/base.yaml"


# --- the SED tasks ------------------------------------------------------------------------

def tiny_backbone_file(path, seed=0):
    """A random tiny ViT saved in tasks/sed/pretrain_backbone.py's format (no training)."""
    import timm
    import torch

    from tasks.sed.backbones import BACKBONE_FORMAT

    torch.manual_seed(seed)
    overlay = {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0,
               "interpolation": "bilinear", "num_classes": 5}
    kwargs = {"img_size": 16, "patch_size": 8, "embed_dim": 24, "depth": 1, "num_heads": 2,
              "num_classes": 5, "pretrained_cfg_overlay": overlay}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs)
    torch.save({"format": BACKBONE_FORMAT, "name": "vit_tiny_patch16_224", "kwargs": kwargs,
                "state_dict": model.state_dict()}, path)
    return path


def copy_project(root, parts=("default_configs", "result_sheets")):
    """A project to run the shipped sheets in: ``parts`` of the repository and its tasks/ (no caches)."""
    import shutil

    for part in parts:
        shutil.copytree(os.path.join(REPO, part), os.path.join(root, part))
    shutil.copytree(os.path.join(REPO, "tasks"), os.path.join(root, "tasks"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def run_project_sheet(root, sheet, cwd, timeout: int = 900) -> list:
    """``sheetrun run SHEET --root ROOT --jobs 2`` from ``cwd`` (two rows at once: one row's imports
    overlap another's work); the sheet's rows after it (it must exit 0)."""
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(sheet), "--root", str(root), "--jobs", "2"],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
    rows = list(csv.DictReader(open(sheet, encoding="utf-8")))
    assert proc.returncode == 0, (proc.stdout[-3000:], [(r.get("name"), r.get("error")) for r in rows])
    return rows


def set_nested(cfg: dict, changes: dict) -> dict:
    """``cfg`` with ``changes`` set in place: ``{"optim/lr": 0.1}`` sets ``cfg["optim"]["lr"]``."""
    for key, value in changes.items():
        node = cfg
        *parents, last = key.split("/")
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


def sed_config(name, **changes):
    """A default SED config with nested changes given as 'a/b' keys."""
    import yaml

    with open(os.path.join(REPO, "default_configs", "sed", f"{name}.yaml")) as f:
        return set_nested(yaml.safe_load(f), changes)


def write_yaml(path, cfg):
    import yaml

    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return str(path)
