"""The fastbp command: the default job, data files, config, errors, checkpoints and resume,
signals, predict/evaluate/plot."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastbp
from fastbp.cli import main
from fastbp.datasets import load_digits
from fastbp.model.modelfile import load_checkpoint

CMD = [sys.executable, "-m", "fastbp.cli"]


def _params(d):
    return fastbp.load(os.path.join(d, "model.npz")).network.params


def _final(out):
    """The metrics of the final line ``validation: accuracy 0.97, ...`` as a dict."""
    line = out.strip().splitlines()[-1]
    where, _, rest = line.partition(": ")
    pairs = rest.split("  (")[0].split(", ")
    return where, {k: float(v) for k, v in (p.split() for p in pairs)}


def test_embedded_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert sorted(np.unique(y)) == list(range(10))


def test_default_train_reaches_95_percent(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--quiet", "--no-plot"]) == 0
    where, scores = _final(capsys.readouterr().out)
    acc = scores["accuracy"]
    assert where == "validation" and acc >= 0.95, scores
    assert {"balanced_accuracy", "f1_macro", "log_loss", "roc_auc"} <= set(scores)
    model = fastbp.load(tmp_path / "model.npz")
    net = model.network
    # the digits' pixels that are 0 in every image are dropped (constant columns)
    assert net.layer_sizes == [61, 64, 10] and len(model.feature_names_in_) == 61
    assert model.classes_ == list(range(10))
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # the defaults: up to 500 epochs, early stopping after 30 without improvement
    assert metrics["stopped_early"] and len(lines) == metrics["epochs_trained"] < 500
    assert metrics["best_epoch"] == len(lines) - 30
    rec = json.loads(lines[-1])
    assert rec["epoch"] == len(lines) and len(rec["grad_norm"]) == 2
    assert len(rec["weight_norm"]) == 2
    assert rec["val_loss"] > 0 and rec["seconds"] > 0
    assert abs(metrics["validation_accuracy"] - acc) < 1e-4 and metrics["classes"] == list(range(10))
    arrays, info = load_checkpoint(tmp_path / "checkpoint.npz")
    assert info["epoch"] == len(lines) and np.array_equal(arrays["best_params"][:net.params.size],
                                                         net.params)


def test_train_asks_for_its_final_prediction_to_compile_aside(tmp_path, capsys, monkeypatch):
    """The final metric's prediction is named before the first fit (engine.expect_calls), so
    that on a cold cache the fit's helpers compile it beside the kernels."""
    from fastbp import engine
    asked = []
    monkeypatch.setattr(engine, "expect_calls", lambda dtype, *names: asked.append(
        (np.dtype(dtype), names)))
    assert main(["train", "--epochs", "1", "--dtype", "float64", "--out", str(tmp_path),
                 "--quiet", "--no-plot"]) == 0
    assert (np.dtype(np.float64), ("predict",)) in asked


def _regression_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X @ [1.0, -2.0, 0.5]
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    # the target in the middle, found by name
    np.savetxt(tmp_path / "d.csv", np.column_stack([X[:, :1], y, X[:, 1:]]), delimiter=",",
               header="a,t,b,c", comments="")
    return X, y


@pytest.mark.parametrize("files", [["d.npz"], ["X.npy", "--target", "y.npy"], ["d.csv", "--target", "t"]])
def test_train_from_files(tmp_path, capsys, files):
    _regression_files(tmp_path)
    args = ["train", "--data", str(tmp_path / files[0]), *[str(tmp_path / f) if f.endswith(".npy") else f for f in files[1:]],
            "--epochs", "40", "--layers", "16", "--lr", "0.01", "--quiet"]
    assert main(args) == 0
    where, scores = _final(capsys.readouterr().out)
    assert where == "validation" and scores["mse"] < 0.5 and scores["r2"] > 0.9, scores


def test_train_from_parquet(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    X, y = _regression_files(tmp_path)
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "t": y}), tmp_path / "d.parquet")
    assert main(["train", "--data", str(tmp_path / "d.parquet"), "--target", "t", "--epochs", "40",
                 "--layers", "16", "--lr", "0.01", "--quiet"]) == 0
    assert _final(capsys.readouterr().out)[1]["mse"] < 0.5


def test_config_file_and_flags_override(tmp_path, capsys):
    conf = tmp_path / "run.toml"
    conf.write_text('layers = [8, 8]\nepochs = 2\nbatch-size = 64\noptimizer = "sgd"\nlr = 0.05\n')
    out = tmp_path / "o"
    assert main(["train", "--config", str(conf), "--epochs", "3", "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert fastbp.load(out / "model.npz").network.layer_sizes == [61, 8, 8, 10]
    assert len((out / "history.jsonl").read_text().splitlines()) == 3          # the flag won
    _, info = load_checkpoint(out / "checkpoint.npz")
    assert info["settings"]["batch_size"] == 64 and info["settings"]["optimizer"] == "sgd"
    conf.write_text("learning_rate = 0.1\n")
    assert main(["train", "--config", str(conf)]) == 2
    assert "unknown setting 'learning_rate'" in capsys.readouterr().err


def _run_fails(args, capsys, needle):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_input_gives_one_line_exit_2_and_no_model(tmp_path, capsys):
    out = tmp_path / "out"
    _run_fails(["train", "--data", str(tmp_path / "missing.npz"), "--out", str(out)], capsys, "no such file")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n4,5,6,7\n")
    _run_fails(["train", "--data", str(bad)], capsys, "not a readable CSV")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,3\n4,5\n")
    _run_fails(["train", "--data", str(ragged)], capsys, "ragged")
    good = tmp_path / "good.csv"
    good.write_text("a,b,c\n1,2,3\n4,5,6\n")
    _run_fails(["train", "--data", str(good), "--target", "zz"], capsys, "no column 'zz'")
    inf = tmp_path / "inf.npz"
    np.savez(inf, X=np.array([[np.inf, 1.0], [2.0, 3.0]] * 10), y=np.arange(20.0))
    _run_fails(["train", "--data", str(inf), "--out", str(out)], capsys, "infinite")
    nothing = tmp_path / "nothing.npz"      # missing values are imputed; no column is left here
    np.savez(nothing, X=np.array([[np.nan, 1.0]] * 10), y=np.arange(10.0))
    _run_fails(["train", "--data", str(nothing), "--out", str(out)], capsys,
               "no feature columns are left")
    blocker = tmp_path / "file"
    blocker.write_text("")
    _run_fails(["train", "--out", str(blocker / "sub")], capsys, "not a writable directory")
    _run_fails(["train", "--resume", "--out", str(tmp_path / "nothing")], capsys, "no checkpoint")
    _run_fails(["train", "--validation-split", "1.5"], capsys, "validation_split")
    assert not out.exists()         # a refused run writes nothing, not even --out


def test_resume_is_bitwise_and_refuses_changed_settings(tmp_path, capsys):
    full, split = tmp_path / "full", tmp_path / "split"
    common = ["--epochs", "6", "--quiet", "--no-plot", "--seed", "3", "--batch-size", "50"]
    assert main(["train", "--out", str(full), *common]) == 0
    assert main(["train", "--out", str(split), *common[:1], "2", *common[2:]]) == 0
    _run_fails(["train", "--out", str(split), "--resume", "--lr", "0.5", "--epochs", "6"], capsys,
               "lr differ")
    assert main(["train", "--out", str(split), "--resume", "--epochs", "6", "--quiet"]) == 0
    assert np.array_equal(_params(full), _params(split))
    a = [json.loads(x) for x in (full / "history.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (split / "history.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


def _uninterrupted(tmp_path, args):
    ref = tmp_path / "ref"
    out = subprocess.run(CMD + ["train", "--out", str(ref), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return _params(ref)


ARGS = ["--epochs", "40", "--batch-size", "16", "--quiet", "--no-plot", "--dtype", "float64",
        "--early-stopping", "none"]


def _start(out):
    return subprocess.Popen(CMD + ["train", "--out", str(out), *ARGS], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(out, proc, epochs=2):
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        h = out / "history.jsonl"
        if h.exists() and len(h.read_text().splitlines()) >= epochs:
            return
        time.sleep(0.01)
    pytest.fail("the run ended or stalled before checkpointing")


def test_sigkill_then_resume_is_bitwise(tmp_path):
    ref = _uninterrupted(tmp_path, ARGS)
    out = tmp_path / "killed"
    proc = _start(out)
    _wait_for_checkpoint(out, proc)
    time.sleep(np.random.default_rng(7).uniform(0, 0.05))  # at some moment, mid-epoch or mid-write
    proc.kill()
    proc.wait()
    res = subprocess.run(CMD + ["train", "--out", str(out), "--resume", *ARGS], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(_params(out), ref)


def test_sigterm_writes_checkpoint_exits_143_and_resumes(tmp_path):
    ref = _uninterrupted(tmp_path, ARGS)
    out = tmp_path / "term"
    proc = _start(out)
    _wait_for_checkpoint(out, proc)
    # held still while the signal is sent, so that the run cannot end first however fast it is
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "resume" in err
    _, info = load_checkpoint(out / "checkpoint.npz")
    assert 2 <= info["epoch"] < 40
    assert not (out / "model.npz").exists()       # nothing that looks like a finished model
    res = subprocess.run(CMD + ["train", "--out", str(out), "--resume", *ARGS], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(_params(out), ref)


def test_predict_and_evaluate(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 4))
    labels = np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")
    np.savez(tmp_path / "d.npz", X=X, y=labels)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d.npz"), "--epochs", "30", "--lr", "0.01",
                 "--out", str(run), "--quiet", "--no-plot"]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(run), "--data", str(tmp_path / "d.npz")]) == 0
    head, *pred = capsys.readouterr().out.split()
    assert head == "y"          # a header: the target's name
    assert len(pred) == 300 and set(pred) <= {"pos", "neg"} and np.mean(np.array(pred) == labels) > 0.9
    assert main(["predict", "--model", str(run / "model.npz"), "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "p.npy")]) == 0
    assert list(np.load(tmp_path / "p.npy")) == pred
    assert main(["evaluate", "--model", str(run), "--data", str(tmp_path / "d.npz")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["accuracy"] > 0.9 and res["n"] == 300 and res["log_loss"] > 0
    assert res["n"] == 300 and np.sum(res["confusion_matrix"]) == 300


def test_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--out", str(run), "--quiet"]) == 0
    assert (run / "training.png").read_bytes()[:4] == b"\x89PNG"      # drawn at the end of train
    assert main(["plot", str(run), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 10000
    assert main(["plot", str(tmp_path / "nothing")]) == 2


def test_help_reads_like_a_man_page():
    out = subprocess.run(CMD + ["train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for needle in ("--layers", "--resume", "--config", "history.jsonl", "143", "mpiexec"):
        assert needle in out.stdout
    top = subprocess.run(CMD + ["--help"], capture_output=True, text=True).stdout
    assert all(c in top for c in ("train", "predict", "evaluate", "plot", "Exit codes"))
