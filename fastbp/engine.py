"""The engine: the one boundary between Python and the compiled kernels.

Everything above it (:class:`~fastbp.Network`, :class:`~fastbp.Trainer`, the scikit-learn
estimators, MPI, the command line) calls the compiled entry points through this module, and
this module alone imports :mod:`fastbp.kernels.train`.  It owns

* the workspaces (activation and delta buffers of a batch, allocated once per call or fit);
* the training buffers (gradient, optimizer state, update scratch) in :class:`Optimizer` and
  :class:`EpochRunner`;
* wrappers of the compiled entry points (:func:`predict`, :func:`evaluate`,
  :func:`batch_gradients`, :meth:`EpochRunner._fused`) that take named, defaulted arguments,
  each the only call site of its kernel, which it calls through a :class:`Call`: the
  arguments by the names of the kernel's parameters, from the bundles that hold them
  (:class:`Structure`, :class:`Workspace`, :class:`Optimizer`, :class:`Codes`: ``named``), so
  that the order of a kernel's arguments is written once, in its ``def``;
* the one epoch loop (:meth:`EpochRunner.run`): the epoch's steps in compiled calls, an epoch
  stopped part-way (:class:`Pending`) and finished later, the divergence guard (an update that
  overflows is not kept), and the kernels' status turned into :class:`Diverged`;
* the reducer hook through which data-parallel training (MPI) sums each step's gradient.

Input arrays reach the kernels as read-only views (no copy): a read-only or memory-mapped
array then runs the same compiled code as any other (numba compiles a separate signature per
writability; passing every input read-only makes that one signature).
"""
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from . import _config
from .kernels import train as K
from .kernels.dense import sq_size
from .kernels.losses import count_correct
from .kernels import optimizers as O
from .kernels.optimizers import CHUNK, STATE_ARRAYS
from .kernels import structure as S
from .kernels import embeddings as E
from .kernels import native as N
from . import compilation as C

OK = K.OK
PREDICT_CHUNK = 512    # rows per forward chunk: bounds the workspace of predict/evaluate
STOP_STEPS = 32        # steps per compiled call while a ``stop`` callable is polled
_WHAT = {K.LOSS_NOT_FINITE: "the loss", K.GRADIENT_NOT_FINITE: "the gradient",
         K.PARAMS_NOT_FINITE: "the updated parameters"}
_NO_REDUCE = np.empty(0, np.int64)      # train_epoch's reduce_spec: one process


def reduce_spec(address, in_place, datatype, op, comm, rank, size, wtime, iallreduce=0, wait=0,
                test=0, bucket_bytes=0):
    """The compiled step's sum over processes (``kernels.native.REDUCE_SPEC``): the address of
    ``MPI_Allreduce`` and the MPI handles of MPI_IN_PLACE, the parameters' datatype, MPI_SUM and
    the communicator, this process's rank and the processes' count, and the address of
    ``MPI_Wtime`` (a reducer's ``native_sum``, see EpochRunner); with the addresses of
    ``MPI_Iallreduce``, ``MPI_Wait`` and ``MPI_Test`` and ``bucket_bytes`` > 0, the gradient is
    summed in buckets of at least that many bytes during the backward pass
    (``kernels.train.overlapped_gradients``).  :func:`reduce_seconds` reads the time the
    kernels have spent in the sums."""
    spec = np.zeros(N.REDUCE_SPEC, np.int64)
    if not (iallreduce and wait and test):
        bucket_bytes = 0
    for i, v in ((N.RS_ADDRESS, address), (N.RS_IN_PLACE, in_place), (N.RS_DATATYPE, datatype),
                 (N.RS_OP, op), (N.RS_COMM, comm), (N.RS_RANK, rank), (N.RS_SIZE, size),
                 (N.RS_WTIME, wtime), (N.RS_IALLREDUCE, iallreduce), (N.RS_WAIT, wait),
                 (N.RS_TEST, test), (N.RS_BUCKET_BYTES, max(0, int(bucket_bytes)))):
        spec[i] = np.int64(v)
    return spec


def reduce_seconds(spec):
    """Seconds the compiled steps have spent in the sums of :func:`reduce_spec` ``spec``."""
    return float(spec[N.RS_NANOS]) * 1e-9


class Structure:
    """A network as the kernels see it: the layout table (``kernels.structure``'s columns: each
    dense layer's sizes and parameter offsets, its activation, its normalisation with γ, β after
    W and b, where its running statistics live, whether it takes the unfused path), the dropout
    rate of each layer, the skip connections ``(i, j)`` (``a_j += a_i``) and the running
    statistics buffer (batch normalisation's mean, then variance, per normalised layer; the
    network's state, shared, never copied).

    ``acts``: one hidden activation code per hidden layer (or one for all); ``norms``: one
    ``kernels.structure`` norm code per hidden layer (None: none); ``embeddings``: one
    ``(n_levels, dim)`` per categorical input, the last ``len(embeddings)`` columns of X
    (``kernels.embeddings``: the table ``emb``, the tables first in the parameters).
    ``sizes[0]`` is X's width; :attr:`sizes` has the first dense layer's input width there
    (``n_x − k + Σ dim``) and :attr:`n_x` X's."""

    def __init__(self, sizes, acts, norms=None, drop=None, skips=(), dtype=np.float64,
                 embeddings=()):
        sizes = [int(v) for v in sizes]
        L = len(sizes) - 1
        self.n_x = n_x = sizes[0]
        k = len(embeddings)
        self.emb = np.zeros((k, E.COLUMNS), np.int64)
        off, col = 0, n_x - k
        for e, (levels, dim) in enumerate(embeddings):
            self.emb[e] = (n_x - k + e, levels, dim, off, col)
            off += int(levels) * int(dim)
            col += int(dim)
        sizes[0] = col          # the dense input: the numeric columns, then every table's row
        acts = [int(acts)] * (L - 1) if np.ndim(acts) == 0 else [int(a) for a in acts]
        norms = [S.NO_NORM] * (L - 1) if norms is None else list(norms)
        drop = [0.0] * (L - 1) if drop is None else [float(p) for p in drop]
        self.skips = np.array(sorted(skips), np.int64).reshape(-1, 2)
        ends = {int(j) for _, j in self.skips} | {int(i) for i, _ in self.skips if i > 0}
        layout = np.zeros((L, S.COLUMNS), np.int64)
        soff = 0
        for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            hidden = l < L - 1
            norm = norms[l] if hidden else S.NO_NORM
            layout[l, [S.N_IN, S.N_OUT, S.W_OFF, S.B_OFF]] = (a, b, off, off + a * b)
            layout[l, S.ACT] = acts[l] if hidden else 0
            layout[l, S.NORM] = norm
            off += a * b + b
            layout[l, S.G_OFF] = off if norm != S.NO_NORM else -1
            off += 2 * b if norm != S.NO_NORM else 0
            layout[l, S.END] = off
            layout[l, S.S_OFF] = soff if norm == S.BATCH_NORM else -1
            soff += 2 * b if norm == S.BATCH_NORM else 0
            layout[l, S.STRUCT] = hidden and (norm != S.NO_NORM or drop[l] > 0 or l + 1 in ends)
        self.layout, self.n_params = layout, off
        self.drop = np.array(drop + [0.0], np.float64)
        self.sizes = sizes
        self.batch_norm = bool(np.any(layout[:, S.NORM] == S.BATCH_NORM))
        self.stats = np.zeros(soff, dtype)
        for l in range(L):
            if layout[l, S.NORM] == S.BATCH_NORM:       # running var starts at 1
                o, n = layout[l, S.S_OFF], sizes[l + 1]
                self.stats[o + n:o + 2 * n] = 1

    @property
    def structured(self):
        return bool(self.layout[:, S.STRUCT].any())

    @property
    def named(self):
        """The network's arrays by the kernels' names for them (see :class:`Call`)."""
        return {"layout": self.layout, "stats": self.stats, "drop": self.drop,
                "skips": self.skips, "emb": self.emb}


def readonly(a):
    """A read-only view of ``a`` (no copy): every input reaches the kernels read-only, so
    writable, read-only and memory-mapped arrays share one compiled signature."""
    if a is None or not a.flags.writeable:
        return a
    v = a.view(np.ndarray)
    v.flags.writeable = False
    return v


@dataclass(frozen=True)
class Codes:
    """The kernels' integer codes of a network's output activation and its loss (the hidden
    activations are in the :class:`Structure`)."""
    out: int
    loss: int = 0

    @property
    def named(self):
        return {"out_code": self.out, "loss_code": self.loss}


class Workspace:
    """Activation and delta buffers of the network ``st`` (a :class:`Structure`) for batches
    of up to ``rows`` samples, allocated once.  ``train``: also the other row blocks' gradient
    buffers of the row-block step (``kernels.train.step_blocks``; None for large networks and
    inference workspaces, and then the compiled step has no row-block code).  Slots: see
    ``kernels.structure``."""

    def __init__(self, st, rows, dtype, train=False):
        self.sizes = sizes = st.sizes
        L = len(sizes) - 1
        blocks = K.step_blocks(sizes, rows) if train else 1
        self.capacity = rows
        struct = st.layout[:, S.STRUCT].astype(bool)
        widths = np.asarray(sizes[1:], np.int64)
        own = widths * struct                       # h and x̂ slots of structured layers
        targets = np.zeros(L, np.int64)
        for i, j in st.skips:
            if i > 0:
                targets[j - 1] = widths[j - 1]      # the saved ∂E/∂a of a skip target
        k = st.emb.shape[0]          # the codes' slot; δ of the embedded columns in slot 0
        aw = np.concatenate([sizes, own, own, [k]])
        dw = np.concatenate([[sizes[0] - st.n_x + k], widths, targets])
        self.aoff = np.concatenate([[0], np.cumsum(aw)]).astype(np.int64) * rows
        self.doff = np.concatenate([[0], np.cumsum(dw)]).astype(np.int64) * rows
        self.acts = np.empty(int(self.aoff[-1]), dtype)
        self.deltas = np.empty(int(self.doff[-1]), dtype)
        self.rowloss = np.empty(rows, dtype)
        self.part = np.empty((blocks - 1) * st.n_params, dtype) if blocks > 1 else None
        # per-task partial sums (and a serial product's scratch) and per-layer gradient norms,
        # one set per row block
        self.sq = np.empty(blocks * sq_size(sizes, rows), np.float64)
        self.gsq = np.empty(blocks * L, np.float64)
        self.rows = np.empty(rows, np.int64)
        # normalisation scratch per layer (kernels.structure): batch norm's mean and 1/σ per
        # unit and the batch size, layer norm's 1/σ per row; then Σδ and Σδ·x̂ per unit
        w = max(sizes)
        stride = max(4 * w + 1, rows + 2 * w) if struct.any() else 0
        self.nst = np.zeros(blocks * L * stride, np.float64)    # one per row block

    @property
    def named(self):
        """The buffers by the kernels' names for them (see :class:`Call`; the chunk indices
        ``rows`` of predict and evaluate are named at their calls: ``rows`` is a batch's rows
        elsewhere)."""
        return {"acts": self.acts, "aoff": self.aoff, "deltas": self.deltas, "doff": self.doff,
                "rowloss": self.rowloss, "sq": self.sq, "gsq": self.gsq, "nst": self.nst,
                "part": self.part}

    def view(self, which, l, n):
        """Slot ``l`` of the activations (``"acts"``) or deltas, its first ``n`` rows."""
        buf, off = (self.acts, self.aoff) if which == "acts" else (self.deltas, self.doff)
        width = (off[l + 1] - off[l]) // self.capacity
        return buf[off[l]:off[l] + n * width].reshape(n, width)


def inference_workspace(st, n, dtype):
    return Workspace(st, min(PREDICT_CHUNK, max(1, n)), dtype)


class Call:
    """A compiled entry point called with its arguments by name: ``call(values)`` passes
    ``values[p]`` for each parameter ``p`` of the kernel's ``def``, in the def's order, which is
    thus written nowhere else (a name missing from ``values`` is a TypeError naming it; extra
    names are ignored).  The call itself is positional: numba's keyword path costs ~2 µs.
    ``bind(values, *varying)``: for many calls, the arguments that stay the same looked up
    once; the bound call takes the ``varying`` ones, in that order."""

    def __init__(self, kernel):
        self.kernel = kernel
        code = kernel.py_func.__code__
        self.names = code.co_varnames[:code.co_argcount]

    def args(self, values):
        try:
            return tuple([values[p] for p in self.names])
        except KeyError as e:
            raise TypeError(f"{self.kernel.py_func.__name__}: no value for its argument "
                            f"{e.args[0]!r}") from None

    def __call__(self, values):
        with _config.ready():
            return self.kernel(*self.args(values))

    def bind(self, values, *varying):
        return _Bound(self, values, varying)


class _Bound:
    """:meth:`Call.bind`'s call."""

    def __init__(self, call, values, varying):
        self.kernel = call.kernel
        self._template = list(call.args({**values, **dict.fromkeys(varying)}))
        self._at = [call.names.index(v) for v in varying]

    def args(self, *varying):
        a = self._template.copy()
        for i, v in zip(self._at, varying):
            a[i] = v
        return a

    def __call__(self, *varying):
        with _config.ready():
            return self.kernel(*self.args(*varying))


_PREDICT, _EVALUATE = Call(K.predict), Call(K.evaluate)
_BATCH_GRADIENTS, _TRAIN_EPOCH, _FINISH_STEP = (Call(K.batch_gradients), Call(K.train_epoch),
                                                Call(K.finish_step))
# the MPI path's passes with batch normalisation (EpochRunner._global_batch_norm)
_FORWARD_ROWS, _BACKWARD_ROWS, _LOSS_BATCH = (Call(K.forward_rows), Call(K.backward_rows),
                                              Call(K.loss_batch))
_BN_PARTIAL, _BN_FINISH = Call(S.bn_partial), Call(S.bn_finish)
_POST_FORWARD, _POST_BACKWARD = Call(S.post_forward), Call(S.post_backward)
_EMBEDDING_GRADS = Call(E.embedding_grads)


_NO_WEIGHTS = {np.dtype(t): readonly(np.empty(0, t)) for t in _config.DTYPES}


_NO_RATES = np.empty(0, np.float64)     # no per-step rates: the optimizer's own


_TABLES = {np.dtype(t): C.Table(t) for t in _config.DTYPES}
# seconds of compiling an EpochRunner's process does while helpers compile the table's slots
# (as C.COMPILE_COST): train_epoch, 3.0-5.1 (a validation pass named with expect_calls compiles
# in a helper)
COMPILE_AHEAD = 4.0
# the slots each use calls (each runs what the one before it runs), and a structured network's
_PREDICT_SLOTS = (N.FN_GEMM, N.FN_TASK, N.FN_FORWARD_ROWS)
_EVALUATE_SLOTS = _PREDICT_SLOTS + (N.FN_OUTPUT_BATCH, N.FN_OUTPUT_ROWS)
_GRADIENT_SLOTS = _EVALUATE_SLOTS + (N.FN_BACKWARD_ROWS,)
_USES = {"predict": (_PREDICT_SLOTS, (N.FN_POST_FORWARD,)),
         "evaluate": (_EVALUATE_SLOTS, (N.FN_POST_FORWARD,)),
         "gradients": (_GRADIENT_SLOTS, (N.FN_POST_FORWARD, N.FN_POST_BACKWARD)),
         "train": (_GRADIENT_SLOTS + (N.FN_UPDATE,), (N.FN_POST_FORWARD, N.FN_POST_BACKWARD))}


def functions(dtype, st, use, ws=None, wait=True, ahead=0.0, shared=False):
    """The function table (``kernels.native``) that the kernels of ``dtype`` take first, with
    what ``use`` ("predict", "evaluate", "gradients" or "train") calls for the network ``st``
    compiled or loaded from the cache on first use: a plain network never compiles the
    structured passes, a workspace ``ws`` without row blocks never the row-block step, a fit of
    one process never the distributed step's passes (``shared``).  ``wait``, ``ahead``: as
    ``Table.need``'s."""
    plain, structured = _USES[use]
    slots = plain + structured if st.structured else plain
    if st.emb.shape[0] > 0 and use in ("gradients", "train"):    # the tables' passes
        slots += (N.FN_EMBEDDING,)
    if ws is not None and ws.part is not None:
        slots += (N.FN_BLOCKED_STEP,)
    if shared:
        slots += (N.FN_SHARED, N.FN_OVERLAP)
    return _TABLES[np.dtype(dtype)].need(slots, wait, ahead)


def _no_weights(dtype):
    """Sample weights: none (the kernels test for an empty array)."""
    return _NO_WEIGHTS[np.dtype(dtype)]


# -- wrappers: the one call site of each compiled entry point --------------------------------
def _predict_args(params, st, codes, X, out, ws, fns):
    return _PREDICT.args({**st.named, **ws.named, **codes.named, "fns": fns, "X": readonly(X),
                          "params": params, "rows": ws.rows, "out": out})


def predict(params, st, codes, X, out, ws=None):
    """``out[...] = network(X)`` (the output activation applied; inference mode); returns
    ``out``."""
    ws = ws or inference_workspace(st, X.shape[0], params.dtype)
    # (over no rows it calls nothing through the table: it need not wait for it)
    fns = functions(params.dtype, st, "predict", wait=X.shape[0] > 0)
    with _config.ready():
        _PREDICT.kernel(*_predict_args(params, st, codes, X, out, ws, fns))
    return out


def _evaluate_args(params, st, codes, X, Yf, Yi, sw, out, ws, fns):
    sw = _no_weights(params.dtype) if sw is None else readonly(sw)
    return _EVALUATE.args({**st.named, **ws.named, **codes.named, "fns": fns, "X": readonly(X),
                           "Yf": readonly(Yf), "Yi": readonly(Yi), "sw": sw, "params": params,
                           "rows": ws.rows, "out": out})


def evaluate(params, st, codes, X, Yf, Yi, sw=None, out=None, ws=None):
    """Σ per-sample loss over X (weighted by ``sw``; inference mode); the outputs into ``out``
    when given."""
    ws = ws or inference_workspace(st, X.shape[0], params.dtype)
    fns = functions(params.dtype, st, "evaluate", wait=X.shape[0] > 0)
    with _config.ready():
        return _EVALUATE.kernel(*_evaluate_args(params, st, codes, X, Yf, Yi, sw, out, ws, fns))


class _Entry:
    """An entry point that a fit's helpers may compile aside (``compilation.EXTRAS``, see
    :func:`expect_calls`): compiled by its call over no rows of a one-layer network of the
    dtype with an empty table.  A network's arrays have the same types whatever its sizes and
    structure, so this is the signature of every call with C-contiguous data."""

    def __init__(self, name, kernel, args, cost):
        self.kernel, self._args, self.cost = kernel, args, cost
        C.EXTRAS[name] = self

    def _call(self, dtype):
        dtype = np.dtype(dtype)
        st = Structure([1, 1], 0, dtype=dtype)
        one = np.empty((0, 1), dtype)
        return self._args(np.zeros(st.n_params, dtype), st, Codes(0), one, one,
                          inference_workspace(st, 0, dtype), np.zeros(N.SLOTS, np.int64))

    def cached(self, dtype):
        args = self._call(dtype)
        return N.compiled(self.kernel, tuple(self.kernel.typeof_pyval(a) for a in args))

    def compile(self, dtype):
        with _config.ready():
            self.kernel(*self._call(dtype))


def _loss_pass(keep):
    """A template loss pass's arguments, keeping the outputs or not (the template's (0, 1) array
    stands for the targets Yf too)."""
    return lambda p, st, c, X, out, ws, fns: _evaluate_args(
        p, st, c, X, X, np.empty(0, np.int64), None, out if keep else None, ws, fns)


# seconds to compile each cold (as C.COMPILE_COST; benchmarks/compile_profile.py)
_Entry("predict", K.predict, _predict_args, 0.8)
_Entry("evaluate", K.evaluate, _loss_pass(False), 0.7)
_Entry("evaluate_out", K.evaluate, _loss_pass(True), 0.7)


def expect_calls(dtype, *names):
    """Entry points this process will call after its next fit in ``dtype``: ``"predict"``,
    ``"evaluate"`` (a loss pass), ``"evaluate_out"`` (a loss pass keeping the outputs).  When
    that fit starts helper processes to compile its kernels (a cold cache), they compile these
    too, beside them, instead of this process compiling each at its first call afterwards."""
    _TABLES[np.dtype(dtype)].expect(*names)


def batch_gradients(params, st, codes, X, Yf, Yi, rows, grads, ws, sw=None, alpha=0.0,
                    loss_div=1.0, mode=S.GRAD, seed=0, step=0, fns=None):
    """Forward, loss and backward over the rows ``rows`` of X: ``grads`` = the gradient of the
    batch's mean loss (weighted mean with ``sw``, plus scikit-learn's L2 term ``alpha``), every
    δ in ``ws``.  ``mode``: GRAD (batch statistics, no dropout, running statistics untouched)
    or TRAIN (a training step's: dropout keyed by ``seed`` and ``step``, running statistics
    updated).  Returns ``(loss, wsum)`` (see ``kernels.train.batch_gradients``).  The embedding
    tables' part of ``grads`` must be zero (a new or zeroed buffer): the kernel adds the batch's
    rows into it.  ``fns``: the function table when the caller has it (a fit's steps)."""
    sw = _no_weights(params.dtype) if sw is None else readonly(sw)
    if fns is None:
        fns = functions(params.dtype, st, "gradients", ws)
    return _BATCH_GRADIENTS({**st.named, **ws.named, **codes.named, "fns": fns,
                             "X": readonly(X), "Yf": readonly(Yf), "Yi": readonly(Yi), "sw": sw,
                             "rows": readonly(rows), "params": params, "grads": grads,
                             "alpha": float(alpha), "loss_div": float(loss_div),
                             "mode": int(mode), "seed": int(seed), "step": int(step)})


def dropout_keep(seed, step, rows, layer, n_units, p):
    """The dropout mask of hidden dense layer ``layer`` (0-based) at optimizer step ``step``
    (1-based) for the data rows ``rows``: a bool array ``(len(rows), n_units)``, True where a
    unit is kept (see ``kernels.structure``; the trainer's key is ``Trainer.dropout_seed``)."""
    rows = np.ascontiguousarray(rows, np.int64)
    out = np.empty((rows.shape[0], int(n_units)), np.bool_)
    with _config.ready():
        S.dropout_keep(int(seed), int(step), rows, int(layer), int(n_units), float(p), out)
    return out


def accuracy(out, Yf, Yi, codes):
    """The fraction of the outputs ``out`` (``predict``'s values, one row per sample) that
    predict their targets (see ``kernels.losses.count_correct``)."""
    n = out.shape[0]
    with _config.ready():
        return count_correct(out, readonly(Yf), readonly(Yi), np.arange(n, dtype=np.int64),
                             codes.out, codes.loss) / max(n, 1)


def layer_groups(st):
    """Each dense layer's ``[lo, hi)`` in the parameters: its W, b, γ, β (adjacent), the
    embedding tables (which come first) in layer 0's."""
    groups = st.layout[:, [S.W_OFF, S.END]].copy()
    groups[0, 0] = 0
    return groups


def layer_norms(params, st):
    """Each dense layer's ``‖(W, b, γ, β)‖`` (float64; its parameters are adjacent; layer 0's
    with the embedding tables), summed in float64 without a temporary (NumPy's would be a
    float64 copy of the largest layer)."""
    with _config.ready():
        return [math.sqrt(K.sumsq(params, lo, hi)) for lo, hi in layer_groups(st)]


# elements from which all_finite runs a compiled pass: below it NumPy's min and max cost
# microseconds, and a small fit's first call compiles nothing for it
FINITE_PASS_MIN = 1 << 20


def all_finite(a):
    """Whether the float array ``a`` holds no NaN and no inf.  A large contiguous float32 or
    float64 array in one compiled pass (``max|a|`` on its bit patterns: 6 ms over MNIST's
    47 M float32 values, against 15 ms for NumPy's ``min`` and ``max``, two passes); anything
    else with NumPy's ``min`` and ``max`` (they propagate NaN and show ±inf, without a
    temporary the size of the data).  A writable array is passed as it is: the divergence
    guard's own pass over the parameters (``guard_bounds``) has compiled and loaded that
    signature already, and loading another from numba's cache costs ~3 ms in a fresh
    process.  A Fortran-ordered array (pandas' ``to_numpy()``, often) is read as its C-ordered
    transpose: the same memory."""
    if a.flags.f_contiguous:
        a = a.T
    if a.size >= FINITE_PASS_MIN and a.dtype.type in _config.DTYPES and a.flags.c_contiguous:
        with _config.ready():
            return math.isfinite(O.max_abs(a.reshape(-1)))
    return bool(np.isfinite(a.min()) and np.isfinite(a.max()))


def needs_compiling():
    """True when the training kernel has no entry in numba's on-disk cache yet: the first fit
    in this environment will compile (tens of seconds; cached afterwards)."""
    cache = getattr(K.train_epoch, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    return index is not None and not os.path.exists(index)


# -- training --------------------------------------------------------------------------------
class Diverged(FloatingPointError):
    """A step's loss, gradient or updated parameters were not finite.  Raised by
    :meth:`EpochRunner.run` with the parameters, optimizer state and running statistics of
    the last finite step (a failed update stays when the runner has no ``rollback``);
    ``steps``: the epoch's steps that completed before the failing one; ``what``: which
    quantity; ``loss_sum``: the epoch's loss sum over those steps (as :attr:`Epoch.loss`
    times the rows counts it)."""

    def __init__(self, status, steps, loss_sum=math.nan):
        self.status, self.steps, self.what = status, steps, _WHAT[status]
        self.loss_sum = loss_sum
        super().__init__(f"{self.what} became non-finite at step {steps + 1}")


class Optimizer:
    """An optimizer's state over the flat parameter buffer: its code, hyperparameters
    ``[lr, momentum, beta1, beta2, eps, weight_decay]``, the two state buffers it may use and
    its step count (PyTorch's ``step``, scikit-learn's Adam ``t``)."""

    def __init__(self, code, n_params, dtype, lr, momentum=0.9, beta1=0.9, beta2=0.999,
                 eps=1e-8, weight_decay=0.0):
        self.code = code
        self.hyper = np.array([lr, momentum, beta1, beta2, eps, weight_decay], dtype)
        self.state = [np.zeros(n_params if i < STATE_ARRAYS[code] else 0, dtype)
                      for i in range(2)]
        self.step = 0
        self._consts = np.zeros(10, dtype)                       # typed constants per update
        self._flags = np.zeros(-(-n_params // CHUNK), dtype)     # one finite flag per chunk

    @property
    def named(self):
        """The state by the kernels' names for it (see :class:`Call`)."""
        return {"state1": self.state[0], "state2": self.state[1], "hyper": self.hyper,
                "opt_code": self.code, "consts": self._consts, "flags": self._flags}

    @property
    def learning_rate(self):
        return float(self.hyper[0])

    @learning_rate.setter
    def learning_rate(self, value):
        self.hyper[0] = value


@dataclass
class Pending:
    """An epoch stopped part-way: its order, steps done, Σ loss, Σ gradient norms and the
    correct predictions so far."""
    perm: np.ndarray
    done: int
    total: float
    gnorm: np.ndarray
    n: int
    batch: int
    correct: float = 0.0


class Epoch:
    """What :meth:`EpochRunner.run` returns: ``loss`` (mean per sample), ``accuracy`` (the
    fraction of correct predictions over the epoch's batches; NaN when not counted),
    ``grad_norm`` (mean per step, per layer; read it before the next run, which reuses the
    sums) and ``seconds``; or ``pending`` when it was stopped part-way."""
    __slots__ = ("loss", "accuracy", "seconds", "pending", "_gnorm", "_steps")

    def __init__(self, loss=math.nan, seconds=0.0, pending=None, gnorm=None, steps=1,
                 accuracy=math.nan):
        self.loss, self.accuracy, self.seconds, self.pending = loss, accuracy, seconds, pending
        self._gnorm, self._steps = gnorm, steps

    @property
    def grad_norm(self):
        return self._gnorm / self._steps


class EpochRunner:
    """The buffers and the one epoch loop of a fit: ``params`` trained in place on the rows
    of ``X`` (targets ``Yf``/``Yi``, optional sample weights ``sw``), mini-batches of
    ``batch`` rows, updates by ``optimizer``.

    ``alpha``, ``loss_div``: scikit-learn's L2 term and loss divisor (see the kernels).
    ``reducer``: None, or an object with ``rank``, ``size``, ``sum(buf)`` (an in-place sum
    over all processes), ``any(flag)`` (True on every process when it is on one) and
    ``native_sum(dtype)`` (a :func:`reduce_spec`, or None): each step then computes this
    process's share of the batch, sums the gradients with the reducer and updates (see
    :mod:`fastbp.distributed`).  With a native sum and no batch normalisation the steps run in
    the compiled epoch as a single process's do (``kernels.train.shared_rows``, then
    ``shared_sum`` or ``overlapped_gradients``: the sums called from the compiled step, the
    step's bookkeeping the same code); otherwise one step per call, the sums called from Python
    (batch normalisation: the statistics' sums in the middle of the passes,
    :meth:`_global_batch_norm`).
    ``rollback``: an update that overflows leaves the parameters and the optimizer state as
    they were (``kernels.optimizers.guarded_update``: bounds on both, refreshed at each
    epoch's start, say when an update could overflow at all; only such a step copies them
    first), and a failed step puts the running statistics back.  False: the parameters keep
    a failed update, as scikit-learn's estimators leave them.
    ``clip``: > 0 clips each step's gradient to this global norm as
    ``torch.nn.utils.clip_grad_norm_`` does (0: no clipping).  ``accuracy``: count the
    correct predictions of each step (cross-entropy and binary cross-entropy).  ``seed``:
    dropout's key (with the step and the sample).  ``st``: the network's :class:`Structure`
    (its running statistics are put back when a step fails)."""

    def __init__(self, params, st, codes, optimizer, X, Yf, Yi, batch, sw=None, alpha=0.0,
                 loss_div=1.0, reducer=None, rollback=True, clip=0.0, accuracy=False, seed=0):
        self.params, self.st, self.codes, self.opt = params, st, codes, optimizer
        self.layout = layout = st.layout
        self.seed = int(seed)
        self.X, self.Yf, self.Yi = readonly(X), readonly(Yf), readonly(Yi)
        self.sw = _no_weights(params.dtype) if sw is None else readonly(sw)
        self.alpha, self.loss_div, self.reducer = float(alpha), float(loss_div), reducer
        self.clip = float(clip)
        self.correct = np.zeros(1 if accuracy else 0, np.float64)
        self._rates = _NO_RATES
        self.n = X.shape[0]
        self.batch = min(batch, self.n)
        self.n_steps = -(-self.n // self.batch)
        self.n_layers = layout.shape[0]
        rows = self.batch if reducer is None else -(-self.batch // reducer.size)
        # the row-block step (not on the MPI path with batch norm: it runs the passes itself)
        self.ws = Workspace(st, rows, params.dtype, train=reducer is None or not st.batch_norm)
        n_params = params.shape[0]
        # reducer: the gradients, then the batch's summed loss and correct count, in one message
        self._buf = np.zeros(n_params + 2 * (reducer is not None), params.dtype)
        spec = None
        if reducer is not None and not st.batch_norm and self.alpha == 0 and self.loss_div == 1:
            native_sum = getattr(reducer, "native_sum", None)
            spec = native_sum(params.dtype) if native_sum is not None else None
        # the compiled epoch: one process, or several summing from the compiled step
        self._compiled = reducer is None or spec is not None
        self.grads = self._buf[:n_params]
        self.gnorm = np.zeros(self.n_layers, np.float64)
        self.perm = np.arange(self.n, dtype=np.int64)
        # the divergence guard (kernels.optimizers.guarded_update): bounds on the parameters
        # and the optimizer state, refreshed at each epoch's start, and the running statistics
        # before each step; without rollback, none (a failed update stays)
        self.rollback = rollback
        self._bounds = np.zeros(4 if rollback else 0, np.float64)
        self._stats_prev = np.zeros(st.stats.shape[0] if rollback else 0, st.stats.dtype)
        self._table = _TABLES[params.dtype]
        self.fns = self._table.fns      # filled below, in place
        self._ready = False
        # the arguments of the fit's compiled calls that stay the same object for the whole
        # fit, by the kernels' names (see Call)
        self._named = {**st.named, **self.ws.named, **codes.named, **optimizer.named,
                       "fns": self.fns, "X": self.X, "Yf": self.Yf, "Yi": self.Yi, "sw": self.sw,
                       "params": params, "grads": self.grads, "batch": self.batch,
                       "alpha": self.alpha, "loss_div": self.loss_div, "gnorm": self.gnorm,
                       "clip": self.clip, "correct": self.correct, "seed": self.seed,
                       "bounds": self._bounds, "stats_prev": self._stats_prev,
                       "reduce_spec": _NO_REDUCE if spec is None else spec, "rbuf": self._buf}
        self._epoch = _TRAIN_EPOCH.bind(self._named, "perm", "max_steps", "step0", "rates")
        self._finish = _FINISH_STEP.bind(self._named, "loss", "g", "step", "rates", "s")
        # the fused path compiles train_epoch (and the caller what else it warms with empty
        # calls) while helpers compile the table's slots; the first epoch waits for them
        fused = self._compiled
        functions(params.dtype, st, "train", self.ws, wait=not fused,
                  ahead=self._compile_ahead if fused else 0.0, shared=spec is not None)
        self.compile_seconds = self._compile()

    def _compile(self):
        """Compile (or load from the cache) what this fit runs, before any epoch is timed: a
        call that runs no step (on the fused path, while helpers may still be compiling the
        table's slots: see :meth:`ready`)."""
        t0 = time.perf_counter()
        if self._compiled:          # no step: no call through the table, not yet complete
            try:
                self._fused(0, 0)
            except BaseException:
                self._table.finish(stop=True)
                raise
        else:
            if self.st.batch_norm:      # collective: every rank compiles here
                self._global_batch_norm(self.perm[:0], 1, 1.0, 0, mode=S.GRAD)
            else:
                batch_gradients(self.params, self.st, self.codes, self.X, self.Yf, self.Yi,
                                self.perm[:0], self.grads, self.ws, self.sw, mode=S.TRAIN)
            # a step over empty buffers: compiles the update, changes nothing
            empty, opt = self.params[:0], self.opt
            _FINISH_STEP({**self._named, "loss": 0.0, "g": 0.0, "params": empty, "grads": empty,
                          "state1": opt.state[0][:0], "state2": opt.state[1][:0], "step": 1,
                          "rates": _NO_RATES, "s": 0, "bounds": self._bounds.copy(),
                          "stats": self.st.stats[:0], "stats_prev": self._stats_prev[:0]})
            K.sumsq(self._buf, 0, 0)
            if self.correct.shape[0] > 0:
                count_correct(self.ws.view("acts", self.n_layers, 0), self.Yf, self.Yi,
                              self.perm[:0], self.codes.out, self.codes.loss)
        return time.perf_counter() - t0

    def ready(self):
        """Wait for the table's slots compiled aside (see __init__; the first :meth:`run`
        does): a caller that warms other kernels with empty calls after the constructor
        calls this after them, so that the wait counts as compiling.  Once they are filled
        they stay (a later need of another fit only takes empty slots aside)."""
        if not self._ready:
            self._table.finish()
            self._ready = True

    # -- steps ---------------------------------------------------------------------------
    def _fused(self, first, k):
        """Steps ``first .. first + k`` of the epoch in one compiled call."""
        return self._epoch(*self._fused_args(first, k))

    def _fused_args(self, first, k):
        """train_epoch's varying arguments (see __init__)."""
        perm = self.perm if first == 0 else self.perm[first * self.batch:]
        rates = self._rates if first == 0 or self._rates.shape[0] == 0 else self._rates[first:]
        return perm, k, self.opt.step, rates

    def _compile_ahead(self):
        """Seconds of compiling this process does beside the helpers (see __init__): none when
        train_epoch is compiled for these arguments already (here or in the cache)."""
        d = self._epoch.kernel
        sig = tuple(d.typeof_pyval(a) for a in self._epoch.args(*self._fused_args(0, 0)))
        return 0.0 if N.compiled(d, sig) else COMPILE_AHEAD

    def _reduced(self, first, k):
        """Steps ``first .. first + k``, each: this process's share of the batch, the sum
        over processes, the update; the same ``(loss_sum, steps, status)`` as the fused call.
        The share is scaled so that the sum is the global batch's mean gradient."""
        red, n, batch, buf, grads = self.reducer, self.n, self.batch, self._buf, self.grads
        gsq = np.empty(self.n_layers)
        groups = layer_groups(self.st)
        n_params = grads.shape[0]
        tables = int(self.layout[0, S.W_OFF])   # the tables' gradient: added into, not written
        L = self.n_layers
        total = 0.0
        for s in range(k):
            lo = (first + s) * batch
            rows = self.perm[lo:min(n, lo + batch)]
            B = rows.shape[0]
            mine = rows[B * red.rank // red.size:B * (red.rank + 1) // red.size]
            if mine.shape[0] > 0 and not self.st.batch_norm:    # the rest is written
                buf[:tables] = 0
                buf[n_params:] = 0
            else:
                buf[...] = 0
            np.copyto(self._stats_prev, self.st.stats[:self._stats_prev.shape[0]])
            total_w = B if self.sw.shape[0] == 0 else float(np.sum(self.sw[rows], dtype=np.float64))
            if self.st.batch_norm:      # every rank: the statistics' sums are collective
                buf[n_params] = self._global_batch_norm(mine, B, total_w, self.opt.step + s + 1)
            elif mine.shape[0] > 0:
                loss, wsum = batch_gradients(self.params, self.st, self.codes, self.X,
                                             self.Yf, self.Yi, mine, grads, self.ws, self.sw,
                                             mode=S.TRAIN, seed=self.seed,
                                             step=self.opt.step + s + 1, fns=self.fns)
                share = wsum / total_w if total_w > 0 else 0.0
                np.multiply(grads, grads.dtype.type(share), out=grads)
                buf[n_params] = loss
            if self.correct.shape[0] > 0 and mine.shape[0] > 0:
                buf[n_params + 1] = count_correct(self.ws.view("acts", L, mine.shape[0]),
                                                  self.Yf, self.Yi, mine, self.codes.out,
                                                  self.codes.loss)
            red.sum(buf)
            for l, (lo, hi) in enumerate(groups):   # W, b, γ, β: adjacent (0: the tables)
                gsq[l] = K.sumsq(buf, lo, hi)
            loss = float(buf[n_params])
            g = float(gsq.sum())
            status = self._step_update(loss, g, first + s, self.opt.step + s + 1)
            if status != K.OK:
                return total, s, status
            self.gnorm += np.sqrt(gsq)
            if total_w > 0:     # the batch's weighted mean times its size, as the fused step
                total += loss if total_w == B else loss / total_w * B
            if self.correct.shape[0] > 0:
                self.correct[0] += float(buf[n_params + 1])
        return total, k, K.OK

    def _step_update(self, loss, g, s, step):
        """The reducer path's step after the sums: ``train_epoch``'s (the checks, clipping, the
        step's learning rate, the guarded update, the running statistics put back when it
        fails).  Returns the status."""
        return self._finish(loss, g, step, self._rates, s)

    def _global_batch_norm(self, mine, B, total_w, step, mode=S.TRAIN):
        """This rank's share ``mine`` of a global batch of ``B`` rows (summed weight
        ``total_w``) through a network with batch normalisation: what ``batch_gradients``
        computes, in compiled passes that stop at each batch-norm layer (``forward_rows`` and
        ``backward_rows`` with ``stop``), so that its statistics (Σz, then Σ(z − mean)²) and
        its backward column sums (Σδ, Σδ·x̂) are summed over the ranks in between: the global
        batch's statistics, as one process computes them.  The gradients (already divided by
        ``total_w``) into ``self.grads``; returns this rank's Σ w·ℓ.  ``mode`` GRAD: running
        statistics untouched, no dropout (the compile call)."""
        ws, layout, red = self.ws, self.layout, self.reducer
        L, b = self.n_layers, mine.shape[0]
        nst = ws.nst
        stride = nst.shape[0] // L
        scale = 1.0 / total_w if total_w > 0 else 0.0
        # the passes' arguments by name (see Call); B: the global batch's rows (bn_partial)
        v = {**self._named, "rows": mine, "r0": 0, "r1": b, "B": B, "par": True,
             "given": True, "norms": False, "mode": mode, "step": step, "scale": scale}
        with _config.ready():
            l = _FORWARD_ROWS({**v, "l0": 0, "stop": True})
            while l < L:        # stopped after the product of batch-norm layer l
                n, o = int(layout[l, S.N_OUT]), l * stride
                _BN_PARTIAL({**v, "l": l, "phase": 0})
                red.sum(nst[o:o + n])                   # Σz
                _BN_PARTIAL({**v, "l": l, "phase": 1})
                red.sum(nst[o + n:o + 2 * n])           # Σ(z − mean)²
                _BN_FINISH({**v, "l": l})
                _POST_FORWARD({**v, "l": l})
                l = _FORWARD_ROWS({**v, "l0": l + 1, "stop": True})
            loss = _LOSS_BATCH(v)
            l = _BACKWARD_ROWS({**v, "l_hi": L - 1, "l_lo": 0, "stop": True})
            while l >= 0:       # stopped after the column sums of batch-norm layer l
                n, o = int(layout[l, S.N_OUT]), (l + 1) * stride
                red.sum(nst[o - 2 * n:o])               # Σδ, Σδ·x̂ (kernels.structure._sums_at)
                nst[l * stride + 2 * n] = B
                _POST_BACKWARD({**v, "l": l, "stage": S.ROWS})
                l = _BACKWARD_ROWS({**v, "l_hi": l, "l_lo": 0, "stop": True})
            # the tables' gradient from this rank's rows (the sum over the ranks follows)
            _EMBEDDING_GRADS({**v, "B": b})
        return loss / self.loss_div

    def _steps(self, first, k):
        return self._fused(first, k) if self._compiled else self._reduced(first, k)

    # -- the epoch loop ------------------------------------------------------------------
    def run(self, order=None, pending=None, stop=None, rates=None):
        """One epoch in the order ``order`` (None: the current one), or the rest of
        ``pending``; returns an :class:`Epoch`.

        ``rates``: None (the optimizer's learning rate), or the learning rate of each of the
        epoch's steps (float64, one per step; a pending epoch's done steps are not read).

        ``stop``, when given, is polled every :data:`STOP_STEPS` steps (agreed by every
        process through the reducer); when it returns True the epoch stops at once and the
        result holds its :class:`Pending` state, which a later ``run(pending=...)`` finishes
        bitwise as if it had never stopped.

        Raises :class:`Diverged` when a step's loss, gradient or update is not finite, with
        the parameters and optimizer state of the last finite step (with ``rollback``; without
        it, a non-finite update stays)."""
        t0 = time.perf_counter()
        self.ready()
        opt = self.opt
        if pending is not None:     # checked by the caller: the same n and batch
            self.perm = pending.perm
            done, total = pending.done, pending.total
            self.gnorm[...] = pending.gnorm
            self.correct[...] = pending.correct
        else:
            if order is not None:       # used in place when it is an int64 array
                self.perm = np.ascontiguousarray(order, np.int64)
            done, total = 0, 0.0
            self.gnorm[:] = 0
            self.correct[...] = 0
        if rates is None:
            self._rates = _NO_RATES
        else:
            self._rates = np.ascontiguousarray(rates, np.float64)
            if self._rates.shape != (self.n_steps,):
                raise ValueError(f"rates: {self.n_steps} per-step learning rates needed")
        if self.rollback:
            O.guard_bounds(opt.code, opt.hyper, self.params, opt.state[0], opt.state[1],
                           self._bounds)
        while done < self.n_steps:
            k = self.n_steps - done if stop is None else min(STOP_STEPS, self.n_steps - done)
            part, steps, status = self._steps(done, k)
            if status == K.REDUCE_FAILED:
                raise RuntimeError("the sum over the processes (MPI_Allreduce) failed")
            if status != K.OK:
                opt.step += steps
                raise Diverged(status, done + steps, total + part)
            opt.step += steps
            done += steps
            total += part
            if stop is not None and done < self.n_steps and self.agree(stop()):
                return Epoch(pending=Pending(self.perm.copy(), done, total, self.gnorm.copy(),
                                             self.n, self.batch, float(self.correct.sum())),
                             seconds=time.perf_counter() - t0)
        accuracy = float(self.correct[0]) / self.n if self.correct.shape[0] else math.nan
        return Epoch(loss=total / self.n, seconds=time.perf_counter() - t0, gnorm=self.gnorm,
                     steps=self.n_steps, accuracy=accuracy)

    def finish_unchecked(self, diverged):
        """The rest of the epoch that :meth:`run` stopped with ``diverged``, every update
        applied whatever its values, as scikit-learn's estimators go on (they check nothing
        until the fit ends): a diverged scikit-learn fit with early stopping runs its remaining
        epochs, on weights that are no longer finite, and keeps its best epoch's.  Returns the
        epoch's :class:`Epoch`, its loss the mean over every step (inf or NaN once a step's is;
        NaN when the failed step's update was applied by the kernel, whose loss is then not
        known).  One compiled call per step, and its gradient norms are NaN: only a diverged
        fit comes here, the same runner's :meth:`run` takes the next epoch.  Only for a runner
        without ``rollback``, reducer or clipping, as scikit-learn's."""
        if (self.rollback or self.reducer is not None or self.clip > 0
                or self.st.emb.shape[0] > 0):     # (tables: batch_gradients needs their rows
            #                                        cleared between steps, as train_epoch does)
            raise ValueError("finish_unchecked: a runner without rollback, reducer, clipping or "
                             "embeddings")
        t0 = time.perf_counter()
        opt, n, batch = self.opt, self.n, self.batch
        first, total = diverged.steps, diverged.loss_sum
        if diverged.status == K.PARAMS_NOT_FINITE:
            # the kernel applied this step's update (no rollback) but counted neither the step
            # nor its loss
            opt.step += 1
            first += 1
            total = math.nan
        for s in range(first, self.n_steps):
            rows = self.perm[s * batch:min(n, s * batch + batch)]
            B = rows.shape[0]
            loss, wsum = batch_gradients(self.params, self.st, self.codes, self.X, self.Yf,
                                         self.Yi, rows, self.grads, self.ws, self.sw,
                                         alpha=self.alpha, loss_div=self.loss_div, mode=S.TRAIN,
                                         seed=self.seed, step=opt.step + 1, fns=self.fns)
            # the update, unchecked: finish_step's checks read the loss and the squared norm
            # given, finite zeros here (nothing else reads them without clipping, bounds and
            # the running statistics kept before the step, all absent here)
            self._finish(0.0, 0.0, opt.step + 1, self._rates, s)
            opt.step += 1
            if wsum == B:       # as train_epoch sums the steps
                total += loss
            elif wsum > 0:
                total += loss / wsum * B
        gnorm = np.full(self.n_layers, math.nan)
        return Epoch(loss=total / n, seconds=time.perf_counter() - t0, gnorm=gnorm,
                     steps=self.n_steps)

    def agree(self, flag):
        """``flag`` as every process sees it (any process's True is everyone's)."""
        flag = bool(flag)
        return flag if self.reducer is None else bool(self.reducer.any(flag))
