import pytest

from runner.slurm.options import SlurmOptionError, validate


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
