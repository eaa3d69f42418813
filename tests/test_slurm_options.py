import pytest

from runner.rowspec.slurm_options import SlurmOptionError, validate


@pytest.mark.parametrize("option,value", [
    ("time", "60"), ("time", "1:00:00"), ("time", "2-00:00:00"), ("time", "UNLIMITED"),
    ("mem", "16G"), ("mem", "4000"), ("gpus", "1"), ("gpus", "a100:2"), ("cpus-per-task", "8"),
    ("partition", "gpu-a100"), ("qos", "normal"), ("nodes", "1-2"), ("exclusive", ""),
    ("output", "/scratch/logs/%j.out"), ("error", "/scratch/logs/%j.err"),      # stnd sheets set these
])
def test_valid(option, value):
    assert validate(option, value) == value


@pytest.mark.parametrize("option,value,message", [
    ("time", "1h", "not a time"), ("mem", "lots", "not a size"), ("cpus-per-task", "0", "positive"),
    ("gpus", "two", "count"), ("partiton", "gpu", "did you mean slurm:partition"),
    ("array", "0-9", "sheetrun groups rows"), ("chdir", "/tmp", "project root"),
    ("dependency", "afterok:1", "depends_on"), ("partition", "gpu\n#SBATCH --x", "line break"),
])
def test_invalid(option, value, message):
    with pytest.raises(SlurmOptionError, match=message):
        validate(option, value)


def test_a_rows_output_and_error_reach_sbatch_after_sheetruns_own(tmp_path):
    from runner.slurm.executor import SlurmExecutor

    executor = SlurmExecutor(str(tmp_path), str(tmp_path / "logs"), client=object())
    argv = executor.sbatch_options(2, {"output": "/scratch/%A_%a.out", "error": "/scratch/%A_%a.err"}, [])
    ours = argv.index(f"--output={tmp_path / 'logs' / 'slurm-%A_%a.out'}")
    assert argv.index("--output=/scratch/%A_%a.out") > ours and "--error=/scratch/%A_%a.err" in argv


def test_a_slurm_dry_run_shows_each_rows_sbatch_options(project):
    """What each row would ask SLURM for, before anything is submitted: the project's defaults,
    the row's cells over them, its time limit; and what it does not ask for (memory)."""
    from conftest import BASE, CFG

    project.write("sheetrun.yaml", "slurm:\n  partition: gpu\n  mem: 8G\n")
    path = project.sheet(BASE + ["slurm:gres", "slurm:mem", "time_limit"],
                         [["scripts/ok.py", CFG, "1", "gpu:8", "64G", "2:00:00"],
                          ["scripts/ok.py", CFG, "1", "", "", ""]])
    proc = project.sheetrun("run", path, "--backend", "slurm", "--dry-run", "--root", project.root, check=0)
    lines = proc.stdout.splitlines()
    assert "    sbatch --gres=gpu:8 --mem=64G --partition=gpu --time=2:00:00" in lines
    assert "    sbatch --mem=8G --partition=gpu" in lines
    assert "    note: no time limit asked for: the cluster's default applies" in lines
    project.write("sheetrun.yaml", "")
    proc = project.sheetrun("run", path, "--backend", "slurm", "--dry-run", "--root", project.root, "--rows", "2",
                            "--timeout", "30", check=0)
    assert "    sbatch --time=30" in proc.stdout.splitlines()
    assert "    note: no memory asked for: the cluster's default applies" in proc.stdout.splitlines()
