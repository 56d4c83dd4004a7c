"""Bad input at the door: a clear error naming the problem, and nothing changed."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastbp


@pytest.fixture
def net():
    return fastbp.Network([3, 4, 2], output_activation="softmax", seed=0)


GOOD_X = np.zeros((5, 3))
GOOD_Y = np.array([0, 1, 0, 1, 1])


@pytest.mark.parametrize("X,y,exc,match", [
    (np.full((5, 3), np.nan), GOOD_Y, ValueError, "X contains 15 non-finite"),
    (np.array([[0, 0, np.inf]] * 5), GOOD_Y, ValueError, "inf at index"),
    (GOOD_X, np.array([0, 1, 0, np.nan, 1]), ValueError, "y contains 1 non-finite"),
    (np.zeros((4, 3)), GOOD_Y, ValueError, "different lengths: 4 and 5"),
    (np.zeros((5, 2)), GOOD_Y, ValueError, "2 features but the network expects 3"),
    (GOOD_X, np.array([0, 1, 2, 1, 0]), ValueError, r"labels must lie in 0..1 .* from 0 to 2"),
    (GOOD_X, np.array([0, 1, -1, 1, 0]), ValueError, "labels must lie in 0..1"),
    (GOOD_X, np.array([0, 1, 0.5, 1, 0]), ValueError, "integer class labels"),
    (np.zeros((0, 3)), np.zeros(0, int), ValueError, "X is empty"),
    (np.zeros(3), GOOD_Y, ValueError, "X must be 2-D"),
    (np.zeros((5, 3, 1)), GOOD_Y, ValueError, "X must be 2-D"),
    (np.array([["a", "b", "c"]] * 5), GOOD_Y, TypeError, "must hold real numbers"),
    ([[1, 2], [3]], GOOD_Y, ValueError, "could not be read"),
    (np.zeros((5, 3), complex), GOOD_Y, TypeError, "real numbers"),
    (GOOD_X, np.zeros((5, 3)), ValueError, "3 columns but the network has 2 outputs"),
    (np.full((5, 3), 1e300), GOOD_Y, ValueError, r"after conversion to float32"),
])
def test_bad_data_is_refused_and_nothing_changes(net, X, y, exc, match):
    before = net.params.copy()
    tr = fastbp.Trainer(net, epochs=1)
    with pytest.raises(exc, match=match):
        tr.fit(X, y)
    np.testing.assert_array_equal(net.params, before)
    assert tr.step == 0


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([np.float32, np.float64, np.float16]), st.integers(1, 300),
       st.sampled_from(["C", "F", "strided"]),
       st.lists(st.tuples(st.one_of(st.sampled_from([0, -1]), st.integers(0, 10**6)),
                          st.sampled_from([np.nan, np.inf, -np.inf])),
                max_size=2), st.integers(0, 2**32 - 1))
def test_all_finite_is_numpys(dtype, n, order, bad, seed):
    """The finiteness check of X (a compiled pass over large C-contiguous float32/float64
    arrays, NumPy's min and max otherwise) agrees with ``np.isfinite(a).all()``: a NaN or an
    inf anywhere, every dtype and memory order (the pass taken from 1 element here)."""
    from fastbp import engine
    a = np.random.default_rng(seed).standard_normal((n, 7)).astype(dtype) * 100
    a = {"C": a, "F": np.asfortranarray(a), "strided": a[::2]}[order]
    for i, v in bad:
        a[np.unravel_index(i % a.size, a.shape)] = v
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "FINITE_PASS_MIN", 1)
        assert engine.all_finite(a) == bool(np.isfinite(a).all())


@pytest.mark.parametrize("at", [0, 1000, -1])
def test_a_large_X_with_one_nan_is_refused(net, at):
    """Above the size from which the compiled pass checks X, a single NaN is still found."""
    from fastbp import engine
    X = np.zeros((engine.FINITE_PASS_MIN // 3 + 1, 3), np.float32)
    X.reshape(-1)[at] = np.nan
    y = np.zeros(X.shape[0], np.int64)
    with pytest.raises(ValueError, match=r"X contains 1 non-finite value\(s\).*NaN at index"):
        fastbp.Trainer(net, epochs=1).fit(X, y)


def test_bad_validation_data(net):
    tr = fastbp.Trainer(net, epochs=1)
    before = net.params.copy()
    with pytest.raises(ValueError, match="X_val has 2 features"):
        tr.fit(GOOD_X, GOOD_Y, validation_data=(np.zeros((2, 2)), np.zeros(2, int)))
    with pytest.raises(TypeError, match="pair"):
        tr.fit(GOOD_X, GOOD_Y, validation_data=np.zeros((2, 3)))
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(learning_rate=0), ValueError, r"learning_rate must be a finite number in \(0, inf\]; got 0"),
    (dict(learning_rate=-1e-3), ValueError, "learning_rate"),
    (dict(learning_rate=float("nan")), ValueError, "learning_rate .* got nan"),
    (dict(learning_rate="0.1"), TypeError, "learning_rate must be a real number"),
    (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1; got 0"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an integer"),
    (dict(epochs=0), ValueError, "epochs must be an integer >= 1; got 0"),
    (dict(epochs=-3), ValueError, "epochs"),
    (dict(optimizer="adagrad"), ValueError, r"unknown optimizer 'adagrad'; expected one of"),
    (dict(loss="hinge"), ValueError, "unknown loss 'hinge'"),
    (dict(loss="binary_cross_entropy"), ValueError, "does not fit output_activation 'softmax'"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(beta2=-0.1), ValueError, "beta2"),
    (dict(eps=0), ValueError, "eps"),
    (dict(weight_decay=-1), ValueError, "weight_decay"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
])
def test_bad_trainer_arguments(net, kw, exc, match):
    with pytest.raises(exc, match=match):
        fastbp.Trainer(net, **kw)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(layer_sizes=[3]), ValueError, "at least two sizes"),
    (dict(layer_sizes=[3, 0, 2]), ValueError, r"layer_sizes\[1\] must be an integer >= 1; got 0"),
    (dict(layer_sizes=[3, 2.0]), TypeError, r"layer_sizes\[1\]"),
    (dict(layer_sizes="32"), TypeError, "sequence"),
    (dict(layer_sizes=[3, 2], activation="swish"), ValueError, "unknown activation 'swish'"),
    (dict(layer_sizes=[3, 2], output_activation="relu"), ValueError, "unknown output_activation 'relu'"),
    (dict(layer_sizes=[3, 2], init="xavier"), ValueError, "unknown init 'xavier'"),
    (dict(layer_sizes=[3, 2], dtype=np.int32), ValueError, "dtype must be float32 or float64; got int32"),
    (dict(layer_sizes=[3, 2], dtype="float16"), ValueError, "float16"),
])
def test_bad_network_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        fastbp.Network(**kw)


def test_bad_loss_for_targets():
    net = fastbp.Network([2, 3], output_activation="sigmoid")
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        net.gradients(np.zeros((2, 2)), np.full((2, 3), 2.0), loss="binary_cross_entropy")
    reg = fastbp.Network([2, 3])
    with pytest.raises(ValueError, match="1-D but the network has 3 outputs"):
        reg.gradients(np.zeros((2, 2)), np.zeros(2), loss="squared_error")


def test_inputs_of_any_layout_and_type_are_converted(net, rng):
    X = rng.standard_normal((6, 3))
    y = rng.integers(0, 2, 6)
    ref = net.forward(X)
    for variant in (np.asfortranarray(X), np.repeat(X, 2, axis=1)[:, ::2], X.tolist(),
                    X.astype(np.float64), X.astype(np.float32)):
        np.testing.assert_allclose(net.forward(variant), ref, rtol=1e-6)
    net2 = fastbp.Network([3, 4, 2], output_activation="softmax", seed=0)
    fastbp.Trainer(net, epochs=2, seed=0).fit(np.asfortranarray(X), y.tolist())
    fastbp.Trainer(net2, epochs=2, seed=0).fit(X, y)
    np.testing.assert_array_equal(net.params, net2.params)
    # integer and boolean features are numbers too
    assert net.forward(np.ones((2, 3), dtype=np.int8)).shape == (2, 2)
    assert net.forward(np.ones((2, 3), dtype=bool)).shape == (2, 2)
