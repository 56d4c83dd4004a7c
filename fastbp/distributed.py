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

Ranks on one node never oversubscribe its cores by default: each rank computes with the CPUs it
may run on divided by the ranks of its node that share them (:func:`share_cores`), unless the
user chose a thread count (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``, ``--threads``).
Numba's default (one thread per core in every rank) put 2 ranks × 2 threads on 2 cores: the
spinning OpenMP threads took a mnist epoch 55 times longer than one process (2026-12-07).
"""
import os
import time

import numpy as np

from ._validation import InputError

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
        raise InputError('started under an MPI launcher with several ranks, but mpi4py is not '
                         'installed: pip install "fastbp[mpi]"') from None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def _cpus():
    try:
        return os.sched_getaffinity(0)
    except AttributeError:      # not on Linux
        return set(range(os.cpu_count() or 1))


def share_cores(comm):
    """Give this rank its share of the node's cores: the CPUs it may run on divided by the
    ranks of ``comm`` on its node whose CPUs overlap its own (at least 1), unless the user chose
    a thread count (``NUMBA_NUM_THREADS`` in the environment, or ``numba.set_num_threads``
    called).  Collective: every rank of ``comm`` calls it.  Returns this rank's thread count."""
    import numba
    from mpi4py import MPI
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        mine = _cpus()
        sharing = sum(1 for other in local.allgather(sorted(mine)) if mine & set(other))
    finally:
        local.Free()
    chosen = ("NUMBA_NUM_THREADS" in os.environ
              or numba.get_num_threads() != numba.config.NUMBA_NUM_THREADS)
    if not chosen:
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS,
                                         len(mine) // max(1, sharing))))
    return numba.get_num_threads()


def _addresses():
    """The addresses of ``MPI_Allreduce``, ``MPI_Wtime``, ``MPI_Iallreduce``, ``MPI_Wait`` and
    ``MPI_Test`` in the MPI library mpi4py loaded (found among the process's mapped libraries),
    or None."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libmpi" in line}
    except OSError:         # not Linux
        return None
    for path in sorted(p for p in paths if os.path.basename(p).startswith("libmpi.so")):
        try:
            lib = ctypes.CDLL(path)
            return tuple(ctypes.cast(f, ctypes.c_void_p).value for f in (
                lib.MPI_Allreduce, lib.MPI_Wtime, lib.MPI_Iallreduce, lib.MPI_Wait, lib.MPI_Test))
        except (OSError, AttributeError):
            continue
    return None


# The gradient's buckets (see MPIReducer): PyTorch's DistributedDataParallel starts with 1 MiB
# (then 25 MiB), Horovod fuses up to 64 MiB
BUCKET_BYTES = 1 << 20


def _bucket_bytes(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"bucket_bytes must be an integer >= 0 (0: one Allreduce after the "
                         f"backward pass), got {value!r}")
    return int(value)


class MPIReducer:
    """The engine's gradient reducer over an MPI communicator: in-place ``Allreduce`` of the
    flat buffer (the gradients, the batch's loss and its correct count in one message), called
    from the compiled step (:meth:`native_sum`) where the engine can, else from Python
    (:meth:`sum`).  From the compiled step the gradient is summed in buckets of at least
    ``bucket_bytes`` while the backward pass goes on (nonblocking ``MPI_Iallreduce``, the last
    layer's first; 0: one ``Allreduce`` after it).  MPI moves a nonblocking sum on inside its
    own calls, which the step makes at each layer; with a progress thread (MPICH:
    ``MPICH_ASYNC_PROGRESS=1``) it moves on while the products run."""

    def __init__(self, comm, bucket_bytes=BUCKET_BYTES):
        from mpi4py import MPI
        self.bucket_bytes = _bucket_bytes(bucket_bytes)
        self._MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._seconds = 0.0     # time spent in Allreduce called from Python
        self._specs = {}        # the compiled steps' sums, by dtype (native_sum)

    @property
    def seconds(self):
        """Time spent in Allreduce, from Python and from the compiled steps."""
        from .engine import reduce_seconds
        return self._seconds + sum(reduce_seconds(s) for s in self._specs.values())

    def sum(self, buf):
        t0 = time.perf_counter()
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self._seconds += time.perf_counter() - t0

    def any(self, flag):
        return self.comm.allreduce(bool(flag), op=self._MPI.LOR)

    def native_sum(self, dtype):
        """The compiled step's in-place sum of a ``dtype`` buffer over the communicator
        (``engine.reduce_spec``: MPI_Allreduce's address and the MPI handles), or None when
        they cannot be had (the engine then sums from Python)."""
        from .engine import reduce_spec
        dtype = np.dtype(dtype)
        if dtype in self._specs:
            return self._specs[dtype]
        MPI = self._MPI
        addresses = _addresses()
        datatype = {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE}.get(dtype)
        if addresses is None or datatype is None:
            return None
        try:
            handles = [int(MPI.IN_PLACE)] + [MPI._handleof(h) for h in (datatype, MPI.SUM,
                                                                       self.comm)]
        except (AttributeError, TypeError):        # mpi4py without _handleof
            return None
        spec = reduce_spec(addresses[0], *handles, self.rank, self.size, addresses[1],
                           *addresses[2:], bucket_bytes=self.bucket_bytes)
        self._specs[dtype] = spec
        return spec


class DistributedTrainer:
    """A :class:`fastbp.Trainer` whose steps are computed by all ranks of ``comm`` together.

    Takes the trainer's network, loss, optimizer, hyperparameters, epochs, shuffling seed,
    ``verbose`` (printed by rank 0) and callback (its answer agreed by all ranks);
    :meth:`fit` is called on every rank with the same data.  ``state``/``load_state`` are the
    trainer's: checkpoints are interchangeable with single-process runs, an unfinished epoch
    included.

    ``auto_threads``: give each rank its share of its node's cores (:func:`share_cores`;
    nothing changes when the user chose a thread count); False: leave numba's threads as they
    are.  ``bucket_bytes``: the gradient is summed over the ranks in buckets of at least this
    many bytes while the backward pass goes on (see :class:`MPIReducer`; 0: one Allreduce
    after it)."""

    def __init__(self, trainer, comm, auto_threads=True, bucket_bytes=BUCKET_BYTES):
        self._reducer = MPIReducer(comm, bucket_bytes)     # (checks it before the threads change)
        self.trainer, self.comm = trainer, comm
        if auto_threads:
            share_cores(comm)
        self.network = trainer.network
        self.rank, self.size = self._reducer.rank, self._reducer.size

    @property
    def comm_seconds(self):
        """Time spent in Allreduce, summed over fits."""
        return self._reducer.seconds

    def state(self):
        return self.trainer.state()

    def load_state(self, arrays, info):
        self.trainer.load_state(arrays, info)

    def fit(self, X, y, validation_data=None, sample_weight=None, stop=None):
        """Every rank calls this with the same data; see :meth:`fastbp.Trainer.fit`.  ``stop``
        is polled on every rank and the ranks stop together when it is True on any of them."""
        return self.trainer.fit(X, y, validation_data=validation_data,
                                sample_weight=sample_weight, stop=stop, reducer=self._reducer)


__all__ = ["DistributedTrainer", "MPIReducer", "share_cores", "world"]
