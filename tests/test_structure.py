"""Structured networks: skip connections, batch/layer normalisation, dropout, per-layer
activations.

Two parts:

* ``test_reference_*``: the slow NumPy reference (naive.structured_*) checked on its own
  against float64 central finite differences and against torch autograd / torch training
  (tests/torch_twin.py).  These need nothing from fastbp's implementation
  (``pytest -k test_reference_``).
* everything else: fastbp (Network(skips=..., normalization=..., dropout=...), state_dict,
  load_state_dict, gradients(as_dict=True), the Trainer with batch norm and dropout,
  fastbp.engine.dropout_keep) against the reference and against torch.
"""
import textwrap

import numpy as np
import pytest

import fastbp
from subprocess_run import run_with_threads
import naive
from state_dicts import copy, dropout_masks, finite_differences, net_and_spec, same, sd64
from conftest import targets_for

PAIRS = [("cross_entropy", "softmax"), ("squared_error", "identity"),
         ("squared_error", "sigmoid"), ("binary_cross_entropy", "sigmoid"), ("poisson", "exp")]

# the structures, as Network keyword arguments (without output_activation, dtype, seed)
CASES = {
    # skips of spans 2, 2, 3 and 1 (a_0 = X into a_2), a mixed activation list
    "skips": dict(layer_sizes=[4, 6, 4, 6, 6, 3], activation=["relu", "leaky_relu", "sigmoid", "tanh"],
                  skips=[(0, 2), (1, 3), (1, 4), (3, 4)]),
    "residual": dict(layer_sizes=[5, 7, 7, 7, 3], activation="tanh", skips="residual"),
    "batch": dict(layer_sizes=[4, 6, 5, 3], activation=["tanh", "sigmoid"], normalization="batch"),
    "layer": dict(layer_sizes=[4, 6, 5, 3], activation=["leaky_relu", "identity"],
                  normalization="layer"),
    "dropout": dict(layer_sizes=[4, 6, 5, 3], activation="tanh", dropout=[0.3, 0.5]),
    # everything at once: every activation, both normalisations and none, dropout on some
    "all": dict(layer_sizes=[4, 6, 4, 6, 6, 6, 3],
                activation=["relu", "leaky_relu", "sigmoid", "tanh", "identity"],
                normalization=["batch", None, "layer", "batch", "layer"],
                dropout=[0.2, 0.0, 0.4, 0.0, 0.3],
                skips=[(0, 2), (1, 3), (1, 4), (3, 5), (4, 5)]),
}


def _spec(case, out):
    return naive.make_spec(output_activation=out, **CASES[case])




def _keyed_masks(spec, seed=0):
    """masks(step, rows): a fixed function of (step, row), like fastbp's dropout_keep."""
    def masks(step, rows):
        out = {}
        for l, p in enumerate(spec.dropout):
            if p > 0:
                u = np.random.default_rng([seed, step, l]).uniform(size=(1000, spec.sizes[l + 1]))
                out[l] = u[rows] >= p
        return out
    return masks




# == the reference on its own (passes without the implementation) =============================
def test_reference_plain_spec_is_the_old_reference(rng):
    spec = naive.make_spec([5, 7, 6, 3], activation="tanh", output_activation="softmax")
    sd = naive.init_state_dict(spec, rng)
    X = rng.standard_normal((9, 5))
    y = rng.integers(0, 3, 9)
    Ws = [sd[f"layers.{l}.weight"] for l in range(3)]
    bs = [sd[f"layers.{l}.bias"] for l in range(3)]
    _, a = naive.forward(Ws, bs, "tanh", "softmax", X)
    for mode in ("train", "eval"):
        np.testing.assert_array_equal(naive.structured_forward(sd, X, spec, mode)["a"][-1], a[-1])
    li, _, gW, gb = naive.backprop(Ws, bs, "tanh", "softmax", "cross_entropy", X, y)
    value, g = naive.structured_gradients(sd, X, y, spec, "cross_entropy")
    assert value == pytest.approx(li.mean(), rel=1e-14)
    for l in range(3):
        np.testing.assert_allclose(g[f"layers.{l}.weight"], gW[l], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g[f"layers.{l}.bias"], gb[l], rtol=1e-13, atol=1e-15)


def test_reference_spec_expands_residual_and_broadcasts():
    s = naive.make_spec([5, 7, 7, 7, 3], activation="tanh", skips="residual",
                        normalization="batch", dropout=0.1)
    assert s.skips == [(1, 2), (2, 3)]           # (0, 1): widths 5 and 7 differ; never the output
    assert s.hidden == ["tanh"] * 3 and s.norms == ["batch"] * 3 and s.dropout == [0.1] * 3
    s = naive.make_spec([6, 6, 6, 6], skips="residual")
    assert s.skips == [(0, 1), (1, 2)]
    assert naive.trainable_keys(naive.make_spec([3, 4, 4, 2], normalization=[None, "layer"])) == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
        "norms.1.weight", "norms.1.bias", "layers.2.weight", "layers.2.bias"]


@pytest.mark.parametrize("loss,out", PAIRS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_gradients_match_finite_differences(rng, case, loss, out):
    spec = _spec(case, out)
    sd = naive.init_state_dict(spec, rng)
    n = 7
    X = rng.standard_normal((n, spec.sizes[0]))
    Y = targets_for(rng, loss, n, spec.sizes[-1])
    masks = dropout_masks(rng, spec, n)
    value, g = naive.structured_gradients(sd, X, Y, spec, loss, masks=masks)
    f = lambda: naive.structured_loss(sd, X, Y, spec, loss, masks=masks)
    assert value == pytest.approx(f(), rel=1e-14)
    num = finite_differences(f, sd, naive.trainable_keys(spec))
    assert sorted(g) == sorted(num)
    for key in g:
        np.testing.assert_allclose(g[key], num[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_reference_batch_norm_eval_gradients_match_finite_differences(rng):
    spec = _spec("all", "softmax")
    sd = naive.init_state_dict(spec, rng)
    X = rng.standard_normal((5, 4))
    y = rng.integers(0, 3, 5)
    _, g = naive.structured_gradients(sd, X, y, spec, "cross_entropy", mode="eval")
    num = finite_differences(lambda: naive.structured_loss(sd, X, y, spec, "cross_entropy", "eval"),
                              sd, naive.trainable_keys(spec))
    for key in g:
        np.testing.assert_allclose(g[key], num[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_reference_dropout_masks_scale_the_survivors(rng):
    spec = naive.make_spec([3, 5, 2], activation="identity", dropout=0.25)
    sd = naive.init_state_dict(spec, rng)
    X = rng.standard_normal((4, 3))
    keep = rng.uniform(size=(4, 5)) >= 0.25
    a = naive.structured_forward(sd, X, spec, "train", {0: keep})["a"][1]
    plain = naive.structured_forward(sd, X, spec, "eval")["a"][1]
    np.testing.assert_allclose(a, np.where(keep, plain / 0.75, 0), rtol=1e-15)


@pytest.mark.parametrize("loss,out", [("cross_entropy", "softmax"), ("squared_error", "identity"),
                                      ("binary_cross_entropy", "sigmoid"), ("poisson", "exp")])
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_matches_torch(rng, case, loss, out):
    """Training-mode loss and gradients (autograd), the running statistics after a training
    forward, and the eval-mode forward."""
    torch = pytest.importorskip("torch")
    import torch_twin
    spec = _spec(case, out)
    sd = naive.init_state_dict(spec, rng)
    n = 9
    X = rng.standard_normal((n, spec.sizes[0]))
    Y = targets_for(rng, loss, n, spec.sizes[-1])
    masks = dropout_masks(rng, spec, n)
    twin = torch_twin.Twin(sd, spec)
    want_value, want = torch_twin.gradients(twin, X, Y, loss, masks)
    value, g = naive.structured_gradients(sd, X, Y, spec, loss, masks=masks)
    assert value == pytest.approx(want_value, rel=1e-12)
    assert sorted(g) == sorted(want)
    for key in g:
        np.testing.assert_allclose(g[key], want[key], rtol=1e-10, atol=1e-13, err_msg=key)
    # eval mode: running statistics, no dropout
    np.testing.assert_allclose(naive.structured_forward(sd, X, spec, "eval")["a"][-1],
                               twin.predict(X), rtol=1e-12, atol=1e-14)
    # one training forward updates torch's running statistics (momentum 0.1, unbiased var)
    twin.train()
    with torch.no_grad():
        twin(torch.from_numpy(X), masks)
    got = twin.numpy_state_dict()
    new = naive.running_update(sd, X, spec, masks)
    assert sorted(new) == sorted(k for k in got if "running" in k)
    for key, v in new.items():
        np.testing.assert_allclose(v, got[key], rtol=1e-12, atol=1e-15, err_msg=key)


@pytest.mark.parametrize("optimizer,wd", [("sgd", 0.0), ("adam", 0.01), ("momentum", 0.0)])
@pytest.mark.parametrize("case", ["all", "residual"])
def test_reference_training_matches_torch(rng, case, optimizer, wd):
    pytest.importorskip("torch")
    import torch_twin
    spec = _spec(case, "softmax")
    sd = naive.init_state_dict(spec, rng)
    X = rng.standard_normal((22, spec.sizes[0]))
    y = rng.integers(0, 3, 22)
    masks = _keyed_masks(spec)
    start = naive.as_float64(sd)
    twin = torch_twin.Twin(sd, spec)
    lr = 0.05 if optimizer != "adam" else 0.01
    want = torch_twin.train(twin, X, y, "cross_entropy", optimizer, lr, batch_size=8, epochs=3,
                            weight_decay=wd, masks=masks)
    got = naive.structured_train(sd, X, y, spec, "cross_entropy",
                                 naive.Optimizer(optimizer, lr, weight_decay=wd), 8, 3, masks)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    t = twin.numpy_state_dict()
    assert sorted(t) == sorted(sd)
    assert max(np.abs(t[k] - start[k]).max() for k in t) > 1e-3         # training moved
    for key in sd:
        np.testing.assert_allclose(sd[key], t[key], rtol=1e-9, atol=1e-12, err_msg=key)


# == fastbp against the reference (needs the implementation) ==================================
def _net(case_or_kw, out="softmax", dtype=np.float64, seed=0, perturb=True):
    kw = CASES[case_or_kw] if isinstance(case_or_kw, str) else case_or_kw
    return net_and_spec(kw, out, dtype, seed, perturb)








@pytest.mark.parametrize("case", sorted(CASES))
def test_state_dict_keys_shapes_initial_values_and_layout(case):
    net, spec = _net(case, perturb=False)
    sd = net.state_dict()
    assert sorted(sd) == sorted(naive.state_keys(spec))
    for l in range(spec.n_layers):
        assert sd[f"layers.{l}.weight"].shape == (spec.sizes[l], spec.sizes[l + 1])
        assert sd[f"layers.{l}.bias"].shape == (spec.sizes[l + 1],)
        np.testing.assert_array_equal(sd[f"layers.{l}.weight"], net.weights[l])
        np.testing.assert_array_equal(sd[f"layers.{l}.bias"], net.biases[l])
    for l, kind in enumerate(spec.norms):
        if kind is not None:
            np.testing.assert_array_equal(sd[f"norms.{l}.weight"], np.ones(spec.sizes[l + 1]))
            np.testing.assert_array_equal(sd[f"norms.{l}.bias"], np.zeros(spec.sizes[l + 1]))
        if kind == "batch":
            np.testing.assert_array_equal(sd[f"norms.{l}.running_mean"], np.zeros(spec.sizes[l + 1]))
            np.testing.assert_array_equal(sd[f"norms.{l}.running_var"], np.ones(spec.sizes[l + 1]))
    # γ, β live in the flat buffer after their layer's W and b
    net, spec = _net(case)
    sd = net.state_dict()
    flat = np.concatenate([np.ravel(sd[k]) for k in naive.trainable_keys(spec)])
    assert flat.shape == net.params.shape
    np.testing.assert_array_equal(flat, net.params)


def test_state_dict_weights_are_views_of_params():
    net, _ = _net("all")
    sd = net.state_dict()
    W = sd["layers.0.weight"]
    assert W.flags.writeable and np.shares_memory(W, net.params)
    W[1, 2] = 42.0
    assert net.weights[0][1, 2] == 42.0 and net.params[1 * 6 + 2] == 42.0
    sd["layers.2.bias"][:] = -3.0
    np.testing.assert_array_equal(net.biases[2], -3.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_state_dict_round_trip(rng, dtype):
    net, spec = _net("all", dtype=dtype)
    new = {k: v.astype(dtype) for k, v in naive.init_state_dict(spec, rng).items()}
    net.load_state_dict(new)
    got = net.state_dict()
    assert same(got, new)
    other, _ = _net("all", dtype=dtype, seed=9)
    other.load_state_dict(got)
    X = rng.standard_normal((6, 4)).astype(dtype)
    assert other.predict(X).tobytes() == net.predict(X).tobytes()
    assert other.params.tobytes() == net.params.tobytes()


def _bad_state_dicts(sd):
    missing = dict(sd)
    del missing["norms.0.running_var"]
    unknown = dict(sd, **{"norms.1.weight": np.ones(4)})          # layer 1 is not normalised
    shape = dict(sd, **{"norms.2.bias": np.zeros(5)})
    wshape = dict(sd, **{"layers.0.weight": sd["layers.0.weight"].T.copy()})
    nan = dict(sd, **{"layers.3.bias": np.full(6, np.nan)})
    return [("missing", missing, "norms.0.running_var"), ("unknown", unknown, "norms.1.weight"),
            ("shape", shape, "norms.2.bias"), ("weight shape", wshape, "layers.0.weight"),
            ("nan", nan, "layers.3.bias")]


@pytest.mark.parametrize("which", range(5))
def test_load_state_dict_refuses_bad_input_and_changes_nothing(rng, which):
    net, spec = _net("all")
    before = copy(net.state_dict())
    # every good entry changed too, so a partial write would show
    sd = {k: v + 0.5 for k, v in naive.init_state_dict(spec, rng).items()}
    _, bad, key = _bad_state_dicts(sd)[which]
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        net.load_state_dict(bad)
    assert same(net.state_dict(), before)


def test_load_state_dict_refuses_a_non_mapping():
    net, _ = _net("batch")
    with pytest.raises((TypeError, ValueError)):
        net.load_state_dict([np.zeros(3)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_in_eval_mode_matches_naive(rng, case):
    net, spec = _net(case)
    X = rng.standard_normal((13, spec.sizes[0]))
    want = naive.structured_forward(sd64(net), X, spec, "eval")["a"][-1]
    out = net.forward(X)
    assert out.dtype == np.float64 and out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
    assert net.predict(X).tobytes() == out.tobytes()
    # a single row is fine for inference (running statistics)
    np.testing.assert_allclose(net.predict(X[:1]), want[:1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss,out", PAIRS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_as_dict_match_naive(rng, case, loss, out):
    """Training-mode normalisation over all of X, no dropout, running statistics unchanged."""
    net, spec = _net(case, out)
    n = 11
    X = rng.standard_normal((n, spec.sizes[0]))
    Y = targets_for(rng, loss, n, spec.sizes[-1])
    before = copy(net.state_dict())
    value, g = net.gradients(X, Y, loss=loss, as_dict=True)
    assert same(net.state_dict(), before)                 # running statistics untouched
    want_value, want = naive.structured_gradients(sd64(net), X, Y, spec, loss)   # no masks
    assert value == pytest.approx(want_value, rel=1e-10)
    assert sorted(g) == sorted(want) == sorted(naive.trainable_keys(spec))
    for key in want:
        assert g[key].shape == want[key].shape and g[key].dtype == np.float64
        np.testing.assert_allclose(g[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)
    # without as_dict: today's (loss, [dW], [db])
    value2, dW, db = net.gradients(X, Y, loss=loss)
    assert value2 == value and len(dW) == len(db) == spec.n_layers
    for l in range(spec.n_layers):
        np.testing.assert_array_equal(dW[l], g[f"layers.{l}.weight"])
        np.testing.assert_array_equal(db[l], g[f"layers.{l}.bias"])


@pytest.mark.parametrize("case", ["all", "batch", "layer", "skips"])
def test_gradients_float32(rng, case):
    net, spec = _net(case, "softmax", dtype=np.float32)
    X = rng.standard_normal((16, spec.sizes[0])).astype(np.float32)
    y = rng.integers(0, 3, 16)
    value, g = net.gradients(X, y, loss="cross_entropy", as_dict=True)
    want_value, want = naive.structured_gradients(sd64(net), X, y, spec, "cross_entropy")
    assert value == pytest.approx(want_value, rel=1e-4)
    for key in want:
        assert g[key].dtype == np.float32
        np.testing.assert_allclose(g[key], want[key], rtol=2e-3, atol=2e-4, err_msg=key)
    np.testing.assert_allclose(net.predict(X),
                               naive.structured_forward(sd64(net), X, spec, "eval")["a"][-1],
                               rtol=1e-4, atol=1e-5)


def test_gradients_match_finite_differences_of_the_flat_buffer(rng):
    """fastbp on its own: central differences of net.gradients' (training-mode) loss over
    every entry of net.params, against the dict laid out in the flat order."""
    net, spec = _net("all", "softmax")
    X = rng.standard_normal((7, 4))
    y = rng.integers(0, 3, 7)
    _, g = net.gradients(X, y, loss="cross_entropy", as_dict=True)
    analytic = np.concatenate([g[k].ravel() for k in naive.trainable_keys(spec)])
    p, h = net.params, 1e-6
    num = np.empty_like(p)
    for i in range(p.size):
        old = p[i]
        p[i] = old + h
        up = net.gradients(X, y, loss="cross_entropy")[0]
        p[i] = old - h
        down = net.gradients(X, y, loss="cross_entropy")[0]
        p[i] = old
        num[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(analytic, num, rtol=1e-5, atol=1e-7)


# -- training ---------------------------------------------------------------------------------
TRAIN_KW = dict(layer_sizes=[5, 8, 8, 8, 3], activation=["relu", "tanh", "leaky_relu"],
                normalization=["batch", "layer", "batch"], skips="residual")


def _trainer_pair(rng, dropout, optimizer, wd, n=37):
    kw = dict(TRAIN_KW, dropout=dropout)
    net, spec = _net(kw, "softmax", seed=3)
    X = rng.standard_normal((n, 5))
    y = rng.integers(0, 3, n)
    lr = 0.01 if optimizer.startswith("adam") else 0.05
    tr = fastbp.Trainer(net, loss="cross_entropy", optimizer=optimizer, learning_rate=lr,
                        batch_size=8, epochs=3, shuffle=False, weight_decay=wd, seed=2)
    return net, spec, X, y, tr, lr


def _fastbp_masks(tr, spec):
    def masks(step, rows):
        return {l: fastbp.engine.dropout_keep(tr.dropout_seed, step, rows, l, spec.sizes[l + 1], p)
                for l, p in enumerate(spec.dropout) if p > 0}
    return masks


@pytest.mark.parametrize("ref", ["naive", "torch"])
@pytest.mark.parametrize("dropout", [0.0, [0.3, 0.0, 0.5]], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("optimizer,wd", [("sgd", 0.0), ("sgd", 0.05), ("adam", 0.01)])
def test_training_matches_naive_and_torch(rng, ref, dropout, optimizer, wd):
    """Same initial parameters, shuffle=False, batches of 8 (the last of 5), 3 epochs: the
    parameters, the running statistics and the epoch losses after training.  Dropout masks:
    fastbp.engine.dropout_keep keyed by the trainer's dropout_seed, the optimizer step and the
    batch's data row indices."""
    net, spec, X, y, tr, lr = _trainer_pair(rng, dropout, optimizer, wd)
    start = sd64(net)
    masks = _fastbp_masks(tr, spec) if dropout else None
    if ref == "torch":
        pytest.importorskip("torch")
        import torch_twin
        twin = torch_twin.Twin(start, spec)
        want_losses = torch_twin.train(twin, X, y, "cross_entropy", optimizer, lr, batch_size=8,
                                       epochs=3, weight_decay=wd, masks=masks)
        want = twin.numpy_state_dict()
    else:
        want = copy(start)
        want_losses = naive.structured_train(want, X, y, spec, "cross_entropy",
                                             naive.Optimizer(optimizer, lr, weight_decay=wd),
                                             8, 3, masks)
    h = tr.fit(X, y)
    assert tr.step == 3 * 5
    got = net.state_dict()
    assert sorted(got) == sorted(want)
    assert max(np.abs(want[k] - start[k]).max() for k in want) > 1e-3      # training moved
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(h.loss, want_losses, rtol=1e-9)
    # predict uses the running statistics it learnt
    np.testing.assert_allclose(net.predict(X),
                               naive.structured_forward(want, X, spec, "eval")["a"][-1],
                               rtol=1e-9, atol=1e-12)


def test_dropout_masks_follow_the_data_rows_when_shuffled(rng):
    """shuffle=True, full batches: each step's batch is a permutation of all rows, and batch
    statistics do not care about the order, so training equals the reference with the masks
    of rows 0..n-1 — but only if a mask is keyed by the data row, not by its batch position."""
    kw = dict(TRAIN_KW, dropout=[0.3, 0.0, 0.5])
    net, spec = _net(kw, "softmax", seed=5)
    start = sd64(net)
    X = rng.standard_normal((24, 5))
    y = rng.integers(0, 3, 24)
    tr = fastbp.Trainer(net, optimizer="sgd", learning_rate=0.1, batch_size=None, epochs=3,
                        shuffle=True, seed=7)
    h = tr.fit(X, y)
    want = copy(start)
    losses = naive.structured_train(want, X, y, spec, "cross_entropy", naive.Optimizer("sgd", 0.1),
                                    None, 3, _fastbp_masks(tr, spec))
    got = net.state_dict()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(h.loss, losses, rtol=1e-9)


def test_dropout_keep_is_keyed_by_seed_step_row_and_layer():
    keep = fastbp.engine.dropout_keep
    rows = np.arange(4000, dtype=np.int64)
    m = keep(7, 1, rows, 0, 50, 0.3)
    assert m.dtype == np.bool_ and m.shape == (4000, 50)
    assert abs(m.mean() - 0.7) < 0.01
    assert abs(m.mean(axis=0) - 0.7).max() < 0.05       # every unit, not just on average
    np.testing.assert_array_equal(keep(7, 1, rows, 0, 50, 0.3), m)              # deterministic
    # a row's mask depends on its data row index only, not on the batch around it
    some = np.array([3999, 5, 17, 5], dtype=np.int64)
    np.testing.assert_array_equal(keep(7, 1, some, 0, 50, 0.3), m[some])
    for other in (keep(8, 1, rows, 0, 50, 0.3), keep(7, 2, rows, 0, 50, 0.3),
                  keep(7, 1, rows, 1, 50, 0.3)):
        assert 0.3 < (other != m).mean() < 0.5          # independent draws differ in ~42%
    assert keep(7, 1, rows[:10], 0, 5, 0.0).all()
    assert abs(keep(7, 3, rows, 2, 50, 0.8).mean() - 0.2) < 0.01


def test_trainer_dropout_seed_is_an_int_from_the_seed():
    kw = dict(TRAIN_KW, dropout=0.2)
    a, b, c = (fastbp.Trainer(fastbp.Network(**kw, seed=0), seed=s) for s in (4, 4, 5))
    assert isinstance(a.dropout_seed, int)
    assert a.dropout_seed == b.dropout_seed != c.dropout_seed


def test_running_statistics_of_one_full_batch_step(rng):
    net, spec = _net(TRAIN_KW, "softmax", seed=1)
    start = sd64(net)
    X = rng.standard_normal((20, 5))
    y = rng.integers(0, 3, 20)
    h = fastbp.Trainer(net, optimizer="sgd", learning_rate=0.1, batch_size=None,
                       epochs=1).fit(X, y, validation_data=(X[:7], y[:7]))
    want = naive.running_update(start, X, spec)
    got = net.state_dict()
    for key, v in want.items():
        np.testing.assert_allclose(got[key], v, rtol=1e-12, atol=1e-15, err_msg=key)
    # one column per dense layer; γ, β in their layer's norms
    _, g = naive.structured_gradients(start, X, y, spec, "cross_entropy")
    sd = sd64(net)
    assert h.grad_norm.shape == h.weight_norm.shape == (1, spec.n_layers)
    for l in range(spec.n_layers):
        keys = [k for k in naive.trainable_keys(spec) if k.split(".")[1] == str(l)]
        assert len(keys) == (4 if l < 3 else 2)
        assert h.grad_norm[0, l] == pytest.approx(np.sqrt(sum((g[k] ** 2).sum() for k in keys)),
                                                  rel=1e-9)
        assert h.weight_norm[0, l] == pytest.approx(np.sqrt(sum((sd[k] ** 2).sum() for k in keys)),
                                                    rel=1e-12)
    # the validation loss uses the running statistics after the step
    assert h.val_loss[0] == pytest.approx(
        naive.structured_loss(sd, X[:7], y[:7], spec, "cross_entropy", mode="eval"), rel=1e-10)


def test_gradients_and_predict_leave_running_statistics_alone(rng):
    net, spec = _net(TRAIN_KW, "softmax")
    X = rng.standard_normal((12, 5))
    before = copy(net.state_dict())
    net.gradients(X, rng.integers(0, 3, 12), loss="cross_entropy", as_dict=True)
    net.gradients(X, rng.integers(0, 3, 12), loss="cross_entropy")
    net.predict(X)
    net.forward(X)
    assert same(net.state_dict(), before)


def test_weight_decay_applies_to_gamma_and_beta(rng):
    """Like torch's (every parameter): one full-batch SGD step moves γ by −lr·(g + wd·γ)."""
    net, spec = _net(TRAIN_KW, "softmax", seed=2)
    start = sd64(net)
    X = rng.standard_normal((10, 5))
    y = rng.integers(0, 3, 10)
    fastbp.Trainer(net, optimizer="sgd", learning_rate=0.1, weight_decay=0.5, batch_size=None,
                   epochs=1).fit(X, y)
    _, g = naive.structured_gradients(start, X, y, spec, "cross_entropy")
    got = net.state_dict()
    for key in ("norms.0.weight", "norms.0.bias", "norms.1.weight", "layers.1.weight"):
        np.testing.assert_allclose(got[key], start[key] - 0.1 * (g[key] + 0.5 * start[key]),
                                   rtol=1e-12, atol=1e-14, err_msg=key)


# -- determinism, files, resume -----------------------------------------------------------------
THREADS = textwrap.dedent("""
    import hashlib, numpy as np, fastbp
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 40)).astype(np.float32)
    y = rng.integers(0, 4, 500)
    out = b""
    for sizes, batch, norm in (([40, 300, 300, 4], 100, ["batch", "layer"]),    # threads
                               ([40, 32, 32, 4], 250, ["batch", "batch"])):     # row blocks
        net = fastbp.Network(sizes, output_activation="softmax", skips="residual",
                             normalization=norm, dropout=[0.2, 0.3], seed=1)
        fastbp.Trainer(net, batch_size=batch, epochs=2, seed=3).fit(X, y)
        sd = net.state_dict()
        out += b"".join(np.ascontiguousarray(sd[k]).tobytes() for k in sorted(sd))
        out += net.predict(X).tobytes()
    print(hashlib.sha256(out).hexdigest())
""")


def test_bitwise_identical_on_1_and_2_threads_with_batch_norm_and_dropout():
    assert run_with_threads(THREADS, 1) == run_with_threads(THREADS, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_keep_structure_and_statistics(tmp_path, rng, dtype):
    kw = dict(TRAIN_KW, dropout=[0.2, 0.0, 0.4])
    net, spec = _net(kw, "softmax", dtype=dtype)
    X = rng.standard_normal((30, 5)).astype(dtype)
    y = rng.integers(0, 3, 30)
    fastbp.Trainer(net, batch_size=8, epochs=1, seed=0).fit(X, y)      # running stats moved
    path = tmp_path / "m.npz"
    net.save(path)
    back = fastbp.load(path)
    assert back.dtype == dtype and back.layer_sizes == net.layer_sizes
    assert same(back.state_dict(), net.state_dict())
    assert back.predict(X).tobytes() == net.predict(X).tobytes()
    a, b = net.gradients(X, y, as_dict=True)[1], back.gradients(X, y, as_dict=True)[1]
    assert same(a, b)
    # the dropout rates travel too: the same training from here is bitwise the same
    fastbp.Trainer(net, batch_size=8, epochs=1, seed=1).fit(X, y)
    fastbp.Trainer(back, batch_size=8, epochs=1, seed=1).fit(X, y)
    assert same(back.state_dict(), net.state_dict())


@pytest.mark.parametrize("seed", [5, None])
def test_resume_mid_epoch_is_bitwise_with_batch_norm_and_dropout(rng, monkeypatch, seed):
    """Stopped mid-epoch, restored into a fresh network and trainer from state(): the same
    parameters, running statistics and losses as an uninterrupted run.  seed=None: the
    dropout seed must travel in the state."""
    kw = dict(TRAIN_KW, dropout=[0.3, 0.0, 0.2])
    X = rng.standard_normal((90, 5))
    y = rng.integers(0, 3, 90)
    make = lambda: fastbp.Network(**kw, output_activation="softmax", dtype=np.float64, seed=4)
    trainer = lambda net: fastbp.Trainer(net, batch_size=8, epochs=3, seed=seed)
    net = make()
    tr = trainer(net)
    ref = make()
    ref_tr = trainer(ref)
    ref_tr.load_state(*tr.state())            # the same shuffles and masks (seed None too)
    assert ref_tr.dropout_seed == tr.dropout_seed
    hr = ref_tr.fit(X, y)
    calls = []
    monkeypatch.setattr(fastbp.engine, "STOP_STEPS", 3)
    h1 = tr.fit(X, y, stop=lambda: calls.append(1) or len(calls) == 5)
    assert h1.interrupted
    arrays, info = tr.state()
    net2 = make()
    tr2 = trainer(net2)
    tr2.load_state(arrays, info)
    assert tr2.dropout_seed == tr.dropout_seed
    assert same(net2.state_dict(), net.state_dict())          # running statistics restored
    tr2.epochs = 3 - len(h1.loss)
    h2 = tr2.fit(X, y)
    assert tr2.step == ref_tr.step
    assert net2.params.tobytes() == ref.params.tobytes()
    assert same(net2.state_dict(), ref.state_dict())
    # the loss sums are accumulated per compiled call: equal, though not bitwise (like
    # tests/test_trainer.py's resume)
    np.testing.assert_allclose(h1.loss + h2.loss, hr.loss, rtol=1e-12)


# -- bad input --------------------------------------------------------------------------------
BAD = [
    (dict(layer_sizes=[4, 6, 5, 3], skips=[(0, 2)]), ValueError, r"(?s)skip.*width"),
    (dict(layer_sizes=[4, 6, 6, 3], skips=[(2, 1)]), ValueError, "skip"),          # backwards
    (dict(layer_sizes=[4, 6, 6, 3], skips=[(1, 1)]), ValueError, "skip"),
    (dict(layer_sizes=[4, 6, 6, 6], skips=[(1, 3)]), ValueError, "skip"),          # into the output
    (dict(layer_sizes=[4, 6, 6, 3], skips=[(1, 7)]), ValueError, "skip"),          # out of range
    (dict(layer_sizes=[4, 6, 6, 3], skips=[(-1, 2)]), ValueError, "skip"),
    (dict(layer_sizes=[4, 6, 6, 3], skips="dense"), ValueError, "skip"),
    (dict(layer_sizes=[4, 6, 6, 3], skips=[(0, 1, 2)]), (TypeError, ValueError),
     r"skips\[0\]|\(0, 1, 2\)"),                                               # names the entry
    (dict(layer_sizes=[4, 6, 5, 3], normalization="group"), ValueError, "normalization"),
    (dict(layer_sizes=[4, 6, 5, 3], normalization=["batch", "instance"]), ValueError,
     "normalization"),
    (dict(layer_sizes=[4, 6, 5, 3], normalization=["batch"]), ValueError, "normalization"),
    (dict(layer_sizes=[4, 6, 5, 3], normalization=["batch", None, "layer"]), ValueError,
     "normalization"),
    (dict(layer_sizes=[4, 6, 5, 3], dropout=1.0), ValueError, "dropout"),
    (dict(layer_sizes=[4, 6, 5, 3], dropout=-0.1), ValueError, "dropout"),
    (dict(layer_sizes=[4, 6, 5, 3], dropout=1.5), ValueError, "dropout"),
    (dict(layer_sizes=[4, 6, 5, 3], dropout=float("nan")), ValueError, "dropout"),
    (dict(layer_sizes=[4, 6, 5, 3], dropout=[0.1, 1.0]), ValueError, "dropout"),
    (dict(layer_sizes=[4, 6, 5, 3], dropout=[0.1]), ValueError, "dropout"),
    (dict(layer_sizes=[4, 6, 5, 3], activation=["relu"]), ValueError, "activation"),
    (dict(layer_sizes=[4, 6, 5, 3], activation=["relu", "tanh", "tanh"]), ValueError, "activation"),
    (dict(layer_sizes=[4, 6, 5, 3], activation=["relu", "swish"]), ValueError, "activation"),
]


@pytest.mark.parametrize("kw,err,match", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_structure_is_refused(kw, err, match):
    with pytest.raises(err, match=match):
        fastbp.Network(**kw)


def _batch_norm_net(rng, n, norm="batch"):
    net = fastbp.Network([4, 6, 5, 3], normalization=[norm, None], output_activation="softmax",
                         dtype=np.float64, seed=0)
    return net, rng.standard_normal((n, 4)), rng.integers(0, 3, n)


@pytest.mark.parametrize("n,batch_size", [(33, 16), (17, 8), (5, 1), (1, None), (1, 32)])
def test_batch_norm_refuses_a_training_batch_of_one_row(rng, n, batch_size):
    net, X, y = _batch_norm_net(rng, n)
    before = copy(net.state_dict())
    tr = fastbp.Trainer(net, batch_size=batch_size, epochs=2)
    with pytest.raises(ValueError, match="(?i)batch"):
        tr.fit(X, y)
    assert tr.step == 0 and same(net.state_dict(), before)
    with pytest.raises(ValueError, match="(?i)batch"):
        net.gradients(X[:1], y[:1], loss="cross_entropy", as_dict=True)
    with pytest.raises(ValueError, match="(?i)batch"):
        net.gradients(X[:1], y[:1], loss="cross_entropy")
    assert same(net.state_dict(), before)


def test_batches_of_one_row_are_fine_without_batch_norm(rng):
    net, X, y = _batch_norm_net(rng, 33, norm="layer")
    h = fastbp.Trainer(net, batch_size=16, epochs=1).fit(X, y)
    assert np.isfinite(h.loss[0])
    net.gradients(X[:1], y[:1], loss="cross_entropy", as_dict=True)
    # batch norm with a validation set of one row, and batches of 2: fine
    net, X, y = _batch_norm_net(rng, 34)
    h = fastbp.Trainer(net, batch_size=16, epochs=1).fit(X, y, validation_data=(X[:1], y[:1]))
    assert np.isfinite(h.val_loss[0])


# -- the plain chain is unchanged -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_plain_chain_is_unchanged(rng, dtype):
    sizes = [5, 9, 7, 3]
    plain = lambda: fastbp.Network(sizes, activation="tanh", output_activation="softmax",
                                   dtype=dtype, seed=1)
    spelt = [lambda: fastbp.Network(sizes, activation=["tanh", "tanh"], output_activation="softmax",
                                    skips=None, normalization=None, dropout=0.0, dtype=dtype, seed=1),
             lambda: fastbp.Network(sizes, activation="tanh", output_activation="softmax", skips=[],
                                    normalization=[None, None], dropout=[0.0, 0.0], dtype=dtype,
                                    seed=1)]
    X = rng.standard_normal((45, 5)).astype(dtype)
    y = rng.integers(0, 3, 45)
    ref = plain()
    assert ref.params.size == 5 * 9 + 9 + 9 * 7 + 7 + 7 * 3 + 3
    assert sorted(ref.state_dict()) == sorted(f"layers.{l}.{w}" for l in range(3)
                                              for w in ("weight", "bias"))
    g = ref.gradients(X, y, as_dict=True)[1]
    assert sorted(g) == sorted(ref.state_dict())
    h_ref = fastbp.Trainer(ref, batch_size=8, epochs=2, seed=3).fit(X, y)
    for make in spelt:
        net = make()
        assert net.params.tobytes() == plain().params.tobytes()
        h = fastbp.Trainer(net, batch_size=8, epochs=2, seed=3).fit(X, y)
        assert net.params.tobytes() == ref.params.tobytes()
        assert h.loss == h_ref.loss and np.array_equal(h.grad_norm, h_ref.grad_norm)
        assert net.predict(X).tobytes() == ref.predict(X).tobytes()
    # and still the old reference's training (float64: the old formulas)
    if dtype == np.float64:
        net = plain()
        Ws = [W.astype(float) for W in net.weights]
        bs = [b.astype(float) for b in net.biases]
        fastbp.Trainer(net, optimizer="sgd", learning_rate=0.1, batch_size=8, epochs=2,
                       shuffle=False).fit(X, y)
        naive.train(Ws, bs, "tanh", "softmax", "cross_entropy", X, y, naive.Optimizer("sgd", 0.1),
                    8, 2)
        for W, b, W2, b2 in zip(net.weights, net.biases, Ws, bs):
            np.testing.assert_allclose(W, W2, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(b, b2, rtol=1e-10, atol=1e-12)
