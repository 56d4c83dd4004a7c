"""Determinism across thread counts, two Python threads at once, and fork."""
import json
import textwrap

import pytest
from subprocess_run import run_with_threads


# shapes large enough that every product takes its parallel path (the first layer's with A
# packed into micro-panels), with a narrow output; and a small network on the row-block step
# (batches of 250 rows: 4 blocks, the last batch of 150: 2)
SCRIPT = textwrap.dedent("""
    import hashlib, sys, numpy as np, fastbp
    from fastbp.kernels.train import step_blocks
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 520)).astype(np.{dtype})
    y = rng.integers(0, 5, 400)
    net = fastbp.Network([520, 600, 64, 5], activation="tanh", output_activation="softmax",
                         dtype=np.{dtype}, seed=1)
    fastbp.Trainer(net, optimizer="{opt}", batch_size=130, epochs=2, seed=3).fit(X, y)
    small = fastbp.Network([20, 32, 5], output_activation="softmax", dtype=np.{dtype}, seed=1)
    assert step_blocks([20, 32, 5], 250) == 4
    fastbp.Trainer(small, optimizer="{opt}", batch_size=250, epochs=3, seed=3).fit(X[:, :20], y)
    print(hashlib.sha256(net.params.tobytes() + small.params.tobytes()).hexdigest())
""")




@pytest.mark.parametrize("dtype,opt", [("float32", "adam"), ("float64", "nesterov")])
def test_bitwise_identical_on_1_2_and_3_threads(dtype, opt):
    code = SCRIPT.format(dtype=dtype, opt=opt)
    digests = {t: run_with_threads(code, t) for t in (1, 2, 3)}
    assert len(set(digests.values())) == 1, digests


CONCURRENT = textwrap.dedent("""
    import hashlib, json, threading, numba, numpy as np, fastbp
    def train(seed, out):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((600, 30)).astype(np.float32)
        y = rng.integers(0, 4, 600)
        net = fastbp.Network([30, 300, 4], output_activation="softmax", seed=seed)
        fastbp.Trainer(net, batch_size=100, epochs=3, seed=seed).fit(X, y)
        out[seed] = hashlib.sha256(net.params.tobytes()).hexdigest()
    sequential, concurrent = {}, {}
    for s in (1, 2):
        train(s, sequential)
    threads = [threading.Thread(target=train, args=(s, concurrent)) for s in (1, 2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps([numba.threading_layer(), concurrent == sequential]))
""")


def _tbb_wheel():
    from fastbp import _config
    return any(_config._libtbb_candidates())


@pytest.mark.parametrize("layer", [None, "workqueue", "tbb"])
def test_two_python_threads_at_once_match_sequential_runs(layer):
    # under tbb/omp the two fits run concurrently; numba's workqueue layer aborts on concurrent
    # launches, so fastbp serialises its calls there and they take turns.  tbb named by the
    # user: the wheel's library is not on the loader path, fastbp must still find it
    if layer == "tbb" and not _tbb_wheel():
        pytest.skip("the tbb wheel is not installed")
    env = {"NUMBA_THREADING_LAYER": layer} if layer else {}
    used, same = json.loads(run_with_threads(CONCURRENT, 2, env))
    assert same and used == (layer or used)


FORK = textwrap.dedent("""
    import json, multiprocessing as mp, numpy as np, fastbp, numba
    def work(q):
        try:
            net = fastbp.Network([20, 300, 2], seed=0)
            q.put(float(net.forward(np.ones((64, 20))).sum()))
        except RuntimeError as e:
            q.put("error: " + str(e))
    net = fastbp.Network([20, 300, 2], seed=0)
    parent = float(net.forward(np.ones((64, 20))).sum())     # the parent uses the thread pool
    q = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=work, args=(q,))
    p.start(); p.join(60)
    print(json.dumps([numba.threading_layer(), p.exitcode, q.get(timeout=5) if p.exitcode == 0 else None, parent]))
""")


def test_fork_child_works_under_the_default_layer():
    layer, code, child, parent = json.loads(run_with_threads(FORK, 2))
    assert code == 0
    if layer == "tbb":          # the test extra installs tbb: fork-safe, the child computes
        assert child == parent
    else:
        assert child.startswith("error:")


def test_fork_child_under_openmp_gets_a_clear_error():
    layer, code, child, _ = json.loads(run_with_threads(FORK, 2, {"NUMBA_THREADING_LAYER": "omp"}))
    assert layer == "omp" and code == 0
    assert "forked from one that already used the GNU OpenMP" in child
