"""Run by test_distributed.py under ``mpiexec``: each rank's thread count after
DistributedTrainer (its share of the node's cores unless the user chose one), and whether
share_cores leaves a count set with numba.set_num_threads.  Rank 0 prints one JSON line."""
import json
import os
import sys

import numba
import numpy as np
from mpi4py import MPI

import fastbp
from fastbp.distributed import DistributedTrainer, share_cores

comm = MPI.COMM_WORLD
net = fastbp.Network([3, 4, 1], seed=0)
DistributedTrainer(fastbp.Trainer(net, epochs=1), comm)
auto = numba.get_num_threads()
numba.set_num_threads(1)
kept = share_cores(comm)
mine = sorted(os.sched_getaffinity(0))
everyone = comm.gather({"auto": auto, "kept": kept, "cpus": mine}, root=0)
if comm.Get_rank() == 0:
    print(json.dumps({"ranks": everyone, "max": numba.config.NUMBA_NUM_THREADS}))
