"""Run Python code in a fresh interpreter with a given thread count (the thread-determinism
tests compare the digests such runs print)."""
import os
import subprocess
import sys


def run_with_threads(code, threads, extra_env=None):
    """The last line ``code`` prints, run with ``NUMBA_NUM_THREADS=threads``."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), **(extra_env or {}))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]
