"""Structured layers inside the row-block step (small networks, large batches: each block runs
its rows from input to gradient on one core) and under MPI's per-step path."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastbp
import naive
from fastbp.kernels.train import step_blocks

KW = dict(layer_sizes=[6, 12, 12, 12, 3], activation=["tanh", "relu", "sigmoid"],
          normalization=["layer", None, "layer"], skips=[(1, 2), (1, 3), (2, 3)],
          dropout=[0.2, 0.0, 0.4])


def _masks(tr, spec):
    def masks(step, rows):
        return {l: fastbp.engine.dropout_keep(tr.dropout_seed, step, rows, l, spec.sizes[l + 1], p)
                for l, p in enumerate(spec.dropout) if p > 0}
    return masks


# batch norm in the row-block step: the blocks stop at each batch-norm layer, forward and
# backward, for the whole batch's statistics and column sums (first, middle and last hidden
# layer; mixed with layer norm, skips over it and dropout)
KW_BN = dict(layer_sizes=[6, 12, 12, 12, 3], activation=["relu", "tanh", "relu"],
             normalization=["batch", "layer", "batch"], skips=[(1, 3), (2, 3)],
             dropout=[0.3, 0.0, 0.2])


@pytest.mark.parametrize("kw", [KW, KW_BN], ids=["layer_norm", "batch_norm"])
def test_row_blocks_with_normalisation_skips_and_dropout_match_the_reference(rng, kw):
    """Batches of 240 rows cut into 4 blocks: each block's γ/β sums are its own (a shared
    scratch would race); batch norm's statistics are the whole batch's; the result, running
    statistics included, equals the NumPy twin."""
    assert step_blocks(kw["layer_sizes"], 240) == 4
    net = fastbp.Network(**kw, output_activation="softmax", dtype=np.float64, seed=2)
    assert fastbp.engine.Workspace(net._st, 240, np.float64, train=True).part is not None
    spec = naive.make_spec(**kw, output_activation="softmax")
    start = {k: v.astype(np.float64).copy() for k, v in net.state_dict().items()}
    X = rng.standard_normal((600, 6))
    y = rng.integers(0, 3, 600)
    tr = fastbp.Trainer(net, optimizer="sgd", learning_rate=0.1, batch_size=240, epochs=2,
                        shuffle=False, seed=4)
    h = tr.fit(X, y)
    want = {k: v.copy() for k, v in start.items()}
    losses = naive.structured_train(want, X, y, spec, "cross_entropy", naive.Optimizer("sgd", 0.1),
                                    240, 2, _masks(tr, spec))
    got = net.state_dict()
    assert max(np.abs(want[k] - start[k]).max() for k in want) > 1e-3
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(h.loss, losses, rtol=1e-9)


MPI_SCRIPT = """
import json, numpy as np, fastbp
from mpi4py import MPI
from fastbp.distributed import DistributedTrainer
comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((203, 6)); y = rng.integers(0, 3, 203)
kw = {kw!r}
def make():
    net = fastbp.Network(**kw, output_activation="softmax", dtype=np.float64, seed=2)
    return net, fastbp.Trainer(net, batch_size=16, epochs=2, seed=3, learning_rate=0.01)
net, tr = make()
DistributedTrainer(tr, comm).fit(X, y)
ref, rtr = make()
rtr.fit(X, y)
if comm.Get_rank() == 0:
    print(json.dumps(float(np.abs(net.params - ref.params).max() / np.abs(ref.params).max())))
"""


def test_mpi_with_layer_norm_skips_and_dropout_equals_one_process():
    pytest.importorskip("mpi4py")
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                           + os.environ.get("PATH", ""))
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install mpich)")
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", MPI_SCRIPT.format(kw=KW)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-10
