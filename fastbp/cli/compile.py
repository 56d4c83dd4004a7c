"""``fastbp compile``: compile every kernel a fit, a prediction or a gradient can run, for the
given dtypes, into numba's on-disk cache, so that later processes (a container's jobs, a job
array's tasks) start warm.

The kernels are specialised on array types only (optimizers, losses and activations are
run-time codes), so a few tiny fits per dtype reach every compiled signature: a plain network
with row blocks (batches of 64 rows or more of a small network) and one without (a layer too
large for them), a structured one (skips, batch and layer normalisation, dropout), the
inference, loss and gradient entry points of each, and the scikit-learn estimators when
scikit-learn is installed.
"""
import time

import numpy as np


def _exercise(dtype):
    import fastbp
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 8)).astype(dtype)
    y = (X[:, 0] > 0).astype(np.int64)
    nets = [fastbp.Network([8, 16, 2], output_activation="softmax", dtype=dtype, seed=0),
            fastbp.Network([8, 16, 16, 2], output_activation="softmax", dtype=dtype, seed=0,
                           skips="residual", normalization=["batch", "layer"],
                           dropout=0.1)]
    for net in nets:
        for batch in (128, 32):     # row blocks, then threads inside each product
            fastbp.Trainer(net, loss="cross_entropy", batch_size=batch, epochs=1,
                           seed=0).fit(X, y, validation_data=(X[:16], y[:16]))
        net.predict(X[:4])
        net.loss(X[:4], y[:4], loss="cross_entropy")
        net.gradients(X[:4], y[:4], loss="cross_entropy")
    # a layer too large for row blocks (the workspace without their buffers)
    big = fastbp.Network([8, 1 << 14, 2], output_activation="softmax", dtype=dtype, seed=0)
    fastbp.Trainer(big, loss="cross_entropy", batch_size=128, epochs=1, seed=0).fit(X[:128],
                                                                                    y[:128])
    try:            # the scikit-learn estimators, when scikit-learn is installed
        import warnings
        from sklearn.exceptions import ConvergenceWarning
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastbp.MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, early_stopping=True,
                             random_state=0).fit(X, y).predict_proba(X[:4])


def compile_kernels(args):
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    for d in dtypes:
        if d not in ("float32", "float64"):
            from . import UsageError
            raise UsageError(f"--dtype takes float32, float64 or both (comma-separated); "
                             f"got {d!r}")
    for d in dtypes:
        t = time.perf_counter()
        _exercise(np.dtype(d))
        if not args.quiet:
            print(f"{d}: compiled (or found in the cache) in {time.perf_counter() - t:.1f} s")
    return 0
