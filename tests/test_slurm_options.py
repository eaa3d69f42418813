import pytest

from runner.slurm.options import SlurmOptionError, validate


@pytest.mark.parametrize("option,value", [
    ("time", "60"), ("time", "1:00:00"), ("time", "2-00:00:00"), ("time", "UNLIMITED"),
    ("mem", "16G"), ("mem", "4000"), ("gpus", "1"), ("gpus", "a100:2"), ("cpus-per-task", "8"),
    ("partition", "gpu-a100"), ("qos", "normal"), ("nodes", "1-2"), ("exclusive", ""),
])
def test_valid(option, value):
    assert validate(option, value) == value


@pytest.mark.parametrize("option,value,message", [
    ("time", "1h", "not a time"), ("mem", "lots", "not a size"), ("cpus-per-task", "0", "positive"),
    ("gpus", "two", "count"), ("partiton", "gpu", "did you mean slurm:partition"),
    ("array", "0-9", "sheetrun groups rows"), ("output", "/tmp/x", "run folder"),
    ("dependency", "afterok:1", "depends_on"), ("partition", "gpu\n#SBATCH --x", "line break"),
])
def test_invalid(option, value, message):
    with pytest.raises(SlurmOptionError, match=message):
        validate(option, value)
