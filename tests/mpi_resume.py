"""Run by test_distributed.py under ``mpiexec -n 2``: an epoch stopped part-way in one process
and finished by DistributedTrainer (and the other way round) trains the model of an
uninterrupted single-process run; the ranks agree on stop and on a callback's answer, and only
rank 0 prints.  Rank 0 prints one JSON line of results."""
import contextlib
import io
import json

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp.distributed import DistributedTrainer

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
rng = np.random.default_rng(0)
X = rng.standard_normal((301, 7))
y = rng.integers(0, 3, 301)


def make(epochs=3, **kw):
    net = fastbp.Network([7, 16, 3], activation="tanh", output_activation="softmax",
                         dtype=np.float64, seed=1)
    return fastbp.Trainer(net, optimizer="adam", batch_size=5, epochs=epochs, seed=2,
                          learning_rate=0.01, **kw)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def stopper(after):
    polls = []
    return lambda: polls.append(1) or len(polls) == after


result = {}
ref = make()
ref_hist = ref.fit(X, y)

# stopped mid-epoch in one process (the CLI's SIGTERM), resumed under MPI
single = make()
h = single.fit(X, y, stop=stopper(1))
assert h.interrupted
arrays, info = single.state()
info = json.loads(json.dumps(info))
dist = DistributedTrainer(make(), comm)
dist.load_state(arrays, info)
hd = dist.fit(X, y)
result["single_then_mpi"] = {"params": rel(dist.network.params, ref.network.params),
                             "epochs": hd.epochs, "step": dist.trainer.step == ref.step}

# stopped mid-epoch under MPI (stop true on rank 1 only: the ranks agree), resumed alone
dist = DistributedTrainer(make(), comm)
hd = dist.fit(X, y, stop=stopper(1) if rank == 1 else (lambda: False))
arrays, info = dist.state()
alone = make()
alone.load_state(arrays, json.loads(json.dumps(info)))
alone.fit(X, y)
result["mpi_then_single"] = {"interrupted": hd.interrupted, "params": rel(alone.network.params,
                                                                           ref.network.params)}

# a callback's True on one rank stops every rank; verbose prints on rank 0 only
seen = []
out = io.StringIO()
with contextlib.redirect_stdout(out):
    dist = DistributedTrainer(make(epochs=5, verbose=True,
                                   callback=lambda e, h: seen.append(e) or (rank == 1 and e == 1)),
                              comm)
    hc = dist.fit(X, y)
lines = comm.gather(out.getvalue().count("epoch "), root=0)
result["callback"] = {"epochs": hc.epochs, "seen": seen}
if rank == 0:
    result["verbose_lines"] = lines
    print(json.dumps(result))
