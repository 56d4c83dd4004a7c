"""``fastbp predict`` and ``fastbp evaluate``: a saved model applied to a table, its columns
found by name (see :class:`fastbp.data.Model`)."""
import json
import os
import sys

import numpy as np

from . import EXIT_OK, UsageError


def _load_model(path):
    """The :class:`fastbp.data.Model` of ``path`` (a run directory or its model.npz); a bare
    network file (``Network.save``) gives its Network."""
    from ..data.model import load
    try:
        return load(path)       # InputError for a file that is not a fastbp model
    except OSError as e:
        raise UsageError(f"--model {path}: unreadable ({e.strerror or e})") from None


def _bare(net, table, target):
    """The input matrix of a bare network (no preprocessor): the table's columns by position,
    less ``target``."""
    cols = [c for c in table.columns if c.name != target]
    if any(c.kind == "text" for c in cols):
        bad = next(c.name for c in cols if c.kind == "text")
        raise UsageError(f"{table.source}: column {bad!r} is not numeric, and the model has no "
                         f"preprocessing (it was saved by Network.save)")
    return np.column_stack([c.values for c in cols]) if cols else np.empty((table.n_rows, 0))


def predict(args):
    from ..data.tables import read_file, write_table
    from ..data.model import Model
    model = _load_model(args.model)
    table = read_file(args.data, getattr(args, "delimiter", None))
    ident = getattr(args, "id", None)
    if ident is not None and ident not in table:
        raise UsageError(f"--id {ident}: {args.data} has no such column; the columns are "
                         f"{table.names}")
    columns = {}
    if ident is not None:
        columns[ident] = table[ident].objects()
    if isinstance(model, Model):
        pre = model.preprocessor
        out = model.network.predict(pre.transform(table, model.network.dtype))
        name = pre.target["name"] if pre.target else "prediction"
        columns[name if name != ident else f"{name}_predicted"] = pre.decode(out)
        if getattr(args, "proba", False):
            if model.task != "classification":
                raise UsageError("--proba needs a classifier; this model is a regressor")
            p = pre.probabilities(out).astype(out.dtype)
            for j, c in enumerate(pre.classes):
                columns[f"proba_{c}"] = p[:, j]
    else:
        if getattr(args, "proba", False):
            raise UsageError("--proba needs a model trained by fastbp train (this file holds a "
                             "bare network)")
        out = model.predict(_bare(model, table, args.target))
        for j in range(out.shape[1]):
            columns["prediction" if out.shape[1] == 1 else f"output_{j}"] = out[:, j]
    path = args.out
    if path and path.lower().endswith(".npy"):
        from ..data.model import _typed
        from ..model.modelfile import atomic_write
        values = [v for k, v in columns.items() if k != ident]
        arr = _typed(np.asarray(values[0] if len(values) == 1 else np.column_stack(values)))
        if arr.dtype == object:
            raise UsageError(f"--out {path}: these labels mix types; write .csv or .parquet")
        _write(path, lambda: atomic_write(path, lambda f: np.save(f, arr)))
        return EXIT_OK
    if path:
        _write(path, lambda: write_table(path, columns))
        return EXIT_OK
    from ..data.tables import csv_text
    text = csv_text(columns)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:        # `fastbp predict ... | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def _write(path, write):
    try:
        write()
    except OSError as e:
        raise UsageError(f"--out {path}: cannot write ({e.strerror or e})") from None


def evaluate(args):
    from ..data.tables import read_file
    from ..data.model import Model
    model = _load_model(args.model)
    table = read_file(args.data, getattr(args, "delimiter", None))
    if isinstance(model, Model):
        if args.target is not None and args.target != model.target:
            if args.target not in table:
                raise UsageError(f"--target {args.target}: {args.data} has no such column")
            from ..data.tables import Table
            col = table[args.target]
            col.name = model.target
            table = Table([c for c in table.columns if c.name not in (args.target, model.target)]
                          + [col], table.source)
        result = model.evaluate(table)
    else:
        result = _evaluate_bare(model, table, args)
    result["samples"] = result.get("n")
    print(json.dumps(result))
    return EXIT_OK


def _evaluate_bare(net, table, args):
    """A bare network's loss and accuracy (softmax outputs) or mse on a numeric table whose
    last column (or ``--target``) is the target."""
    target = args.target or table.names[-1]
    if target not in table:
        raise UsageError(f"{args.data}: no column {target!r}")
    X = _bare(net, table, target)
    y = table[target].values
    if net.output_activation == "softmax":
        loss = "cross_entropy"
        out = net.predict(X)
        result = {"accuracy": float((out.argmax(1) == y).mean())}
    else:
        loss = None
        out = net.predict(X)
        result = {"mse": float(((out - y.reshape(out.shape)) ** 2).mean())}
    result["loss"] = float(net.loss(X, y.astype(np.int64) if loss else y, loss=loss))
    result["n"] = int(len(y))
    return result
