"""Who can run what: a sheet's editor runs only what the machine's owner allowed, and never sees
sheetrun's credentials. Each attack is refused by default, in its own row, and runs once allowed."""
from __future__ import annotations

import json
import os
import textwrap

import yaml
from conftest import BASE, CFG

from runner.core.credentials import REDACTED
from runner.rowspec.allow import Allowance

# writes a marker file (the proof that the editor's code ran), then exits 0
EVIL = "import sys\nopen({marker!r}, 'w').write('ran')\n"


def outside_dir(tmp_path, marker):
    """A folder outside the project holding a script that leaves a marker, and a config."""
    folder = tmp_path / "outside"
    folder.mkdir(exist_ok=True)
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    (folder / "cfg.yaml").write_text("name: outside\nx: 5\n")
    return folder


def errors(project, name="sheet.csv"):
    return [(r["status"], r["error"]) for r in project.read(name)]


def test_a_row_runs_only_the_projects_scripts_and_configs_until_the_owner_allows_a_folder(project, tmp_path):
    marker = tmp_path / "pwned"
    outside = outside_dir(tmp_path, marker)
    os.symlink(outside / "evil.py", os.path.join(project.root, "scripts", "link.py"))    # a link leading out
    rows = [[str(outside / "evil.py"), CFG, 1],                       # absolute
            ["../outside/evil.py", CFG, 1],                           # ../ out of the project
            ["scripts/link.py", CFG, 1],                              # a link inside, leading out
            [f"!!!{outside / 'evil.py'}", CFG, 1],                    # stnd's as-written form
            ["scripts/ok.py", str(outside / "cfg.yaml"), 1],          # a config from outside
            ["scripts/ok.py", CFG, 1]]                                # the project's own: runs
    path = project.sheet(BASE, rows)
    proc = project.sheetrun("run", path, "--jobs", "2", check=1)
    assert not marker.exists(), proc.stderr
    out = errors(project)
    for status, error in out[:5]:
        assert status == "Failed" and "is outside the project" in error and "'roots:'" in error, error
        assert os.path.join(project.root, ".sheetrun", "allow.yaml") in error        # says where to allow it
    assert "it leads to" in out[2][1] and out[4][1].startswith("path_to_default_config")
    assert out[5][0] == "Completed"

    project.write(".sheetrun/allow.yaml", f"roots: [{outside}]\n")
    project.sheetrun("reset", path, check=0)
    project.sheetrun("run", path, "--jobs", "2", check=0)
    assert [s for s, _ in errors(project)] == ["Completed"] * 6 and marker.exists()


RUNNER_HEADER = BASE + ["delta:exec_path", "delta:is_python", "delta:kwargs/split-string", "delta:take_last_dict"]


def test_runner_rows_run_other_programs_only_once_allowed(project, tmp_path):
    """stnd's __RUNNER__ rows and sheetrun's run_cmd.py (what __RUNNER__ names in a cell) run only the
    project's Python scripts; /usr/bin/env running a shell is refused until the owner allows env."""
    marker = tmp_path / "pwned"
    project.write("default_configs/prog.yaml", "exec_path: ./scripts/ok.py\nis_python: true\n"
                                               "kwargs: {split-string: ''}\ntake_last_dict: {}\n")
    shell = f"sh -c 'touch {marker}'"
    rows = [["__RUNNER__", "default_configs/prog.yaml", 1, "/usr/bin/env", "False", shell, ""],
            ["__RUNNER__", "default_configs/prog.yaml", 1, "./scripts/prog.sh", "False", "", ""],
            ["__RUNNER__", "default_configs/prog.yaml", 1, "/tmp/elsewhere.py", "True", "", ""]]
    project.write("scripts/prog.sh", f"#!/bin/sh\ntouch {marker}\n")
    os.chmod(os.path.join(project.root, "scripts/prog.sh"), 0o755)
    runner_program = ["__RUNNER__", "default_configs/prog.yaml", 1, "/usr/bin/env", "False", shell, ""]
    runner_program[0] = "__COL:prog__"                             # run_cmd.py running the same
    path = project.sheet(RUNNER_HEADER + ["prog"], [r + ["__RUNNER__"] for r in rows + [runner_program]])
    project.sheetrun("run", path, check=1)
    out = errors(project)
    assert not marker.exists()
    assert "is a program, not a Python script" in out[0][1] and "/usr/bin/env under 'programs:'" in out[0][1]
    assert "is a program, not a Python script" in out[1][1]
    assert "is outside the project" in out[2][1]
    assert "is a program, not a Python script" in out[3][1]          # run_cmd.py's config is checked too

    project.write(".sheetrun/allow.yaml", "programs: [/usr/bin/env]\n")
    project.sheetrun("reset", path, "--rows", "1", check=0)
    project.sheetrun("run", path, "--rows", "1", check=0)
    assert marker.exists() and project.read()[0]["status"] == "Completed"


def test_run_cmd_refuses_at_run_time_what_the_owner_did_not_allow(project, tmp_path):
    """sheetrun's runner program checks the program itself, however it was started."""
    import subprocess
    import sys

    from runner.core.cells import RUNNER_PROGRAM

    marker = tmp_path / "pwned"
    config = project.write("cfg.yaml", yaml.safe_dump({"exec_path": "/usr/bin/env", "is_python": False,
                                                       "kwargs": {"split-string": f"touch {marker}"}}))
    env = dict(os.environ, PROJECT_ROOT_PROVIDED_FOR_STUNED=project.root)
    proc = subprocess.run([sys.executable, RUNNER_PROGRAM, "--config_path", config],
                          capture_output=True, text=True, env=env, cwd=project.root)
    assert proc.returncode == 2 and "is a program, not a Python script" in proc.stderr
    assert not marker.exists()
    project.write(".sheetrun/allow.yaml", "programs: [env]\n")          # a command on PATH, by name
    proc = subprocess.run([sys.executable, RUNNER_PROGRAM, "--config_path", config],
                          capture_output=True, text=True, env=env, cwd=project.root)
    assert proc.returncode == 0 and marker.exists(), proc.stderr


def test_env_columns_cannot_change_what_runs_until_allowed(project, tmp_path):
    """LD_PRELOAD, PYTHONPATH (a sitecustomize.py runs) and PYTHONWARNINGS + BROWSER (a warning filter
    that imports antigravity, which starts the 'browser') are refused; harmless variables run."""
    marker = tmp_path / "pwned"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('site')\n")
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\ntouch {marker}.browser\n")
    browser.chmod(0o755)
    header = BASE + ["env:LD_PRELOAD", "env:PYTHONPATH", "env:PYTHONWARNINGS", "env:BROWSER",
                     "cmd_env_var:PATH", "env:PYTHONHASHSEED", "env:MY_VAR"]
    rows = [["scripts/env.py", CFG, 1, "/nonexistent/evil.so", "", "", "", "", "", ""],
            ["scripts/env.py", CFG, 1, "", str(site), "", "", "", "", ""],
            ["scripts/env.py", CFG, 1, "", "", "all:0:antigravity.x:0:0", str(browser), "", "", ""],
            ["scripts/env.py", CFG, 1, "", "", "", "", "$HOME/bin", "", ""],
            ["scripts/env.py", CFG, 1, "", "", "", "", "", "0", "fine"]]
    path = project.sheet(header, rows)
    project.sheetrun("run", path, check=1)
    out = errors(project)
    assert not marker.exists() and not os.path.exists(f"{marker}.browser")
    for (status, error), name in zip(out, ["LD_PRELOAD", "PYTHONPATH", "PYTHONWARNINGS", "PATH"]):
        assert status == "Failed" and f"{name} changes which code runs" in error and "'env:'" in error, error
    assert "BROWSER" in out[2][1]                                      # every refused cell is named
    assert out[4][0] == "Completed" and project.read()[4]["custom"] == "fine"

    project.write(".sheetrun/allow.yaml", "env: [LD_PRELOAD, 'PYTHON*', BROWSER]\n")
    project.sheetrun("reset", path, check=0)
    project.sheetrun("run", path, "--rows", "1-3", check=0)
    assert marker.read_text() == "site"
    assert [s for s, _ in errors(project)][:3] == ["Completed"] * 3


def test_slurm_options_are_an_allow_list_and_logs_stay_inside_the_project(project, tmp_path):
    header = BASE + ["slurm:output", "slurm:export", "slurm:uid", "slurm:error"]
    rows = [["scripts/ok.py", CFG, 1, str(tmp_path / "x.out"), "", "", ""],
            ["scripts/ok.py", CFG, 1, "scripts/ok.py", "", "", ""],            # a log written over a script
            ["scripts/ok.py", CFG, 1, ".sheetrun/allow.yaml", "", "", ""],
            ["scripts/ok.py", CFG, 1, "", "ALL,LD_PRELOAD=/tmp/evil.so", "", ""],
            ["scripts/ok.py", CFG, 1, "", "", "0", ""],
            ["scripts/ok.py", CFG, 1, "logs/%j.out", "", "", "logs/%x-%j.err"]]   # what people write: fine
    path = project.sheet(header, rows)
    proc = project.sheetrun("run", path, "--backend", "slurm", "--dry-run", check=1)
    lines = {n: next(line for line in proc.stdout.splitlines() if line.startswith(f"row {n}")) for n in range(1, 7)}
    assert "is outside the project" in lines[1] and "is not a log file" in lines[2]
    assert "is inside .sheetrun/" in lines[3]
    assert "slurm:export changes who or what runs" in lines[4] and "slurm:uid changes" in lines[5]
    assert "error" not in lines[6] and "--output=logs/%j.out" in proc.stdout
    project.write(".sheetrun/allow.yaml", "slurm: [output, export, uid]\n")
    proc = project.sheetrun("run", path, "--backend", "slurm", "--dry-run", check=0)
    assert "--export=ALL,LD_PRELOAD=/tmp/evil.so" in proc.stdout


def test_jobs_never_see_sheetruns_credentials_and_no_cell_ever_holds_them(project, tmp_path):
    token = "ya29.a0-test-token-0123456789"
    key_line = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"type": "service_account", "private_key_id": "0f1e2d3c4b5a69788796a5b4",
                                    "private_key": f"-----BEGIN PRIVATE KEY-----\n{key_line}\n-----END PRIVATE KEY-----\n",
                                    "client_email": "runner@example.iam.gserviceaccount.com"}))
    secret_file = tmp_path / "found.txt"            # a secret a job got hold of somehow
    secret_file.write_text(json.dumps({"token": token, "line": key_line}))
    project.write("scripts/creds.py", textwrap.dedent(f"""
        import json, os
        from runner import report
        found = json.load(open({str(secret_file)!r}))
        report(seen_token=os.environ.get("SHEETRUN_SHEETS_TOKEN", "unset"),
               seen_key=os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "unset"),
               leak=found["token"], leak_line=found["line"], wrapped="token: " + found["token"])
        print(found["token"])
    """))
    project.write("default_configs/leak.yaml", "exec_path: ./scripts/creds.py\ntake_last_dict: {}\n")
    header = BASE + ["cmd_env_var:X", "delta:take_last_dict/stolen"]
    rows = [["scripts/creds.py", CFG, 1, "", ""],
            ["scripts/ok.py", CFG, 1, "$SHEETRUN_SHEETS_TOKEN", ""],
            ["<$SHEETRUN_SHEETS_TOKEN>/ok.py", CFG, 1, "", ""],
            ["__RUNNER__", "default_configs/leak.yaml", 1, "", f"({token[:4]}[^ ]+)"]]
    path = project.sheet(header, rows)
    env = {"SHEETRUN_SHEETS_TOKEN": token, "GOOGLE_APPLICATION_CREDENTIALS": str(key_file)}
    project.sheetrun("run", path, env=env)
    job, cmd_env, in_path, runner_row = project.read()
    assert job["status"] == "Completed", job["error"]
    assert job["seen_token"] == "unset" and job["seen_key"] == "unset"          # stripped from every job
    assert job["leak"] == job["leak_line"] == job["wrapped"] == REDACTED
    assert cmd_env["status"] == "Failed" and "sheetrun's own credential" in cmd_env["error"]
    assert in_path["status"] == "Failed" and "sheetrun's own credential" in in_path["error"]
    assert runner_row["stolen"] == REDACTED
    text = open(path).read()
    assert token not in text and key_line not in text and token[:12] not in text

    # the attack as it was reported: /usr/bin/env (allowed here) and a take_last_dict regex on its output
    project.write(".sheetrun/allow.yaml", "programs: [/usr/bin/env]\n")
    project.write("default_configs/env.yaml", "exec_path: /usr/bin/env\nis_python: false\ntake_last_dict: {}\n")
    path = project.sheet(BASE + ["delta:take_last_dict/stolen"],
                         [["__RUNNER__", "default_configs/env.yaml", 1, "SHEETRUN_SHEETS_TOKEN=([^ ]+)"]],
                         name="env.csv")
    project.sheetrun("run", path, env=env, check=0)
    row = project.read("env.csv")[0]
    assert row.get("stolen", "") == ""
    assert token not in open(os.path.join(project.root, row["run_folder"], "stdout.log")).read()


def test_an_unreadable_allow_file_stops_the_command_naming_it(project):
    path = project.sheet(BASE, [["scripts/ok.py", CFG, 1]])
    project.write(".sheetrun/allow.yaml", "programs: [bash]\nroot: [/x]\n")
    proc = project.sheetrun("run", path, check=2)
    assert "allow.yaml: unknown key 'root' (did you mean 'roots'?)" in proc.stderr
    assert project.read()[0].get("status", "") == ""


def test_the_users_allow_file_counts_for_every_project(project, tmp_path):
    """~/.config/sheetrun/allow.yaml ($XDG_CONFIG_HOME) is read beside the project's."""
    user = os.path.join(os.environ["XDG_CONFIG_HOME"], "sheetrun")
    os.makedirs(user)
    with open(os.path.join(user, "allow.yaml"), "w") as f:
        f.write("programs: ['*']\nenv: [LD_LIBRARY_PATH]\n")
    allowance = Allowance.load(project.root)
    assert allowance.env_problem("env:LD_LIBRARY_PATH", "LD_LIBRARY_PATH") is None
    assert allowance.env_problem("env:LD_PRELOAD", "LD_PRELOAD") is not None
    assert allowance.program_problem({"is_python": False}, "/usr/bin/env", "/usr/bin/env") is None
