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
``2L+1+l`` (width 0 for plain layers), then the embeddings' codes at ``3L+1`` (embeddings.py;
width 0 without); deltas ``1..L`` as before, then the saved ``∂E/∂a`` of skip targets at
``L+1+l``; delta slot 0 holds δ of the embedded input columns (width 0 without).  ``nst``
(float64) holds per layer, at ``l·stride``, batch norm's mean and 1/σ per unit or layer norm's
1/σ per row.

Modes: ``EVAL`` (running statistics, no dropout), ``TRAIN`` (batch statistics, dropout, the
running statistics updated), ``GRAD`` (batch statistics, no dropout, nothing updated: what
``Network.gradients`` computes).

Dropout keeps unit ``u`` of layer ``l`` for data row ``row`` at optimizer step ``step`` when
the ``u``-th draw of a SplitMix64 stream whose state starts at a hash of ``(seed, step, row,
l)`` is at least ``p`` (53-bit uniforms): the masks depend on nothing else, so never on threads
or row blocks, and a row's draws are one vector loop (two multiplies per unit).
"""
import math

import numpy as np
from numba import njit, prange

from .._config import INLINE_JIT, JIT, PARALLEL_JIT
from .activations import activate, scale_by_derivative
from .native import FN_POST_BACKWARD, FN_POST_FORWARD, Native

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


GOLDEN = 0x9E3779B97F4A7C15


@njit(**INLINE_JIT)
def row_key(seed, step, row, layer):
    """The SplitMix64 state of one row's dropout draws in one layer at one step."""
    g = np.uint64(GOLDEN)
    x = _mix(np.uint64(seed) + g)
    x = _mix(x ^ (np.uint64(step) * g))
    x = _mix(x ^ (np.uint64(row) * g))
    return _mix(x ^ (np.uint64(layer) * g))


@njit(**INLINE_JIT)
def threshold(p):
    """Draws (53-bit) at or above this keep their unit: probability 1 − p."""
    return np.uint64(p * 9007199254740992.0)


@njit(**INLINE_JIT)
def keep_unit(key, unit, thr):
    """Whether draw ``unit`` of the stream ``key`` keeps its unit."""
    return (_mix(key + (np.uint64(unit) + np.uint64(1)) * np.uint64(GOLDEN))
            >> np.uint64(11)) >= thr


@njit(**INLINE_JIT)
def _drop(dst, d0, src, s0, r0, r1, un, rows, l, p, seed, step):
    """``dst = src · keep / (1 − p)`` for rows r0..r1 of a layer of ``un`` units (the same
    masks in the forward pass, on ``h``, and in the backward pass, on ``∂E/∂a``)."""
    dt = dst.dtype.type
    up = dt(1.0 / (1.0 - p))
    zero = dt(0)
    thr = threshold(p)
    for r in range(r0, r1):
        o = np.uint64(r) * un
        key = row_key(seed, step, rows[r], l)
        for j in range(un):
            dst[d0 + o + j] = src[s0 + o + j] * up if keep_unit(key, j, thr) else zero


@njit(**JIT)
def dropout_keep(seed, step, rows, layer, n, p, out):
    """``out[r, u]``: dropout keeps unit u of layer ``layer`` for data row ``rows[r]`` at
    ``step`` (for tests and tools)."""
    thr = threshold(p)
    for r in range(rows.shape[0]):
        key = row_key(seed, step, rows[r], layer)
        for u in range(n):
            out[r, u] = keep_unit(key, u, thr)


ROWS_PER_TASK = 16      # row chunks of the row-wise passes
UNITS_PER_TASK = 64     # column chunks of batch norm's statistics and γ/β's sums


@njit(**INLINE_JIT)
def _stride(nst, L):
    return nst.shape[0] // L


# -- forward ------------------------------------------------------------------------------------
@njit(**JIT)
def _bn_sums(l, j0, j1, r0, r1, layout, acts, aoff, nst, phase, B):
    """Column sums of batch norm's statistics, units j0..j1 over rows r0..r1 (``z`` in the h
    slot), float64 in row order.  Phase 0: ``Σ z`` into the mean's place in nst; phase 1: the
    mean = that sum / ``B`` first, then ``Σ (z − mean)²`` into the 1/σ's place.  Between the
    phases, and after the second, the engine's MPI path sums the columns over the ranks (``B``:
    the global batch)."""
    L = layout.shape[0]
    un = np.uint64(layout[l, N_OUT])
    h0 = np.uint64(aoff[L + 1 + l])
    base = np.uint64(l * _stride(nst, L))
    j0, j1 = np.uint64(j0), np.uint64(j1)
    if phase == 0:
        for j in range(j0, j1):
            nst[base + j] = 0.0
        for r in range(r0, r1):
            o = h0 + np.uint64(r) * un
            for j in range(j0, j1):
                nst[base + j] += float(acts[o + j])
        return
    for j in range(j0, j1):
        nst[base + j] /= B
        nst[base + un + j] = 0.0
    for r in range(r0, r1):
        o = h0 + np.uint64(r) * un
        for j in range(j0, j1):
            d = float(acts[o + j]) - nst[base + j]
            nst[base + un + j] += d * d


@njit(**JIT)
def _bn_finish(l, j0, j1, B, stats, layout, nst, mode):
    """Units j0..j1: the summed squares in nst -> 1/σ (biased variance over ``B`` rows);
    TRAIN: the running statistics updated (torch: unbiased variance, momentum 0.1)."""
    L = layout.shape[0]
    un = np.uint64(layout[l, N_OUT])
    base = np.uint64(l * _stride(nst, L))
    s0 = np.uint64(layout[l, S_OFF])
    dt = stats.dtype.type
    for j in range(np.uint64(j0), np.uint64(j1)):
        var = nst[base + un + j] / B
        nst[base + un + j] = 1.0 / math.sqrt(var + EPS)
        if mode == TRAIN:
            m = stats[s0 + j]
            stats[s0 + j] = m + dt(MOMENTUM) * (dt(nst[base + j]) - m)
            v = stats[s0 + un + j]
            unb = var * B / (B - 1) if B > 1 else var
            stats[s0 + un + j] = v + dt(MOMENTUM) * (dt(unb) - v)


@njit(**JIT)
def _bn_stats(l, j0, j1, r0, r1, stats, layout, acts, aoff, nst, mode):
    """Batch norm's mean and 1/σ of units j0..j1 over rows r0..r1 into nst (EVAL: from the
    running statistics); TRAIN: the running statistics updated."""
    L = layout.shape[0]
    un = np.uint64(layout[l, N_OUT])
    base = np.uint64(l * _stride(nst, L))
    s0 = np.uint64(layout[l, S_OFF])
    if mode == EVAL:
        for j in range(np.uint64(j0), np.uint64(j1)):
            nst[base + j] = float(stats[s0 + j])
            nst[base + un + j] = 1.0 / math.sqrt(float(stats[s0 + un + j]) + EPS)
        return
    B = r1 - r0
    _bn_sums(l, j0, j1, r0, r1, layout, acts, aoff, nst, np.int64(0), B)
    _bn_sums(l, j0, j1, r0, r1, layout, acts, aoff, nst, np.int64(1), B)
    _bn_finish(l, j0, j1, B, stats, layout, nst, mode)


@njit(**PARALLEL_JIT)
def bn_partial(l, r0, r1, layout, acts, aoff, nst, phase, B):
    """:func:`_bn_sums` of every unit of layer l, chunks of units on threads (the MPI path's
    local statistics)."""
    n = layout[l, N_OUT]
    for t in prange((n + UNITS_PER_TASK - 1) // UNITS_PER_TASK):
        _bn_sums(l, t * UNITS_PER_TASK, min(n, (t + 1) * UNITS_PER_TASK), r0, r1, layout, acts,
                 aoff, nst, phase, B)


@njit(**JIT)
def bn_finish(l, B, stats, layout, nst, mode):
    """:func:`_bn_finish` of every unit of layer l (the MPI path, after the sums)."""
    _bn_finish(l, np.int64(0), layout[l, N_OUT], B, stats, layout, nst, mode)


@njit(**JIT)
def _forward_rows(l, r0, r1, rows, params, layout, drop, skips, acts, aoff, nst, mode, seed,
                  step):
    """Rows r0..r1 of structured layer l, each on its own: normalise (batch norm: with the
    statistics in nst), ``γ·x̂ + β``, the activation (``h``), dropout and skips (``a``)."""
    L = layout.shape[0]
    n = layout[l, N_OUT]
    un = np.uint64(n)
    h0 = np.uint64(aoff[L + 1 + l])
    x0 = np.uint64(aoff[2 * L + 1 + l])
    a0 = np.uint64(aoff[l + 1])
    dt = acts.dtype.type
    norm = layout[l, NORM]
    base = np.uint64(l * _stride(nst, L))
    g0 = np.uint64(layout[l, G_OFF])
    if norm == BATCH_NORM:
        for r in range(r0, r1):
            o = np.uint64(r) * un
            for j in range(un):
                xh = dt((float(acts[h0 + o + j]) - nst[base + j]) * nst[base + un + j])
                acts[x0 + o + j] = xh
                acts[h0 + o + j] = params[g0 + j] * xh + params[g0 + un + j]
    elif norm == LAYER_NORM:      # over the units of each row
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
            m, iv = dt(mean), dt(inv)
            for j in range(un):
                xh = (acts[h0 + o + j] - m) * iv
                acts[x0 + o + j] = xh
                acts[h0 + o + j] = params[g0 + j] * xh + params[g0 + un + j]
    lo = np.uint64(r0) * un
    hi = np.uint64(r1) * un
    activate(acts, h0 + lo, (r1 - r0) * n, layout[l, ACT])
    p = drop[l]
    if p > 0 and mode == TRAIN:
        _drop(acts, a0, acts, h0, r0, r1, un, rows, l, p, seed, step)
    else:
        for i in range(lo, hi):
            acts[a0 + i] = acts[h0 + i]
    for k in range(skips.shape[0]):
        if skips[k, 1] == l + 1:
            src = np.uint64(aoff[skips[k, 0]])
            for i in range(lo, hi):
                acts[a0 + i] += acts[src + i]


@njit(**PARALLEL_JIT)
def post_forward(l, r0, r1, rows, params, stats, layout, drop, skips, acts, aoff, nst, mode,
                 seed, step, par, given):
    """Rows r0..r1 of structured hidden layer ``l``: its ``h`` slot holds ``z``; leaves
    ``x̂`` (normalised layers), ``h = f(γ·x̂ + β)`` and ``a`` (dropout, skips) in its slots.
    Chunks of units (batch norm's statistics, unless ``given``: already in nst), then of rows,
    on threads when ``par``."""
    n = layout[l, N_OUT]
    if layout[l, NORM] == BATCH_NORM and not given:
        nt = (n + UNITS_PER_TASK - 1) // UNITS_PER_TASK
        if par:
            for t in prange(nt):
                _bn_stats(l, t * UNITS_PER_TASK, min(n, (t + 1) * UNITS_PER_TASK), r0, r1,
                          stats, layout, acts, aoff, nst, mode)
        else:
            _bn_stats(l, np.int64(0), n, r0, r1, stats, layout, acts, aoff, nst, mode)
    nt = (r1 - r0 + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    if par:
        for t in prange(nt):
            _forward_rows(l, r0 + t * ROWS_PER_TASK, min(r1, r0 + (t + 1) * ROWS_PER_TASK), rows,
                          params, layout, drop, skips, acts, aoff, nst, mode, seed, step)
    else:
        _forward_rows(l, r0, r1, rows, params, layout, drop, skips, acts, aoff, nst, mode, seed,
                      step)


# called indirectly (see native.py): compiled once, and only for networks that have such layers
POST_FORWARD = Native(FN_POST_FORWARD, post_forward, "none")
post_forward_at = POST_FORWARD.stub


# -- backward -----------------------------------------------------------------------------------
@njit(**JIT)
def _backward_rows(l, r0, r1, rows, layout, drop, skips, acts, aoff, deltas, doff, mode, seed,
                   step):
    """Rows r0..r1: the skips' ∂E/∂a added (and saved when the layer is a skip target),
    dropout's mask and the activation's derivative: ∂E/∂y (y = γ·x̂ + β, or z)."""
    L = layout.shape[0]
    n = layout[l, N_OUT]
    un = np.uint64(n)
    d0 = np.uint64(doff[l + 1])
    h0 = np.uint64(aoff[L + 1 + l])
    lo = np.uint64(r0) * un
    hi = np.uint64(r1) * un
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
        _drop(deltas, d0, deltas, d0, r0, r1, un, rows, l, p, seed, step)
    for r in range(r0, r1):
        o = np.uint64(r) * un
        scale_by_derivative(deltas, d0 + o, acts, h0 + o, n, layout[l, ACT])


@njit(**JIT)
def _norm_sums(l, j0, j1, r0, r1, layout, acts, aoff, deltas, doff, nst):
    """Σ_r δ and Σ_r δ·x̂ of units j0..j1 (float64, in row order) into nst (batch norm: after
    its mean and 1/σ; layer norm: its own stretch after the rows' 1/σ)."""
    L = layout.shape[0]
    un = np.uint64(layout[l, N_OUT])
    d0 = np.uint64(doff[l + 1])
    x0 = np.uint64(aoff[2 * L + 1 + l])
    s1, s2 = _sums_at(l, layout, nst)
    j0, j1 = np.uint64(j0), np.uint64(j1)
    for j in range(j0, j1):
        nst[s1 + j] = 0.0
        nst[s2 + j] = 0.0
    for r in range(r0, r1):
        o = np.uint64(r) * un
        for j in range(j0, j1):
            d = float(deltas[d0 + o + j])
            nst[s1 + j] += d
            nst[s2 + j] += d * float(acts[x0 + o + j])


@njit(**INLINE_JIT)
def _sums_at(l, layout, nst):
    """Where in nst layer l's column sums Σδ and Σδ·x̂ live."""
    L = layout.shape[0]
    un = np.uint64(layout[l, N_OUT])
    stride = np.uint64(_stride(nst, L))
    base = np.uint64(l) * stride
    return base + stride - np.uint64(2) * un, base + stride - un


@njit(**JIT)
def _norm_rows(l, r0, r1, params, layout, acts, aoff, deltas, doff, nst):
    """Rows r0..r1: ∂E/∂y -> ∂E/∂z through the normalisation."""
    L = layout.shape[0]
    n = layout[l, N_OUT]
    un = np.uint64(n)
    d0 = np.uint64(doff[l + 1])
    x0 = np.uint64(aoff[2 * L + 1 + l])
    g0 = np.uint64(layout[l, G_OFF])
    base = np.uint64(l * _stride(nst, L))
    dt = deltas.dtype.type
    if layout[l, NORM] == BATCH_NORM:
        s1, s2 = _sums_at(l, layout, nst)
        B = nst[base + np.uint64(2) * un]   # the batch size, put there by post_backward
        for r in range(r0, r1):
            o = np.uint64(r) * un
            for j in range(un):
                k = float(params[g0 + j]) * nst[base + un + j]
                deltas[d0 + o + j] = dt(k * (float(deltas[d0 + o + j]) - nst[s1 + j] / B
                                             - float(acts[x0 + o + j]) * nst[s2 + j] / B))
        return
    for r in range(r0, r1):     # LAYER_NORM: over the units of the row
        o = np.uint64(r) * un
        t1 = 0.0
        t2 = 0.0
        for j in range(un):
            dx = float(deltas[d0 + o + j]) * float(params[g0 + j])
            t1 += dx
            t2 += dx * float(acts[x0 + o + j])
        inv = nst[base + np.uint64(r)]
        m1 = t1 / n
        m2 = t2 / n
        for j in range(un):
            dx = float(deltas[d0 + o + j]) * float(params[g0 + j])
            deltas[d0 + o + j] = dt(inv * (dx - m1 - float(acts[x0 + o + j]) * m2))


WHOLE, SUMS, ROWS = 0, 1, 2     # post_backward's stages


@njit(**PARALLEL_JIT)
def post_backward(l, r0, r1, rows, scale, params, grads, layout, drop, skips, acts, aoff, deltas,
                  doff, nst, mode, seed, step, par, stage):
    """Rows r0..r1 of structured hidden layer ``l``: its delta slot holds ``∂E/∂a`` from the
    layer above; adds the skip targets' saved ``∂E/∂a``, saves its own when it is a skip
    target, and leaves ``∂E/∂z`` there; ``∂E/∂γ``, ``∂E/∂β`` (times ``scale``) into ``grads``.
    Returns their squared norm (float64).  Chunks of rows and of units, on threads when
    ``par``; every sum in a fixed order.

    ``stage``: WHOLE, or, for callers whose batch norm sums over more rows than r0..r1 (the
    row-block step, the engine's MPI path), SUMS (up to ∂E/∂y in the delta slot, the column
    sums Σδ, Σδ·x̂ in nst and ∂E/∂γ, ∂E/∂β from them) and then ROWS (∂E/∂y -> ∂E/∂z with the
    column sums and the batch size the caller put in nst)."""
    n = layout[l, N_OUT]
    nr = (r1 - r0 + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    total = 0.0
    if stage != ROWS:
        if par:
            for t in prange(nr):
                _backward_rows(l, r0 + t * ROWS_PER_TASK, min(r1, r0 + (t + 1) * ROWS_PER_TASK),
                               rows, layout, drop, skips, acts, aoff, deltas, doff, mode, seed,
                               step)
        else:
            _backward_rows(l, r0, r1, rows, layout, drop, skips, acts, aoff, deltas, doff, mode,
                           seed, step)
        if layout[l, NORM] == NO_NORM:
            return 0.0
        nu = (n + UNITS_PER_TASK - 1) // UNITS_PER_TASK
        if par:
            for t in prange(nu):
                _norm_sums(l, t * UNITS_PER_TASK, min(n, (t + 1) * UNITS_PER_TASK), r0, r1,
                           layout, acts, aoff, deltas, doff, nst)
        else:
            _norm_sums(l, np.int64(0), n, r0, r1, layout, acts, aoff, deltas, doff, nst)
        # ∂E/∂γ_j = Σ_r δ_rj·x̂_rj, ∂E/∂β_j = Σ_r δ_rj (δ: ∂E/∂y)
        g0 = layout[l, G_OFF]
        s1, s2 = _sums_at(l, layout, nst)
        dt = grads.dtype.type
        sc = dt(scale)
        for j in range(n):
            gb = dt(nst[s1 + np.uint64(j)]) * sc
            gg = dt(nst[s2 + np.uint64(j)]) * sc
            grads[g0 + n + j] = gb
            grads[g0 + j] = gg
            total += float(gb) * float(gb) + float(gg) * float(gg)
        if stage == SUMS:
            return total
        if layout[l, NORM] == BATCH_NORM:
            L = layout.shape[0]
            nst[np.uint64(l * _stride(nst, L)) + np.uint64(2 * n)] = float(r1 - r0)
    elif layout[l, NORM] == NO_NORM:
        return 0.0
    if par:
        for t in prange(nr):
            _norm_rows(l, r0 + t * ROWS_PER_TASK, min(r1, r0 + (t + 1) * ROWS_PER_TASK), params,
                       layout, acts, aoff, deltas, doff, nst)
    else:
        _norm_rows(l, r0, r1, params, layout, acts, aoff, deltas, doff, nst)
    return total


POST_BACKWARD = Native(FN_POST_BACKWARD, post_backward, "d")
post_backward_at = POST_BACKWARD.stub
