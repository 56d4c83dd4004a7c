"""Samples/s of data-parallel training with 1 and K MPI ranks, and the share of time spent in
Allreduce.  Run it under mpiexec with NUMBA_NUM_THREADS set so that ranks × threads = cores:

    NUMBA_NUM_THREADS=1 mpiexec -n 2 python benchmarks/mpi_scaling.py
    NUMBA_NUM_THREADS=2 python benchmarks/mpi_scaling.py        # the single-process baseline

``--bucket-bytes B``: the gradient summed in buckets of at least B bytes during the backward
pass (DistributedTrainer's ``bucket_bytes``; 0: one Allreduce after it); ``--configs``: from
tabular, mnist, wide.  The Allreduce share is the time the ranks spent inside MPI's calls (with
buckets: the part of the sums the backward pass did not hide).
"""
import argparse
import time

import numpy as np

import fastbp
from fastbp.distributed import BUCKET_BYTES, DistributedTrainer, world

CONFIGS = {"tabular": ([32, 64, 64, 1], 32, 16384), "mnist": ([784, 256, 128, 10], 128, 8192),
           "wide": ([1024, 2048, 2048, 10], 256, 2048)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="tabular,mnist")
    ap.add_argument("--bucket-bytes", type=int, default=BUCKET_BYTES)
    args = ap.parse_args()
    comm = world()
    rank = 0 if comm is None else comm.Get_rank()
    ranks = 1 if comm is None else comm.Get_size()
    for name in args.configs.split(","):
        sizes, batch, n = CONFIGS[name]
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], n) if sizes[-1] > 1 else X[:, :4].sum(1)
        net = fastbp.Network(sizes, output_activation="softmax" if sizes[-1] > 1 else "identity", seed=0)
        tr = fastbp.Trainer(net, loss="cross_entropy" if sizes[-1] > 1 else "squared_error",
                            optimizer="sgd", learning_rate=0.01, batch_size=batch, epochs=1, seed=0)
        trainer = tr if comm is None else DistributedTrainer(tr, comm,
                                                             bucket_bytes=args.bucket_bytes)
        trainer.fit(X[:4 * batch], y[:4 * batch])          # compile
        comm0 = 0.0
        if comm is not None:
            comm0 = trainer.comm_seconds
            comm.Barrier()
        t = time.perf_counter()
        trainer.fit(X, y)
        seconds = time.perf_counter() - t
        share = (trainer.comm_seconds - comm0) / seconds if comm is not None else 0.0
        if rank == 0:
            print(f"{name:8s} ranks {ranks}  {n / seconds:12,.0f} samples/s  allreduce {100 * share:5.1f}% "
                  f"of the time  ({net.params.nbytes / 1e6:.2f} MB per step, buckets of "
                  f"{args.bucket_bytes if comm is not None else '-'} bytes)", flush=True)


if __name__ == "__main__":
    main()
