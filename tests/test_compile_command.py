"""``fastbp compile`` fills the kernel cache: after it, fits, predictions and gradients of other
shapes, optimizers, losses and front ends compile nothing (numba's compile events, which fire
only when a function is compiled, not when it is loaded from the cache)."""
import os
import subprocess
import sys

import pytest

LATER = r"""
import warnings
import numpy as np
from numba.core import event
import fastbp

compiled = []


class Listener(event.Listener):
    def on_start(self, ev):
        name = getattr(getattr(ev.data["dispatcher"], "py_func", None), "__module__", "")
        if name.startswith("fastbp"):
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass


event.register("numba:compile", Listener())
rng = np.random.default_rng(1)
X = rng.standard_normal((300, 5)).astype(np.float32)
y = (X[:, 1] > 0).astype(int)
for net, loss, opt, batch in [
        (fastbp.Network([5, 7, 3], activation="tanh", output_activation="softmax"),
         "cross_entropy", "sgd", 150),
        (fastbp.Network([5, 9, 1], output_activation="sigmoid"), "binary_cross_entropy",
         "rmsprop", 1),
        (fastbp.Network([5, 6, 6, 1], skips="residual", normalization="layer", dropout=0.2),
         "squared_error", "adamw", 64)]:
    target = X[:, :1] if loss == "squared_error" else (y if loss == "cross_entropy" else y[:, None])
    fastbp.Trainer(net, loss=loss, optimizer=opt, batch_size=batch, epochs=2,
                   clip_norm=1.0).fit(X, target, validation_data=(X[:20], target[:20]))
    net.predict(X)
    net.loss(X, target, loss=loss)
    net.gradients(X[:7], target[:7], loss=loss)
big = np.zeros((1 << 18, 5), np.float32)    # X's finiteness pass (large X), writable and not
net.predict(big)
big.flags.writeable = False
net.predict(big)
try:
    from sklearn.exceptions import ConvergenceWarning
except ImportError:
    pass
else:
    warnings.simplefilter("ignore", ConvergenceWarning)
    fastbp.MLPClassifier(hidden_layer_sizes=(11,), max_iter=3, early_stopping=True).fit(X, y).predict_proba(X)
    fastbp.MLPRegressor(hidden_layer_sizes=(4, 4), max_iter=3, solver="sgd", alpha=0.1).fit(X, X[:, 0]).predict(X)
print(sorted(set(compiled)))
"""


@pytest.mark.skipif(os.environ.get("FASTBP_TEST_ISA") is not None, reason="ISA children")
def test_compile_fills_the_cache_for_later_processes(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "fastbp.cli", "compile", "--dtype", "float32",
                          "--quiet"], env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    later = subprocess.run([sys.executable, "-c", LATER], env=env, capture_output=True,
                           text=True, timeout=600)
    assert later.returncode == 0, later.stderr[-4000:]
    assert later.stdout.strip() == "[]", later.stdout


def test_compile_refuses_an_unknown_dtype(capsys):
    from fastbp.cli import main
    assert main(["compile", "--dtype", "float16"]) == 2
    assert "float16" in capsys.readouterr().err
    assert main(["compile", "--dtype", ","]) == 2      # no dtype at all
    assert "got ','" in capsys.readouterr().err


@pytest.mark.parametrize("helper_fails", [False, True])
def test_compile_runs_the_other_dtype_side_by_side(monkeypatch, capsys, helper_fails):
    """Two dtypes and two jobs: float64 in a process of its own (one job each), float32 here;
    a process that fails leaves its dtype to this one.  The environment is as it was."""
    from fastbp.cli import compile as C, main
    done, started = [], []
    monkeypatch.setattr(C, "_exercise",
                        lambda d: done.append((d.name, os.environ.get("FASTBP_COMPILE_JOBS"))))

    def start(dtypes, jobs):
        started.append((dtypes, jobs))
        code = "raise SystemExit(3)" if helper_fails else "pass"
        return {d: subprocess.Popen([sys.executable, "-c", code]) for d in dtypes}

    monkeypatch.setattr(C, "_start", start)
    monkeypatch.setenv("FASTBP_COMPILE_JOBS", "2")
    assert main(["compile", "--dtype", "float32,float64"]) == 0
    assert started == [(["float64"], 1)]
    assert done == [("float32", "1")] + ([("float64", "2")] if helper_fails else [])
    assert os.environ["FASTBP_COMPILE_JOBS"] == "2"
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["float32", "float64"]
