"""Run by test_distributed.py under ``mpiexec -n 3``: batch normalisation (alone, and mixed
with layer norm, skips and dropout; with and without sample weights) trained by a
DistributedTrainer against one process with the same global batch: the batch statistics are
the global batch's.  Batches of 16 rows are cut 5, 5, 6; 32 rows in batches of 5 end with a
batch of 2 that leaves one rank without rows (it still takes part in the statistics' sums).
Rank 0 prints the largest relative differences of the parameters, the running statistics and
the losses."""
import json

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp.distributed import DistributedTrainer

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((203, 6)) * 3 + 1
y = rng.integers(0, 3, 203)
sw = rng.uniform(0.5, 2, 203)
CASES = {
    "batch": dict(layer_sizes=[6, 12, 12, 3], normalization="batch", activation="tanh"),
    "mixed": dict(layer_sizes=[6, 10, 10, 10, 3], normalization=["batch", "layer", "batch"],
                  skips="residual", dropout=[0.2, 0.0, 0.3],
                  activation=["relu", "tanh", "leaky_relu"]),
}
result = {}
for name, kw in CASES.items():
    for batch, n, weights in [(16, 203, None), (16, 203, sw), (5, 32, None)]:
        def make():
            net = fastbp.Network(**kw, output_activation="softmax", dtype=np.float64, seed=2)
            return net, fastbp.Trainer(net, optimizer="nesterov", batch_size=batch, epochs=2,
                                       seed=3, learning_rate=0.01)
        w = None if weights is None else weights[:n]
        net, tr = make()
        h = DistributedTrainer(tr, comm).fit(X[:n], y[:n], sample_weight=w,
                                             validation_data=(X[:30], y[:30]))
        ref, rtr = make()
        hr = rtr.fit(X[:n], y[:n], sample_weight=w, validation_data=(X[:30], y[:30]))
        a, b = net.state_dict(), ref.state_dict()
        result[f"{name}/b{batch}/n{n}/{'w' if w is not None else '-'}"] = {
            "params": float(np.abs(net.params - ref.params).max() / np.abs(ref.params).max()),
            "stats": float(np.abs(net._st.stats - ref._st.stats).max()
                           / np.abs(ref._st.stats).max()),
            "moved": max(float(np.abs(b[k] - (1.0 if "var" in k else 0.0)).max())
                         for k in b if "running" in k),
            "loss": float(np.max(np.abs(np.subtract(h.loss, hr.loss)) / np.abs(hr.loss))),
            "val_loss": float(np.max(np.abs(np.subtract(h.val_loss, hr.val_loss)))),
            "same_on_ranks": bool(comm.allreduce(
                net.params.tobytes() + net._st.stats.tobytes()
                == comm.bcast(net.params.tobytes() + net._st.stats.tobytes()), op=MPI.LAND)),
        }
if comm.Get_rank() == 0:
    print(json.dumps(result))
