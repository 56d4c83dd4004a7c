"""Backpropagation against finite differences (float64) and against the naive twin."""
import numpy as np
import pytest

import fastbp
import naive
from conftest import targets_for

HIDDEN = ["identity", "relu", "leaky_relu", "sigmoid", "tanh"]
PAIRS = [("squared_error", "identity"), ("squared_error", "sigmoid"), ("squared_error", "softmax"),
         ("cross_entropy", "softmax"), ("cross_entropy", "identity"),
         ("binary_cross_entropy", "sigmoid"), ("binary_cross_entropy", "identity"),
         ("poisson", "exp")]
DEPTHS = [[4, 3], [4, 5, 3], [4, 6, 5, 3]]


def _net(sizes, hidden, out, seed=0):
    net = fastbp.Network(sizes, activation=hidden, output_activation=out, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:            # non-zero biases, so their gradients are exercised
        b[...] = rng.normal(0, 0.3, b.shape)
    return net


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("loss,out", PAIRS)
@pytest.mark.parametrize("sizes", DEPTHS, ids=lambda s: "-".join(map(str, s)))
def test_gradients_match_finite_differences(rng, hidden, loss, out, sizes):
    net = _net(sizes, hidden, out)
    X = rng.standard_normal((6, sizes[0]))
    Y = targets_for(rng, loss, 6, sizes[-1])
    value, gW, gb = net.gradients(X, Y, loss=loss)
    assert value == pytest.approx(net.loss(X, Y, loss=loss), rel=1e-12)
    h = 1e-6
    p = net.params
    num = np.empty_like(p)
    for i in range(p.size):
        old = p[i]
        p[i] = old + h
        up = net.loss(X, Y, loss=loss)
        p[i] = old - h
        down = net.loss(X, Y, loss=loss)
        p[i] = old
        num[i] = (up - down) / (2 * h)
    analytic = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in zip(gW, gb)])
    # relu kinks: a finite difference straddling z = 0 is wrong, never the analytic gradient;
    # inputs are continuous, so a kink within h is vanishingly rare
    np.testing.assert_allclose(analytic, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("hidden", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("loss,out", PAIRS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_deltas_and_gradients_match_naive(rng, hidden, loss, out, dtype):
    sizes = [7, 9, 8, 4]
    net = fastbp.Network(sizes, activation=hidden, output_activation=out, dtype=dtype, seed=3)
    X = rng.standard_normal((11, 7))
    Y = targets_for(rng, loss, 11, 4)
    li, deltas, gW, gb = naive.backprop(net.weights, net.biases, hidden, out, loss, X, Y)
    t = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for got, ref in zip(net.deltas(X, Y, loss=loss), deltas):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, **t)
    value, GW, GB = net.gradients(X, Y, loss=loss)
    assert value == pytest.approx(li.mean(), rel=t["rtol"])
    for a, b in zip(GW + GB, gW + gb):
        np.testing.assert_allclose(a, b, **t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,out,div", [("squared_error", "identity", 4.0), ("cross_entropy", "softmax", 1.0),
                                          ("poisson", "exp", 1.0)])
@pytest.mark.parametrize("sizes,n,train", [([7, 9, 4], 13, False), ([300, 260, 4], 13, False),
                                           ([7, 9, 4], 250, True)],
                         ids=["small", "parallel-l2", "row-blocks"])
def test_weighted_penalised_batch_gradients_match_naive(rng, dtype, loss, out, div, sizes, n, train):
    """The scikit-learn objective: (Σ w·ℓ / div + ½α Σ‖W‖²) / Σw, gradients (Aᵀ(w∘δ) + αW) / Σw.
    Threads inside the products, or the row-block step (250 rows: 4 blocks)."""
    from fastbp import engine
    from fastbp.kernels import train as K
    net = fastbp.Network(sizes, activation="tanh", output_activation=out, dtype=dtype, seed=4)
    alpha = 0.3
    assert K.step_blocks(sizes, n) == (4 if train else 1)
    X = rng.standard_normal((n, sizes[0]))
    Y = targets_for(rng, loss, n, sizes[-1])
    w = rng.uniform(0.1, 2.0, n)
    rows = rng.permutation(n).astype(np.int64)
    Xc, Yf, Yi, _ = net._prepare(X, Y, loss)
    ws = engine.Workspace(net._st, n, dtype, train=train)
    grads = np.empty_like(net.params)
    value, wsum = engine.batch_gradients(net.params, net._st, net._codes(loss), Xc, Yf, Yi, rows, grads,
                                         ws, sw=w.astype(dtype), alpha=alpha, loss_div=div)
    li, deltas, gW, gb = naive.backprop(net.weights, net.biases, "tanh", out, loss, Xc[rows].astype(float),
                                        np.asarray(Y)[rows])
    wr = w[rows]
    Ws = [np.asarray(W, float) for W in net.weights]
    expected = (wr @ li) / div + 0.5 * alpha * sum((W ** 2).sum() for W in Ws)
    t = dict(rtol=2e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert wsum == pytest.approx(wr.sum(), rel=1e-6)
    assert value == pytest.approx(expected, rel=t["rtol"])
    # naive.backprop averages over n: undo that, weight the rows, add the penalty, divide by Σw
    _, a = naive.forward(net.weights, net.biases, "tanh", out, Xc[rows].astype(float))
    got_W, got_b = net._views(grads, 0), net._views(grads, 1)
    for l in range(len(Ws)):
        dw = deltas[l] * wr[:, None]
        np.testing.assert_allclose(got_W[l], (a[l].T @ dw + alpha * Ws[l]) / wr.sum(), **t)
        np.testing.assert_allclose(got_b[l], dw.sum(axis=0) / wr.sum(), **t)
        # the squared gradient norm of the data term (before the penalty)
        norm = ((a[l].T @ dw / wr.sum()) ** 2).sum() + ((dw.sum(axis=0) / wr.sum()) ** 2).sum()
        assert ws.gsq[l] == pytest.approx(norm, rel=t["rtol"])


@pytest.mark.parametrize("rows,blocks,last,used", [
    (32, 1, 32, 1), (63, 1, 63, 1), (64, 2, 64, 2), (64, 2, 40, 1), (111, 2, 63, 1),
    (112, 2, 112, 2), (200, 2, 200, 2), (224, 4, 200, 3), (224, 4, 64, 2), (224, 4, 63, 1)])
def test_row_blocks_by_the_batch_size(rows, blocks, last, used):
    # blocks of at least BLOCK_ROWS (56) rows, a power of two of them, or two of at least
    # PAIR_ROWS (32); a short last batch takes fewer; large products turn the step off
    from fastbp.kernels import train as K
    assert K.step_blocks([64, 128, 128, 10], rows) == blocks
    assert K.row_blocks(last, blocks) == used
    assert K.step_blocks([784, 4096, 10], rows) == 1        # its products take the threads
