"""Compiling the kernels: the function table of each dtype (:class:`Table`), the helper
processes that compile its slots side by side on a cold start, the entry points a fit expects
to call afterwards (:data:`EXTRAS`), and what ``fastbp compile`` runs.  Above the kernels (it
loads their :class:`~fastbp.kernels.native.Native` callees), below the engine (which builds the
tables and registers the entry points).

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

from . import _config
from .kernels.native import (FN_BACKWARD_ROWS, FN_BLOCKED_STEP, FN_EMBEDDING, FN_FORWARD_ROWS,
                             FN_GEMM, FN_OUTPUT_BATCH, FN_OUTPUT_ROWS, FN_OVERLAP,
                             FN_POST_BACKWARD, FN_POST_FORWARD, FN_SHARED, FN_TASK, FN_UPDATE,
                             NATIVES, SLOTS)

# entry points a helper may compile aside (Table.expect), by name, as the engine registers
# them: objects with ``cost`` (seconds, as COMPILE_COST), ``cached(dtype)`` and
# ``compile(dtype)`` (into numba's cache)
EXTRAS = {}

# seconds each slot takes to compile cold (2-vCPU AMD EPYC, numba 0.68, one process, float32
# and float64 alike; benchmarks/compile_profile.py): the weights by which the missing slots are
# shared out, and a helper's start (Python, NumPy, numba, fastbp)
COMPILE_COST = {FN_GEMM: 2.0, FN_TASK: 3.5, FN_POST_FORWARD: 3.4, FN_POST_BACKWARD: 3.4,
                FN_OUTPUT_BATCH: 0.5, FN_OUTPUT_ROWS: 1.3, FN_UPDATE: 1.6, FN_FORWARD_ROWS: 0.55,
                FN_BACKWARD_ROWS: 0.75, FN_BLOCKED_STEP: 3.3, FN_EMBEDDING: 0.85, FN_SHARED: 0.6,
                FN_OVERLAP: 0.6}
HELPER_START = 0.5     # measured 0.3 s from the Popen to its first compile
HELPER_TIMEOUT = 900    # seconds; a helper still running then is stopped (this process compiles)


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


# what a helper runs (_config.compile_child), with the arguments <dtype> <slot>...: the engine
# first (it defines every slot's Native and registers the EXTRAS); it ends without the
# interpreter's teardown (~0.35 s with numba loaded, measured), which this process would wait
# for: its work is in the cache files, written and closed as each compile ends
HELPER = ("import os; import fastbp.engine; from fastbp.compilation import compile_slots; "
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
    """A helper's work (after importing the engine, which defines every slot's Native and the
    EXTRAS): compile these slots' functions (numbers) and entry points (EXTRAS names) for
    ``dtype`` into numba's cache."""
    for s in slots:
        if s in EXTRAS:
            EXTRAS[s].compile(dtype)
        else:
            NATIVES[int(s)].address(dtype)
