"""Tables end to end: fastbp train / evaluate / predict / export on a messy CSV, and the model
they write loaded in Python (fastbp.load -> Model) predicting from DataFrames by column name."""
import json

import numpy as np
import pandas as pd
import pytest

import fastbp
from fastbp.cli import main
from fastbp.data import Model, Preprocessor, prepare
from fastbp.data.model import build_network

from messy import messy_frame

FAST = ["--epochs", "15", "--lr", "0.01", "--no-plot"]


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    d = tmp_path_factory.mktemp("messy")
    df = messy_frame(500, seed=7)
    train, test = df.iloc[:400], df.iloc[400:]
    train.to_csv(d / "train.csv", index=False)
    test.to_csv(d / "test.csv", index=False)
    return d, train, test


@pytest.fixture(scope="module")
def run(messy):
    d, _, _ = messy
    out = d / "run"
    assert main(["train", "--data", str(d / "train.csv"), "--target", "label", "--out", str(out),
                 "--quiet", *FAST]) == 0
    return out


def test_train_shows_the_roles_and_the_task(messy, capsys, tmp_path):
    d, train, _ = messy
    assert main(["train", "--data", str(d / "train.csv"), "--target", "label", "--epochs", "1",
                 "--no-plot"]) == 0
    err = capsys.readouterr().err
    k = int(train["label"].isna().sum())
    assert f"400 rows, {k} dropped (no target 'label'), {400 - k} used" in err, err
    assert "target 'label': classification of 3 classes (high, low, mid)" in err
    assert "boolean (2): smoker (missing: + indicator), member" in err
    assert "name (id-like" in err and "row (id-like" in err and "constant (constant" in err
    assert err.index("target 'label'") < err.index("epoch 1/1")
    assert main(["train", "--data", str(d / "train.csv"), "--target", "label", "--epochs", "1",
                 "--no-plot", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_evaluate_reports_every_metric(messy, run, capsys):
    d, _, test = messy
    assert main(["evaluate", "--model", str(run), "--data", str(d / "test.csv")]) == 0
    res = json.loads(capsys.readouterr().out)
    n = int(test["label"].notna().sum())
    assert res["n"] == n and np.sum(res["confusion_matrix"]) == n
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc"):
        assert isinstance(res[key], float), key
    assert res["accuracy"] > 0.6
    model = fastbp.load(run)
    again = model.evaluate(test)
    assert again.pop("confusion_matrix") == res.pop("confusion_matrix")
    assert again.pop("classes") == res.pop("classes") == ["high", "low", "mid"]
    assert again == pytest.approx(res)


def test_columns_are_found_by_name(messy, run, tmp_path, capsys):
    d, _, test = messy
    shuffled = test[list(reversed(test.columns))].assign(extra="x")
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    assert main(["predict", "--model", str(run), "--data", str(d / "test.csv")]) == 0
    plain = capsys.readouterr().out
    assert main(["predict", "--model", str(run), "--data", str(tmp_path / "shuffled.csv")]) == 0
    assert capsys.readouterr().out == plain
    test.drop(columns=["income"]).to_csv(tmp_path / "less.csv", index=False)
    assert main(["predict", "--model", str(run), "--data", str(tmp_path / "less.csv")]) == 2
    err = capsys.readouterr().err
    assert "column 'income' missing" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_writes_labels_probabilities_and_ids(messy, run, tmp_path, suffix):
    d, _, test = messy
    out = tmp_path / ("p" + suffix)
    assert main(["predict", "--model", str(run), "--data", str(d / "test.csv"), "--out", str(out),
                 "--proba", "--id", "name"]) == 0
    got = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(got.columns) == ["name", "label", "proba_high", "proba_low", "proba_mid"]
    assert got["name"].tolist() == test["name"].tolist()
    model = fastbp.load(run)
    assert got["label"].tolist() == list(model.predict(test))
    np.testing.assert_allclose(got[["proba_high", "proba_low", "proba_mid"]].to_numpy(),
                               model.predict_proba(test), rtol=1e-6)
    np.testing.assert_allclose(got.iloc[:, 2:].sum(axis=1), 1, rtol=1e-5)


def test_a_regressor_predicts_in_the_targets_units(messy, tmp_path, capsys):
    d, train, test = messy
    out = tmp_path / "reg"
    assert main(["train", "--data", str(d / "train.csv"), "--target", "price", "--drop", "label",
                 "--out", str(out), "--quiet", *FAST]) == 0
    line = capsys.readouterr().out
    assert line.startswith("validation: r2 ") and "rmse" in line and "mae" in line
    model = fastbp.load(out)
    pred = model.predict(test)
    assert pred.dtype == np.float64 and pred.shape == (100,)
    assert np.corrcoef(pred, test["price"])[0, 1] > 0.8        # in the target's units
    res = model.evaluate(test)
    assert res["r2"] > 0.5 and res["rmse"] == pytest.approx(np.sqrt(res["mse"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "regression" and "validation_r2" in metrics


def test_binary_cross_entropy_reports_classification_metrics(tmp_path, capsys):
    df = messy_frame(300, seed=8)
    df["smoker_label"] = df["smoker"]
    df = df.drop(columns=["smoker"])
    df.to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "bce"
    assert main(["train", "--data", str(tmp_path / "b.csv"), "--target", "smoker_label",
                 "--loss", "binary_cross_entropy", "--out", str(out), "--quiet", *FAST]) == 0
    line = capsys.readouterr().out
    assert line.startswith("validation: accuracy ") and "roc_auc" in line, line
    model = fastbp.load(out)
    assert model.network.layer_sizes[-1] == 1 and model.classes_ == ["no", "yes"]
    assert set(model.predict(df)) <= {"no", "yes"} and model.predict_proba(df).shape == (300, 2)


def test_load_takes_a_run_directory_and_keeps_the_network_contract(run, tmp_path):
    model = fastbp.load(run)
    assert isinstance(model, Model)
    assert isinstance(model.network, fastbp.Network)
    assert model.classes_ == ["high", "low", "mid"] and model.target == "label"
    assert "income" in model.feature_names_in_ and "name" not in model.feature_names_in_
    assert fastbp.load(run / "model.npz").network.layer_sizes == model.network.layer_sizes
    net = fastbp.Network([3, 4, 2], seed=0)
    net.save(tmp_path / "n.npz")
    assert isinstance(fastbp.load(tmp_path / "n.npz"), fastbp.Network)   # the contract
    with pytest.raises(ValueError, match="without model.npz"):
        fastbp.load(tmp_path)


def test_python_api_from_a_dataframe(tmp_path):
    df = messy_frame(300, seed=9)
    p = prepare(df, "label", seed=0)
    net = build_network(p.preprocessor, [16], seed=0)
    fastbp.Trainer(net, learning_rate=0.01, epochs=10, seed=0).fit(p.Xtr, p.ytr,
                                                                     validation_data=p.val)
    model = Model(net, p.preprocessor)
    labels = model.predict(df)
    assert labels.dtype.kind == "U" and set(labels) <= {"high", "low", "mid"}
    model.save(tmp_path / "m.npz")
    again = fastbp.load(tmp_path / "m.npz")
    assert np.array_equal(again.predict(df.sample(frac=1, random_state=0)),
                          model.predict(df.sample(frac=1, random_state=0)))
    with pytest.raises(ValueError, match="predict_proba needs a classifier"):
        r = prepare(df, "price")
        Model(build_network(r.preprocessor, [4]), r.preprocessor).predict_proba(df)


def test_onnx_export_includes_the_preprocessing(messy, run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    _, _, test = messy
    path = tmp_path / "m.onnx"
    assert main(["export", "--model", str(run), "--onnx", str(path)]) == 0
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = fastbp.load(run)
    feeds = {}
    for i in sess.get_inputs():
        col = test[i.name]
        if i.type == "tensor(string)":
            feeds[i.name] = col.fillna("").astype(str).to_numpy(object).reshape(-1, 1)
        else:
            feeds[i.name] = col.astype(float).to_numpy().reshape(-1, 1)
    assert sorted(feeds) == sorted(model.feature_names_in_)
    label, proba = sess.run(["label", "probabilities"], feeds)
    np.testing.assert_allclose(proba, model.predict_proba(test), rtol=1e-5, atol=1e-6)
    assert list(label) == list(model.predict(test))


def test_resume_keeps_the_runs_epochs(messy, tmp_path, capsys, monkeypatch):
    """A --epochs 40 run stopped by Ctrl-C after 3 epochs and resumed without --epochs goes on
    to 40 (not to the default 30), to the uninterrupted run's model."""
    import signal
    from fastbp.cli.train import Run
    d, _, _ = messy
    args = ["train", "--data", str(d / "train.csv"), "--target", "label", "--no-plot",
            "--quiet", "--lr", "0.01", "--early-stopping", "none", "--out"]
    assert main([*args, str(tmp_path / "full"), "--epochs", "40"]) == 0
    def stopping(self):     # polled between epochs: a SIGINT after the third
        return signal.SIGINT if getattr(self, "done", 0) == 3 else None
    with monkeypatch.context() as m:
        m.setattr(Run, "stopping", stopping)
        assert main([*args, str(tmp_path / "cut"), "--epochs", "40"]) == 130
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 3
    assert main(["train", "--out", str(tmp_path / "cut"), "--resume", "--quiet"]) == 0
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 40
    assert np.array_equal(fastbp.load(tmp_path / "cut").network.params,
                          fastbp.load(tmp_path / "full").network.params)


def test_the_table_defaults_and_their_flags(messy, tmp_path, capsys):
    """Defaults chosen on real tables (docs/real-tables.md): early stopping after 30 epochs
    without improvement (none without a validation split), weight decay 4 / training rows,
    Glorot-uniform initial weights; each can be set."""
    from fastbp.model.modelfile import load_checkpoint
    d, _, _ = messy
    data = ["--data", str(d / "train.csv"), "--target", "label", "--no-plot", "--quiet",
            "--epochs", "2"]
    assert main(["train", *data, "--out", str(tmp_path / "a")]) == 0
    _, info = load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    n_train = json.loads((tmp_path / "a" / "metrics.json").read_text())["train_samples"]
    assert info["trainer"]["config"]["weight_decay"] == pytest.approx(4 / n_train)
    assert info["settings"]["early_stopping"] == 30 and info["settings"]["init"] == "glorot_uniform"
    assert main(["train", *data, "--out", str(tmp_path / "b"), "--weight-decay", "0.5",
                 "--early-stopping", "none", "--init", "he_normal"]) == 0
    _, info = load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert info["trainer"]["config"]["weight_decay"] == 0.5
    assert info["settings"]["early_stopping"] is None
    assert main(["train", *data, "--validation-split", "0", "--out", str(tmp_path / "c")]) == 0
    assert load_checkpoint(tmp_path / "c" / "checkpoint.npz")[1]["settings"]["early_stopping"] \
        is None                                          # auto: none without validation rows
    capsys.readouterr()
    for flag, value, needle in [("--weight-decay", "-1", "weight_decay must be a number >= 0"),
                                ("--early-stopping", "soon", "early_stopping (the patience"),
                                ("--init", "zeros", "init must be one of")]:
        assert main(["train", *data, flag, value]) == 2
        assert needle in capsys.readouterr().err


def _feeds(sess, df):
    """ONNX inputs from a DataFrame's columns, as the exported graph documents them."""
    feeds = {}
    for i in sess.get_inputs():
        col = df[i.name]
        if i.type == "tensor(string)":
            feeds[i.name] = col.map(lambda v: "" if v is None or v != v else str(v).strip()) \
                .to_numpy(object).reshape(-1, 1)
        else:
            feeds[i.name] = pd.to_numeric(col, errors="coerce").astype(float) \
                .to_numpy().reshape(-1, 1)
    return feeds


@pytest.mark.parametrize("target", ["label", "price", "flag", "count"])
def test_onnx_of_every_kind_of_column_equals_predict(tmp_path, target):
    """Embedded and one-hot text categories, an integer category with missing values, a text
    boolean seen only as "no" and blanks, a column named like an internal tensor, batch norm,
    and string, bool, int and float targets."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    rng = np.random.default_rng(3)
    df = messy_frame(300, seed=11, levels=400)
    df["zip"] = rng.choice([75001.0, 69002.0, 13003.0, np.nan], 300)
    df["gate"] = rng.choice(["no", None], 300)
    df["features"] = rng.normal(size=300)           # the name of the graph's inner matrix
    df["flag"] = df["price"] > df["price"].median()
    df["count"] = rng.integers(0, 4, 300)
    drop = [c for c in ("label", "price", "flag", "count") if c != target]
    p = prepare(df.drop(columns=drop), target, categorical="zip", max_onehot=4, seed=0)
    pre = p.preprocessor
    assert pre.embeddings and any(c["name"] == "zip" for c in pre.columns)
    net = build_network(pre, [8], seed=0, normalization="batch")
    fastbp.Trainer(net, loss=pre.target["loss"], epochs=3, seed=0, learning_rate=0.01,
                   batch_size=25).fit(p.Xtr, p.ytr)
    model = Model(net, pre)
    path = tmp_path / "m.onnx"
    model.to_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    test = df.drop(columns=drop).iloc[::3]
    got = sess.run(None, _feeds(sess, test))
    if pre.task == "classification":
        label, proba = got
        np.testing.assert_allclose(proba, model.predict_proba(test), rtol=1e-5, atol=1e-6)
        assert list(label) == list(model.predict(test))
    else:
        np.testing.assert_allclose(got[0], model.predict(test), rtol=1e-5)
    # a column named like an output cannot be exported
    bad = Model(net, pre)
    bad.preprocessor = Preprocessor.from_json(pre.to_json())
    bad.preprocessor.columns[0]["name"] = "prediction"
    with pytest.raises(ValueError, match="name of an output"):
        bad.to_onnx(tmp_path / "bad.onnx")


def test_the_model_is_the_best_epochs_when_the_epochs_run_out(messy, tmp_path):
    from fastbp.model.modelfile import load_checkpoint
    d, _, _ = messy
    out = tmp_path / "r"
    assert main(["train", "--data", str(d / "train.csv"), "--target", "label", "--out", str(out),
                 "--epochs", "12", "--lr", "0.05", "--quiet", "--no-plot"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert not metrics["stopped_early"] and metrics["best_epoch"] < 12
    arrays, _ = load_checkpoint(out / "checkpoint.npz")
    net = fastbp.load(out).network
    assert np.array_equal(net.params, arrays["best_params"][:net.params.size])
    assert not np.array_equal(net.params, arrays["params"])      # the last epoch's, to go on
