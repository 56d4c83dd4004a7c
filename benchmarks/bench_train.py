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
    """Peak memory of a fit (the network built inside it) and of predict.  The issue's figure:
    wide with adam, whose floor is parameters + gradient + two moment buffers + a batch of
    activations (~4.4× the 24 MiB of parameters; 2026-12-02: 4.45×, PyTorch 6.3–7.0×)."""
    params = (["mnist", "wide"], ["sgd", "adam"])
    param_names = ["config", "optimizer"]

    def setup(self, cfg, optimizer):
        self.X, self.y = data(cfg, "float32")
        warm = trainer(network(cfg, "float32"), cfg, optimizer)
        b = CONFIGS[cfg]["batch"]
        warm.fit(self.X[:2 * b], self.y[:2 * b])

    def peakmem_fit(self, cfg, optimizer):
        trainer(network(cfg, "float32"), cfg, optimizer).fit(self.X, self.y)

    def peakmem_predict(self, cfg, optimizer):
        network(cfg, "float32").predict(self.X)


def controlled_trainer(net, cfg, control, y):
    """The config's trainer with one training control on (``none``: the plain one)."""
    import fastbp
    from fastbp import schedules
    c = CONFIGS[cfg]
    kw = {"none": {}, "clip": {"clip_norm": 1e-3},      # small: every step is clipped
          "onecycle": {"schedule": schedules.OneCycleLR(0.01, total_steps=1 << 40)},
          "class_weight": {"class_weight": "balanced"}}[control]
    return fastbp.Trainer(net, loss="cross_entropy", optimizer="sgd", learning_rate=0.01,
                          batch_size=c["batch"], epochs=1, shuffle=False, **kw)


class Controls:
    """An mnist epoch with each training control (issue: no control may slow a run that does
    not use it; clipping and a per-step schedule cost little in one that does)."""
    params = (["none", "clip", "onecycle", "class_weight"],)
    param_names = ["control"]

    def setup(self, control):
        self.X, self.y = data("mnist", "float32")
        self.trainer = controlled_trainer(network("mnist", "float32"), "mnist", control, self.y)
        self.trainer.fit(self.X[:256], self.y[:256])

    def time_epoch(self, control):
        self.trainer.fit(self.X, self.y)
