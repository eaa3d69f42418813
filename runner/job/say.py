"""The job's own messages."""
import sys


def say(message: str) -> None:
    """A line on the wrapper's stderr (its log, in the run folder); a full disk is no reason to fail."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass
