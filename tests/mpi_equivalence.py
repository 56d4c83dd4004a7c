"""Run by test_distributed.py under ``mpiexec -n 2``: a DistributedTrainer against a
single-process Trainer with the same global batch; rank 0 prints the largest relative
difference of the parameters and of the per-epoch losses."""
import json

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp.distributed import DistributedTrainer
from fastbp.engine import reduce_seconds
from fastbp.kernels import native as N

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((301, 7))
y = rng.integers(0, 3, 301)
result = {}
sw = rng.uniform(0, 2, 301)
sw[:40] = 0         # batches whose weights are all zero (batch 7: steps 1..5)
# the training controls: clipping that bites, a per-step schedule, class and sample weights
CONTROLS = {"clip_norm": 0.05, "class_weight": "balanced",
            "schedule": lambda: fastbp.schedules.OneCycleLR(0.05)}
# "python_sums": the steps summed from Python (a reducer without a native sum), not in the
# compiled step; "buckets": a bucket per layer (8 bytes: each layer's gradient is more), summed
# while the backward pass goes on; "one_sum": one Allreduce after it (the others: the default
# buckets, one for these small layers)
BUCKETS = {"buckets": 8, "one_sum": 0}
for name, optimizer, batch, controls in [("adam", "adam", 32, {}), ("nesterov", "nesterov", 7, {}),
                                         ("sgd", "sgd", None, {}),
                                         ("controls", "adam", 7, CONTROLS),
                                         ("python_sums", "adam", 7, CONTROLS),
                                         ("buckets", "adam", 32, CONTROLS),
                                         ("one_sum", "adam", 32, CONTROLS)]:
    def make():
        net = fastbp.Network([7, 16, 9, 3], activation="tanh", output_activation="softmax",
                             dtype=np.float64, seed=1)
        kw = {k: v() if callable(v) else v for k, v in controls.items()}
        return net, fastbp.Trainer(net, optimizer=optimizer, batch_size=batch, epochs=3, seed=2,
                                   learning_rate=0.01, **kw)
    weights = sw if controls else None
    net, tr = make()
    dist = DistributedTrainer(tr, comm, **({"bucket_bytes": BUCKETS[name]} if name in BUCKETS
                                           else {}))
    if name == "python_sums":
        dist._reducer.native_sum = lambda dtype: None
    h = dist.fit(X, y, validation_data=(X[:50], y[:50]), sample_weight=weights)
    ref, rtr = make()
    hr = rtr.fit(X, y, validation_data=(X[:50], y[:50]), sample_weight=weights)
    result[name] = {
        "params": float(np.abs(net.params - ref.params).max() / np.abs(ref.params).max()),
        "loss": float(np.max(np.abs(np.subtract(h.loss, hr.loss)) / np.abs(hr.loss))),
        "accuracy": h.accuracy == hr.accuracy and h.val_accuracy == hr.val_accuracy,
        "rates": h.learning_rate == hr.learning_rate,
        "val_loss": float(np.max(np.abs(np.subtract(h.val_loss, hr.val_loss)))),
        "same_on_ranks": bool(comm.allreduce(net.params.tobytes() == comm.bcast(net.params.tobytes()), op=MPI.LAND)),
        # where the sums ran: the compiled steps' time counted in their spec, or Python's
        "compiled": [reduce_seconds(spec) > 0 for spec in dist._reducer._specs.values()],
        # the buckets of the last step: MPI leaves a used request slot non-zero (its null
        # request)
        "buckets": [int(np.count_nonzero(spec[N.RS_REQUESTS:]))
                    for spec in dist._reducer._specs.values()],
        "comm_seconds": dist.comm_seconds > 0,
    }
# divergence: both raise, and both keep the same last finite parameters
def diverging():
    net = fastbp.Network([7, 16, 3], output_activation="softmax", dtype=np.float64, seed=1)
    return net, fastbp.Trainer(net, optimizer="sgd", batch_size=16, epochs=2, seed=2, learning_rate=1e300)
got = []
for make_trainer in (lambda tr: DistributedTrainer(tr, comm), lambda tr: tr):
    net, tr = diverging()
    try:
        make_trainer(tr).fit(X * 1e3, y)
        got.append(None)
    except fastbp.TrainingDivergedError as e:
        got.append((net.params.copy(), tr.step, str(e).split(";")[0]))
result["diverged"] = {
    "both_raised": got[0] is not None and got[1] is not None,
    "same_params": bool(got[0] is not None and got[1] is not None
                        and np.allclose(got[0][0], got[1][0], rtol=1e-10, atol=0)),
    "finite": bool(got[0] is not None and np.isfinite(got[0][0]).all()),
    "same_step": bool(got[0] is not None and got[1] is not None and got[0][1:] == got[1][1:]),
}
# an update that overflows float32 at the second step: both go back to the last finite
# parameters (the distributed one by replaying the epoch's first step) and agree on the step
a = float(np.float32(3e38) * np.float32(1e-20))
Xo, yo = np.full((4, 1), 1e-20, np.float32), np.array([a, a, 1.0, 1.0], np.float32)
got = []
for make_trainer in (lambda tr: DistributedTrainer(tr, comm), lambda tr: tr):
    net = fastbp.Network([1, 1], dtype=np.float32)
    net.weights, net.biases = [np.array([[3e38]])], [np.zeros(1)]
    tr = fastbp.Trainer(net, loss="squared_error", optimizer="sgd", learning_rate=1e30,
                        batch_size=2, epochs=1, shuffle=False)
    try:
        make_trainer(tr).fit(Xo, yo)
    except fastbp.TrainingDivergedError as e:
        got.append((net.params.tolist(), tr.step, "updated parameters" in str(e)))
result["overflow"] = {"same": len(got) == 2 and got[0] == got[1], "what": got}
if comm.Get_rank() == 0:
    print(json.dumps(result))
