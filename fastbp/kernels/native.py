"""Calls through a function address: compiled once, called from many kernels.

numba links the code of every function a kernel calls into that kernel, optimises the whole
again and emits its machine code again (``CPUCodeLibrary.finalize``), at every level of a call
chain.  fastbp's products (the register-tile micro-kernels and their task grid) sat five levels
below ``train_epoch``: their code was optimised and emitted at each of those levels on a cold
start, and the structured passes, the losses and the optimizers likewise.

A call made through a :class:`Native`'s stub instead is an indirect call to the callee's own
compiled code, whose address is a run-time argument: the caller's module holds one call
instruction, nothing is linked, and the callee is compiled (or loaded from the cache) once per
dtype.  The stub is a numba intrinsic typed with the callee's one *canonical* signature for the
dtype (a function of the dtype alone, so that a caller loaded from the cache in a fresh process
and the address the engine looks up agree without any record of the caller's compilation);
each argument is converted to that signature's type, and a conversion numba would refuse fails
the caller's typing with the argument named.  Exceptions raised by the callee propagate as from
a direct call (numba's status and exception-info protocol).  A call is a few nanoseconds more
than a linked one; the callees are whole products and passes, never per-element helpers.

The function table is an ``int64`` array of addresses, one slot per callee (the ``FN_*``
numbers below: fixed here, so that every process and every cached caller agree), filled for
one dtype on demand (:class:`Table`).  The engine passes it first to every kernel that makes
such calls; a slot a network never uses (the structured passes of a plain network) is never
compiled, stays 0, and a call through it raises instead of jumping to address 0.

Being independent, the slots compile side by side on a cold start: :meth:`Table.need` hands
some of the missing ones to helper processes (``python -c``, as many as
``_config.compile_jobs()`` allows), which compile them into numba's on-disk cache while this
process compiles the rest, then loads theirs from the cache (at once, or, with
``need(wait=False)``, at :meth:`Table.finish`, after this process has compiled its callers).
A helper that fails, or whose cache this process cannot see, costs only time: what is not in
the cache is compiled here.

The helpers can also compile entry points that this process will call later (:data:`EXTRAS`,
registered by the engine: a validation pass, a prediction), named beforehand with
:meth:`Table.expect`; those go only to helpers, shared out with the slots, and this process
loads them from the cache when it first calls them.
"""
import subprocess
import threading

import numpy as np
from numba import from_dtype, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.core.typing import signature
from numba.extending import intrinsic

from .. import _config

# the table's slots
FN_GEMM, FN_TASK, FN_POST_FORWARD, FN_POST_BACKWARD, FN_OUTPUT_BATCH, FN_OUTPUT_ROWS, \
    FN_UPDATE, FN_FORWARD_ROWS, FN_BACKWARD_ROWS, FN_BLOCKED_STEP = range(10)
SLOTS = 10
NATIVES = [None] * SLOTS        # the Native of each slot, as the kernel modules define them
# entry points a helper may compile aside (Table.expect), by name, as the engine registers
# them: objects with ``cost`` (seconds, as COMPILE_COST), ``cached(dtype)`` and
# ``compile(dtype)`` (into numba's cache)
EXTRAS = {}

# seconds each slot takes to compile cold (2-vCPU AMD EPYC, numba 0.68, one process, float32
# and float64 alike; benchmarks/compile_profile.py): the weights by which the missing slots are
# shared out, and a helper's start (Python, NumPy, numba, fastbp)
COMPILE_COST = {FN_GEMM: 2.0, FN_TASK: 3.5, FN_POST_FORWARD: 3.4, FN_POST_BACKWARD: 3.4,
                FN_OUTPUT_BATCH: 0.5, FN_OUTPUT_ROWS: 1.3, FN_UPDATE: 1.6, FN_FORWARD_ROWS: 0.55,
                FN_BACKWARD_ROWS: 0.75, FN_BLOCKED_STEP: 3.3}
HELPER_START = 0.5     # measured 0.3 s from the Popen to its first compile
HELPER_TIMEOUT = 900    # seconds; a helper still running then is stopped (this process compiles)

# canonical-signature letters: scalars, and arrays as letter + dimensions (+ "r": read-only).
# f: the float dtype the callee is compiled for; d: float64; i: int64; b: bool; "none": no
# result
_SCALARS = {"i": types.int64, "d": types.float64, "b": types.boolean}


def _type(code, f):
    if code == "none":
        return types.none
    base = f if code[0] == "f" else _SCALARS[code[0]]
    if len(code) == 1:
        return base
    return types.Array(base, int(code[1]), "C", readonly=code.endswith("r"))


def canonical(spec, f):
    """The numba signature of ``spec`` ("args -> result", letters as above) for float type f."""
    args, result = spec.split("->")
    return signature(_type(result.strip(), f), *[_type(c, f) for c in args.split()])


class Native:
    """The jitted ``dispatcher`` in slot ``slot`` of the function table (None: in none, for
    tests), compiled for :func:`canonical` ``(spec, dtype)``; a kernel calls it as
    ``stub(address, *args)``."""

    def __init__(self, slot, dispatcher, spec):
        self.slot, self.dispatcher, self.spec = slot, dispatcher, spec
        self.stub = self._make_stub()
        if slot is not None:
            NATIVES[slot] = self

    def address(self, dtype):
        """Compile (or load from the cache) the canonical signature for ``dtype``; the address
        of its native entry point."""
        sig = canonical(self.spec, from_dtype(np.dtype(dtype)))
        self.dispatcher.compile(sig.args)
        cres = self.dispatcher.overloads[sig.args]
        return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)

    def cached(self, dtype):
        """Whether :meth:`address` would find the code compiled, in this process or in numba's
        on-disk cache (True when numba's cache internals cannot tell: nothing is compiled
        aside then)."""
        return compiled(self.dispatcher, canonical(self.spec, from_dtype(np.dtype(dtype))).args)

    def _make_stub(self):
        spec = self.spec
        name = self.dispatcher.py_func.__name__

        @intrinsic
        def stub(typingctx, addr, *args):
            f = next((a.dtype for a in args if isinstance(a, types.Array)
                      and isinstance(a.dtype, types.Float)), None)
            if f is None or not isinstance(addr, types.Integer):
                return None
            sig = canonical(spec, f)
            if len(args) != len(sig.args):
                raise TypingError(f"{name}: {len(args)} arguments, expected {len(sig.args)}")
            for i, (a, c) in enumerate(zip(args, sig.args)):
                if a != c and typingctx.can_convert(a, c) is None:
                    raise TypingError(f"{name}: argument {i} is {a}, cannot convert to {c}")

            def codegen(context, builder, isig, llargs):
                values = [context.cast(builder, v, a, c) for v, a, c in
                          zip(cgutils.unpack_tuple(builder, llargs[1]), args, sig.args)]
                with cgutils.if_unlikely(builder, cgutils.is_null(builder, llargs[0])):
                    context.call_conv.return_user_exc(
                        builder, RuntimeError, (f"fastbp: {name} is not in the function table",))
                fnty = context.call_conv.get_function_type(sig.return_type, sig.args)
                ptr = builder.inttoptr(llargs[0], fnty.as_pointer())
                status, res = context.call_conv.call_function(builder, ptr, sig.return_type,
                                                              sig.args, values)
                with cgutils.if_unlikely(builder, status.is_error):
                    context.call_conv.return_status_propagate(builder, status)
                return res

            return signature(sig.return_type, addr, types.StarArgTuple(args)), codegen

        return stub


def compiled(dispatcher, sig):
    """Whether ``dispatcher`` has the argument types ``sig`` compiled, in this process or in
    numba's on-disk cache (True when numba's cache internals cannot tell)."""
    if sig in dispatcher.overloads:
        return True
    try:
        cache = dispatcher._cache
        return (not cache._enabled or cache._index_key(sig, dispatcher.targetctx.codegen())
                in cache._cache_file._load_index())
    except Exception:       # numba's internals moved
        return True


class Table:
    """The function table for one dtype; :meth:`need` fills slots."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.fns = np.zeros(SLOTS, np.int64)
        self._helpers, self._aside = [], set()     # slots compiling aside, not yet loaded
        self._expected = set()      # EXTRAS names the next helpers compile too (expect)
        # fits in several threads: a slot is read only after the need or finish that filled
        # it has returned
        self._lock = threading.RLock()

    def need(self, slots, wait=True, ahead=0.0):
        """Fill these slots (compiling their functions if the cache has not got them, side by
        side in helper processes when several are missing); returns the table.

        ``wait=False``: the slots given to helpers stay 0 until :meth:`finish`, so that this
        process can compile something else meanwhile (``ahead``: its seconds, by which this
        process takes fewer slots, or a function that tells them, called only when helpers
        start); until then no kernel may call through them."""
        with self._lock:
            todo = [s for s in slots if self.fns[s] == 0 and s not in self._aside]
            if len(todo) > 1:
                helpers, aside = _start_helpers(todo, self.dtype, ahead, self._expected)
                if helpers:
                    self._expected = set()
                self._helpers += helpers
                self._aside |= aside
            try:
                for s in todo:
                    if s not in self._aside:
                        self.fns[s] = NATIVES[s].address(self.dtype)
            except BaseException:
                self.finish(stop=True)
                raise
            if wait:
                self.finish()
            return self.fns

    def expect(self, *names):
        """Entry points (:data:`EXTRAS` names) that this process will call after the next
        :meth:`need` that starts helpers: those helpers compile them too, beside the slots
        (only helpers: this process would compile them when it first calls them anyway).
        Without helpers (a warm cache, one compile job) nothing changes."""
        with self._lock:
            self._expected.update(names)

    def finish(self, stop=False):
        """Wait for the helpers (``stop``: stop them) and load their slots (from the cache, or
        compiled here where a helper did not finish)."""
        with self._lock:
            helpers, aside = self._helpers, self._aside
            if not aside:
                return
            self._helpers, self._aside = [], set()
            try:
                for h in helpers:
                    try:
                        h.wait(0 if stop else HELPER_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        pass
            finally:            # interrupted or timed out: no helper outlives the call
                for h in helpers:
                    if h.poll() is None:
                        h.kill()
                        h.wait()
            if not stop:
                for s in aside:
                    self.fns[s] = NATIVES[s].address(self.dtype)


def share(costs, jobs, start, ahead=0.0, aside=()):
    """The slots ``costs`` (slot -> seconds) shared out among ``jobs`` processes, this one
    first: each to the process that would finish it first (a helper starts ``start`` seconds
    late; this process has ``ahead`` seconds of other work), the most costly first — but the
    jobs in ``aside`` (entry points, named by strings), which only helpers take, before the
    slots, which then fill in around them (with no helper, they are left out).  Returns one
    list per process; a helper's may be empty (it is then not started)."""
    load = [ahead] + [start] * (jobs - 1)
    shares = [[] for _ in range(jobs)]
    for s in sorted(costs, key=lambda s: (s not in aside, -costs[s], s)):
        if s in aside and jobs < 2:
            continue
        j = min(range(1 if s in aside else 0, jobs), key=lambda j: (load[j], j))
        load[j] += costs[s]
        shares[j].append(s)
    return shares


# what a helper runs (_config.compile_child), with the arguments <dtype> <slot>...; it ends
# without the interpreter's teardown (~0.35 s with numba loaded, measured), which this process
# would wait for: its work is in the cache files, written and closed as each compile ends
HELPER = ("import os; from fastbp.kernels.native import compile_slots; "
          "compile_slots(sys.argv[2], sys.argv[3:]); os._exit(0)")


def _start_helpers(slots, dtype, ahead, expected=()):
    """Helper processes compiling some of ``slots`` (the ones not in the cache) for ``dtype``
    (this process having ``ahead`` seconds of other work), and the ``expected`` entry points
    (EXTRAS names) not in the cache; returns ``(processes, the slots they compile)``."""
    jobs = min(_config.compile_jobs(), len(slots))
    if jobs < 2:
        return [], set()
    missing = {s: COMPILE_COST[s] for s in slots if not NATIVES[s].cached(dtype)}
    if not missing:
        return [], set()
    extra = {e: EXTRAS[e].cost for e in sorted(expected) if not EXTRAS[e].cached(dtype)}
    if callable(ahead):
        ahead = ahead()
    helpers, aside = [], set()
    for part in share({**missing, **extra}, jobs, HELPER_START, ahead, extra)[1:]:
        h = _config.compile_child(HELPER, [dtype.name, *map(str, part)], 1) if part else None
        if h is not None:       # (none to be had: compiled here)
            helpers.append(h)
            aside.update(s for s in part if s not in extra)
    return helpers, aside


def compile_slots(dtype, slots):
    """A helper's work: compile these slots' functions (numbers) and entry points (EXTRAS
    names) for ``dtype`` into numba's cache."""
    from .. import engine   # noqa: F401  (defines every slot's Native and the EXTRAS)
    for s in slots:
        if s in EXTRAS:
            EXTRAS[s].compile(dtype)
        else:
            NATIVES[int(s)].address(dtype)
