"""The ``fastbp`` command.

``fastbp train`` with no arguments trains a 64-64-10 network on the 8x8 digits shipped in the
package and prints per-epoch progress and the test accuracy.  Exit codes: 0 success, 2 bad usage
or input (one line on stderr), 3 training diverged.
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def _layers(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated integers like 64,64; got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--layers sizes must be positive; got {text!r}")
    return sizes


def _read_data(path):
    """``(X, y)`` from an .npz with arrays X and y, or a CSV whose last column is the target."""
    if not os.path.exists(path):
        raise ValueError(f"--data: no such file: {path}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            missing = {"X", "y"} - set(z.files)
            if missing:
                raise ValueError(f"--data: {path} lacks array(s) {sorted(missing)} (found {z.files})")
            return z["X"], z["y"]
    if path.endswith(".csv"):
        try:
            data = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=_header_rows(path))
        except ValueError as e:
            raise ValueError(f"--data: {path} is not a numeric CSV: {e}") from None
        return data[:, :-1], data[:, -1]
    raise ValueError(f"--data: {path} must be .npz (arrays X, y) or .csv (last column = target)")


def _header_rows(path):
    with open(path) as f:
        first = f.readline()
    try:
        [float(v) for v in first.split(",")]
        return 0
    except ValueError:
        return 1


def build_parser():
    p = argparse.ArgumentParser(prog="fastbp", description="Fast backpropagation for MLPs on the CPU.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network (default: the embedded 8x8 digits)",
                       description="Train an MLP. With no --data, trains on the 8x8 handwritten "
                                   "digits shipped with fastbp and reports test accuracy.")
    t.add_argument("--data", help=".npz with arrays X and y, or .csv whose last column is the target")
    t.add_argument("--layers", type=_layers, default=[64], help="hidden layer sizes, e.g. 64,64 (default 64)")
    t.add_argument("--activation", default="relu")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--optimizer", default="adam")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--test-fraction", type=float, default=0.25)
    t.add_argument("--out", help="directory for model.npz and history.json")
    t.add_argument("--quiet", action="store_true", help="only the final line")
    return p


def train(args):
    import fastbp
    from fastbp.datasets import load_digits, train_test_split

    if args.data:
        X, y = _read_data(args.data)
    else:
        X, y = load_digits(np.dtype(args.dtype))
    y = np.asarray(y)
    if not 0 < args.test_fraction < 1:
        raise ValueError(f"--test-fraction must lie in (0, 1); got {args.test_fraction}")
    classify = y.ndim == 1 and np.all(y == np.round(y)) and len(np.unique(y)) <= max(2, len(y) // 5)
    if classify:
        classes, y = np.unique(y, return_inverse=True)
        n_out, loss, out_act = len(classes), "cross_entropy", "softmax"
    else:
        n_out = 1 if y.ndim == 1 else y.shape[1]
        loss, out_act = "squared_error", "identity"
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"--data: X must be 2-D; got shape {X.shape}")
    Xtr, Xte, ytr, yte = train_test_split(X, y, args.test_fraction, args.seed)
    net = fastbp.Network([X.shape[1], *args.layers, n_out], activation=args.activation,
                         output_activation=out_act, dtype=np.dtype(args.dtype), seed=args.seed)
    tr = fastbp.Trainer(net, loss=loss, optimizer=args.optimizer, learning_rate=args.lr,
                        batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                        verbose=not args.quiet)
    print(f"fastbp: {len(Xtr)} training / {len(Xte)} test samples, network {net.layer_sizes}, "
          f"{args.optimizer} lr={args.lr:g}, batch {args.batch_size}", file=sys.stderr)
    t0 = time.perf_counter()
    history = tr.fit(Xtr, ytr, validation_data=(Xte, yte))
    seconds = time.perf_counter() - t0
    pred = net.predict(Xte)
    if classify:
        metric = {"test_accuracy": float((pred.argmax(1) == yte).mean())}
    else:
        metric = {"test_mse": float(((pred - yte.reshape(pred.shape)) ** 2).mean())}
    name, value = next(iter(metric.items()))
    print(f"{name.replace('_', ' ')}: {value:.4f}  ({args.epochs} epochs in {seconds:.2f} s)")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        net.save(os.path.join(args.out, "model.npz"))
        with open(os.path.join(args.out, "history.json"), "w") as f:
            json.dump({"loss": history.loss, "val_loss": history.val_loss,
                       "grad_norm": history.grad_norm.tolist(),
                       "weight_norm": history.weight_norm.tolist(), **metric}, f)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    import fastbp
    try:
        return train(args)
    except fastbp.TrainingDivergedError as e:
        print(f"fastbp: {e}", file=sys.stderr)
        return 3
    except (ValueError, TypeError, OSError) as e:
        print(f"fastbp: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
