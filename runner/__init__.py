"""sheetrun: run the experiments of a results sheet and write their results back into it.

Only ``report`` is imported eagerly, so ``from runner import report`` in a
training script stays cheap.
"""
from runner.report import report

__version__ = "0.1.0"
__all__ = ["report", "__version__"]
