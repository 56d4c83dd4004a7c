"""The divergence guard (kernels.optimizers.guarded_update): an update whose new parameters are
not all finite leaves the parameters and the optimizer state as they were, without a snapshot
per epoch; the bounds that decide when a step needs a copy first are never below the truth."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastbp
from fastbp import engine
from fastbp.kernels import optimizers as O

CODES = sorted(O.NAMES)


def _state(code, n, dtype, rng, scale):
    p = (rng.standard_normal(n) * scale).astype(dtype)
    k = O.STATE_ARRAYS[code]
    s1 = np.zeros(n if k >= 1 else 0, dtype)
    s2 = np.zeros(n if k >= 2 else 0, dtype)
    return p, s1, s2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code", CODES, ids=[O.NAMES[c] for c in CODES])
def test_guarded_update_equals_update_or_changes_nothing(code, dtype):
    """Steps with gradients from tame to overflowing: where the plain update stays finite the
    guarded one gives the same bits; where it does not, the guarded one changes nothing; the
    bounds stay at or above the true maxima after every step."""
    rng = np.random.default_rng(code)
    n = 3000
    fmax = float(np.finfo(dtype).max)
    p, s1, s2 = _state(code, n, dtype, rng, 1.0)
    p[0] = fmax                 # one parameter at the top: pushed up (g[0] < 0) it overflows
    hyper = np.array([1.0, 0.9, 0.9, 0.999, 1e-8, 0.0], dtype)
    consts, flags = np.zeros(10, dtype), np.zeros(n // O.CHUNK + 1, dtype)
    bounds = np.zeros(4)
    O.guard_bounds(code, hyper, p, s1, s2, bounds)
    kept = refused = 0
    for step in range(1, 60):
        if step == 59:          # Adam's and RMSprop's steps are bounded by lr: a huge one
            hyper[0] = fmax / 1e4
        scale = 10.0 ** min(step * (1 if dtype == np.float32 else 6) - 10,
                            np.log10(fmax) - 6)
        g = (rng.standard_normal(n) * scale).astype(dtype)
        g[0] = -abs(g[0]) - scale
        G = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
        ref = [a.copy() for a in (p, s1, s2)]
        plain = [a.copy() for a in (p, s1, s2)]
        ok_plain = O.update(code, plain[0], g.copy(), plain[1], plain[2], hyper, step,
                            consts, flags)
        ok = O.guarded_update(O.UPDATE.address(dtype), code, p, g.copy(), s1, s2, hyper, step,
                              consts, flags, bounds, G)
        assert ok == ok_plain, step
        for got, want, before in zip((p, s1, s2), plain, ref):
            np.testing.assert_array_equal(got, want if ok else before)
        if not ok:
            refused += 1
            break
        kept += 1
        for b, a in zip(bounds[:3], (p, s1, s2)):
            assert a.size == 0 or b >= np.abs(a.astype(np.float64)).max(), step
    assert kept >= 3 and refused == 1          # both branches seen: the guard did something


def test_bound_of_adam_holds_without_eps():
    """Adam's |m| <= C·√v: its step is bounded by the learning rate, not lr·|m|/eps, so weight
    decay does not make the bound explode (no copy per step in an ordinary fit)."""
    C = O.adam_ratio_bound(0.9, 0.999)
    assert 7.2 < C < 7.5 and O.adam_ratio_bound(0.99, 0.9) == np.inf
    rng = np.random.default_rng(0)
    m, v = np.zeros(500), np.zeros(500)
    for _ in range(200):
        g = rng.standard_normal(500) * rng.choice([1e-6, 1, 1e6])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        assert O.adam_within(m, v, C)
    hyper = np.array([1e-3, 0.9, 0.9, 0.999, 1e-8, 0.1])
    p, _, _ = O.step_bound(O.ADAM, hyper, 10, np.array([1.0, 1.0, 1.0, C]), 1.0)
    assert p < 1.0 + 1e-3 * C * 2


SPECIALS = [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, -1.7976931348623157e308,
            3.4028234663852886e38, -1.401298464324817e-45]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([np.float32, np.float64]), st.integers(0, 70),
       st.lists(st.tuples(st.integers(0, 69), st.sampled_from(SPECIALS)), max_size=3),
       st.integers(0, 2**32 - 1))
def test_max_abs_is_numpys_with_nan_anywhere(dtype, n, specials, seed):
    """max|buf| on the bit patterns equals NumPy's ``abs(buf).max()``, whatever the length (the
    vectorised body and its remainder) and wherever a NaN, an inf, a signed zero or a denormal
    sits (a NaN before the last element was lost by the branchy loop this replaced)."""
    with np.errstate(over="ignore"):
        buf = (np.random.default_rng(seed).standard_normal(n) * 1e3).astype(dtype)
        for i, v in specials:
            if i < n:
                buf[i] = dtype(v)
    want = float(np.abs(buf).max()) if n else 0.0
    got = O.max_abs(buf)
    assert (np.isnan(got) and np.isnan(want)) or got == want


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([np.float32, np.float64]), st.integers(0, 40), st.integers(0, 39),
       st.sampled_from([0.0, np.nan, np.inf, 1e300, -3.0]), st.integers(0, 2**32 - 1))
def test_adam_within_is_the_elementwise_test(dtype, n, at, special, seed):
    """``adam_within(m, v, C)`` is ``all(|m| <= C·√v)`` (NaN: not within), with zeros in v,
    moments on the edge and values whose square would overflow."""
    rng = np.random.default_rng(seed)
    v = (rng.standard_normal(n) ** 2).astype(dtype)
    m = (np.sqrt(v.astype(np.float64)) * rng.uniform(-8, 8, n)).astype(dtype)
    with np.errstate(over="ignore"):
        if at < n:
            (m if seed % 2 else v)[at] = dtype(special)
    C = 7.3
    with np.errstate(invalid="ignore"):
        want = bool(np.all(np.abs(m.astype(np.float64)) <= C * np.sqrt(v.astype(np.float64))))
    assert O.adam_within(m, v, C) == want


def test_a_failed_step_puts_the_running_statistics_back():
    """Batch norm's running statistics move in the forward pass: a step whose loss, gradient or
    update is not finite leaves them as the last finite step did."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 4)) * 10
    y = rng.standard_normal(64) * 1e18
    kw = dict(layer_sizes=[4, 8, 1], normalization="batch", dtype=np.float32, seed=0)

    def make(epochs=3):
        net = fastbp.Network(**kw)
        return net, fastbp.Trainer(net, loss="squared_error", optimizer="sgd",
                                   learning_rate=10.0, batch_size=16, epochs=epochs,
                                   shuffle=False)
    net, tr = make()
    with pytest.raises(fastbp.TrainingDivergedError):
        tr.fit(X, y)
    steps = tr.step
    ref, rtr = make(epochs=1)
    rtr.fit(X[:16 * steps], y[:16 * steps]) if steps > 0 else None
    got, want = net.state_dict(), ref.state_dict()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert np.isfinite(net._st.stats).all()


def test_epoch_runner_keeps_no_copy_of_the_parameters():
    """The guard's memory: a few bounds and the running statistics, no per-epoch snapshot."""
    net = fastbp.Network([50, 40, 3], output_activation="softmax", seed=0)
    X, y = np.zeros((20, 50), np.float32), np.zeros(20, np.int64)
    tr = fastbp.Trainer(net, optimizer="adam", epochs=1)
    tr.fit(X, y)
    runner = engine.EpochRunner(net.params, net._st, engine.Codes(net._out, 1), tr._opt, X,
                                np.zeros((20, 0), np.float32), y, 10)
    held = [x for v in vars(runner).values()
            for x in (v if isinstance(v, (list, tuple)) else [v])]
    big = [a for a in held if isinstance(a, np.ndarray)
           and a.size >= net.params.size and not np.shares_memory(a, net.params)
           and not np.shares_memory(a, runner._buf)]
    assert big == [] and runner._buf.size <= net.params.size + 2   # the gradient alone
