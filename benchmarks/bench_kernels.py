"""Each compiled kernel on the layer shapes of the three configurations."""
import numpy as np

# (batch, n_in, n_out): every layer of tabular, mnist and wide
SHAPES = ["32x32x64", "32x64x64", "32x64x1", "128x784x256", "128x256x128", "128x128x10",
          "256x1024x2048", "256x2048x2048", "256x2048x10"]


class Dense:
    params = (SHAPES, ["float32", "float64"])
    param_names = ["shape", "dtype"]

    def setup(self, shape, dtype):
        from fastbp import _config
        from fastbp.kernels import dense
        _config.ready()
        self.dense = dense
        try:        # the products' function table (kernels/native.py), since b7d0ca1
            from fastbp import compilation
            from fastbp.kernels import native
            self.fns = (compilation.Table(dtype).need([native.FN_GEMM, native.FN_TASK]),)
        except ImportError:
            self.fns = ()
        B, n_in, n_out = map(int, shape.split("x"))
        r = np.random.default_rng(0)
        self.A = r.standard_normal((B, n_in)).astype(dtype)
        self.W = (r.standard_normal((n_in, n_out)) * 0.05).astype(dtype)
        self.b = np.zeros(n_out, dtype)
        self.Z = np.empty((B, n_out), dtype)
        self.D = r.standard_normal((B, n_out)).astype(dtype)
        self.Dp = np.empty((B, n_in), dtype)
        self.gW, self.gb = np.empty_like(self.W), np.empty_like(self.b)
        # the engine's scratch (sq_size: room for a serial product's panel; older commits: the
        # task sums only)
        size = getattr(dense, "sq_size", lambda sizes, rows: dense.max_tasks(sizes))
        self.sq = np.empty(size([n_in, n_out], B))
        self.scale = np.dtype(dtype).type(1.0 / B)
        self.flops = 2 * B * n_in * n_out
        self.time_forward(shape, dtype)     # warm-up: compile or load from cache
        self.time_backprop(shape, dtype)
        self.time_gradient(shape, dtype)

    def time_forward(self, shape, dtype):
        self.dense.forward(*self.fns, self.A, self.W, self.b, self.Z, 1, self.sq, True)

    def time_backprop(self, shape, dtype):
        self.dense.backprop(*self.fns, self.D, self.W, self.A, self.Dp, 1, self.sq, True)

    def time_gradient(self, shape, dtype):
        self.dense.gradient(*self.fns, self.A, self.D, self.gW, self.gb, self.scale, self.sq, True,
                            True)

    def track_forward_gflops(self, shape, dtype):
        import time
        reps = max(1, int(2e8 // self.flops))
        t = time.perf_counter()
        for _ in range(reps):
            self.time_forward(shape, dtype)
        return self.flops * reps / (time.perf_counter() - t) / 1e9
    track_forward_gflops.unit = "GFLOP/s"


class OptimizerStep:
    params = (["sgd", "momentum", "adam", "rmsprop"], ["float32"])
    param_names = ["optimizer", "dtype"]

    def setup(self, optimizer, dtype):
        from fastbp import _config
        from fastbp.kernels import optimizers
        _config.ready()
        n = 1 << 20
        self.opt = optimizers
        self.code = optimizers.OPTIMIZERS[optimizer]
        r = np.random.default_rng(0)
        self.p = r.standard_normal(n).astype(dtype)
        self.g = r.standard_normal(n).astype(dtype)
        self.s1, self.s2 = np.zeros(n, dtype), np.zeros(n, dtype)
        self.hyper = np.array([1e-3, 0.9, 0.9, 0.999, 1e-8, 0.0], dtype)
        self.consts = np.zeros(10, dtype)
        self.flags = np.zeros(-(-n // optimizers.CHUNK), dtype)
        self.time_step(optimizer, dtype)

    def time_step(self, optimizer, dtype):
        self.opt.update(self.code, self.p, self.g, self.s1, self.s2, self.hyper, 1, self.consts, self.flags)
