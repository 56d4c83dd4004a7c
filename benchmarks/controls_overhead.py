"""The cost of each training control on an mnist epoch, side by side: every variant in its
own fresh process, the variants alternating ``--rounds`` times, each timing the median of 5
epochs; prints samples/s and the ratio to the plain run of the same round.

    python benchmarks/controls_overhead.py --rounds 5
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

VARIANTS = ["none", "clip", "onecycle", "class_weight"]
ONE = """
import sys, time
sys.path.insert(0, {root!r})
from benchmarks.common import data, network
from benchmarks.bench_train import controlled_trainer
X, y = data("mnist", "float32", n=8192)
tr = controlled_trainer(network("mnist", "float32"), "mnist", {variant!r}, y)
tr.fit(X[:512], y[:512])
times = []
for _ in range(5):
    t = time.perf_counter(); tr.fit(X, y); times.append(time.perf_counter() - t)
times.sort()
print(len(X) / times[2])
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS", "2"))
    rows = {v: [] for v in VARIANTS}
    for _ in range(a.rounds):
        for v in VARIANTS:
            out = subprocess.run([sys.executable, "-c", ONE.format(root=root, variant=v)],
                                 capture_output=True, text=True, env=env, check=True)
            rows[v].append(float(out.stdout.split()[-1]))
    result = {}
    for v in VARIANTS:
        ratios = [x / b for x, b in zip(rows[v], rows["none"])]
        result[v] = {"samples_per_s": statistics.median(rows[v]),
                     "vs_none": statistics.median(ratios)}
        print(f"{v:13s} {result[v]['samples_per_s']:12,.0f} samples/s  "
              f"{result[v]['vs_none']:.3f}x of the plain run")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
