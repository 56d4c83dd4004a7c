"""Model files: ``.npz`` without pickle, JSON metadata, a format version and a checksum.

Layout of the archive (read with ``allow_pickle=False``, so no code can run on load):

* ``params``: the flat parameter buffer (float32 or float64);
* ``meta``: UTF-8 JSON as uint8 bytes: format, version, layer sizes, activations, dtype,
  n_params and ``sha256`` of the parameter bytes.
"""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "fastbp.network"
VERSION = 1


def _digest(params):
    return hashlib.sha256(np.ascontiguousarray(params).tobytes()).hexdigest()


def _json_bytes(obj):
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, rename it over ``path``
    and fsync the directory: a reader (or a run killed at any moment) sees the old file or the
    new one, never half of one."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=directory)
    try:
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


def save(network, path):
    """Write ``network`` to ``path`` atomically (a temporary file renamed over the target)."""
    meta = {"format": FORMAT, "version": VERSION, "layer_sizes": network.layer_sizes,
            "activation": network.activation, "output_activation": network.output_activation,
            "dtype": network.dtype.name, "n_params": int(network.params.shape[0]),
            "sha256": _digest(network.params)}
    atomic_write(path, lambda f: np.savez(f, params=network.params, meta=_json_bytes(meta)))


CHECKPOINT = "fastbp.checkpoint"


def save_checkpoint(path, arrays, info):
    """Write a training checkpoint atomically: named arrays plus JSON ``info``, with a SHA-256
    of every array so that a damaged file is refused rather than resumed from."""
    meta = {"format": CHECKPOINT, "version": VERSION, "info": info,
            "sha256": {k: _digest(v) for k, v in arrays.items()}}
    atomic_write(path, lambda f: np.savez(f, **arrays, meta=_json_bytes(meta)))


def load_checkpoint(path):
    """``(arrays, info)`` from :func:`save_checkpoint`; ValueError for anything else."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (ValueError, zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise ValueError(f"{path} is not a readable fastbp checkpoint: {e}") from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        if meta.get("format") != CHECKPOINT or meta.get("version") != VERSION:
            raise ValueError("not a fastbp checkpoint of this version")
        sums = meta["sha256"]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: invalid checkpoint metadata: {e}") from None
    if set(sums) != set(arrays) or any(_digest(arrays[k]) != sums[k] for k in arrays):
        raise ValueError(f"{path}: checksum mismatch: the checkpoint is damaged")
    return arrays, meta["info"]


def load(path):
    """Read a network written by :meth:`Network.save`.

    Raises ValueError for a truncated, altered or foreign file, or one holding pickled objects;
    nothing in the file is executed."""
    from .network import Network

    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files") or set(z.files) != {"params", "meta"}:
                raise ValueError(f"{path} is not a fastbp model file (expected arrays 'params' and "
                                 f"'meta', found {getattr(z, 'files', 'a bare array')})")
            meta_raw = z["meta"]
            params = z["params"]
    except FileNotFoundError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ValueError(f"{path} holds pickled objects; fastbp never loads those") from None
        if "fastbp" in str(e):
            raise
        raise ValueError(f"{path} is not a readable fastbp model file: {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise ValueError(f"{path} is not a readable fastbp model file (truncated or corrupt?): {e}") from None
    try:
        if meta_raw.dtype != np.uint8 or meta_raw.ndim != 1:
            raise ValueError("bad metadata array")
        meta = json.loads(meta_raw.tobytes().decode())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not a fastbp network")
        if meta.get("version") != VERSION:
            raise ValueError(f"unsupported format version {meta.get('version')!r} (this fastbp "
                             f"reads version {VERSION})")
        dtype = np.dtype(meta["dtype"])
        sizes = [int(s) for s in meta["layer_sizes"]]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: invalid fastbp metadata: {e}") from None
    if params.dtype != dtype or params.ndim != 1 or params.shape[0] != meta.get("n_params"):
        raise ValueError(f"{path}: parameter array does not match its metadata "
                         f"({params.dtype}, shape {params.shape})")
    if _digest(params) != meta.get("sha256"):
        raise ValueError(f"{path}: checksum mismatch: the parameters were altered or corrupted")
    net = Network(sizes, activation=meta["activation"],
                  output_activation=meta["output_activation"], dtype=dtype, init="normal", seed=0)
    if net.params.shape != params.shape:
        raise ValueError(f"{path}: {params.shape[0]} parameters do not fit layer sizes {sizes}")
    net.params[...] = params
    return net
