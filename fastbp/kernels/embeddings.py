"""Embedding layers: categorical input columns looked up in learned tables.

An embedding is a dense layer on a one-hot input without bias: ``onehot(code) · E`` is row
``code`` of the table ``E`` ``(n_levels, dim)``.  So the forward pass is a row copy and the
backward pass a scatter-add of the deltas into the rows the batch used.

``emb[e] = (X_COL, LEVELS, DIM, P_OFF, A0_COL)``: embedding ``e`` reads its integer codes (held
as floats, validated at the door: the kernels trust them) from column ``X_COL`` of ``X``; its
table lives at ``params[P_OFF : P_OFF + LEVELS·DIM]`` (row-major; every table comes before the
dense layers, so the tables' parameters are ``[0, layout[0, W_OFF])``) and its rows land in
columns ``A0_COL .. A0_COL + DIM`` of activation slot 0, after the ``A0_COL`` of ``emb[0]``
numeric columns that are copied from ``X`` as they are.  A network without embeddings has a
``(0, COLUMNS)`` table, and the gather is then the plain copy of ``X``'s rows.

Workspace slots (see structure.py): activation slot ``3L + 1`` holds each batch row's codes
(width ``k``: the backward pass, which has no ``X``, reads them there); delta slot 0 holds
``∂E/∂a_0`` of the embedded columns only (width ``Σ dim``), computed by ``backward_rows`` at
layer 0 as ``δ_1 · W_0[A0_COL(0):, :]ᵀ``.  :func:`embedding_grads` then scatters the whole
batch's deltas into the tables' gradient, serially and in batch order: every element is
accumulated by one thread in a fixed order, whatever the thread count or the row blocks.
"""
import numpy as np
from numba import njit

from .._config import INLINE_JIT, JIT
from .native import FN_EMBEDDING, Native
from .structure import N_IN
from .unowned import flat

X_COL, LEVELS, DIM, P_OFF, A0_COL = range(5)
COLUMNS = 5


@njit(**INLINE_JIT)
def codes_slot(layout):
    """The activation slot of the batch rows' codes."""
    return 3 * layout.shape[0] + 1


@njit(**INLINE_JIT)
def gather(X, rows, r0, r1, params, layout, emb, acts, aoff):
    """Slot 0's rows r0..r1: the numeric columns of ``X[rows[r]]``, then each embedding's table
    row; the codes into their slot."""
    n0 = X.shape[1]
    k = emb.shape[0]
    Xf = flat(X)
    un = np.uint64(n0 - k)          # the numeric columns: every column without embeddings
    uw = np.uint64(layout[0, N_IN])
    a0 = np.uint64(aoff[0])
    for r in range(r0, r1):   # flat copies: a row view per sample costs an atomic refcount pair
        src = np.uint64(rows[r] * n0)
        dst = a0 + np.uint64(r) * uw
        for j in range(un):
            acts[dst + j] = Xf[src + j]
    if k > 0:
        uk = np.uint64(k)
        c0 = np.uint64(aoff[codes_slot(layout)])
        for r in range(r0, r1):
            src = np.uint64(rows[r] * n0)
            dst = a0 + np.uint64(r) * uw
            for e in range(uk):
                v = Xf[src + np.uint64(emb[e, X_COL])]
                acts[c0 + np.uint64(r) * uk + e] = v
                d = np.uint64(emb[e, DIM])
                t = np.uint64(emb[e, P_OFF]) + np.uint64(np.int64(v)) * d
                o = dst + np.uint64(emb[e, A0_COL])
                for j in range(d):
                    acts[o + j] = params[t + j]


@njit(**INLINE_JIT)
def _table_row(layout, emb, acts, c0, r, e):
    """Where in the parameters batch row r's row of table e starts."""
    k = np.uint64(emb.shape[0])
    code = np.uint64(np.int64(acts[c0 + np.uint64(r) * k + np.uint64(e)]))
    return np.uint64(emb[e, P_OFF]) + code * np.uint64(emb[e, DIM])


@njit(**JIT)
def embedding_grads(B, scale, grads, layout, emb, acts, aoff, deltas, doff, gsq, norms):
    """The tables' gradient from the deltas of batch rows 0..B (delta slot 0) and their codes:
    ``scale·δ`` of each row added into its codes' table rows, serially, rows in batch order.
    ``norms``: their squared norm (:func:`embedding_sumsq`) added to ``gsq[0]`` (the tables
    count in the first dense layer's group).

    The tables' region of ``grads`` (``[0, layout[0, W_OFF])``) must be zero on entry, and then
    holds the gradient in the batch's rows only: every caller's is (a new or zeroed buffer, or
    ``train_epoch``'s, whose rows :func:`embedding_clear` zeroes after each step), so that a
    step costs nothing per table row it does not touch (a pass over a large table cost twice
    the scatter, measured)."""
    k = emb.shape[0]
    if k == 0:
        return
    sc = grads.dtype.type(scale)
    n_num = emb[0, A0_COL]
    uw = np.uint64(layout[0, N_IN] - n_num)
    c0 = np.uint64(aoff[codes_slot(layout)])
    d0 = np.uint64(doff[0])
    for r in range(np.uint64(B)):
        for e in range(k):
            t = _table_row(layout, emb, acts, c0, r, e)
            o = d0 + r * uw + np.uint64(emb[e, A0_COL] - n_num)
            for j in range(np.uint64(emb[e, DIM])):
                grads[t + j] += sc * deltas[o + j]
    if norms:
        gsq[0] += embedding_sumsq(B, grads, layout, emb, acts, aoff)


@njit(**JIT)
def embedding_sumsq(B, grads, layout, emb, acts, aoff):
    """The squared norm (float64) of the tables' gradient, which is zero outside the rows of
    batch rows 0..B: each such table row once, in batch order (a flag per level)."""
    c0 = np.uint64(aoff[codes_slot(layout)])
    s = 0.0
    for e in range(emb.shape[0]):
        seen = np.zeros(emb[e, LEVELS], np.bool_)
        base = np.uint64(emb[e, P_OFF])
        d = np.uint64(emb[e, DIM])
        for r in range(B):
            t = _table_row(layout, emb, acts, c0, r, e)
            code = (t - base) // d
            if not seen[code]:
                seen[code] = True
                for j in range(d):
                    s += float(grads[t + j]) * float(grads[t + j])
    return s


@njit(**JIT)
def embedding_clear(B, grads, layout, emb, acts, aoff):
    """Zero the tables' gradient rows of batch rows 0..B: all of the tables' region again
    (see :func:`embedding_grads`)."""
    c0 = np.uint64(aoff[codes_slot(layout)])
    zero = grads.dtype.type(0)
    for r in range(B):
        for e in range(emb.shape[0]):
            t = _table_row(layout, emb, acts, c0, r, e)
            for j in range(np.uint64(emb[e, DIM])):
                grads[t + j] = zero


GRADS, SUMSQ, CLEAR = 0, 1, 2


@njit(**JIT)
def embedding_pass(what, B, factor, grads, layout, emb, acts, aoff, deltas, doff, gsq, norms):
    """The tables' pass ``what`` over batch rows 0..B, called through the function table
    (native.py: compiled only for networks that have embeddings): GRADS
    (:func:`embedding_grads`, the δ scaled by ``factor``), SUMSQ (returns :func:`embedding_sumsq`) or CLEAR
    (:func:`embedding_clear`).  Returns the squared norm for SUMSQ, else 0."""
    if what == GRADS:
        embedding_grads(B, factor, grads, layout, emb, acts, aoff, deltas, doff, gsq, norms)
    elif what == SUMSQ:
        return embedding_sumsq(B, grads, layout, emb, acts, aoff)
    else:
        embedding_clear(B, grads, layout, emb, acts, aoff)
    return 0.0


EMBEDDING = Native(FN_EMBEDDING, embedding_pass, "d")
embedding_at = EMBEDDING.stub       # called indirectly (see native.py)
