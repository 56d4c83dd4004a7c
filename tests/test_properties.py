"""Properties over random shapes, dtypes and settings (hypothesis), checked against the naive twin."""
import numpy as np
from hypothesis import given, strategies as st

import fastbp
import naive

sizes = st.lists(st.integers(1, 24), min_size=2, max_size=4)
dtypes = st.sampled_from([np.float32, np.float64])
hidden = st.sampled_from(["identity", "relu", "leaky_relu", "sigmoid", "tanh"])


def _tol(dtype):
    return dict(rtol=2e-3, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)


@given(sizes=sizes, dtype=dtypes, act=hidden, n=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_forward_and_gradients_match_naive(sizes, dtype, act, n, seed):
    rng = np.random.default_rng(seed)
    net = fastbp.Network(sizes, activation=act, output_activation="identity", dtype=dtype, seed=seed)
    X = rng.standard_normal((n, sizes[0]))
    Y = rng.standard_normal((n, sizes[-1]))
    _, a = naive.forward(net.weights, net.biases, act, "identity", X)
    np.testing.assert_allclose(net.forward(X), a[-1], **_tol(dtype))
    li, _, gW, gb = naive.backprop(net.weights, net.biases, act, "identity", "squared_error", X, Y)
    loss, GW, GB = net.gradients(X, Y, loss="squared_error")
    np.testing.assert_allclose(loss, li.mean(), **_tol(dtype))
    for got, ref in zip(GW + GB, gW + gb):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, **_tol(dtype))


@given(k=st.integers(2, 12), n=st.integers(1, 50), batch=st.one_of(st.none(), st.integers(1, 60)),
       opt=st.sampled_from(["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"]),
       seed=st.integers(0, 2**16))
def test_one_epoch_matches_naive_training(k, n, batch, opt, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = rng.integers(0, k, n)
    net = fastbp.Network([4, 7, k], activation="relu", output_activation="softmax", dtype=np.float64, seed=seed)
    Ws, bs = [W.copy() for W in net.weights], [b.copy() for b in net.biases]
    h = fastbp.Trainer(net, optimizer=opt, learning_rate=0.01, batch_size=batch, epochs=1, shuffle=False).fit(X, y)
    ref = naive.train(Ws, bs, "relu", "softmax", "cross_entropy", X, y, naive.Optimizer(opt, 0.01), batch, 1)
    np.testing.assert_allclose(h.loss, ref, rtol=1e-10)
    for a, b in zip(net.weights + net.biases, Ws + bs):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)


@given(sizes=sizes, dtype=dtypes, n=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_softmax_outputs_are_distributions(sizes, dtype, n, seed):
    net = fastbp.Network(sizes, output_activation="softmax", dtype=dtype, seed=seed)
    out = net.forward(np.random.default_rng(seed).standard_normal((n, sizes[0])) * 10)
    assert out.dtype == dtype and np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5 if dtype == np.float32 else 1e-12)
