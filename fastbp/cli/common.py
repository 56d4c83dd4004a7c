"""What the ``fastbp`` command's modules share: exit codes, the files of a run directory, the
errors that end a command, and the parsers of settings more than one command takes."""
import argparse
import signal

from .._validation import InputError

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

# the files of a run directory (train's --out)
CHECKPOINT, MODEL, HISTORY, METRICS, PLOT = ("checkpoint.npz", "model.npz", "history.jsonl",
                                             "metrics.json", "training.png")


class UsageError(InputError):
    """Bad usage or input that the user can fix: reported in one line, exit code 2."""


class Stopped(Exception):
    """Training stopped by a signal after writing its checkpoint (exit 130 / 143)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def layers(text):
    """Hidden layer sizes from ``64,64`` (or a TOML list)."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [s for s in str(text).split(",") if s.strip()]
    try:
        sizes = [int(s) for s in items]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"layers takes comma-separated integers like 64,64; "
                                         f"got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layers must be positive integers; got {text!r}")
    return sizes


def positive_int(text):
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return v
