"""The ResNet-style tabular MLP of the structure issue, fastbp against PyTorch, side by side:
64 -> 256 x 4 -> 1, batch 256, float32, plain SGD (lr 1e-3, so that neither side diverges with
its own default initialisation), and each structural feature alone over the plain net.  Every
(trainer, variant) runs in a fresh process, alternating, ``--rounds`` times; each process times
the median of 3 epochs after a warm-up.  Prints samples/s (medians) and the ratios per round.

    python benchmarks/structure_peers.py --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

VARIANTS = {"plain": {}, "residual": {"skips": "residual"}, "batch": {"normalization": "batch"},
            "layer": {"normalization": "layer"}, "dropout": {"dropout": 0.1},
            "resnet": {"skips": "residual", "normalization": "batch", "dropout": 0.1}}
SIZES = [64, 256, 256, 256, 256, 1]
N, BATCH, THREADS = 32768, 256, 2

ONE = """
import json, os, sys, time
import numpy as np
kw = json.loads({kw!r})
r = np.random.default_rng(0)
X = r.standard_normal(({n}, {d})).astype(np.float32)
y = (X[:, :4].sum(1) + 0.1 * r.standard_normal({n})).astype(np.float32)
if {trainer!r} == "fastbp":
    import numba, fastbp
    numba.set_num_threads({threads})
    net = fastbp.Network({sizes}, seed=0, **kw)
    tr = fastbp.Trainer(net, loss="squared_error", optimizer="sgd", learning_rate=1e-3,
                        batch_size={batch}, epochs=1, shuffle=False, seed=0)
    epoch = lambda: tr.fit(X, y)
else:
    import torch
    torch.set_num_threads({threads})
    sizes = {sizes}
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
            norm = {{"batch": torch.nn.BatchNorm1d, "layer": torch.nn.LayerNorm}}.get(kw.get("normalization"))
            self.norm = torch.nn.ModuleList(norm(b) if norm else torch.nn.Identity() for b in sizes[1:-1])
            self.drop = torch.nn.Dropout(kw.get("dropout", 0.0))
        def forward(self, x):
            for lin, norm in zip(self.lin[:-1], self.norm):
                h = self.drop(torch.relu(norm(lin(x))))
                x = x + h if kw.get("skips") and h.shape[1] == x.shape[1] else h
            return self.lin[-1](x)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).reshape(-1, 1)
    def epoch():
        model.train()
        for s in range(0, {n}, {batch}):
            opt.zero_grad()
            loss = 0.5 * ((model(Xt[s:s + {batch}]) - yt[s:s + {batch}]) ** 2).sum(1).mean()
            loss.backward()
            opt.step()
epoch()
times = []
for _ in range(3):
    t = time.perf_counter(); epoch(); times.append(time.perf_counter() - t)
print({n} / sorted(times)[1])
"""


def run(trainer, variant):
    code = ONE.format(kw=json.dumps(VARIANTS[variant]), n=N, d=SIZES[0], trainer=trainer,
                      threads=THREADS, sizes=SIZES, batch=BATCH)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return float(out.stdout.split()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args()
    names = a.variants.split(",")
    got = {(t, v): [] for t in ("fastbp", "torch") for v in names}
    for _ in range(a.rounds):
        for v in names:
            for t in ("fastbp", "torch"):
                got[t, v].append(run(t, v))
    result = {}
    print(f"{'variant':10s} {'fastbp':>10s} {'torch':>10s} {'fastbp/torch':>13s} "
          f"{'fastbp vs plain':>16s} {'torch vs plain':>15s}")
    for v in names:
        f, t = got["fastbp", v], got["torch", v]
        row = {"fastbp": statistics.median(f), "torch": statistics.median(t),
               "ratio": statistics.median(x / y for x, y in zip(f, t))}
        if "plain" in names:
            row["fastbp_vs_plain"] = statistics.median(
                x / y for x, y in zip(f, got["fastbp", "plain"]))
            row["torch_vs_plain"] = statistics.median(
                x / y for x, y in zip(t, got["torch", "plain"]))
        result[v] = row
        print(f"{v:10s} {row['fastbp']:10,.0f} {row['torch']:10,.0f} {row['ratio']:12.2f}x "
              f"{row.get('fastbp_vs_plain', float('nan')):15.2f}x "
              f"{row.get('torch_vs_plain', float('nan')):14.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
