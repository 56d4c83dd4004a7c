"""A fastai-style tabular model with embeddings, fastbp against PyTorch (eager), side by side.

Three categorical columns embedded as fastai's rule of thumb sizes them, (1000, 77), (50, 12)
and (7, 5), plus 20 numeric columns -> 200 -> 100 -> 1 (regression, squared error) or -> 5
classes (cross-entropy), batch normalisation and dropout 0.1 in both hidden layers (in fastbp's
order, Linear -> BatchNorm1d -> ReLU -> Dropout, on both sides), batch 256, Adam (lr 1e-3),
float32, 2 threads, no shuffling.  PyTorch gets its index tensors made once, outside the
timing, and dense (non-sparse) embedding gradients, as fastbp's.  Every (trainer, task) runs
in a fresh process, alternating, ``--rounds`` times; each process times the median of 3
epochs after a warm-up.  Prints samples/s (medians) and the median of the per-round ratios.

    python benchmarks/embedding_peers.py --rounds 3
    python benchmarks/embedding_peers.py --rounds 3 --block-max-macs 16777216

``--block-max-macs`` overrides ``fastbp.kernels.train.BLOCK_MAX_MACS`` in fastbp's processes
(the largest product under which a step runs as row blocks, see step_blocks): this model's
largest product, 256 × 114 × 200 = 5.8M multiply-adds, is over the default 4M, so it trains
with threads inside each product.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

EMBEDDINGS = [(1000, 77), (50, 12), (7, 5)]
N_NUM, HIDDEN, N, BATCH, THREADS = 20, [200, 100], 32768, 256, 2
TASKS = {"reg": 1, "clf": 5}

ONE = """
import json, time
import numpy as np
emb, n_num, hidden, n, batch, n_out = {emb}, {n_num}, {hidden}, {n}, {batch}, {n_out}
r = np.random.default_rng(0)
num = r.standard_normal((n, n_num)).astype(np.float32)
codes = np.stack([r.integers(0, levels, n) for levels, _ in emb], axis=1)
X = np.concatenate([num, codes.astype(np.float32)], axis=1)
y = (num[:, :4].sum(1) + 0.1 * r.standard_normal(n)).astype(np.float32)
if n_out > 1:
    y = np.digitize(y, np.quantile(y, np.linspace(0, 1, n_out + 1)[1:-1]))
if {trainer!r} == "fastbp":
    import numba, fastbp
    numba.set_num_threads({threads})
    if {block_max_macs}:
        fastbp.kernels.train.BLOCK_MAX_MACS = {block_max_macs}
    net = fastbp.Network([n_num + len(emb), *hidden, n_out], seed=0, embeddings=emb,
                         normalization="batch", dropout=0.1,
                         output_activation="softmax" if n_out > 1 else "identity")
    tr = fastbp.Trainer(net, loss="cross_entropy" if n_out > 1 else "squared_error",
                        optimizer="adam", learning_rate=1e-3, batch_size=batch, epochs=1,
                        shuffle=False, seed=0)
    epoch = lambda: tr.fit(X, y)
else:
    import torch
    from torch import nn
    torch.set_num_threads({threads})
    class Tabular(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeds = nn.ModuleList(nn.Embedding(levels, dim) for levels, dim in emb)
            sizes = [n_num + sum(d for _, d in emb), *hidden]
            layers = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Dropout(0.1)]
            self.layers = nn.Sequential(*layers, nn.Linear(sizes[-1], n_out))
        def forward(self, x_num, x_cat):
            e = [m(x_cat[:, i]) for i, m in enumerate(self.embeds)]
            return self.layers(torch.cat([x_num] + e, dim=1))
    model = Tabular()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xn, Xc = torch.from_numpy(num), torch.from_numpy(codes.astype(np.int64))
    if n_out > 1:
        yt = torch.from_numpy(y.astype(np.int64))
        lossf = nn.functional.cross_entropy
    else:
        yt = torch.from_numpy(y).reshape(-1, 1)
        lossf = lambda z, t: 0.5 * ((z - t) ** 2).sum(1).mean()
    def epoch():
        model.train()
        for s in range(0, n, batch):
            opt.zero_grad()
            loss = lossf(model(Xn[s:s + batch], Xc[s:s + batch]), yt[s:s + batch])
            loss.backward()
            opt.step()
epoch()
times = []
for _ in range(3):
    t = time.perf_counter(); epoch(); times.append(time.perf_counter() - t)
print(n / sorted(times)[1])
"""


def run(trainer, task, n=N, block_max_macs=0):
    code = ONE.format(emb=EMBEDDINGS, n_num=N_NUM, hidden=HIDDEN, n=n, batch=BATCH,
                      n_out=TASKS[task], trainer=trainer, threads=THREADS,
                      block_max_macs=int(block_max_macs))
    env = dict(os.environ, NUMBA_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return float(out.stdout.split()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--block-max-macs", type=int, default=0,
                    help="fastbp's row-block threshold (0: the library's)")
    a = ap.parse_args()
    names = a.tasks.split(",")
    got = {(t, k): [] for t in ("fastbp", "torch") for k in names}
    for _ in range(a.rounds):
        for k in names:
            for t in ("fastbp", "torch"):
                got[t, k].append(run(t, k, block_max_macs=a.block_max_macs))
    result = {}
    print(f"{'task':6s} {'fastbp':>10s} {'torch':>10s} {'fastbp/torch':>13s}   per round")
    for k in names:
        f, t = got["fastbp", k], got["torch", k]
        ratios = [x / y for x, y in zip(f, t)]
        row = {"fastbp": statistics.median(f), "torch": statistics.median(t),
               "ratio": statistics.median(ratios), "ratios": ratios}
        result[k] = row
        print(f"{k:6s} {row['fastbp']:10,.0f} {row['torch']:10,.0f} {row['ratio']:12.2f}x   "
              + " ".join(f"{r:.2f}" for r in ratios))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
