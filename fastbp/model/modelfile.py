"""Model files and training checkpoints: ``.npz`` without pickle, JSON metadata, a format
version and one checksum over everything.

A model file (:func:`write_model` / :func:`read_model`) holds exactly two members, read with
``allow_pickle=False`` so that no code can run on load:

* ``params``: the flat parameter buffer (float32 or float64);
* ``meta``: UTF-8 JSON as uint8 bytes: the caller's description of the network (layer sizes,
  activations, dtype), ``format``, ``version``, ``n_params``, ``build`` (what made it: see
  :func:`build_info`) and ``sha256``.

A checkpoint (:func:`save_checkpoint` / :func:`load_checkpoint`) holds named arrays and a
``meta`` member with the caller's JSON ``info``.  In both, ``sha256`` covers the metadata
(canonical JSON without the checksum itself) and every array's dtype, shape and bytes: a
changed activation name is refused like a changed weight.

This module imports nothing of fastbp's model objects: :class:`fastbp.Network` builds itself
from what :func:`read_model` returns.
"""
import hashlib
import json
import os
import platform
import tempfile
import zipfile

import numpy as np

from .._validation import InputError

FORMAT = "fastbp.network"
CHECKPOINT = "fastbp.checkpoint"
VERSION = 2          # 2: the checksum covers the metadata


def build_info():
    """What a bitwise resume depends on: the versions of fastbp, numba, llvmlite, NumPy and
    Python, and the CPU (name and features) the kernels were compiled for."""
    import llvmlite
    import numba
    from importlib import metadata
    try:
        version = metadata.version("fastbp")
    except metadata.PackageNotFoundError:    # pragma: no cover - run from a source tree
        version = "unknown"
    cpu = numba.config.CPU_NAME or _llvm("get_host_cpu_name")
    features = numba.config.CPU_FEATURES
    if features is None:
        features = _llvm("get_host_cpu_features")
        features = features.flatten() if hasattr(features, "flatten") else str(features)
    return {"fastbp": version, "numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu": cpu, "cpu_features": features}


def _llvm(name):
    import llvmlite.binding as ll
    try:
        return getattr(ll, name)()
    except Exception:    # pragma: no cover - an llvmlite without the call
        return "unknown"


def build_differences(saved, current=None):
    """What differs between a saved :func:`build_info` and this one, as readable strings
    (empty when they match; a state saved before builds were recorded differs by that)."""
    current = build_info() if current is None else current
    if not isinstance(saved, dict):
        return ["no build recorded"]
    out = []
    for key in ("fastbp", "numba", "llvmlite", "numpy", "python", "machine", "cpu"):
        if saved.get(key) != current.get(key):
            out.append(f"{key} {saved.get(key)} -> {current.get(key)}")
    if saved.get("cpu_features") != current.get("cpu_features"):
        out.append("CPU features differ")
    return out


def _digest(meta, arrays):
    """SHA-256 of the metadata (canonical JSON, without ``sha256``) and of every array."""
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _json_bytes(obj):
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def _umask():
    """The process's umask, read without changing it where Linux tells it (/proc), else by
    setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, rename it over ``path``
    and fsync the directory: a reader (or a run killed at any moment) sees the old file or the
    new one, never half of one.  The file gets the mode any new file of the user gets
    (``0o666`` less the umask), not mkstemp's private 0600: collaborators in the group can read
    a model written on a shared cluster."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read(path, what):
    """Every member of the ``.npz`` at ``path`` and its decoded ``meta``; InputError for
    anything that is not such an archive."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise InputError(f"{path} is not a fastbp {what} (a bare array, not an archive)")
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except InputError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise InputError(f"{path} holds pickled objects; fastbp never loads those") from None
        raise InputError(f"{path} is not a readable fastbp {what}: {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise InputError(f"{path} is not a readable fastbp {what} (truncated or corrupt?): "
                         f"{e}") from None
    if "meta" not in arrays:
        raise InputError(f"{path} is not a fastbp {what}: no 'meta' member (found "
                         f"{sorted(arrays)})")
    raw = arrays.pop("meta")
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("the meta member is not a byte string")
        meta = json.loads(raw.tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError("the metadata are not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid fastbp metadata: {e}") from None
    return path, meta, arrays


def _check(path, meta, arrays, fmt, what):
    if meta.get("format") != fmt:
        raise InputError(f"{path} is not a fastbp {what} (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise InputError(f"{path}: unsupported format version {meta.get('version')!r} of a {what} "
                         f"(this fastbp reads version {VERSION})")
    if _digest(meta, arrays) != meta.get("sha256"):
        raise InputError(f"{path}: checksum mismatch: the {what} (parameters or metadata) was "
                         f"altered or corrupted")


def write_model(path, params, meta):
    """Write a model file: the flat ``params`` and the JSON-able ``meta`` describing the
    network, atomically."""
    meta = {**meta, "format": FORMAT, "version": VERSION, "n_params": int(params.shape[0]),
            "build": build_info()}
    meta["sha256"] = _digest(meta, {"params": params})
    atomic_write(path, lambda f: np.savez(f, params=params, meta=_json_bytes(meta)))


def read_model(path):
    """``(meta, params)`` of a model file written by :func:`write_model`: ``meta`` is the
    whole checked metadata (the caller's keys plus format, version, n_params, build, sha256).

    Raises ValueError (InputError) for a truncated, altered or foreign file, a missing or
    extra member, or one holding pickled objects; nothing in the file is executed."""
    path, meta, arrays = _read(path, "model file")
    if set(arrays) != {"params"}:
        raise InputError(f"{path} is not a fastbp model file: expected the members 'params' and "
                         f"'meta', found {sorted(arrays) + ['meta']}")
    _check(path, meta, arrays, FORMAT, "model file")
    params = arrays["params"]
    if params.ndim != 1 or params.dtype.kind != "f" or params.shape[0] != meta.get("n_params"):
        raise InputError(f"{path}: parameter array does not match its metadata "
                         f"({params.dtype}, shape {params.shape})")
    return meta, params


def save_checkpoint(path, arrays, info):
    """Write a training checkpoint atomically: named arrays plus JSON ``info`` (the build that
    wrote it added as ``info["build"]`` unless given), under one checksum."""
    info = {"build": build_info(), **info}
    meta = {"format": CHECKPOINT, "version": VERSION, "info": info}
    meta["sha256"] = _digest(meta, arrays)
    atomic_write(path, lambda f: np.savez(f, **arrays, meta=_json_bytes(meta)))


def load_checkpoint(path):
    """``(arrays, info)`` from :func:`save_checkpoint`; ValueError for anything else."""
    path, meta, arrays = _read(path, "checkpoint")
    _check(path, meta, arrays, CHECKPOINT, "checkpoint")
    if not isinstance(meta.get("info"), dict):
        raise InputError(f"{path}: invalid checkpoint metadata: no info")
    return arrays, meta["info"]
