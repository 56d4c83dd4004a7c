"""``fastbp predict`` and ``fastbp evaluate``: a saved model applied to a data file."""
import json
import os
import sys

import numpy as np

from . import EXIT_OK, METRICS, MODEL, UsageError


def _load_model(path):
    """``(network, class labels or None)`` from model.npz (or the run directory holding it);
    the labels come from the metrics.json next to it."""
    import fastbp
    if os.path.isdir(path):
        path = os.path.join(path, MODEL)
    if not os.path.exists(path):
        raise UsageError(f"--model {path}: no such file")
    try:
        net = fastbp.load(path)          # InputError for a file that is not a fastbp model
    except OSError as e:
        raise UsageError(f"--model {path}: unreadable ({e.strerror or e})") from None
    classes = None
    metrics = os.path.join(os.path.dirname(os.path.abspath(path)), METRICS)
    if os.path.exists(metrics):
        try:
            with open(metrics) as f:
                classes = json.load(f).get("classes")
        except (OSError, ValueError, AttributeError):
            classes = None
    if classes is not None and (not isinstance(classes, list)
                                or len(classes) != net.layer_sizes[-1]):
        raise UsageError(f"{metrics}: its classes do not match the {net.layer_sizes[-1]} outputs "
                         f"of {path}")
    return net, classes


def _write(path, write):
    from ..model.modelfile import atomic_write
    try:
        atomic_write(path, write)
    except OSError as e:
        raise UsageError(f"--out {path}: cannot write ({e.strerror or e})") from None


def predict(args):
    from .datafiles import read_data
    net, classes = _load_model(args.model)
    X, _ = read_data(args.data, args.target, need_target=False)
    out = net.predict(X)
    if net.output_activation == "softmax":
        idx = out.argmax(1)
        out = np.asarray(classes)[idx] if classes is not None else idx
    if args.out and args.out.endswith(".npy"):
        _write(args.out, lambda f: np.save(f, out))
        return EXIT_OK
    rows = out.reshape(len(out), -1)
    text = "".join(",".join(str(v) for v in r) + "\n" for r in rows.tolist())
    if args.out:
        _write(args.out, lambda f: f.write(text.encode()))
        return EXIT_OK
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:        # `fastbp predict ... | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def evaluate(args):
    from .datafiles import read_data
    from .train import _metric
    net, classes = _load_model(args.model)
    X, y = read_data(args.data, args.target)
    y = np.asarray(y)
    if net.output_activation == "softmax":
        if classes is not None:
            lookup = {c: i for i, c in enumerate(classes)}
            try:
                y = np.array([lookup[v] for v in y.tolist()])
            except (KeyError, TypeError) as e:
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
