"""What a hidden layer does beyond ``f(a·W + b)``: normalisation, dropout and skip connections.

A hidden layer ``l`` (0-based dense index, producing slot ``l + 1``) whose layout row has
``STRUCT`` set runs its product without the fused activation (``z`` into its ``h`` slot), then
:func:`post_forward`: normalisation of ``z`` (``x̂`` into its ``x`` slot, ``γ·x̂ + β``), the
activation (``h``, kept: the derivative is taken from it), inverted dropout and the skip
connections ``a_{l+1} += a_i`` into the activation slot.  :func:`post_backward` turns
``∂E/∂a_{l+1}`` into ``∂E/∂z`` in place (and writes ``∂E/∂γ``, ``∂E/∂β``).  Plain layers keep
the fused path and pay nothing.

Layout columns (``layout[l, c]``), shared with :mod:`fastbp.kernels.train`:
``N_IN, N_OUT, W_OFF, B_OFF`` (the dense layer), ``ACT`` (its activation code), ``NORM``
(``NO_NORM``, ``BATCH_NORM``, ``LAYER_NORM``), ``G_OFF`` (γ in the parameters, β right after;
the layer's parameters end at ``END``), ``S_OFF`` (batch norm: running mean, then running var, in
the ``stats`` buffer), ``STRUCT`` (1: the unfused path).

Workspace slots: activations ``0..L`` as before, then ``h`` slots ``L+1+l`` and ``x`` slots
``2L+1+l`` (width 0 for plain layers); deltas ``1..L`` as before, then the saved ``∂E/∂a`` of
skip targets at ``L+1+l``.  ``nst`` (float64) holds per layer, at ``l·stride``, batch norm's
mean and 1/σ per unit or layer norm's 1/σ per row.

Modes: ``EVAL`` (running statistics, no dropout), ``TRAIN`` (batch statistics, dropout, the
running statistics updated), ``GRAD`` (batch statistics, no dropout, nothing updated: what
``Network.gradients`` computes).

Dropout keeps unit ``u`` of layer ``l`` for data row ``row`` at optimizer step ``step`` when a
counter-based hash of ``(seed, step, row, l, u)`` (splitmix64's finaliser) is at least ``p``:
the masks depend on nothing else, so never on threads or row blocks.
"""
import math

import numpy as np
from numba import njit

from .._config import INLINE_JIT, JIT
from .activations import activate, scale_by_derivative

N_IN, N_OUT, W_OFF, B_OFF, ACT, NORM, G_OFF, S_OFF, STRUCT, END = range(10)
COLUMNS = 10
NO_NORM, BATCH_NORM, LAYER_NORM = 0, 1, 2
NORMS = {None: NO_NORM, "batch": BATCH_NORM, "layer": LAYER_NORM}
EVAL, TRAIN, GRAD = 0, 1, 2
EPS = 1e-5
MOMENTUM = 0.1


@njit(**INLINE_JIT)
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(**INLINE_JIT)
def keep_unit(seed, step, row, layer, unit, p):
    """True when dropout keeps the unit (see the module's docstring)."""
    g = np.uint64(0x9E3779B97F4A7C15)
    x = _mix(np.uint64(seed) + g)
    x = _mix(x ^ (np.uint64(step) * g))
    x = _mix(x ^ (np.uint64(row) * g))
    x = _mix(x ^ ((np.uint64(layer) << np.uint64(32)) | np.uint64(unit)))
    return float(x >> np.uint64(11)) * (1.0 / 9007199254740992.0) >= p


@njit(**JIT)
def dropout_keep(seed, step, rows, layer, n, p, out):
    """``out[r, u] = keep_unit(seed, step, rows[r], layer, u, p)`` (for tests and tools)."""
    for r in range(rows.shape[0]):
        for u in range(n):
            out[r, u] = keep_unit(seed, step, rows[r], layer, u, p)


@njit(**INLINE_JIT)
def _stride(nst, L):
    return nst.shape[0] // L


@njit(**JIT)
def post_forward(l, r0, r1, rows, params, stats, layout, drop, skips, acts, aoff, nst, mode,
                 seed, step):
    """Rows r0..r1 of structured hidden layer ``l``: its ``h`` slot holds ``z``; leaves
    ``x̂`` (normalised layers), ``h = f(γ·x̂ + β)`` and ``a`` (dropout, skips) in its slots."""
    L = layout.shape[0]
    n = layout[l, N_OUT]
    un = np.uint64(n)
    h0 = np.uint64(aoff[L + 1 + l])
    x0 = np.uint64(aoff[2 * L + 1 + l])
    a0 = np.uint64(aoff[l + 1])
    dt = acts.dtype.type
    norm = layout[l, NORM]
    base = np.uint64(l * _stride(nst, L))
    if norm != NO_NORM:
        g0 = np.uint64(layout[l, G_OFF])
        if norm == BATCH_NORM:
            s0 = np.uint64(layout[l, S_OFF])
            B = r1 - r0
            if mode == EVAL:
                for j in range(un):
                    nst[base + j] = float(stats[s0 + j])
                    nst[base + un + j] = 1.0 / math.sqrt(float(stats[s0 + un + j]) + EPS)
            else:
                for j in range(un):
                    nst[base + j] = 0.0
                    nst[base + un + j] = 0.0
                for r in range(r0, r1):
                    o = h0 + np.uint64(r) * un
                    for j in range(un):
                        nst[base + j] += float(acts[o + j])
                for j in range(un):
                    nst[base + j] /= B
                for r in range(r0, r1):
                    o = h0 + np.uint64(r) * un
                    for j in range(un):
                        d = float(acts[o + j]) - nst[base + j]
                        nst[base + un + j] += d * d
                for j in range(un):
                    var = nst[base + un + j] / B
                    nst[base + un + j] = 1.0 / math.sqrt(var + EPS)
                    if mode == TRAIN:      # torch: unbiased running variance, momentum 0.1
                        m = stats[s0 + j]
                        stats[s0 + j] = m + dt(MOMENTUM) * (dt(nst[base + j]) - m)
                        v = stats[s0 + un + j]
                        unb = var * B / (B - 1) if B > 1 else var
                        stats[s0 + un + j] = v + dt(MOMENTUM) * (dt(unb) - v)
            for r in range(r0, r1):
                o = np.uint64(r) * un
                for j in range(un):
                    xh = dt((float(acts[h0 + o + j]) - nst[base + j]) * nst[base + un + j])
                    acts[x0 + o + j] = xh
                    acts[h0 + o + j] = params[g0 + j] * xh + params[g0 + un + j]
        else:   # LAYER_NORM: over the units of each row
            for r in range(r0, r1):
                o = np.uint64(r) * un
                s = 0.0
                for j in range(un):
                    s += float(acts[h0 + o + j])
                mean = s / n
                s = 0.0
                for j in range(un):
                    d = float(acts[h0 + o + j]) - mean
                    s += d * d
                inv = 1.0 / math.sqrt(s / n + EPS)
                nst[base + np.uint64(r)] = inv
                for j in range(un):
                    xh = dt((float(acts[h0 + o + j]) - mean) * inv)
                    acts[x0 + o + j] = xh
                    acts[h0 + o + j] = params[g0 + j] * xh + params[g0 + un + j]
    lo = h0 + np.uint64(r0) * un
    activate(acts, lo, (r1 - r0) * n, layout[l, ACT])
    p = drop[l]
    if p > 0 and mode == TRAIN:
        up = dt(1.0 / (1.0 - p))
        zero = dt(0)
        for r in range(r0, r1):
            o = np.uint64(r) * un
            for j in range(un):
                keep = keep_unit(seed, step, rows[r], l, j, p)
                acts[a0 + o + j] = acts[h0 + o + j] * up if keep else zero
    else:
        for i in range(np.uint64(r0) * un, np.uint64(r1) * un):
            acts[a0 + i] = acts[h0 + i]
    for k in range(skips.shape[0]):
        if skips[k, 1] == l + 1:
            src = np.uint64(aoff[skips[k, 0]])
            for i in range(np.uint64(r0) * un, np.uint64(r1) * un):
                acts[a0 + i] += acts[src + i]


@njit(**JIT)
def post_backward(l, r0, r1, rows, scale, params, grads, layout, drop, skips, acts, aoff, deltas,
                  doff, nst, mode, seed, step):
    """Rows r0..r1 of structured hidden layer ``l``: its delta slot holds ``∂E/∂a`` from the
    layer above; adds the skip targets' saved ``∂E/∂a``, saves its own when it is a skip
    target, and leaves ``∂E/∂z`` there; ``∂E/∂γ``, ``∂E/∂β`` (times ``scale``) into ``grads``.
    Returns their squared norm (float64)."""
    L = layout.shape[0]
    n = layout[l, N_OUT]
    un = np.uint64(n)
    d0 = np.uint64(doff[l + 1])
    h0 = np.uint64(aoff[L + 1 + l])
    x0 = np.uint64(aoff[2 * L + 1 + l])
    lo = np.uint64(r0) * un
    hi = np.uint64(r1) * un
    dt = deltas.dtype.type
    target = False
    for k in range(skips.shape[0]):
        if skips[k, 0] == l + 1:        # a_{l+1} feeds a_j: ∂E/∂a_j flows back unchanged
            s = np.uint64(doff[L + skips[k, 1]])
            for i in range(lo, hi):
                deltas[d0 + i] += deltas[s + i]
        if skips[k, 1] == l + 1 and skips[k, 0] > 0:
            target = True
    if target:                          # kept for the sources (layers below)
        s = np.uint64(doff[L + 1 + l])
        for i in range(lo, hi):
            deltas[s + i] = deltas[d0 + i]
    p = drop[l]
    if p > 0 and mode == TRAIN:
        up = dt(1.0 / (1.0 - p))
        zero = dt(0)
        for r in range(r0, r1):
            o = np.uint64(r) * un
            for j in range(un):
                keep = keep_unit(seed, step, rows[r], l, j, p)
                deltas[d0 + o + j] = deltas[d0 + o + j] * up if keep else zero
    for r in range(r0, r1):
        o = np.uint64(r) * un
        scale_by_derivative(deltas, d0 + o, acts, h0 + o, n, layout[l, ACT])
    norm = layout[l, NORM]
    if norm == NO_NORM:
        return 0.0
    g0 = np.uint64(layout[l, G_OFF])
    base = np.uint64(l * _stride(nst, L))
    B = r1 - r0
    total = 0.0
    # ∂E/∂γ_j = Σ_r δ_rj·x̂_rj, ∂E/∂β_j = Σ_r δ_rj (δ: ∂E/∂y, y = γ·x̂ + β)
    for j in range(un):
        grads[g0 + j] = 0
        grads[g0 + un + j] = 0
    sc = dt(scale)
    if norm == BATCH_NORM:
        # column sums in float64 (nst's free half after the mean: reuse the x̂·δ sums there)
        for j in range(un):
            nst[base + np.uint64(2) * un + j] = 0.0
            nst[base + np.uint64(3) * un + j] = 0.0
        for r in range(r0, r1):
            o = np.uint64(r) * un
            for j in range(un):
                d = float(deltas[d0 + o + j])
                nst[base + np.uint64(2) * un + j] += d
                nst[base + np.uint64(3) * un + j] += d * float(acts[x0 + o + j])
        for j in range(un):
            sg = nst[base + np.uint64(2) * un + j]
            sgx = nst[base + np.uint64(3) * un + j]
            gb = dt(sg) * sc
            gg = dt(sgx) * sc
            grads[g0 + un + j] = gb
            grads[g0 + j] = gg
            total += float(gb) * float(gb) + float(gg) * float(gg)
        if mode == EVAL:
            return total
        for r in range(r0, r1):
            o = np.uint64(r) * un
            for j in range(un):
                k = float(params[g0 + j]) * nst[base + un + j]
                d = float(deltas[d0 + o + j])
                xh = float(acts[x0 + o + j])
                deltas[d0 + o + j] = dt(k * (d - nst[base + np.uint64(2) * un + j] / B
                                             - xh * nst[base + np.uint64(3) * un + j] / B))
        return total
    # LAYER_NORM
    for r in range(r0, r1):
        o = np.uint64(r) * un
        s1 = 0.0
        s2 = 0.0
        for j in range(un):
            d = deltas[d0 + o + j]
            xh = acts[x0 + o + j]
            grads[g0 + un + j] += d
            grads[g0 + j] += d * xh
            dx = float(d) * float(params[g0 + j])
            s1 += dx
            s2 += dx * float(xh)
        inv = nst[base + np.uint64(r)]
        m1 = s1 / n
        m2 = s2 / n
        for j in range(un):
            dx = float(deltas[d0 + o + j]) * float(params[g0 + j])
            deltas[d0 + o + j] = dt(inv * (dx - m1 - float(acts[x0 + o + j]) * m2))
    for j in range(un):
        grads[g0 + j] = grads[g0 + j] * sc
        grads[g0 + un + j] = grads[g0 + un + j] * sc
        total += float(grads[g0 + j]) ** 2 + float(grads[g0 + un + j]) ** 2
    return total
