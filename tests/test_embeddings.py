"""Embedding layers: categorical inputs (the last columns of X, integer codes) looked up in
learned tables (``Network(embeddings=[(n_levels, dim), ...])``).

Two parts, as tests/test_structure.py:

* ``test_reference_*``: the NumPy reference (naive.embed / naive.structured_*, where an embedding
  is a dense layer on the one-hot code) checked on its own against finite differences and
  against torch (``nn.Embedding``) autograd.
* everything else: fastbp's kernels, Network, Trainer, files, ONNX and MPI against the reference
  and against torch, on the row-block and the threaded paths, float32 and float64.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp
import naive
from state_dicts import copy, dropout_masks, finite_differences, net_and_spec, same, sd64
from conftest import targets_for, tol
from fastbp.kernels.train import step_blocks
from subprocess_run import run_with_threads

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    # one table, 4 numeric columns
    "plain": dict(layer_sizes=[5, 8, 3], activation="tanh", embeddings=[(4, 3)]),
    # three tables, one of a single level
    "several": dict(layer_sizes=[6, 7, 6, 3], activation=["relu", "sigmoid"],
                    embeddings=[(5, 2), (1, 3), (7, 4)]),
    # batch norm on the layer the tables feed
    "batch": dict(layer_sizes=[5, 6, 5, 3], activation=["tanh", "relu"], normalization="batch",
                  embeddings=[(6, 3), (3, 2)]),
    "layer": dict(layer_sizes=[4, 6, 6, 3], activation="leaky_relu", normalization="layer",
                  skips=[(1, 2)], embeddings=[(5, 4)]),
    "all": dict(layer_sizes=[5, 6, 6, 6, 3], activation=["relu", "tanh", "sigmoid"],
                normalization=["batch", "layer", None], dropout=[0.2, 0.0, 0.3],
                skips="residual", embeddings=[(9, 3), (4, 5)]),
    # no numeric column at all
    "codes_only": dict(layer_sizes=[2, 5, 3], activation="tanh", embeddings=[(6, 3), (4, 2)]),
}
PAIRS = [("cross_entropy", "softmax"), ("squared_error", "identity"),
         ("binary_cross_entropy", "sigmoid")]


def _spec(case_or_kw, out="softmax"):
    kw = CASES[case_or_kw] if isinstance(case_or_kw, str) else case_or_kw
    return naive.make_spec(output_activation=out, **kw)


def _X(rng, spec, n, dtype=np.float64):
    """n rows: standard normal numeric columns, then random codes."""
    X = np.concatenate([rng.standard_normal((n, spec.n_numeric)),
                        naive.codes_for(rng, spec, n)], axis=1)
    return X.astype(dtype)


def _net(case_or_kw, out="softmax", dtype=np.float64, seed=0, perturb=True):
    kw = CASES[case_or_kw] if isinstance(case_or_kw, str) else case_or_kw
    return net_and_spec(kw, out, dtype, seed, perturb)












# == the reference on its own =================================================================
def test_reference_embedding_is_the_lookup(rng):
    spec = _spec("several")
    sd = naive.init_state_dict(spec, rng)
    X = _X(rng, spec, 9)
    a0, hots = naive.embed(sd, X, spec)
    codes = X[:, 3:].astype(int)
    want = np.concatenate([X[:, :3]] + [sd[f"embeddings.{e}.weight"][codes[:, e]]
                                        for e in range(3)], axis=1)
    np.testing.assert_array_equal(a0, want)
    assert a0.shape == (9, spec.dense_sizes[0]) == (9, 3 + 2 + 3 + 4)
    assert naive.trainable_keys(spec)[:3] == [f"embeddings.{e}.weight" for e in range(3)]


@pytest.mark.parametrize("loss,out", PAIRS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_gradients_match_finite_differences(rng, case, loss, out):
    spec = _spec(case, out)
    sd = naive.init_state_dict(spec, rng)
    n = 7
    X = _X(rng, spec, n)
    Y = targets_for(rng, loss, n, spec.sizes[-1])
    masks = dropout_masks(rng, spec, n)
    value, g = naive.structured_gradients(sd, X, Y, spec, loss, masks=masks)
    f = lambda: naive.structured_loss(sd, X, Y, spec, loss, masks=masks)
    assert value == pytest.approx(f(), rel=1e-14)
    num = finite_differences(f, sd, naive.trainable_keys(spec))
    assert sorted(g) == sorted(num)
    for key in g:
        np.testing.assert_allclose(g[key], num[key], rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_matches_torch(rng, case):
    pytest.importorskip("torch")
    import torch_twin
    spec = _spec(case)
    sd = naive.init_state_dict(spec, rng)
    n = 9
    X = _X(rng, spec, n)
    y = rng.integers(0, 3, n)
    masks = dropout_masks(rng, spec, n)
    twin = torch_twin.Twin(sd, spec)
    want_value, want = torch_twin.gradients(twin, X, y, "cross_entropy", masks)
    value, g = naive.structured_gradients(sd, X, y, spec, "cross_entropy", masks=masks)
    assert value == pytest.approx(want_value, rel=1e-12)
    assert sorted(g) == sorted(want)
    for key in g:
        np.testing.assert_allclose(g[key], want[key], rtol=1e-10, atol=1e-13, err_msg=key)
    np.testing.assert_allclose(naive.structured_forward(sd, X, spec, "eval")["a"][-1],
                               twin.predict(X), rtol=1e-12, atol=1e-14)


# == fastbp: structure, state dict, initialisation ============================================
@pytest.mark.parametrize("case", sorted(CASES))
def test_layout_state_dict_and_shapes(case):
    net, spec = _net(case, perturb=False)
    k = len(spec.embeddings)
    assert net.embeddings == spec.embeddings and net.layer_sizes == spec.sizes
    assert net.weights[0].shape == (spec.dense_sizes[0], spec.sizes[1])
    sd = net.state_dict()
    assert sorted(sd) == sorted(naive.state_keys(spec))
    assert list(sd)[:k] == [f"embeddings.{e}.weight" for e in range(k)]
    for e, (levels, dim) in enumerate(spec.embeddings):
        t = sd[f"embeddings.{e}.weight"]
        assert t.shape == (levels, dim) and t.dtype == net.dtype
        assert np.shares_memory(t, net.params) and t.flags.writeable
    # the tables first, then every dense layer as without embeddings
    net, spec = _net(case)
    sd = net.state_dict()
    flat = np.concatenate([np.ravel(sd[k]) for k in naive.trainable_keys(spec)])
    assert flat.shape == net.params.shape
    np.testing.assert_array_equal(flat, net.params)
    sd["embeddings.0.weight"][0, 0] = 42.0
    assert net.params[0] == 42.0


def test_tables_start_normal_after_the_dense_weights_which_are_unchanged():
    """The dense layers draw what a network without embeddings draws from the same seed
    (shapes aside), and the tables continue the stream with N(0, 1)."""
    rng = np.random.default_rng(7)
    plain = fastbp.Network([5, 9, 7, 3], activation="tanh", dtype=np.float64, seed=7)
    for W in plain.weights:        # glorot_uniform (tanh), row blocks: one stream
        lim = np.sqrt(6.0 / sum(W.shape))
        np.testing.assert_array_equal(W, rng.uniform(-lim, lim, W.shape))
    assert (np.concatenate([b for b in plain.biases]) == 0).all()
    for empty in (None, []):
        other = fastbp.Network([5, 9, 7, 3], activation="tanh", dtype=np.float64, seed=7,
                               embeddings=empty)
        assert other.params.tobytes() == plain.params.tobytes() and other.embeddings == []
    net = fastbp.Network([5, 9, 7, 3], activation="tanh", dtype=np.float64, seed=7,
                         embeddings=[(300, 70), (4, 2)])
    rng = np.random.default_rng(7)
    for W in net.weights:
        lim = np.sqrt(6.0 / sum(W.shape))
        np.testing.assert_array_equal(W, rng.uniform(-lim, lim, W.shape))
    for e, (levels, dim) in enumerate(net.embeddings):
        np.testing.assert_array_equal(net.state_dict()[f"embeddings.{e}.weight"],
                                      rng.standard_normal((levels, dim)))
    t = net.state_dict()["embeddings.0.weight"]
    assert abs(t.mean()) < 0.02 and abs(t.std() - 1) < 0.02


# == fastbp against the reference =============================================================
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_naive(rng, case, dtype):
    net, spec = _net(case, dtype=dtype)
    X = _X(rng, spec, 13, dtype)
    want = naive.structured_forward(sd64(net), X, spec, "eval")["a"][-1]
    out = net.forward(X)
    assert out.dtype == dtype and out.shape == want.shape
    np.testing.assert_allclose(out, want, **tol(dtype))
    np.testing.assert_allclose(net.predict(X[:1]), want[:1], **tol(dtype))


def _check_gradients(net, spec, X, Y, loss, rtol, atol):
    before = copy(net.state_dict())
    value, g = net.gradients(X, Y, loss=loss, as_dict=True)
    assert same(net.state_dict(), before)
    want_value, want = naive.structured_gradients(sd64(net), X, Y, spec, loss)
    assert value == pytest.approx(want_value, rel=max(rtol, 1e-10))
    assert sorted(g) == sorted(want) == sorted(naive.trainable_keys(spec))
    for key in want:
        assert g[key].shape == want[key].shape and g[key].dtype == net.dtype
        np.testing.assert_allclose(g[key], want[key], rtol=rtol, atol=atol, err_msg=key)
    return g


# batches of 11 rows: one block; 130: two row blocks; 300: four (step_blocks)
@pytest.mark.parametrize("n,blocks", [(11, 1), (130, 2), (300, 4)])
@pytest.mark.parametrize("loss,out", PAIRS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_match_naive_on_the_row_block_paths(rng, case, loss, out, n, blocks):
    net, spec = _net(case, out)
    assert step_blocks(spec.dense_sizes, n) == blocks
    X = _X(rng, spec, n)
    Y = targets_for(rng, loss, n, spec.sizes[-1])
    g = _check_gradients(net, spec, X, Y, loss, 1e-9, 1e-12)
    # every row of a small table was used: all of its gradient is exercised
    if n > 100:
        assert all((np.abs(g[f"embeddings.{e}.weight"]).sum(axis=1) > 0).all()
                   for e in range(len(spec.embeddings)))


WIDE = dict(layer_sizes=[12, 600, 300, 3], activation=["relu", "tanh"],
            normalization=["batch", None], embeddings=[(50, 16), (20, 8)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_match_naive_on_the_threaded_path(rng, dtype):
    """Products large enough for threads inside each (no row blocks), the embeddings' own
    backprop product among them."""
    net, spec = _net(WIDE, dtype=dtype)
    n = 64
    assert step_blocks(spec.dense_sizes, n) == 1
    X = _X(rng, spec, n, dtype)
    y = rng.integers(0, 3, n)
    if dtype == np.float64:
        _check_gradients(net, spec, X, y, "cross_entropy", 1e-9, 1e-12)
    else:
        _check_gradients(net, spec, X, y, "cross_entropy", 2e-3, 2e-4)


@pytest.mark.parametrize("n", [16, 130])
@pytest.mark.parametrize("case", ["all", "batch", "several"])
def test_gradients_float32(rng, case, n):
    net, spec = _net(case, dtype=np.float32)
    X = _X(rng, spec, n, np.float32)
    y = rng.integers(0, 3, n)
    _check_gradients(net, spec, X, y, "cross_entropy", 2e-3, 2e-4)


def test_table_gradients_match_finite_differences_of_the_flat_buffer(rng):
    """fastbp on its own, float64: central differences of its (training-mode) loss over every
    entry of the tables in net.params, and every other entry of the first layer."""
    net, spec = _net("all")
    X = _X(rng, spec, 7)
    y = rng.integers(0, 3, 7)
    _, g = net.gradients(X, y, loss="cross_entropy", as_dict=True)
    analytic = np.concatenate([g[k].ravel() for k in naive.trainable_keys(spec)])
    p, h = net.params, 1e-6
    hi = int(net._layout[0, 3]) + spec.sizes[1]    # the tables and W_0, b_0
    assert hi > 9 * 3 + 4 * 5
    num = np.empty(hi)
    for i in range(hi):
        old = p[i]
        p[i] = old + h
        up = net.gradients(X, y, loss="cross_entropy")[0]
        p[i] = old - h
        down = net.gradients(X, y, loss="cross_entropy")[0]
        p[i] = old
        num[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(analytic[:hi], num, rtol=1e-5, atol=1e-7)


# -- training ----------------------------------------------------------------------------------
def _fastbp_masks(tr, spec):
    def masks(step, rows):
        return {l: fastbp.engine.dropout_keep(tr.dropout_seed, step, rows, l, spec.sizes[l + 1], p)
                for l, p in enumerate(spec.dropout) if p > 0}
    return masks


@pytest.mark.parametrize("batch", [8, 130])
@pytest.mark.parametrize("optimizer,wd", [("sgd", 0.0), ("momentum", 0.01), ("adam", 0.01)])
def test_training_matches_naive(rng, optimizer, wd, batch):
    """shuffle=False, 3 epochs, batch norm, layer norm, dropout, skips: parameters, running
    statistics and losses (batches of 130: the row-block step)."""
    net, spec = _net("all", seed=3)
    n = 8 * 4 + 5 if batch == 8 else 300
    X = _X(rng, spec, n)
    y = rng.integers(0, 3, n)
    lr = 0.01 if optimizer == "adam" else 0.05
    tr = fastbp.Trainer(net, loss="cross_entropy", optimizer=optimizer, learning_rate=lr,
                        batch_size=batch, epochs=3, shuffle=False, weight_decay=wd, seed=2)
    start = sd64(net)
    want = copy(start)
    want_losses = naive.structured_train(want, X, y, spec, "cross_entropy",
                                         naive.Optimizer(optimizer, lr, weight_decay=wd), batch,
                                         3, _fastbp_masks(tr, spec))
    h = tr.fit(X, y)
    got = net.state_dict()
    assert sorted(got) == sorted(want)
    moved = np.abs(want["embeddings.0.weight"] - start["embeddings.0.weight"]).max()
    assert moved > 1e-3
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(h.loss, want_losses, rtol=1e-9)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("case,batch", [("batch", 12), ("several", 12), ("batch", 130)])
def test_training_step_by_step_matches_torch(rng, case, batch, optimizer):
    """nn.Embedding + Linear/BatchNorm1d/activations trained by torch.optim on the same
    batches: the parameters and running statistics after every step."""
    torch = pytest.importorskip("torch")
    import torch_twin
    net, spec = _net(case, seed=4)
    steps = 4
    X = _X(rng, spec, batch * steps)
    y = rng.integers(0, 3, batch * steps)
    lr = 0.01 if optimizer == "adam" else 0.05
    twin = torch_twin.Twin(sd64(net), spec)
    opt = torch_twin.make_optimizer(twin.trainable(), optimizer, lr)
    tr = fastbp.Trainer(net, loss="cross_entropy", optimizer=optimizer, learning_rate=lr,
                        batch_size=batch, epochs=1, shuffle=False)
    start = sd64(net)
    Xt = torch.from_numpy(X)
    twin.train()
    for s in range(steps):
        rows = slice(s * batch, (s + 1) * batch)
        tr.fit(X[rows], y[rows])
        opt.zero_grad()
        torch_twin.loss_of(twin(Xt[rows]), y[rows], "cross_entropy", "softmax").backward()
        opt.step()
        want, got = twin.numpy_state_dict(), net.state_dict()
        assert sorted(want) == sorted(got)
        for key in want:
            # the bias of a batch-normalised layer has a zero gradient in exact arithmetic:
            # Adam turns its rounding noise (|g| ~ 1e-16) into steps of lr·|g|/eps ~ 1e-10,
            # which its running mean takes in (momentum 0.1)
            l = key.split(".")[1]
            noise = f"norms.{l}.running_mean" in want and optimizer == "adam"
            atol = 1e-12
            if noise and key == f"layers.{l}.bias":
                atol = 1e-8
            elif noise and key == f"norms.{l}.running_mean":
                atol = 1e-9
            np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=atol,
                                       err_msg=f"step {s + 1}: {key}")
    assert tr.step == steps
    assert np.abs(got["embeddings.0.weight"] - start["embeddings.0.weight"]).max() > 1e-3


@pytest.mark.parametrize("n", [20, 130])     # one block; two (the norms after their sum)
def test_history_norms_count_the_tables_in_the_first_layer(rng, n):
    net, spec = _net("batch", seed=1)
    start = sd64(net)
    X = _X(rng, spec, n)
    y = rng.integers(0, 3, n)
    h = fastbp.Trainer(net, optimizer="sgd", learning_rate=0.1, batch_size=None,
                       epochs=1).fit(X, y)
    _, g = naive.structured_gradients(start, X, y, spec, "cross_entropy")
    sd = sd64(net)
    emb = lambda k: k.startswith("embeddings")
    groups = [[k for k in naive.trainable_keys(spec)
               if (emb(k) and l == 0) or (not emb(k) and k.split(".")[1] == str(l))]
              for l in range(spec.n_layers)]
    assert groups[0][:2] == ["embeddings.0.weight", "embeddings.1.weight"]
    assert h.grad_norm.shape == h.weight_norm.shape == (1, spec.n_layers)
    for l, keys in enumerate(groups):
        assert h.grad_norm[0, l] == pytest.approx(np.sqrt(sum((g[k] ** 2).sum() for k in keys)),
                                                  rel=1e-9)
        assert h.weight_norm[0, l] == pytest.approx(
            np.sqrt(sum((sd[k] ** 2).sum() for k in keys)), rel=1e-12)


def test_clipping_and_weight_decay_treat_the_tables_as_parameters(rng):
    """One full-batch SGD step with weight decay and clipping that bites: the tables move by
    −lr·clip(g + wd·E), the global norm over every parameter, as torch's."""
    net, spec = _net("several", seed=2)
    start = sd64(net)
    X = _X(rng, spec, 10)
    y = rng.integers(0, 3, 10)
    fastbp.Trainer(net, optimizer="sgd", learning_rate=0.1, weight_decay=0.5, batch_size=None,
                   epochs=1, clip_norm=0.01).fit(X, y)
    _, g = naive.structured_gradients(start, X, y, spec, "cross_entropy")
    total = np.sqrt(sum((v ** 2).sum() for v in g.values()))
    f = min(1.0, 0.01 / (total + 1e-6))
    assert f < 1
    got = net.state_dict()
    for key in g:
        np.testing.assert_allclose(got[key], start[key] - 0.1 * (f * g[key] + 0.5 * start[key]),
                                   rtol=1e-10, atol=1e-12, err_msg=key)


# -- determinism, files, resume ------------------------------------------------------------------
THREADS = textwrap.dedent("""
    import hashlib, numpy as np, fastbp
    from fastbp.kernels.train import step_blocks
    rng = np.random.default_rng(0)
    n = 500
    codes = np.stack([rng.integers(0, 300, n), rng.integers(0, 7, n)], axis=1)
    X = np.concatenate([rng.standard_normal((n, 30)), codes], axis=1).astype(np.float32)
    y = rng.integers(0, 4, n)
    out = b""
    for sizes, batch, norm, blocks in (([32, 400, 300, 4], 100, ["batch", "layer"], 1),
                                       ([32, 32, 32, 4], 250, ["batch", "batch"], 4)):
        net = fastbp.Network(sizes, output_activation="softmax", skips="residual",
                             normalization=norm, dropout=[0.2, 0.3], seed=1,
                             embeddings=[(300, 24), (7, 3)])
        assert step_blocks(net._st.sizes, batch) == blocks
        fastbp.Trainer(net, batch_size=batch, epochs=2, seed=3).fit(X, y)
        sd = net.state_dict()
        out += b"".join(np.ascontiguousarray(sd[k]).tobytes() for k in sorted(sd))
        out += net.predict(X).tobytes()
    print(hashlib.sha256(out).hexdigest())
""")


def test_bitwise_identical_on_1_and_2_threads():
    assert run_with_threads(THREADS, 1) == run_with_threads(THREADS, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip(tmp_path, rng, dtype):
    net, spec = _net("all", dtype=dtype)
    X = _X(rng, spec, 30, dtype)
    y = rng.integers(0, 3, 30)
    fastbp.Trainer(net, batch_size=8, epochs=1, seed=0).fit(X, y)
    path = tmp_path / "m.npz"
    net.save(path)
    back = fastbp.load(path)
    assert back.embeddings == net.embeddings == spec.embeddings
    assert back.dtype == dtype and back.layer_sizes == net.layer_sizes
    assert same(back.state_dict(), net.state_dict())
    assert back.predict(X).tobytes() == net.predict(X).tobytes()
    fastbp.Trainer(net, batch_size=8, epochs=1, seed=1).fit(X, y)
    fastbp.Trainer(back, batch_size=8, epochs=1, seed=1).fit(X, y)
    assert same(back.state_dict(), net.state_dict())
    assert "embeddings=[(9, 3), (4, 5)]" in repr(back)


def test_state_dict_round_trip_and_checks(rng):
    net, spec = _net("several")
    new = naive.init_state_dict(spec, rng)
    net.load_state_dict(new)
    assert same(naive.as_float64(net.state_dict()), new)
    other, _ = _net("several", seed=9)
    other.load_state_dict(net.state_dict())
    X = _X(rng, spec, 6)
    assert other.predict(X).tobytes() == net.predict(X).tobytes()
    before = copy(net.state_dict())
    for bad, key in ((dict(new, **{"embeddings.2.weight": np.zeros((4, 7))}), "embeddings.2"),
                     (dict(new, **{"embeddings.1.weight": np.full((1, 3), np.nan)}),
                      "embeddings.1"),
                     ({k: v for k, v in new.items() if k != "embeddings.0.weight"},
                      "embeddings.0")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            net.load_state_dict(bad)
        assert same(net.state_dict(), before)


def test_trainer_resume_mid_epoch_is_bitwise(rng, monkeypatch):
    kw = CASES["all"]
    spec = _spec("all")
    X = _X(rng, spec, 90)
    y = rng.integers(0, 3, 90)
    make = lambda: fastbp.Network(**kw, output_activation="softmax", dtype=np.float64, seed=4)
    trainer = lambda net: fastbp.Trainer(net, batch_size=8, epochs=3, seed=5)
    ref = make()
    ref_tr = trainer(ref)
    hr = ref_tr.fit(X, y)
    net = make()
    tr = trainer(net)
    calls = []
    monkeypatch.setattr(fastbp.engine, "STOP_STEPS", 3)
    h1 = tr.fit(X, y, stop=lambda: calls.append(1) or len(calls) == 5)
    assert h1.interrupted
    arrays, info = tr.state()
    net2 = make()
    tr2 = trainer(net2)
    tr2.load_state(arrays, info)
    tr2.epochs = 3 - len(h1.loss)
    h2 = tr2.fit(X, y)
    assert tr2.step == ref_tr.step
    assert net2.params.tobytes() == ref.params.tobytes()
    assert same(net2.state_dict(), ref.state_dict())
    np.testing.assert_allclose(h1.loss + h2.loss, hr.loss, rtol=1e-12)
    # a state made for other embeddings does not fit
    other = fastbp.Trainer(fastbp.Network(**dict(kw, embeddings=[(9, 3), (4, 6)]),
                                          output_activation="softmax", dtype=np.float64),
                           batch_size=8, epochs=3, seed=5)
    with pytest.raises(ValueError, match="embeddings"):
        other.load_state(arrays, info)


# -- bad input -----------------------------------------------------------------------------------
BAD_CODES = [(-1.0, r"X column 4 \(embedding 1\) holds -1\.0; codes must be integers in \[0, 4\)"),
             (4.0, r"holds 4\.0; codes must be integers in \[0, 4\)"),
             (7.5, r"holds 7\.5"), (2.5, r"holds 2\.5"), (1 + 1e-12, r"holds 1\.000000000001"),
             (np.nan, "NaN"), (np.inf, "inf")]


def _calls(net, y, good):
    """Every public entry that takes X, as functions of the bad X (``good``: a valid X for the
    training data when the bad one is the validation data)."""
    tr = fastbp.Trainer(net, batch_size=4, epochs=1)
    return tr, {
        "forward": lambda X: net.forward(X), "predict": lambda X: net.predict(X),
        "loss": lambda X: net.loss(X, y), "deltas": lambda X: net.deltas(X, y),
        "gradients": lambda X: net.gradients(X, y),
        "gradients_dict": lambda X: net.gradients(X, y, as_dict=True),
        "fit": lambda X: tr.fit(X, y),
        "fit_validation": lambda X: tr.fit(good, y, validation_data=(X, y))}


@pytest.mark.parametrize("value,match", BAD_CODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bad_codes_are_refused_and_change_nothing(rng, value, match, dtype):
    net = fastbp.Network([5, 6, 3], output_activation="softmax", embeddings=[(3, 2), (4, 2)],
                         normalization="batch", dtype=dtype, seed=0)
    n = 8
    X = np.concatenate([rng.standard_normal((n, 3)), rng.integers(0, 3, (n, 1)),
                        rng.integers(0, 4, (n, 1))], axis=1)     # float64: rounded later
    y = rng.integers(0, 3, n)
    good = X.copy()
    X[5, 4] = value
    before = copy(net.state_dict())
    tr, calls = _calls(net, y, good)
    if dtype == np.float32 and value == 1 + 1e-12:
        match = r"holds 1\.000000000001"       # read as given, not as float32's 1.0
    for name, call in calls.items():
        m = match if not name == "fit_validation" else match.replace("X column", "X_val column")
        with pytest.raises(ValueError, match=m):
            call(X)
        assert same(net.state_dict(), before) and tr.step == 0, name
    X[5, 4] = 3
    net.predict(X)
    net.predict(X.astype(np.int64) if dtype == np.float64 else X)


def test_integer_and_list_input_are_checked_too():
    net = fastbp.Network([3, 4, 2], embeddings=[(5, 2)], dtype=np.float64, seed=0)
    good = np.array([[0, 1, 4], [2, 3, 0]], np.int64)
    np.testing.assert_array_equal(net.predict(good), net.predict(good.astype(float)))
    np.testing.assert_array_equal(net.predict(good.tolist()), net.predict(good.astype(float)))
    for bad in (np.array([[0, 1, 5]]), np.array([[0, 1, -1]], np.int32), [[0.0, 1.0, 0.5]]):
        with pytest.raises(ValueError, match=r"X column 2 \(embedding 0\)"):
            net.predict(bad)


def test_float32_codes_are_exact_up_to_2_24():
    top = 1 << 24
    net = fastbp.Network([2, 1, 1], activation="identity", embeddings=[(top, 1)],
                         dtype=np.float32, seed=0)
    table = net.state_dict()["embeddings.0.weight"]
    table[top - 1] = 5.0
    table[top - 2] = -3.0
    net.weights = [np.array([[0.0], [1.0]]), np.array([[1.0]])]
    X = np.array([[0, top - 1], [0, top - 2]], np.float32)
    np.testing.assert_array_equal(net.predict(X), [[5.0], [-3.0]])
    with pytest.raises(ValueError, match=r"2\*\*24"):
        fastbp.Network([2, 1, 1], embeddings=[(top + 1, 1)], dtype=np.float32)


BAD_EMBEDDINGS = [
    ([(0, 3)], ValueError, r"embeddings\[0\] n_levels"),
    ([(3, 0)], ValueError, r"embeddings\[0\] dim"),
    ([(3, 2), (-1, 2)], ValueError, r"embeddings\[1\] n_levels"),
    ([(2.5, 3)], TypeError, r"embeddings\[0\] n_levels"), ([(3, True)], TypeError, "dim"),
    ([(3,)], TypeError, r"embeddings\[0\]"), ([(3, 2, 1)], TypeError, r"embeddings\[0\]"),
    ("abc", TypeError, "embeddings"), (5, TypeError, "embeddings"),
    ([3, 2], TypeError, "embeddings"),
    ([(3, 2)] * 6, ValueError, "6 embeddings"),
]


@pytest.mark.parametrize("value,err,match", BAD_EMBEDDINGS)
def test_bad_embeddings_are_refused(value, err, match):
    with pytest.raises(err, match=match):
        fastbp.Network([5, 4, 2], embeddings=value)


def test_no_skip_from_an_embedded_input():
    with pytest.raises(ValueError, match="(?i)skip.*input.*embeddings"):
        fastbp.Network([6, 6, 6, 2], skips=[(0, 2)], embeddings=[(3, 1)])
    net = fastbp.Network([6, 6, 6, 2], skips="residual", embeddings=[(3, 1)])
    assert net.skips == [(1, 2)]                      # not (0, 1): a_0 holds codes
    assert fastbp.Network([6, 6, 6, 2], skips="residual").skips == [(0, 1), (1, 2)]


# -- ONNX ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["all", "several", "codes_only"])
def test_onnx_matches_predict(tmp_path, rng, case, dtype):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    net, spec = _net(case, dtype=dtype)
    X = _X(rng, spec, 40, dtype)
    fastbp.Trainer(net, batch_size=8, epochs=1, seed=0).fit(X, rng.integers(0, 3, 40))
    path = net.to_onnx(tmp_path / "m.onnx")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [["batch", spec.sizes[0]]]
    want = net.predict(X)
    for rows in (X[:1], X):
        (out,) = sess.run(["output"], {"input": rows})
        assert out.dtype == dtype
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out, want[:len(rows)], rtol=rtol,
                                   atol=rtol * 0.1 * np.abs(want).max())
    import onnx
    model = onnx.load(path)
    names = {i.name for i in model.graph.initializer}
    assert {f"embeddings.{e}.weight" for e in range(len(spec.embeddings))} <= names
    assert sum(n.op_type == "Gather" for n in model.graph.node) == len(spec.embeddings)


# -- MPI -----------------------------------------------------------------------------------------
def test_two_mpi_ranks_equal_one_process():
    pytest.importorskip("mpi4py")
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                           + os.environ.get("PATH", ""))
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install mpich)")
    out = subprocess.run([mpiexec, "-n", "2", sys.executable,
                          os.path.join(HERE, "mpi_embeddings.py")], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result) == 4, result
    for case, r in result.items():
        assert r["moved"] > 1e-3, (case, r)
        assert r["params"] < 1e-10 and r["stats"] < 1e-10 and r["loss"] < 1e-10, (case, r)
        assert r["same_on_ranks"], (case, r)
