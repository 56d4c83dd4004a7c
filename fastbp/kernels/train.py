"""Whole-network passes for any depth, through the flat parameter buffer and an offsets table.

``layout[l] = (n_in, n_out, w_off, b_off)``: layer ``l``'s ``W`` is
``params[w_off : w_off + n_in*n_out]`` viewed ``(n_in, n_out)`` and ``b`` is
``params[b_off : b_off + n_out]``.  Gradients and optimizer state share the layout.

Workspaces (allocated once per call by the façade, never per mini-batch): ``acts`` holds the
batch's activations, slot ``l`` (``aoff[l]``) being ``(B, sizes[l])`` with slot 0 the gathered
input rows (with the embeddings' table rows: embeddings.py); ``deltas`` holds δ for layers 1..L
at ``doff[l]``.  The output slot holds ``z`` after the forward product and ``f(z)`` after the
loss.

``train_epoch`` runs every mini-batch step of an epoch in one call: no Python and no allocation
between steps; batch rows are gathered from ``X`` through the permutation.

Every kernel here that runs the products takes the function table ``fns`` first (see
native.py): the products, ``forward_rows``/``backward_rows``, the structured passes, the losses
and the optimizer update are called through their addresses in it, each compiled once.

Two optional terms serve scikit-learn's MLP semantics (and are off for :class:`fastbp.Trainer`):
sample weights ``sw`` (empty: none) scale each row's loss and δ, and the gradient is divided by
their sum instead of the batch size; an L2 penalty ``½·alpha·Σ‖W‖²`` (weights only) adds
``alpha·W`` to each weight gradient before that division.  ``loss_div`` divides the data loss
(scikit-learn's squared error averages over the outputs too).
"""
import math

import numpy as np
from numba import njit, prange

from .._config import INLINE_JIT, JIT, PARALLEL_JIT
from .activations import IDENTITY, activate
from .structure import (ACT, BATCH_NORM, END, EVAL, N_IN, N_OUT, NORM, ROWS, STRUCT, SUMS, TRAIN,
                        W_OFF, WHOLE, _sums_at, post_backward_at, post_forward_at)
from .dense import backprop, forward, gradient
from .embeddings import A0_COL, CLEAR, GRADS, SUMSQ, embedding_at, gather
from .losses import count_correct, output_batch_at, output_rows_at
from .native import (FN_BACKWARD_ROWS, FN_BLOCKED_STEP, FN_EMBEDDING, FN_FORWARD_ROWS,
                     FN_OUTPUT_BATCH, FN_OUTPUT_ROWS, FN_POST_BACKWARD, FN_POST_FORWARD,
                     FN_OVERLAP, FN_SHARED, FN_UPDATE, MAX_REQUESTS, RS_BUCKET_BYTES,
                     RS_NANOS, RS_RANK, RS_REQUESTS, RS_SIZE, RS_STARTED, Native, allreduce,
                     iallreduce, mpi_wait, wtime)
from .optimizers import guarded_update, update_at
from .unowned import flat, matrix, unowned

OK, LOSS_NOT_FINITE, GRADIENT_NOT_FINITE, PARAMS_NOT_FINITE, REDUCE_FAILED = 0, 1, 2, 3, 4
# Constant arguments to the shared passes are wrapped (np.int64(0), np.bool_(True)): a bare
# literal is typed as a literal, and numba then compiles the callee again for each call site
# (+10 s of a cold start, measured).

# The row-block step (see _blocked_step), for networks whose products are too small for threads
# inside each product to pay: a batch is cut into at most MAX_BLOCKS blocks of at least
# BLOCK_ROWS rows when its largest product has fewer than BLOCK_MAX_MACS multiply-adds; a batch
# of 2·PAIR_ROWS rows or more into two at least (64-128-…-128 at batch 64: +20-50% over one
# 2-thread launch per product; blocks of 50 rows instead of 100 lost 10% on the digits)
BLOCK_ROWS = 56
PAIR_ROWS = 32
MAX_BLOCKS = 8
BLOCK_MAX_MACS = 1 << 22


def step_blocks(sizes, rows):
    """Row blocks of a training workspace for ``rows``-row batches of a network with these
    layer sizes (1: threads inside each product instead).  A power of two, so that the blocks
    share 2, 4 or 8 threads evenly."""
    macs = max(rows * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    if macs >= BLOCK_MAX_MACS:
        return 1
    p = 1
    while p * 2 <= min(MAX_BLOCKS, rows // BLOCK_ROWS):
        p *= 2
    return max(p, 2 if rows >= 2 * PAIR_ROWS else 1)


@njit(**INLINE_JIT)
def layer_params(params, layout, l):
    n_in, n_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
    return matrix(params[w_off:w_off + n_in * n_out], n_in, n_out), params[b_off:b_off + n_out]


@njit(**INLINE_JIT)
def rows_slot(buf, off, l, r0, r1, width):
    """Rows r0..r1 of slot l (a batch slot is row-major, so they are contiguous)."""
    return matrix(buf[off[l] + r0 * width:off[l] + r1 * width], r1 - r0, width)


@njit(**INLINE_JIT)
def stops_at(layout, l, stop):
    """Whether a pass that ``stop``s at batch normalisation stops at hidden layer l: its
    statistics are the whole batch's (row blocks, MPI ranks), so the caller computes them."""
    return stop and l < layout.shape[0] - 1 and layout[l, NORM] == BATCH_NORM


@njit(**JIT)
def forward_rows(fns, X, rows, r0, r1, params, layout, acts, aoff, sq, par, stats, drop, skips,
                 emb, nst, mode, seed, step, l0, stop):
    """Batch rows r0..r1 from layer ``l0`` on (0: gather ``X[rows[r0:r1]]`` into slot 0 first,
    the embeddings ``emb`` looked up: see embeddings.py); the output slot holds ``z_L``.
    Serial products when not ``par``.  Structured layers (see structure.py) in ``mode`` (EVAL,
    TRAIN or GRAD; ``seed``, ``step``: dropout's key).
    ``stop``: return at the first batch-norm layer after its product (its ``z`` in the h slot;
    the caller normalises it with the whole batch's statistics, ``post_forward``, and goes on
    from the layer above).  Returns the layer it stopped at, or L."""
    L = layout.shape[0]
    if l0 == 0:
        gather(X, rows, r0, r1, params, layout, emb, acts, aoff)
    A = rows_slot(acts, aoff, l0, r0, r1, layout[l0, N_IN])
    for l in range(l0, L):
        W, b = layer_params(params, layout, l)
        Z = rows_slot(acts, aoff, l + 1, r0, r1, W.shape[1])
        if l < L - 1 and layout[l, STRUCT]:
            forward(fns, A, W, b, rows_slot(acts, aoff, L + 1 + l, r0, r1, W.shape[1]), IDENTITY,
                    sq, par)
            if stops_at(layout, l, stop):
                return l
            post_forward_at(fns[FN_POST_FORWARD], l, r0, r1, rows, params, stats, layout, drop,
                            skips, acts, aoff, nst, mode, seed, step, par, np.bool_(False))
        else:
            forward(fns, A, W, b, Z, layout[l, ACT] if l < L - 1 else IDENTITY, sq, par)
        A = Z
    return L


FORWARD_ROWS = Native(FN_FORWARD_ROWS, forward_rows, "i")
forward_rows_at = FORWARD_ROWS.stub     # called indirectly (see native.py)


@njit(**INLINE_JIT)
def forward_batch(fns, X, rows, params, layout, acts, aoff, sq, stats, drop, skips, emb, nst,
                  mode, seed, step):
    """Gather ``X[rows]`` into slot 0 and run every layer; the output slot holds ``z_L``."""
    forward_rows_at(fns[FN_FORWARD_ROWS], fns, X, rows, np.int64(0), rows.shape[0], params, layout,
                    acts, aoff, sq, np.bool_(True), stats, drop, skips, emb, nst, mode, seed,
                    step, np.int64(0), np.bool_(False))


@njit(**INLINE_JIT)
def loss_batch(fns, Yf, Yi, sw, rows, layout, out_code, loss_code, acts, aoff, deltas, doff,
               rowloss):
    """Output δ into the deltas' last slot, ``f(z)`` into the output slot; returns Σ losses
    (weighted by ``sw`` when it is not empty)."""
    B = rows.shape[0]
    L = layout.shape[0]
    m = layout[L - 1, 1]
    zero = np.int64(0)
    Z = rows_slot(acts, aoff, L, zero, B, m)
    D = rows_slot(deltas, doff, L, zero, B, m)
    return output_batch_at(fns[FN_OUTPUT_BATCH], fns[FN_OUTPUT_ROWS], Z, D, Yf, Yi, sw, rows,
                           out_code, loss_code, rowloss[:B])


@njit(**JIT)
def add_l2(params, grads, layout, c):
    """``∂W += c·W`` for every layer's weights (not biases); returns ``Σ‖W‖²`` (float64).
    Serial: a streaming pass, small next to the products (and a parallel region here would
    add seconds to every first compile, estimators or not)."""
    total = 0.0
    for l in range(layout.shape[0]):
        lo = np.uint64(layout[l, W_OFF])
        hi = lo + np.uint64(layout[l, N_IN] * layout[l, N_OUT])
        s = 0.0
        for i in range(lo, hi):
            w = params[i]
            grads[i] = grads[i] + c * w
            s += float(w * w)
        total += s
    return total


@njit(**INLINE_JIT)
def sumsq(buf, lo, hi):
    """``Σ buf[lo:hi]²`` in float64, without a temporary."""
    s = 0.0
    for i in range(np.uint64(lo), np.uint64(hi)):
        s += float(buf[i]) * float(buf[i])
    return s


@njit(**JIT)
def backward_rows(fns, rows, r0, r1, scale, params, grads, layout, acts, aoff, deltas, doff, sq,
                  gsq, par, norms, drop, skips, emb, nst, mode, seed, step, l_hi, l_lo, stop):
    """Gradients of batch rows r0..r1, scaled by ``scale``, into ``grads``, from layer ``l_hi``
    down to layer ``l_lo`` (L−1: their δ of the output already in place; below: ``∂E/∂z`` of
    layer l_hi in its delta slot, ``gsq[l_hi]`` its γ, β's squared norm; a layer's δ below l_lo
    is left as a call from l_lo − 1 takes it); their hidden δ into ``deltas``;
    ``gsq[l]`` = squared norm of layer l's gradient (γ and β included) when ``norms``.  Serial
    products when not ``par``.  ``stop``: return at the first batch-norm layer below after the
    ``SUMS`` stage of its ``post_backward`` (the caller sums its column sums over the whole
    batch, runs the ``ROWS`` stage and goes on from that layer).  Returns the layer it stopped
    at, or l_lo − 1.

    With embeddings ``emb``, layer 0 also puts the δ of the embedded input columns,
    ``δ_1·W_0[n_num:, :]ᵀ``, in delta slot 0 (the caller scatters the whole batch's into the
    tables: ``embeddings.embedding_grads``)."""
    L = layout.shape[0]
    if l_hi == L - 1:
        gsq[l_hi] = 0.0
    for l in range(l_hi, l_lo - 1, -1):
        n_in, n_out = layout[l, N_IN], layout[l, N_OUT]
        A = rows_slot(acts, aoff, l, r0, r1, n_in)
        D = rows_slot(deltas, doff, l + 1, r0, r1, n_out)
        gW, gb = layer_params(grads, layout, l)
        gsq[l] += gradient(fns, A, D, gW, gb, scale, sq, par, norms)
        if l > 0:
            W, _ = layer_params(params, layout, l)
            k = l - 1
            # a structured layer below takes ∂E/∂a (its derivative comes in post_backward)
            act = IDENTITY if layout[k, STRUCT] else layout[k, ACT]
            backprop(fns, D, W, A, rows_slot(deltas, doff, l, r0, r1, n_in), act, sq, par)
            gsq[k] = 0.0
            if layout[k, STRUCT]:       # ∂E/∂a -> ∂E/∂z (and ∂E/∂γ, ∂E/∂β)
                stage = SUMS if stops_at(layout, k, stop) else WHOLE
                gsq[k] = post_backward_at(fns[FN_POST_BACKWARD], k, r0, r1, rows, scale, params,
                                          grads, layout, drop, skips, acts, aoff, deltas, doff,
                                          nst, mode, seed, step, par, np.int64(stage))
                if stage == SUMS:
                    return k
        elif emb.shape[0] > 0:
            n0 = emb[0, A0_COL]     # the numeric columns: their δ is not needed
            w0 = layout[0, W_OFF] + n0 * n_out
            E = matrix(params[w0:w0 + (n_in - n0) * n_out], n_in - n0, n_out)
            Dp = rows_slot(deltas, doff, 0, r0, r1, n_in - n0)
            backprop(fns, D, E, Dp, Dp, IDENTITY, sq, par)
    return l_lo - 1


BACKWARD_ROWS = Native(FN_BACKWARD_ROWS, backward_rows, "i")
backward_rows_at = BACKWARD_ROWS.stub   # called indirectly (see native.py)


@njit(**INLINE_JIT)
def backward_batch(fns, rows, scale, params, grads, layout, acts, aoff, deltas, doff, sq, gsq,
                   drop, skips, emb, nst, mode, seed, step):
    """Gradients of the batch ``rows``, scaled by ``scale`` (``1/B`` for the mean), into
    ``grads`` (δ of the output already in place), the embedding tables' included; every hidden
    δ into ``deltas``; ``gsq[l]`` = squared norm of layer l's gradient (layer 0's with the
    tables')."""
    backward_rows_at(fns[FN_BACKWARD_ROWS], fns, rows, np.int64(0), rows.shape[0], scale, params,
                     grads, layout, acts, aoff, deltas, doff, sq, gsq, np.bool_(True),
                     np.bool_(True), drop, skips, emb, nst, mode, seed, step,
                     layout.shape[0] - 1, np.int64(0), np.bool_(False))
    if emb.shape[0] > 0:    # through the table: compiled for networks with embeddings only
        embedding_at(fns[FN_EMBEDDING], np.int64(GRADS), rows.shape[0], scale, grads, layout,
                     emb, acts, aoff, deltas, doff, gsq, np.bool_(True))


@njit(**INLINE_JIT)
def row_blocks(B, nblocks):
    """The blocks a batch of B rows is cut into when the workspace has room for ``nblocks``:
    at most one per BLOCK_ROWS rows, or two of at least PAIR_ROWS (so a short last batch uses
    fewer).  Depends on the shapes only: the result never depends on the thread count."""
    return max(1, min(nblocks, max(B // BLOCK_ROWS, 2 if B >= 2 * PAIR_ROWS else 1)))


@njit(**INLINE_JIT)
def next_batch_norm(layout, l0):
    """The first batch-norm hidden layer at or above l0 (L: none)."""
    L = layout.shape[0]
    for l in range(l0, L - 1):
        if layout[l, NORM] == BATCH_NORM:
            return l
    return L


@njit(**INLINE_JIT)
def prev_batch_norm(layout, l):
    """The first batch-norm hidden layer below l (−1: none)."""
    for k in range(l - 1, -1, -1):
        if layout[k, NORM] == BATCH_NORM:
            return k
    return -1


@njit(**PARALLEL_JIT)
def _blocked_step(fns, X, Yf, Yi, sw, rows, P, params, grads, part, layout, out_code, loss_code,
                  scale, acts, aoff, deltas, doff, rowloss, sq, gsq, stats, drop, skips, emb, nst,
                  mode, seed, step):
    """The batch in P row blocks, one task each: forward, output δ and loss, backward into its
    own gradient buffer (block 0: ``grads``; block p: ``part[(p−1)·n:p·n]``) — every layer's
    products serial, the block's rows staying on one core from input to gradient.  Then
    ``grads += Σ part`` in block order.  ``sq`` and ``gsq`` hold one scratch set per block; the
    blocks compute no gradient norms (theirs are not the batch's: the caller computes those
    after the sum); ``nst`` holds one normalisation scratch per block (layer norm's column sums
    of γ's and β's gradients are each block's own).

    Batch normalisation's statistics are the whole batch's: the blocks stop after such a
    layer's product, one threaded pass normalises the whole batch (``post_forward``, block 0's
    scratch; its mean and 1/σ copied to the other blocks'), and the blocks go on; backward, the
    blocks stop after its column sums, which are added in block order, one threaded pass takes
    the whole batch through the normalisation (``post_backward``'s ROWS stage), and the blocks
    go on.  Its ∂E/∂γ, ∂E/∂β are each block's own sums, added with the rest.

    The embedding tables' gradient is scattered into ``grads`` after the blocks, from the whole
    batch's deltas (``embedding_grads``): the blocks' buffers never hold it, and their sum
    skips its region (the tables come first: ``[0, layout[0, W_OFF])``)."""
    B = rows.shape[0]
    n = params.shape[0]
    bs = (B + P - 1) // P
    T = sq.shape[0] // P
    NS = nst.shape[0] // P
    L = layout.shape[0]
    m = layout[L - 1, 1]
    nst0 = nst[:NS]
    yes = np.bool_(True)
    l0 = 0
    lb = next_batch_norm(layout, 0)
    while lb < L:                       # the forward segments that end at batch norm
        for p in prange(P):
            forward_rows_at(fns[FN_FORWARD_ROWS], fns, X, rows, p * bs, min(B, p * bs + bs),
                            params, layout, acts, aoff, sq[p * T:(p + 1) * T], np.bool_(False),
                            stats, drop, skips, emb, nst[p * NS:(p + 1) * NS], mode, seed, step,
                            l0, yes)
        post_forward_at(fns[FN_POST_FORWARD], lb, np.int64(0), B, rows, params, stats, layout,
                        drop, skips, acts, aoff, nst0, mode, seed, step, yes, np.bool_(False))
        o = np.uint64(lb * (NS // L))
        w = np.uint64(2 * layout[lb, N_OUT])
        for p in range(1, P):
            for i in range(w):
                nst[np.uint64(p * NS) + o + i] = nst0[o + i]
        l0 = lb + 1
        lb = next_batch_norm(layout, l0)
    kb = prev_batch_norm(layout, L - 1)
    for p in prange(P):                 # the last forward segment, the loss, backward to kb
        r0 = p * bs
        r1 = min(B, r0 + bs)
        sqp = sq[p * T:(p + 1) * T]
        nstp = nst[p * NS:(p + 1) * NS]
        g = grads if p == 0 else part[(p - 1) * n:p * n]
        forward_rows_at(fns[FN_FORWARD_ROWS], fns, X, rows, r0, r1, params, layout, acts, aoff,
                        sqp, np.bool_(False), stats, drop, skips, emb, nstp, mode, seed, step, l0,
                        yes)
        Zf = acts[aoff[L]:aoff[L] + B * m]
        Df = deltas[doff[L]:doff[L] + B * m]
        output_rows_at(fns[FN_OUTPUT_ROWS], Zf, Df, flat(Yf), Yi, sw, rows, m, out_code, loss_code,
                       rowloss, r0, r1)
        backward_rows_at(fns[FN_BACKWARD_ROWS], fns, rows, r0, r1, scale, params, g, layout, acts,
                         aoff, deltas, doff, sqp, gsq[p * L:(p + 1) * L], np.bool_(False),
                         np.bool_(False), drop, skips, emb, nstp, mode, seed, step, L - 1,
                         np.int64(0), yes)
    while kb >= 0:                      # the backward segments below each batch norm
        s1, s2 = _sums_at(kb, layout, nst0)
        w = np.uint64(layout[kb, N_OUT])
        for p in range(1, P):
            for i in range(np.uint64(2) * w):
                nst0[s1 + i] += nst[np.uint64(p * NS) + s1 + i]
        nst0[np.uint64(kb * (NS // L)) + np.uint64(2) * w] = float(B)
        post_backward_at(fns[FN_POST_BACKWARD], kb, np.int64(0), B, rows, scale, params, grads,
                         layout, drop, skips, acts, aoff, deltas, doff, nst0, mode, seed, step,
                         yes, np.int64(ROWS))
        for p in prange(P):
            backward_rows_at(fns[FN_BACKWARD_ROWS], fns, rows, p * bs, min(B, p * bs + bs), scale,
                             params, grads if p == 0 else part[(p - 1) * n:p * n], layout, acts,
                             aoff, deltas, doff, sq[p * T:(p + 1) * T], gsq[p * L:(p + 1) * L],
                             np.bool_(False), np.bool_(False), drop, skips, emb,
                             nst[p * NS:(p + 1) * NS], mode, seed, step, kb, np.int64(0), yes)
        kb = prev_batch_norm(layout, kb)
    if emb.shape[0] > 0:
        embedding_at(fns[FN_EMBEDDING], np.int64(GRADS), B, scale, grads, layout, emb, acts,
                     aoff, deltas, doff, gsq, np.bool_(False))
    un = np.uint64(n)
    for p in range(1, P):
        base = np.uint64((p - 1) * n)
        for i in range(np.uint64(layout[0, W_OFF]), un):
            grads[i] += part[base + i]


BLOCKED_STEP = Native(FN_BLOCKED_STEP, _blocked_step, "none")
blocked_step_at = BLOCKED_STEP.stub     # called indirectly (see native.py)


@njit(**INLINE_JIT)
def batch_weight(sw, rows):
    """The summed weight of the batch ``rows`` (float64; its size without weights ``sw``)."""
    if sw.shape[0] == 0:
        return float(rows.shape[0])
    w = 0.0
    for r in range(rows.shape[0]):
        w += float(sw[rows[r]])
    return w


@njit(**JIT)
def batch_gradients(fns, X, Yf, Yi, sw, rows, params, grads, part, layout, out_code, loss_code,
                    alpha, loss_div, acts, aoff, deltas, doff, rowloss, sq, gsq, stats, drop,
                    skips, emb, nst, mode, seed, step):
    """Forward, loss and backward over one batch (``rows`` of X): ``grads`` = the gradients of
    the batch's mean loss (weighted mean with ``sw``, plus the L2 term when ``alpha > 0``),
    ``deltas`` = every layer's δ, ``rowloss`` = the per-sample (weighted) losses.  ``part``
    (a workspace's, see step_blocks) holds the other blocks' gradients of the row-block step;
    empty: threads inside each product.  The embedding tables' region of ``grads`` must be
    zero on entry (see embeddings.embedding_grads).

    Returns ``(loss, wsum)``: ``loss = Σ w·ℓ / loss_div + ½·alpha·Σ‖W‖²`` and ``wsum`` = Σ w (the
    batch size without weights), so that the batch's objective is ``loss / wsum``.

    ``stats, drop, skips, emb, nst``: the structured layers' running statistics, dropout rates,
    skip connections, the embeddings (embeddings.py) and scratch; ``mode``: TRAIN (dropout
    keyed by ``seed`` and ``step``, running statistics updated) or GRAD (see structure.py)."""
    # called from Python or train_epoch, who own every array: see unowned.py
    X, Yf, Yi, sw, rows, params, grads, layout = unowned(X, Yf, Yi, sw, rows, params, grads, layout)
    fns = unowned(fns)
    acts, aoff, deltas, doff, rowloss, sq, gsq = unowned(acts, aoff, deltas, doff, rowloss, sq, gsq)
    stats, drop, skips, emb, nst = unowned(stats, drop, skips, emb, nst)
    B = rows.shape[0]
    wsum = batch_weight(sw, rows)
    one = acts.dtype.type(1)
    # a batch whose weights are all zero teaches nothing: a zero gradient (torch: NaN)
    scale = one / acts.dtype.type(wsum) if wsum > 0 else acts.dtype.type(0)
    P = 1
    if part is not None:    # pruned at compile time when None: no row-block step compiled
        P = row_blocks(B, 1 + part.shape[0] // params.shape[0])
        if P > 1:
            blocked_step_at(fns[FN_BLOCKED_STEP], fns, X, Yf, Yi, sw, rows, np.int64(P), params,
                            grads, unowned(part), layout, out_code, loss_code, scale, acts, aoff,
                            deltas, doff, rowloss, sq, gsq, stats, drop, skips, emb, nst, mode,
                            seed, step)
            loss = 0.0
            for r in range(B):
                loss += float(rowloss[r])
            for l in range(layout.shape[0]):      # W, b, γ, β: adjacent
                gsq[l] = sumsq(grads, layout[l, W_OFF], layout[l, END])
            if emb.shape[0] > 0:                    # the tables: in layer 0's
                gsq[0] += embedding_at(fns[FN_EMBEDDING], np.int64(SUMSQ), B, 0.0, grads,
                                       layout, emb, acts, aoff, deltas, doff, gsq,
                                       np.bool_(False))
    if P == 1:
        forward_batch(fns, X, rows, params, layout, acts, aoff, sq, stats, drop, skips, emb, nst,
                      mode, seed, step)
        loss = loss_batch(fns, Yf, Yi, sw, rows, layout, out_code, loss_code, acts, aoff, deltas,
                          doff, rowloss)
        backward_batch(fns, rows, scale, params, grads, layout, acts, aoff, deltas, doff, sq, gsq,
                       drop, skips, emb, nst, mode, seed, step)
    if loss_div != 1.0:
        loss /= loss_div
    if alpha > 0:
        # sklearn: (Aᵀδ + alpha·W) / wsum; the product is already scaled
        sumsq_w = add_l2(params, grads, layout, acts.dtype.type(alpha) * scale)
        loss += 0.5 * alpha * sumsq_w
    return loss, wsum


# a step computed by several processes together (data-parallel training, fastbp.distributed):
# the passes before and after the slice's gradient, behind the function table (FN_SHARED, compiled
# for distributed fits only: linked into train_epoch they cost every cold start ~0.6 s)
SHARED_ROWS, SHARED_SUM = 0, 1


@njit(**INLINE_JIT)
def shared_rows(rows, sw, grads, layout, rbuf, n_mine):
    """Before the gradient of this process's slice of the batch ``rows`` (``n_mine`` rows):
    zeroes the gradient's parts that the slice's gradient adds into or leaves (the tables'
    region; all of it for an empty slice) and the two slots after it in ``rbuf`` (see
    :func:`shared_sum`).  Returns the batch's summed weight (its size without weights)."""
    wtotal = batch_weight(sw, rows)
    n = grads.shape[0]
    zero = grads.dtype.type(0)
    rbuf[n] = zero
    rbuf[n + 1] = zero
    for i in range(np.uint64(layout[0, W_OFF] if n_mine > 0 else n)):
        grads[i] = zero
    return wtotal


@njit(**INLINE_JIT)
def shared_sum(loss, wsum, wtotal, right, grads, layout, gsq, reduce_spec, rbuf):
    """After the gradient of this process's slice (``loss``: its Σ w·ℓ, ``wsum``: its weight,
    ``right``: its correct count): the gradient scaled to the slice's share of the batch's
    weight ``wtotal``, so that the sum over the processes is the batch's (weighted) mean, then
    summed over them with the loss and the count in one ``allreduce`` of ``rbuf`` (``grads``
    followed by those two slots, which then hold the sums; ``reduce_spec``:
    native.REDUCE_SPEC, the sum's time counted there); ``gsq[l]`` = the summed gradient's
    squared norm of layer l.  Returns whether the sum succeeded."""
    n = grads.shape[0]
    share = wsum / wtotal if wtotal > 0 else 0.0
    if share != 1.0:
        scale(grads, share)
    rbuf[n] = loss
    rbuf[n + 1] = right
    t0 = wtime(reduce_spec)
    ok = allreduce(reduce_spec, rbuf) == 0
    reduce_spec[RS_NANOS] += np.int64((wtime(reduce_spec) - t0) * 1e9)
    layer_sumsq(grads, layout, gsq)
    return ok


@njit(**INLINE_JIT)
def layer_sumsq(grads, layout, gsq):
    """``gsq[l]`` = the squared norm of layer l's gradient (W, b, γ, β: adjacent; the tables,
    first, in layer 0's)."""
    for l in range(layout.shape[0]):
        gsq[l] = sumsq(grads, layout[l, W_OFF] if l > 0 else 0, layout[l, END])


@njit(**INLINE_JIT)
def shared_bucket(reduce_spec, rbuf, lo, hi):
    """Starts the sum over the processes of ``rbuf[lo:hi]``, a bucket of the gradient whose
    layers are computed (``MPI_Iallreduce``, its request in the next of ``reduce_spec``'s
    slots); with ``lo == hi``, lets the started ones progress (``MPI_Test`` of the last: MPI
    moves a nonblocking collective on only inside its calls, unless the library runs a progress
    thread, such as MPICH's with ``MPICH_ASYNC_PROGRESS=1``).  The time counted as the sums'.
    Returns whether MPI succeeded."""
    t0 = wtime(reduce_spec)
    k = reduce_spec[RS_STARTED]
    ok = True
    if hi > lo:
        slot = np.int64(RS_REQUESTS + k)
        reduce_spec[slot] = 0
        ok = iallreduce(reduce_spec, rbuf, np.int64(lo), np.int64(hi), slot) == 0
        reduce_spec[RS_STARTED] = k + 1
    elif k > 0:
        ok = mpi_wait(reduce_spec, np.int64(RS_REQUESTS + k - 1), True) == 0
    reduce_spec[RS_NANOS] += np.int64((wtime(reduce_spec) - t0) * 1e9)
    return ok


@njit(**INLINE_JIT)
def shared_wait(grads, layout, gsq, reduce_spec):
    """Waits for every bucket :func:`shared_bucket` started, in order (the time counted as the
    sums'); then ``gsq[l]`` = the summed gradient's squared norm of layer l.  Returns whether
    every sum succeeded."""
    t0 = wtime(reduce_spec)
    ok = True
    for k in range(reduce_spec[RS_STARTED]):
        ok = mpi_wait(reduce_spec, np.int64(RS_REQUESTS + k), False) == 0 and ok
    reduce_spec[RS_STARTED] = 0
    reduce_spec[RS_NANOS] += np.int64((wtime(reduce_spec) - t0) * 1e9)
    layer_sumsq(grads, layout, gsq)
    return ok


@njit(**JIT)
def shared_pass(what, rows, sw, grads, layout, gsq, reduce_spec, rbuf, loss, wsum, wtotal, right,
                n_mine):
    """The distributed step's pass ``what``, through the function table: SHARED_ROWS
    (:func:`shared_rows`, returns the batch's weight) or SHARED_SUM (:func:`shared_sum`, returns
    1.0 when the sum succeeded, else 0.0)."""
    if what == SHARED_ROWS:
        return shared_rows(rows, sw, grads, layout, rbuf, n_mine)
    return 1.0 if shared_sum(loss, wsum, wtotal, right, grads, layout, gsq, reduce_spec,
                             rbuf) else 0.0


SHARED = Native(FN_SHARED, shared_pass, "d")
shared_at = SHARED.stub     # called indirectly (see native.py)


@njit(**JIT)
def overlapped_gradients(fns, X, Yf, Yi, sw, rows, params, grads, layout, out_code, loss_code,
                         acts, aoff, deltas, doff, rowloss, sq, gsq, stats, drop, skips, emb, nst,
                         seed, step, wtotal, correct, reduce_spec, rbuf):
    """The gradient of this process's slice ``rows`` of a step computed by several processes,
    summed over them bucket by bucket while the backward pass goes on, as PyTorch's
    DistributedDataParallel and Horovod do: the layers from the last down, a bucket started
    (:func:`shared_bucket`) as soon as its layers' gradients are computed and hold at least
    ``reduce_spec[RS_BUCKET_BYTES]`` bytes — the first with the batch's loss and correct count
    (``rbuf``'s two slots after the gradient), the last with layer 0 and the embedding tables —
    the started ones let progress at each layer below, then all waited for
    (:func:`shared_wait`).  The gradient is scaled by ``1/wtotal`` (the batch's weight) as it
    is computed, so that the sum is the batch's mean.  Every process starts the same buckets in
    the same order, an empty slice too (its gradient zeroed by :func:`shared_rows`).  Returns
    whether every sum succeeded.  Through the function table (FN_OVERLAP): compiled for
    distributed fits only."""
    X, Yf, Yi, sw, rows, params, grads, layout = unowned(X, Yf, Yi, sw, rows, params, grads, layout)
    acts, aoff, deltas, doff, rowloss, sq, gsq = unowned(acts, aoff, deltas, doff, rowloss, sq, gsq)
    fns, stats, drop, skips, emb, nst = unowned(fns, stats, drop, skips, emb, nst)
    correct, reduce_spec, rbuf = unowned(correct, reduce_spec, rbuf)
    L = layout.shape[0]
    n = grads.shape[0]
    B = rows.shape[0]
    zero = np.int64(0)
    loss, right = 0.0, 0.0
    if B > 0:
        forward_batch(fns, X, rows, params, layout, acts, aoff, sq, stats, drop, skips, emb, nst,
                      np.int64(TRAIN), seed, step)
        loss = loss_batch(fns, Yf, Yi, sw, rows, layout, out_code, loss_code, acts, aoff, deltas,
                          doff, rowloss)
        if correct.shape[0] > 0:
            right = count_correct(rows_slot(acts, aoff, L, zero, B, layout[L - 1, 1]), Yf, Yi,
                                  rows, out_code, loss_code)
    rbuf[n] = loss
    rbuf[n + 1] = right
    scale = acts.dtype.type(1) / acts.dtype.type(wtotal) if wtotal > 0 else acts.dtype.type(0)
    bucket = reduce_spec[RS_BUCKET_BYTES] // rbuf.itemsize
    hi = n + 2
    ok = True
    for l in range(L - 1, -1, -1):
        if B > 0:
            backward_rows_at(fns[FN_BACKWARD_ROWS], fns, rows, zero, B, scale, params, grads,
                             layout, acts, aoff, deltas, doff, sq, gsq, np.bool_(True),
                             np.bool_(False), drop, skips, emb, nst, np.int64(TRAIN), seed, step,
                             l, l, np.bool_(False))
            if l == 0 and emb.shape[0] > 0:
                embedding_at(fns[FN_EMBEDDING], np.int64(GRADS), B, scale, grads, layout, emb,
                             acts, aoff, deltas, doff, gsq, np.bool_(False))
        lo = layout[l, W_OFF] if l > 0 else zero
        # a slot is kept for layer 0's bucket
        start = l == 0 or (hi - lo >= bucket and reduce_spec[RS_STARTED] < MAX_REQUESTS - 1)
        ok = shared_bucket(reduce_spec, rbuf, lo if start else zero, hi if start else zero) and ok
        if start:
            hi = lo
    return shared_wait(grads, layout, gsq, reduce_spec) and ok


OVERLAP = Native(FN_OVERLAP, overlapped_gradients, "b")
overlapped_at = OVERLAP.stub    # called indirectly (see native.py)


@njit(**JIT)
def clip_factor(sumsq_total, clip):
    """``torch.nn.utils.clip_grad_norm_``'s factor for a gradient whose squared norm is
    ``sumsq_total``: ``clip / (‖g‖ + 1e-6)`` when that is below 1, else 1 (no clipping)."""
    f = clip / (math.sqrt(sumsq_total) + 1e-6)
    return f if f < 1.0 else 1.0


@njit(**JIT)
def scale(buf, f):
    """``buf *= f`` in buf's dtype (serial: a streaming pass, only when clipping bites)."""
    c = buf.dtype.type(f)
    for i in range(np.uint64(buf.shape[0])):
        buf[i] = buf[i] * c


@njit(**INLINE_JIT)
def finish_step(fns, loss, g, params, grads, state1, state2, hyper, opt_code, step, consts, flags,
                clip, rates, s, bounds, stats, stats_prev):
    """A step after its gradient (``loss``, ``g`` = its squared norm): the checks, clipping,
    the learning rate ``rates[s]`` (empty: ``hyper[0]`` as it is), the update (guarded when
    ``bounds`` is not empty, see optimizers.guarded_update); a failed step puts the running
    statistics ``stats_prev`` back.  Returns OK or why the step failed (train_epoch's steps
    and the engine's MPI path)."""
    status = OK
    if not math.isfinite(loss):
        status = LOSS_NOT_FINITE
    elif not math.isfinite(g):
        status = GRADIENT_NOT_FINITE
    else:
        f = 1.0
        if clip > 0:
            f = clip_factor(g, clip)
            if f < 1.0:
                scale(grads, f)
        if rates.shape[0] > 0:
            hyper[0] = rates[s]
        if bounds.shape[0] > 0:
            ok = guarded_update(fns[FN_UPDATE], opt_code, params, grads, state1, state2, hyper,
                                step, consts, flags, bounds, math.sqrt(g) * f)
        else:
            ok = update_at(fns[FN_UPDATE], opt_code, params, grads, state1, state2, hyper, step,
                           consts, flags)
        if not ok:
            status = PARAMS_NOT_FINITE
    if status != OK:
        for i in range(stats_prev.shape[0]):
            stats[i] = stats_prev[i]
    return status


@njit(**JIT)
def train_epoch(fns, X, Yf, Yi, sw, perm, batch, max_steps, params, grads, part, state1, state2,
                hyper, step0, layout, out_code, loss_code, opt_code, alpha, loss_div,
                acts, aoff, deltas, doff, rowloss, sq, gsq, consts, flags, gnorm, clip, rates,
                correct, stats, drop, skips, emb, nst, seed, bounds, stats_prev, reduce_spec,
                rbuf):
    """All mini-batch steps of one epoch (at most ``max_steps`` when it is >= 0).

    ``clip > 0``: before each update the whole gradient is scaled as
    ``torch.nn.utils.clip_grad_norm_(max_norm=clip)`` scales it (see :func:`clip_factor`;
    the recorded gradient norms are those before clipping).  ``rates`` (empty: the fixed rate
    in ``hyper[0]``): step ``s``'s learning rate is ``rates[s]`` (a per-step schedule).
    ``correct`` (empty: not counted): ``correct[0]`` accumulates each completed step's correct
    predictions (see ``losses.count_correct``).  ``stats, drop, skips, nst, seed``: the
    structured layers (see structure.py), in TRAIN mode, dropout keyed by ``seed`` and the step;
    ``emb``: the embeddings (embeddings.py).
    ``bounds`` (empty: no guard): the divergence guard's bounds (optimizers.guarded_update):
    a step whose update is not finite leaves the parameters and the optimizer state as they
    were; ``stats_prev`` (empty: none) keeps the running statistics before each step, put back
    when the step fails.
    ``reduce_spec`` (empty: one process): the steps are computed by several processes together
    (:func:`shared_rows`, then the slice's gradient, then :func:`shared_sum`, through the
    function table; or, with buckets and no row blocks, :func:`overlapped_gradients`; ``rbuf``
    the gradient buffer with its two extra slots; no L2 term, no loss divisor: the engine's
    choice), every process calling this with the same arguments but its own rank.

    Returns ``(loss_sum, steps_done, status)``: Σ over the completed steps of the batch's
    objective times its size (the summed per-sample losses when there are no weights and no
    penalty), how many steps completed, and ``OK`` or the reason training stopped.  A step whose
    loss or gradient is not finite stops before its update (parameters untouched); a step whose
    update gives non-finite parameters stops after it (``PARAMS_NOT_FINITE``: the caller
    restores).  ``gnorm[l]`` accumulates each completed step's gradient norm of layer l."""
    # called from Python, who owns every array: see unowned.py
    X, Yf, Yi, sw, perm, params, grads, layout = unowned(X, Yf, Yi, sw, perm, params, grads, layout)
    fns = unowned(fns)
    state1, state2, hyper, consts, flags, gnorm = unowned(state1, state2, hyper, consts, flags,
                                                          gnorm)
    acts, aoff, deltas, doff, rowloss, sq, gsq = unowned(acts, aoff, deltas, doff, rowloss, sq, gsq)
    rates, correct, stats, drop, skips, emb, nst = unowned(rates, correct, stats, drop, skips, emb,
                                                           nst)
    bounds, stats_prev, reduce_spec, rbuf = unowned(bounds, stats_prev, reduce_spec, rbuf)
    shared = reduce_spec.shape[0] > 0
    # the gradient summed in buckets during the backward pass (overlapped_gradients); not with
    # row blocks, whose gradient is complete only at the end
    overlap = shared and part is None and reduce_spec[RS_BUCKET_BYTES] > 0
    n = perm.shape[0]
    steps = (n + batch - 1) // batch
    if max_steps >= 0 and max_steps < steps:
        steps = max_steps
    L = layout.shape[0]
    total = 0.0
    for s in range(steps):
        rows = perm[s * batch:min(n, s * batch + batch)]
        B = rows.shape[0]
        for i in range(stats_prev.shape[0]):
            stats_prev[i] = stats[i]
        mine, wtotal = rows, 0.0
        if shared:      # this process's slice (rank r of K: rows B·r/K .. B·(r+1)/K)
            rank, size = reduce_spec[RS_RANK], reduce_spec[RS_SIZE]
            mine = rows[B * rank // size:B * (rank + 1) // size]
            wtotal = shared_at(fns[FN_SHARED], np.int64(SHARED_ROWS), rows, sw, grads, layout, gsq,
                               reduce_spec, rbuf, 0.0, 0.0, 0.0, 0.0, mine.shape[0])
        loss, wsum, right = 0.0, 0.0, 0.0
        ok = True
        if overlap:         # (no row blocks: part is None, the same on every process)
            ok = overlapped_at(fns[FN_OVERLAP], fns, X, Yf, Yi, sw, mine, params, grads, layout,
                               out_code, loss_code, acts, aoff, deltas, doff, rowloss, sq, gsq,
                               stats, drop, skips, emb, nst, seed, step0 + s + 1, wtotal,
                               correct, reduce_spec, rbuf)
        elif mine.shape[0] > 0:
            loss, wsum = batch_gradients(fns, X, Yf, Yi, sw, mine, params, grads, part, layout,
                                         out_code, loss_code, alpha, loss_div, acts, aoff, deltas,
                                         doff, rowloss, sq, gsq, stats, drop, skips, emb, nst,
                                         np.int64(TRAIN), seed, step0 + s + 1)
            if correct.shape[0] > 0:
                right = count_correct(rows_slot(acts, aoff, L, np.int64(0), mine.shape[0],
                                                layout[L - 1, 1]),
                                      Yf, Yi, mine, out_code, loss_code)
        if shared:          # the sums over the processes (summed already when overlapped)
            if not overlap:
                ok = shared_at(fns[FN_SHARED], np.int64(SHARED_SUM), rows, sw, grads, layout,
                               gsq, reduce_spec, rbuf, loss, wsum, wtotal, right,
                               mine.shape[0]) != 0.0
            if not ok:
                return total, s, REDUCE_FAILED
            loss, right = float(rbuf[grads.shape[0]]), float(rbuf[grads.shape[0] + 1])
            wsum = wtotal
        g = 0.0
        for l in range(L):
            g += gsq[l]
        status = finish_step(fns, loss, g, params, grads, state1, state2, hyper, opt_code,
                             step0 + s + 1, consts, flags, clip, rates, s, bounds, stats,
                             stats_prev)
        if emb.shape[0] > 0 and not shared:     # the next step's tables' gradient starts at
            #                                     zero (shared: every process's rows are in it,
            #                                     shared_rows zeroes the tables' region)
            embedding_at(fns[FN_EMBEDDING], np.int64(CLEAR), B, 0.0, grads, layout, emb, acts,
                         aoff, deltas, doff, gsq, np.bool_(False))
        if status != OK:
            return total, s, status
        for l in range(L):
            gnorm[l] += math.sqrt(gsq[l])
        if wsum == B:
            total += loss
        elif wsum > 0:
            total += loss / wsum * B
        if correct.shape[0] > 0:
            correct[0] += right
    return total, steps, OK


@njit(**JIT)
def _chunk(rows, lo, n):
    """The indices lo .. lo + chunk (at most n) in the scratch ``rows``: one chunk of a pass
    over X in order."""
    hi = min(n, lo + rows.shape[0])
    r = rows[:hi - lo]
    for i in range(hi - lo):
        r[i] = lo + i
    return r


@njit(**JIT)
def evaluate(fns, X, Yf, Yi, sw, params, layout, out_code, loss_code, acts, aoff, deltas, doff,
             rowloss, rows, sq, out, stats, drop, skips, emb, nst):
    """Σ per-sample loss (weighted by ``sw`` when not empty) over all of X, in chunks of
    ``rows.shape[0]`` rows; the network's outputs ``f(z)`` into ``out`` (``(n, m)``; None: not
    kept), the values :func:`predict` gives, so that one pass yields a loss and a score."""
    X, Yf, Yi, sw, params, layout, fns = unowned(X, Yf, Yi, sw, params, layout, fns)  # unowned.py
    acts, aoff, deltas, doff, rowloss, rows, sq = unowned(acts, aoff, deltas, doff, rowloss, rows,
                                                          sq)
    stats, drop, skips, emb, nst = unowned(stats, drop, skips, emb, nst)
    L = layout.shape[0]
    m = layout[L - 1, 1]
    total = 0.0
    for lo in range(0, X.shape[0], rows.shape[0]):
        r = _chunk(rows, lo, X.shape[0])
        forward_batch(fns, X, r, params, layout, acts, aoff, sq, stats, drop, skips, emb, nst,
                      np.int64(EVAL), np.int64(0), np.int64(0))
        total += loss_batch(fns, Yf, Yi, sw, r, layout, out_code, loss_code, acts, aoff, deltas,
                            doff, rowloss)
        if out is not None:     # pruned at compile time when None
            outf = flat(unowned(out))
            for i in range(np.uint64(r.shape[0] * m)):
                outf[np.uint64(lo * m) + i] = acts[np.uint64(aoff[L]) + i]
    return total


@njit(**JIT)
def predict(fns, X, params, layout, out_code, acts, aoff, rows, out, sq, stats, drop, skips, emb,
            nst):
    """``out = network(X)``, in chunks of ``rows.shape[0]`` rows (inference mode)."""
    fns = unowned(fns)
    X, params, layout, acts, aoff, rows, out, sq = unowned(X, params, layout, acts, aoff, rows,
                                                            out, sq)     # see unowned.py
    stats, drop, skips, emb, nst = unowned(stats, drop, skips, emb, nst)
    L = layout.shape[0]
    m = out.shape[1]
    outf = flat(out)
    for lo in range(0, X.shape[0], rows.shape[0]):
        r = _chunk(rows, lo, X.shape[0])
        forward_batch(fns, X, r, params, layout, acts, aoff, sq, stats, drop, skips, emb, nst,
                      np.int64(EVAL), np.int64(0), np.int64(0))
        for i in range(r.shape[0]):
            z = aoff[L] + i * m
            activate(acts, z, m, out_code)
            for j in range(m):
                outf[(lo + i) * m + j] = acts[z + j]
