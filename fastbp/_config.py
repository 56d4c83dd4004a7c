"""The one place for numba options, threading-layer choice and dtypes.

Imported first by every module that compiles code, so the threading layer is fixed before any
parallel region is launched.

Threading layer (why not numba's default): the ``workqueue`` layer aborts when two Python threads
launch parallel regions at once and costs ~100 µs per launch; fastbp launches several regions per
mini-batch and promises that two threads may train at once.  So fastbp asks for

1. ``tbb`` when the ``tbb`` wheel is installed (``pip install "fastbp[tbb]"``): thread-safe *and*
   fork-safe.  The wheel puts ``libtbb.so.12`` in the environment's ``lib/``, where numba does not
   look, so it is preloaded here;
2. otherwise ``omp`` (GNU OpenMP): thread-safe, ~2 µs per launch, but a process forked after it
   has run a parallel region cannot launch one again; fastbp raises a clear error in such a child
   (see :func:`ready`) instead of letting numba kill it.

``NUMBA_THREADING_LAYER`` set by the user wins over all of this (``tbb`` and the safe/default
choices still find the wheel's library: it is preloaded for them).
"""
import contextlib
import ctypes
import glob
import hashlib
import os
import subprocess
import sys
import threading

import numba
import numpy as np

# --- compilation options -------------------------------------------------------------------
# contract: FMA instructions; reassoc: lets LLVM vectorise reductions (dot products).  The order
# is fixed at compile time, so results stay bitwise reproducible.  No nnan/ninf: fastbp tests
# for non-finite values and those flags would let LLVM delete the tests.
FASTMATH = {"contract", "reassoc", "nsz"}
JIT = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)
PARALLEL_JIT = dict(JIT, parallel=True)
# Thin wrappers and helpers are inlined at numba's IR level: numba links every callee's code
# into each caller and optimises and emits it again, so each level of calls above the products
# cost ~1.5 s of a cold start (inlined: 50 s -> 23 s with the typed constants below).
INLINE_JIT = dict(JIT, inline="always")

DTYPES = (np.float32, np.float64)    # the dtypes every kernel is compiled for

# LLVM's Haswell: the x86-64 baseline, SSE3..SSE4.2, AVX, AVX2, FMA, BMI1/2, F16C and the rest
# of what Intel's 4th generation has (X86.td's HSW features)
HASWELL = {"64bit", "cmov", "cx8", "cx16", "fxsr", "mmx", "x87", "sse", "sse2", "sse3", "ssse3",
           "sse4.1", "sse4.2", "popcnt", "crc32", "sahf", "nopl", "avx", "avx2", "fma", "f16c",
           "bmi", "bmi2", "lzcnt", "movbe", "fsgsbase", "rdrnd", "xsave", "xsaveopt", "pclmul",
           "aes", "invpcid", "ermsb"}


def haswell_features():
    """``NUMBA_CPU_FEATURES`` for AVX2 code (with ``NUMBA_CPU_NAME=haswell``): the host's
    feature string with every feature Haswell lacks turned off.  The name alone is not enough:
    numba passes the host's features with it, and LLVM then emits AVX-512 on such a host."""
    import llvmlite.binding as ll
    host = ll.get_host_cpu_features()
    return ",".join(("+" if on and name in HASWELL else "-") + name for name, on in host.items())


# --- compiling side by side -----------------------------------------------------------------
COMPILE_JOBS_MAX = 4    # more helpers gain nothing: the largest kernel alone takes ~3 s


def compile_jobs():
    """Processes that compile the missing kernels side by side on a cold start, this one
    included (``compilation.Table.need``): ``FASTBP_COMPILE_JOBS`` when set (1: none
    aside), else the CPUs this process may run on, at most COMPILE_JOBS_MAX.  1 in an MPI job
    (mpi4py imported): its ranks already compile side by side, and some MPI stacks dislike a
    rank that starts processes."""
    value = os.environ.get("FASTBP_COMPILE_JOBS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"FASTBP_COMPILE_JOBS must be a whole number; got {value!r}") from None
    if "mpi4py.MPI" in sys.modules or getattr(sys, "frozen", False) or not sys.executable:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, COMPILE_JOBS_MAX)


def compile_child(code, args, jobs):
    """A Python process that compiles for this fastbp (its parent directory first on
    ``sys.path``): runs ``code`` with ``args`` as ``sys.argv[2:]`` and ``FASTBP_COMPILE_JOBS``
    = ``jobs``, its output discarded; None when no process can be had (the caller compiles
    instead)."""
    try:
        return subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); " + code,
             os.path.dirname(_PKG_DIR), *map(str, args)],
            env=dict(os.environ, FASTBP_COMPILE_JOBS=str(jobs)), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


# --- cache invalidation -------------------------------------------------------------------
# numba stamps a cached function with a hash of its own file only, but fastbp's kernels call
# each other across files: after an edit to dense.py, train.py's cached code would still hold
# the old dense code (seen: a segfault).  So every fastbp function is stamped with one hash of
# all of the package's compiled sources and of numba's version.
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _sources_digest():
    h = hashlib.sha256(numba.__version__.encode())
    files = [os.path.join(_PKG_DIR, "_config.py")]
    files += sorted(glob.glob(os.path.join(_PKG_DIR, "kernels", "*.py")))
    for path in files:
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


SOURCES_DIGEST = _sources_digest()


def _install_cache_locators():
    try:
        from numba.core import caching
        bases = [caching.UserProvidedCacheLocator, caching.InTreeCacheLocator,
                 caching.UserWideCacheLocator]
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    except (ImportError, AttributeError):   # numba internals moved: keep numba's own stamps
        return

    def make(base):
        class Locator(base):
            def get_source_stamp(self):
                return SOURCES_DIGEST

            @classmethod
            def from_function(cls, py_func, py_file):
                if not os.path.abspath(py_file).startswith(_PKG_DIR + os.sep):
                    return None
                return super().from_function(py_func, py_file)

        Locator.__name__ = Locator.__qualname__ = "Fastbp" + base.__name__
        return Locator

    if not any(c.__name__.startswith("Fastbp") for c in impl._locator_classes):
        impl._locator_classes[:0] = [make(b) for b in bases]


_install_cache_locators()


def _libtbb_candidates():
    prefixes = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(sys.executable))}
    for prefix in prefixes:
        yield from sorted(glob.glob(os.path.join(prefix, "lib", "libtbb.so.12*")))


def _load_libtbb():
    """Preload the tbb wheel's ``libtbb.so.12`` so that numba's tbb layer can start; True when
    that layer is then importable."""
    for path in _libtbb_candidates():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        try:
            from numba.np.ufunc import tbbpool  # noqa: F401  (import fails on a bad tbb)
        except ImportError:
            return False
        return True
    return False


# the layers numba may pick tbb for when the user names them
_TBB_CAPABLE = {"tbb", "threadsafe", "forksafe", "safe", "default"}


def _choose_threading_layer():
    requested = os.environ.get("NUMBA_THREADING_LAYER", "").strip().lower()
    if requested:       # the user's choice wins; tbb still needs its library found for it
        if requested in _TBB_CAPABLE:
            _load_libtbb()
        return
    if _load_libtbb():
        numba.config.THREADING_LAYER = "tbb"
        return
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
    numba.config.THREADING_LAYER = "default"


_choose_threading_layer()

# --- fork safety ------------------------------------------------------------------------------
_forked_after_omp = False


def _after_fork_in_child():
    global _forked_after_omp
    try:
        layer = numba.threading_layer()  # raises ValueError until a parallel region has run
    except ValueError:
        return
    if layer == "omp":
        _forked_after_omp = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_threads_started = False
_guard = contextlib.nullcontext()
_init_lock = threading.Lock()


def ready():
    """Call before any compiled fastbp function; run the call inside the returned guard
    (``with _config.ready(): kernel(...)``).

    * Refuses, with a clear error, a process forked after GNU OpenMP ran (numba would kill it).
    * Starts numba's threading layer.  A cached function that calls ``parallel=True`` functions
      without being parallel itself does not start it when loaded from the cache, and the first
      parallel launch then segfaults (numba issue #8578).  fastbp's epoch/predict kernels are
      such callers, so the layer is started here, once.
    * The guard does nothing under tbb and omp.  If numba could only load ``workqueue`` (neither
      tbb nor an OpenMP runtime present), which aborts when two threads launch at once, the guard
      is a lock: concurrent calls then take turns instead of crashing."""
    global _threads_started, _guard
    if _forked_after_omp:
        raise RuntimeError(
            "fastbp cannot run in a process forked from one that already used the GNU OpenMP "
            "threading layer (numba would terminate it). Use the 'spawn' or 'forkserver' start "
            "method of multiprocessing, or install the tbb threading layer: "
            "pip install 'fastbp[tbb]'.")
    if not _threads_started:
        with _init_lock:        # two threads' first calls must agree on one guard
            if not _threads_started:
                from numba.np.ufunc.parallel import _launch_threads
                _launch_threads()
                if numba.threading_layer() == "workqueue":
                    _guard = threading.RLock()
                _threads_started = True
    return _guard
