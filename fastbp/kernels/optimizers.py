"""In-place optimizer updates over the flat parameter buffer, with PyTorch's update rules.

``state1``/``state2`` share the parameters' layout: ``state1`` is the momentum buffer, Adam's
``exp_avg`` or RMSprop's ``square_avg``; ``state2`` is Adam's ``exp_avg_sq`` (``STATE_ARRAYS``
says how many each optimizer uses; the unused ones may be empty).  ``hyper`` holds, in the
parameters' dtype, ``[lr, momentum, beta1, beta2, eps, weight_decay]``; ``step`` is the 1-based
step count.

* sgd       ``g += wd·p; p -= lr·g``
* momentum  ``g += wd·p; buf = μ·buf + g; p -= lr·buf``                 (torch.optim.SGD, momentum)
* nesterov  ``g += wd·p; buf = μ·buf + g; p -= lr·(g + μ·buf)``         (nesterov=True)
* adam      ``g += wd·p; m = lerp(m, g, 1−β1); v = β2·v + (1−β2)·g²;
  p -= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps)``                           (torch.optim.Adam)
* adamw     ``p *= 1 − lr·wd`` then adam without the L2 term          (torch.optim.AdamW)
* rmsprop   ``g += wd·p; v = α·v + (1−α)·g²; p -= lr·g/(√v + eps)``, α = 0.99 (torch.optim.RMSprop)

Zero-initialised buffers reproduce PyTorch's first step exactly (``buf = g``, dampening 0).

scikit-learn's MLP optimizers (``sklearn.neural_network._stochastic_optimizers``) are not the
same rules, and its estimators are reproduced with their own codes (no weight decay: its L2 term
is in the gradient already):

* sk_sgd       ``v = μ·v − lr·g; p += v``
* sk_nesterov  ``v = μ·v − lr·g; p += μ·v − lr·g``
* sk_adam      ``m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
  p += −lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + eps)``
"""
import math

import numpy as np
from numba import njit, prange

from .._config import INLINE_JIT, JIT, PARALLEL_JIT
from .native import FN_UPDATE, Native
from .unowned import bits_float, float_bits

SGD, MOMENTUM, NESTEROV, ADAM, ADAMW, RMSPROP = 0, 1, 2, 3, 4, 5
SK_SGD, SK_NESTEROV, SK_ADAM = 6, 7, 8
OPTIMIZERS = {"sgd": SGD, "momentum": MOMENTUM, "nesterov": NESTEROV, "adam": ADAM,
              "adamw": ADAMW, "rmsprop": RMSPROP}
SKLEARN = {"sk_sgd": SK_SGD, "sk_nesterov": SK_NESTEROV, "sk_adam": SK_ADAM}
NAMES = {v: k for k, v in {**OPTIMIZERS, **SKLEARN}.items()}
STATE_ARRAYS = {SGD: 0, MOMENTUM: 1, NESTEROV: 1, ADAM: 2, ADAMW: 2, RMSPROP: 1,
                SK_SGD: 1, SK_NESTEROV: 1, SK_ADAM: 2}
RMSPROP_ALPHA = 0.99
CHUNK = 4096        # elements per parallel task
PAR_MIN = 1 << 16   # parameters below which the update runs serially ...
PAR_MIN_SQRT = 1 << 14  # ... for float64 and the rules with a square root and a division
                        # (4 cycles per element: two threads pay from ~16k, measured)


@njit(**INLINE_JIT)
def _lerp(a, b, w, one):
    # torch.lerp: the two formulas it uses on either side of w = 0.5
    if w < 0.5:
        return a + w * (b - a)
    return b - (b - a) * (one - w)


@njit(**JIT)
def _update_chunk(code, p, g, s1, s2, c, lo, hi):
    """Update ``p[lo:hi]``; ``c`` = typed constants.  Returns Σ 0·p_new: 0 if every new value
    is finite, NaN otherwise (cheap and vectorisable)."""
    lr, mom, b1, b2, eps, wd, step_size, bc2_sqrt, alpha, decay = (
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9])
    one = p.dtype.type(1)
    zero = p.dtype.type(0)
    lo, hi = np.uint64(lo), np.uint64(hi)   # unsigned indices: the loops vectorise
    w1 = one - b1
    w2 = one - b2
    finite = zero
    if code == SGD:
        for i in range(lo, hi):
            gi = g[i] + wd * p[i] if wd != 0 else g[i]
            p[i] = p[i] - lr * gi
            finite += p[i] * zero
    elif code == MOMENTUM or code == NESTEROV:
        nesterov = code == NESTEROV
        for i in range(lo, hi):
            gi = g[i] + wd * p[i] if wd != 0 else g[i]
            b = mom * s1[i] + gi
            s1[i] = b
            if nesterov:
                gi = gi + mom * b
            else:
                gi = b
            p[i] = p[i] - lr * gi
            finite += p[i] * zero
    elif code == ADAM or code == ADAMW:
        for i in range(lo, hi):
            if code == ADAMW:
                p[i] = p[i] * decay
                gi = g[i]
            else:
                gi = g[i] + wd * p[i] if wd != 0 else g[i]
            m = _lerp(s1[i], gi, w1, one)
            v = s2[i] * b2 + gi * gi * w2
            s1[i] = m
            s2[i] = v
            p[i] = p[i] - step_size * (m / (math.sqrt(v) / bc2_sqrt + eps))
            finite += p[i] * zero
    elif code == SK_SGD or code == SK_NESTEROV:
        nesterov = code == SK_NESTEROV
        for i in range(lo, hi):
            v = mom * s1[i] - lr * g[i]
            s1[i] = v
            if nesterov:
                v = mom * v - lr * g[i]
            p[i] = p[i] + v
            finite += p[i] * zero
    elif code == SK_ADAM:
        for i in range(lo, hi):
            m = b1 * s1[i] + w1 * g[i]
            v = b2 * s2[i] + w2 * (g[i] * g[i])
            s1[i] = m
            s2[i] = v
            p[i] = p[i] + (-step_size * m) / (math.sqrt(v) + eps)
            finite += p[i] * zero
    else:  # RMSPROP
        wa = one - alpha
        for i in range(lo, hi):
            gi = g[i] + wd * p[i] if wd != 0 else g[i]
            v = s1[i] * alpha + gi * gi * wa
            s1[i] = v
            p[i] = p[i] - lr * (gi / (math.sqrt(v) + eps))
            finite += p[i] * zero
    return finite


@njit(**PARALLEL_JIT)
def update(code, params, grads, state1, state2, hyper, step, consts, flags):
    """One optimizer step (``step`` counts from 1).  ``consts`` (10 elements) and ``flags`` (one
    per chunk) are scratch in the parameters' dtype.  Returns True when every updated parameter
    is finite."""
    lr = float(hyper[0])
    b1 = float(hyper[2])
    b2 = float(hyper[3])
    wd = float(hyper[5])
    for i in range(6):
        consts[i] = hyper[i]
    # step-dependent scalars in float64, as PyTorch computes them in Python, then cast once
    consts[6] = lr / (1.0 - b1 ** step) if code == ADAM or code == ADAMW else 0.0
    if code == SK_ADAM:
        consts[6] = lr * math.sqrt(1.0 - b2 ** step) / (1.0 - b1 ** step)
    consts[7] = math.sqrt(1.0 - b2 ** step) if code == ADAM or code == ADAMW else 1.0
    consts[8] = RMSPROP_ALPHA
    consts[9] = 1.0 - lr * wd
    n = params.shape[0]
    nchunks = (n + CHUNK - 1) // CHUNK
    slow = params.itemsize == 8 and (code == ADAM or code == ADAMW or code == RMSPROP
                                     or code == SK_ADAM)
    if n < (PAR_MIN_SQRT if slow else PAR_MIN):
        ok = _update_chunk(code, params, grads, state1, state2, consts, np.int64(0), n)
        return ok == 0
    for t in prange(nchunks):
        flags[t] = _update_chunk(code, params, grads, state1, state2, consts,
                                 t * CHUNK, min(n, t * CHUNK + CHUNK))
    ok = flags[0] * 0
    for t in range(nchunks):
        ok += flags[t]
    return ok == 0


UPDATE = Native(FN_UPDATE, update, "b")
update_at = UPDATE.stub     # called indirectly (see native.py)


# -- the divergence guard: a step's snapshot only when its update could overflow --------------
FMAX32, FMAX64 = 3.4028234663852886e38, 1.7976931348623157e308
MARGIN = 2.0 ** -8      # a bound within this factor of the largest float counts as overflowing


def adam_ratio_bound(b1, b2):
    """C with ``|m| <= C·√v`` elementwise for Adam's moments grown from zero by the same
    gradients (Cauchy–Schwarz: ``C = (1−β1)/√((1−β2)(1−β1²/β2))``, 7.3 at the defaults), with
    1% to spare for rounding.  Inductive: if it holds before a step it holds after it, for any
    gradient.  inf when β1² >= β2 (no such bound)."""
    if not (0 <= b1 < 1 and 0 < b2 < 1) or b1 * b1 >= b2:
        return math.inf
    return 1.01 * (1 - b1) / math.sqrt((1 - b2) * (1 - b1 * b1 / b2))


@njit(**JIT)
def adam_within(m, v, C):
    """Whether ``|m| <= C·√v`` elementwise (in float64; a NaN or an overflowing C·√v fails:
    not within).  One vectorised pass that counts the failures: no branch, no division."""
    bad = 0
    for i in range(np.uint64(m.shape[0])):
        bad += not abs(float(m[i])) <= C * math.sqrt(float(v[i]))
    return bad == 0


@njit(**INLINE_JIT)
def step_bound(code, hyper, step, bounds, G):
    """Upper bounds, in float64, on ``max|p|``, ``max|state1|``, ``max|state2|`` after the
    update ``code`` by a gradient with ``max|g| <= G``, from the same bounds before it
    (``bounds[:3]``).  ``bounds[3]``: C with ``|m| <= C·√v`` for the Adam
    moments (:func:`adam_ratio_bound`; inf: unknown), which bounds Adam's step by
    ``lr·C·√(1−β2ᵗ)/(1−β1ᵗ)``; RMSprop's is ``lr/√(1−α)`` (its v already holds the gradient's
    square); without them ``|m|/eps``.  Loose, cheap (no pass over the parameters) and never
    below the true maxima."""
    lr, mom, b1, b2 = abs(float(hyper[0])), abs(float(hyper[1])), float(hyper[2]), float(hyper[3])
    eps, wd = float(hyper[4]), abs(float(hyper[5]))
    P, S1, S2, C = bounds[0], bounds[1], bounds[2], bounds[3]
    ge = G + wd * P                                  # the gradient with its L2 term
    inv_eps = 1.0 / eps if eps > 0 else math.inf
    s1, s2 = S1, S2
    if code == SGD:
        p = P + lr * ge
    elif code == MOMENTUM or code == NESTEROV:
        s1 = mom * S1 + ge
        p = P + lr * (ge + mom * s1 if code == NESTEROV else s1)
    elif code == ADAM or code == ADAMW or code == SK_ADAM:
        if code == ADAMW:
            P = P * abs(1.0 - float(hyper[0]) * float(hyper[5]))
            ge = G
        elif code == SK_ADAM:
            ge = G
        s1 = abs(b1) * S1 + abs(1.0 - b1) * ge
        s2 = abs(b2) * S2 + abs(1.0 - b2) * ge * ge
        lr_t = lr / abs(1.0 - b1 ** step)
        p = P + lr_t * min(s1 * inv_eps, C * math.sqrt(abs(1.0 - b2 ** step)))
    elif code == SK_SGD or code == SK_NESTEROV:
        s1 = mom * S1 + lr * G
        p = P + s1 + (mom * s1 + lr * G if code == SK_NESTEROV else 0.0)
    else:   # RMSPROP
        s1 = RMSPROP_ALPHA * S1 + (1.0 - RMSPROP_ALPHA) * ge * ge
        p = P + lr * min(ge * inv_eps, 1.0 / math.sqrt(1.0 - RMSPROP_ALPHA))
    return p, s1, s2


@njit(**JIT)
def max_abs(buf):
    """``max |buf|`` in float64 (NaN when buf holds one); 0 for an empty buf.

    On the bit patterns: clearing the sign bit gives |x|, and non-negative IEEE floats order
    as their bits read as unsigned integers do, NaN above inf; an integer maximum vectorises
    (a float one with NaN kept does not: 9.8 -> 1.1 ms over 6.3 M float32 parameters)."""
    u = float_bits(buf)
    # every bit below the sign bit (numba computes in 64 bits, cast back to u's width below;
    # the mask's zero high half lets LLVM keep float32's bits in 32-bit lanes)
    mask = (np.uint64(1) << np.uint64(u.itemsize * 8 - 1)) - np.uint64(1)
    m = np.uint64(0)
    for i in range(np.uint64(u.shape[0])):
        m = max(m, u[i] & mask)
    return float(bits_float(u.dtype.type(m)))


@njit(**INLINE_JIT)
def _copy(dst, d0, src, s0, n):
    """``dst[d0:d0 + n] = src[s0:s0 + n]`` (a loop: an array assignment compiles numba's
    shape-mismatch error path, ~1.5 s of a cold start)."""
    for i in range(n):
        dst[d0 + i] = src[s0 + i]


@njit(**INLINE_JIT)
def guarded_update(update_fn, code, params, grads, state1, state2, hyper, step, consts, flags,
                   bounds, G):
    """:func:`update` that leaves ``params`` and the state as they were when the updated
    parameters are not all finite (returns False then).  ``bounds`` (float64: upper bounds on
    max|p|, max|state1|, max|state2|, and C, see :func:`step_bound`) says whether the update
    can overflow at all (with ``G >= max|g|``): almost always it cannot, and the update runs
    alone; otherwise a copy of the parameters and the state is taken first (allocated for that
    step: only a fit close to overflowing gets there).  ``bounds`` is updated for the next
    step.  ``update_fn``: :func:`update`'s address (see native.py)."""
    limit = (FMAX32 if params.itemsize == 4 else FMAX64) * MARGIN
    p, s1, s2 = step_bound(code, hyper, step, bounds, G)
    if p < limit and s1 < limit and s2 < limit:     # NaN: not safe
        ok = update_at(update_fn, code, params, grads, state1, state2, hyper, step, consts, flags)
        bounds[0], bounds[1], bounds[2] = p, s1, s2
        return ok
    n, n1, n2 = params.shape[0], state1.shape[0], state2.shape[0]
    snap = np.empty(n + n1 + n2, params.dtype)
    _copy(snap, 0, params, 0, n)
    _copy(snap, n, state1, 0, n1)
    _copy(snap, n + n1, state2, 0, n2)
    ok = update_at(update_fn, code, params, grads, state1, state2, hyper, step, consts, flags)
    if not ok:
        _copy(params, 0, snap, 0, n)
        _copy(state1, 0, snap, n, n1)
        _copy(state2, 0, snap, n + n1, n2)
    bounds[0], bounds[1], bounds[2] = max_abs(params), max_abs(state1), max_abs(state2)
    return ok


def guard_bounds(code, hyper, params, state1, state2, out):
    """The exact bounds ``out`` (max|p|, max|state1|, max|state2|, C) that
    :func:`guarded_update` starts from: one pass over the buffers (the engine runs it at
    each epoch's start, so that parameters changed from outside are seen)."""
    out[0], out[1], out[2] = max_abs(params), max_abs(state1), max_abs(state2)
    out[3] = math.inf
    if code in (ADAM, ADAMW, SK_ADAM):
        C = adam_ratio_bound(float(hyper[2]), float(hyper[3]))
        if C < math.inf and adam_within(state1, state2, C):
            out[3] = C
