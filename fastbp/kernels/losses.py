"""Output deltas ``δ_L = ∂E/∂z_L`` and per-sample losses, from the output layer's ``z``.

Losses are computed from ``z`` (the logits), never from ``log(a)``: cross-entropy through
log-sum-exp, binary cross-entropy through a stable softplus, so no ``log(0)`` can occur.

* squared error ``½‖a − t‖²``: ``δ = f'(z)(a − t)`` (softmax: its Jacobian times ``a − t``);
* cross-entropy ``−Σ t log softmax(z)``: ``δ = softmax(z)·Σt − t`` (``= a − t`` for one-hot t);
* binary cross-entropy ``Σ softplus(z) − t z``: ``δ = σ(z) − t``;
* Poisson deviance ``Σ t log t − t z − t + e^z`` (half the deviance of rate ``e^z``, as
  scikit-learn's MLPRegressor computes it): ``δ = e^z − t``.

Cross-entropy takes softmax or identity (logits) outputs, binary cross-entropy sigmoid or
identity, Poisson exp; the façade refuses the other pairs.  Sample weights ``w`` scale a row's
loss and δ.
"""
import math

import numpy as np
from numba import njit, prange

from .._config import JIT, PARALLEL_JIT
from .activations import EXP, SIGMOID, SOFTMAX, activate, sigmoid
from .native import FN_OUTPUT_BATCH, FN_OUTPUT_ROWS, Native
from .unowned import flat
from .vexp import vexp

SQUARED_ERROR, CROSS_ENTROPY, BINARY_CROSS_ENTROPY, POISSON = 0, 1, 2, 3
LOSSES = {"squared_error": SQUARED_ERROR, "cross_entropy": CROSS_ENTROPY,
          "binary_cross_entropy": BINARY_CROSS_ENTROPY, "poisson": POISSON}
NAMES = {v: k for k, v in LOSSES.items()}
PAR_MIN = 1 << 14   # output elements below which the rows run serially


@njit(**JIT)
def output_row(Z, D, zo, T, to, n, out_code, loss_code):
    """Loss of one sample whose ``n`` outputs ``z`` are ``Z[zo:zo+n]`` (flat buffers, like δ in
    ``D`` at the same offset) and targets ``T[to:to+n]``: ``δ`` into D, ``f(z)`` into Z.  Every
    loss but cross-entropy (see _cross_entropy_rows)."""
    one = Z.dtype.type(1)
    zero = Z.dtype.type(0)
    half = Z.dtype.type(0.5)
    zo = np.uint64(zo)
    to = np.uint64(to)
    un = np.uint64(n)
    loss = zero
    if loss_code == SQUARED_ERROR:
        activate(Z, zo, n, out_code)
        dot = zero
        for j in range(un):
            a = Z[zo + j]
            g = a - T[to + j]
            loss += g * g
            D[zo + j] = g
            dot += a * g
        loss = loss * half
        if out_code == SIGMOID:
            for j in range(un):
                a = Z[zo + j]
                D[zo + j] = D[zo + j] * (a * (one - a))
        elif out_code == SOFTMAX:
            for j in range(un):
                D[zo + j] = Z[zo + j] * (D[zo + j] - dot)
    elif loss_code == POISSON:
        for j in range(un):
            x = Z[zo + j]
            t = T[to + j]
            e = math.exp(x)
            loss += (t * math.log(t) if t > 0 else zero) - t * x - t + e
            D[zo + j] = e - t
            if out_code == EXP:
                Z[zo + j] = e
    else:  # BINARY_CROSS_ENTROPY
        for j in range(un):
            x = Z[zo + j]
            t = T[to + j]
            softplus = (x if x > 0 else zero) + math.log1p(math.exp(-abs(x)))
            loss += softplus - t * x
            p = sigmoid(x, one)
            D[zo + j] = p - t
            if out_code == SIGMOID:
                Z[zo + j] = p
    return loss


@njit(**JIT)
def _cross_entropy_rows(Z, D, T, Yi, rows, m, out_code, rowloss, lo, hi):
    """Cross-entropy of rows lo..hi (flat Z and D, ``m`` outputs per row): ``δ`` into D,
    ``f(z)`` into Z, losses into ``rowloss``; targets are the class labels ``Yi[rows[r]]`` when
    Yi is not empty, else rows of T.  In three passes, so that the exponentials are one flat
    vector loop over the block (a row of 10 classes is too short for vectors to pay, and a
    libm call per element cost more than the layer's product): the row maxima and the shifted
    logits ``z − max`` (in D), their exponentials, then per row ``lse = max + log Σe``,
    softmax, the loss and ``δ = softmax·Σt − t``."""
    one = Z.dtype.type(1)
    zero = Z.dtype.type(0)
    um = np.uint64(m)
    labels = Yi.shape[0] > 0
    for r in range(lo, hi):
        zo = np.uint64(r * m)
        mx = Z[zo]
        for j in range(um):
            if Z[zo + j] > mx:
                mx = Z[zo + j]
        for j in range(um):
            D[zo + j] = Z[zo + j] - mx
        rowloss[r] = mx                 # scratch until the third pass
    for i in range(np.uint64(lo * m), np.uint64(hi * m)):
        D[i] = vexp(D[i])
    for r in range(lo, hi):
        zo = np.uint64(r * m)
        s = zero
        for j in range(um):
            s += D[zo + j]
        lse = rowloss[r] + math.log(s)
        inv = one / s
        for j in range(um):
            D[zo + j] = D[zo + j] * inv                 # softmax(z)
        if labels:
            label = np.uint64(Yi[rows[r]])
            loss = lse - Z[zo + label]
        else:
            to = np.uint64(rows[r] * m)
            loss = zero
            tsum = zero
            for j in range(um):
                t = T[to + j]
                loss += t * (lse - Z[zo + j])
                tsum += t
        if out_code == SOFTMAX:
            for j in range(um):
                Z[zo + j] = D[zo + j]
        if labels:
            D[zo + label] -= one
        else:
            for j in range(um):
                D[zo + j] = D[zo + j] * tsum - T[to + j]
        rowloss[r] = loss


@njit(**JIT)
def output_rows(Zf, Df, T, Yi, sw, rows, m, out_code, loss_code, rowloss, lo, hi):
    """Rows lo..hi of :func:`output_batch` (flat ``Zf``, ``Df`` and targets ``T``), serially."""
    if loss_code == CROSS_ENTROPY:
        _cross_entropy_rows(Zf, Df, T, Yi, rows, m, out_code, rowloss, lo, hi)
    else:
        for r in range(lo, hi):
            rowloss[r] = output_row(Zf, Df, r * m, T, rows[r] * m, m, out_code, loss_code)
    if sw.shape[0] > 0:
        for r in range(lo, hi):
            src = rows[r]
            w = sw[src]
            rowloss[r] = rowloss[r] * w
            base = np.uint64(r * m)
            for j in range(np.uint64(m)):
                Df[base + j] = Df[base + j] * w


# called indirectly (see native.py)
OUTPUT_ROWS = Native(FN_OUTPUT_ROWS, output_rows, "none")
output_rows_at = OUTPUT_ROWS.stub


@njit(**PARALLEL_JIT)
def output_batch(rows_fn, Z, D, Yf, Yi, sw, rows, out_code, loss_code, rowloss):
    """Losses and deltas of the batch whose row ``r`` holds data row ``rows[r]``; returns the sum
    of the per-sample losses (float64, added in row order).  Exactly one of ``Yi`` (class labels)
    and ``Yf`` (target rows) is non-empty; when ``Yi`` is used, ``Yf`` holds one dummy row.
    ``sw`` (empty: none) holds per-sample weights that scale each row's loss and δ.
    ``rows_fn``: :func:`output_rows`' address (see native.py)."""
    B = rows.shape[0]
    m = Z.shape[1]
    Zf = flat(Z)
    Df = flat(D)
    T = flat(Yf)
    if B * m < PAR_MIN:
        output_rows_at(rows_fn, Zf, Df, T, Yi, sw, rows, m, out_code, loss_code, rowloss,
                       np.int64(0), B)
    else:
        for t in prange((B + 15) // 16):
            output_rows_at(rows_fn, Zf, Df, T, Yi, sw, rows, m, out_code, loss_code, rowloss,
                           t * 16, min(B, t * 16 + 16))
    total = 0.0
    for r in range(B):
        total += float(rowloss[r])
    return total


OUTPUT_BATCH = Native(FN_OUTPUT_BATCH, output_batch, "d")
output_batch_at = OUTPUT_BATCH.stub


@njit(**JIT)
def count_correct(Z, Yf, Yi, rows, out_code, loss_code):
    """Correct predictions among the batch rows ``r`` (data row ``rows[r]``) from the outputs
    ``Z`` (``(B, m)``: ``f(z)``, or ``z`` for identity outputs); float64.

    Cross-entropy: the row's largest output (the first, on ties) is its class label (``Yi``),
    or the largest entry of its target row.  Binary cross-entropy: each output's prediction
    (``f(z) > ½`` for sigmoid, ``z > 0`` for logits) equals its target ``t > ½``; a row counts
    the fraction of its outputs that do.  Other losses: 0."""
    B, m = Z.shape[0], Z.shape[1]
    Zf = flat(Z)
    T = flat(Yf)
    um = np.uint64(m)
    total = 0.0
    if loss_code == CROSS_ENTROPY:
        labels = Yi.shape[0] > 0
        for r in range(B):
            zo = np.uint64(r * m)
            best = np.uint64(0)
            for j in range(um):
                if Zf[zo + j] > Zf[zo + best]:
                    best = j
            if labels:
                target = np.uint64(Yi[rows[r]])
            else:
                to = np.uint64(rows[r] * m)
                target = np.uint64(0)
                for j in range(um):
                    if T[to + j] > T[to + target]:
                        target = j
            if best == target:
                total += 1.0
    elif loss_code == BINARY_CROSS_ENTROPY:
        cut = Z.dtype.type(0.5) if out_code == SIGMOID else Z.dtype.type(0)
        half = Z.dtype.type(0.5)
        for r in range(B):
            zo = np.uint64(r * m)
            to = np.uint64(rows[r] * m)
            hits = 0
            for j in range(um):
                if (Zf[zo + j] > cut) == (T[to + j] > half):
                    hits += 1
            total += hits / m
    return total
