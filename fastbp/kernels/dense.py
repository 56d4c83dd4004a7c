"""The three products of a dense layer, with bias, activation and derivative fused in.

With ``W`` stored ``(n_in, n_out)``:

* forward   ``Z = f(A·W + b)``                     (M = batch, K = n_in,  N = n_out)
* backprop  ``Dp = (D·Wᵀ) ⊙ f'(A)``                 (M = batch, K = n_out, N = n_in)
* gradient  ``gW = scale·Aᵀ·D``, ``gb = scale·ΣD``  (M = n_in,  K = batch, N = n_out)

Every output row is computed by one thread, start to finish, in a fixed order, so results do not
depend on the thread count.  Small products run serially: a parallel launch costs ~2 µs, more
than a tiny product takes.  The choice depends on the shape only, never on the thread count.
"""
from numba import njit, prange

from .._config import JIT, PARALLEL_JIT
from .activations import activate_row, scale_by_derivative_row

PAR_MIN = 1 << 17   # multiply-adds below which a product runs serially
ROWS = 4            # output rows per parallel task


@njit(**JIT)
def _forward_rows(A, W, b, Z, act, lo, hi):
    K = A.shape[1]
    N = W.shape[1]
    for i in range(lo, hi):
        z = Z[i]
        for j in range(N):
            z[j] = b[j]
        for k in range(K):
            a = A[i, k]
            w = W[k]
            for j in range(N):
                z[j] += a * w[j]
        activate_row(z, act)


@njit(**PARALLEL_JIT)
def forward(A, W, b, Z, act):
    """``Z[:M] = f(A·W + b)`` for the ``M = A.shape[0]`` rows of A."""
    M = A.shape[0]
    if M * W.shape[0] * W.shape[1] < PAR_MIN:
        _forward_rows(A, W, b, Z, act, 0, M)
        return
    for t in prange((M + ROWS - 1) // ROWS):
        _forward_rows(A, W, b, Z, act, t * ROWS, min(M, t * ROWS + ROWS))


@njit(**JIT)
def _backprop_rows(D, W, A, Dp, act, lo, hi):
    N = W.shape[0]
    K = W.shape[1]
    zero = D.dtype.type(0)
    for i in range(lo, hi):
        d = D[i]
        dp = Dp[i]
        for j in range(N):
            w = W[j]
            s = zero
            for k in range(K):
                s += d[k] * w[k]
            dp[j] = s
        scale_by_derivative_row(dp, A[i], act)


@njit(**PARALLEL_JIT)
def backprop(D, W, A, Dp, act):
    """``Dp = (D·Wᵀ) ⊙ f'(A)`` where ``A = f(z)`` is the previous layer's output."""
    M = D.shape[0]
    if M * W.shape[0] * W.shape[1] < PAR_MIN:
        _backprop_rows(D, W, A, Dp, act, 0, M)
        return
    for t in prange((M + ROWS - 1) // ROWS):
        _backprop_rows(D, W, A, Dp, act, t * ROWS, min(M, t * ROWS + ROWS))


@njit(**JIT)
def _gradient_rows(A, D, gW, scale, sq, lo, hi):
    B = A.shape[0]
    N = D.shape[1]
    zero = D.dtype.type(0)
    for i in range(lo, hi):
        g = gW[i]
        for j in range(N):
            g[j] = zero
        for k in range(B):
            a = A[k, i]
            d = D[k]
            for j in range(N):
                g[j] += a * d[j]
        s = zero
        for j in range(N):
            g[j] = g[j] * scale
            s += g[j] * g[j]
        sq[i] = s


@njit(**PARALLEL_JIT)
def gradient(A, D, gW, gb, scale, sq):
    """``gW = scale·Aᵀ·D``, ``gb = scale·Σ_rows D``; returns ``‖gW‖² + ‖gb‖²`` (float64).

    ``sq`` is scratch of at least ``gW.shape[0]`` elements (per-row sums of squares, added in a
    fixed order afterwards so the total does not depend on the thread count)."""
    M = gW.shape[0]
    N = gW.shape[1]
    B = A.shape[0]
    if M * N * B < PAR_MIN:
        _gradient_rows(A, D, gW, scale, sq, 0, M)
    else:
        for t in prange((M + ROWS - 1) // ROWS):
            _gradient_rows(A, D, gW, scale, sq, t * ROWS, min(M, t * ROWS + ROWS))
    zero = D.dtype.type(0)
    for j in range(N):
        gb[j] = zero
    for k in range(B):
        d = D[k]
        for j in range(N):
            gb[j] += d[j]
    total = 0.0
    for j in range(N):
        gb[j] = gb[j] * scale
        total += float(gb[j]) * float(gb[j])
    for i in range(M):
        total += float(sq[i])
    return total
