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
