"""The three products of a dense layer, with bias, activation and derivative fused in.

With ``W`` stored ``(n_in, n_out)``:

* forward   ``Z = f(A·W + b)``                     (M = batch, K = n_in,  N = n_out)
* backprop  ``Dp = (D·Wᵀ) ⊙ f'(A)``                 (M = batch, K = n_out, N = n_in)
* gradient  ``gW = scale·Aᵀ·D``, ``gb = scale·ΣD``  (M = n_in,  K = batch, N = n_out)

One driver, ``_gemm``, serves all three: the operands are flat arrays with element strides, so
``Wᵀ`` and ``Aᵀ`` are read in place (no transposed copies).  The output is cut into tasks of
``MC`` rows × ``G`` column panels of ``NR`` columns (the last panels narrower, see _panels).  A
task runs K block by K block; in each, it packs the ``KC × NR`` block of B of each of its panels
in turn (zero-padded, small enough to stay in L1) and sweeps it with the register-tile
micro-kernel (simd.py) over its rows, whose A slice (``MC × KC``) stays in L2 for the G panels
(with one panel a task, each panel read all of A again from L3: the wide products were 10-25%
slower, measured).  In the last K block the micro-kernel itself adds the bias and applies relu /
leaky relu (forward), multiplies by relu's or leaky relu's derivative (backprop) or by the scale
(gradient) before its one store; what is left (other activations and derivatives, the squared
norm) is the task's epilogue, run while its block is in cache.
Tasks are numbered row block first, so the threads of a parallel product write disjoint rows
(no cache line of C is shared between cores but at block edges).

Every output element belongs to one task and is accumulated in k order, so results do not
depend on the thread count; the task grid depends on the shape only.  Small products run their
tasks serially: a parallel launch (~2 µs) costs more than they take.
"""
import numpy as np
from numba import njit, prange

from .._config import INLINE_JIT, JIT, PARALLEL_JIT
from .activations import IDENTITY, LEAKY_RELU, RELU, activate, scale_by_derivative
from .simd import (EPI_BIAS, EPI_DLEAKY, EPI_DRELU, EPI_LEAKY, EPI_NONE, EPI_RELU,
                   EPI_SCALE, copy_vector, microkernel_mid, microkernel_narrow, microkernel_wide,
                   serial_below, tile_table, transpose_block, vector_lanes)
from .native import FN_GEMM, FN_TASK, Native
from .unowned import flat, unowned

KC = 128            # k-block: a packed panel of KC × NR stays in L1
TASKS = 8           # row blocks are cut so that a product has at least this many tasks
FORWARD, BACKPROP, GRADIENT = 0, 1, 2
TINY_KIND = 8       # added to a kind: _task runs the whole product by _tiny
NARROW = 4          # outputs this narrow skip the register tile (see _narrow)
MC_MAX = 256        # rows of a parallel row block: its A (K block) and C slices stay in L2
GROUP_MAX = 8       # column panels a parallel task sweeps per K block (see _task)
PACK_A_PANELS = 8   # A is packed into micro-panels when this many column panels reuse it
PACK_A_MIN = 1 << 16  # ... and it has this many elements (smaller, it sits in L1 anyway)
PACK_A_SERIAL = 1 << 18  # ... this many when the product runs serially
TINY = 1            # a serial product this shallow or with this few rows skips the tiles


def max_tasks(sizes):
    """Upper bound on the task count of a gradient product of a network of these layer sizes
    (M = n_in, N = n_out): sizes the ``sq`` scratch.  A grid has npan <= N/NR + 2 <= N/2 + 1
    column panels (see _panels; NR >= 8), at most npan column groups (see grid) and one row
    block when serial, else max(⌈TASKS/npan⌉, ⌈M/MC_MAX⌉) of them: npan·⌈TASKS/npan⌉ < npan +
    TASKS tasks, or at most npan·(M//MC_MAX + 1)."""
    s = max(sizes)
    return max(s // 2 + TASKS + 1, (s // 2 + 1) * (s // MC_MAX + 1))


def sq_size(sizes, rows):
    """Length of the float64 ``sq`` scratch a network's products take: the per-task sums
    (max_tasks), then room for a serial product's B panel and the row after it (see _gemm:
    used in place of allocating them at every call, which cost ~5% of a small network's step),
    for batches of up to ``rows`` rows."""
    widest = 64         # NR: at most 4 vectors of 16 lanes (simd.TILES)
    return max_tasks(sizes) + max(KC * widest + widest, rows, max(sizes))


@njit(**INLINE_JIT)
def _vectors(N, lanes, W):
    """Vectors per tile row: the narrowest register tile that covers N columns (W: the wide
    tile's, see simd.TILES)."""
    if N <= lanes:
        return 1
    if N <= 2 * lanes:
        return 2
    return W


@njit(**INLINE_JIT)
def _rows(nv, table):
    """Rows of the register tile of nv vectors (``table``: simd.tile_table)."""
    W, wide, mid, narrow = table
    if nv == W:
        return wide
    return mid if nv == 2 else narrow


# The helpers below index flat buffers through unsigned offsets.  They create no views inside
# their loops: a view costs an atomic reference-count pair (NRT_incref/NRT_decref), and in the
# small layers of tabular nets those took more time than the arithmetic.  Unsigned indices avoid
# numba's negative-index wraparound, which stops LLVM from vectorising.


@njit(**INLINE_JIT)
def _pack(Bf, b_rs, b_cs, k0, kc, j0, nr, NR, pack):
    """``pack[k·NR + j] = B[k0 + k, j0 + j]``, zero for j >= nr."""
    zero = pack.dtype.type(0)
    unr, uNR, ukc = np.uint64(nr), np.uint64(NR), np.uint64(kc)
    if b_cs == 1 and nr == NR:
        for k in range(ukc):
            src = np.uint64((k0 + k) * b_rs + j0)
            dst = k * uNR
            for j in range(uNR):
                pack[dst + j] = Bf[src + j]
    elif b_cs == 1:     # an edge panel: whole vectors, the last read with a mask
        L = vector_lanes(pack)
        for k in range(kc):
            src = (k0 + k) * b_rs + j0
            for q in range(0, NR, L):
                copy_vector(Bf, src + q, pack, k * NR + q, nr - q)
    else:           # b_rs == 1: B's columns are contiguous rows of the source (Wᵀ): square
        #             blocks of a vector's lanes transposed in registers, the rest read 8
        #             columns side by side, so that each k stores 8 adjacent elements
        #             (1.5 elements per cycle against 0.9 a column at a time, measured)
        ub = np.uint64(b_cs)
        L = vector_lanes(pack)
        nL = nr - nr % L
        kL = kc - kc % L
        for jb in range(0, nL, L):
            for kb in range(0, kL, L):
                transpose_block(Bf, (j0 + jb) * b_cs + k0 + kb, b_cs, pack, kb * NR + jb, NR)
            src = np.uint64((j0 + jb) * b_cs + k0)
            for k in range(np.uint64(kL), ukc):
                dst = k * uNR + np.uint64(jb)
                for j in range(np.uint64(L)):
                    pack[dst + j] = Bf[src + j * ub + k]
        n8 = nr - (nr - nL) % 8
        for j8 in range(nL, n8, 8):
            src = np.uint64((j0 + j8) * b_cs + k0)
            for k in range(ukc):
                dst = k * uNR + np.uint64(j8)
                for j in range(np.uint64(8)):
                    pack[dst + j] = Bf[src + j * ub + k]
        for j in range(n8, nr):
            src = np.uint64((j0 + j) * b_cs + k0)
            for k in range(ukc):
                pack[k * uNR + np.uint64(j)] = Bf[src + k]
        for k in range(ukc):
            for j in range(unr, uNR):
                pack[k * uNR + j] = zero


@njit(**JIT)
def _pack_a(Af, a_rs, a_cs, M, K, MR, p, Ap):
    """Row panel p of A (rows p·MR ..) into ``Ap[p·K·MR + k·MR + r]``, rows past M repeating
    the last: the micro-kernel then reads one contiguous stream instead of MR strided ones."""
    uMR, uK = np.uint64(MR), np.uint64(K)
    base = np.uint64(p) * uK * uMR
    if a_cs == 1:                   # rows contiguous along k (forward, backprop)
        for r in range(MR):
            src = np.uint64(min(p * MR + r, M - 1) * a_rs)
            ur = np.uint64(r)
            for k in range(uK):
                Ap[base + k * uMR + ur] = Af[src + k]
    else:                           # a_rs == 1: the MR rows are adjacent in each k (gradient)
        last = np.uint64(M - 1)
        for k in range(uK):
            src = k * np.uint64(a_cs)
            for r in range(uMR):
                Ap[base + k * uMR + r] = Af[src + min(np.uint64(p * MR) + r, last)]


@njit(**INLINE_JIT)
def _narrow(Af, a_rs, a_cs, m_lo, m_hi, K, Bf, b_rs, b_cs, N, Cf, c_rs, pack):
    """C rows m_lo..m_hi for N <= NARROW columns, where a register tile would be mostly empty:
    a dot product along k when A's rows are contiguous (forward), otherwise an axpy along A's
    contiguous columns (gradient, a_rs == 1).  Each element is summed in k order either way."""
    zero = pack.dtype.type(0)
    uKC = np.uint64(KC)
    if a_cs == 1:
        for k0 in range(0, K, KC):                    # Bᵀ block, contiguous along k
            ukc = np.uint64(min(KC, K - k0))
            for j in range(N):
                for k in range(ukc):
                    pack[np.uint64(j) * uKC + k] = Bf[np.uint64((k0 + k) * b_rs + j * b_cs)]
            for i in range(m_lo, m_hi):
                a = np.uint64(i * a_rs + k0)
                for j in range(N):
                    b = np.uint64(j) * uKC
                    s = zero
                    for k in range(ukc):
                        s += Af[a + k] * pack[b + k]
                    c = np.uint64(i * c_rs + j)
                    if k0 == 0:
                        Cf[c] = s
                    else:
                        Cf[c] += s
    else:
        um = np.uint64(m_hi - m_lo)
        for j in range(N):
            for i in range(um):
                pack[i] = zero
            for k in range(K):
                d = Bf[k * b_rs + j * b_cs]
                a = np.uint64(k * a_cs + m_lo)
                for i in range(um):
                    pack[i] += Af[a + i] * d
            for i in range(um):
                Cf[(np.uint64(m_lo) + i) * np.uint64(c_rs) + np.uint64(j)] = pack[i]


@njit(**INLINE_JIT)
def _tiny(kind, Af, a_rs, a_cs, M, K, Bf, b_rs, b_cs, N, Cf, c_rs, scale):
    """C = A·B by plain loops, for a product with a row or a k-step or so (M or K <= TINY: the
    products of batch-1 steps), where packing panels of B and a register tile of several rows
    cost more than the arithmetic (a 32-64-64-1 step spent 3.3 of its 5.1 µs in the tiles'
    task).  B's rows contiguous (forward's W, the gradient's D): each row of C a sum of B's
    rows scaled by A, vectorised along them; else (backprop's Wᵀ, contiguous along k) dot
    products along k.  The order is fixed by the shape: deterministic.

    GRADIENT: C scaled by ``scale`` and Σ C² returned (as _epilogue computes them), each row
    while it is in L1; a one-step gradient (K = 1, the outer product of a batch-1 step) in its
    single pass over C (its separate epilogue pass was ~10% of a batch-1 step)."""
    zero = Cf.dtype.type(0)
    uN, uK = np.uint64(N), np.uint64(K)
    grad = kind == GRADIENT
    total = 0.0
    if b_cs == 1:
        for i in range(M):
            c = np.uint64(i * c_rs)
            if K == 0:
                for j in range(uN):
                    Cf[c + j] = zero
                continue
            a = Af[np.uint64(i * a_rs)]
            if grad and K == 1:
                s = zero
                for j in range(uN):
                    g = a * Bf[j] * scale
                    Cf[c + j] = g
                    s += g * g
                total += float(s)
                continue
            for j in range(uN):         # k = 0 written, not added to zeros
                Cf[c + j] = a * Bf[j]
            k = np.uint64(1)
            # four k-steps per pass over the row of C: its elements otherwise wait on their own
            # store of the k-step before (store forwarding + FMA, ~10 cycles a k-step: 20% of a
            # batch-1 step in one loop)
            while k + np.uint64(4) <= uK:
                ak = np.uint64(i * a_rs) + k * np.uint64(a_cs)
                a0 = Af[ak]
                a1 = Af[ak + np.uint64(a_cs)]
                a2 = Af[ak + np.uint64(2 * a_cs)]
                a3 = Af[ak + np.uint64(3 * a_cs)]
                b0 = k * np.uint64(b_rs)
                b1 = b0 + np.uint64(b_rs)
                b2 = b1 + np.uint64(b_rs)
                b3 = b2 + np.uint64(b_rs)
                for j in range(uN):
                    Cf[c + j] += (a0 * Bf[b0 + j] + a1 * Bf[b1 + j]) + (
                        a2 * Bf[b2 + j] + a3 * Bf[b3 + j])
                k += np.uint64(4)
            for k in range(k, uK):
                a = Af[np.uint64(i * a_rs) + k * np.uint64(a_cs)]
                b = k * np.uint64(b_rs)
                for j in range(uN):
                    Cf[c + j] += a * Bf[b + j]
            if grad:
                total += _scaled_row(Cf, c, uN, scale)
    else:                       # b_rs == 1, and A's rows contiguous (a_cs == 1: D)
        for i in range(M):
            a = np.uint64(i * a_rs)
            for j in range(uN):
                b = j * np.uint64(b_cs)
                s = zero
                for k in range(uK):
                    s += Af[a + k] * Bf[b + k]
                Cf[np.uint64(i * c_rs) + j] = s
            if grad:
                total += _scaled_row(Cf, np.uint64(i * c_rs), uN, scale)
    return total


@njit(**INLINE_JIT)
def _scaled_row(Cf, c, n, scale):
    """C[c:c+n] *= scale; returns its Σ C² (float64): the gradient's epilogue on one row."""
    s = Cf.dtype.type(0)
    for j in range(n):
        g = Cf[c + j] * scale
        Cf[c + j] = g
        s += g * g
    return float(s)


@njit(**INLINE_JIT)
def _panels(N, nv, lanes, W):
    """``(full, count)``: the column panels of an N-wide output.  ``full`` panels of ``nv``
    vectors (the main tile, when it is the wide one of W vectors), then the remainder in the
    narrowest tiles that cover it (see _panel): a 4-vector tile computes 4 vectors per row and k
    whatever it stores, so 100 float64 columns take 3 × 32 + 8 instead of 4 × 32 (19% less
    work)."""
    NR = nv * lanes
    full = N // NR if nv == W else 0
    r = N - full * NR
    extra = 0 if r == 0 else (2 if 2 * lanes < r <= 3 * lanes else 1)
    return full, full + extra


@njit(**INLINE_JIT)
def _panel(p, full, nv, lanes, N):
    """``(j0, vectors)`` of column panel p."""
    NR = nv * lanes
    j0 = full * NR
    if p < full:
        return p * NR, nv
    if p > full:                    # the 1-vector panel after a 2-vector one
        return j0 + 2 * lanes, 1
    r = N - j0
    if r > 3 * lanes:
        return j0, 4
    if r > lanes:
        return j0, 2
    return j0, 1


@njit(**INLINE_JIT)
def grid(M, MR, npan, serial):
    """``(MC, nmb, ngroups)``: the task grid of a product with M rows, ``npan`` column panels
    and MR-row register tiles — ``nmb`` row blocks of MC rows (whole tiles) × ``ngroups``
    column groups, ``nmb·ngroups`` tasks numbered row block first.  Serial: one row block, one
    panel per group.  Otherwise row blocks as few as give TASKS tasks (each re-packs its B
    panels) and at most MC_MAX rows, then groups of up to GROUP_MAX panels (a task reuses its A
    slice from L2 across them), as many as leave TASKS tasks, their count rounded so that the
    task count is a multiple of TASKS where the panels allow it: the threads' static shares of
    the tasks are then equal for 1, 2, 4 or 8 threads (9 tasks of 2 panels on 2 threads, the
    1000-column products, ran at 79% of their 1024-column rate).  Depends on the shape only,
    never on the threads."""
    if serial:
        return M, np.int64(1), npan
    nmb = min((M + MR - 1) // MR, max((TASKS + npan - 1) // npan, (M + MC_MAX - 1) // MC_MAX))
    MC = (((M + nmb - 1) // nmb + MR - 1) // MR) * MR
    nmb = (M + MC - 1) // MC
    G = max(1, min(GROUP_MAX, npan * nmb // TASKS))
    ngroups = (npan + G - 1) // G
    m, b = TASKS, nmb           # groups a multiple of m: TASKS / gcd(nmb, TASKS) (powers of 2)
    while m > 1 and b % 2 == 0:
        m //= 2
        b //= 2
    if ngroups % m != 0 and npan >= m:
        up = (ngroups // m + 1) * m
        down = (ngroups // m) * m
        ngroups = up if up <= npan and (up - ngroups <= ngroups - down or down == 0) else down
    return MC, nmb, ngroups


@njit(**INLINE_JIT)
def _epilogue(kind, Cf, c_rs, i_lo, i_hi, j0, nr, auxf, vec, act, scale, fused, norms):
    """The ``kind`` epilogue on rows i_lo..i_hi, columns j0..j0+nr of C; returns Σ C² for
    GRADIENT when ``norms`` (0 otherwise).  Run per task, after its last K block (per register
    tile measured slower on short-K products: the reloads of just-stored vectors stall).
    ``fused``: the micro-kernel has added the bias and applied identity, relu or leaky relu
    (forward, see _fused_epi), or applied the scale (gradient)."""
    unr = np.uint64(nr)
    total = 0.0
    if kind == FORWARD:
        if fused and (act == IDENTITY or act == RELU or act == LEAKY_RELU):
            return total
        for i in range(i_lo, i_hi):
            c = np.uint64(i * c_rs + j0)
            if not fused:
                for j in range(unr):
                    Cf[c + j] += vec[np.uint64(j0) + j]
            activate(Cf, c, nr, act)
    elif kind == BACKPROP:      # aux (the previous layer's output) has C's shape
        if fused:
            return total
        for i in range(i_lo, i_hi):
            c = i * c_rs + j0
            scale_by_derivative(Cf, c, auxf, c, nr, act)
    elif fused:
        if norms:
            for i in range(i_lo, i_hi):
                c = np.uint64(i * c_rs + j0)
                s = Cf.dtype.type(0)
                for j in range(unr):
                    s += Cf[c + j] * Cf[c + j]
                total += float(s)
    else:
        for i in range(i_lo, i_hi):
            total += _scaled_row(Cf, np.uint64(i * c_rs + j0), unr, scale)
    return total if norms else 0.0


@njit(**INLINE_JIT)
def _fused_epi(act):
    """What the micro-kernel applies to the forward product's last K block: the bias, and the
    activation when it is a select (relu, leaky relu); the others follow in _epilogue."""
    if act == RELU:
        return EPI_RELU
    if act == LEAKY_RELU:
        return EPI_LEAKY
    return EPI_BIAS


@njit(**INLINE_JIT)
def _derivative_epi(act):
    """What the micro-kernel applies to backprop's last K block: the derivative of relu or
    leaky relu (a select on the stored output); the others follow in _epilogue."""
    if act == RELU:
        return EPI_DRELU
    if act == LEAKY_RELU:
        return EPI_DLEAKY
    return EPI_NONE


@njit(**JIT)
def _task(t, npan, ngroups, full, MC, nv, kind, Af, a_rs, a_cs, M, K, Bf, b_rs, b_cs, N, Cf, c_rs,
          auxf, vec, act, scale, pack, Ap, packed, norms):
    """Task t of the grid (see grid): row block t // ngroups, column group t % ngroups (the
    npan panels cut into ngroups runs of nearly equal length; consecutive tasks share rows, so
    threads given consecutive tasks write disjoint rows); returns its Σ C² for GRADIENT when
    ``norms`` (0 otherwise).  K blocks are the outer loop, so A's k-slice of the row block is
    read by its panels while it is in L2.  ``pack`` is this task's scratch; when ``packed``, A
    is read from its micro-panels in ``Ap`` (see _pack_a) by the full panels."""
    lanes = vector_lanes(Af)
    table = tile_table(Af)
    MR = _rows(nv, table)
    g = t % ngroups
    p_lo = g * npan // ngroups
    p_hi = (g + 1) * npan // ngroups
    m_lo = (t // ngroups) * MC
    m_hi = min(M, m_lo + MC)
    tiny = kind >= TINY_KIND
    if tiny:
        kind -= TINY_KIND
    if N <= NARROW or tiny:     # one call site of the (inlined) epilogue for both
        if tiny:
            total = _tiny(kind, Af, a_rs, a_cs, M, K, Bf, b_rs, b_cs, N, Cf, c_rs, scale)
            if kind == GRADIENT:        # scaled, and its norm taken, by _tiny
                return total if norms else 0.0
        else:
            _narrow(Af, a_rs, a_cs, m_lo, m_hi, K, Bf, b_rs, b_cs, N, Cf, c_rs, pack)
        return _epilogue(kind, Cf, c_rs, m_lo, m_hi, np.int64(0), N, auxf, vec, act, scale,
                         np.bool_(False), norms)
    # K blocks of nearly equal depth, at most KC: a short last block (784 = 6 × 128 + 16) costs
    # a block's loads, stores and epilogue for little arithmetic (11% of that product at AVX2)
    nkb = max(1, (K + KC - 1) // KC)        # K = 0: an empty share of a batch (MPI)
    KB = max(8, ((K + nkb - 1) // nkb + 7) // 8 * 8)
    for k0 in range(0, K, KB):
        kc = min(KB, K - k0)
        acc = k0 > 0
        for p in range(p_lo, p_hi):
            j0, nvt = _panel(p, full, nv, lanes, N)
            NR = nvt * lanes
            MRt = _rows(nvt, table)
            nr = min(NR, N - j0)
            from_ap = packed and nvt == nv
            A = Ap if from_ap else Af
            _pack(Bf, b_rs, b_cs, k0, kc, j0, nr, NR, pack)
            epi = EPI_NONE
            if k0 + kc == K:
                if kind == BACKPROP:
                    epi = _derivative_epi(act)
                else:                       # the row after the panel, for the micro-kernel
                    ukc = np.uint64(kc * NR)
                    if kind == FORWARD:                     # the bias
                        epi = _fused_epi(act)
                        zero = pack.dtype.type(0)
                        for j in range(np.uint64(NR)):
                            pack[ukc + j] = vec[np.uint64(j0) + j] if j < nr else zero
                    else:                                   # the scale
                        epi = EPI_SCALE
                        for j in range(np.uint64(NR)):
                            pack[ukc + j] = scale
            for i0 in range(m_lo, m_hi, MRt):
                mr = min(MRt, m_hi - i0)
                if from_ap:     # i0 is a multiple of MR: its micro-panel starts at i0·K
                    base, rs, cs = i0 * K + k0 * MR, 1, MR
                else:
                    base, rs, cs = i0 * a_rs + k0 * a_cs, a_rs, a_cs
                # straight into C, edge tiles too (mr rows, the last vector masked past nr).
                # One call site per tile shape: each inlined micro-kernel is compiled again by
                # every caller
                coff = i0 * c_rs + j0
                if nvt == table[0]:
                    microkernel_wide(A, base, rs, cs, mr, nr, pack, kc, Cf, coff, c_rs, acc, epi,
                                     auxf)
                elif nvt == 2:
                    microkernel_mid(A, base, rs, cs, mr, nr, pack, kc, Cf, coff, c_rs, acc, epi,
                                    auxf)
                else:
                    microkernel_narrow(A, base, rs, cs, mr, nr, pack, kc, Cf, coff, c_rs, acc,
                                       epi, auxf)
    total = 0.0
    fused = kind != BACKPROP or _derivative_epi(act) != EPI_NONE
    for p in range(p_lo, p_hi):
        j0, nvt = _panel(p, full, nv, lanes, N)
        total += _epilogue(kind, Cf, c_rs, m_lo, m_hi, j0, min(nvt * lanes, N - j0), auxf, vec,
                           act, scale, fused, norms)
    return total


TASK = Native(FN_TASK, _task, "d")
task = TASK.stub    # task(address, *_task's arguments): an indirect call (see native.py)


@njit(**PARALLEL_JIT)
def _gemm(fns, kind, Af, a_rs, a_cs, M, K, Bf, b_rs, b_cs, C, aux, vec, act, scale, sq, par,
          norms):
    """C (M × N, row-major) = A·B with the ``kind`` epilogue; per-task Σ C² into ``sq`` (when
    ``norms``: gradient only, whose task count max_tasks bounds).  ``par`` False: serial
    whatever the size (the caller runs in a parallel region).  ``fns``: the function table
    (native.py), for ``_task``'s address."""
    N = C.shape[1]
    lanes = vector_lanes(Af)
    table = tile_table(Af)
    nv = _vectors(N, lanes, table[0])
    NR = nv * lanes
    MR = _rows(nv, table)
    full, npan = _panels(N, nv, lanes, table[0])
    serial = not par or M * N * K < serial_below(Af)    # simd.PAR_MIN
    tiny = serial and (M <= TINY or K <= TINY) and N > NARROW and (b_cs == 1 or a_cs == 1)
    MC, nmb, ngroups = grid(M, MR, npan, serial)
    if tiny:        # one task: the whole product by _tiny (in _task: its epilogue's call site)
        MC, nmb, ngroups, kind = M, np.int64(1), np.int64(1), kind + TINY_KIND
    ntasks = nmb * ngroups
    # the caller keeps the operands alive: unowned views spare every _task call the reference
    # counting of its array arguments (see unowned.py)
    Af, Bf, vec, Cf, auxf = unowned(Af, Bf, vec, flat(C), flat(aux))
    c_rs = C.shape[1]
    task_fn = fns[FN_TASK]
    scratch = max(KC * NR + NR, MC)     # a B panel and the row after it (bias, scale); _narrow
    # A in contiguous micro-panels, once per product (M·K copies for M·K·N multiply-adds):
    # +10% per core measured against reading MR strided rows from L2, when every panel of A is
    # reused by several column panels (a pass and, in parallel, a launch cost more otherwise);
    # serial, only from PACK_A_SERIAL elements (the gradient's Aᵀ, read 4 KiB apart from L2, ran
    # 17% faster packed at 1024 × 256, 7% slower at 256 × 256: its allocation)
    packed = (not tiny and N > NARROW and full >= PACK_A_PANELS
              and M * K >= (PACK_A_SERIAL if serial or ntasks == 1 else PACK_A_MIN))
    # (not packed: A itself stands in, so that a small product allocates nothing)
    Ap = np.empty(((M + MR - 1) // MR) * K * MR, Af.dtype) if packed else Af
    if serial or ntasks == 1:
        if packed:
            for p in range((M + MR - 1) // MR):
                _pack_a(Af, a_rs, a_cs, M, K, MR, np.int64(p), Ap)
        # the panel from sq's tail when it has room past the task sums (sq_size), else a new
        # one
        words = (scratch * Af.itemsize + 7) // 8
        if sq.shape[0] - words >= ntasks:
            pack = sq[sq.shape[0] - words:].view(Af.dtype)[:scratch]
        else:
            pack = np.empty(scratch, Af.dtype)
        for t in range(ntasks):
            s = task(task_fn, t, npan, ngroups, full, MC, nv, kind, Af, a_rs, a_cs, M, K, Bf,
                     b_rs, b_cs, N, Cf, c_rs, auxf, vec, act, scale, pack, Ap, packed, norms)
            if norms:
                sq[t] = s
    else:
        if packed:
            for p in prange((M + MR - 1) // MR):
                _pack_a(Af, a_rs, a_cs, M, K, MR, np.int64(p), Ap)
        for t in prange(ntasks):
            pack = np.empty(scratch, Af.dtype)
            s = task(task_fn, np.int64(t), npan, ngroups, full, MC, nv, kind, Af, a_rs, a_cs, M,
                     K, Bf, b_rs, b_cs, N, Cf, c_rs, auxf, vec, act, scale, pack, Ap, packed,
                     norms)
            if norms:
                sq[t] = s
    return ntasks


GEMM = Native(FN_GEMM, _gemm, "i")
gemm = GEMM.stub        # gemm(address, *_gemm's arguments): an indirect call (see native.py)
ONE = 1


@njit(**INLINE_JIT)
def forward(fns, A, W, b, Z, act, sq, par):
    """``Z[:M] = f(A·W + b)`` for the ``M = A.shape[0]`` rows of A; threads when ``par``.
    ``fns``: the function table (native.py)."""
    M, K = A.shape
    one = np.int64(ONE)
    gemm(fns[FN_GEMM], fns, np.int64(FORWARD), flat(A), K, one, M, K, flat(W),
         W.shape[1], one, Z, Z, b, np.int64(act), Z.dtype.type(1), sq, par, np.bool_(False))


@njit(**INLINE_JIT)
def backprop(fns, D, W, A, Dp, act, sq, par):
    """``Dp = (D·Wᵀ) ⊙ f'(A)`` where ``A = f(z)`` is the previous layer's output."""
    M, K = D.shape
    Wf = flat(W)
    one = np.int64(ONE)
    gemm(fns[FN_GEMM], fns, np.int64(BACKPROP), flat(D), K, one, M, K, Wf, one, K, Dp, A, Wf,
         np.int64(act), Dp.dtype.type(1), sq, par, np.bool_(False))


@njit(**INLINE_JIT)
def gradient(fns, A, D, gW, gb, scale, sq, par, norms):
    """``gW = scale·Aᵀ·D``, ``gb = scale·Σ_rows D``; returns ``‖gW‖² + ‖gb‖²`` (float64) when
    ``norms``, else 0 (the row-block step computes the batch's norms after summing its
    blocks).

    ``sq`` is scratch of at least ``max_tasks`` elements (per-task sums of squares, added in task
    order afterwards so the total does not depend on the thread count; see sq_size)."""
    B, M = A.shape
    N = D.shape[1]
    Af = flat(A)
    one = np.int64(ONE)
    ntasks = gemm(fns[FN_GEMM], fns, np.int64(GRADIENT), Af, one, M, M, B, flat(D), N, one, gW,
                  gW, Af, np.int64(0), scale, sq, par, norms)
    total = 0.0
    if norms:
        for t in range(ntasks):
            total += sq[t]
    zero = D.dtype.type(0)
    uN = np.uint64(N)
    Df = flat(D)
    for j in range(uN):
        gb[j] = zero
    for k in range(B):
        d = np.uint64(k * N)
        for j in range(uN):
            gb[j] += Df[d + j]
    for j in range(N):
        gb[j] = gb[j] * scale
        total += float(gb[j]) * float(gb[j])
    return total if norms else 0.0
