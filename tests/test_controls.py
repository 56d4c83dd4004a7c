"""Training controls: gradient clipping, the per-step OneCycleLR schedule, class and sample
weights, accuracy in the history — against PyTorch (float64, the same initial parameters and
batches) when it is installed, and against their definitions."""
import textwrap

import numpy as np
import pytest

import fastbp
from subprocess_run import run_with_threads
from fastbp import schedules


def _data(rng, n=90, d=5, k=3):
    X = rng.standard_normal((n, d))
    y = (np.argmax(X[:, :k] + 0.3 * rng.standard_normal((n, k)), axis=1) + (X[:, 0] > 1.2)) % k
    return X, y


def _accuracy(net, X, y):
    return float(np.mean(np.argmax(net.predict(X), axis=1) == y))


# -- against PyTorch --------------------------------------------------------------------------
def _torch_twin(net, torch):
    layers = []
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(lin)
        if l < net.n_layers - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def _torch_params(model):
    out = []
    for m in model:
        if hasattr(m, "weight"):
            out += [m.weight.detach().numpy().T.ravel(), m.bias.detach().numpy().ravel()]
    return np.concatenate(out)


def _torch_fit(model, torch, X, y, epochs, batch, lr, optimizer="adam", clip=None,
               onecycle=None, weight=None):
    """fastbp's Trainer with shuffle=False, done with torch: ``weight`` per sample."""
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    sched = None
    steps = -(-len(X) // batch)
    if onecycle is not None:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, total_steps=epochs * steps,
                                                    cycle_momentum=False, **onecycle)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    wt = None if weight is None else torch.from_numpy(weight)
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    for _ in range(epochs):
        for s in range(steps):
            sl = slice(s * batch, (s + 1) * batch)
            opt.zero_grad()
            ell = ce(model(Xt[sl]), yt[sl])
            loss = ell.mean() if wt is None else (wt[sl] * ell).sum() / wt[sl].sum()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip)
            opt.step()
            if sched is not None:
                sched.step()
    return _torch_params(model)


def _pair(rng):
    X, y = _data(rng)
    net = fastbp.Network([5, 12, 8, 3], activation="tanh", output_activation="softmax",
                         dtype=np.float64, seed=4)
    return X, y, net


CASES = {
    # a clip far below the raw gradient norm: every step is clipped
    "clip": dict(trainer=dict(clip_norm=0.01, learning_rate=0.05, optimizer="momentum"),
                 torch=dict(clip=0.01, optimizer="momentum", lr=0.05)),
    "onecycle": dict(trainer=dict(schedule="onecycle"), torch=dict(onecycle=dict(max_lr=0.05))),
    "class_weight": dict(trainer=dict(class_weight={0: 0.2, 1: 3.0, 2: 1.0}),
                         torch=dict(cw=np.array([0.2, 3.0, 1.0]))),
    "sample_weight": dict(trainer=dict(), torch=dict(sw=True)),
    "all": dict(trainer=dict(clip_norm=0.05, class_weight="balanced", schedule="onecycle"),
                torch=dict(clip=0.05, onecycle=dict(max_lr=0.05), cw="balanced", sw=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_trajectories_match_torch(rng, case):
    torch = pytest.importorskip("torch")
    X, y, net = _pair(rng)
    spec = CASES[case]
    kw = dict(spec["trainer"])
    if kw.get("schedule") == "onecycle":
        kw["schedule"] = schedules.OneCycleLR(0.05)
    tkw = dict(spec["torch"])
    sw = rng.uniform(0, 2, len(X)) if tkw.pop("sw", False) else None
    cw = tkw.pop("cw", None)
    if isinstance(cw, str):
        cw = len(y) / (3 * np.bincount(y))
    weight = None
    if cw is not None or sw is not None:
        weight = (np.ones(len(y)) if sw is None else sw) * (1.0 if cw is None else cw[y])
    model = _torch_twin(net, torch)
    want = _torch_fit(model, torch, X, y, epochs=4, batch=16,
                      **{"lr": 0.01, **tkw}, weight=weight)
    tr = fastbp.Trainer(net, batch_size=16, epochs=4, shuffle=False,
                        **{"learning_rate": 0.01, **kw})
    h = tr.fit(X, y, sample_weight=sw)
    start = _torch_params(_torch_twin(fastbp.Network([5, 12, 8, 3], activation="tanh",
                                                     output_activation="softmax",
                                                     dtype=np.float64, seed=4), torch))
    assert np.abs(want - start).max() > 1e-3           # training moved the parameters
    np.testing.assert_allclose(net.params, want, rtol=1e-9, atol=1e-12)
    assert len(h.accuracy) == 4


def test_clipping_bites_and_keeps_the_raw_norms(rng):
    X, y, net = _pair(rng)
    h = fastbp.Trainer(net, batch_size=len(X), epochs=1, optimizer="sgd", learning_rate=1.0,
                       clip_norm=1e-3, shuffle=False).fit(X, y)
    ref = fastbp.Network([5, 12, 8, 3], activation="tanh", output_activation="softmax",
                         dtype=np.float64, seed=4)
    _, dW, db = ref.gradients(X, y, loss="cross_entropy")
    g = np.sqrt(sum(np.sum(w ** 2) + np.sum(b ** 2) for w, b in zip(dW, db)))
    assert g > 0.1                                     # far above the clip
    moved = np.sqrt(np.sum((net.params - ref.params) ** 2))
    assert moved == pytest.approx(1e-3 * g / (g + 1e-6), rel=1e-9)   # |Δp| = lr · clip factor · g
    per_layer = [np.sqrt(np.sum(w ** 2) + np.sum(b ** 2)) for w, b in zip(dW, db)]
    np.testing.assert_allclose(h.grad_norm[0], per_layer, rtol=1e-10)


def test_a_clip_above_the_norm_changes_nothing(rng):
    X, y, a = _pair(rng)
    _, _, b = _pair(np.random.default_rng(0))
    fastbp.Trainer(a, epochs=2, seed=1).fit(X, y)
    fastbp.Trainer(b, epochs=2, seed=1, clip_norm=1e9).fit(X, y)
    assert a.params.tobytes() == b.params.tobytes()


# -- OneCycleLR -------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(pct_start=0.5, div_factor=10.0,
                                            final_div_factor=100.0), dict(pct_start=0.0)])
def test_onecycle_rates_match_torch(kw):
    torch = pytest.importorskip("torch")
    total = 23
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ts = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=total,
                                             cycle_momentum=False, **kw)
    want = []
    for _ in range(total):
        want.append(ts.get_last_lr()[0])
        opt.step()
        ts.step()
    s = schedules.OneCycleLR(0.3, total_steps=total, **kw)
    s._start(0.001)
    assert s.rates(0, total) == want                      # bit for bit


def test_onecycle_in_the_trainer_uses_one_rate_per_step(rng):
    X, y, net = _pair(rng)
    s = schedules.OneCycleLR(0.05)
    tr = fastbp.Trainer(net, batch_size=16, epochs=3, schedule=s, learning_rate=123.0)
    h = tr.fit(X, y)
    steps = -(-len(X) // 16)
    ref = schedules.OneCycleLR(0.05, total_steps=3 * steps)
    ref._start(1.0)
    all_rates = ref.rates(0, 3 * steps)
    assert h.learning_rate == all_rates[::steps]       # each epoch's first step
    assert s.last_epoch == 3 * steps
    # total_steps was fixed by the first fit: another fit would go past it, and is refused
    before = net.params.copy()
    with pytest.raises(ValueError, match="steps left"):
        tr.fit(X, y)
    assert net.params.tobytes() == before.tobytes() and s.last_epoch == 3 * steps


def test_onecycle_bad_arguments():
    with pytest.raises(ValueError, match="max_lr"):
        schedules.OneCycleLR(0.0)
    with pytest.raises(ValueError, match="pct_start"):
        schedules.OneCycleLR(0.1, pct_start=1.5)
    with pytest.raises(ValueError, match="total_steps"):
        schedules.OneCycleLR(0.1, total_steps=0)


# -- weights ----------------------------------------------------------------------------------
def test_sample_weights_are_a_weighted_mean(rng):
    """Integer weights equal repeating the samples (full batch, so the batches agree)."""
    X, y, a = _pair(rng)
    _, _, b = _pair(rng)
    w = rng.integers(0, 3, len(X))
    w[0] = 1
    fastbp.Trainer(a, batch_size=None, epochs=3, shuffle=False).fit(X, y, sample_weight=w)
    idx = np.repeat(np.arange(len(X)), w)
    fastbp.Trainer(b, batch_size=None, epochs=3, shuffle=False).fit(X[idx], y[idx])
    np.testing.assert_allclose(a.params, b.params, rtol=1e-10, atol=1e-13)


def test_balanced_class_weights_are_sklearns(rng):
    X, y, a = _pair(rng)
    y = np.where(rng.uniform(size=len(y)) < 0.7, 0, y)     # imbalanced
    _, _, b = _pair(rng)
    fastbp.Trainer(a, epochs=2, seed=3, class_weight="balanced").fit(X, y)
    cw = len(y) / (3 * np.bincount(y))
    fastbp.Trainer(b, epochs=2, seed=3).fit(X, y, sample_weight=cw[y])
    assert a.params.tobytes() == b.params.tobytes()


def test_binary_class_weights(rng):
    X = rng.standard_normal((80, 4))
    t = (X[:, 0] > 0.8).astype(float)
    nets = [fastbp.Network([4, 6, 1], output_activation="sigmoid", dtype=np.float64, seed=1)
            for _ in range(2)]
    fastbp.Trainer(nets[0], loss="binary_cross_entropy", epochs=2, seed=3,
                   class_weight={1: 4.0}).fit(X, t)
    fastbp.Trainer(nets[1], loss="binary_cross_entropy", epochs=2, seed=3).fit(
        X, t, sample_weight=np.where(t == 1, 4.0, 1.0))
    assert nets[0].params.tobytes() == nets[1].params.tobytes()


def test_a_batch_of_zero_weights_changes_no_gradient(rng):
    X, y, net = _pair(rng)
    w = np.ones(len(X))
    w[:16] = 0
    before = net.params.copy()
    h = fastbp.Trainer(net, optimizer="sgd", batch_size=16, epochs=1, shuffle=False).fit(
        X[:32], y[:32], sample_weight=w[:32])
    assert np.isfinite(h.loss[0])
    ref = fastbp.Network([5, 12, 8, 3], activation="tanh", output_activation="softmax",
                         dtype=np.float64, seed=4)
    ref.params = before
    fastbp.Trainer(ref, optimizer="sgd", batch_size=16, epochs=1, shuffle=False).fit(
        X[16:32], y[16:32])
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-12)


# -- accuracy ---------------------------------------------------------------------------------
def test_accuracy_is_counted_over_the_epochs_batches(rng):
    """Full batch: an epoch's accuracy is that of the parameters at its start; the validation
    accuracy that of the parameters at its end."""
    X, y, net = _pair(rng)
    Xv, yv = X[:30], y[:30]
    after, after_val = [], []

    def record(epoch, history):
        after.append(_accuracy(net, X, y))
        after_val.append(_accuracy(net, Xv, yv))

    first = _accuracy(net, X, y)
    h = fastbp.Trainer(net, batch_size=None, epochs=4, learning_rate=0.05,
                       callback=record).fit(X, y, validation_data=(Xv, yv))
    assert h.accuracy == [first] + after[:-1]
    assert h.val_accuracy == after_val
    assert len(set(h.accuracy)) > 1


def test_accuracy_of_one_hot_targets_and_multi_output_bce(rng):
    X, y, net = _pair(rng)
    h = fastbp.Trainer(net, batch_size=None, epochs=1).fit(X, np.eye(3)[y])
    ref = fastbp.Network([5, 12, 8, 3], activation="tanh", output_activation="softmax",
                         dtype=np.float64, seed=4)
    assert h.accuracy == [_accuracy(ref, X, y)]
    T = (X[:, :2] > 0).astype(float)
    bce = fastbp.Network([5, 4, 2], output_activation="sigmoid", dtype=np.float64, seed=2)
    want = float(np.mean((bce.predict(X) > 0.5) == (T > 0.5)))
    h = fastbp.Trainer(bce, loss="binary_cross_entropy", batch_size=None, epochs=1).fit(X, T)
    assert h.accuracy == [pytest.approx(want, abs=1e-12)]


def test_regression_has_no_accuracy(rng):
    X = rng.standard_normal((40, 3))
    net = fastbp.Network([3, 4, 1], dtype=np.float64)
    h = fastbp.Trainer(net, loss="squared_error", epochs=2).fit(X, X[:, 0], validation_data=(X, X[:, 0]))
    assert h.accuracy == [] and h.val_accuracy == []


# -- resume and threads with every control on --------------------------------------------------
def _controlled(net, **kw):
    return fastbp.Trainer(net, batch_size=8, epochs=3, seed=5, clip_norm=0.05,
                          class_weight="balanced", schedule=schedules.OneCycleLR(0.05), **kw)


def test_resume_mid_epoch_is_bitwise_with_every_control(rng, monkeypatch):
    X, y, _ = _pair(rng)
    sw = rng.uniform(0.5, 2, len(X))
    make = lambda: fastbp.Network([5, 12, 8, 3], activation="tanh", output_activation="softmax",
                                  dtype=np.float64, seed=4)
    ref = make()
    hr = _controlled(ref).fit(X, y, sample_weight=sw)
    net = make()
    tr = _controlled(net)
    calls = []
    monkeypatch.setattr(fastbp.engine, "STOP_STEPS", 3)
    h1 = tr.fit(X, y, sample_weight=sw, stop=lambda: calls.append(1) or len(calls) == 5)
    assert h1.interrupted
    arrays, info = tr.state()
    net2 = make()
    tr2 = _controlled(net2)
    tr2.load_state(arrays, info)
    tr2.epochs = 3 - len(h1.loss)
    h2 = tr2.fit(X, y, sample_weight=sw)
    assert net2.params.tobytes() == ref.params.tobytes()
    assert h1.accuracy + h2.accuracy == hr.accuracy
    assert h1.learning_rate + h2.learning_rate == hr.learning_rate


THREADS = textwrap.dedent("""
    import hashlib, numpy as np, fastbp
    from fastbp import schedules
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 40)).astype(np.float32)
    y = rng.integers(0, 4, 500)
    sw = rng.uniform(0, 2, 500)
    out = b""
    for sizes, batch in (([40, 300, 4], 100), ([40, 32, 4], 250)):   # threads / row blocks
        net = fastbp.Network(sizes, output_activation="softmax", seed=1)
        fastbp.Trainer(net, batch_size=batch, epochs=2, seed=3, clip_norm=0.1,
                       class_weight="balanced", schedule=schedules.OneCycleLR(0.01)
                       ).fit(X, y, sample_weight=sw)
        out += net.params.tobytes()
    print(hashlib.sha256(out).hexdigest())
""")


def test_bitwise_identical_on_1_and_2_threads_with_every_control():
    assert run_with_threads(THREADS, 1) == run_with_threads(THREADS, 2)


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,err,match", [
    (dict(clip_norm=0), ValueError, "clip_norm"),
    (dict(clip_norm=-1.0), ValueError, "clip_norm"),
    (dict(clip_norm=float("nan")), ValueError, "clip_norm"),
    (dict(clip_norm="1"), TypeError, "clip_norm"),
    (dict(class_weight="heavy"), ValueError, "balanced"),
    (dict(class_weight=[1.0, 2.0]), ValueError, "3 weights"),
    (dict(class_weight=[1.0, -2.0, 1.0]), ValueError, "negative"),
    (dict(class_weight=[1.0, np.inf, 1.0]), ValueError, "inf"),
    (dict(class_weight=[0, 0, 0]), ValueError, "all zero"),
    (dict(class_weight={0: 0, 1: 0, 2: 0}), ValueError, "zero for every class"),
    (dict(class_weight={3: 1.0}), ValueError, "keys"),
    (dict(class_weight={0: -1.0}), ValueError, r"class_weight\[0\]"),
    (dict(class_weight=[1, 1, 1], loss="squared_error"), ValueError, "squared_error"),
])
def test_bad_controls_are_refused(kw, err, match):
    net = fastbp.Network([5, 4, 3], output_activation="softmax")
    with pytest.raises(err, match=match):
        fastbp.Trainer(net, **kw)


@pytest.mark.parametrize("sw,match", [
    (np.ones(7), "90 weights"), (-np.ones(90), "negative"), (np.zeros(90), "all zero"),
    (np.full(90, np.nan), "NaN"), (np.ones((90, 1)), "1-D"), (["a"] * 90, "real numbers"),
])
def test_bad_sample_weights_change_nothing(rng, sw, match):
    X, y, net = _pair(rng)
    tr = fastbp.Trainer(net)
    before = net.params.copy()
    with pytest.raises((ValueError, TypeError), match=match):
        tr.fit(X, y, sample_weight=sw)
    assert net.params.tobytes() == before.tobytes() and tr.step == 0


def test_class_weight_needs_hard_labels(rng):
    X, y, net = _pair(rng)
    soft = np.full((len(X), 3), 1 / 3)
    tr = fastbp.Trainer(net, class_weight="balanced")
    with pytest.raises(ValueError, match="probabilities"):
        tr.fit(X, soft)
    assert tr.step == 0
    bce = fastbp.Network([5, 4, 2], output_activation="sigmoid")
    with pytest.raises(ValueError, match="several labels"):
        fastbp.Trainer(bce, loss="binary_cross_entropy", class_weight={0: 1.0})
