"""Start-up costs, timed on purpose: a fresh process that imports fastbp and trains a small net,
with an empty kernel cache (compilation) and with a warm one."""
import os
import subprocess
import sys
import tempfile
import time

SCRIPT = ("import numpy as np, fastbp; X = np.random.default_rng(0).standard_normal((64, 8))"
          ".astype(np.float32); net = fastbp.Network([8, 16, 2], output_activation='softmax', seed=0);"
          " fastbp.Trainer(net, epochs=1).fit(X, (X[:, 0] > 0).astype(int))")


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", SCRIPT], check=True, env=env)
    return time.perf_counter() - t


class Startup:
    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        self.warm_dir = tempfile.mkdtemp(prefix="fastbp-asv-warm-")
        _run(self.warm_dir)

    def track_cold_start_seconds(self):
        with tempfile.TemporaryDirectory(prefix="fastbp-asv-cold-") as d:
            return _run(d)
    track_cold_start_seconds.unit = "s"

    def track_warm_start_seconds(self):
        return _run(self.warm_dir)
    track_warm_start_seconds.unit = "s"
