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
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a data file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return _npz(path, need_target)
    if ext == ".npy":
        return _npy(path, target, need_target)
    if ext == ".csv":
        return _csv(path, target, need_target)
    if ext in (".parquet", ".pq"):
        return _parquet(path, target, need_target)
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


def _npz(path, need_target):
    try:
        z = np.load(path, allow_pickle=False)
        if getattr(z, "files", None) is None:      # a .npy array
            raise UsageError(f"{path}: needs arrays {'X and y' if need_target else 'X'}; found "
                             f"a bare array")
        with z:
            if "X" not in z.files or (need_target and "y" not in z.files):
                want = "X and y" if need_target else "X"
                raise UsageError(f"{path}: needs arrays {want}; found {z.files}")
            return z["X"], (z["y"] if "y" in z.files else None)
    except UsageError:
        raise
    except ValueError as e:
        raise UsageError(f"{path}: not a readable .npz of numeric arrays ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"{path}: unreadable .npz file ({e})") from None


def _npy(path, target, need_target):
    X = _load_npy(path)
    if target is None:
        if need_target:
            raise UsageError(f"{path}: a .npy holds X only; pass the targets with --target y.npy")
        return X, None
    if not os.path.exists(target):
        raise UsageError(f"--target {target}: no such file (for .npy data, --target is y.npy)")
    return X, _load_npy(target)


def _csv(path, target, need_target):
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
    if target is None:
        if not need_target:
            return data, None
        col = width - 1
    else:
        col = _column(path, target, names, header is not None)
    if width < 2:
        raise UsageError(f"{path}: one column: nothing is left for the features besides the "
                         f"target")
    return np.delete(data, col, axis=1), data[:, col]


def _column(path, target, names, has_header):
    if target in names and (has_header or not target.isdigit()):
        return names.index(target)
    if str(target).lstrip("-").isdigit() and -len(names) <= int(target) < len(names):
        return int(target) % len(names)
    raise UsageError(f"{path}: no column {target!r}" + (f"; columns are {names}" if has_header
                                                        else f"; {len(names)} unnamed columns"))


def _parquet(path, target, need_target):
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
    cols = []
    for name in names:
        if name == col:
            continue
        arr = table.column(name).to_numpy()
        if arr.dtype.kind not in "biuf":
            raise UsageError(f"{path}: column {name!r} is not numeric ({arr.dtype})")
        cols.append(arr.astype(np.float64))
    if not cols:
        raise UsageError(f"{path}: no feature columns besides the target {col!r}")
    X = np.column_stack(cols)
    return X, (None if col is None else table.column(col).to_numpy())
