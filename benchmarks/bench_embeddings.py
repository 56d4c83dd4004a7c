"""Epochs of networks with embedding layers (categorical inputs looked up in learned tables).

* ``fastai``: embedding_peers.py's model: 20 numeric columns and three tables, (1000, 77),
  (50, 12), (7, 5) -> 200 -> 100 -> 1, batch norm and dropout 0.1, batch 256, Adam; products
  large enough for threads inside each (one row block);
* ``large_table``: one table of 100k levels × 16 beside 20 numeric columns -> 64 -> 32 -> 1,
  batch 256, the row-block step: what a step costs besides its products is the dense update
  of 1.6 M table entries (the scatter and the norms touch only the batch's rows);
* ``plain``: ``large_table``'s network without the table (36 numeric columns), for scale.
"""
import numpy as np

SETUPS = {
    "fastai": dict(emb=[(1000, 77), (50, 12), (7, 5)], n_num=20, hidden=[200, 100],
                   optimizer="adam", norm="batch", dropout=0.1),
    "large_table": dict(emb=[(100000, 16)], n_num=20, hidden=[64, 32], optimizer="sgd",
                        norm="batch", dropout=0.1),
    "plain": dict(emb=[], n_num=36, hidden=[64, 32], optimizer="sgd", norm="batch",
                  dropout=0.1),
}
N, BATCH = 8192, 256


def data(setup, dtype, n=N):
    s = SETUPS[setup]
    r = np.random.default_rng(0)
    num = r.standard_normal((n, s["n_num"]))
    codes = np.stack([r.integers(0, levels, n) for levels, _ in s["emb"]] + [np.zeros(n)],
                     axis=1)[:, :len(s["emb"])]
    X = np.concatenate([num, codes], axis=1).astype(dtype)
    y = (num[:, :4].sum(1) + 0.1 * r.standard_normal(n)).astype(dtype)
    return X, y


def trainer(setup, dtype):
    import fastbp
    s = SETUPS[setup]
    net = fastbp.Network([s["n_num"] + len(s["emb"]), *s["hidden"], 1], dtype=dtype, seed=0,
                         embeddings=s["emb"], normalization=s["norm"], dropout=s["dropout"])
    return fastbp.Trainer(net, loss="squared_error", optimizer=s["optimizer"],
                          learning_rate=1e-3, batch_size=BATCH, epochs=1, shuffle=False,
                          seed=0)


class Embeddings:
    params = (list(SETUPS), ["float32", "float64"])
    param_names = ["setup", "dtype"]
    timeout = 300

    def setup(self, setup, dtype):
        self.X, self.y = data(setup, dtype)
        self.trainer = trainer(setup, dtype)
        self.trainer.fit(self.X[:2 * BATCH], self.y[:2 * BATCH])    # compile / load from cache

    def time_epoch(self, setup, dtype):
        self.trainer.fit(self.X, self.y)

    def track_samples_per_second(self, setup, dtype):
        import time
        t = time.perf_counter()
        self.trainer.fit(self.X, self.y)
        return len(self.X) / (time.perf_counter() - t)
    track_samples_per_second.unit = "samples/s"

    def time_predict(self, setup, dtype):
        self.trainer.network.predict(self.X)
