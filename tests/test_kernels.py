"""Every kernel against its naive NumPy twin, on both the serial and the parallel paths."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from conftest import tol
from fastbp import compilation
from fastbp.kernels import dense, losses, native, optimizers
from fastbp.kernels.activations import HIDDEN, OUTPUT, activate, scale_by_derivative

DTYPES = [np.float32, np.float64]
# (M, K, N): tiny (serial path), odd sizes, edge tiles in both directions, K longer than one,
# k-block, large enough for the parallel path, and every register-tile shape
SHAPES = [(3, 5, 7), (1, 1, 1), (70, 61, 33), (128, 40, 37), (9, 300, 130), (131, 260, 70),
          (37, 50, 20), (13, 17, 12),    # the 8×2 tile (float32 / float64)
          (33, 300, 3), (700, 200, 2),   # narrow outputs: serial over k-blocks, parallel grid
          (130, 520, 600),               # A packed into micro-panels (>= 8 panels, big A)
          (300, 900, 520),               # ... also serially (A of >= PACK_A_SERIAL elements)
          (40, 30, 60), (21, 9, 120),    # remainders in a 4-vector or a 2 + 1-vector panel
          (20, 30, 1030),                # tasks of several panels, the last group shorter
          (64, 70, 1000),                # 17 panels (float32) in 8 groups of 2 and 3
          (600, 8, 520), (20, 600, 520),  # row blocks cut at MC_MAX rows: M = 600 in forward
          #                                 and backprop (first), in the gradient (second)
          (1, 32, 64), (1, 300, 130),    # one row (a batch-1 step), one k-step in the gradient:
          (7, 1, 20), (1, 2000, 1200)]   # dense._tiny; one row but threads (M·K·N >= PAR_MIN)


def _sq(M, N):
    return np.empty(dense.max_tasks([M, N]), np.float64)


_TABLES = {}


def fns(dtype):
    """The function table of the products (native.py) for ``dtype``."""
    if dtype not in _TABLES:
        _TABLES[dtype] = compilation.Table(dtype).need([native.FN_GEMM, native.FN_TASK])
    return _TABLES[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("par", [True, False])     # threads allowed / serial forced
@pytest.mark.parametrize("act", ["identity", "relu", "leaky_relu", "sigmoid", "tanh"])
def test_forward(rng, dtype, shape, act, par):
    M, K, N = shape
    A = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((K, N)).astype(dtype)
    b = rng.standard_normal(N).astype(dtype)
    Z = np.empty((M, N), dtype)
    dense.forward(fns(dtype), A, W, b, Z, HIDDEN[act], _sq(M, N), par)
    np.testing.assert_allclose(Z, naive.act(act, A.astype(float) @ W + b), **tol(dtype))
    assert Z.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("par", [True, False])     # threads allowed / serial forced
@pytest.mark.parametrize("act", ["identity", "relu", "leaky_relu", "sigmoid", "tanh"])
def test_backprop(rng, dtype, shape, act, par):
    M, K, N = shape            # D (M, K), W (N, K): Dp = (D Wᵀ) f'(z), A = f(z) (M, N)
    D = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((N, K)).astype(dtype)
    z = rng.standard_normal((M, N))
    A = naive.act(act, z).astype(dtype)
    Dp = np.empty((M, N), dtype)
    dense.backprop(fns(dtype), D, W, A, Dp, HIDDEN[act], _sq(M, N), par)
    np.testing.assert_allclose(Dp, (D.astype(float) @ W.T) * naive.act_deriv(act, z), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("par", [True, False])     # threads allowed / serial forced
def test_gradient(rng, dtype, shape, par):
    B, M, N = shape            # A (B, M), D (B, N) -> gW (M, N)
    A = rng.standard_normal((B, M)).astype(dtype)
    D = rng.standard_normal((B, N)).astype(dtype)
    gW = np.empty((M, N), dtype)
    gb = np.empty(N, dtype)
    sq = _sq(M, N)
    scale = dtype(1) / dtype(B)
    total = dense.gradient(fns(dtype), A, D, gW, gb, scale, sq, par, True)
    ref_W = A.astype(float).T @ D / B
    ref_b = D.astype(float).mean(axis=0)
    np.testing.assert_allclose(gW, ref_W, **tol(dtype))
    np.testing.assert_allclose(gb, ref_b, **tol(dtype))
    np.testing.assert_allclose(total, (ref_W ** 2).sum() + (ref_b ** 2).sum(), rtol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(37, 50, 20), (9, 300, 130), (33, 300, 3)])
def test_gradient_without_norms_is_the_same_gradient(rng, dtype, shape):
    B, M, N = shape
    A = rng.standard_normal((B, M)).astype(dtype)
    D = rng.standard_normal((B, N)).astype(dtype)
    out = [(np.empty((M, N), dtype), np.empty(N, dtype)) for _ in range(2)]
    scale = dtype(0.25)
    totals = [dense.gradient(fns(dtype), A, D, gW, gb, scale, _sq(M, N), False, norms)
              for (gW, gb), norms in zip(out, [True, False])]
    assert totals[0] > 0 and totals[1] == 0
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("par", [True, False])
def test_gradient_of_an_empty_batch(dtype, par):
    # an MPI rank's empty share of a batch: a K = 0 product runs (nothing to add) and gives
    # zero bias gradients and norm
    A, D = np.empty((0, 70), dtype), np.empty((0, 600), dtype)
    gW, gb = np.zeros((70, 600), dtype), np.full(600, np.nan, dtype)
    total = dense.gradient(fns(dtype), A, D, gW, gb, dtype(1), _sq(70, 600), par, True)
    assert total == 0 and (gW == 0).all() and (gb == 0).all()


@settings(max_examples=300, deadline=None)
@given(M=st.integers(1, 5000), npan=st.integers(1, 300), MR=st.sampled_from([4, 8, 16]),
       serial=st.booleans())
def test_grid_covers_the_output_in_balanced_tasks(M, npan, MR, serial):
    MC, nmb, ngroups = dense.grid(M, MR, npan, serial)
    # row blocks of whole tiles cover the rows, the last one not empty
    assert (nmb - 1) * MC < M <= nmb * MC and (serial or MC % MR == 0)
    # the groups cut the panels into runs of nearly equal, non-zero length
    runs = [(g + 1) * npan // ngroups - g * npan // ngroups for g in range(ngroups)]
    assert sum(runs) == npan and min(runs) >= 1 and max(runs) - min(runs) <= 1
    if serial:
        assert (MC, nmb, ngroups) == (M, 1, npan)
        return
    assert nmb * ngroups <= max(npan + dense.TASKS, npan * (M // dense.MC_MAX + 1))
    m = dense.TASKS // np.gcd(nmb, dense.TASKS)
    if npan >= m:      # 1, 2, 4 or 8 threads take equal shares of the tasks
        assert (nmb * ngroups) % dense.TASKS == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", [(3, 5, 7), (70, 61, 33), (9, 300, 130), (33, 300, 3),
                                   (20, 30, 1030)])
def test_serial_scratch_in_sq_tail_gives_the_same_products(dtype, M, K, N):
    # the engine's sq (sq_size) lends a serial product its panel and edge tile from its tail;
    # a bare max_tasks sq makes _gemm allocate them: bitwise the same results and norms
    r = np.random.default_rng(M * K + N)
    A = r.standard_normal((M, K)).astype(dtype)
    W = r.standard_normal((K, N)).astype(dtype)
    b = r.standard_normal(N).astype(dtype)
    D = r.standard_normal((M, N)).astype(dtype)
    out = []
    for size in (dense.max_tasks([K, N, M]), dense.sq_size([K, N, M], M)):
        sq = np.full(size, np.nan)
        Z, Dp = np.empty((M, N), dtype), np.empty((M, K), dtype)
        gW, gb = np.empty((K, N), dtype), np.empty(N, dtype)
        dense.forward(fns(dtype), A, W, b, Z, HIDDEN["relu"], sq, False)
        dense.backprop(fns(dtype), D, W, A, Dp, HIDDEN["relu"], sq, False)
        total = dense.gradient(fns(dtype), A, D, gW, gb, dtype(0.5), sq, False, True)
        out.append((Z, Dp, gW, gb, total))
        if size > dense.max_tasks([K, N, M]):      # the tail was used
            assert not np.isnan(sq[dense.max_tasks([K, N, M]):]).all()
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(out[0][0], naive.act("relu", A.astype(float) @ W + b), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N", [(2048, 2048), (4000, 9), (257, 3000), (9, 4000), (1, 70000)])
def test_gradient_task_count_within_max_tasks(dtype, M, N):
    # the per-task sums of squares go to sq[t]: the grid must never outgrow max_tasks
    A = np.ones((1, M), dtype)
    C = np.empty((M, N), dtype)
    sq = np.empty(10 * dense.max_tasks([M, N]) + 1000)
    one = np.int64(1)
    ntasks = dense._gemm(fns(dtype), np.int64(dense.GRADIENT), A.ravel(), one, M, M, 1, np.ones(N,
                         dtype), N, one, C, C, A.ravel(), np.int64(0), dtype(1), sq, True, True)
    assert ntasks <= dense.max_tasks([M, N])
    np.testing.assert_array_equal(C, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"])
def test_activation_rows(rng, dtype, act):
    # a span in the middle of a buffer: the neighbours must stay untouched
    z = (rng.standard_normal(13) * 5).astype(dtype)
    buf = np.full(20, 7.0, dtype)
    buf[3:16] = z
    activate(buf, 3, 13, {**HIDDEN, **OUTPUT}[act])
    np.testing.assert_allclose(buf[3:16], naive.act(act, z[None])[0], **tol(dtype))
    assert np.all(buf[:3] == 7) and np.all(buf[16:] == 7)
    if act != "softmax":
        d = rng.standard_normal(13).astype(dtype)
        dbuf = np.full(15, 7.0, dtype)
        dbuf[2:] = d
        expected = d * naive.act_deriv(act, z.astype(float))
        scale_by_derivative(dbuf, 2, buf, 3, 13, HIDDEN[act])
        np.testing.assert_allclose(dbuf[2:], expected, rtol=1e-3 if dtype == np.float32 else 1e-9,
                                   atol=1e-6)
        assert np.all(dbuf[:2] == 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(70, 61, 33), (9, 300, 130), (21, 9, 120), (37, 50, 20)])
@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_backprop_fused_derivative_is_the_epilogues_bit_for_bit(rng, dtype, shape, act):
    # the micro-kernel applies relu's / leaky relu's derivative to full tiles, edge tiles get
    # scale_by_derivative: both must give the same bits, non-finite values included
    M, K, N = shape
    D = rng.standard_normal((M, K)).astype(dtype)
    D[3, :] = np.nan
    D[5, :] = np.inf
    W = rng.standard_normal((N, K)).astype(dtype)
    A = naive.act(act, rng.standard_normal((M, N))).astype(dtype)
    A[:, 1] = 0
    A[7, :] = np.nan
    fused = np.empty((M, N), dtype)
    dense.backprop(fns(dtype), D, W, A, fused, HIDDEN[act], _sq(M, N), False)
    plain = np.empty((M, N), dtype)
    dense.backprop(fns(dtype), D, W, A, plain, HIDDEN["identity"], _sq(M, N), False)
    for i in range(M):
        scale_by_derivative(plain[i], 0, A[i], 0, N, HIDDEN[act])
    np.testing.assert_array_equal(fused.view(np.uint8), plain.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_vexp_within_two_ulp_of_numpy(rng, dtype):
    from numba import njit

    from fastbp._config import JIT
    from fastbp.kernels.vexp import vexp

    @njit(**dict(JIT, cache=False))     # the kernels' fast-math flags (reassoc must not regroup)
    def exp_all(x, out):
        for i in range(x.shape[0]):
            out[i] = vexp(x[i])

    lo, hi = (-746.0, 710.0) if dtype == np.float64 else (-104.0, 89.0)
    x = np.concatenate([rng.uniform(lo, hi, 200_000), rng.uniform(-1, 1, 100_000),
                        rng.uniform(-40, 0, 100_000),
                        [0, -0.0, np.inf, -np.inf, np.nan, 2 * lo, 2 * hi, 1e-30]]).astype(dtype)
    got = np.empty_like(x)
    exp_all(x, got)
    with np.errstate(over="ignore", under="ignore"):
        # float32: exp in float64, rounded (NumPy's own float32 exp is up to ~2.3 ulp off)
        want = np.exp(x.astype(np.float64)).astype(dtype)
    assert np.array_equal(np.isnan(got), np.isnan(x))
    ok = ~np.isnan(x)
    bits = np.int64 if dtype == np.float64 else np.int32
    ulps = np.abs(got[ok].view(bits).astype(np.int64) - want[ok].view(bits).astype(np.int64))
    assert ulps.max() <= 2, x[ok][ulps.argmax()]
    assert got[x == 0].tolist() == [1, 1]


def test_sigmoid_and_softmax_extremes():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], np.float32)
    a = z.copy()
    activate(a, 0, 5, OUTPUT["sigmoid"])
    assert np.all(np.isfinite(a)) and a[0] == 0 and a[-1] == 1 and a[2] == 0.5
    s = z.copy()
    activate(s, 0, 5, OUTPUT["softmax"])
    assert np.isfinite(s).all() and s[-1] == 1 and abs(s.sum() - 1) < 1e-6


PAIRS = [("squared_error", "identity"), ("squared_error", "sigmoid"), ("squared_error", "softmax"),
         ("cross_entropy", "softmax"), ("cross_entropy", "identity"),
         ("binary_cross_entropy", "sigmoid"), ("binary_cross_entropy", "identity"),
         ("poisson", "exp")]
# (loss, output, integer labels?)
CASES = [p + (False,) for p in PAIRS] + [("cross_entropy", "softmax", True), ("cross_entropy",
              "identity", True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,out,labels", CASES)
@pytest.mark.parametrize("B,m", [(5, 3), (300, 70)])
def test_output_batch(rng, dtype, loss, out, labels, B, m):
    z = (rng.standard_normal((B, m)) * 3).astype(dtype)
    if labels:
        y = rng.integers(0, m, B)
        T = naive.one_hot(y, m)
        Yf, Yi = np.zeros((1, m), dtype), y.astype(np.int64)
    else:
        T = rng.uniform(0, 1, (B, m)) if loss != "squared_error" else rng.standard_normal((B, m))
        if loss == "cross_entropy":
            T /= T.sum(axis=1, keepdims=True)
        Yf, Yi = T.astype(dtype), np.empty(0, np.int64)
    rows = rng.permutation(B).astype(np.int64)   # batch row r is data row rows[r]
    Z = z.copy()
    D = np.empty_like(Z)
    rowloss = np.empty(B, dtype)
    total = losses.output_batch(losses.OUTPUT_ROWS.address(dtype), Z, D, Yf, Yi,
                                np.empty(0, dtype), rows, OUTPUT[out], losses.LOSSES[loss],
                                rowloss)
    Tb = T[rows]
    zf = z.astype(float)
    np.testing.assert_allclose(rowloss, naive.sample_losses(loss, out, zf, Tb),
                               rtol=1e-4 if dtype == np.float32 else 1e-9, atol=1e-5)
    np.testing.assert_allclose(total, naive.sample_losses(loss, out, zf, Tb).sum(),
                               rtol=1e-4 if dtype == np.float32 else 1e-9)
    np.testing.assert_allclose(D, naive.output_delta(loss, out, zf, Tb), **tol(dtype))
    expected_a = naive.act(out, zf) if out != "identity" else zf
    np.testing.assert_allclose(Z, expected_a, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,out,labels", [("cross_entropy", "softmax", True), ("squared_error",
                         "identity", False)])
@pytest.mark.parametrize("B", [5, 300])
def test_output_batch_sample_weights_scale_loss_and_delta(rng, dtype, loss, out, labels, B):
    m = 70
    z = rng.standard_normal((B, m)).astype(dtype)
    if labels:
        Yf, Yi = np.zeros((1, m), dtype), rng.integers(0, m, B).astype(np.int64)
    else:
        Yf, Yi = rng.standard_normal((B, m)).astype(dtype), np.empty(0, np.int64)
    w = rng.uniform(0, 3, B).astype(dtype)
    rows = rng.permutation(B).astype(np.int64)
    code = OUTPUT[out], losses.LOSSES[loss]
    Z0, D0, l0 = z.copy(), np.empty_like(z), np.empty(B, dtype)
    losses.output_batch(losses.OUTPUT_ROWS.address(dtype), Z0, D0, Yf, Yi, np.empty(0, dtype),
                        rows, *code, l0)
    Z1, D1, l1 = z.copy(), np.empty_like(z), np.empty(B, dtype)
    t1 = losses.output_batch(losses.OUTPUT_ROWS.address(dtype), Z1, D1, Yf, Yi, w, rows, *code, l1)
    np.testing.assert_allclose(l1, l0 * w[rows], **tol(dtype))
    np.testing.assert_allclose(D1, D0 * w[rows][:, None], **tol(dtype))
    assert t1 == pytest.approx(float((l0 * w[rows]).sum()), rel=1e-5)
    np.testing.assert_array_equal(Z1, Z0)


def test_losses_are_stable_at_extremes():
    z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], np.float32)
    for loss, out, y in [("cross_entropy", "softmax", np.array([1, 0])),
                         ("binary_cross_entropy", "sigmoid", None)]:
        Z, D = z.copy(), np.empty_like(z)
        rowloss = np.empty(2, np.float32)
        if y is None:
            Yf, Yi = np.array([[0, 1], [1, 0]], np.float32), np.empty(0, np.int64)
        else:
            Yf, Yi = np.zeros((1, 2), np.float32), y.astype(np.int64)
        total = losses.output_batch(losses.OUTPUT_ROWS.address(np.float32), Z, D, Yf, Yi,
                                    np.empty(0, np.float32), np.arange(2), OUTPUT[out],
                                    losses.LOSSES[loss], rowloss)
        assert np.isfinite(total) and total > 1000          # log(0) would be inf
        assert np.isfinite(D).all()


OPTS = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "sk_sgd", "sk_nesterov", "sk_adam"]
CODES = {**optimizers.OPTIMIZERS, **optimizers.SKLEARN}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTS)
@pytest.mark.parametrize("n", [7, 70001])   # serial and chunked parallel paths
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_optimizer_steps_follow_formulas(rng, dtype, name, n, wd):
    p = rng.standard_normal(n).astype(dtype)
    s1, s2 = np.zeros(n, dtype), np.zeros(n, dtype)
    hyper = np.array([0.01, 0.9, 0.9, 0.999, 1e-8, wd], dtype)
    consts = np.zeros(10, dtype)
    flags = np.zeros(-(-n // optimizers.CHUNK), dtype)
    ref = [p.astype(np.float64)]
    opt = naive.Optimizer(name, 0.01, weight_decay=wd)
    for step in range(1, 4):
        g = rng.standard_normal(n).astype(dtype)
        assert optimizers.update(CODES[name], p, g, s1, s2, hyper, step, consts, flags)
        opt.step(ref, [g])
        np.testing.assert_allclose(p, ref[0], rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 1e-13)


def test_optimizer_reports_non_finite_update():
    p = np.array([3e38, 1.0], np.float32)
    g = np.array([-3e38, 0.0], np.float32)
    hyper = np.array([10.0, 0.9, 0.9, 0.999, 1e-8, 0.0], np.float32)
    assert not optimizers.update(optimizers.SGD, p, g, p[:0], p[:0], hyper, 1, np.zeros(10,
                                 np.float32), np.zeros(1, np.float32))


def test_unowned_views_read_and_write_the_callers_arrays():
    from numba import njit
    from numba.core.errors import TypingError

    from fastbp.kernels.unowned import unowned

    @njit
    def through(a, b):
        u, v = unowned(a, b)
        w = unowned(u[1:])            # a view of an unowned view
        w[0] = 7.0
        v[1, 2] = 5
        return u.sum(), v.shape[0], v.shape[1], v.strides[0]

    a = np.arange(4.0)
    b = np.zeros((2, 3), np.int64)[:, ::-1]     # strided, not C-contiguous
    assert through(a, b) == (0.0 + 7.0 + 2.0 + 3.0, 2, 3, b.strides[0])
    assert a[1] == 7.0 and b[1, 2] == 5

    @njit
    def scalar(x):
        return unowned(x)
    with pytest.raises(TypingError):
        scalar(1.0)
