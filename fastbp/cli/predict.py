"""``fastbp predict`` and ``fastbp evaluate``: a saved model applied to a table, its columns
found by name (see :class:`fastbp.data.Model`)."""
import json
import os
import sys

import numpy as np

from .common import EXIT_OK, UsageError


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
    ident = getattr(args, "id", None)
    needed = (model.feature_names_in_ + ([ident] if ident else [])
              if isinstance(model, Model) else None)
    table = read_file(args.data, getattr(args, "delimiter", None), columns=needed)
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
        values = pre.decode(out)
        if pre.task == "regression":    # to the network's precision (no float64 17 digits)
            values = values.astype(out.dtype)
        columns[name if name != ident else f"{name}_predicted"] = values
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
    if path and path.lower().endswith(".npy") and getattr(args, "proba", False):
        raise UsageError(f"--out {path}: a .npy holds one array; write the labels and "
                         f"probabilities (--proba) to a .csv or .parquet")
    if path and path.lower().endswith(".npy"):
        from ..data.model import typed_labels
        from ..model.modelfile import atomic_write
        values = [v for k, v in columns.items() if k != ident]
        arr = typed_labels(np.asarray(values[0] if len(values) == 1 else np.column_stack(values)))
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
    from ..data.tables import Table, read_file
    from ..data.model import Model
    model = _load_model(args.model)
    delimiter = getattr(args, "delimiter", None)
    if not isinstance(model, Model):
        print(json.dumps(_evaluate_bare(model, read_file(args.data, delimiter), args)))
        return EXIT_OK
    target = args.target or model.target
    table = read_file(args.data, delimiter, columns=model.feature_names_in_ + [target])
    if target not in table:
        raise UsageError(f"{args.data}: no target column {target!r}" + (
            "" if args.target else " (--target names it when it is called otherwise)"))
    if target != model.target:      # the target under another name
        col = table[target]
        col.name = model.target
        table = Table([c for c in table.columns if c.name not in (target, model.target)]
                      + [col], table.source)
    print(json.dumps(model.evaluate(table)))
    return EXIT_OK


def _evaluate_bare(net, table, args):
    """A bare network's (``Network.save``: no preprocessing, no labels) accuracy (softmax
    outputs: class indices in the target column) or mse on a numeric table whose last column
    (or ``--target``) is the target."""
    target = args.target or table.names[-1]
    if target not in table:
        raise UsageError(f"{args.data}: no column {target!r}")
    col = table[target]
    if col.kind != "number":
        raise UsageError(f"{args.data}: the target {target!r} holds labels, and this model file "
                         f"is a bare network (Network.save) with no class labels: evaluate a "
                         f"run of fastbp train")
    X = _bare(net, table, target)
    y = col.values
    out = net.predict(X)
    if net.output_activation == "softmax":
        return {"accuracy": float((out.argmax(1) == y).mean()), "n": int(len(y))}
    return {"mse": float(((out - y.reshape(out.shape)) ** 2).mean()), "n": int(len(y))}
