"""The command line's errors and messages: a bug is exit 1 with its traceback, input the user can
fix is exit 2 in one line; the compile notice; a resume in the middle of an epoch says so; under
MPI a stop is reported once."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastbp
from fastbp._validation import BadInput, InputError
from fastbp.cli import UsageError, main
from fastbp.model.modelfile import load_checkpoint

CMD = [sys.executable, "-m", "fastbp.cli"]
QUICK = ["--epochs", "1", "--quiet", "--no-plot"]


def _fails(args, capsys, needle, code=2):
    assert main(args) == code
    err = capsys.readouterr().err
    assert needle in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("fastbp: error: "), err


def _bug(args, capsys, needle):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastbp: internal error (a bug: please report it)\n"), err
    assert "Traceback (most recent call last)" in err and needle in err, err


def test_usage_error_is_bad_input():
    assert issubclass(UsageError, InputError) and issubclass(UsageError, BadInput)
    assert issubclass(UsageError, ValueError)


def test_a_bug_is_exit_1_with_its_traceback(tmp_path, capsys, monkeypatch):
    def boom(*args, **kw):
        raise ValueError("boom")
    monkeypatch.setattr("fastbp.data.model.evaluate_outputs", boom)
    _bug(["train", *QUICK], capsys, "ValueError: boom")
    monkeypatch.undo()

    def fit(self, *args, **kw):
        raise TypeError("fit() got confused")
    monkeypatch.setattr(fastbp.Trainer, "fit", fit)
    _bug(["train", *QUICK, "--out", str(tmp_path / "o")], capsys, "TypeError: fit() got confused")
    monkeypatch.undo()

    def read(*args, **kw):
        raise OSError("not the user's file")
    monkeypatch.setattr("fastbp.data.tables.read_csv", read)
    (tmp_path / "d.csv").write_text("1,2\n3,4\n")
    _bug(["train", "--data", str(tmp_path / "d.csv"), *QUICK], capsys, "OSError: not the user's")


def test_input_the_user_can_fix_is_exit_2_in_one_line(tmp_path, capsys):
    _fails(["train", "--data", str(tmp_path / "missing.csv")], capsys, "no such file")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n4,5,6,7\n")
    _fails(["train", "--data", str(bad)], capsys, "not a readable CSV")
    one = tmp_path / "one.csv"
    one.write_text("1\n2\n3\n")
    _fails(["train", "--data", str(one)], capsys, "one column")
    np.save(tmp_path / "X.npy", np.zeros((5, 2)))
    os.rename(tmp_path / "X.npy", tmp_path / "X.npz")
    _fails(["train", "--data", str(tmp_path / "X.npz")], capsys, "a bare array")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _fails(["train", "--data", str(tmp_path / "junk.npz")], capsys, "junk.npz")
    np.savez(tmp_path / "s.npz", X=np.zeros((10, 2)), y=np.zeros(()))
    _fails(["train", "--data", str(tmp_path / "s.npz")], capsys, "X has 10 rows but y has shape ()")
    _fails(["train", "--activation", "swish", *QUICK], capsys, "activation")
    _fails(["train", "--optimizer", "lion", *QUICK], capsys, "optimizer")
    _fails(["train", "--loss", "hinge", *QUICK], capsys, "unknown loss 'hinge'")
    conf = tmp_path / "c.toml"
    for text, needle in [('seed = "x"', "seed"), ("plot = 3", "plot"), ("data = 5", "data"),
                         ("threads = true", "threads"), ("lr = inf", "lr")]:
        conf.write_text(text + "\n")
        _fails(["train", "--config", str(conf), "--epochs", "1", "--quiet"], capsys, needle)
    _fails(["train", "--config", str(tmp_path)], capsys, "--config")          # a directory
    _fails(["plot", str(tmp_path / "nothing")], capsys, "no such file")
    _fails(["evaluate", "--model", str(bad), "--data", str(bad)], capsys, str(bad))


def test_unwritable_outputs_are_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *QUICK, "--out", str(run)]) == 0
    capsys.readouterr()
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 64)), y=np.zeros(3, int))
    _fails(["predict", "--model", str(run), "--data", str(tmp_path / "d.npz"),
            "--out", str(tmp_path / "no" / "dir" / "p.csv")], capsys, "cannot write")
    (tmp_path / "blocker").write_text("")
    _fails(["train", *QUICK, "--out", str(tmp_path / "blocker" / "o")], capsys,
           "not a writable directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_data_file_is_exit_2(tmp_path, capsys):
    f = tmp_path / "d.csv"
    f.write_text("1,2\n3,4\n")
    f.chmod(0)
    _fails(["train", "--data", str(f)], capsys, "unreadable")


def test_compile_notice(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fastbp.engine, "needs_compiling", lambda: True)
    monkeypatch.setattr(fastbp.engine.EpochRunner, "_compile", lambda self: 21.3)
    assert main(["train", "--epochs", "2", "--no-plot"]) == 0
    err = capsys.readouterr().err
    assert err.count("compiling the kernels (first use only, cached afterwards)") == 1, err
    assert err.count("fastbp: kernels compiled in 21.3 s (cached for later runs)") == 1, err
    assert err.index("compiling the kernels") < err.index("kernels compiled") < err.index("epoch 1/2")
    assert main(["train", "--epochs", "2", "--no-plot", "--quiet"]) == 0
    assert "compil" not in capsys.readouterr().err


def test_no_compile_notice_when_cached(capsys, monkeypatch):
    monkeypatch.setattr(fastbp.engine, "needs_compiling", lambda: False)
    assert main(["train", "--epochs", "1", "--no-plot"]) == 0
    assert "compil" not in capsys.readouterr().err     # this process compiled already


ARGS = ["--epochs", "3", "--batch-size", "16", "--no-plot", "--dtype", "float64", "--seed", "4"]


def _stopped_in_epoch_2(out, args, monkeypatch):
    """``fastbp train`` stopped by a real SIGTERM at the first poll of epoch 2 (exit 143): the
    second poll of the trainer's ``stop`` (every 32 steps; an epoch of these runs has 85 steps,
    polled after 32 and 64, or 43 steps, polled after 32)."""
    fit = fastbp.Trainer.fit

    def sigterm_in_epoch_2(self, X, y, validation_data=None, stop=None, **kw):
        polls = []
        per_epoch = (-(-len(X) // min(self.batch_size, len(X))) - 1) // self.STOP_STEPS

        def poll():          # a real SIGTERM, at the first poll of the second epoch
            polls.append(1)
            if len(polls) == per_epoch + 1:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)
            return stop()
        return fit(self, X, y, validation_data, stop=poll, **kw)
    monkeypatch.setattr(fastbp.Trainer, "fit", sigterm_in_epoch_2)
    try:
        return main(["train", "--out", str(out), *args])
    finally:
        monkeypatch.undo()


def test_resume_of_an_unfinished_epoch_says_where(tmp_path, capsys, monkeypatch):
    ref = tmp_path / "ref"
    assert main(["train", "--out", str(ref), *ARGS, "--quiet"]) == 0
    out = tmp_path / "run"
    assert _stopped_in_epoch_2(out, ARGS, monkeypatch) == 143
    err = capsys.readouterr().err
    assert err.count("stopped by signal 15") == 1, err
    _, info = load_checkpoint(out / "checkpoint.npz")
    pending = info["trainer"]["pending"]
    assert info["epoch"] == 1 and pending is not None and 0 < pending["done"] < 85, info
    assert main(["train", "--out", str(out), "--resume", *ARGS]) == 0
    err = capsys.readouterr().err
    assert f"resuming epoch 2 at step {pending['done']}/85" in err, err
    assert "resuming after" not in err
    assert np.array_equal(fastbp.load(out / "model.npz").network.params,
                          fastbp.load(ref / "model.npz").network.params)
    # resumed between epochs: the old wording
    assert main(["train", "--out", str(out), "--resume", *ARGS[2:], "--epochs", "4"]) == 0
    assert "resuming after epoch 3" in capsys.readouterr().err


MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))


def _descendants(pid):
    kids, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                found = [int(c) for c in f.read().split()]
        except OSError:
            found = []
        kids += found
        todo += found
    return kids


def _rank_pids(pid):
    ranks = {}
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"fastbp.cli" in cmd and b"PMI_RANK" in env:
            ranks[int(env[b"PMI_RANK"])] = p
    return ranks


@pytest.mark.skipif(MPIEXEC is None or not os.path.isdir("/proc"), reason="no mpiexec or /proc")
def test_sigterm_to_one_rank_stops_all_and_is_reported_once(tmp_path):
    pytest.importorskip("mpi4py")
    out = tmp_path / "run"
    # more epochs than any machine trains before the signal arrives
    args = ["train", "--out", str(out), "--epochs", "100000", "--batch-size", "16", "--no-plot",
            "--dtype", "float64", "--early-stopping", "none"]
    proc = subprocess.Popen([MPIEXEC, "-n", "2", *CMD, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            h = out / "history.jsonl"
            if h.exists() and len(h.read_text().splitlines()) >= 1:
                break
            time.sleep(0.05)
        ranks = _rank_pids(proc.pid)
        if sorted(ranks) != [0, 1]:
            pytest.skip(f"could not find the ranks' processes ({ranks})")
        os.kill(ranks[1], signal.SIGTERM)        # rank 1 alone: the ranks must agree
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert err.count("stopped by signal 15") == 1, err
    _, info = load_checkpoint(out / "checkpoint.npz")
    assert 1 <= info["epoch"] < 100000
    assert len((out / "history.jsonl").read_text().splitlines()) == info["epoch"]
    res = subprocess.run(CMD + args + ["--resume", "--epochs", str(info["epoch"] + 1)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    pending = info["trainer"]["pending"]
    where = (f"resuming epoch {info['epoch'] + 1} at step {pending['done']}/85" if pending
             else f"resuming after epoch {info['epoch']}")
    assert where in res.stderr, (where, res.stderr)


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_single_process_checkpoint_mid_epoch_resumes_under_mpiexec(tmp_path, capsys, monkeypatch):
    """The issue's reproduction: stopped by SIGTERM in the middle of epoch 2, resumed with
    ``mpiexec -n 2 ... --resume``: the model of the uninterrupted run (float64: up to the
    order of the sums), not a fresh shuffle of the rest of the epoch."""
    pytest.importorskip("mpi4py")
    args = ["--epochs", "3", "--batch-size", "16", "--dtype", "float64", "--no-plot"]
    ref = tmp_path / "ref"
    assert main(["train", "--out", str(ref), *args, "--quiet"]) == 0
    out = tmp_path / "run"
    assert _stopped_in_epoch_2(out, args, monkeypatch) == 143
    _, info = load_checkpoint(out / "checkpoint.npz")
    assert info["epoch"] == 1 and info["trainer"]["pending"]["done"] > 0, info
    res = subprocess.run([MPIEXEC, "-n", "2", *CMD, "train", "--out", str(out), "--resume",
                          *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("resuming epoch 2 at step") == 1, res.stderr
    a = fastbp.load(out / "model.npz").network.params
    b = fastbp.load(ref / "model.npz").network.params
    assert np.abs(a - b).max() / np.abs(b).max() < 1e-10
