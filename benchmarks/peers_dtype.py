#!/usr/bin/env python3
"""fastbp against PyTorch in float64 (or float32), the way ../shared/bench/peers.py does float32:
one epoch of plain SGD, each trainer in a fresh process, alternating, median of the per-round
ratios.  Not an asv benchmark (asv imports no peer); run it by hand:

    python benchmarks/peers_dtype.py --dtype float64 --configs tabular,mnist,wide --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "tabular": dict(n=65536, d=32, hidden=(64, 64), out=1, batch=32),
    "mnist": dict(n=30000, d=784, hidden=(256, 128), out=10, batch=128),
    "wide": dict(n=4096, d=1024, hidden=(2048, 2048), out=10, batch=256),
}


def one(trainer, cfg, dtype, threads):
    import numpy as np
    c = CONFIGS[cfg]
    r = np.random.default_rng(0)
    X = r.standard_normal((c["n"], c["d"])).astype(dtype)
    reg = c["out"] == 1
    y = X[:, :4].sum(1).astype(dtype) if reg else r.integers(0, c["out"], c["n"])
    sizes = [c["d"], *c["hidden"], c["out"]]
    if trainer == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        layers = []
        for a, b in zip(sizes[:-2], sizes[1:-1]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-2], sizes[-1])).to(getattr(torch, dtype))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        loss_fn = torch.nn.MSELoss() if reg else torch.nn.CrossEntropyLoss()
        Xt = torch.from_numpy(X)
        yt = torch.from_numpy(y.reshape(-1, 1) if reg else y)
        B = c["batch"]

        def epoch(n):
            for i in range(0, n - B + 1, B):
                opt.zero_grad()
                loss_fn(model(Xt[i:i + B]), yt[i:i + B]).backward()
                opt.step()
        epoch(B * 20)
        t = time.perf_counter()
        epoch(c["n"])
        return time.perf_counter() - t
    import numba
    import fastbp
    numba.set_num_threads(threads)

    def fit(n):
        net = fastbp.Network(sizes, output_activation="identity" if reg else "softmax", dtype=dtype, seed=0)
        tr = fastbp.Trainer(net, loss="squared_error" if reg else "cross_entropy", optimizer="sgd",
                            learning_rate=0.01, batch_size=c["batch"], epochs=1, shuffle=False)
        t = time.perf_counter()
        tr.fit(X[:n], y[:n])
        return time.perf_counter() - t
    fit(c["batch"] * 20)
    return fit(c["n"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=2)
    a = ap.parse_args()
    if a.one:
        print(json.dumps({"seconds": one(*a.one, a.dtype, a.threads)}))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), NUMBA_NUM_THREADS=str(a.threads))
    for cfg in a.configs.split(","):
        times = {"fastbp": [], "torch": []}
        for _ in range(a.rounds):
            for t in times:
                p = subprocess.run([sys.executable, __file__, "--dtype", a.dtype, "--threads", str(a.threads),
                                    "--one", t, cfg], capture_output=True, text=True, env=env, check=True)
                times[t].append(json.loads(p.stdout.strip().splitlines()[-1])["seconds"])
        n = CONFIGS[cfg]["n"]
        ratio = statistics.median(tt / tf for tf, tt in zip(times["fastbp"], times["torch"]))
        print(f"{cfg:8s} {a.dtype}: fastbp {n / statistics.median(times['fastbp']):10.0f} samples/s, "
              f"torch {n / statistics.median(times['torch']):10.0f} samples/s, fastbp/torch {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
