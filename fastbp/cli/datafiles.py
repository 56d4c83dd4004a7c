"""Reading data files for the command line: ``.npz`` (arrays X and y), ``.npy`` pairs, CSV and
Parquet.  Every problem with the user's files (missing, unreadable, malformed) is a
:class:`~fastbp.cli.UsageError` (an ``InputError``) with one line that names the file and what
is wrong; anything else is a bug."""
import csv
import os
import zipfile

import numpy as np

from . import UsageError


def read_data(path, target=None, need_target=True):
    """``(X, y)`` from ``path``; ``y`` is None when the file has no target and ``need_target``
    is False.

    * ``.npz``: arrays ``X`` and ``y`` (``y`` optional for prediction);
    * ``.npy``: X; ``target`` names the ``.npy`` file holding y;
    * ``.csv``: a header row is optional; ``target`` is a column name (with a header) or a
      0-based index; without ``target`` the last column is the target (all columns are
      features when ``need_target`` is False);
    * ``.parquet``: needs pyarrow; ``target`` is a column name (default: the last column).
    """
    X, y, _ = _read(path, target, need_target, None)
    return X, y


def read_training_data(path, target=None, weight=None):
    """``(X, y, sample weights or None)`` from ``path`` (see :func:`read_data`).  ``weight``
    names the weights: a column of a CSV or Parquet file (like ``target``: a name, or an index
    for a CSV) or an array of a ``.npz``, which are then not features; else a ``.npy`` file."""
    return _read(path, target, True, weight)


def read_weights(path):
    """Sample weights from the ``.npy`` file ``path`` (--sample-weight for data that has no
    such column)."""
    path = os.fspath(path)
    if not path.lower().endswith(".npy"):
        raise UsageError(f"--sample-weight {path}: not a column of the data, and not a .npy file")
    if not os.path.exists(path):
        raise UsageError(f"--sample-weight {path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"--sample-weight {path} is a directory, not a .npy file")
    return _load_npy(path)


def _read(path, target, need_target, weight):
    """``(X, y, w)``: ``w`` is None when ``weight`` is."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a data file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return _npz(path, need_target, weight)
    if ext == ".npy":
        X, y = _npy(path, target, need_target)
        return X, y, None if weight is None else read_weights(weight)
    if ext == ".csv":
        return _csv(path, target, need_target, weight)
    if ext in (".parquet", ".pq"):
        return _parquet(path, target, need_target, weight)
    raise UsageError(f"{path}: unknown data format {ext!r}; use .npz (arrays X, y), .npy "
                     f"(with --target y.npy), .csv or .parquet")


def _load_npy(path):
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise UsageError(f"{path}: not a numeric .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise UsageError(f"{path}: unreadable .npy file ({e})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise UsageError(f"{path}: an .npz archive, not a .npy array")
    return arr


def _npz(path, need_target, weight=None):
    try:
        z = np.load(path, allow_pickle=False)
        if getattr(z, "files", None) is None:      # a .npy array
            raise UsageError(f"{path}: needs arrays {'X and y' if need_target else 'X'}; found "
                             f"a bare array")
        with z:
            if "X" not in z.files or (need_target and "y" not in z.files):
                want = "X and y" if need_target else "X"
                raise UsageError(f"{path}: needs arrays {want}; found {z.files}")
            X, y = z["X"], (z["y"] if "y" in z.files else None)
            if weight is None:
                return X, y, None
            if weight in z.files and weight not in ("X", "y"):
                return X, y, z[weight]
    except UsageError:
        raise
    except ValueError as e:
        raise UsageError(f"{path}: not a readable .npz of numeric arrays ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"{path}: unreadable .npz file ({e})") from None
    if not weight.lower().endswith(".npy"):
        raise UsageError(f"--sample-weight {weight}: {path} has no such array (its arrays: "
                         f"{z.files}), and it is not a .npy file")
    return X, y, read_weights(weight)


def _npy(path, target, need_target):
    X = _load_npy(path)
    if target is None:
        if need_target:
            raise UsageError(f"{path}: a .npy holds X only; pass the targets with --target y.npy")
        return X, None
    if not os.path.exists(target):
        raise UsageError(f"--target {target}: no such file (for .npy data, --target is y.npy)")
    return X, _load_npy(target)


def _csv(path, target, need_target, weight=None):
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as e:
        raise UsageError(f"{path}: unreadable ({e.strerror or e})") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not a readable CSV ({e})") from None
    if not rows:
        raise UsageError(f"{path}: empty CSV")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise UsageError(f"{path}: a header row and no data")
    width = len(header) if header else len(rows[0])
    data = np.empty((len(rows), width), np.float64)
    names = header or [str(j) for j in range(width)]
    for i, r in enumerate(rows):
        line = i + 1 + (header is not None)
        if len(r) != width:
            raise UsageError(f"{path}: line {line} has {len(r)} fields, expected {width} (ragged CSV)")
        for j, c in enumerate(r):
            try:
                data[i, j] = float(c)
            except ValueError:
                raise UsageError(f"{path}: line {line}, column {names[j]!r}: {c.strip()!r} is not a "
                                 f"number") from None
    wcol = None if weight is None else _find_column(weight, names, header is not None)
    if target is None:
        if not need_target and weight is None:
            return data, None, None
        col = width - 1 if need_target else None
        if col is not None and col == wcol:
            raise UsageError(f"{path}: the sample weights are column {names[wcol]!r}, the last "
                             f"one, which is the target unless --target names another")
    else:
        col = _column(path, target, names, header is not None)
        if col == wcol:
            raise UsageError(f"{path}: column {names[col]!r} cannot be both the target and the "
                             f"sample weights")
    drop = [c for c in (col, wcol) if c is not None]
    if width <= len(drop):
        raise UsageError(f"{path}: {'one column' if width == 1 else f'{width} columns'}: "
                         f"nothing is left for the features besides the target")
    w = None
    if wcol is not None:
        w = data[:, wcol]
    elif weight is not None:
        w = _weights_elsewhere(path, weight, names if header else None)
    return np.delete(data, drop, axis=1), (None if col is None else data[:, col]), w


def _weights_elsewhere(path, weight, names):
    """--sample-weight ``weight`` that is no column of the data file ``path``: a .npy file."""
    if not weight.lower().endswith(".npy"):
        where = f"columns are {names}" if names is not None else "its columns have no names"
        raise UsageError(f"--sample-weight {weight}: {path} has no such column ({where}), and it "
                         f"is not a .npy file")
    return read_weights(weight)


def _find_column(target, names, has_header):
    """The index of the column ``target`` (a name, or a 0-based index), or None."""
    if target in names and (has_header or not target.isdigit()):
        return names.index(target)
    if str(target).lstrip("-").isdigit() and -len(names) <= int(target) < len(names):
        return int(target) % len(names)
    return None


def _column(path, target, names, has_header):
    col = _find_column(target, names, has_header)
    if col is not None:
        return col
    raise UsageError(f"{path}: no column {target!r}" + (f"; columns are {names}" if has_header
                                                        else f"; {len(names)} unnamed columns"))


def _parquet(path, target, need_target, weight=None):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as e:   # pyarrow raises its own error types
        raise UsageError(f"{path}: not a readable Parquet file ({e})") from None
    names = table.column_names
    if target is None:
        col = names[-1] if need_target else None
    elif target in names:
        col = target
    else:
        raise UsageError(f"{path}: no column {target!r}; columns are {names}")
    wcol = weight if weight is not None and weight in names else None
    if wcol is not None and wcol == col:
        raise UsageError(f"{path}: column {col!r} cannot be both the target and the sample "
                         f"weights" + ("" if target else " (the target is the last column "
                                       "unless --target names another)"))
    cols = []
    for name in names:
        if name in (col, wcol):
            continue
        arr = table.column(name).to_numpy()
        if arr.dtype.kind not in "biuf":
            raise UsageError(f"{path}: column {name!r} is not numeric ({arr.dtype})")
        cols.append(arr.astype(np.float64))
    if not cols:
        raise UsageError(f"{path}: no feature columns besides the target {col!r}")
    X = np.column_stack(cols)
    w = None
    if wcol is not None:
        w = table.column(wcol).to_numpy()
    elif weight is not None:
        w = _weights_elsewhere(path, weight, names)
    return X, (None if col is None else table.column(col).to_numpy()), w
