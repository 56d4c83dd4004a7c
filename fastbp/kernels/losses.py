"""Output deltas ``δ_L = ∂E/∂z_L`` and per-sample losses, from the output layer's ``z``.

Losses are computed from ``z`` (the logits), never from ``log(a)``: cross-entropy through
log-sum-exp, binary cross-entropy through a stable softplus, so no ``log(0)`` can occur.

* squared error ``½‖a − t‖²``: ``δ = f'(z)(a − t)`` (softmax: its Jacobian times ``a − t``);
* cross-entropy ``−Σ t log softmax(z)``: ``δ = softmax(z)·Σt − t`` (``= a − t`` for one-hot t);
* binary cross-entropy ``Σ softplus(z) − t z``: ``δ = σ(z) − t``.

Cross-entropy takes softmax or identity (logits) outputs, binary cross-entropy sigmoid or
identity; the façade refuses the other pairs.
"""
import math

from numba import njit, prange

from .._config import JIT, PARALLEL_JIT
from .activations import IDENTITY, SIGMOID, SOFTMAX, activate_row, sigmoid

SQUARED_ERROR, CROSS_ENTROPY, BINARY_CROSS_ENTROPY = 0, 1, 2
LOSSES = {"squared_error": SQUARED_ERROR, "cross_entropy": CROSS_ENTROPY,
          "binary_cross_entropy": BINARY_CROSS_ENTROPY}
NAMES = {v: k for k, v in LOSSES.items()}
PAR_MIN = 1 << 14   # output elements below which the rows run serially


@njit(**JIT)
def output_row(z, d, t, label, out_code, loss_code):
    """Loss of one sample; ``d <- δ``, ``z <- f(z)``.  ``label >= 0`` means a class index
    (cross-entropy) and ``t`` is then ignored."""
    n = z.shape[0]
    one = z.dtype.type(1)
    zero = z.dtype.type(0)
    half = z.dtype.type(0.5)
    loss = zero
    if loss_code == SQUARED_ERROR:
        activate_row(z, out_code)
        dot = zero
        for j in range(n):
            g = z[j] - t[j]
            loss += g * g
            d[j] = g
            dot += z[j] * g
        loss = loss * half
        if out_code == SIGMOID:
            for j in range(n):
                d[j] = d[j] * (z[j] * (one - z[j]))
        elif out_code == SOFTMAX:
            for j in range(n):
                d[j] = z[j] * (d[j] - dot)
    elif loss_code == CROSS_ENTROPY:
        m = z[0]
        for j in range(1, n):
            if z[j] > m:
                m = z[j]
        s = zero
        for j in range(n):
            d[j] = math.exp(z[j] - m)
            s += d[j]
        lse = m + math.log(s)
        inv = one / s
        for j in range(n):
            d[j] = d[j] * inv                       # softmax(z)
        if label >= 0:
            loss = lse - z[label]
        else:
            tsum = zero
            for j in range(n):
                loss += t[j] * (lse - z[j])
                tsum += t[j]
        if out_code == SOFTMAX:
            for j in range(n):
                z[j] = d[j]
        if label >= 0:
            d[label] -= one
        else:
            for j in range(n):
                d[j] = d[j] * tsum - t[j]
    else:  # BINARY_CROSS_ENTROPY
        for j in range(n):
            x = z[j]
            softplus = (x if x > 0 else zero) + math.log1p(math.exp(-abs(x)))
            loss += softplus - t[j] * x
            p = sigmoid(x, one)
            d[j] = p - t[j]
            if out_code == SIGMOID:
                z[j] = p
    return loss


@njit(**JIT)
def _output_rows(Z, D, Yf, Yi, rows, out_code, loss_code, rowloss, lo, hi):
    labels = Yi.shape[0] > 0
    for r in range(lo, hi):
        src = rows[r]
        if labels:
            rowloss[r] = output_row(Z[r], D[r], Yf[0], Yi[src], out_code, loss_code)
        else:
            rowloss[r] = output_row(Z[r], D[r], Yf[src], -1, out_code, loss_code)


@njit(**PARALLEL_JIT)
def output_batch(Z, D, Yf, Yi, rows, out_code, loss_code, rowloss):
    """Losses and deltas of the batch whose row ``r`` holds data row ``rows[r]``; returns the sum
    of the per-sample losses (float64, added in row order).  Exactly one of ``Yi`` (class labels)
    and ``Yf`` (target rows) is non-empty; when ``Yi`` is used, ``Yf`` holds one dummy row."""
    B = rows.shape[0]
    if B * Z.shape[1] < PAR_MIN:
        _output_rows(Z, D, Yf, Yi, rows, out_code, loss_code, rowloss, 0, B)
    else:
        for t in prange((B + 15) // 16):
            _output_rows(Z, D, Yf, Yi, rows, out_code, loss_code, rowloss, t * 16, min(B, t * 16 + 16))
    total = 0.0
    for r in range(B):
        total += float(rowloss[r])
    return total
