"""The engine and the holes it closes: read-only and memory-mapped input on the same compiled
code, damaged states refused before they reach the kernels, a fixed parameter buffer, the
threading guard released around callbacks, a warning when a state comes from another build,
and several cold processes compiling into one empty cache at once."""
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastbp
from fastbp import _config, engine
from fastbp._validation import check_targets
from fastbp.kernels import train as K


def _digits_like(rng, n=150, d=6, k=3):
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def _signatures():
    return {f.__name__: len(f.signatures) for f in (K.train_epoch, K.predict, K.evaluate,
                                                      K.batch_gradients)}


def test_read_only_and_memory_mapped_input_use_the_same_compiled_code(tmp_path, rng):
    X, y = _digits_like(rng)
    X = X.astype(np.float32)
    net = fastbp.Network([6, 8, 3], output_activation="softmax", seed=0)
    tr = fastbp.Trainer(net, epochs=1, batch_size=16, seed=0)
    tr.fit(X, y, validation_data=(X[:20], y[:20]))
    net.predict(X)
    net.loss(X, y)
    net.gradients(X[:10], y[:10])
    warm = _signatures()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    ym = np.load(tmp_path / "y.npy", mmap_mode="r")
    assert not Xm.flags.writeable
    ref = fastbp.Network([6, 8, 3], output_activation="softmax", seed=0)
    ref.params = net.params
    a = fastbp.Trainer(net, epochs=2, batch_size=16, seed=1).fit(Xm, ym, validation_data=(Xm[:20], ym[:20]))
    b = fastbp.Trainer(ref, epochs=2, batch_size=16, seed=1).fit(X, y, validation_data=(X[:20], y[:20]))
    assert np.array_equal(net.params, ref.params) and a.loss == b.loss
    assert np.array_equal(net.predict(Xm), net.predict(X))
    net.loss(Xm, ym)
    net.gradients(Xm[:10], ym[:10])
    assert _signatures() == warm             # nothing compiled again for read-only arrays


def test_read_only_input_is_not_copied(rng):
    X, y = _digits_like(rng)
    X.flags.writeable = False
    net = fastbp.Network([6, 8, 3], output_activation="softmax", dtype=np.float64, seed=0)
    Yf, Yi = check_targets(y, "cross_entropy", 3, 150, net.dtype)
    runner = engine.EpochRunner(net.params, net._st, net._codes("cross_entropy"),
                                engine.Optimizer(0, net.params.shape[0], net.dtype, 0.1), X, Yf, Yi, 32)
    assert np.shares_memory(runner.X, X)


def _stopped_state(make, X, y, polls_before_stop=2):
    tr = make()
    polls = []
    h = tr.fit(X, y, stop=lambda: polls.append(1) or len(polls) == polls_before_stop)
    assert h.interrupted
    return tr.state()


def _make():
    net = fastbp.Network([5, 7, 3], output_activation="softmax", dtype=np.float64, seed=0)
    return fastbp.Trainer(net, optimizer="adam", learning_rate=0.01, batch_size=2, epochs=2, seed=1)


@pytest.mark.parametrize("damage,match", [
    (lambda a, i: a.__setitem__("pending_perm", a["pending_perm"] + 10**6), "permutation"),
    (lambda a, i: a.__setitem__("pending_perm", a["pending_perm"][:-1]), "permutation"),
    (lambda a, i: a.__setitem__("pending_perm", a["pending_perm"].astype(float)), "permutation"),
    (lambda a, i: i["pending"].__setitem__("done", 10**6), "steps"),
    (lambda a, i: i["pending"].__setitem__("done", -1), "done"),
    (lambda a, i: i["pending"].__setitem__("n", "many"), "n must be"),
    (lambda a, i: i["pending"].__setitem__("total", float("nan")), "loss sum"),
    (lambda a, i: a.__setitem__("pending_gnorm", a["pending_gnorm"][:1]), "gradient norms"),
    (lambda a, i: a["params"].__setitem__(0, np.nan), "NaN"),
    (lambda a, i: a.pop("state2"), "state2"),
    (lambda a, i: i.__setitem__("step", -3), "step"),
    (lambda a, i: i.__setitem__("rng", {"bit_generator": "nope"}), "generator"),
])
def test_damaged_states_are_refused_and_change_nothing(rng, damage, match):
    X, y = _digits_like(rng, n=200, d=5)
    arrays, info = _stopped_state(_make, X, y)
    arrays = {k: v.copy() for k, v in arrays.items()}
    info = json.loads(json.dumps(info))          # as a checkpoint gives it back
    damage(arrays, info)
    tr = _make()
    before = tr.network.params.copy()
    with pytest.raises(ValueError, match=match):
        tr.load_state(arrays, info)
    assert np.array_equal(tr.network.params, before) and tr.step == 0
    tr.fit(X, y)                                  # and the trainer still works


def test_params_buffer_cannot_be_swapped(rng):
    net = fastbp.Network([3, 4, 2], dtype=np.float64, seed=0)
    buf = net.params
    w0 = net.weights[0]
    before = buf.copy()
    for bad in (np.zeros(5), np.zeros((buf.size, 1)), np.full(buf.size, np.nan)):
        with pytest.raises(ValueError):
            net.params = bad
        assert np.array_equal(net.params, before)
    with pytest.raises(TypeError):
        net.params = np.array(["a"] * buf.size)
    net.params = np.arange(buf.size)              # the right size: copied in
    assert net.params is buf and np.array_equal(buf, np.arange(buf.size))
    assert np.shares_memory(w0, net.params) and w0[0, 0] == 0.0


def test_state_from_another_build_resumes_with_a_warning(rng):
    X, y = _digits_like(rng, n=60, d=5)
    tr = _make()
    tr.fit(X, y)
    arrays, info = tr.state()
    info = json.loads(json.dumps(info))
    other = _make()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.load_state(arrays, info)            # same build: silent
    info["build"]["numba"] = "0.0.1"
    with pytest.warns(RuntimeWarning, match="no longer bitwise"):
        _make().load_state(arrays, info)


def test_guard_is_released_around_callbacks(monkeypatch, rng):
    """Under the workqueue layer the guard is a lock; a callback that waits on another thread
    using fastbp must not deadlock."""
    _config.ready()
    monkeypatch.setattr(_config, "_guard", threading.RLock())
    X, y = _digits_like(rng, n=40, d=5)
    net = fastbp.Network([5, 7, 3], output_activation="softmax", seed=0)
    done = []

    def callback(epoch, history):
        t = threading.Thread(target=lambda: done.append(net.predict(X).shape))
        t.start()
        t.join(timeout=60)
        return False
    fastbp.Trainer(net, epochs=2, callback=callback).fit(X, y)
    assert done == [(40, 3), (40, 3)]


COLD = textwrap.dedent("""
    import hashlib, numpy as np, fastbp
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    net = fastbp.Network([5, 8, 3], output_activation="softmax", seed=1)
    fastbp.Trainer(net, epochs=2, batch_size=16, seed=2).fit(X, y)
    print(hashlib.sha256(net.params.tobytes() + net.predict(X).tobytes()).hexdigest())
""")


def test_cold_processes_compiling_into_one_empty_cache_at_once(tmp_path):
    """numba has had crashes and half-written entries when several processes fill one cache
    (numba #4807, #7952): three cold processes started together all succeed alike, and a
    fourth then runs from the cache."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", COLD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    digests = {out.strip() for out, _ in outs}
    again = subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(digests) == 1 and again.stdout.strip() in digests


@pytest.mark.parametrize("overflow", ["gradient", "update"])
def test_finish_unchecked_goes_on_as_scikit_learn(overflow):
    """EpochRunner.finish_unchecked, scikit-learn's loop after a divergence: the rest of the
    epoch with every update applied whatever its values, the epoch's loss summed over all its
    steps; against the same steps computed one by one (engine.batch_gradients and scikit-learn's
    momentum update in NumPy).  The last batch holds the only row whose third input is not 0,
    a huge one, its weight 0: the loss stays finite while the gradient's squared norm overflows
    ("gradient"), or the update does ("update": the kernel applied it, its loss is lost)."""
    from fastbp.kernels import structure as S
    from fastbp.kernels.optimizers import SK_SGD
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 3))
    X[:, 2] = 0.0       # the third weight stays 0 until the last batch
    X[11, 2] = 1e160 if overflow == "gradient" else 1e150
    y = rng.standard_normal(12)
    lr, momentum = (0.1, 0.9) if overflow == "gradient" else (1e160, 0.9)
    net = fastbp.Network([3, 1], dtype=np.float64, seed=0)
    net.weights[0][2, 0] = 0.0
    if overflow == "update":    # the first two batches exact: no step before the last moves
        y[:8] = net.forward(X[:8]).ravel()
    start = net.params.copy()
    Yf, Yi = check_targets(y, "squared_error", 1, 12, net.dtype)
    codes = net._codes("squared_error")
    opt = engine.Optimizer(SK_SGD, net.params.shape[0], net.dtype, lr, momentum)
    runner = engine.EpochRunner(net.params, net._st, codes, opt, X, Yf, Yi, 4, rollback=False)
    with pytest.raises(engine.Diverged) as e:
        runner.run(np.arange(12))
    assert (e.value.what, e.value.steps) == (
        ("the gradient" if overflow == "gradient" else "the updated parameters"), 2)
    epoch = runner.finish_unchecked(e.value)

    params, velocity, grads = start.copy(), np.zeros_like(start), np.empty_like(start)
    ws = engine.Workspace(net._st, 4, net.dtype, train=True)
    total = 0.0
    for s in range(3):
        loss, wsum = engine.batch_gradients(params, net._st, codes, X, Yf, Yi,
                                            np.arange(4 * s, 4 * s + 4), grads, ws, mode=S.TRAIN)
        assert np.isfinite(loss) and wsum == 4
        total += loss
        with np.errstate(over="ignore", invalid="ignore"):
            velocity = momentum * velocity - lr * grads
            params = params + velocity
    assert opt.step == 3
    np.testing.assert_allclose(net.params, params, rtol=1e-12)
    np.testing.assert_allclose(opt.state[0], velocity, rtol=1e-12)
    if overflow == "gradient":      # applied: the third weight jumps to ~1e158
        assert np.abs(net.params).max() > 1e150
        assert epoch.loss == pytest.approx(total / 12, rel=1e-12)
    else:
        assert not np.isfinite(net.params).all() and np.isnan(epoch.loss)
    # a runner that rolls failed steps back (the Trainer's) does not go on unchecked
    guarded = engine.EpochRunner(net.params, net._st, codes, opt, X, Yf, Yi, 4)
    with pytest.raises(ValueError, match="rollback"):
        guarded.finish_unchecked(e.value)
