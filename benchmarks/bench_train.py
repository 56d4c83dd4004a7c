"""Whole epochs through the public API (one fused compiled call each), and a fit's memory."""
from .common import CONFIGS, DTYPES, data, epoch_flops, network, trainer


class Epoch:
    params = (list(CONFIGS), DTYPES)
    param_names = ["config", "dtype"]
    timeout = 300

    def setup(self, cfg, dtype):
        self.X, self.y = data(cfg, dtype)
        self.net = network(cfg, dtype)
        self.trainer = trainer(self.net, cfg)
        b = CONFIGS[cfg]["batch"]
        self.trainer.fit(self.X[:2 * b], self.y[:2 * b])      # compile / load from cache

    def time_epoch(self, cfg, dtype):
        self.trainer.fit(self.X, self.y)

    def track_samples_per_second(self, cfg, dtype):
        import time
        t = time.perf_counter()
        self.trainer.fit(self.X, self.y)
        return len(self.X) / (time.perf_counter() - t)
    track_samples_per_second.unit = "samples/s"

    def track_gflops(self, cfg, dtype):
        import time
        t = time.perf_counter()
        self.trainer.fit(self.X, self.y)
        return epoch_flops(cfg, len(self.X)) / (time.perf_counter() - t) / 1e9
    track_gflops.unit = "GFLOP/s"


class Optimizers:
    params = (["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"],)
    param_names = ["optimizer"]

    def setup(self, optimizer):
        self.X, self.y = data("mnist", "float32", n=1024)
        self.trainer = trainer(network("mnist", "float32"), "mnist", optimizer)
        self.trainer.fit(self.X[:256], self.y[:256])

    def time_epoch(self, optimizer):
        self.trainer.fit(self.X, self.y)


class Memory:
    params = (["mnist", "wide"],)
    param_names = ["config"]

    def setup(self, cfg):
        self.X, self.y = data(cfg, "float32")
        warm = trainer(network(cfg, "float32"), cfg)
        b = CONFIGS[cfg]["batch"]
        warm.fit(self.X[:2 * b], self.y[:2 * b])

    def peakmem_fit(self, cfg):
        trainer(network(cfg, "float32"), cfg).fit(self.X, self.y)

    def peakmem_predict(self, cfg):
        network(cfg, "float32").predict(self.X)
