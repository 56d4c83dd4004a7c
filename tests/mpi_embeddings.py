"""Run by test_embeddings.py under ``mpiexec -n 2``: networks with embeddings trained by a
DistributedTrainer against one process with the same global batch — without batch norm (each
rank's share through batch_gradients: 128 rows a rank, two row blocks) and with it (the
engine's global batch-norm path, whose last backward pass is followed by the tables' scatter).
Rank 0 prints the largest relative differences of the parameters, the running statistics and
the losses."""
import json

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp.distributed import DistributedTrainer

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
n = 600
codes = np.stack([rng.integers(0, 40, n), rng.integers(0, 5, n)], axis=1)
X = np.concatenate([rng.standard_normal((n, 6)), codes], axis=1)
y = rng.integers(0, 3, n)
sw = rng.uniform(0.5, 2, n)
CASES = {
    "plain": dict(layer_sizes=[8, 16, 12, 3], activation="tanh"),
    "batch": dict(layer_sizes=[8, 16, 16, 3], normalization=["batch", "layer"], dropout=0.1,
                  skips="residual", activation=["relu", "tanh"]),
}
result = {}
for name, kw in CASES.items():
    for batch, weights in [(256, None), (30, sw)]:
        def make():
            net = fastbp.Network(**kw, output_activation="softmax", dtype=np.float64, seed=2,
                                 embeddings=[(40, 5), (5, 3)])
            return net, fastbp.Trainer(net, optimizer="adam", batch_size=batch, epochs=2, seed=3,
                                       learning_rate=0.01)
        net, tr = make()
        start = net.params.copy()
        h = DistributedTrainer(tr, comm).fit(X, y, sample_weight=weights,
                                             validation_data=(X[:50], y[:50]))
        ref, rtr = make()
        hr = rtr.fit(X, y, sample_weight=weights, validation_data=(X[:50], y[:50]))
        scale = lambda a: max(np.abs(a).max(), 1e-300)
        result[f"{name}/b{batch}/{'w' if weights is not None else '-'}"] = {
            "params": float(np.abs(net.params - ref.params).max() / scale(ref.params)),
            "stats": float(np.abs(net._st.stats - ref._st.stats).max() / scale(ref._st.stats))
            if ref._st.stats.size else 0.0,
            "moved": float(np.abs(net.state_dict()["embeddings.0.weight"]
                                  - start[:200].reshape(40, 5)).max()),
            "loss": float(np.max(np.abs(np.subtract(h.loss, hr.loss)) / np.abs(hr.loss))),
            "same_on_ranks": bool(comm.allreduce(
                net.params.tobytes() == comm.bcast(net.params.tobytes()), op=MPI.LAND)),
        }
if comm.Get_rank() == 0:
    print(json.dumps(result))
