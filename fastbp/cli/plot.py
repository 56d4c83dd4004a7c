"""``fastbp plot``: a run's history.jsonl drawn into a PNG (needs matplotlib)."""
import json
import math
import os

import numpy as np

from .common import EXIT_OK, HISTORY, METRICS, PLOT, UsageError


def _read_history(run_dir):
    """The columns of ``run_dir/history.jsonl``: a dict with ``epoch``, ``loss``,
    ``val_loss``, ``grad_norm`` (epochs, layers) and, when the run recorded them,
    ``accuracy``, ``val_accuracy`` and ``learning_rate`` (lists with None where an epoch has
    no value; None when no epoch has one)."""
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
        cols = {"epoch": [int(r["epoch"]) for r in recs],
                "loss": [float(r["loss"]) for r in recs],
                "val_loss": _optional(recs, "val_loss"),
                "grad_norm": np.array([r["grad_norm"] for r in recs], dtype=np.float64)}
        for name in ("accuracy", "val_accuracy", "learning_rate"):
            cols[name] = _optional(recs, name)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise UsageError(f"{hist}: not a fastbp history (bad record: {e!r})") from None
    if cols["grad_norm"].ndim != 2:
        raise UsageError(f"{hist}: not a fastbp history (grad_norm of varying lengths)")
    return cols


def _best_epoch(run_dir):
    """The best epoch that early stopping kept (metrics.json), or None."""
    try:
        with open(os.path.join(run_dir, METRICS)) as f:
            best = json.load(f).get("best_epoch")
    except (OSError, ValueError, AttributeError):
        return None
    return best if isinstance(best, int) and not isinstance(best, bool) else None


def _optional(recs, name):
    """``[value or None per epoch]``, or None when no epoch has the value."""
    vals = [r.get(name) for r in recs]
    if all(v is None for v in vals):
        return None
    return [None if v is None else float(v) for v in vals]


def _values(col):
    return [v for v in col if v is not None and math.isfinite(v)]


def _plain_log_formatter(minor):
    """Tick labels of a log axis as plain numbers (0.2, 3, 1e-05) rather than 2 × 10⁻¹.
    Minor ticks are labelled when the axis spans few decades: all of them below 1.2 decades
    (so that a narrow range still has labels), those at 2 and 5 up to 2.5 decades, none beyond."""
    from matplotlib.ticker import Formatter

    class PlainLog(Formatter):
        def __call__(self, x, pos=None):
            if not x > 0:
                return ""
            if minor:
                lo, hi = sorted(self.axis.get_view_interval())
                decades = math.log10(hi / lo) if lo > 0 else math.inf
                if decades > 2.5:
                    return ""
                if decades > 1.2:
                    mantissa = x / 10 ** math.floor(math.log10(x) + 1e-9)
                    if not any(abs(mantissa - m) < 1e-6 for m in (2, 5)):
                        return ""
            return f"{x:g}"

    return PlainLog()


def _y_scale(ax, values, log_above=5.0):
    """A log y axis with plain-number labels when the positive ``values`` span more than a
    factor ``log_above``; a linear one otherwise (a narrow range reads better so)."""
    vals = _values(values)
    if vals and min(vals) > 0 and max(vals) / min(vals) > log_above:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_plain_log_formatter(minor=False))
        ax.yaxis.set_minor_formatter(_plain_log_formatter(minor=True))


def _epoch_axis(ax, epochs):
    from matplotlib.ticker import MaxNLocator
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(set(epochs)) == 1:     # one epoch: MaxNLocator would fall back to fractions
        ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        ax.set_xticks([epochs[0]])


def _present(epochs, col):
    """The ``(epochs, values)`` where ``col`` has a value (a line without gaps)."""
    pairs = [(e, v) for e, v in zip(epochs, col) if v is not None]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _lr_varies(lr):
    vals = _values(lr or [])
    return bool(vals) and max(vals) != min(vals)


def plot_history(run_dir, path=None):
    """Draw ``run_dir/history.jsonl`` into ``path`` (default ``run_dir/training.png``): loss
    and validation loss per epoch, each layer's mean gradient norm on a log scale, and, when
    the history has them, the accuracy (training and validation) and a learning rate that
    changes (a constant one is named in the loss panel's title)."""
    h = _read_history(run_dir)
    h["best_epoch"] = _best_epoch(run_dir)
    fig, _ = figure(h)
    import matplotlib.pyplot as plt
    path = path or os.path.join(run_dir, PLOT)
    from ..model.modelfile import atomic_write
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return path


def figure(h):
    """``(figure, {panel name: Axes})`` for the history columns ``h`` (:func:`_read_history`,
    with ``best_epoch``: a dotted line in the loss panel); the panels: "loss", "grad", and
    "accuracy" and "lr" when drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs, g, lr = h["epoch"], h["grad_norm"], h["learning_rate"]
    panels = ["loss", "grad"]
    if h["accuracy"] is not None or h["val_accuracy"] is not None:
        panels.append("accuracy")
    if _lr_varies(lr):
        panels.append("lr")
    if len(panels) == 4:
        fig, grid = plt.subplots(2, 2, figsize=(11, 8))
        axes = list(grid.ravel())
    else:
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
        axes = list(axes.ravel())
    ax = dict(zip(panels, axes))

    mark = {"marker": "o"} if len(epochs) == 1 else {}     # a single point is no line
    a = ax["loss"]
    a.plot(epochs, h["loss"], label="training loss", **mark)
    shown = list(h["loss"])
    if h["val_loss"] is not None:
        a.plot(*_present(epochs, h["val_loss"]), label="validation loss", **mark)
        shown += _values(h["val_loss"])
    _epoch_axis(a, epochs)
    a.set_ylabel("mean loss")
    _y_scale(a, shown)
    best = h.get("best_epoch")
    if best is not None:
        a.axvline(best, color="grey", linestyle=":", label=f"best epoch ({best})")
    a.legend()
    constant = _values(lr or [])
    a.set_title(f"loss (learning rate {constant[0]:g})" if constant and not _lr_varies(lr)
                else "loss")

    b = ax["grad"]
    # more layers than the default cycle's 10 colours: one colour map from input to output,
    # so that no two layers share a colour
    colours = (plt.cm.viridis(np.linspace(0, 0.9, g.shape[1])) if g.shape[1] > 10
               else [None] * g.shape[1])
    for l in range(g.shape[1]):
        b.plot(epochs, g[:, l], label=f"layer {l + 1}", color=colours[l], **mark)
    _epoch_axis(b, epochs)
    if np.all(g > 0):
        b.set_yscale("log")
        b.yaxis.set_major_formatter(_plain_log_formatter(minor=False))
        b.yaxis.set_minor_formatter(_plain_log_formatter(minor=True))
    b.set_ylabel("mean gradient norm ‖∂E/∂(W, b)‖")
    b.set_title("gradient norm per layer (input side = layer 1)")
    b.legend(fontsize="small")

    if "accuracy" in ax:
        c = ax["accuracy"]
        for name, label in (("accuracy", "training accuracy"),
                            ("val_accuracy", "validation accuracy")):
            if h[name] is not None:
                c.plot(*_present(epochs, h[name]), label=label, **mark)
        _epoch_axis(c, epochs)
        c.set_ylabel("accuracy")
        c.set_title("accuracy")
        c.legend()

    if "lr" in ax:
        d = ax["lr"]
        d.plot(*_present(epochs, lr), color="tab:purple",
               marker="." if len(epochs) <= 40 else None)
        _epoch_axis(d, epochs)
        _y_scale(d, lr)
        d.set_ylabel("learning rate")
        d.set_title("learning rate per epoch")

    fig.tight_layout()
    return fig, ax


def plot(args):
    try:
        path = plot_history(args.dir, args.out)
    except ImportError:
        raise UsageError('plot needs matplotlib: pip install "fastbp[plot]"') from None
    print(path)
    return EXIT_OK
