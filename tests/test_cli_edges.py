"""What a new user meets first at the command line: errors, tables, history, plots, sweeps."""
import os

from conftest import BASE, CFG

from runner.launch.sweeps import swept_labels
from runner.results.history import figure

LONG_NAMES = """
from runner import report
report(final_accuracy_on_the_validation_set=0.91, final_negative_log_likelihood=0.3)
"""


def test_usage_errors_exit_2_and_say_what_to_do(project):
    path = project.sheet(BASE + ["name", "delta:x"], [["scripts/ok.py", CFG, "1", "a", "1"]])
    for args, said in [(("run", path, "--jobs", "0"), "--jobs: must be at least 1"),
                       (("run", path, "--timeout", "soon"), "--timeout"),
                       (("run", path, "--retries", "-1"), "--retries: must be at least 0"),
                       (("run", path, "--poll", "0"), "--poll: must be more than 0"),
                       (("history", path, "9"), "there is no row 9 (the sheet has row 1)"),
                       (("status", path, "--show", "scroe"), "the sheet has no column 'scroe'")]:
        out = project.sheetrun(*args, check=2)
        assert said in out.stderr, (args, out.stderr)
    assert "--rows" not in project.sheetrun("history", path, "9", check=2).stderr
    project.sheetrun("run", path, check=0)
    out = project.sheetrun("status", path, "--show", "scroe", check=2)
    assert "did you mean 'score'?" in out.stderr
    assert "did you mean 'score'?" in project.sheetrun("history", path, "a", "--show", "scroe", check=2).stderr


def test_tables_are_whole_when_the_output_is_not_a_terminal(project):
    project.write("scripts/long.py", LONG_NAMES)
    path = project.sheet(BASE + ["name"], [["scripts/long.py", CFG, "1", "first"]])
    out = project.sheetrun("run", path, check=0, env={"COLUMNS": ""})
    assert "final_accuracy_on_the_validation_set" in out.stderr and "final_negative_log_likelihood" in out.stderr
    hist = project.sheetrun("history", path, "first", check=0).stdout
    assert "final_accuracy_on_the_validation_set" in hist and "…" not in hist
    header = next(line for line in hist.splitlines() if "run_id" in line)
    assert "#" in header                                  # the index column has a name
    status = project.sheetrun("status", path, "--show", "final_negative_log_likelihood", check=0).stdout
    assert "final_negative_log_likelihood" in status


def test_history_finds_a_rows_runs_after_reset(project):
    path = project.sheet(BASE + ["name", "delta:x"], [["scripts/ok.py", CFG, "1", "first", "1"],
                                                      ["scripts/ok.py", CFG, "1", "second", "2"]])
    project.sheetrun("run", path, check=0)
    project.sheetrun("reset", path, check=0)
    out = project.sheetrun("history", path, "first", check=0).stdout
    assert "row 1: 1 run(s)" in out and "has not been run" not in out
    project.sheetrun("run", path, check=0)
    project.sheetrun("reset", path, "--rows", "second", check=0)
    assert "row 1: 2 run(s)" in project.sheetrun("history", path, "first", check=0).stdout
    assert "row 2: 2 run(s)" in project.sheetrun("history", path, "second", check=0).stdout


def test_a_sweep_row_run_without_expand_says_to_expand_it(project):
    path = project.sheet(BASE + ["delta:lr"], [["scripts/ok.py", CFG, "1", "{0.1 | 0.01}"]])
    project.sheetrun("run", path, check=1)
    error = project.read()[0]["error"]
    assert "is a sweep" in error and "--expand" in error and "sheetrun expand" in error
    assert "expected a number" not in error


def test_sweep_rows_are_labelled_by_their_swept_values(project):
    path = project.sheet(BASE + ["name", "delta:lr", "delta:x"], [["scripts/ok.py", CFG, "1", "sw", "{0.1 | 0.01}", "{1 | 2}"],
                                                                  ["scripts/ok.py", CFG, "1", "plain", "0.5", "3"]])
    project.sheetrun("expand", path, check=0)
    from runner.sheet import open_sheet

    labels = swept_labels(open_sheet(path).read())
    assert labels == {2: "lr=0.1, x=1", 3: "lr=0.1, x=2", 4: "lr=0.01, x=1", 5: "lr=0.01, x=2"}
    project.sheetrun("run", path, check=0)
    plot = project.sheetrun("plot", path, "score", "--out", os.path.join(project.root, "s.png"), check=0)
    assert "5 curve(s) of score" in plot.stdout            # the four of the sweep and the plain row


def test_epoch_axes_have_whole_ticks():
    import matplotlib.pyplot as plt

    fig = figure([("a", "epoch", [1, 2, 3], [0.5, 0.6, 0.7]), ("b", "epoch", [1, 2], [0.4, 0.5])], "acc")
    ticks = fig.axes[0].get_xticks()
    plt.close(fig)
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    fig = figure([("a", "time", [0.25, 0.5, 0.75], [1, 2, 3])], "loss")     # not whole: left alone
    assert not all(float(t).is_integer() for t in fig.axes[0].get_xticks())
    plt.close(fig)
