"""The fastbp command: the default job on the embedded digits, data files, errors."""
import json
import subprocess
import sys

import numpy as np

import fastbp
from fastbp.cli import main
from fastbp.datasets import load_digits


def test_embedded_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert sorted(np.unique(y)) == list(range(10))


def test_default_train_reaches_95_percent(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--quiet"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    acc = float(line.split()[2])
    assert acc >= 0.95, line
    net = fastbp.load(tmp_path / "model.npz")
    assert net.layer_sizes == [64, 64, 10]
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist["loss"]) == 30 and abs(hist["test_accuracy"] - acc) < 1e-4


def test_train_from_npz_and_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X @ [1.0, -2.0, 0.5]
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c,t", comments="")
    for f in ("d.npz", "d.csv"):
        assert main(["train", "--data", str(tmp_path / f), "--epochs", "40", "--layers", "16", "--lr", "0.01", "--quiet"]) == 0
        out = capsys.readouterr().out
        assert "test mse" in out and float(out.split()[2]) < 0.5


def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,x,6\n")
    assert main(["train", "--data", str(bad)]) == 2
    assert "not a numeric CSV" in capsys.readouterr().err
    nan = tmp_path / "nan.npz"
    np.savez(nan, X=np.array([[np.nan, 1.0]] * 10), y=np.zeros(10))
    assert main(["train", "--data", str(nan)]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "Traceback" not in err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "fastbp.cli", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--layers" in out.stdout
