#!/usr/bin/env python3
"""Side-by-side training throughput: fastbp against PyTorch, scikit-learn, JAX and torch.compile.

(The project's copy of the peer comparison its issues quote, with the README table's eight
configs built in; run from the repository: ``python benchmarks/peers.py --rounds 5``.)

The same configs, data and timing rules for every trainer; the peers are the best a
performance-minded user would pick instead of fastbp on a CPU.

Every trainer does the same work: one epoch of plain mini-batch SGD (lr 0.01, no
momentum, no shuffling, no weight decay, batches in order, the last partial batch dropped)
on the same synthetic data, ReLU hidden layers, identity output + squared error
(regression) or softmax + cross entropy (classification), 2 threads. Compilation and
warm-up are excluded.

Trainers (--peers takes any of them; fastbp always runs):
    torch     PyTorch eager (as in peers.py)
    sklearn   scikit-learn MLPRegressor/MLPClassifier (as in peers.py)
    jax       JAX on CPU: the whole epoch is ONE jitted function, a jax.lax.scan of the train
              step (grad + SGD update) over the batches, parameters donated. The data is put on
              the device and reshaped to (steps, B, d) before the clock starts (setup, like
              torch.from_numpy); the executable for the timed shape is compiled ahead of time
              (jit(...).lower(...).compile()), then 20 batches are run as the warm-up; the clock
              covers one call of the compiled epoch and block_until_ready.
              Threads: the process pins itself to PEERS_THREADS cores (sched_setaffinity, what
              `taskset -c 0,1` does) before jax is imported; XLA:CPU sizes its thread pools
              from the affinity mask (checked: 2 busy threads with cores {0,1}, 1 with {0}).
              XLA_FLAGS gets --xla_cpu_multi_thread_eigen=true (the default); XLA has no
              thread-count flag (the often-quoted "intra_op_parallelism_threads=N" token is
              silently ignored). XLA_FLAGS already set in the environment are kept.
              float64: jax_enable_x64. Plain MLPs only (no residual/norm/dropout).
    jaxstep   JAX with a jitted (donating) train step called from a Python loop over the batches
              (what most JAX code looks like); batches pre-split on the device as setup.
    torchc    PyTorch with torch.compile (inductor, C++/OpenMP kernels; needs a C++ compiler).
              PEERS_TORCHC_MODE:
                step   (default) the whole train step as ONE compiled graph (fullgraph=True):
                       torch.func.grad of model + loss through functional_call, and the SGD
                       update in place on the model's parameters (plain MLPs; configs with
                       residual/norm/dropout fall back to "model")
                model  torch.compile of model + loss in one graph (forward and, via
                       AOTAutograd, backward compiled), eager loss.backward(), the optimizer
                       step compiled as in PyTorch's "compiling the optimizer" recipe
              PEERS_TORCHC_COMPILE_MODE passes mode= to torch.compile (e.g. max-autotune-no-cudagraphs).
              The warm-up (20 batches) includes the compile; the same batch shape is timed, so
              nothing recompiles.

Each trainer runs in its own fresh process; the trainers alternate, ROUNDS times,
and the report gives medians and the ratio fastbp / peer per round, so a drifting
machine speed cancels out.

    python benchmarks/peers.py --peers torch,torchc,jax     # every config
    python benchmarks/peers.py --configs mnist --peers jax,torchc --rounds 5
    python benchmarks/peers.py --one jax mnist              # one timing, printed as samples/s
    PEERS_DTYPE=float64 python benchmarks/peers.py          # the same in float64
    PEERS_DEBUG=1 python benchmarks/peers.py --one jax tiny # also the mean loss over the training set
                                                      # before and after (not timed)
    PEERS_INIT=torch ...                              # jax and fastbp start from the very weights
                                                      # the torch runner starts from (checks)
The configs "tiny" (mnist shapes, n=2048) and "tinyreg" (tabular shapes, n=2048) are for such
checks and are not in the default --configs.

Peers that are not installed are skipped (pip install torch scikit-learn jax).
"""
import argparse, json, os, statistics, subprocess, sys, time

CONFIGS = {
    # overhead-bound: tiny layers, small batches (tabular regression)
    "tabular": dict(n=65536, d=32, hidden=(64, 64), out=1, batch=32, task="reg"),
    # the classic: 784-256-128-10 softmax classifier
    "mnist": dict(n=60000, d=784, hidden=(256, 128), out=10, batch=128, task="clf"),
    # GEMM-bound: wide layers, large batches
    "wide": dict(n=16384, d=1024, hidden=(2048, 2048), out=10, batch=256, task="clf"),
    # fastbp's README table adds these (what the shared script takes as PEERS_EXTRA_CONFIGS)
    "deep": dict(n=32768, d=64, hidden=(128,) * 8, out=10, batch=64, task="clf"),
    "onewide": dict(n=8192, d=256, hidden=(4096,), out=1000, batch=256, task="clf"),
    "odd": dict(n=30000, d=97, hidden=(203, 77), out=13, batch=100, task="clf"),
    "batch1": dict(n=8192, d=32, hidden=(64, 64), out=1, batch=1, task="reg"),
    "mnist1024": dict(n=60000, d=784, hidden=(256, 128), out=10, batch=1024, task="clf"),
}
DEFAULT_CONFIGS = ",".join(CONFIGS)
# not in the default run: small configs for checking that every trainer trains (PEERS_DEBUG=1)
CONFIGS.update({
    "tiny": dict(n=2048, d=784, hidden=(256, 128), out=10, batch=128, task="clf"),
    "tinyreg": dict(n=2048, d=32, hidden=(64, 64), out=1, batch=32, task="reg"),
})
CONFIGS.update(json.loads(os.environ.get("PEERS_EXTRA_CONFIGS", "{}")))  # more configs, as JSON
THREADS = int(os.environ.get("PEERS_THREADS", "2"))
DTYPE = os.environ.get("PEERS_DTYPE", "float32")  # or float64, for every trainer
DEBUG = os.environ.get("PEERS_DEBUG", "") not in ("", "0")
INIT = os.environ.get("PEERS_INIT", "")  # "torch": jax and fastbp start from torch's initial weights
LR = 0.01


def data(c, seed=0):
    import numpy as np
    r = np.random.default_rng(seed)
    X = r.standard_normal((c["n"], c["d"]), dtype=np.float32).astype(DTYPE)
    if c["task"] == "reg":
        y = (X[:, :4].sum(1) + 0.1 * r.standard_normal(c["n"])).astype(DTYPE)
    else:
        y = r.integers(0, c["out"], c["n"])
    return X, y


def flops(c):
    sizes = (c["d"],) + tuple(c["hidden"]) + (c["out"],)
    p = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 6 * p * c["n"]  # forward 2p, backward 4p multiply-adds per sample


def structured(c):
    """Configs may ask for skip connections ("residual": true), "norm": "batch"|"layer", "dropout": p."""
    return bool(c.get("residual") or c.get("norm") or c.get("dropout"))


def np_loss(c, out, y):
    """The debug metric, the same for every trainer: mean squared error over the outputs
    (torch.nn.MSELoss) or mean cross entropy; ``out`` are raw outputs (logits) unless the
    trainer gives probabilities (``probs``)."""
    import numpy as np
    out = np.asarray(out, dtype=np.float64)
    if c["task"] == "reg":
        return float(np.mean((out.reshape(-1) - np.asarray(y, np.float64)) ** 2))
    m = out.max(1, keepdims=True)
    logp = out - m - np.log(np.exp(out - m).sum(1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), y]))


def np_loss_probs(c, p, y):
    import numpy as np
    p = np.asarray(p, dtype=np.float64)
    if c["task"] == "reg":
        return np_loss(c, p, y)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-300))))


def torch_initial_weights(c):
    """The weights (n_in, n_out) and biases the torch runner starts from (plain MLPs): the same
    Linear layers, created in the same order after torch.manual_seed(0)."""
    import torch
    torch.manual_seed(0)
    sizes = (c["d"],) + tuple(c["hidden"]) + (c["out"],)
    lins = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    return [(l.weight.detach().numpy().T.astype(DTYPE), l.bias.detach().numpy().astype(DTYPE)) for l in lins]


def Structured(torch, sizes, c):
    """Hidden layer: Linear, normalisation, ReLU, dropout, + its input when the widths match."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
            norm = {"batch": torch.nn.BatchNorm1d, "layer": torch.nn.LayerNorm}.get(c.get("norm"))
            self.norm = torch.nn.ModuleList(norm(b) if norm else torch.nn.Identity() for b in sizes[1:])
            self.drop = torch.nn.Dropout(c.get("dropout", 0.0))
            self.out = torch.nn.Linear(sizes[-1], c["out"])

        def forward(self, x):
            for lin, norm in zip(self.lin, self.norm):
                h = self.drop(torch.relu(norm(lin(x))))
                x = x + h if c.get("residual") and h.shape[1] == x.shape[1] else h
            return self.out(x)
    return Net()


def torch_model(torch, c):
    """The torch runner's model, loss and targets (shared by torch and torchc)."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    sizes = (c["d"],) + tuple(c["hidden"])
    if structured(c):
        model = Structured(torch, sizes, c).to(getattr(torch, DTYPE))
    else:
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        layers.append(torch.nn.Linear(sizes[-1], c["out"]))
        model = torch.nn.Sequential(*layers).to(getattr(torch, DTYPE))
    return model


def torch_loss(torch, c, y):
    if c["task"] == "reg":
        return torch.nn.MSELoss(), torch.from_numpy(y.reshape(-1, 1))
    return torch.nn.CrossEntropyLoss(), torch.from_numpy(y)


def torch_debug_loss(torch, c, model, X, y):
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(X)).numpy()
    model.train(was)
    return np_loss(c, out, y)


def run_torch(c, X, y):
    import torch
    model = torch_model(torch, c)
    info = {"loss_initial": torch_debug_loss(torch, c, model, X, y)} if DEBUG else {}
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn, yt = torch_loss(torch, c, y)
    Xt, B = torch.from_numpy(X), c["batch"]

    def epoch(n):
        for i in range(0, n - B + 1, B):
            opt.zero_grad()
            loss_fn(model(Xt[i:i + B]), yt[i:i + B]).backward()
            opt.step()

    epoch(B * 20)
    t = time.perf_counter(); epoch(c["n"]); dt = time.perf_counter() - t
    if DEBUG:
        info["loss_final"] = torch_debug_loss(torch, c, model, X, y)
    return dt, info


def run_torchc(c, X, y):
    """torch.compile: see the module docstring (PEERS_TORCHC_MODE, PEERS_TORCHC_COMPILE_MODE)."""
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no pool of compile workers left behind
    import torch
    model = torch_model(torch, c)
    info = {"loss_initial": torch_debug_loss(torch, c, model, X, y)} if DEBUG else {}
    loss_fn, yt = torch_loss(torch, c, y)
    Xt, B = torch.from_numpy(X), c["batch"]
    mode = os.environ.get("PEERS_TORCHC_MODE", "step")
    kw = {"mode": os.environ["PEERS_TORCHC_COMPILE_MODE"]} if os.environ.get("PEERS_TORCHC_COMPILE_MODE") else {}
    kw["dynamic"] = False  # one batch shape throughout: specialise on it
    if mode == "step" and structured(c):
        mode = "model"  # buffers (batch norm) and dropout's RNG: keep the module form
    info["torchc_mode"] = mode

    if mode == "step":
        from torch.func import functional_call, grad
        params = {k: v.detach() for k, v in model.named_parameters()}

        def loss_of(p, xb, yb):
            return loss_fn(functional_call(model, p, (xb,)), yb)

        @torch.compile(fullgraph=True, **kw)
        def train_step(p, xb, yb):
            g = grad(loss_of)(p, xb, yb)
            for k in p:
                p[k].sub_(g[k], alpha=LR)

        def step(xb, yb):
            train_step(params, xb, yb)
    elif mode == "model":
        opt = torch.optim.SGD(model.parameters(), lr=LR)

        @torch.compile(**kw)
        def forward_loss(xb, yb):
            return loss_fn(model(xb), yb)

        @torch.compile(**kw)
        def opt_step():
            opt.step()

        def step(xb, yb):
            opt.zero_grad()
            forward_loss(xb, yb).backward()
            opt_step()
    else:
        raise SystemExit(f"PEERS_TORCHC_MODE must be model or step, not {mode!r}")

    def epoch(n):
        for i in range(0, n - B + 1, B):
            step(Xt[i:i + B], yt[i:i + B])

    t0 = time.perf_counter()
    epoch(B * 20)  # compile and warm up
    info["warmup_seconds"] = time.perf_counter() - t0
    t = time.perf_counter(); epoch(c["n"]); dt = time.perf_counter() - t
    if DEBUG:
        info["loss_final"] = torch_debug_loss(torch, c, model, X, y)
    return dt, info


def jax_setup():
    """Pin this process to THREADS cores before jax starts its thread pools (taskset -c 0,..)
    and select XLA:CPU; then import jax, with 64-bit floats for PEERS_DTYPE=float64."""
    if "jax" in sys.modules:
        raise RuntimeError("jax was imported before the thread setup")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > THREADS:
        os.sched_setaffinity(0, cpus[:THREADS])
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:  # the default; the thread count is the affinity's
        flags += " --xla_cpu_multi_thread_eigen=true"
    os.environ["XLA_FLAGS"] = flags.strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    jax.config.update("jax_enable_x64", DTYPE == "float64")
    return jax


def jax_model(jax, c, X, y):
    """Initial parameters, the loss of one batch and the debug loss, for a plain MLP."""
    import numpy as np
    import jax.numpy as jnp
    if structured(c):
        raise SystemExit("the jax runner has no skip connections, normalisation or dropout")
    sizes = (c["d"],) + tuple(c["hidden"]) + (c["out"],)
    if INIT == "torch":
        init = torch_initial_weights(c)
    else:  # PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
        r = np.random.default_rng(0)
        init = [(r.uniform(-a ** -0.5, a ** -0.5, (a, b)).astype(DTYPE), r.uniform(-a ** -0.5, a ** -0.5, b).astype(DTYPE))
                for a, b in zip(sizes[:-1], sizes[1:])]
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in init]
    reg = c["task"] == "reg"

    def forward(p, xb):
        h = xb
        for W, b in p[:-1]:
            h = jax.nn.relu(h @ W + b)
        W, b = p[-1]
        return h @ W + b

    def loss(p, xb, yb):
        out = forward(p, xb)
        if reg:  # yb (B, 1): torch.nn.MSELoss, the mean over the elements
            return jnp.mean((out - yb) ** 2)
        # integer labels in, one-hot made inside the graph; softmax cross entropy, mean over the batch
        return jnp.mean(jax.nn.logsumexp(out, axis=1) - jnp.sum(jax.nn.one_hot(yb, c["out"], dtype=out.dtype) * out, axis=1))

    def debug_loss(p):
        return np_loss(c, np.asarray(jax.jit(forward)(p, jnp.asarray(X))), y)

    def train_step(p, xb, yb):
        g = jax.grad(loss)(p, xb, yb)
        return jax.tree.map(lambda w, gw: w - LR * gw, p, g)

    return params, train_step, debug_loss


def run_jax(c, X, y):
    jax = jax_setup()
    import jax.numpy as jnp
    params, train_step, debug_loss = jax_model(jax, c, X, y)
    info = {"loss_initial": debug_loss(params)} if DEBUG else {}
    B = c["batch"]; steps = c["n"] // B  # the last partial batch dropped, as the torch runner does
    # setup, not timed: the data on the device, reshaped to (steps, B, d)
    t0 = time.perf_counter()
    Xs = jnp.asarray(X[:steps * B].reshape(steps, B, c["d"]))
    Ys = jnp.asarray(y[:steps * B].reshape((steps, B, 1) if c["task"] == "reg" else (steps, B)))
    jax.block_until_ready((Xs, Ys))
    info["setup_seconds"] = time.perf_counter() - t0

    def epoch(p, xs, ys):
        def body(p, batch):
            return train_step(p, *batch), None
        return jax.lax.scan(body, p, (xs, ys))[0]

    epoch = jax.jit(epoch, donate_argnums=0)
    t0 = time.perf_counter()
    compiled = epoch.lower(params, Xs, Ys).compile()  # the executable for the timed shape
    params = jax.block_until_ready(epoch(params, Xs[:20], Ys[:20]))  # warm-up: 20 batches
    info["warmup_seconds"] = time.perf_counter() - t0
    t = time.perf_counter()
    params = jax.block_until_ready(compiled(params, Xs, Ys))
    dt = time.perf_counter() - t
    if DEBUG:
        info["loss_final"] = debug_loss(params)
    return dt, info


def run_jaxstep(c, X, y):
    jax = jax_setup()
    import jax.numpy as jnp
    params, train_step, debug_loss = jax_model(jax, c, X, y)
    info = {"loss_initial": debug_loss(params)} if DEBUG else {}
    B = c["batch"]; steps = c["n"] // B
    t0 = time.perf_counter()  # setup, not timed: every batch on the device
    yy = y.reshape(-1, 1) if c["task"] == "reg" else y
    batches = [(jnp.asarray(X[i * B:(i + 1) * B]), jnp.asarray(yy[i * B:(i + 1) * B])) for i in range(steps)]
    jax.block_until_ready(batches)
    info["setup_seconds"] = time.perf_counter() - t0
    step = jax.jit(train_step, donate_argnums=0)
    t0 = time.perf_counter()
    for xb, yb in batches[:20]:  # compile and warm up
        params = step(params, xb, yb)
    jax.block_until_ready(params)
    info["warmup_seconds"] = time.perf_counter() - t0
    t = time.perf_counter()
    for xb, yb in batches:
        params = step(params, xb, yb)
    params = jax.block_until_ready(params)
    dt = time.perf_counter() - t
    if DEBUG:
        info["loss_final"] = debug_loss(params)
    return dt, info


def run_sklearn(c, X, y):
    import warnings
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    warnings.filterwarnings("ignore")
    from threadpoolctl import threadpool_limits
    if structured(c):
        raise SystemExit("scikit-learn has no skip connections, normalisation or dropout")
    M = MLPRegressor if c["task"] == "reg" else MLPClassifier
    kw = dict(hidden_layer_sizes=tuple(c["hidden"]), solver="sgd", batch_size=c["batch"], max_iter=1,
              learning_rate_init=LR, momentum=0.0, alpha=0.0, shuffle=False, random_state=0)
    with threadpool_limits(THREADS):
        M(**kw).fit(X[:c["batch"] * 20], y[:c["batch"] * 20])
        m = M(**kw)
        t = time.perf_counter(); m.fit(X, y); dt = time.perf_counter() - t
        info = {}
        if DEBUG:  # a fresh model, one epoch (no warm-up batches before it); its squared loss is halved
            info["loss_final"] = np_loss(c, m.predict(X), y) if c["task"] == "reg" else np_loss_probs(c, m.predict_proba(X), y)
        return dt, info


def run_fastbp(c, X, y):
    import numpy as np
    import numba
    import fastbp
    numba.set_num_threads(THREADS)
    sizes = [c["d"], *c["hidden"], c["out"]]
    reg = c["task"] == "reg"

    def fit(n):
        extra = {}
        if structured(c):   # the structure issue's arguments
            extra = dict(skips="residual" if c.get("residual") else None, normalization=c.get("norm"),
                         dropout=c.get("dropout", 0.0))
        net = fastbp.Network(sizes, activation="relu", output_activation="identity" if reg else "softmax",
                             dtype=np.dtype(DTYPE), seed=0, **extra)
        if INIT == "torch" and not structured(c):
            w = torch_initial_weights(c)
            net.weights, net.biases = [W for W, _ in w], [b for _, b in w]
        tr = fastbp.Trainer(net, loss="squared_error" if reg else "cross_entropy", optimizer="sgd",
                            learning_rate=LR, batch_size=c["batch"], epochs=1, shuffle=False)
        loss0 = np_loss_probs(c, net.forward(X), y) if DEBUG else None
        t = time.perf_counter(); tr.fit(X[:n], y[:n]); dt = time.perf_counter() - t
        return dt, net, loss0

    fit(c["batch"] * 20)  # compile and warm up
    dt, net, loss0 = fit(c["n"])
    info = {}
    if DEBUG:  # a fresh network, one epoch (no warm-up batches before it)
        info = {"loss_initial": loss0, "loss_final": np_loss_probs(c, net.forward(X), y)}
    return dt, info


RUNNERS = {"fastbp": run_fastbp, "torch": run_torch, "sklearn": run_sklearn,
           "jax": run_jax, "jaxstep": run_jaxstep, "torchc": run_torchc}
MODULES = {"fastbp": "fastbp", "torch": "torch", "sklearn": "sklearn", "jax": "jax", "jaxstep": "jax", "torchc": "torch"}


def one(name, cfg):
    c = CONFIGS[cfg]
    X, y = data(c)
    dt, info = RUNNERS[name](c, X, y)
    return {"trainer": name, "config": cfg, "seconds": dt, "samples_per_s": c["n"] / dt,
            "gflops": flops(c) / dt / 1e9, **info}


def spawn(name, cfg):
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), NUMBA_NUM_THREADS=str(THREADS))
    p = subprocess.run([sys.executable, __file__, "--json", "--one", name, cfg], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"trainer": name, "config": cfg, "error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def available(name):
    return subprocess.run([sys.executable, "-c", f"import {MODULES[name]}"], capture_output=True).returncode == 0


def describe(r):
    s = f"{r['trainer']} {r['config']}: {r['samples_per_s']:.0f} samples/s, {r['gflops']:.1f} GFLOP/s"
    if "loss_final" in r:
        s += "; loss " + (f"{r['loss_initial']:.4f} " if "loss_initial" in r else "") + f"-> {r['loss_final']:.4f}"
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS)
    ap.add_argument("--peers", default="torch,sklearn",
                    help="comma-separated, from " + ",".join(n for n in RUNNERS if n != "fastbp"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", nargs=2, metavar=("TRAINER", "CONFIG"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.one:
        r = one(*a.one)
        print(json.dumps(r) if a.json else describe(r))
        return
    unknown = [p for p in a.peers.split(",") if p and p not in RUNNERS]
    if unknown:
        ap.error(f"unknown peers {unknown}; known: {','.join(RUNNERS)}")
    peers = [p for p in a.peers.split(",") if p and p != "fastbp" and available(p)]
    print(f"{'config':8s} {'trainer':8s} {'samples/s':>12s} {'GFLOP/s':>8s} {'fastbp/peer':>12s}")
    summary = {}
    for cfg in a.configs.split(","):
        rows = {t: [] for t in ["fastbp"] + peers}
        for _ in range(a.rounds):
            for t in rows:
                rows[t].append(spawn(t, cfg))
                if DEBUG:
                    print("  debug", describe(rows[t][-1]) if "error" not in rows[t][-1] else rows[t][-1], flush=True)
        for t, rs in rows.items():
            ok = [r for r in rs if "error" not in r]
            if not ok:
                print(f"{cfg:8s} {t:8s} error: {rs[0]['error']}"); continue
            sps = statistics.median(r["samples_per_s"] for r in ok)
            gf = statistics.median(r["gflops"] for r in ok)
            ratio = ""
            if t != "fastbp" and all("error" not in r for r in rows["fastbp"]) and len(ok) == len(rows["fastbp"]):
                q = statistics.median(f["samples_per_s"] / p["samples_per_s"] for f, p in zip(rows["fastbp"], ok))
                ratio = f"{q:.2f}x"; summary[f"{cfg}/{t}"] = q
            print(f"{cfg:8s} {t:8s} {sps:12.0f} {gf:8.1f} {ratio:>12s}", flush=True)
    print("ratios " + " ".join(f"{k}={v:.2f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
