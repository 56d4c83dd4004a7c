"""MPI data-parallel training equals a single-process run with the same global batch size."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastbp

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
HERE = os.path.dirname(__file__)


def _mpiexec(args, n=2, **kw):
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *args], capture_output=True,
                          text=True, timeout=600, **kw)


def test_two_ranks_equal_one_process():
    out = _mpiexec([os.path.join(HERE, "mpi_equivalence.py")])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result.pop("diverged") == {"both_raised": True, "same_params": True, "finite": True,
                                      "same_step": True}
    overflow = result.pop("overflow")
    assert overflow["same"] and overflow["what"][0][1:] == [1, True], overflow
    for optimizer, r in result.items():
        assert r["params"] < 1e-10 and r["loss"] < 1e-10 and r["val_loss"] < 1e-10, (optimizer, r)
        assert r["same_on_ranks"] and r["accuracy"] and r["rates"], (optimizer, r)
        assert r["compiled"] == ([] if optimizer == "python_sums" else [True]), (optimizer, r)
        # sgd's batch (the trainer's default) takes the row-block step: one sum after it
        buckets = {"python_sums": [], "one_sum": [0], "sgd": [0], "buckets": [3]}.get(optimizer,
                                                                                     [1])
        assert r["buckets"] == buckets, (optimizer, r)
        assert r["comm_seconds"], (optimizer, r)


@pytest.mark.parametrize("bad", [-1, 1.5, "1MB", True, None])
def test_bucket_bytes_is_refused_unless_a_count_of_bytes(bad):
    from fastbp.distributed import DistributedTrainer

    class Comm:         # never reached: the argument is checked first
        def Get_rank(self):
            raise AssertionError("the communicator was used")
        Split_type = Get_size = Get_rank
    tr = fastbp.Trainer(fastbp.Network([2, 1]), loss="squared_error")
    with pytest.raises(ValueError, match="bucket_bytes must be an integer >= 0"):
        DistributedTrainer(tr, Comm(), bucket_bytes=bad)     # (before share_cores)


def test_batch_norm_uses_the_global_batchs_statistics():
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    out = _mpiexec([os.path.join(HERE, "mpi_batch_norm.py")], n=3, env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result) == 6, result
    for case, r in result.items():
        assert r["moved"] > 1, (case, r)        # the running statistics did change
        assert r["params"] < 1e-12 and r["stats"] < 1e-12, (case, r)
        assert r["loss"] < 1e-12 and r["val_loss"] < 1e-12 and r["same_on_ranks"], (case, r)


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_share_the_nodes_cores_unless_told(ranks):
    """No thread count chosen: each rank computes with its CPUs divided by the ranks sharing
    them (never fewer than one thread), instead of numba's one thread per core in every rank;
    a count chosen with NUMBA_NUM_THREADS or numba.set_num_threads is kept."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    out = _mpiexec([os.path.join(HERE, "mpi_threads.py")], n=ranks, env=env)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    for rank in r["ranks"]:
        cpus = set(rank["cpus"])
        sharing = sum(1 for other in r["ranks"] if cpus & set(other["cpus"]))
        assert rank["auto"] == max(1, min(r["max"], len(cpus) // sharing)), r
        assert rank["kept"] == 1, r
    env["NUMBA_NUM_THREADS"] = "2"
    out = _mpiexec([os.path.join(HERE, "mpi_threads.py")], n=ranks, env=env)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert [rank["auto"] for rank in r["ranks"]] == [2] * ranks, r


@pytest.mark.parametrize("data", ["digits", "messy"])
def test_cli_under_mpiexec_matches_single_process(tmp_path, data):
    """Every rank reads the table, splits it and fits the preprocessing on the same training
    rows: two ranks train the one process's model."""
    args = ["-m", "fastbp.cli", "train", "--dtype", "float64", "--epochs", "3", "--batch-size", "64",
            "--quiet", "--no-plot"]
    if data == "messy":
        sys.path.insert(0, HERE)
        from messy import messy_frame
        messy_frame(300, seed=2).to_csv(tmp_path / "m.csv", index=False)
        args += ["--data", str(tmp_path / "m.csv"), "--target", "label", "--max-onehot", "4"]
    single = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    two = _mpiexec([*args, "--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("validation: accuracy") == 1          # rank 0 alone prints
    one, two_ = fastbp.load(tmp_path / "one"), fastbp.load(tmp_path / "two")
    assert one.preprocessor.to_json() == two_.preprocessor.to_json()
    if data == "messy":
        assert one.network.embeddings           # the high-cardinality columns are embedded
    a, b = one.network.params, two_.network.params
    assert np.abs(a - b).max() / np.abs(a).max() < 1e-10
    assert len((tmp_path / "two" / "history.jsonl").read_text().splitlines()) == 3   # written once


def test_resume_of_an_unfinished_epoch_under_mpi_and_agreed_stops():
    out = _mpiexec([os.path.join(HERE, "mpi_resume.py")])
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["single_then_mpi"]["params"] < 1e-10 and r["single_then_mpi"]["step"], r
    assert r["single_then_mpi"]["epochs"] == 3, r
    assert r["mpi_then_single"]["interrupted"] and r["mpi_then_single"]["params"] < 1e-10, r
    assert r["callback"] == {"epochs": 2, "seen": [0, 1]}, r
    assert r["verbose_lines"] == [2, 0], r
