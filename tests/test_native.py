"""kernels/native.py: calls through the function table behave as direct calls (results,
exceptions), refuse arguments the canonical signature cannot take, and raise on an empty slot;
missing slots compile side by side in helper processes, and a failed helper's are compiled here."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from numba.core.errors import TypingError

import fastbp.kernels.train  # noqa: F401  (its import defines every slot's Native)
from fastbp import compilation
from fastbp.kernels import native


@njit(cache=False)
def _scaled_sum(B, params, grads):     # argument names from native.ARG_TYPES: i f1 f1
    if B < 0:
        raise ValueError("negative k")
    s = 0.0
    for i in range(params.shape[0]):
        grads[i] = params[i] * B
        s += grads[i]
    return s


N = native.Native(None, _scaled_sum, "d")     # in no slot of the table
stub = N.stub


@njit(cache=False)
def _caller(addr, k, a, out):
    return stub(addr, k, a, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_indirect_call_returns_what_the_direct_one_does(dtype):
    a = np.arange(5, dtype=dtype)
    out = np.zeros(5, dtype)
    got = _caller(N.address(dtype), 3, a, out)
    assert got == _scaled_sum(3, a, np.zeros(5, dtype)) == 30.0
    np.testing.assert_array_equal(out, 3 * a)


def test_the_callees_exception_reaches_the_caller():
    with pytest.raises(ValueError, match="negative k"):
        _caller(N.address(np.float64), -1, np.ones(3), np.zeros(3))


def test_an_empty_slot_raises_instead_of_jumping_to_zero():
    out = np.zeros(3)
    with pytest.raises(RuntimeError, match="_scaled_sum is not in the function table"):
        _caller(0, 2, np.ones(3), out)
    assert (out == 0).all()


def test_arguments_the_signature_cannot_take_fail_the_callers_typing():
    with pytest.raises(TypingError, match="argument 1 is array\\(float64, 2d"):
        _caller(N.address(np.float64), 2, np.ones((3, 1)), np.zeros(3))


def test_a_callees_signature_is_its_parameters_types_by_name():
    assert N.spec == "i f1 f1 -> d"
    for nat in native.NATIVES:      # every slot: its def's parameters, in order, typed by name
        names = nat.dispatcher.py_func.__code__.co_varnames[:nat.dispatcher.py_func.__code__.co_argcount]
        assert nat.spec.split("->")[0].split() == [native.ARG_TYPES[n] for n in names]

    def odd(B, weights):
        return B
    with pytest.raises(TypeError, match=r"odd: no type for the arguments \['weights'\]"):
        native.Native(None, njit(odd), "i")


def test_the_table_fills_slots_on_demand():
    t = compilation.Table(np.float32)
    assert (t.fns == 0).all() and t.fns.shape == (native.SLOTS,)
    t.need([native.FN_GEMM])
    assert t.fns[native.FN_GEMM] != 0 and (np.delete(t.fns, native.FN_GEMM) == 0).all()
    assert all(n is not None and n.slot == s for s, n in enumerate(native.NATIVES))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 30), st.floats(0.01, 10.0), max_size=12),
       st.integers(1, 6), st.floats(0.0, 3.0), st.sampled_from([0.0, 0.5, 4.0]))
def test_the_slots_are_shared_out_whole_and_balanced(costs, jobs, start, ahead):
    shares = compilation.share(costs, jobs, start, ahead)
    assert len(shares) == jobs
    assert sorted(s for part in shares for s in part) == sorted(costs)
    if costs and ahead <= start:    # the most costly slot is compiled here, never waited for
        assert max(costs, key=lambda s: (costs[s], -s)) in shares[0]
    if costs:
        # the greedy rule's bound: no process that compiles ends later than the mean end
        # plus one slot (a helper with nothing to do is not started)
        ends = [sum(costs[s] for s in part) + (start if j else ahead)
                for j, part in enumerate(shares) if part]
        mean = (sum(costs.values()) + start * (jobs - 1) + ahead) / jobs
        assert max(ends) <= mean + max(costs.values()) + 1e-9


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 30), st.floats(0.01, 10.0), max_size=10),
       st.dictionaries(st.sampled_from("abcdef"), st.floats(0.01, 10.0), max_size=4),
       st.integers(1, 5), st.floats(0.0, 3.0), st.sampled_from([0.0, 0.5, 4.0]))
def test_entry_points_go_to_helpers_and_the_slots_fill_in(slots, names, jobs, start, ahead):
    costs = {**slots, **names}
    shares = compilation.share(costs, jobs, start, ahead, aside=set(names))
    placed = costs if jobs > 1 else slots       # (no helper: the entry points left out)
    assert sorted(map(str, (s for part in shares for s in part))) == sorted(map(str, placed))
    assert not any(s in names for s in shares[0])       # never this process's
    ends = [sum(costs[s] for s in part) + (start if j else ahead)
            for j, part in enumerate(shares)]
    for j, part in enumerate(shares):
        # each slot went to a process that would finish it first: the last one a process took
        # started no later than any other process's end (loads only grow)
        if part and part[-1] in slots:
            assert ends[j] - costs[part[-1]] <= min(ends) + 1e-9


def test_the_named_entry_points_are_compiled_for_the_types_of_real_calls(monkeypatch):
    """Each entry point a helper may compile aside (compilation.EXTRAS, by the engine's template
    call) has the argument types of the calls that fits, predictions and scikit-learn's early
    stopping make, so that this process finds it in the cache (else the helper's work is
    lost, silently)."""
    import fastbp
    from fastbp import engine
    seen = {"predict": [], "evaluate": []}
    for name, call in (("predict", engine._PREDICT), ("evaluate", engine._EVALUATE)):
        kernel = call.kernel        # the engine's one call site of each (engine.Call)
        monkeypatch.setattr(call, "kernel", lambda *a, _k=kernel, _n=name: (
            seen[_n].append(tuple(_k.typeof_pyval(x) for x in a)), _k(*a))[1])
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        X = rng.standard_normal((40, 5)).astype(dtype)
        y = (X[:, 0] > 0).astype(int)
        net = fastbp.Network([5, 6, 2], output_activation="softmax", dtype=dtype,
                             normalization="batch", dropout=0.1, seed=0)
        fastbp.Trainer(net, loss="cross_entropy", epochs=1).fit(
            X[:30], y[:30], validation_data=(X[30:], y[30:]))
        net.predict(X)
        reg = fastbp.Network([5, 6, 1], dtype=dtype, seed=0)
        fastbp.Trainer(reg, loss="squared_error", epochs=1).fit(
            X[:30], X[:30, 0], validation_data=(X[30:], X[30:, 0]))
        fastbp.MLPClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=2,
                             random_state=0).fit(X.astype(np.float64), y)
        for name, entry in compilation.EXTRAS.items():
            sig = tuple(entry.kernel.typeof_pyval(a) for a in entry._call(dtype))
            calls = seen["predict" if name == "predict" else "evaluate"]
            assert sig in calls, (name, dtype)


def test_compile_jobs_from_the_environment(monkeypatch):
    from fastbp import _config
    monkeypatch.setenv("FASTBP_COMPILE_JOBS", "3")
    assert _config.compile_jobs() == 3
    monkeypatch.setenv("FASTBP_COMPILE_JOBS", "0")
    assert _config.compile_jobs() == 1
    monkeypatch.setenv("FASTBP_COMPILE_JOBS", "two")
    with pytest.raises(ValueError, match="FASTBP_COMPILE_JOBS must be a whole number; got 'two'"):
        _config.compile_jobs()
    monkeypatch.delenv("FASTBP_COMPILE_JOBS")
    assert 1 <= _config.compile_jobs() <= _config.COMPILE_JOBS_MAX
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", object())    # an MPI job: no helpers
    assert _config.compile_jobs() == 1


_HELPERS = """
import time
import numpy as np
import fastbp.engine
from fastbp import compilation as C
from fastbp.kernels import native as N
C.HELPER_START = 0.0    # the helper takes the second slot however cheap
slots, later = [N.FN_FORWARD_ROWS, N.FN_OUTPUT_BATCH], [N.FN_BACKWARD_ROWS, N.FN_OUTPUT_ROWS]
def sources(dtype, slots):
    sig = lambda s: N.canonical(N.NATIVES[s].spec, N.from_dtype(np.dtype(dtype))).args
    return ["cache" if N.NATIVES[s].dispatcher.stats.cache_hits[sig(s)] else
            "here" if N.NATIVES[s].dispatcher.stats.cache_misses[sig(s)] else "?"
            for s in slots]
t = C.Table(np.float64).need(slots)
assert all(t[s] != 0 for s in slots)
print(sources(np.float64, slots))
# not waiting, with more work of its own than the slots: both aside, loaded by finish()
table = C.Table(np.float64)
t = table.need(later, wait=False, ahead=5.0)
assert all(t[s] == 0 for s in later)
table.finish()
assert all(t[s] != 0 for s in later)
print(sources(np.float64, later))
C.HELPER = "raise SystemExit(3)"    # a helper that fails: this process compiles its share
t = C.Table(np.float32).need(slots)
assert all(t[s] != 0 for s in slots)
print(sources(np.float32, slots))
C.HELPER = "import time; time.sleep(120)"   # stopped: nothing loaded, the next need compiles
started = []
spawn = C._config.compile_child
C._config.compile_child = lambda *a: started.append(spawn(*a)) or started[-1]
table = C.Table(np.float32)
t = table.need(later, wait=False, ahead=5.0)
table.finish(stop=True)
assert started and all(p.poll() is not None for p in started)    # killed, not waited for
assert all(t[s] == 0 for s in later)
C._config.compile_child = spawn
C.HELPER = "raise SystemExit(3)"
t = table.need(later)
assert all(t[s] != 0 for s in later)
print(sources(np.float32, later))
"""


def test_missing_slots_compile_side_by_side_in_a_helper(tmp_path):
    """Cold cache, two jobs: the helper compiles one slot into the cache and this process
    loads it from there; not waiting, with work of its own ahead, this process leaves both
    slots to the helper and loads them when it finishes; when the helper fails, this process
    compiles that slot itself; a helper stopped leaves its slots for the next need."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTBP_COMPILE_JOBS="2")
    out = subprocess.run([sys.executable, "-c", _HELPERS], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == ["['here', 'cache']", "['cache', 'cache']",
                                           "['here', 'here']", "['here', 'here']"]


_FIT = """
import numpy as np
import fastbp
rng = np.random.default_rng(0)
X = rng.standard_normal((96, 5)).astype(np.float32)
y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
net = fastbp.Network([5, 8, 2], output_activation="softmax", dtype=np.float32, seed=0)
tr = fastbp.Trainer(net, loss="cross_entropy", optimizer="adam", learning_rate=0.01,
                    batch_size=16, epochs=3, seed=0, verbose=False)
h = tr.fit(X[:64], y[:64], validation_data=(X[64:], y[64:]))
result = np.concatenate([net.params, np.array(h.val_loss, np.float32)])
"""
_COLD_FIT = _FIT + """
import sys
from fastbp import engine
from fastbp.kernels import train as K
table = engine._TABLES[np.dtype(np.float32)]
assert not table._aside and not table._helpers, "the fit left helpers behind"
assert h.compile_seconds > 0
# the validation pass (a loss pass keeping the outputs): compiled by the helper, loaded here
assert not K.evaluate.stats.cache_misses and K.evaluate.stats.cache_hits
np.save(sys.argv[1], result)
"""


def test_a_cold_fit_compiles_its_loop_beside_the_helpers(tmp_path):
    """An empty cache and two jobs: the fit compiles train_epoch while a helper compiles the
    table's slots (EpochRunner asks without waiting) and the validation pass (asked for with
    engine.expect_calls), which this process loads from the cache; it trains exactly as a fit
    with a warm cache in this process does."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTBP_COMPILE_JOBS="2")
    out = subprocess.run([sys.executable, "-c", _COLD_FIT, str(tmp_path / "p.npy")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    here = {}
    exec(_FIT, here)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), here["result"])
