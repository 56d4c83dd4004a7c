"""Checks and conversions at the door.  Every public entry point converts its input once, here,
and raises a ValueError/TypeError that names the problem; kernels trust what they receive."""
import numbers

import numpy as np

from ._config import DTYPES
from .engine import all_finite


class BadInput(Exception):
    """Marks an error in what the caller passed (a value, a shape, a file): the command line
    reports it in one line with exit code 2.  Every other exception is a bug or an
    environment failure, reported with its traceback (exit 1)."""


class InputError(BadInput, ValueError):
    """A ValueError about the caller's input."""


class InputTypeError(BadInput, TypeError):
    """A TypeError about the caller's input."""


def _describe(value):
    return f"{value!r} ({type(value).__name__})"


def check_choice(name, value, choices):
    if not isinstance(value, str):
        raise InputTypeError(f"{name} must be a string, one of {sorted(choices)}; got {_describe(value)}")
    key = value.lower()
    if key not in choices:
        raise InputError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")
    return key


def check_int(name, value, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an integer >= {minimum}; got {_describe(value)}")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def check_float(name, value, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in [low, high] (bounds open when asked)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a real number; got {_describe(value)}")
    v = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = not np.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        raise InputError(f"{name} must be a finite number in {interval}; got {value!r}")
    return v


def check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise InputTypeError(f"dtype must be float32 or float64; got {_describe(dtype)}") from e
    if dt not in [np.dtype(t) for t in DTYPES]:
        raise InputError(f"dtype must be float32 or float64; got {dt}")
    return dt


def _numeric(name, value):
    """np.asarray that refuses non-numeric data with a TypeError naming it."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested sequences
        raise InputError(f"{name} could not be read as a numeric array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise InputTypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}"
                        + (" (ragged or mixed-type input?)" if arr.dtype == object else ""))
    return arr


def _check_finite(name, arr):
    # one pass without a temporary the size of the data (np.isfinite(arr).all() would allocate
    # one byte per element); details only on failure
    if arr.dtype.kind == "f" and arr.size and not all_finite(arr):
        bad = ~np.isfinite(arr)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "NaN" if np.isnan(arr[first]) else "inf"
        raise InputError(f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf); "
                         f"the first is {what} at index {first}")


def check_X(X, dtype, n_features=None, name="X"):
    """2-D, non-empty, finite; returned C-contiguous in ``dtype`` (a copy only when needed)."""
    arr = _numeric(name, X)
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_samples, n_features); got {arr.ndim}-D "
                         f"with shape {arr.shape}" + (" (reshape a single feature with "
                                                      "X.reshape(-1, 1))" if arr.ndim == 1 else ""))
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name} is empty: shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise InputError(f"{name} has {arr.shape[1]} features but the network expects {n_features}")
    _check_finite(name, arr)
    with np.errstate(over="ignore"):    # overflow is reported below, by name
        out = np.ascontiguousarray(arr, dtype=dtype)
    if out.dtype.kind == "f" and arr.dtype != out.dtype:
        _check_finite(f"{name} (after conversion to {out.dtype})", out)
    return out


def check_targets(Y, loss, n_out, n_samples, dtype, name="y"):
    """Targets for ``loss``; returns ``(Yf, Yi)`` where exactly one is used by the kernels:
    ``Yi`` int64 class labels (cross-entropy with 1-D integer labels), else ``Yf`` float targets
    ``(n, n_out)``.  The unused one is a placeholder (empty labels, or one zero row)."""
    labels = np.asarray(Y) if isinstance(Y, (list, tuple, np.ndarray)) else None
    if labels is not None and labels.dtype.kind in "USO" and labels.ndim == 1 and labels.size:
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(labels.tolist()))[:3])
        raise InputTypeError(
            f"{name} holds labels ({shown}, ...), not numbers: the Trainer takes class indices "
            f"0..n_classes-1 for cross_entropy (np.unique({name}, return_inverse=True) gives "
            f"them), or 0/1 for binary_cross_entropy. fastbp.MLPClassifier and `fastbp train` "
            f"(or fastbp.data.prepare) take labels of any type and map them back.")
    arr = _numeric(name, Y)
    if arr.ndim == 0 or arr.ndim > 2:
        raise InputError(f"{name} must be 1-D or 2-D; got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise InputError(f"X and {name} have different lengths: {n_samples} and {arr.shape[0]}")
    if arr.size == 0:
        raise InputError(f"{name} is empty: shape {arr.shape}")
    _check_finite(name, arr)
    no_labels = np.empty(0, np.int64)
    if loss == "cross_entropy" and arr.ndim == 1:
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise InputError(f"{name}: cross_entropy needs integer class labels 0..{n_out - 1} "
                             f"(or a one-hot/probability matrix); got non-integer values")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_out:
            raise InputError(f"{name}: class labels must lie in 0..{n_out - 1} for a network with "
                             f"{n_out} outputs; got labels from {lo} to {hi}")
        return np.zeros((1, n_out), dtype), np.ascontiguousarray(arr, dtype=np.int64)
    if arr.ndim == 1:
        if n_out != 1:
            raise InputError(f"{name} is 1-D but the network has {n_out} outputs; pass targets of "
                             f"shape ({n_samples}, {n_out})"
                             + (" or integer labels with loss='cross_entropy'" if loss != "cross_entropy" else ""))
        arr = arr.reshape(-1, 1)
    if arr.shape[1] != n_out:
        raise InputError(f"{name} has {arr.shape[1]} columns but the network has {n_out} outputs")
    if loss in ("cross_entropy", "binary_cross_entropy", "poisson"):
        if arr.min() < 0 or (loss == "binary_cross_entropy" and arr.max() > 1):
            rng = "[0, 1]" if loss == "binary_cross_entropy" else "[0, inf)"
            raise InputError(f"{name}: {loss} targets must lie in {rng}; got values from "
                             f"{arr.min()} to {arr.max()}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    _check_finite(f"{name} (after conversion to {out.dtype})", out)
    return out, no_labels


def check_weights(name, w, n, dtype):
    """Per-sample (or per-class) weights: ``n`` finite numbers >= 0, not all zero, as a
    contiguous array of ``dtype``."""
    arr = _numeric(name, w)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{name} must hold {n} weights (a 1-D array); got shape {arr.shape}")
    _check_finite(name, arr)
    if arr.min() < 0:
        raise InputError(f"{name} must not be negative; got {arr.min()}")
    if not arr.any():
        raise InputError(f"{name} are all zero: nothing would be learned")
    out = np.ascontiguousarray(arr, dtype=dtype)
    _check_finite(f"{name} (after conversion to {out.dtype})", out)
    return out
