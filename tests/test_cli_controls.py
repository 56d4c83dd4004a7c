"""The command line's training controls (--schedule, --clip-norm, --early-stopping, --min-delta,
--class-weight, --sample-weight, in flags and --config), the accuracy and learning-rate columns,
resume with them, `fastbp export` (ONNX) and the plot's extra panels and ticks.  Runs are tiny:
a few epochs of small layers."""
import json
import math
import sys

import numpy as np
import pytest

import fastbp
from fastbp.cli import main
from fastbp.model.modelfile import load_checkpoint

QUICK = ["--quiet", "--no-plot", "--layers", "8"]


def _history(d):
    return [json.loads(x) for x in (d / "history.jsonl").read_text().splitlines()]


def _metrics(d):
    return json.loads((d / "metrics.json").read_text())


def _params(d):
    return fastbp.load(d / "model.npz").network.params


def _train(out, *args):
    code = main(["train", "--out", str(out), *QUICK, *args])
    assert code == 0
    return _history(out)


def _fails(args, capsys, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastbp: error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def _binary_files(tmp_path, n=400, minority=0.1, seed=0):
    """An imbalanced two-class problem with string labels (npz) and a CSV with a weight
    column in the middle."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] > np.quantile(X[:, 0] + 0.5 * X[:, 1], 1 - minority),
                 "rare", "common")
    np.savez(tmp_path / "b.npz", X=X, y=y)
    return X, y


# -- schedules ----------------------------------------------------------------------------------
def test_step_schedule_halves_the_learning_rate_each_epoch(tmp_path):
    hist = _train(tmp_path, "--epochs", "4", "--schedule", "step:1:0.5")
    lr = [r["learning_rate"] for r in hist]
    assert lr[0] == pytest.approx(1e-3, rel=1e-6)
    assert [b / a for a, b in zip(lr, lr[1:])] == [0.5, 0.5, 0.5]
    _, info = load_checkpoint(tmp_path / "checkpoint.npz")
    assert info["settings"]["schedule"] == "step:1:0.5"
    assert _metrics(tmp_path)["settings"]["schedule"] == "step:1:0.5"


def _cosine(e, T, lo, hi):
    return lo + (hi - lo) * (1 + math.cos(math.pi * e / T)) / 2


@pytest.mark.parametrize("spec, expect", [
    ("cosine", lambda e: _cosine(e, 5, 0.0, 1e-2)),
    ("cosine:0.001", lambda e: _cosine(e, 5, 1e-3, 1e-2)),
    ("exponential:0.8", lambda e: 1e-2 * 0.8 ** e),
    ("multistep:2,4:0.5", lambda e: 1e-2 * 0.5 ** ((e >= 2) + (e >= 4))),
    ("step:2", lambda e: 1e-2 * 0.1 ** (e // 2)),
])
def test_epoch_schedules_follow_their_formula(tmp_path, spec, expect):
    hist = _train(tmp_path, "--epochs", "5", "--lr", "0.01", "--dtype", "float64",
                  "--schedule", spec)
    lr = [r["learning_rate"] for r in hist]
    assert lr == pytest.approx([expect(e) for e in range(5)], rel=1e-9, abs=1e-15)


def test_onecycle_rises_to_max_lr_then_falls_per_mini_batch(tmp_path):
    hist = _train(tmp_path, "--epochs", "6", "--lr", "0.01", "--dtype", "float64",
                  "--batch-size", "128", "--schedule", "onecycle:0.05")
    lr = [r["learning_rate"] for r in hist]
    assert lr[0] == pytest.approx(0.05 / 25)           # max_lr / div_factor at the first step
    top = int(np.argmax(lr))
    assert 0 < top < 5 and max(lr) <= 0.05
    assert all(a < b for a, b in zip(lr[:top], lr[1:top + 1]))
    assert all(a > b for a, b in zip(lr[top:], lr[top + 1:]))
    # the default max_lr is --lr; the spec is kept as given (lr is part of the settings too)
    hist = _train(tmp_path / "d", "--epochs", "2", "--lr", "0.02", "--schedule", "onecycle")
    assert hist[0]["learning_rate"] == pytest.approx(0.02 / 25, rel=1e-6)
    _, info = load_checkpoint(tmp_path / "d" / "checkpoint.npz")
    assert info["settings"]["schedule"] == "onecycle"


def test_plateau_schedule_runs_and_is_recorded_in_full(tmp_path):
    hist = _train(tmp_path, "--epochs", "3", "--schedule", "plateau:0.5:0")
    assert len(hist) == 3 and all(r["learning_rate"] > 0 for r in hist)
    _, info = load_checkpoint(tmp_path / "checkpoint.npz")
    assert info["settings"]["schedule"] == "plateau:0.5:0"
    _train(tmp_path / "p", "--epochs", "1", "--schedule", "plateau")
    _, info = load_checkpoint(tmp_path / "p" / "checkpoint.npz")
    assert info["settings"]["schedule"] == "plateau:0.1:10"        # the defaults spelt out


@pytest.mark.parametrize("spec, needle", [
    ("warmup", "unknown schedule 'warmup'"),
    ("step", "step needs STEP_SIZE"),
    ("step:0", "STEP_SIZE must be an integer >= 1"),
    ("step:2:abc", "GAMMA must be a number"),
    ("step:2:0.5:9", "at most STEP_SIZE:GAMMA"),
    ("cosine:-1", "ETA_MIN must be >= 0"),
    ("multistep:", "multistep needs its milestones"),
    ("multistep:3,x", "a milestone must be an integer"),
    ("exponential", "exponential needs GAMMA"),
    ("exponential:0", "GAMMA must be > 0"),
    ("onecycle:0", "MAX_LR must be > 0"),
    ("plateau:1", "FACTOR must be > 0 and < 1"),
    ("plateau:0.5:-1", "PATIENCE must be an integer >= 0"),
])
def test_a_bad_schedule_is_exit_2_naming_it_and_the_forms(capsys, spec, needle):
    _fails(["train", "--schedule", spec, "--epochs", "1", *QUICK], capsys,
           f"schedule {spec!r}", needle, "step:STEP_SIZE[:GAMMA]", "onecycle", "plateau")


# -- early stopping, clipping -------------------------------------------------------------------
def test_early_stopping_stops_keeps_the_best_epoch_and_says_so(tmp_path, capsys):
    # no epoch can improve on the first by more than min_delta: it stops after 1 + patience
    out = tmp_path / "es"
    hist = _train(out, "--epochs", "10", "--early-stopping", "2", "--min-delta", "1e9")
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    m = _metrics(out)
    assert m["stopped_early"] is True and m["best_epoch"] == 1 and m["epochs_trained"] == 3
    assert m["best_val_loss"] == hist[0]["val_loss"] and m["val_loss"] == hist[-1]["val_loss"]
    assert m["settings"]["early_stopping"] == 2 and m["settings"]["min_delta"] == 1e9
    assert "stopped early, the model is epoch 1's" in capsys.readouterr().out
    assert main(["train", "--out", str(tmp_path / "loud"), "--no-plot", "--layers", "8",
                 "--epochs", "10", "--early-stopping", "2", "--min-delta", "1e9"]) == 0
    assert "early stopping after epoch 3" in capsys.readouterr().err
    # the model is epoch 1's: the same as a run of one epoch (without early stopping)
    _train(tmp_path / "one", "--epochs", "1", "--early-stopping", "none")
    assert np.array_equal(_params(out), _params(tmp_path / "one"))
    # a stopped run is finished: --resume trains nothing more
    assert main(["train", "--out", str(out), "--resume", "--epochs", "10", "--quiet"]) == 0
    assert len(_history(out)) == 3 and np.array_equal(_params(out), _params(tmp_path / "one"))
    # without early stopping metrics.json has no such keys
    m = _metrics(tmp_path / "one")
    assert "best_epoch" not in m and "stopped_early" not in m


def test_early_stopping_needs_a_validation_split(capsys):
    _fails(["train", "--early-stopping", "3", "--validation-split", "0", *QUICK], capsys,
           "early_stopping", "--validation-split")


def test_clip_norm_bounds_every_step_and_is_recorded(tmp_path):
    # with sgd each step moves the parameters by lr * ‖clipped gradient‖ <= lr * C
    # (no weight decay: torch's SGD adds it to the gradient after the clipping)
    args = ["--epochs", "1", "--optimizer", "sgd", "--lr", "0.1", "--dtype", "float64",
            "--weight-decay", "0"]
    _train(tmp_path / "c", *args, "--clip-norm", "0.001")
    _train(tmp_path / "free", *args)
    p0 = fastbp.Network([61, 8, 10], activation="relu", output_activation="softmax",
                        dtype=np.float64, seed=0, init="glorot_uniform").params   # 3 constant
    #                                                                    pixels dropped
    steps = math.ceil(1348 / 32)
    clipped = np.linalg.norm(_params(tmp_path / "c") - p0)
    assert clipped <= steps * 0.1 * 0.001 * (1 + 1e-6)
    assert np.linalg.norm(_params(tmp_path / "free") - p0) > 10 * clipped
    _, info = load_checkpoint(tmp_path / "c" / "checkpoint.npz")
    assert info["settings"]["clip_norm"] == 0.001
    assert _metrics(tmp_path / "c")["settings"]["clip_norm"] == 0.001


@pytest.mark.parametrize("flag, value, needle", [
    ("--clip-norm", "0", "clip_norm must be a positive number"),
    ("--clip-norm", "inf", "clip_norm must be a positive number"),
    ("--min-delta", "-1", "min_delta must be a number >= 0"),
])
def test_bad_control_values_are_exit_2(capsys, flag, value, needle):
    _fails(["train", flag, value, "--epochs", "1", *QUICK], capsys, needle)


# -- class and sample weights -------------------------------------------------------------------
def test_class_weight_balanced_changes_the_trajectory(tmp_path):
    _binary_files(tmp_path)
    data = ["--data", str(tmp_path / "b.npz"), "--epochs", "3", "--lr", "0.01"]
    plain = _train(tmp_path / "plain", *data)
    balanced = _train(tmp_path / "bal", *data, "--class-weight", "balanced")
    assert [r["loss"] for r in plain] != [r["loss"] for r in balanced]
    # the labels of the data, not indices: "rare" weighs 9, "common" 1 (not mentioned)
    rare = _train(tmp_path / "rare", *data, "--class-weight", "rare:9")
    assert [r["loss"] for r in rare] != [r["loss"] for r in plain]
    _, info = load_checkpoint(tmp_path / "rare" / "checkpoint.npz")
    assert info["settings"]["class_weight"] == {"rare": 9.0}
    _, info = load_checkpoint(tmp_path / "bal" / "checkpoint.npz")
    assert info["settings"]["class_weight"] == "balanced"


def test_class_weight_errors(tmp_path, capsys):
    _binary_files(tmp_path)
    data = ["--data", str(tmp_path / "b.npz"), "--epochs", "1", *QUICK]
    _fails(["train", *data, "--class-weight", "often:3"], capsys, "no class 'often'", "rare")
    _fails(["train", *data, "--class-weight", "rare:x"], capsys, "class 'rare'", ">= 0")
    _fails(["train", *data, "--class-weight", "heavy"], capsys, "'balanced' or CLASS:WEIGHT")
    _fails(["train", *data, "--class-weight", "rare:1,rare:2"], capsys, "given twice")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", X=rng.standard_normal((50, 2)), y=rng.standard_normal(50))
    _fails(["train", "--data", str(tmp_path / "r.npz"), "--class-weight", "balanced", *QUICK],
           capsys, "needs a classifier", "squared_error")


def test_sample_weight_from_a_csv_column_is_not_a_feature(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X @ [1.0, -2.0, 0.5]
    w = np.where(X[:, 0] > 0, 1.0, 0.0)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X[:, :1], w, X[:, 1:], y]), delimiter=",",
               header="a,w,b,c,t", comments="")
    data = ["--data", str(tmp_path / "d.csv"), "--epochs", "3", "--lr", "0.01"]
    weighted = _train(tmp_path / "w", *data, "--sample-weight", "w")
    assert fastbp.load(tmp_path / "w" / "model.npz").network.layer_sizes[0] == 3    # a, b, c
    plain = _train(tmp_path / "p", *data)
    assert fastbp.load(tmp_path / "p" / "model.npz").network.layer_sizes[0] == 4    # w is a feature
    assert [r["loss"] for r in weighted] != [r["loss"] for r in plain]
    _, info = load_checkpoint(tmp_path / "w" / "checkpoint.npz")
    assert info["settings"]["sample_weight"] == "w"


def test_sample_weight_from_a_parquet_column(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    pq.write_table(pa.table({"a": X[:, 0], "w": rng.uniform(0, 1, 100), "b": X[:, 1],
                             "t": X[:, 2]}), tmp_path / "d.parquet")
    data = ["--data", str(tmp_path / "d.parquet"), "--epochs", "1"]
    _train(tmp_path / "o", *data, "--sample-weight", "w")
    assert fastbp.load(tmp_path / "o" / "model.npz").network.layer_sizes[0] == 2     # a, b
    _fails(["train", *data, *QUICK, "--sample-weight", "t"], capsys, "both the target")
    _fails(["train", *data, *QUICK, "--sample-weight", "zz"], capsys, "no such column",
           "['a', 'w', 'b', 't']")


def test_class_weight_with_binary_cross_entropy_takes_0_and_1(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 1).astype(float))
    data = ["--data", str(tmp_path / "d.npz"), "--loss", "binary_cross_entropy", "--epochs", "2"]
    plain = _train(tmp_path / "p", *data)
    heavy = _train(tmp_path / "h", *data, "--class-weight", "1:5")
    assert [r["loss"] for r in plain] != [r["loss"] for r in heavy]
    assert all(0 <= r["accuracy"] <= 1 for r in heavy)
    _fails(["train", *data, *QUICK, "--class-weight", "2:3"], capsys, "no class '2'", "[0, 1]")


def test_sample_weight_from_npy_and_its_errors(tmp_path, capsys):
    n = 1797                                                 # the embedded digits
    w = np.ones(n)
    w[::2] = 0.0
    np.save(tmp_path / "w.npy", w)
    plain = _train(tmp_path / "p", "--epochs", "2")
    weighted = _train(tmp_path / "w", "--epochs", "2", "--sample-weight", str(tmp_path / "w.npy"))
    assert [r["loss"] for r in plain] != [r["loss"] for r in weighted]
    np.save(tmp_path / "short.npy", np.ones(10))
    np.save(tmp_path / "neg.npy", -np.ones(n))
    np.save(tmp_path / "zero.npy", np.zeros(n))
    base = ["train", "--epochs", "1", *QUICK, "--sample-weight"]
    _fails([*base, str(tmp_path / "short.npy")], capsys, f"must hold {n} weights")
    _fails([*base, str(tmp_path / "neg.npy")], capsys, "must not be negative")
    _fails([*base, str(tmp_path / "zero.npy")], capsys, "are all zero")
    _fails([*base, str(tmp_path / "missing.npy")], capsys, "missing.npy: no such file")
    _fails([*base, "weights"], capsys, "not a .npy file")
    (tmp_path / "d.csv").write_text("a,b,t\n1,2,3\n4,5,6\n")
    csv = [*base[:-1], "--data", str(tmp_path / "d.csv"), "--sample-weight"]
    _fails([*csv, "zz"], capsys, "no such column", "['a', 'b', 't']")
    _fails([*csv, "t"], capsys, "the last one")
    _fails([*csv[:-1], "--target", "b", "--sample-weight", "b"], capsys,
           "both the target and the sample weights")


def test_sample_weight_changes_are_refused_on_resume(tmp_path, capsys):
    w = np.ones(1797)
    np.save(tmp_path / "w.npy", w)
    out = tmp_path / "run"
    _train(out, "--epochs", "1", "--sample-weight", str(tmp_path / "w.npy"))
    w[:100] = 3.0
    np.save(tmp_path / "w.npy", w)
    _fails(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"], capsys,
           "data differ")


def test_sample_weight_from_an_npz_array(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 2))
    np.savez(tmp_path / "d.npz", X=X, y=X.sum(1), weight=rng.uniform(0.5, 2, 120))
    _train(tmp_path / "o", "--data", str(tmp_path / "d.npz"), "--epochs", "1",
           "--sample-weight", "weight")
    assert fastbp.load(tmp_path / "o" / "model.npz").network.layer_sizes[0] == 2


# -- history and metrics columns ----------------------------------------------------------------
def test_accuracy_columns_for_classification_only(tmp_path):
    hist = _train(tmp_path / "c", "--epochs", "2")
    for r in hist:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1
        assert r["learning_rate"] == pytest.approx(1e-3, rel=1e-6)
    m = _metrics(tmp_path / "c")
    assert m["accuracy"] == hist[-1]["accuracy"] and m["val_accuracy"] == hist[-1]["val_accuracy"]
    assert abs(m["val_accuracy"] - m["validation_accuracy"]) < 1e-9

    hist = _train(tmp_path / "nv", "--epochs", "1", "--validation-split", "0")
    assert hist[0]["accuracy"] > 0 and hist[0]["val_accuracy"] is None

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", X=rng.standard_normal((80, 2)), y=rng.standard_normal(80))
    hist = _train(tmp_path / "r", "--data", str(tmp_path / "r.npz"), "--epochs", "2")
    assert all("accuracy" not in r and "val_accuracy" not in r for r in hist)
    assert all(r["learning_rate"] == pytest.approx(1e-3, rel=1e-6) for r in hist)
    m = _metrics(tmp_path / "r")
    assert "accuracy" not in m and "val_accuracy" not in m and "validation_mse" in m


# -- config file and resume ---------------------------------------------------------------------
def test_the_controls_in_a_config_file(tmp_path, capsys):
    _binary_files(tmp_path)
    conf = tmp_path / "run.toml"
    conf.write_text(f'data = "{tmp_path / "b.npz"}"\nepochs = 4\nlayers = [8]\n'
                    'schedule = "step:1"\nclip-norm = 5\nearly_stopping = 3\nmin_delta = 0\n'
                    'class_weight = {rare = 4, common = 1}\n')
    out = tmp_path / "o"
    assert main(["train", "--config", str(conf), "--out", str(out), "--quiet", "--no-plot"]) == 0
    s = load_checkpoint(out / "checkpoint.npz")[1]["settings"]
    assert s["schedule"] == "step:1:0.1" and s["clip_norm"] == 5 and s["early_stopping"] == 3
    assert s["class_weight"] == {"rare": 4.0, "common": 1.0}
    lr = [r["learning_rate"] for r in _history(out)]
    assert lr[1] == pytest.approx(lr[0] / 10)
    conf.write_text('schedule = "sometimes"\n')
    _fails(["train", "--config", str(conf)], capsys, "schedule 'sometimes'")
    conf.write_text('class_weight = 3\n')
    _fails(["train", "--config", str(conf)], capsys, "class_weight takes")
    conf.write_text('early_stopping = 0\n')
    _fails(["train", "--config", str(conf)], capsys, "early_stopping", ">= 1")


def test_resume_with_controls_is_bitwise_and_refuses_changes(tmp_path, capsys):
    ctl = ["--schedule", "step:1", "--clip-norm", "1", "--early-stopping", "50",
           "--batch-size", "64", "--seed", "2"]
    full, split = tmp_path / "full", tmp_path / "split"
    _train(full, "--epochs", "4", *ctl)
    _train(split, "--epochs", "2", *ctl)
    for change, needle in ((["--schedule", "step:2"], "schedule differ"),
                           (["--clip-norm", "2"], "clip_norm differ"),
                           (["--early-stopping", "5"], "early_stopping differ"),
                           (["--class-weight", "balanced"], "class_weight differ")):
        _fails(["train", "--out", str(split), "--resume", "--epochs", "4", *change], capsys, needle)
    # the same schedule, spelt differently, is the same run
    assert main(["train", "--out", str(split), "--resume", "--epochs", "4", "--quiet",
                 "--schedule", "step:1:0.1"]) == 0
    assert np.array_equal(_params(full), _params(split))
    assert [r["learning_rate"] for r in _history(full)] == \
        [r["learning_rate"] for r in _history(split)]


def test_sigterm_mid_epoch_then_resume_is_bitwise_with_controls(tmp_path):
    """A per-step schedule, clipping, class weights and early stopping's best parameters all
    go through the checkpoint of a run stopped in the middle of an epoch."""
    import signal
    import subprocess
    import time
    cmd = [sys.executable, "-m", "fastbp.cli", "train", "--epochs", "60", "--batch-size", "16",
           "--dtype", "float64", "--layers", "16", "--quiet", "--no-plot",
           "--schedule", "onecycle:0.005", "--clip-norm", "1", "--class-weight", "balanced",
           "--early-stopping", "80"]
    ref = tmp_path / "ref"
    done = subprocess.run(cmd + ["--out", str(ref)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "term"
    proc = subprocess.Popen(cmd + ["--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        h = out / "history.jsonl"
        if h.exists() and len(h.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    res = subprocess.run(cmd + ["--out", str(out), "--resume"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(_params(out), _params(ref))
    assert [r["learning_rate"] for r in _history(out)] == \
        [r["learning_rate"] for r in _history(ref)]
    assert _metrics(out)["best_epoch"] == _metrics(ref)["best_epoch"]


@pytest.mark.parametrize("spec", ["cosine", "onecycle"])
def test_resume_keeps_the_epochs_of_a_schedule_laid_out_over_them(tmp_path, capsys, spec):
    out = tmp_path / "o"
    _train(out, "--epochs", "2", "--schedule", spec)
    _fails(["train", "--out", str(out), "--resume", "--epochs", "4"], capsys,
           f"epochs cannot change with schedule {spec}", "--epochs 2")


# -- export -------------------------------------------------------------------------------------
def test_export_writes_onnx_that_matches_predict(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    X, y = _binary_files(tmp_path)
    run = tmp_path / "run"
    _train(run, "--data", str(tmp_path / "b.npz"), "--epochs", "3", "--lr", "0.01")
    capsys.readouterr()
    path = tmp_path / "m.onnx"
    assert main(["export", "--model", str(run), "--onnx", str(path)]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert main(["predict", "--model", str(run), "--data", str(tmp_path / "b.npz")]) == 0
    labels = capsys.readouterr().out.split()[1:]        # after the header
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # the model's preprocessing is in the graph: one input per column, by name
    assert [i.name for i in sess.get_inputs()] == ["0", "1", "2"]
    label, proba = sess.run(None, {str(j): X[:, j:j + 1] for j in range(3)})
    model = fastbp.load(run)
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-5, atol=1e-6)
    assert list(label) == labels == list(model.predict(X))
    assert sorted(set(labels)) == _metrics(run)["classes"]
    # a regressor in float64, from model.npz itself: its prediction in the target's units
    rng = np.random.default_rng(1)
    Xr = rng.standard_normal((60, 4))
    np.savez(tmp_path / "r.npz", X=Xr, y=Xr @ [1.0, 2.0, -1.0, 0.5])
    _train(tmp_path / "reg", "--data", str(tmp_path / "r.npz"), "--epochs", "2",
           "--dtype", "float64")
    assert main(["export", "--model", str(tmp_path / "reg" / "model.npz"),
                 "--onnx", str(tmp_path / "r.onnx")]) == 0
    sess = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    got, = sess.run(None, {str(j): Xr[:, j:j + 1] for j in range(4)})
    np.testing.assert_allclose(got, fastbp.load(tmp_path / "reg").predict(Xr), rtol=1e-12,
                               atol=1e-12)


def test_export_errors_are_exit_2(tmp_path, capsys, monkeypatch):
    _fails(["export", "--model", str(tmp_path / "none"), "--onnx", str(tmp_path / "m.onnx")],
           capsys, "no such file")
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    _fails(["export", "--model", str(tmp_path / "bad.npz"), "--onnx", str(tmp_path / "m.onnx")],
           capsys, "bad.npz")
    _train(tmp_path / "run", "--epochs", "1")
    _fails(["export", "--model", str(tmp_path / "run"), "--onnx", str(tmp_path)], capsys,
           "is a directory")
    monkeypatch.setitem(sys.modules, "onnx", None)          # as if onnx were not installed
    _fails(["export", "--model", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx")],
           capsys, "pip install \"fastbp[onnx]\"")
    assert not (tmp_path / "m.onnx").exists()


# -- plot ---------------------------------------------------------------------------------------
def _figure(run):
    from fastbp.cli.plot import _read_history, figure
    fig, axes = figure({**_read_history(run), "best_epoch": None})
    fig.canvas.draw()
    return fig, axes


def test_plot_draws_accuracy_and_learning_rate_panels_with_integer_epochs(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", "--layers", "8", "--epochs", "5",
                 "--schedule", "step:1:0.5"]) == 0
    assert (run / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(run), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 10000
    fig, axes = _figure(run)
    try:
        assert set(axes) == {"loss", "grad", "accuracy", "lr"}
        for ax in axes.values():
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
        labels = [len(axes["accuracy"].get_lines()), len(axes["lr"].get_lines())]
        assert labels == [2, 1]                       # training and validation accuracy; the rate
        assert axes["lr"].get_yscale() == "log"
        for name in ("grad", "lr"):                   # plain numbers on the log axes
            ax = axes[name]
            texts = [t.get_text() for t in ax.get_yticklabels(minor=False)
                     + ax.get_yticklabels(minor=True)]
            shown = [t for t in texts if t]
            assert shown, name
            for t in shown:
                float(t.replace("\u2212", "-"))       # e.g. "0.002", "1e-05": no "× 10"
    finally:
        plt.close(fig)


def test_plot_of_a_regression_without_schedule_keeps_two_panels(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", X=rng.standard_normal((80, 2)), y=rng.standard_normal(80))
    run = tmp_path / "run"
    _train(run, "--data", str(tmp_path / "r.npz"), "--epochs", "3")
    fig, axes = _figure(run)
    try:
        assert set(axes) == {"loss", "grad"}
        assert "0.001" in axes["loss"].get_title()       # the constant rate, in the title
        ticks = axes["loss"].get_xticks()
        assert all(float(t).is_integer() for t in ticks)
    finally:
        plt.close(fig)
    _train(tmp_path / "one", "--epochs", "1")           # a single epoch: one integer tick
    fig, axes = _figure(tmp_path / "one")
    try:
        assert list(axes["loss"].get_xticks()) == [1]
    finally:
        plt.close(fig)


def test_plot_reads_an_old_history_without_the_new_columns(tmp_path):
    pytest.importorskip("matplotlib")
    recs = [{"epoch": e + 1, "loss": 1.0 / (e + 1), "val_loss": None, "grad_norm": [1.0, 0.5],
             "weight_norm": [1.0, 1.0], "seconds": 0.1} for e in range(4)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "training.png").stat().st_size > 5000


# -- help ---------------------------------------------------------------------------------------
def test_help_documents_the_controls_and_export(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--clip-norm", "--schedule", "cosine[:ETA_MIN]", "step:STEP_SIZE[:GAMMA]",
                   "multistep:10,20[:GAMMA]", "onecycle[:MAX_LR]", "plateau[:FACTOR[:PATIENCE]]",
                   "--early-stopping", "--min-delta", "--class-weight", "balanced",
                   "--sample-weight", "learning_rate", "val_accuracy"):
        assert needle in text, needle
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    assert "--model" in text and "--onnx" in text and "onnxruntime" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "export" in capsys.readouterr().out
