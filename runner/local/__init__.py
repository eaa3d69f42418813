from runner.local.executor import LocalExecutor, LocalJob

__all__ = ["LocalExecutor", "LocalJob"]
