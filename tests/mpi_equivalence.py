"""Run by test_distributed.py under ``mpiexec -n 2``: a DistributedTrainer against a
single-process Trainer with the same global batch; rank 0 prints the largest relative
difference of the parameters and of the per-epoch losses."""
import json

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp.distributed import DistributedTrainer

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((301, 7))
y = rng.integers(0, 3, 301)
result = {}
for optimizer, batch in [("adam", 32), ("nesterov", 7), ("sgd", None)]:
    def make():
        net = fastbp.Network([7, 16, 9, 3], activation="tanh", output_activation="softmax",
                             dtype=np.float64, seed=1)
        return net, fastbp.Trainer(net, optimizer=optimizer, batch_size=batch, epochs=3, seed=2,
                                   learning_rate=0.01)
    net, tr = make()
    dist = DistributedTrainer(tr, comm)
    h = dist.fit(X, y, validation_data=(X[:50], y[:50]))
    ref, rtr = make()
    hr = rtr.fit(X, y, validation_data=(X[:50], y[:50]))
    result[optimizer] = {
        "params": float(np.abs(net.params - ref.params).max() / np.abs(ref.params).max()),
        "loss": float(np.max(np.abs(np.subtract(h.loss, hr.loss)) / np.abs(hr.loss))),
        "val_loss": float(np.max(np.abs(np.subtract(h.val_loss, hr.val_loss)))),
        "same_on_ranks": bool(comm.allreduce(net.params.tobytes() == comm.bcast(net.params.tobytes()), op=MPI.LAND)),
    }
if comm.Get_rank() == 0:
    print(json.dumps(result))
