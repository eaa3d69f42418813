"""Sheets written for stnd run as they are.

Every expectation here is what stnd does for the same row, read from its source
(``stnd/run_from_csv/__main__.py``, ``stnd/run_cmd/runner.py``,
``stnd/utility/utils.py``) or from the files its own tests record
(``tests/run_from_csv/canonical_files/canonical_csv_runner.csv``); where
sheetrun deliberately differs the test says so (commands are argv lists, never
a shell line).
"""
import json
import os
import subprocess
import sys

import pytest
from conftest import BASE, CFG

ARGS = "import sys, json\nprint(json.dumps(sys.argv[1:]))\n"

# stnd's runner test config (tests/run_from_csv/configs/runner_config.yaml): no runner keys at all,
# the row's deltas create them
RUNNER_CONFIG = "params:\n  random_seed: 42\n\nlogging:\n  gdrive_storage_folder: null\n  use_wandb: False\n"

# stnd's runner test target (tests/run_from_csv/executables/runner_target.py)
RUNNER_TARGET = """
import sys, argparse
parser = argparse.ArgumentParser()
parser.add_argument("--print_stdout", action="store_true")
parser.add_argument("-p", action="store_true")
parser.add_argument("--number_arg", type=int, required=True)
args = parser.parse_args()
assert args.number_arg == 10
if args.print_stdout:
    print("Hello, stdout")
    print("save_number: 10.0")
    print("save_number: 12.0")
if args.p:
    print("save_number: 13.0")
    print("Hello, stderr", file=sys.stderr)
"""
RUNNER_HEADER = ["path_to_default_config", "path_to_main", "whether_to_run", "delta:exec_path", "delta:conda_env",
                 "delta:is_python", "delta:kwargs/number_arg", "delta:two_dash_flags", "delta:single_dash_flags",
                 "delta:take_last_dict/saved_number"]


def test_stnds_runner_test_sheet_gives_its_canonical_output(project):
    """stnd's tests/run_from_csv/csvs/csv_for_runner.csv, twice: take_last_dict Default, and a regex."""
    project.write("configs/runner_config.yaml", RUNNER_CONFIG)
    project.write("executables/runner_target.py", RUNNER_TARGET)
    base = ["./configs/runner_config.yaml", "__RUNNER__", "1", "./executables/runner_target.py", "None", "True",
            "10", "[print_stdout]", "[p]"]
    path = project.sheet(RUNNER_HEADER, [base + ["Default"], base + ["save_number: (__B__d+__B__.__B__d+)"]])
    project.sheetrun("run", path, check=0)
    default, regex = project.read()
    assert default["status"] == regex["status"] == "Completed"
    # canonical_csv_runner.csv: "?" (stnd's filler for an empty cell) and 13.0, the last match
    assert default["saved_number"] == "" and regex["saved_number"] == "13.0"
    out = open(os.path.join(project.root, regex["run_folder"], "stdout.log")).read()
    assert "save_number: 12.0" in out and "Hello, stderr" not in out


@pytest.mark.parametrize("config,expected", [
    # kwargs are formatted as stnd's make_task_cmd does: "--{k}={v}" with str(v), in alphabetical order
    # (stnd dumps the config with sorted keys and reads it back)
    ({"kwargs": {"b": True, "l": [1, 2], "n": None, "lr": 0.001, "s": "a b"}},
     ["--b=True", "--l=[1, 2]", "--lr=0.001", "--n=None", "--s=a b"]),          # stnd: "a b" split by bash
    ({"two_dash_flags": ["x", "long_flag"], "single_dash_flags": ["v"]}, ["--x", "--long_flag", "-v"]),
    ({"kwargs": {"k": 1}, "two_dash_flags": ["f"], "single_dash_flags": ["s"]}, ["--k=1", "--f", "-s"]),
    ({"kwargs": {"q": "$(touch /tmp/pwned); `id`"}}, ["--q=$(touch /tmp/pwned); `id`"]),   # never a shell
])
def test_runner_arguments_are_stnds(project, config, expected):
    import yaml

    project.write("tools/args.py", ARGS)
    project.write("default_configs/prog.yaml", yaml.safe_dump(dict(config, exec_path="./tools/args.py"),
                                                              sort_keys=False))
    path = project.sheet(BASE, [["__RUNNER__", "default_configs/prog.yaml", "1"]])
    project.sheetrun("run", path, check=0)
    row = project.read()[0]
    assert json.loads(open(os.path.join(project.root, row["run_folder"], "stdout.log")).read()) == expected
    assert not os.path.exists("/tmp/pwned")


def test_runner_deltas_create_the_programs_arguments_but_scripts_keep_the_typo_check(project):
    project.write("tools/args.py", ARGS)
    project.write("default_configs/prog.yaml", "exec_path: ./tools/args.py\nkwargs: {}\n")
    path = project.sheet(BASE + ["delta:kwargs/model_path", "delta:kwargs/user_number", "delta:two_dash_flags",
                                 "delta:nested/dpeth"], [
        ["__RUNNER__", "default_configs/prog.yaml", "1", "./m.pt", "7", "[fast]", ""],
        ["scripts/ok.py", CFG, "1", "", "", "", "3"],
    ])
    project.sheetrun("run", path, check=1)
    runner_row, script_row = project.read()
    out = json.loads(open(os.path.join(project.root, runner_row["run_folder"], "stdout.log")).read())
    # a kwarg named *path* is made absolute, as stnd's config reader makes it
    assert out == [f"--model_path={os.path.join(project.root, 'm.pt')}", "--user_number=7", "--fast"]
    assert "unknown config key 'nested/dpeth'" in script_row["error"] and "did you mean 'depth'" in script_row["error"]


def test_is_bash_runs_the_program_with_bash(project):
    project.write("tools/hello.sh", 'echo "bash says $1 $BASH_VERSION" | cut -c1-14\n')
    project.write("default_configs/sh.yaml", "exec_path: ./tools/hello.sh\nis_python: false\nis_bash: true\n"
                                             "single_dash_flags: []\n")
    path = project.sheet(BASE + ["delta:two_dash_flags"], [["__RUNNER__", "default_configs/sh.yaml", "1", "[x]"]])
    project.sheetrun("run", path, check=1)           # bash runs only once the machine's owner allows it
    row = project.read()[0]
    assert row["status"] == "Failed" and "add bash under 'programs:'" in row["error"]
    project.write(".sheetrun/allow.yaml", "programs: [bash]\n")
    project.sheetrun("reset", path, check=0)
    project.sheetrun("run", path, check=0)
    row = project.read()[0]
    assert open(os.path.join(project.root, row["run_folder"], "stdout.log")).read().strip() == "bash says --x"


CONDA = """#!/usr/bin/env python3
# a stand-in for conda (not installable here): `conda run --no-capture-output -p ENV CMD...` records ENV, runs CMD
import json, os, sys
args = sys.argv[1:]
assert args[:2] == ["run", "--no-capture-output"], args
with open(os.environ["CONDA_LOG"], "a") as f:
    f.write(json.dumps(args[:4]) + "\\n")
os.execvp(args[4], args[4:])
"""


def test_conda_env_runs_through_conda_run_or_fails_the_row_clearly(project, tmp_path):
    project.write("tools/args.py", ARGS)
    project.write("default_configs/prog.yaml", "exec_path: ./tools/args.py\nconda_env: ./envs/x\n"
                                               "kwargs:\n  a: 1\n")
    path = project.sheet(BASE + ["delta:conda_env"], [["__RUNNER__", "default_configs/prog.yaml", "1", ""],
                                                       ["__RUNNER__", "default_configs/prog.yaml", "1", "None"]])
    env = {"PATH": "/usr/bin:/bin", "CONDA_EXE": ""}
    project.sheetrun("run", path, env=env, check=1)
    with_env, without = project.read()
    assert with_env["status"] == "Failed" and "conda is not installed here" in with_env["error"]
    assert without["status"] == "Completed"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "conda").write_text(CONDA)
    (bin_dir / "conda").chmod(0o755)
    log = tmp_path / "conda.log"
    text = open(path).read().replace("prog.yaml,0,", "prog.yaml,1,")
    open(path, "w").write(text)
    python_dir = os.path.dirname(sys.executable)          # `python` inside the "environment"
    project.sheetrun("run", path, "--rows", "1",
                     env={"PATH": f"{bin_dir}:{python_dir}:/usr/bin:/bin", "CONDA_LOG": str(log)}, check=0)
    assert json.loads(log.read_text()) == ["run", "--no-capture-output", "-p", os.path.join(project.root, "envs/x")]
    row = project.read()[0]
    assert json.loads(open(os.path.join(project.root, row["run_folder"], "stdout.log")).read()) == ["--a=1"]


def test_stnd_placeholders(project):
    project.write("tools/args.py", ARGS)
    project.write("default_configs/prog.yaml", "exec_path: ./tools/args.py\nkwargs: {}\n")
    path = project.sheet(BASE + ["tag", "delta:kwargs/items", "delta:kwargs/quoted", "delta:kwargs/regex",
                                 "delta:kwargs/sheet", "delta:kwargs/runner", "delta:kwargs/row"],
                         [["__RUNNER__", "default_configs/prog.yaml", "1", "T", "10__COMMA__30", "say __Q__hi__Q__",
                           "a__B__d+", "__WORKSHEET__.csv", "__RUNNER__", "r__ROW_____COL:tag__"]])
    project.sheetrun("run", path, check=0)
    row = project.read()[0]
    out = json.loads(open(os.path.join(project.root, row["run_folder"], "stdout.log")).read())
    runner_program = os.path.join(os.path.dirname(__import__("runner").__file__), "run_cmd.py")
    assert out == ["--items=10,30", '--quoted=say "hi"', "--regex=a\\d+", "--row=r1_T",
                   f"--runner={runner_program}", "--sheet=sheet.csv"]


ENV_SCRIPT = "import os\nfrom runner import report\nreport(a=os.environ.get('A', 'unset'), b=os.environ.get('B', 'unset'))\n"


def test_cmd_env_var_columns_and_htcondor_columns(project, monkeypatch):
    project.write("scripts/env2.py", ENV_SCRIPT)
    path = project.sheet(BASE + ["delta:name", "cmd_env_var:A", "cmd_env_var:B", "env_var:X", "condor:bid"],
                         [["scripts/env2.py", CFG, "1", "a", "$HOME/x:${SHEETRUN_TEST_VAR}", "Default", "1", "10"]])
    proc = project.sheetrun("run", path, env={"SHEETRUN_TEST_VAR": "v", "B": "from outside"}, check=0)
    row = project.read()[0]
    assert row["a"] == os.path.expanduser("~") + "/x:v"          # $VAR expanded, never through a shell
    assert row["b"] == "from outside"                            # Default: not set by the row
    assert proc.stderr.count("HTCondor is not a backend") == 1 and row["env_var:X"] == "1"


def test_stnd_paths_and_project_root(project, tmp_path):
    project.write("elsewhere/tool.py", "from runner import report\nimport os\n"
                                       "report(root=os.environ.get('PROJECT_ROOT_PROVIDED_FOR_STUNED'))\n")
    path = project.sheet(BASE + ["delta:name"], [["<$TOOLS>/tool.py", CFG, "1", "a"],
                                                 [f"!!!{project.root}/scripts/ok.py", CFG, "1", "b"],
                                                 ["<$NOPE>/tool.py", CFG, "1", "c"]])
    project.sheetrun("run", path, env={"TOOLS": os.path.join(project.root, "elsewhere")}, check=1)
    a, b, c = project.read()
    assert a["status"] == b["status"] == "Completed" and a["root"] == project.root
    assert c["status"] == "Failed" and "the environment variable NOPE is not set" in c["error"]
    # a sheet outside result_sheets/: PROJECT_ROOT_PROVIDED_FOR_STUNED, else the git repository's top
    sheets = tmp_path / "proj" / "deep" / "sheets"
    sheets.mkdir(parents=True)
    outside = sheets / "s.csv"
    outside.write_text(f"path_to_main,path_to_default_config,whether_to_run,delta:name\nscripts/ok.py,{CFG},1,x\n")
    project.sheetrun("run", str(outside), env={"PROJECT_ROOT_PROVIDED_FOR_STUNED": project.root}, check=0)
    # another row (the same row, written afresh, has a finished run the sheet does not show: not run again)
    outside.write_text(f"path_to_main,path_to_default_config,whether_to_run,delta:name\nscripts/ok.py,{CFG},1,y\n")
    subprocess.run(["git", "init", "-q", project.root], check=True)
    project.sheetrun("run", str(outside), check=0)
    assert "Completed" in outside.read_text()


def test_the_sed_papers_caching_sheet_runs_with_kwargs_its_config_lacks(project):
    """The SED paper's caching sheet: __RUNNER__ rows, kwargs deltas the default config lacks (n_epochs),
    placeholders in the config, and a conda_env it sets to None to run here."""
    project.write("tools/cache.py", "import sys\nprint(' '.join(sys.argv[1:]))\n")
    project.write("configs/caching/caching.yaml",
                  "params:\n  random_seed: 42\nis_python: True\n\nexec_path: ./tools/cache.py\n"
                  "conda_env: ./envs/x\n\nkwargs:\n  model: <placeholder>\n  layer_cutoff: <placeholder>\n"
                  "  original_dataset_name: <placeholder>\n  cache_save_path: <placeholder>\n")
    header = ("path_to_main,path_to_default_config,whether_to_run,delta:kwargs/model,"
              "delta:kwargs/layer_cutoff,delta:kwargs/original_dataset_name,delta:kwargs/cache_save_path,"
              "delta:kwargs/n_epochs,delta:conda_env\n")
    rows = ("__RUNNER__,./configs/caching/caching.yaml,1,deit3b,-1,in_val,./data/in_val.hdf5,1,None\n"
            "__RUNNER__,./configs/caching/caching.yaml,1,deit3b,-1,in_train,./data/in_train.hdf5,4,None\n")
    path = project.write("result_sheets/caching.csv", header + rows)
    project.sheetrun("run", path, check=0)
    rows = project.read("caching.csv")
    out = open(os.path.join(project.root, rows[1]["run_folder"], "stdout.log")).read()
    # as stnd passes them: alphabetical, the *path* kwarg absolute
    assert out.split() == [f"--cache_save_path={os.path.join(project.root, 'data', 'in_train.hdf5')}",
                           "--layer_cutoff=-1", "--model=deit3b", "--n_epochs=4", "--original_dataset_name=in_train"]


def test_the_runner_program_that___RUNNER___names_in_a_cell_runs_a_runner_config(project):
    """In any cell but a bare path_to_main, __RUNNER__ is sheetrun's runner program (stnd: its run_cmd/main.py)."""
    project.write("configs/runner_config.yaml", RUNNER_CONFIG)
    project.write("executables/runner_target.py", RUNNER_TARGET)
    header = ["path_to_default_config", "path_to_main", "whether_to_run", "runner", "delta+:exec_path",
              "delta+:kwargs/number_arg", "delta+:two_dash_flags", "delta+:take_last_dict/saved_number"]
    path = project.sheet(header, [["./configs/runner_config.yaml", "__COL:runner__", "1", "__RUNNER__",
                                   "./executables/runner_target.py", "10", "[print_stdout]",
                                   "save_number: (__B__d+__B__.__B__d+)"]])
    project.sheetrun("run", path, check=0)
    row = project.read()[0]
    assert row["status"] == "Completed" and row["saved_number"] == "12.0"      # no -p: 12.0 is the last
    assert "run_cmd.py --config" in open(os.path.join(project.root, row["run_folder"], "command.txt")).read()


def _stnd_sheet(rows):
    """Text as stnd writes a sheet (write_into_csv_with_column_names' csv settings)."""
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_NONE, escapechar="\\", quotechar='"', doublequote=True,
               lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


def test_a_sheet_stnd_filled_in_runs_counts_and_settles_like_ours(project, tmp_path):
    """stnd's quick-start sheet after a stnd run (tutorials/quick_start_guide/filled_results.csv's shape):
    stnd's statuses and "?" fillers, cells escaped with backslashes, rows stnd left Submitted/Running."""
    import csv
    import io
    import time

    dead, alive = tmp_path / "stnd_dead_run", tmp_path / "stnd_alive_run"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "stdout.txt").write_text("...")
    old = time.time() - 3600
    os.utime(dead / "stdout.txt", (old, old))
    header = ["path_to_default_config", "path_to_main", "whether_to_run", "delta:name", "notes", "status",
              "run_folder", "job id", "score", "walltime"]
    rows = [header,
            [CFG, "scripts/ok.py", "0", "done", "a, b", "Completed", "/x/run1", "Not found", "2", "0:00:00.3"],
            [CFG, "scripts/ok.py", "1", "failed, once", "c", "Fail", "/x/run2", "Not found", "?", "?"],
            [CFG, "scripts/ok.py", "0", "ghost", "", "Submitted", str(dead), "Not found", "?", "?"],
            [CFG, "scripts/ok.py", "0", "busy", "", "Running", str(alive), "Not found", "?", "?"]]
    path = project.write("result_sheets/sheet.csv", _stnd_sheet(rows))
    status = project.sheetrun("status", path, check=0).stdout
    assert "Fail" in status and "rows that did not complete" in status
    out = project.sheetrun("sync", path, check=0).stdout
    assert "left Submitted by stnd" in out and "still writing its log" in out
    project.sheetrun("run", path, check=0)
    text = open(path).read()
    back = list(csv.DictReader(io.StringIO(text, newline=""), quoting=csv.QUOTE_NONE, escapechar="\\",
                               quotechar='"', doublequote=True))          # stnd can still read it
    assert [r["status"] for r in back] == ["Completed", "Completed", "Lost", "Running"]
    assert back[0]["notes"] == "a, b" and back[1]["delta:name"] == "failed, once"
    assert back[1]["score"] == "2"                        # the "?" filler was not a person's value
    assert "\\," in text and '"' not in text              # still stnd's form


# -- what stnd-wrapped scripts log with stnd's own logger ----------------------------------------

# A script written for stuned 1.0.1, the way its users write them (stuned's helpers_for_main):
# stnd's logger writes the cells it logs into the file logging/output_csv names.
STUNED_SCRIPT = """
import os, sys, time
STUNED = os.environ["SHEETRUN_STUNED_DIR"]                  # where stuned 1.0.1 is installed, apart
# stuned pins pyOpenSSL 24.2.1, which needs the cryptography installed with it there (newer ones
# dropped what it uses): those two come from stuned's folder, everything else from this environment
sys.path.insert(0, STUNED)
import cryptography, OpenSSL
sys.path.remove(STUNED)
sys.path.append(STUNED)
from stuned.utility.helpers_for_main import prepare_wrapper_for_experiment
from stuned.utility.logger import try_to_log_in_csv


def check_config(config, config_path, logger):
    assert "params" in config


@prepare_wrapper_for_experiment(check_config)
def main(config, logger, processes_to_kill_before_exiting):
    try_to_log_in_csv(logger, "accuracy", 0.5)
    while not os.path.exists(config["params"]["gate"]):
        time.sleep(0.05)
    try_to_log_in_csv(logger, "accuracy", 0.93)
    try_to_log_in_csv(logger, "best, epoch", "7, early")
    if config["params"]["fail"]:
        raise ValueError("diverged")


if __name__ == "__main__":
    main()
"""
STUNED_CONFIG = """
use_hardcoded_config: False
params:
  random_seed: 0
  gate: unset
  fail: False
logging:
  gdrive_storage_folder: null
  use_wandb: False
  use_tb: False
"""


@pytest.fixture
def stuned_dir():
    """stuned 1.0.1 from the package index, installed apart (``.ci/run`` does it, with the
    modules its logger imports) so that its pinned requirements never reach this environment."""
    path = os.environ.get("SHEETRUN_STUNED_DIR", "")
    if not os.path.isfile(os.path.join(path, "stuned", "utility", "logger.py")):
        if os.environ.get("SHEETRUN_REQUIRE_STUNED") == "1":
            pytest.fail(f"SHEETRUN_REQUIRE_STUNED=1 but SHEETRUN_STUNED_DIR={path!r} holds no stuned")
        pytest.skip("stuned 1.0.1 is not installed apart here: .ci/run installs it "
                    "(pip install --target DIR stuned==1.0.1 ...; SHEETRUN_STUNED_DIR=DIR)")
    return path


def test_what_a_stuned_wrapped_script_logs_reaches_its_row_live_and_never_the_sheet_file(project, stuned_dir):
    from conftest import wait_for

    project.write("scripts/stuned_main.py", STUNED_SCRIPT)
    project.write("default_configs/stuned.yaml", STUNED_CONFIG)
    gate = os.path.join(project.root, "gate")
    header = BASE + ["delta:params/gate", "delta:params/fail", "cmd_env_var:DEFAULT_ENV", "cmd_env_var:TEST_ENV",
                     "cmd_env_var:SHEETRUN_STUNED_DIR", "notes"]
    row = ["scripts/stuned_main.py", "default_configs/stuned.yaml", "1", gate]
    env = ["main", "test", stuned_dir, "a person's, note"]
    path = project.sheet(header, [row + ["False"] + env, row + ["True"] + env])
    proc = project.popen("run", path, "--jobs", "2")
    try:
        # live: the first value is in the row while the script still waits at its gate
        wait_for(lambda: [r.get("accuracy") for r in project.read()] == ["0.5", "0.5"], timeout=90,
                 what="the first logged accuracy in both rows")
        assert {r["status"] for r in project.read()} == {"Running"}
        open(gate, "w").close()
        assert proc.wait(timeout=90) == 1
    finally:
        open(gate, "w").close()
        proc.kill()
    done, failed = project.read()
    assert done["status"] == "Completed" and done["accuracy"] == "0.93" and done["best, epoch"] == "7, early"
    assert failed["status"] == "Failed" and failed["accuracy"] == "0.93" and "diverged" in failed["error"]
    assert done["notes"] == "a person's, note" and "job id" not in done    # stnd's bookkeeping stays out
    import yaml
    config = yaml.safe_load(open(os.path.join(project.root, done["run_folder"], "config.yaml")))
    private = os.path.join(project.root, done["run_folder"], "stnd_row.csv")
    output_csv = config["logging"]["output_csv"]              # the section stnd injects, pointed elsewhere
    assert os.path.samefile(output_csv.pop("path"), private)
    assert output_csv == {"row_number": 1, "spreadsheet_url": None, "worksheet_name": None}
    assert "0.93" in open(private).read()            # stnd's writer wrote there, not into the sheet


# A script that sets up stuned's logger itself, from a config with no logging section of its own:
# what it logs goes where the logging/output_csv that stnd gives every row points.
STUNED_OWN_LOGGER = STUNED_SCRIPT.split("from stuned.utility.helpers_for_main")[0] + """
import yaml
from stuned.utility.logger import redneck_logger_context, try_to_log_in_csv

config = yaml.safe_load(open(sys.argv[sys.argv.index("--config") + 1]))
logging = dict(config["logging"], gdrive_storage_folder=None, use_wandb=False, use_tb=False)
with redneck_logger_context(logging, os.environ["SHEETRUN_RUN_DIR"], exp_name="own") as logger:
    try_to_log_in_csv(logger, "accuracy", 0.93)
"""


def test_a_script_that_imports_stuned_gets_logging_output_csv_even_without_a_logging_section(project, stuned_dir):
    """stnd gives every row logging/output_csv. sheetrun gives it to every stnd-wrapped script: one
    whose config has a logging section, or one that imports stnd / stuned itself."""
    import yaml

    project.write("scripts/own_logger.py", STUNED_OWN_LOGGER)
    project.write("default_configs/bare.yaml", "params:\n  random_seed: 0\n")
    path = project.sheet(BASE + ["cmd_env_var:SHEETRUN_STUNED_DIR", "cmd_env_var:DEFAULT_ENV", "cmd_env_var:TEST_ENV"],
                         [["scripts/own_logger.py", "default_configs/bare.yaml", "1", stuned_dir, "main", "test"],
                          ["scripts/ok.py", "default_configs/base.yaml", "1", "", "", ""]])
    proc = project.sheetrun("run", path, timeout=180)
    stuned_row, plain_row = project.read()
    assert stuned_row["status"] == "Completed", (stuned_row["error"], proc.stderr[-2000:])
    assert stuned_row["accuracy"] == "0.93"
    config = yaml.safe_load(open(os.path.join(project.root, stuned_row["run_folder"], "config.yaml")))
    assert config["logging"]["output_csv"]["row_number"] == 1 and config["params"] == {"random_seed": 0}
    plain = yaml.safe_load(open(os.path.join(project.root, plain_row["run_folder"], "config.yaml")))
    assert plain_row["status"] == "Completed" and "logging" not in plain        # not stnd's: untouched


def test_logged_row_reads_stnds_escaped_form_its_working_copy_and_skips_half_written_files(tmp_path):
    """Newer stnd (stnd/utility/logger.py, set_up_local_csv) logs into ``local_copy_<name>`` in its
    own run folder and copies the row back into the private CSV only at its start, end and failure."""
    from runner.rowspec.stnd_logging import LoggedRow

    private, stnd_folder = tmp_path / "stnd_row.csv", tmp_path / "stnd_run"
    stnd_folder.mkdir()
    copy = stnd_folder / "local_copy_stnd_row.csv"
    private.write_text(f"status,whether_to_run,run_folder,job id\r\nRunning,0,{stnd_folder},Not found\r\n")
    watch = LoggedRow(str(private))
    assert watch.changes() == {}                                  # bookkeeping only
    copy.write_text(f"status,run_folder,loss,note\r\nRunning,{stnd_folder},0.7,a\\, b\r\n")
    assert watch.changes() == {"loss": "0.7", "note": "a, b"}     # stnd's escaped comma, read back whole
    assert watch.changes() == {}                                  # nothing new, nothing sent again
    copy.write_text(f"status,run_folder,loss,note\r\nRunning,{stnd_folder},0.6")   # caught mid-write
    assert watch.changes() == {}
    copy.write_text(f"status,run_folder,loss,note,acc\r\nRunning,{stnd_folder},0.6,a\\, b,?\r\n")
    assert watch.changes() == {"loss": "0.6"}                     # "?" is stnd's filler, not a value
    private.write_text(f'status,run_folder,loss,acc,walltime\r\nCompleted,{stnd_folder},0.6,"0.9",0:00:01\r\n')
    assert watch.changes(final=True) == {"acc": "0.9"}           # its final copy back; stuned's quoted form


STUNED_REFERENCE = """
import json, os, sys, tempfile
os.environ.setdefault("DEFAULT_ENV", "main"); os.environ.setdefault("TEST_ENV", "test")
sys.path.append(sys.argv[1])
from stuned.utility.utils import decode_val_from_str, expand_csv, read_csv_as_dict, write_csv_dict_to_csv
cells, sweep_row = json.loads(sys.argv[2]), json.loads(sys.argv[3])
folder = tempfile.mkdtemp()
src, out = os.path.join(folder, "in.csv"), os.path.join(folder, "out.csv")
write_csv_dict_to_csv({0: {k: k for k in sweep_row}, 1: sweep_row}, src)
expand_csv(src, out)
rows = [row for number, row in sorted(read_csv_as_dict(out).items()) if number > 0]
print(json.dumps({"decoded": [decode_val_from_str(c) for c in cells], "expanded": rows}))
"""


def test_cell_values_and_sweeps_decode_as_stuned_does_live(stuned_dir):
    """stuned 1.0.1's own decode_val_from_str and expand_csv, run here, against sheetrun's."""
    from runner.core.cells import decode
    from runner.launch.sweeps import combinations

    # "1e-3" is left out: stuned 1.0.1 crashes on it (int("1e-3")); newer stnd and sheetrun give 0.001
    cells = ["12", "-3", "0.5", "2.5e-3", "True", "false", "None", "NONE", "null", "TRUE", "[a b 3]", "[1 2]", "plain text", "[]"]
    sweep_row = {"delta:lr": "{0.1 | 0.01 | 0.001}", "delta:seed": "{<1 4 1 False>}",
                 "delta:width": "{<2 32 2 True>}", "delta:name": "fixed"}
    proc = subprocess.run([sys.executable, "-c", STUNED_REFERENCE, stuned_dir, json.dumps(cells),
                           json.dumps(sweep_row)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [decode(c) for c in cells] == theirs["decoded"]
    ours = [dict(sweep_row, **combo) for combo in combinations(sweep_row)]
    assert len(ours) == 3 * 3 * 4 and ours == theirs["expanded"]      # the same rows, in the same order


def test_stnds_own_test_sheet_sets_a_code_to_text_and_runs(project):
    """stnd's tests/run_from_csv: initialization_type (default 1) set to zeros / random / ones."""
    project.write("configs/config.yaml", "image:\n  color: red\n  shape: [64, 64]\ninitialization_type: 1\n"
                                         "params:\n  random_seed: 42\n")
    project.write("executables/executable.py", "import sys, yaml\nfrom runner import report\n"
                                               "cfg = yaml.safe_load(open(sys.argv[2]))\n"
                                               "report(init=cfg['initialization_type'])\n")
    path = project.sheet(["path_to_default_config", "path_to_main", "whether_to_run", "delta:initialization_type",
                          "delta:image/color"],
                         [["./configs/config.yaml", "./executables/executable.py", "1", kind, "red"]
                          for kind in ("zeros", "random", "ones")])
    proc = project.sheetrun("run", path, check=0)
    rows = project.read()
    assert [r["status"] for r in rows] == ["Completed"] * 3 and [r["init"] for r in rows] == ["zeros", "random", "ones"]
    assert "initialization_type = 'zeros': expected a number" in proc.stderr and "as stnd runs it" in proc.stderr


def test_run_conda_env_runs_every_script_row_in_that_environment(project, tmp_path):
    """stnd's --conda_env ENV: sheetrun run --conda-env ENV (script rows; a __RUNNER__ row's own wins)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "conda").write_text(CONDA)
    (bin_dir / "conda").chmod(0o755)
    log = tmp_path / "conda.log"
    path = project.sheet(BASE + ["delta:x"], [["scripts/ok.py", CFG, "1", "4"]])
    python_dir = os.path.dirname(sys.executable)          # `python` inside the "environment"
    project.sheetrun("run", path, "--conda-env", "research",
                     env={"PATH": f"{bin_dir}:{python_dir}:/usr/bin:/bin", "CONDA_LOG": str(log)}, check=0)
    row = project.read()[0]
    assert row["status"] == "Completed" and row["score"] == "8"
    assert json.loads(log.read_text()) == ["run", "--no-capture-output", "-n", "research"]
    command = open(os.path.join(project.root, row["run_folder"], "command.txt")).read()
    assert "conda run --no-capture-output -n research python" in command
