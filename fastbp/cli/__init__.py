"""The ``fastbp`` command: ``train``, ``predict``, ``evaluate``, ``plot``.

Exit codes: 0 success; 1 an internal error (a bug: please report it); 2 bad usage or input (one
line on stderr, nothing written); 3 training diverged; 130 / 143 stopped by SIGINT / SIGTERM
after writing a checkpoint (``--resume`` continues the run).
"""
import argparse
import hashlib
import json
import os
import signal
import sys
import tempfile
import time

import numpy as np

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

# train's settings: flags, TOML keys (--config) and what a checkpoint records use these names
DEFAULTS = dict(data=None, target=None, layers=[64], activation="relu", loss=None,
                optimizer="adam", lr=1e-3, batch_size=32, epochs=30, seed=0, dtype="float32",
                validation_split=0.25, threads=None, out=None, checkpoint_every=1, plot=True,
                quiet=False)
# settings a resumed run may change; the others must match the checkpoint (bitwise resume)
RESUMABLE = {"epochs", "threads", "out", "checkpoint_every", "plot", "quiet"}
CHECKPOINT, MODEL, HISTORY, METRICS, PLOT = ("checkpoint.npz", "model.npz", "history.jsonl",
                                             "metrics.json", "training.png")


class UsageError(ValueError):
    """Bad usage or input: reported in one line, exit code 2."""


class Stopped(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


# -- parsing ------------------------------------------------------------------------------------
def _layers(text):
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


def _positive_int(text):
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return v


def build_parser():
    p = argparse.ArgumentParser(
        prog="fastbp", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="fastbp: train multilayer perceptrons on the CPU, fast.",
        epilog=__doc__.split("\n", 2)[2])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    S = argparse.SUPPRESS
    t = sub.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=S,
        help="train a network (with no --data: the 8x8 digits shipped with fastbp)",
        description=TRAIN_DOC)
    t.add_argument("--data", metavar="FILE", help=".npz (arrays X, y), .npy (X; --target y.npy), "
                   ".csv or .parquet (--target COLUMN, default the last)")
    t.add_argument("--target", metavar="COLUMN", help="target column (CSV/Parquet) or y.npy")
    t.add_argument("--layers", type=_layers, metavar="64,64", help="hidden layer sizes (default 64)")
    t.add_argument("--activation", help="relu, leaky_relu, sigmoid, tanh, identity (default relu)")
    t.add_argument("--loss", help="cross_entropy, binary_cross_entropy, squared_error, poisson "
                   "(default: inferred from the target)")
    t.add_argument("--optimizer", help="sgd, momentum, nesterov, adam, adamw, rmsprop (default adam)")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    t.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default 32)")
    t.add_argument("--epochs", type=_positive_int, help="epochs in total (default 30)")
    t.add_argument("--seed", type=int, help="seed of the weights, split and shuffles (default 0)")
    t.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    t.add_argument("--validation-split", type=float, metavar="FRACTION",
                   help="held-out fraction for validation loss and the final metric (default 0.25; 0: none)")
    t.add_argument("--threads", type=_positive_int, help="compute threads (default: NUMBA_NUM_THREADS)")
    t.add_argument("--out", metavar="DIR", help="write model.npz, history.jsonl, metrics.json, "
                   "checkpoint.npz (and training.png) here")
    t.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="write the checkpoint every N epochs (default 1)")
    t.add_argument("--config", metavar="FILE.toml", help="settings with the flags' names "
                   "(batch_size or batch-size); flags given on the command line win")
    t.add_argument("--no-plot", dest="plot", action="store_false", help="do not draw training.png")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress")

    pr = sub.add_parser("predict", help="predictions of a saved model",
                        description="Write the model's predictions for the rows of --data: class "
                                    "labels for a classifier trained by `fastbp train`, else the "
                                    "output values.")
    pr.add_argument("--model", required=True, metavar="FILE", help="model.npz (or its directory)")
    pr.add_argument("--data", required=True, metavar="FILE")
    pr.add_argument("--target", metavar="COLUMN", help="a column to drop from a CSV/Parquet")
    pr.add_argument("--out", metavar="FILE", help=".npy or .csv (default: CSV on stdout)")

    ev = sub.add_parser("evaluate", help="loss and accuracy/MSE of a saved model on data",
                        description="Print the model's mean loss and accuracy (classifier) or "
                                    "mean squared error on --data as JSON.")
    ev.add_argument("--model", required=True, metavar="FILE", help="model.npz (or its directory)")
    ev.add_argument("--data", required=True, metavar="FILE")
    ev.add_argument("--target", metavar="COLUMN")

    pl = sub.add_parser("plot", help="draw a run's loss and gradient norms (needs matplotlib)",
                        description="Draw DIR/history.jsonl into a PNG: training and validation "
                                    "loss per epoch, and each layer's mean gradient norm on a log "
                                    "scale (vanishing or exploding gradients show at a glance).")
    pl.add_argument("dir", metavar="DIR")
    pl.add_argument("--out", metavar="FILE.png", help="default DIR/training.png")
    return p


TRAIN_DOC = """\
Train an MLP by mini-batch backpropagation and write the results to --out DIR:

  DIR/model.npz       the trained network (fastbp.load)
  DIR/history.jsonl   one JSON line per epoch: loss, val_loss, grad_norm and weight_norm per
                      layer, seconds
  DIR/metrics.json    final loss, validation metric, classes, timings
  DIR/checkpoint.npz  parameters, optimizer state, RNG state, epoch and history, written
                      atomically every --checkpoint-every epochs and on SIGTERM/SIGINT
  DIR/training.png    the curves (when matplotlib is installed)

With no --data it trains on the 8x8 handwritten digits shipped with fastbp. The loss is inferred
from the target when --loss is omitted: integer targets with few distinct values train a softmax
classifier (cross_entropy), anything else a regressor (squared_error).

A run stopped by SIGTERM or SIGINT finishes its current step (within 32 steps), writes the
checkpoint and exits with 143 or 130; `fastbp train --out DIR --resume` continues it, and the final model is bitwise
identical to an uninterrupted run (also after SIGKILL, from the last checkpoint).

Under `mpiexec -n K fastbp train ...` every rank trains on its share of each mini-batch and the
gradients are summed with MPI (needs mpi4py): see README, "Scale-out with MPI"."""


def _load_config(path):
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    conf = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in DEFAULTS:
            raise UsageError(f"--config {path}: unknown setting {key!r}; known: "
                             f"{', '.join(sorted(DEFAULTS))}")
        conf[name] = value
    return conf


def _settings(args):
    """Defaults, then the --config file, then the flags given on the command line."""
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    conf = _load_config(args.config) if getattr(args, "config", None) else {}
    s = {**DEFAULTS, **conf, **given}
    try:
        s["layers"] = _layers(s["layers"])
    except argparse.ArgumentTypeError as e:
        raise UsageError(str(e)) from None
    for name in ("epochs", "batch_size", "checkpoint_every"):
        if isinstance(s[name], bool) or not isinstance(s[name], int) or s[name] < 1:
            raise UsageError(f"{name} must be a positive integer; got {s[name]!r}")
    if s["threads"] is not None and (not isinstance(s["threads"], int) or s["threads"] < 1):
        raise UsageError(f"threads must be a positive integer; got {s['threads']!r}")
    if not isinstance(s["validation_split"], (int, float)) or not 0 <= s["validation_split"] < 1:
        raise UsageError(f"validation_split must lie in [0, 1); got {s['validation_split']!r}")
    if not isinstance(s["lr"], (int, float)) or not s["lr"] > 0:
        raise UsageError(f"lr must be a positive number; got {s['lr']!r}")
    if s["dtype"] not in ("float32", "float64"):
        raise UsageError(f"dtype must be float32 or float64; got {s['dtype']!r}")
    return s, set(given) | set(conf)


# -- train --------------------------------------------------------------------------------------
def _prepare_out(out):
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UsageError(f"--out {out}: not a writable directory ({e.strerror or e})") from None


def _fingerprint(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _task(y, loss):
    """``(y for the trainer, n_out, loss, output activation, classes or None)``."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        classes, idx = np.unique(y, return_inverse=True)    # string labels
        if loss not in (None, "cross_entropy"):
            raise UsageError(f"non-numeric targets need loss cross_entropy, not {loss!r}")
        return idx, len(classes), "cross_entropy", "softmax", classes.tolist()
    if loss is None:
        few = y.ndim == 1 and len(np.unique(y)) <= max(2, len(y) // 5)
        loss = "cross_entropy" if few and np.all(np.isfinite(y)) and np.all(y == np.round(y)) \
            else "squared_error"
    if loss == "cross_entropy" and y.ndim == 1:
        classes, idx = np.unique(y, return_inverse=True)
        return idx, len(classes), loss, "softmax", classes.tolist()
    n_out = 1 if y.ndim == 1 else y.shape[1]
    out = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "squared_error": "identity",
           "poisson": "exp"}.get(loss)
    if out is None:
        raise UsageError(f"unknown loss {loss!r}; expected cross_entropy, binary_cross_entropy, "
                         f"squared_error or poisson")
    return y, n_out, loss, out, None


def _metric(net, X, y, classes):
    out = net.predict(X)
    if classes is not None:
        return "accuracy", float((out.argmax(1) == y).mean())
    return "mse", float(((out - np.asarray(y, out.dtype).reshape(out.shape)) ** 2).mean())


class _Progress:
    """A bar on a terminal, one plain line per epoch otherwise (batch logs)."""

    def __init__(self, total, quiet):
        self.total, self.quiet = total, quiet
        self.tty = sys.stderr.isatty()

    def epoch(self, e, rec, n):
        if self.quiet:
            return
        val = f"  val_loss {rec['val_loss']:.5g}" if rec["val_loss"] is not None else ""
        speed = n / rec["seconds"] if rec["seconds"] > 0 else float("inf")
        text = f"epoch {e}/{self.total}  loss {rec['loss']:.5g}{val}  {speed:,.0f} samples/s"
        if self.tty:
            width = 24
            done = int(width * e / self.total)
            sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {text}\033[K")
            if e == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _write_history(path, records):
    from ..model.modelfile import atomic_write
    atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in records).encode()))


def train(args, comm=None):
    import fastbp
    from .._validation import check_X
    from ..datasets import load_digits, train_test_split
    from .datafiles import read_data
    from ..model.modelfile import load_checkpoint, save_checkpoint

    rank = 0 if comm is None else comm.Get_rank()
    s, given = _settings(args)
    resume = getattr(args, "resume", False)
    out = s["out"]
    if resume and not out:
        raise UsageError("--resume needs --out DIR (the directory of the interrupted run)")
    checkpoint = None
    if resume:
        path = os.path.join(out, CHECKPOINT)
        if not os.path.exists(path):
            raise UsageError(f"--resume: no checkpoint at {path}")
        try:
            arrays, info = load_checkpoint(path)
        except ValueError as e:
            raise UsageError(f"--resume: {e}") from None
        saved = info["settings"]
        clash = sorted(k for k in given - RESUMABLE if s[k] != saved.get(k))
        if clash:
            raise UsageError(f"--resume: {', '.join(clash)} differ from the checkpointed run; "
                             f"only {', '.join(sorted(RESUMABLE))} may change")
        s = {**saved, **{k: s[k] for k in RESUMABLE}}
        checkpoint = (arrays, info)
    if out:
        _prepare_out(out)       # on every rank: all refuse together, none waits for the others
    if s["threads"] is not None:
        import numba
        if s["threads"] > numba.config.NUMBA_NUM_THREADS:
            raise UsageError(f"threads={s['threads']} exceeds NUMBA_NUM_THREADS="
                             f"{numba.config.NUMBA_NUM_THREADS}")
        numba.set_num_threads(s["threads"])

    dtype = np.dtype(s["dtype"])
    if s["data"]:
        X, y = read_data(s["data"], s["target"])
    else:
        X, y = load_digits(dtype)
    X = np.asarray(X)
    if X.ndim != 2:
        raise UsageError(f"X must be 2-D (samples, features); got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise UsageError(f"X must be numeric; got dtype {X.dtype}")
    if len(y) != len(X):
        raise UsageError(f"X has {len(X)} rows but y has {len(y)}")
    y, n_out, loss, out_act, classes = _task(y, s["loss"])
    X = check_X(X, dtype)
    fingerprint = _fingerprint(X, np.asarray(y))
    if checkpoint and checkpoint[1]["data_sha256"] != fingerprint:
        raise UsageError("--resume: the data differ from the checkpointed run's")
    if s["validation_split"] > 0:
        Xtr, Xva, ytr, yva = train_test_split(X, y, s["validation_split"], s["seed"])
        if len(Xva) == 0 or len(Xtr) == 0:
            raise UsageError(f"validation_split {s['validation_split']} leaves an empty set of "
                             f"{len(X)} samples")
        val = (Xva, yva)
    else:
        Xtr, ytr, val = X, y, None

    net = fastbp.Network([X.shape[1], *s["layers"], n_out], activation=s["activation"],
                         output_activation=out_act, dtype=dtype, seed=s["seed"])
    trainer = fastbp.Trainer(net, loss=loss, optimizer=s["optimizer"], learning_rate=s["lr"],
                             batch_size=s["batch_size"], epochs=1, seed=s["seed"])
    if comm is not None:
        from ..distributed import DistributedTrainer
        trainer = DistributedTrainer(trainer, comm)
    records, start = [], 0
    if checkpoint:
        arrays, info = checkpoint
        trainer.load_state(arrays, info["trainer"])
        records, start = info["history"], info["epoch"]
    say = rank == 0 and not s["quiet"]
    if say:
        print(f"fastbp: {len(Xtr)} training / {len(val[0]) if val else 0} validation samples, "
              f"network {net.layer_sizes}, {loss}, {s['optimizer']} lr={s['lr']:g}, batch "
              f"{s['batch_size']}" + (f", resuming after epoch {start}" if start else ""),
              file=sys.stderr)

    def save(epoch):
        if out and rank == 0:
            arrays, tinfo = trainer.state()
            save_checkpoint(os.path.join(out, CHECKPOINT), arrays,
                            {"settings": s, "trainer": tinfo, "epoch": epoch, "history": records,
                             "data_sha256": fingerprint})

    stop = []

    def stopping():
        """The signal to stop on, agreed by every rank (a rank must not leave the others
        waiting in an Allreduce), or None."""
        if comm is None:
            return stop[0] if stop else None
        from mpi4py import MPI
        return comm.allreduce(stop[0] if stop else 0, op=MPI.MAX) or None

    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in EXIT_SIGNAL} if _main_thread() else {}
    progress = _Progress(s["epochs"], not say)
    t0 = time.perf_counter()
    try:
        if out and rank == 0:
            _write_history(os.path.join(out, HISTORY), records)   # consistent with the checkpoint
        for epoch in range(start, s["epochs"]):
            signum = stopping()
            if signum:
                raise Stopped(signum)
            h = trainer.fit(Xtr, ytr, validation_data=val, stop=lambda: bool(stop))
            if h.interrupted:           # stopped mid-epoch: the checkpoint keeps its place
                save(epoch)
                raise Stopped(stop[0])
            rec = {"epoch": epoch + 1, "loss": h.loss[-1],
                   "val_loss": h.val_loss[-1] if h.val_loss else None,
                   "grad_norm": h.grad_norm[-1].tolist(), "weight_norm": h.weight_norm[-1].tolist(),
                   "seconds": h.seconds[-1]}
            records.append(rec)
            if out and rank == 0:
                with open(os.path.join(out, HISTORY), "a") as f:
                    f.write(json.dumps(rec) + "\n")
            signum = stopping()
            if (epoch + 1) % s["checkpoint_every"] == 0 or epoch + 1 == s["epochs"] or signum:
                save(epoch + 1)
            progress.epoch(epoch + 1, rec, len(Xtr))
            if signum:
                raise Stopped(signum)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    seconds = time.perf_counter() - t0

    if rank != 0:
        return EXIT_OK
    name, value = _metric(net, *(val if val else (Xtr, ytr)), classes)
    where = "validation" if val else "training"
    metrics = {"loss": records[-1]["loss"] if records else None,
               "val_loss": records[-1]["val_loss"] if records else None,
               f"{where}_{name}": value, "epochs": s["epochs"], "train_samples": len(Xtr),
               "seconds_this_run": seconds, "classes": classes, "loss_function": loss,
               "layer_sizes": net.layer_sizes}
    print(f"{where} {name}: {value:.4f}  ({s['epochs'] - start} epochs in {seconds:.2f} s)")
    if out:
        from ..model.modelfile import atomic_write
        net.save(os.path.join(out, MODEL))
        atomic_write(os.path.join(out, METRICS),
                     lambda f: f.write(json.dumps(metrics, indent=2).encode()))
        if s["plot"]:
            try:
                plot_history(out, os.path.join(out, PLOT))
            except ImportError:
                pass
    return EXIT_OK


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


# -- predict / evaluate / plot ------------------------------------------------------------------
def _load_model(path):
    import fastbp
    if os.path.isdir(path):
        path = os.path.join(path, MODEL)
    if not os.path.exists(path):
        raise UsageError(f"--model {path}: no such file")
    net = fastbp.load(path)
    classes = None
    metrics = os.path.join(os.path.dirname(os.path.abspath(path)), METRICS)
    if os.path.exists(metrics):
        try:
            with open(metrics) as f:
                classes = json.load(f).get("classes")
        except (OSError, ValueError):
            classes = None
    return net, classes


def predict(args):
    from .datafiles import read_data
    net, classes = _load_model(args.model)
    X, _ = read_data(args.data, args.target, need_target=False)
    out = net.predict(X)
    if net.output_activation == "softmax":
        idx = out.argmax(1)
        out = np.asarray(classes)[idx] if classes is not None else idx
    if args.out and args.out.endswith(".npy"):
        from ..model.modelfile import atomic_write
        atomic_write(args.out, lambda f: np.save(f, out))
        return EXIT_OK
    rows = out.reshape(len(out), -1)
    text = "".join(",".join(str(v) for v in r) + "\n" for r in rows.tolist())
    if args.out:
        from ..model.modelfile import atomic_write
        atomic_write(args.out, lambda f: f.write(text.encode()))
    else:
        sys.stdout.write(text)
    return EXIT_OK


def evaluate(args):
    from .datafiles import read_data
    net, classes = _load_model(args.model)
    X, y = read_data(args.data, args.target)
    y = np.asarray(y)
    if net.output_activation == "softmax":
        if classes is not None:
            lookup = {c: i for i, c in enumerate(classes)}
            try:
                y = np.array([lookup[v] for v in y.tolist()])
            except KeyError as e:
                raise UsageError(f"{args.data}: label {e.args[0]!r} is not one of the model's "
                                 f"classes {classes}") from None
        loss = "cross_entropy"
    else:
        loss = None
    result = {"loss": float(net.loss(X, y, loss=loss)), "samples": len(X)}
    name, value = _metric(net, X, y, classes if net.output_activation == "softmax" else None)
    result[name] = value
    print(json.dumps(result))
    return EXIT_OK


def plot_history(run_dir, path=None):
    """Draw ``run_dir/history.jsonl`` into ``path`` (default ``run_dir/training.png``): loss
    and validation loss per epoch, and each layer's mean gradient norm on a log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = os.path.join(run_dir, HISTORY)
    try:
        with open(hist) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise UsageError(f"{hist}: no such file (is {run_dir} the --out of a fastbp train run?)") from None
    except ValueError as e:
        raise UsageError(f"{hist}: not a fastbp history ({e})") from None
    if not recs:
        raise UsageError(f"{hist}: no epochs recorded yet")
    epochs = [r["epoch"] for r in recs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(epochs, [r["loss"] for r in recs], label="training loss")
    if any(r.get("val_loss") is not None for r in recs):
        a.plot(epochs, [r["val_loss"] for r in recs], label="validation loss")
    a.set_xlabel("epoch")
    a.set_ylabel("mean loss")
    a.set_yscale("log")
    a.legend()
    a.set_title("loss")
    g = np.array([r["grad_norm"] for r in recs])
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
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def plot(args):
    try:
        path = plot_history(args.dir, args.out)
    except ImportError:
        raise UsageError('plot needs matplotlib: pip install "fastbp[plot]"') from None
    print(path)
    return EXIT_OK


# -- entry point --------------------------------------------------------------------------------
def main(argv=None):
    args = build_parser().parse_args(argv)
    import fastbp
    comm = None
    if args.command == "train":
        from ..distributed import world
        comm = world()
    commands = {"train": lambda a: train(a, comm), "predict": predict, "evaluate": evaluate,
                "plot": plot}
    try:
        return commands[args.command](args)
    except Stopped as e:
        print(f"fastbp: stopped by signal {e.signum}; checkpoint written, resume with --resume",
              file=sys.stderr)
        return EXIT_SIGNAL[e.signum]
    except fastbp.TrainingDivergedError as e:
        print(f"fastbp: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ValueError, TypeError, OSError) as e:
        print(f"fastbp: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
