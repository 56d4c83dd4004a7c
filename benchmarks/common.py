"""Shared configurations and data for the asv suites.

The configurations are peers.py's (tabular, mnist, wide, and the ResNet-style resnet that
peers.py builds from PEERS_EXTRA_CONFIGS); wide trains on fewer samples here so
that ``asv run --quick`` stays short.  Data is synthetic and seeded.  Every suite warms the JIT
up in ``setup`` on tiny input of the same types, so compile time is never timed by accident
(bench_compile times it on purpose)."""
import numpy as np

CONFIGS = {
    "tabular": dict(sizes=[32, 64, 64, 1], batch=32, n=8192, task="reg"),
    "mnist": dict(sizes=[784, 256, 128, 10], batch=128, n=4096, task="clf"),
    "wide": dict(sizes=[1024, 2048, 2048, 10], batch=256, n=1024, task="clf"),
    # the structure issue's ResNet-style tabular MLP: residual skips, batch norm, dropout 0.1
    # lr 1e-3: at 0.01 plain SGD diverges on this data from He initialisation (so does torch
    # from the same initial parameters)
    "resnet": dict(sizes=[64, 256, 256, 256, 256, 1], batch=256, n=4096, task="reg", lr=1e-3,
                   structure=dict(skips="residual", normalization="batch", dropout=0.1)),
}
DTYPES = ["float32", "float64"]


def data(cfg, dtype, n=None):
    c = CONFIGS[cfg]
    n = c["n"] if n is None else n
    r = np.random.default_rng(0)
    X = r.standard_normal((n, c["sizes"][0])).astype(dtype)
    if c["task"] == "reg":
        y = (X[:, :4].sum(1) + 0.1 * r.standard_normal(n)).astype(dtype)
    else:
        y = r.integers(0, c["sizes"][-1], n)
    return X, y


def network(cfg, dtype):
    import fastbp
    c = CONFIGS[cfg]
    out = "identity" if c["task"] == "reg" else "softmax"
    return fastbp.Network(c["sizes"], activation="relu", output_activation=out, dtype=dtype, seed=0,
                          **c.get("structure", {}))


def trainer(net, cfg, optimizer="sgd", epochs=1):
    import fastbp
    c = CONFIGS[cfg]
    loss = "squared_error" if c["task"] == "reg" else "cross_entropy"
    return fastbp.Trainer(net, loss=loss, optimizer=optimizer, learning_rate=c.get("lr", 0.01),
                          batch_size=c["batch"], epochs=epochs, shuffle=False, seed=0)


def epoch_flops(cfg, n):
    s = CONFIGS[cfg]["sizes"]
    return 6 * sum(a * b for a, b in zip(s[:-1], s[1:])) * n
