"""``fastbp plot``: a run's history.jsonl drawn into a PNG (needs matplotlib)."""
import json
import os

import numpy as np

from . import EXIT_OK, HISTORY, PLOT, UsageError


def _read_history(run_dir):
    hist = os.path.join(run_dir, HISTORY)
    try:
        with open(hist) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise UsageError(f"{hist}: no such file (is {run_dir} the --out of a fastbp train "
                         f"run?)") from None
    except OSError as e:
        raise UsageError(f"{hist}: unreadable ({e.strerror or e})") from None
    except ValueError as e:
        raise UsageError(f"{hist}: not a fastbp history ({e})") from None
    if not recs:
        raise UsageError(f"{hist}: no epochs recorded yet")
    try:
        epochs = [r["epoch"] for r in recs]
        loss = [r["loss"] for r in recs]
        val = [r.get("val_loss") for r in recs]
        grad = np.array([r["grad_norm"] for r in recs], dtype=np.float64)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise UsageError(f"{hist}: not a fastbp history (bad record: {e!r})") from None
    if grad.ndim != 2:
        raise UsageError(f"{hist}: not a fastbp history (grad_norm of varying lengths)")
    return epochs, loss, val, grad


def plot_history(run_dir, path=None):
    """Draw ``run_dir/history.jsonl`` into ``path`` (default ``run_dir/training.png``): loss
    and validation loss per epoch, and each layer's mean gradient norm on a log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs, loss, val, g = _read_history(run_dir)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(epochs, loss, label="training loss")
    if any(v is not None for v in val):
        a.plot(epochs, val, label="validation loss")
    a.set_xlabel("epoch")
    a.set_ylabel("mean loss")
    a.set_yscale("log")
    a.legend()
    a.set_title("loss")
    for l in range(g.shape[1]):
        b.plot(epochs, g[:, l], label=f"layer {l + 1}")
    b.set_yscale("log")
    b.set_xlabel("epoch")
    b.set_ylabel("mean gradient norm ‖∂E/∂(W, b)‖")
    b.set_title("gradient norm per layer (input side = layer 1)")
    b.legend(fontsize="small")
    fig.tight_layout()
    path = path or os.path.join(run_dir, PLOT)
    from ..model.modelfile import atomic_write
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return path


def plot(args):
    try:
        path = plot_history(args.dir, args.out)
    except ImportError:
        raise UsageError('plot needs matplotlib: pip install "fastbp[plot]"') from None
    print(path)
    return EXIT_OK
