"""The three products of a dense layer, with bias, activation and derivative fused in.

With ``W`` stored ``(n_in, n_out)``:

* forward   ``Z = f(A·W + b)``                     (M = batch, K = n_in,  N = n_out)
* backprop  ``Dp = (D·Wᵀ) ⊙ f'(A)``                 (M = batch, K = n_out, N = n_in)
* gradient  ``gW = scale·Aᵀ·D``, ``gb = scale·ΣD``  (M = n_in,  K = batch, N = n_out)

One driver, ``_gemm``, serves all three: the operands are flat arrays with element strides, so
``Wᵀ`` and ``Aᵀ`` are read in place (no transposed copies).  The output is cut into tasks of
``MC`` rows × ``NR`` columns; a task packs its ``KC × NR`` panel of B (zero-padded, small enough
to stay in L1) and sweeps it with the register-tile micro-kernel (simd.py) over its rows, K
block by K block, then applies the epilogue (bias + activation, derivative, or scale + squared
norm) while the tile is in cache.

Every output element belongs to one task and is accumulated in k order, so results do not
depend on the thread count; the task grid depends on the shape only.  Small products run their
tasks serially: a parallel launch (~2 µs) costs more than they take.
"""
import numpy as np
from numba import njit, prange

from .._config import JIT, PARALLEL_JIT
from .activations import activate_row, scale_by_derivative_row
from .simd import MR, microkernel, panel_width

KC = 128            # k-block: a packed panel of KC × NR stays in L1
MC = 64             # output rows per task
PAR_MIN = 1 << 17   # multiply-adds below which a product runs serially
FORWARD, BACKPROP, GRADIENT = 0, 1, 2
MIN_PANEL = 8       # the narrowest NR on any CPU (4 vectors of 2 float64): sizes scratch


def max_tasks(sizes, rows):
    """Upper bound on the task count of any product of a network run on batches of up to
    ``rows`` samples (forward: rows × n_out, backprop: rows × n_in, gradient: n_in × n_out):
    sizes the ``sq`` scratch."""
    def grid(m, n):
        return -(-m // MC) * -(-n // MIN_PANEL)
    return max(max(grid(rows, b), grid(rows, a), grid(a, b)) for a, b in zip(sizes[:-1], sizes[1:]))


@njit(**JIT)
def _pack(Bf, b_rs, b_cs, k0, kc, j0, nr, NR, pack):
    """``pack[k·NR + j] = B[k0 + k, j0 + j]``, zero for j >= nr."""
    zero = pack.dtype.type(0)
    if b_cs == 1:
        for k in range(kc):
            src = (k0 + k) * b_rs + j0
            dst = k * NR
            for j in range(nr):
                pack[dst + j] = Bf[src + j]
            for j in range(nr, NR):
                pack[dst + j] = zero
    else:           # b_rs == 1: B's columns are contiguous rows of the source (Wᵀ)
        for j in range(nr):
            src = (j0 + j) * b_cs + k0
            for k in range(kc):
                pack[k * NR + j] = Bf[src + k]
        for k in range(kc):
            for j in range(nr, NR):
                pack[k * NR + j] = zero


@njit(**JIT)
def _task(t, nmb, kind, Af, a_rs, a_cs, M, K, Bf, b_rs, b_cs, N, C, aux, vec, act, scale):
    """Task t of the grid (column panel t // nmb, row block t % nmb); returns its Σ C² for
    GRADIENT (0 otherwise)."""
    NR = panel_width(Af)
    Cf = C.reshape(C.size)
    c_rs = C.shape[1]
    p = t // nmb
    j0 = p * NR
    nr = min(NR, N - j0)
    m_lo = (t % nmb) * MC
    m_hi = min(M, m_lo + MC)
    pack = np.empty(KC * NR, Af.dtype)
    tile = np.empty(MR * NR, Af.dtype)
    for k0 in range(0, K, KC):
        kc = min(KC, K - k0)
        _pack(Bf, b_rs, b_cs, k0, kc, j0, nr, NR, pack)
        acc = k0 > 0
        for i0 in range(m_lo, m_hi, MR):
            mr = min(MR, m_hi - i0)
            base = i0 * a_rs + k0 * a_cs
            if mr == MR and nr == NR:
                microkernel(Af, base, base + a_rs, base + 2 * a_rs, base + 3 * a_rs, a_cs,
                            pack, kc, Cf, i0 * c_rs + j0, c_rs, acc)
            else:   # edge tile: rows past the edge repeat the last one, then are dropped
                last = mr - 1
                microkernel(Af, base, base + min(1, last) * a_rs, base + min(2, last) * a_rs,
                            base + last * a_rs, a_cs, pack, kc, tile, 0, NR, False)
                for r in range(mr):
                    c = (i0 + r) * c_rs + j0
                    if acc:
                        for j in range(nr):
                            Cf[c + j] += tile[r * NR + j]
                    else:
                        for j in range(nr):
                            Cf[c + j] = tile[r * NR + j]
    total = 0.0
    if kind == FORWARD:
        for i in range(m_lo, m_hi):
            z = C[i, j0:j0 + nr]
            b = vec[j0:j0 + nr]
            for j in range(nr):
                z[j] += b[j]
            activate_row(z, act)
    elif kind == BACKPROP:
        for i in range(m_lo, m_hi):
            scale_by_derivative_row(C[i, j0:j0 + nr], aux[i, j0:j0 + nr], act)
    else:
        for i in range(m_lo, m_hi):
            g = C[i, j0:j0 + nr]
            s = g.dtype.type(0)
            for j in range(nr):
                g[j] = g[j] * scale
                s += g[j] * g[j]
            total += float(s)
    return total


@njit(**PARALLEL_JIT)
def _gemm(kind, Af, a_rs, a_cs, M, K, Bf, b_rs, b_cs, C, aux, vec, act, scale, sq):
    """C (M × N, row-major) = A·B with the ``kind`` epilogue; per-task Σ C² into ``sq``."""
    N = C.shape[1]
    NR = panel_width(Af)
    nmb = (M + MC - 1) // MC
    ntasks = ((N + NR - 1) // NR) * nmb
    if M * N * K < PAR_MIN:
        for t in range(ntasks):
            sq[t] = _task(t, nmb, kind, Af, a_rs, a_cs, M, K, Bf, b_rs, b_cs, N, C, aux, vec, act, scale)
    else:
        for t in prange(ntasks):
            sq[t] = _task(t, nmb, kind, Af, a_rs, a_cs, M, K, Bf, b_rs, b_cs, N, C, aux, vec, act, scale)
    return ntasks


@njit(**JIT)
def forward(A, W, b, Z, act, sq):
    """``Z[:M] = f(A·W + b)`` for the ``M = A.shape[0]`` rows of A."""
    M, K = A.shape
    _gemm(FORWARD, A.reshape(A.size), K, 1, M, K, W.reshape(W.size), W.shape[1], 1, Z, Z, b,
          act, Z.dtype.type(1), sq)


@njit(**JIT)
def backprop(D, W, A, Dp, act, sq):
    """``Dp = (D·Wᵀ) ⊙ f'(A)`` where ``A = f(z)`` is the previous layer's output."""
    M, K = D.shape
    Wf = W.reshape(W.size)
    _gemm(BACKPROP, D.reshape(D.size), K, 1, M, K, Wf, 1, K, Dp, A, Wf, act, Dp.dtype.type(1), sq)


@njit(**JIT)
def gradient(A, D, gW, gb, scale, sq):
    """``gW = scale·Aᵀ·D``, ``gb = scale·Σ_rows D``; returns ``‖gW‖² + ‖gb‖²`` (float64).

    ``sq`` is scratch of at least ``max_tasks`` elements (per-task sums of squares, added in task
    order afterwards so the total does not depend on the thread count)."""
    B, M = A.shape
    N = D.shape[1]
    Af = A.reshape(A.size)
    ntasks = _gemm(GRADIENT, Af, 1, M, M, B, D.reshape(D.size), N, 1, gW, gW, Af, 0, scale, sq)
    total = 0.0
    for t in range(ntasks):
        total += sq[t]
    zero = D.dtype.type(0)
    for j in range(N):
        gb[j] = zero
    for k in range(B):
        d = D[k]
        for j in range(N):
            gb[j] += d[j]
    for j in range(N):
        gb[j] = gb[j] * scale
        total += float(gb[j]) * float(gb[j])
    return total
