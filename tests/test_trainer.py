"""Training end to end against the naive twin, history, state, divergence."""
import numpy as np
import pytest

import fastbp
import naive

OPTS = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"]


def _pair(sizes, hidden, out, seed=0):
    net = fastbp.Network(sizes, activation=hidden, output_activation=out, dtype=np.float64, seed=seed)
    return net, [W.copy() for W in net.weights], [b.copy() for b in net.biases]


@pytest.mark.parametrize("optimizer", OPTS)
@pytest.mark.parametrize("batch_size", [None, 1, 7])
def test_fit_matches_naive_training(rng, optimizer, batch_size):
    X = rng.standard_normal((23, 5))
    y = rng.integers(0, 3, 23)
    net, Ws, bs = _pair([5, 6, 3], "tanh", "softmax")
    kw = dict(momentum=0.8, beta1=0.85, beta2=0.99, eps=1e-7, weight_decay=0.01)
    tr = fastbp.Trainer(net, loss="cross_entropy", optimizer=optimizer, learning_rate=0.05,
                        batch_size=batch_size, epochs=3, shuffle=True, seed=7, **kw)
    g = np.random.default_rng(7)
    perms = [g.permutation(23) for _ in range(3)]
    hist = tr.fit(X, y)
    opt = naive.Optimizer(optimizer, 0.05, **{"momentum": 0.8, "beta1": 0.85, "beta2": 0.99,
                                               "eps": 1e-7, "weight_decay": 0.01})
    ref_losses = naive.train(Ws, bs, "tanh", "softmax", "cross_entropy", X, y, opt, batch_size, 3, perms)
    np.testing.assert_allclose(hist.loss, ref_losses, rtol=1e-10)
    for a, b in zip(net.weights + net.biases, Ws + bs):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert tr.step == opt.t


def test_history_shapes_and_norms(rng):
    X, y = rng.standard_normal((40, 4)), rng.standard_normal(40)
    net = fastbp.Network([4, 8, 8, 1], dtype=np.float64, seed=1)
    tr = fastbp.Trainer(net, loss="squared_error", optimizer="sgd", learning_rate=0.01,
                        batch_size=40, epochs=3, shuffle=False)
    Xv, yv = rng.standard_normal((9, 4)), rng.standard_normal(9)
    h = tr.fit(X, y, validation_data=(Xv, yv))
    assert h.grad_norm.shape == h.weight_norm.shape == (3, 3)
    assert len(h.loss) == len(h.val_loss) == len(h.seconds) == 3 and h.epochs == 3
    assert h.val_loss[-1] == pytest.approx(net.loss(Xv, yv))
    norms = [np.sqrt((W ** 2).sum() + (b ** 2).sum()) for W, b in zip(net.weights, net.biases)]
    np.testing.assert_allclose(h.weight_norm[-1], norms)
    # full batch: each epoch is one step, so grad_norm is that step's gradient norm; check epoch 1
    net2 = fastbp.Network([4, 8, 8, 1], dtype=np.float64, seed=1)
    _, gW, gb = net2.gradients(X, y)
    np.testing.assert_allclose(h.grad_norm[0], [np.sqrt((a ** 2).sum() + (b ** 2).sum()) for a, b in zip(gW, gb)])


def test_two_fits_equal_one_longer_fit(rng):
    X, y = rng.standard_normal((30, 3)), rng.integers(0, 2, 30)
    nets = [fastbp.Network([3, 5, 2], output_activation="softmax", seed=4) for _ in range(2)]
    a = fastbp.Trainer(nets[0], optimizer="adam", batch_size=8, epochs=4, seed=2)
    b = fastbp.Trainer(nets[1], optimizer="adam", batch_size=8, epochs=2, seed=2)
    a.fit(X, y)
    b.fit(X, y)
    b.fit(X, y)
    np.testing.assert_array_equal(nets[0].params, nets[1].params)


def test_training_learns_and_keeps_dtype(rng):
    X = rng.standard_normal((300, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    net = fastbp.Network([2, 16, 2], activation="tanh", output_activation="softmax", seed=0)
    h = fastbp.Trainer(net, optimizer="adam", learning_rate=0.02, batch_size=16, epochs=60, seed=0).fit(X, y)
    assert h.loss[-1] < 0.3 * h.loss[0]
    assert (net.predict(X).argmax(1) == y).mean() > 0.9
    assert net.params.dtype == np.float32 and net.predict(X).dtype == np.float32


def test_one_hot_targets_equal_integer_labels(rng):
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 4, 20)
    a = fastbp.Network([3, 4], output_activation="softmax", dtype=np.float64, seed=0)
    b = fastbp.Network([3, 4], output_activation="softmax", dtype=np.float64, seed=0)
    fastbp.Trainer(a, batch_size=5, seed=0, epochs=2).fit(X, y)
    fastbp.Trainer(b, batch_size=5, seed=0, epochs=2).fit(X, naive.one_hot(y, 4))
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12)


def test_divergence_stops_with_last_finite_parameters(rng):
    X = rng.standard_normal((64, 4)) * 10
    y = rng.standard_normal(64) * 10
    net = fastbp.Network([4, 16, 1], dtype=np.float32, seed=0)
    tr = fastbp.Trainer(net, loss="squared_error", optimizer="sgd", learning_rate=5.0,
                        batch_size=8, epochs=50, shuffle=False)
    with pytest.raises(fastbp.TrainingDivergedError, match="diverged") as e:
        tr.fit(X, y)
    assert isinstance(e.value, FloatingPointError)
    assert np.isfinite(net.params).all()
    # replaying the same number of steps from the start reproduces these parameters exactly
    steps = tr.step
    net2 = fastbp.Network([4, 16, 1], dtype=np.float32, seed=0)
    tr2 = fastbp.Trainer(net2, loss="squared_error", optimizer="sgd", learning_rate=5.0,
                         batch_size=8, epochs=steps // 8 or 1, shuffle=False)
    if steps % 8 == 0 and steps >= 8:
        tr2.fit(X, y)
        np.testing.assert_array_equal(net2.params, net.params)


def test_divergence_in_the_update_restores_previous_step():
    # a finite loss and gradient whose update overflows float32: the params must not be inf
    net = fastbp.Network([1, 1], dtype=np.float32)
    net.weights = [np.array([[3e38]])]
    net.biases = [np.zeros(1)]
    before = net.params.copy()
    tr = fastbp.Trainer(net, loss="squared_error", optimizer="sgd", learning_rate=1e30,
                        batch_size=1, epochs=1, shuffle=False)
    with pytest.raises(fastbp.TrainingDivergedError, match="updated parameters"):
        tr.fit([[1e-20]], [1.0])
    np.testing.assert_array_equal(net.params, before)


def test_callback_can_stop(rng):
    X, y = rng.standard_normal((10, 2)), rng.standard_normal(10)
    net = fastbp.Network([2, 1], dtype=np.float64)
    seen = []
    tr = fastbp.Trainer(net, loss="squared_error", epochs=10, callback=lambda e, h: seen.append(e) or e == 2)
    assert tr.fit(X, y).epochs == 3 and seen == [0, 1, 2]


def test_state_round_trip_continues_bitwise_and_refuses_other_configs():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((97, 6))
    y = rng.integers(0, 3, 97)

    def make(lr=0.01):
        net = fastbp.Network([6, 8, 3], output_activation="softmax", seed=0)
        return fastbp.Trainer(net, optimizer="adam", learning_rate=lr, batch_size=10, epochs=2, seed=1)
    full = make()
    full.fit(X, y)
    full.fit(X, y)
    first = make()
    first.fit(X, y)
    arrays, info = first.state()
    second = make()
    second.load_state(arrays, info)
    second.fit(X, y)
    assert np.array_equal(second.network.params, full.network.params) and second.step == full.step
    other = make(lr=0.5)
    before = other.network.params.copy()
    with pytest.raises(ValueError, match="learning_rate"):
        other.load_state(arrays, info)
    assert np.array_equal(other.network.params, before)          # refused: nothing changed


def test_stop_mid_epoch_then_resume_is_bitwise():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((500, 5))
    y = rng.integers(0, 4, 500)

    def make():
        net = fastbp.Network([5, 12, 4], output_activation="softmax", dtype=np.float64, seed=0)
        return fastbp.Trainer(net, optimizer="nesterov", learning_rate=0.05, batch_size=4, epochs=3, seed=1)
    ref = make()
    ref_hist = ref.fit(X, y)
    chunked = make()
    chunked.fit(X, y, stop=lambda: False)            # polled, never stopping: the same numbers
    assert np.array_equal(chunked.network.params, ref.network.params)
    first = make()
    polls = []
    h = first.fit(X, y, stop=lambda: polls.append(1) or len(polls) == 3)   # stop in epoch 1
    assert h.interrupted and h.epochs == 0 and first.step == 3 * fastbp.Trainer.STOP_STEPS
    arrays, info = first.state()
    second = make()
    second.load_state(arrays, info)
    with pytest.raises(ValueError, match="interrupted epoch"):
        second.fit(X[:100], y[:100])
    h2 = second.fit(X, y)
    assert np.array_equal(second.network.params, ref.network.params) and second.step == ref.step
    np.testing.assert_allclose(h2.loss, ref_hist.loss, rtol=1e-12)
