"""The command line's network structure (--skips, --normalization, --dropout, per-layer
--activation, in flags and --config): what reaches the model file, canonical forms for
--resume, the refusals (exit 2, one line naming the problem), batch normalisation under MPI and
with a batch of one row, predict/evaluate on a structured model.  Runs are tiny: a few epochs of
small layers on the embedded digits."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp.cli import build_parser, main
from fastbp.cli import train as cli_train
from fastbp.model.modelfile import load_checkpoint

QUICK = ["--quiet", "--no-plot"]


def _history(d):
    return [json.loads(x) for x in (d / "history.jsonl").read_text().splitlines()]


def _train(out, *args):
    assert main(["train", "--out", str(out), *QUICK, *args]) == 0
    return fastbp.load(out / "model.npz").network


def _fails(args, capsys, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastbp: error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def _settings(argv, conf=None, tmp_path=None):
    """The canonical settings of ``fastbp train ARGV`` (with a TOML file holding ``conf``)."""
    if conf is not None:
        path = tmp_path / "s.toml"
        path.write_text(conf)
        argv = [*argv, "--config", str(path)]
    return cli_train.settings(build_parser().parse_args(["train", *argv]))[0]


# -- each flag reaches the network ---------------------------------------------------------------
def test_structure_flags_reach_the_model_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-plot", "--epochs", "2", "--layers", "8,8",
                 "--skips", "1:2", "--normalization", "batch,layer", "--dropout", "0.1,0",
                 "--activation", "relu,tanh"]) == 0
    err = capsys.readouterr().err
    for needle in ("skips 1:2", "normalization batch,layer", "dropout 0.1,0",
                   "activation relu,tanh"):
        assert needle in err, err
    net = fastbp.load(out / "model.npz").network
    assert net.layer_sizes == [61, 8, 8, 10]       # the digits' 3 constant pixels dropped
    assert net.skips == [(1, 2)]
    assert net.normalization == ["batch", "layer"]
    assert net.dropout == [0.1, 0.0]
    assert net.activations == ["relu", "tanh"]
    sd = net.state_dict()           # batch norm's running statistics came back, trained
    assert not np.allclose(sd["norms.0.running_mean"], 0)
    assert not np.allclose(sd["norms.0.running_var"], 1)
    # one gradient and weight norm per dense layer (γ and β are not layers of their own)
    for rec in _history(out):
        assert len(rec["grad_norm"]) == len(rec["weight_norm"]) == 3
        assert all(np.isfinite(rec["grad_norm"]))
    want = {"skips": [[1, 2]], "normalization": ["batch", "layer"], "dropout": [0.1, 0.0],
            "activation": ["relu", "tanh"]}
    _, info = load_checkpoint(out / "checkpoint.npz")
    metrics = json.loads((out / "metrics.json").read_text())
    for key, value in want.items():
        assert info["settings"][key] == value
        assert metrics["settings"][key] == value


@pytest.mark.parametrize("flags, attr, expect", [
    (["--activation", "tanh"], "activations", ["tanh", "tanh"]),
    (["--activation", "logistic,identity"], "activations", ["sigmoid", "identity"]),
    (["--normalization", "layer"], "normalization", ["layer", "layer"]),
    (["--normalization", "none,batch"], "normalization", [None, "batch"]),
    (["--dropout", "0.25"], "dropout", [0.25, 0.25]),
    (["--skips", "residual"], "skips", [(1, 2)]),             # the input (61) != 8
    (["--skips", "none"], "skips", []),
])
def test_each_flag_alone(tmp_path, flags, attr, expect):
    net = _train(tmp_path, "--epochs", "1", "--layers", "8,8", *flags)
    assert getattr(net, attr) == expect


def test_residual_batch_norm_dropout_trains_and_predicts(tmp_path, capsys):
    out = tmp_path / "run"
    X, y = fastbp.datasets.load_digits(np.float32)
    np.savez(tmp_path / "digits.npz", X=X, y=y)
    assert main(["train", "--out", str(out), *QUICK, "--epochs", "2", "--layers", "61,61",
                 "--skips", "residual", "--normalization", "batch", "--dropout", "0.1",
                 "--lr", "0.01"]) == 0
    capsys.readouterr()
    net = fastbp.load(out / "model.npz").network
    assert net.skips == [(0, 1), (1, 2)]         # 61 digit pixels used: the input joins in too
    assert net.normalization == ["batch", "batch"] and net.dropout == [0.1, 0.1]
    hist = _history(out)
    assert len(hist) == 2 and hist[1]["loss"] < hist[0]["loss"]
    assert hist[-1]["val_accuracy"] > 0.7
    assert main(["predict", "--model", str(out), "--data", str(tmp_path / "digits.npz")]) == 0
    pred = np.array(capsys.readouterr().out.split()[1:], dtype=int)      # after the header
    model = fastbp.load(out)
    assert np.array_equal(pred, net.predict(model.transform(X)).argmax(1))  # running statistics
    assert np.array_equal(pred, model.predict(X))
    assert np.mean(pred == y) > 0.7
    assert main(["evaluate", "--model", str(out / "model.npz"),
                 "--data", str(tmp_path / "digits.npz")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == len(X) and res["accuracy"] == pytest.approx(np.mean(pred == y))


# -- --config keys -------------------------------------------------------------------------------
def test_toml_keys(tmp_path):
    conf = tmp_path / "run.toml"
    conf.write_text('layers = [8, 8]\nepochs = 1\nskips = [[1, 2]]\n'
                    'normalization = ["layer", "none"]\ndropout = [0, 0.2]\n'
                    'activation = ["tanh", "relu"]\n')
    out = tmp_path / "a"
    assert main(["train", "--config", str(conf), "--out", str(out), *QUICK]) == 0
    net = fastbp.load(out / "model.npz").network
    assert (net.skips, net.normalization, net.dropout, net.activations) == (
        [(1, 2)], ["layer", None], [0.0, 0.2], ["tanh", "relu"])
    conf.write_text('layers = [8, 8]\nepochs = 1\nskips = "residual"\nnormalization = "batch"\n'
                    'dropout = 0.1\nactivation = "tanh"\n')
    out = tmp_path / "b"
    assert main(["train", "--config", str(conf), "--out", str(out), *QUICK,
                 "--dropout", "0.3"]) == 0                    # the flag wins
    net = fastbp.load(out / "model.npz").network
    assert (net.skips, net.normalization, net.dropout, net.activation) == (
        [(1, 2)], ["batch", "batch"], [0.3, 0.3], "tanh")


def test_canonical_forms_equal_meanings_compare_equal(tmp_path):
    two = ["--layers", "8,8"]
    same = [
        (["--activation", "relu,RELU"], ["--activation", "relu"], 'activation = ["relu", "relu"]'),
        (["--activation", "logistic"], ["--activation", "sigmoid"], 'activation = "Sigmoid"'),
        (["--normalization", "batch,batch"], ["--normalization", "batch"],
         'normalization = ["batch", "batch"]'),
        (["--normalization", "none,none"], [], 'normalization = "none"'),
        (["--dropout", "0.1,0.10"], ["--dropout", "0.1"], "dropout = [0.1, 0.1]"),
        (["--dropout", "0"], [], "dropout = 0"),
        (["--skips", "1:2, 0:1"], ["--skips", "0:1,1:2"], "skips = [[1, 2], [0, 1]]"),
        (["--skips", "none"], [], "skips = []"),
        (["--skips", "Residual"], ["--skips", "residual"], 'skips = "residual"'),
    ]
    keys = ("activation", "normalization", "dropout", "skips")
    for a, b, toml in same:
        sa, sb = _settings(two + a), _settings(two + b)
        st = _settings(two, toml, tmp_path)
        assert [sa[k] for k in keys] == [sb[k] for k in keys] == [st[k] for k in keys], (a, b)
    s = _settings(two + ["--normalization", "batch,none", "--dropout", "0.5,0"])
    assert s["normalization"] == ["batch", None] and s["dropout"] == [0.5, 0.0]
    assert _settings(two + ["--skips", "1:2"])["skips"] == [[1, 2]]


# -- --resume ------------------------------------------------------------------------------------
def test_resume_refuses_a_changed_structure_and_accepts_a_respelt_one(tmp_path, capsys):
    common = ["--layers", "8,8", "--skips", "residual", "--normalization", "layer,batch",
              "--dropout", "0.2", "--activation", "tanh,relu", "--seed", "4"]
    full, split = tmp_path / "full", tmp_path / "split"
    _train(full, *common, "--epochs", "3")
    _train(split, *common, "--epochs", "1")
    resume = ["train", "--out", str(split), "--resume", "--epochs", "3", *QUICK]
    for flags, name in [(["--skips", "none"], "skips"), (["--skips", "0:1"], "skips"),
                        (["--normalization", "layer"], "normalization"),
                        (["--dropout", "0.3"], "dropout"), (["--dropout", "0.2,0"], "dropout"),
                        (["--activation", "tanh"], "activation")]:
        _fails([*resume, *flags], capsys, f"{name} differ from the checkpointed run")
    conf = tmp_path / "c.toml"
    conf.write_text("normalization = [\"layer\", \"batch\"]\n")
    # the same meanings spelt otherwise: residual is 1:2 here (the 61 inputs differ from 8)
    assert main([*resume, "--skips", "1:2", "--normalization", "LAYER,batch", "--dropout",
                 "0.2,0.2", "--activation", "tanh,relu", "--config", str(conf)]) == 0
    assert np.array_equal(fastbp.load(full / "model.npz").network.params,
                          fastbp.load(split / "model.npz").network.params)      # bitwise, dropout too
    assert [r["loss"] for r in _history(full)] == [r["loss"] for r in _history(split)]
    _, info = load_checkpoint(split / "checkpoint.npz")
    assert info["settings"]["skips"] == "residual"                       # as first given


# -- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, needles", [
    (["--layers", "8,8", "--skips", "0:2"],
     ["skips 0:2", "widths differ", "the input has 61", "8"]),
    (["--layers", "8,16", "--skips", "1:2"], ["skips 1:2", "widths differ", "8", "16"]),
    (["--layers", "8,16", "--skips", "residual"], ["skips residual", "[61, 8, 16, 10]"]),
    (["--layers", "8,8", "--skips", "1:3"], ["skips 1:3", "output layer takes no skip"]),
    (["--layers", "8,8", "--skips", "2:1"], ["skips 2:1", "does not go forward"]),
    (["--layers", "8,8", "--skips", "1-2"], ["skips 1-2", "not a pair I:J"]),
    (["--layers", "8,8", "--skips", "1:2,1:2"], ["1:2 is given twice"]),
    (["--normalization", "group"], ["unknown normalization 'group'", "batch, layer or none"]),
    (["--layers", "8,8", "--normalization", "batch,bn"],
     ["unknown normalization 'bn'", "in normalization batch,bn"]),
    (["--dropout", "1.5"], ["dropout", "[0, 1)", "1.5"]),
    (["--dropout", "-0.1"], ["dropout", "[0, 1)"]),
    (["--dropout", "half"], ["dropout", "'half'"]),
    (["--activation", "swish"], ["unknown activation 'swish'", "relu"]),
    (["--layers", "8,8", "--activation", "relu,tanh,relu"],
     ["activation relu,tanh,relu has 3 entries", "2 hidden layers"]),
    (["--layers", "8,8", "--normalization", "batch,none,layer"],
     ["normalization batch,none,layer has 3 entries", "2 hidden layers"]),
    (["--layers", "8,8,8", "--dropout", "0.1,0.2"],
     ["dropout 0.1,0.2 has 2 entries", "3 hidden layers"]),
])
def test_bad_specs_exit_2_naming_the_problem(tmp_path, capsys, flags, needles):
    out = tmp_path / "run"
    _fails(["train", "--out", str(out), *QUICK, "--epochs", "1", *flags], capsys, *needles)
    assert not (out / "model.npz").exists() and not (out / "checkpoint.npz").exists()


@pytest.mark.parametrize("toml, needles", [
    ("dropout = true", ["dropout", "not True"]),
    ("dropout = [0.1, 0.2]", ["dropout 0.1,0.2 has 2 entries", "1 hidden layer"]),
    ("skips = [[0]]", ["skips", "not a pair [i, j]"]),
    ("skips = 3", ["skips 3", "not a string or a list"]),
    ("normalization = 1", ["unknown normalization 1"]),
    ("activation = [\"relu\", 2]\nlayers = [8, 8]", ["unknown activation 2"]),
])
def test_bad_toml_values_exit_2(tmp_path, capsys, toml, needles):
    conf = tmp_path / "bad.toml"
    conf.write_text(toml + "\n")
    _fails(["train", "--config", str(conf), *QUICK, "--epochs", "1"], capsys, *needles)


@pytest.mark.parametrize("batch", ["1", "3"])       # 1348 training digits: 1348 % 3 == 1
def test_batch_norm_with_a_batch_of_one_row_is_exit_2(tmp_path, capsys, batch):
    out = tmp_path / "run"
    _fails(["train", "--out", str(out), *QUICK, "--normalization", "batch", "--batch-size", batch],
           capsys, "batch normalisation needs batches of more than one row", "--batch-size")
    assert not out.exists()                           # nothing written, not even --out
    _train(tmp_path / "ok", "--epochs", "1", "--normalization", "layer", "--batch-size", batch)


def test_the_trainers_own_refusal_is_exit_2_too(tmp_path, capsys, monkeypatch):
    """Without the CLI's early check the trainer refuses at fit: still one line, exit 2."""
    monkeypatch.setattr(cli_train, "check_network", lambda s, data: None)
    _fails(["train", *QUICK, "--normalization", "batch", "--batch-size", "1"], capsys,
           "batch normalisation needs batches of more than one row")


MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_batch_norm_under_mpiexec_equals_one_process(tmp_path):
    """The global batch's statistics under MPI: the same model file as one process."""
    pytest.importorskip("mpi4py")
    args = ["-m", "fastbp.cli", "train", "--normalization", "batch", "--layers", "32,32",
            "--dtype", "float64", "--optimizer", "sgd", "--epochs", "2", "--batch-size", "50",
            *QUICK]
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([MPIEXEC, "-n", "2", sys.executable, *args, "--out",
                          str(tmp_path / "two")], capture_output=True, text=True, timeout=300,
                         env=env)
    assert two.returncode == 0, two.stderr
    a, b = (fastbp.load(tmp_path / d / "model.npz").network.state_dict() for d in ("one", "two"))
    assert any("running_var" in k for k in a)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_help_documents_the_structure_flags():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for needle in ("--skips", "residual|I:J", "--normalization", "batch,none,layer",
                   "--dropout", "relu,tanh", "network structure", "one per hidden layer"):
        assert needle in text, needle


def test_residual_skips_are_the_networks_own_pairs():
    # the command's reading of "residual" (for --resume's comparison and the width checks) is
    # fastbp.Network's: with embedded categories no skip starts at the input
    _skip_pairs = cli_train._skip_pairs
    for sizes in ([8, 8, 8, 1], [5, 8, 8, 8, 2]):
        for embedded in (False, True):
            net = fastbp.Network(sizes, skips="residual",
                                 embeddings=[(3, 2)] if embedded else None)
            assert _skip_pairs("residual", sizes, embedded) == net.skips, (sizes, embedded)
    assert _skip_pairs("residual", [8, 8, 8, 1], True) == [(1, 2)]
    assert _skip_pairs([[1, 2], [0, 2]], [8, 8, 8, 1]) == [(0, 2), (1, 2)]
