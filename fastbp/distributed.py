"""Data-parallel training with MPI (mpi4py): ``fastbp[mpi]``.

Every rank holds the whole data set and the same network.  Each step, the global mini-batch
(the same shuffled rows on every rank: the shuffling generator is seeded alike) is cut into K
contiguous slices; rank r computes the gradient of its slice with fastbp's kernels, one
``Allreduce`` sums the flat gradient buffer (and the batch's loss, in the same message), and
every rank applies the same optimizer update to its copy of the parameters.  The result equals
a single-process run with the same global batch size up to the order of floating-point sums
(float64: relative differences around 1e-15).

    from mpi4py import MPI
    from fastbp.distributed import DistributedTrainer
    trainer = DistributedTrainer(fastbp.Trainer(net, ...), MPI.COMM_WORLD)
    trainer.fit(X, y)          # on every rank; rank 0 alone should write files

``mpiexec -n K fastbp train ...`` does this for the command line.
"""
import math
import os
import time

import numpy as np

from . import _config
from ._validation import check_targets, check_X
from .kernels import train as K
from .kernels.losses import LOSSES
from .kernels.optimizers import CHUNK, OPTIMIZERS, update
from .model.network import NO_WEIGHTS, Workspace
from .model.trainer import History, diverged_error, weight_norms

# environment variables that MPI launchers (MPICH/Hydra, Open MPI, PMIx, Slurm's srun) set
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def world():
    """``MPI.COMM_WORLD`` when this process was started by an MPI launcher with more than one
    rank, else None (a plain run never imports mpi4py)."""
    sizes = [os.environ.get(v) for v in _LAUNCHER_SIZE]
    if not any(s and s.isdigit() and int(s) > 1 for s in sizes):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ValueError('started under an MPI launcher with several ranks, but mpi4py is not '
                         'installed: pip install "fastbp[mpi]"') from None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


class DistributedTrainer:
    """A :class:`fastbp.Trainer` whose steps are computed by all ranks of ``comm`` together.

    Takes the trainer's network, loss, optimizer, hyperparameters, epochs and shuffling seed;
    :meth:`fit` is called on every rank with the same data.  ``state``/``load_state`` are the
    trainer's (checkpoints are interchangeable with single-process runs)."""

    def __init__(self, trainer, comm):
        self.trainer, self.comm = trainer, comm
        self.network = trainer.network
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.comm_seconds = 0.0      # time spent in Allreduce, summed over fits

    def state(self):
        return self.trainer.state()

    def load_state(self, arrays, info):
        self.trainer.load_state(arrays, info)

    def fit(self, X, y, validation_data=None, stop=None):
        """Every rank calls this with the same data.  ``stop`` is ignored: ranks stop between
        epochs, where they can agree on it (see the command line)."""
        from mpi4py import MPI
        tr, net = self.trainer, self.network
        sizes, dtype = net.layer_sizes, net.dtype
        X = check_X(X, dtype, sizes[0])
        Yf, Yi = check_targets(y, tr.loss, sizes[-1], X.shape[0], dtype)
        n = X.shape[0]
        batch = n if tr.batch_size is None else min(tr.batch_size, n)
        local_max = -(-batch // self.size)
        ws = Workspace(sizes, local_max, dtype, train=True)
        n_params = net.params.shape[0]
        buf = np.zeros(n_params + 1, dtype)   # the gradients, then the batch's summed loss
        grads = buf[:n_params]
        hyper = tr._hyper()
        consts = np.zeros(10, dtype)
        flags = np.zeros(-(-n_params // CHUNK), dtype)
        codes = (net._act, net._out, LOSSES[tr.loss])
        opt = OPTIMIZERS[tr.optimizer]
        s1, s2 = tr._state
        sw = NO_WEIGHTS.astype(dtype)
        layout = net._layout
        history = History(net.n_layers)
        perm = np.arange(n, dtype=np.int64)
        gsq = np.zeros(net.n_layers)

        def step(lo):
            """One global step over ``perm[lo:lo+batch]``, on every rank; returns the batch's
            summed loss (the gradient's per-layer squared norms in ``gsq``) and a kernel status:
            K.OK, or what became non-finite (the loss or the gradient: no update was made; the
            updated parameters)."""
            rows = perm[lo:min(n, lo + batch)]
            B = rows.shape[0]
            mine = rows[B * self.rank // self.size:B * (self.rank + 1) // self.size]
            if mine.shape[0] > 0:
                with _config.ready():
                    loss, _ = K.batch_gradients(X, Yf, Yi, sw, mine, net.params, grads, ws.part,
                                                layout,
                                                *codes, 0.0, 1.0, ws.acts, ws.aoff, ws.deltas,
                                                ws.doff, ws.rowloss, ws.sq, ws.gsq)
                # the local mean -> its share of the global mean
                np.multiply(grads, dtype.type(mine.shape[0] / B), out=grads)
                buf[n_params] = loss
            else:
                buf[...] = 0
            c0 = time.perf_counter()
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            self.comm_seconds += time.perf_counter() - c0
            for l, (_, b, w, o) in enumerate(layout):      # W then b: adjacent in the layout
                gsq[l] = K.sumsq(buf, w, o + b)
            loss = float(buf[n_params])
            if not math.isfinite(loss):
                return loss, K.LOSS_NOT_FINITE
            if not math.isfinite(float(gsq.sum())):
                return loss, K.GRADIENT_NOT_FINITE
            with _config.ready():
                ok = update(opt, net.params, grads, s1, s2, hyper, tr.step + 1, consts, flags)
            tr.step += 1
            return loss, K.OK if ok else K.PARAMS_NOT_FINITE

        for epoch in range(tr.epochs):
            t0 = time.perf_counter()
            if tr.shuffle:
                perm[...] = tr._rng.permutation(n)
            snapshot = (net.params.copy(), s1.copy(), s2.copy(), tr.step)
            total, gnorm, steps = 0.0, np.zeros(net.n_layers), 0
            for lo in range(0, n, batch):
                loss, status = step(lo)
                if status != K.OK:   # every rank sees the same reduced numbers: all stop here
                    if status == K.PARAMS_NOT_FINITE:   # the update wrote: back to the epoch's
                        #                                 start, replay the good steps
                        for buf_, saved in zip((net.params, s1, s2), snapshot):
                            buf_[...] = saved
                        tr.step = snapshot[3]
                        for redo in range(steps):
                            step(redo * batch)
                    raise diverged_error(status, steps, epoch, tr.learning_rate, history)
                gnorm += np.sqrt(gsq)
                total += loss
                steps += 1
            history.loss.append(total / n)
            history._grad.append(gnorm / steps)
            history._weight.append(weight_norms(net))
            if validation_data is not None:
                Xv, yv = validation_data
                history.val_loss.append(net.loss(Xv, yv, loss=tr.loss))
            history.seconds.append(time.perf_counter() - t0)
        return history


__all__ = ["DistributedTrainer", "world"]
