"""Model files and checkpoints: ``.npz`` archives without pickle, JSON metadata, a format version,
the build that wrote them and a SHA-256 over metadata *and* numbers.

This module knows nothing of :class:`~fastbp.Network` (no import of ``network.py``, so no cycle):
``Network.save`` hands :func:`write_model` a flat parameter array and a JSON-able dict describing
the network, ``fastbp.load`` builds the network from what :func:`read_model` returns.

Layout of a model file (an ordinary, uncompressed ``.npz``; exactly two members)::

    params   1-D float32/float64 array: the flat parameter buffer
    meta     1-D uint8 array: UTF-8 JSON object =
             the caller's keys (layer_sizes, activation, output_activation, dtype, ...)
             + "format": "fastbp.network", "version": 2, "n_params": int,
               "build": build_info() of the writer, "sha256": hex digest

Layout of a checkpoint (:func:`save_checkpoint`)::

    <name>   one member per array the caller gave (any dtype but object)
    meta     1-D uint8 JSON: "format": "fastbp.checkpoint", "version": 2,
             "arrays": sorted member names, "info": the caller's JSON-able info,
             "build": build_info() of the writer, "sha256": hex digest

``sha256`` covers the canonical JSON of ``meta`` without ``sha256`` (``sort_keys=True``, compact
separators) and then, per array in name order, its name, dtype, shape and bytes, each piece
length-prefixed.  So changing ``"tanh"`` to ``"relu"`` in a saved file is refused like a flipped
bit in a weight.  It is a check against damage and careless edits, not a signature: whoever
can write the file can recompute it.

Reading never runs code from the file (``allow_pickle=False``).  Everything wrong with a file's
content (truncated, altered, foreign, pickled objects, members missing or extra, metadata of the
wrong type) raises :class:`~fastbp._validation.InputError` (a ValueError); failing to open it
raises the OSError of the file system.
"""
import functools
import hashlib
import json
import os
import platform
import tempfile
import zipfile

import numpy as np

from .._config import DTYPES
from .._validation import InputError, InputTypeError

FORMAT = "fastbp.network"
CHECKPOINT = "fastbp.checkpoint"
VERSION = 2            # 2: the checksum covers the metadata; files of version 1 are refused
_MODEL_KEYS = frozenset({"format", "version", "n_params", "build", "sha256"})   # written here


# --- writing ---------------------------------------------------------------------------------
def _umask():
    """The process umask.  Linux >= 4.7 shows it in /proc/self/status; elsewhere it can only be
    read by setting it, so it is set to 077 for that instant (a file another thread creates
    meanwhile comes out too private rather than too public) and restored."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, rename it over ``path``
    and fsync the directory: a reader (or a run killed at any moment) sees the old file or the
    new one, never half of one.

    The file gets mode ``0o666 & ~umask``, as a file created with ``open`` would (mkstemp makes
    it 0600, which hides models and logs from the rest of a group on a shared cluster); an
    existing file's mode is replaced by that too, not kept."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):   # not on Windows, where mkstemp's mode is no problem
                os.fchmod(f.fileno(), 0o666 & ~_umask())
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


def _plain_json(obj, name):
    """``obj`` after a JSON round trip (tuples become lists, ...), so that the checksum computed
    before writing is the one a reader computes from what it parses."""
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise InputTypeError(f"{name} must be JSON-serialisable: {e}") from None


def _checksum(meta, arrays):
    """Hex SHA-256 over ``meta`` less its "sha256" key (canonical JSON) and, in name order, each
    array's name, dtype, shape and bytes; every piece is length-prefixed so none can bleed
    into the next."""
    h = hashlib.sha256()

    def put(buf):
        h.update(len(buf).to_bytes(8, "little"))
        h.update(buf)

    body = {k: v for k, v in meta.items() if k != "sha256"}
    put(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])     # (which makes a 0-d array 1-d: shape first)
        put(json.dumps([name, a.dtype.str, list(np.shape(arrays[name]))]).encode())
        h.update(a.nbytes.to_bytes(8, "little"))
        h.update(a.data)    # a view, not a copy of a possibly large buffer
    return h.hexdigest()


def _write_archive(path, arrays, meta):
    """Write ``arrays`` and ``meta`` (as UTF-8 JSON bytes) as an .npz, atomically.  The zip is
    written here rather than by np.savez, whose own keywords (``file``, ``allow_pickle``)
    would clash with array names, and which would pickle object arrays."""
    members = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, a in members.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as m:
                    np.lib.format.write_array(m, np.asanyarray(a), allow_pickle=False)

    atomic_write(path, write)


def write_model(path, params, meta):
    """Write a model file (layout in the module docstring) atomically.

    Parameters
    ----------
    path : str or os.PathLike
    params : ndarray
        The flat 1-D float32/float64 parameter buffer.
    meta : dict
        JSON-able description of the network (layer_sizes, activation, ...).  The keys
        ``format``, ``version``, ``n_params``, ``build`` and ``sha256`` are this module's.
    """
    params = np.asarray(params)
    if params.ndim != 1 or params.dtype not in [np.dtype(t) for t in DTYPES]:
        raise InputError(f"params must be a 1-D float32 or float64 array; got {params.dtype} "
                         f"with shape {params.shape}")
    if not isinstance(meta, dict):
        raise InputTypeError(f"meta must be a dict; got {type(meta).__name__}")
    meta = _plain_json(meta, "meta")
    clash = sorted(_MODEL_KEYS & meta.keys())
    if clash:
        raise InputError(f"meta keys {clash} are reserved for the model file itself")
    meta.update(format=FORMAT, version=VERSION, n_params=int(params.shape[0]), build=build_info())
    meta["sha256"] = _checksum(meta, {"params": params})
    _write_archive(path, {"params": params}, meta)


def save_checkpoint(path, arrays, info):
    """Write a training checkpoint atomically: named arrays plus JSON-able ``info``, the build
    that wrote it and a SHA-256 over all of it, so that a damaged or edited file is refused
    rather than resumed from (layout in the module docstring)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    bad = sorted(repr(k) for k in arrays if not isinstance(k, str) or not k or k == "meta")
    if bad:
        raise InputError(f"checkpoint array names must be non-empty strings other than 'meta'; "
                         f"got {', '.join(bad)}")
    meta = {"format": CHECKPOINT, "version": VERSION, "arrays": sorted(arrays),
            "info": _plain_json(info, "info"), "build": build_info()}
    meta["sha256"] = _checksum(meta, arrays)
    _write_archive(path, arrays, meta)


# --- reading ---------------------------------------------------------------------------------
def _read_archive(path, fmt, what, expected):
    """``(meta, arrays)`` of a fastbp archive, checked up to and including the checksum.

    ``expected(meta)`` gives the names of the members besides ``meta``; everything wrong with
    the content raises InputError naming ``path`` and ``what`` the file should have been."""
    path = os.fspath(path)
    with open(path, "rb") as fh:    # failing to open it is the file system's OSError
        # From here on any failure is the content's: zipfile and numpy raise all sorts of
        # exceptions on damaged bytes (BadZipFile, EOFError, struct/zlib errors, OSError from a
        # seek to a bogus offset, MemoryError for a bogus shape), all meaning "unreadable".
        try:
            z = np.load(fh, allow_pickle=False)
        except Exception as e:
            raise InputError(f"{path} is not a {what}: not an .npz archive ({e})") from None
        if not hasattr(z, "files"):
            raise InputError(f"{path} is not a {what}: a bare .npy array, not an .npz archive")
        with z:
            def member(name):
                try:
                    return z[name]
                except Exception as e:
                    if "pickle" in str(e).lower():
                        raise InputError(f"{path}: member {name!r} holds pickled objects; "
                                         f"fastbp never loads those") from None
                    raise InputError(f"{path} is not a readable {what} (truncated or "
                                     f"corrupt?): member {name!r}: {e}") from None

            if "meta" not in z.files:
                raise InputError(f"{path} is not a {what}: no 'meta' member (it has {z.files})")
            meta = _parse_meta(member("meta"), path, fmt, what)
            names = expected(meta)
            missing = sorted(set(names) - set(z.files))
            extra = sorted(set(z.files) - set(names) - {"meta"})
            if missing or extra:
                raise InputError(f"{path} is not a valid {what}: "
                                 + "; ".join(f"{label} member(s) {', '.join(map(repr, ks))}"
                                             for label, ks in (("missing", missing),
                                                               ("unexpected", extra)) if ks))
            arrays = {k: member(k) for k in names}
    if meta.get("sha256") != _checksum(meta, arrays):
        raise InputError(f"{path}: checksum mismatch: the {what} was altered or damaged "
                         f"(metadata or numbers)")
    if not isinstance(meta.get("build"), dict):
        raise InputError(f"{path}: invalid {what} metadata: 'build' must be an object")
    return meta, arrays


def _parse_meta(raw, path, fmt, what):
    """The metadata JSON object, of format ``fmt`` and this version."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise InputError(f"{path}: invalid {what} metadata: expected JSON bytes, got a "
                         f"{raw.dtype} array of shape {raw.shape}")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:   # bad UTF-8 or JSON; absurd nesting
        raise InputError(f"{path}: invalid {what} metadata: not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: invalid {what} metadata: a JSON {type(meta).__name__}, "
                         f"not an object")
    if meta.get("format") != fmt:
        raise InputError(f"{path} is not a {what} (format {meta.get('format')!r}, expected "
                         f"{fmt!r})")
    version = meta.get("version")
    if version != VERSION or isinstance(version, bool):
        raise InputError(f"{path}: unsupported {what} format version {version!r} (this fastbp "
                         f"reads version {VERSION})")
    return meta


def read_model(path):
    """Read and check a file of :func:`write_model`.

    Returns
    -------
    meta : dict
        The caller's metadata as written, plus ``"build"`` (the :func:`build_info` of the
        writer); ``format``, ``version``, ``n_params`` and ``sha256`` are removed.  The caller
        validates its own keys.
    params : ndarray
        The 1-D float32/float64 parameters (a fresh, writeable array).

    Raises
    ------
    InputError (a ValueError)
        The file is truncated, altered, foreign, of another format version, holds pickled
        objects or members other than ``params`` and ``meta``.
    OSError
        The file cannot be opened.
    """
    meta, arrays = _read_archive(path, FORMAT, "fastbp model file", lambda meta: ["params"])
    params, n = arrays["params"], meta.get("n_params")
    if (params.ndim != 1 or params.dtype not in [np.dtype(t) for t in DTYPES]
            or isinstance(n, bool) or n != params.shape[0]):
        raise InputError(f"{os.fspath(path)}: the parameters ({params.dtype}, shape "
                         f"{params.shape}) do not match the metadata (n_params {n!r})")
    return {k: v for k, v in meta.items() if k not in _MODEL_KEYS - {"build"}}, params


def load_checkpoint(path):
    """Read and check a file of :func:`save_checkpoint`.

    Returns ``(arrays, info)``: the named arrays and the caller's info.  When info is a dict
    without a ``"build"`` key, the writer's :func:`build_info` is put there (pass it to
    :func:`build_differences`); a ``"build"`` the caller saved itself is left alone.
    Raises InputError (a ValueError) for a damaged, edited or foreign file, naming missing or
    unexpected members, and OSError when it cannot be opened."""
    def expected(meta):
        names = meta.get("arrays")
        if (not isinstance(names, list) or not all(isinstance(k, str) for k in names)
                or len(set(names)) != len(names) or "meta" in names or "info" not in meta):
            raise InputError(f"{os.fspath(path)}: invalid checkpoint metadata: 'arrays' must "
                             f"list the member names and 'info' be present")
        return names

    meta, arrays = _read_archive(path, CHECKPOINT, "fastbp checkpoint", expected)
    info = meta["info"]
    if isinstance(info, dict):
        info.setdefault("build", meta["build"])
    return arrays, info


# --- the build a file was written with -------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _build():
    import llvmlite
    import numba
    from llvmlite import binding as ll

    from .._version import __version__ as version
    # what numba compiles for: its overrides (NUMBA_CPU_NAME/_FEATURES) or the host, as in
    # numba.core.codegen
    features = numba.config.CPU_FEATURES
    if features is None:
        try:
            features = ll.get_host_cpu_features().flatten()
        except RuntimeError:
            features = ""
    return {"fastbp": str(version), "numba": numba.__version__,
            "llvmlite": llvmlite.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu_name": numba.config.CPU_NAME or ll.get_host_cpu_name(),
            "cpu_features": features}


def build_info():
    """What bitwise reproducibility depends on, as a JSON-able dict of strings: the versions of
    fastbp, numba, llvmlite, numpy and Python, the machine (``platform.machine()``), the CPU
    name LLVM compiles for (``cpu_name``) and its feature string (``cpu_features``)."""
    return dict(_build())   # a copy: callers may edit theirs


_BUILD_ORDER = ("fastbp", "numba", "llvmlite", "numpy", "python", "machine", "cpu_name",
                "cpu_features")


def build_differences(saved, current=None):
    """What differs between the :func:`build_info` a file recorded and ``current`` (default:
    this process's), as readable strings such as ``"numba 0.68.1 -> 0.69.0"`` or
    ``"CPU features differ (only saved: avx512f)"``; empty when they agree.  A missing or
    malformed record counts as a difference."""
    current = build_info() if current is None else current
    if not isinstance(saved, dict):
        return ["the build it was made with is not recorded"]
    keys = [k for k in _BUILD_ORDER if k in saved or k in current]
    keys += sorted((set(saved) | set(current)) - set(_BUILD_ORDER))
    out = []
    for k in keys:
        a, b = saved.get(k), current.get(k)
        if a == b:
            continue
        if k == "cpu_features":
            out.append(_feature_difference(a, b))
        else:
            out.append(f"{k} {'unknown' if a is None else a} -> {'unknown' if b is None else b}")
    return out


def _feature_difference(saved, current):
    def enabled(s):
        return {f[1:] for f in str(s or "").split(",") if f.startswith("+")}

    def some(names):
        names = sorted(names)
        return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")

    a, b = enabled(saved), enabled(current)
    parts = [f"{label}: {some(s)}" for label, s in (("only saved", a - b), ("only here", b - a))
             if s]
    return "CPU features differ" + (f" ({'; '.join(parts)})" if parts else "")
