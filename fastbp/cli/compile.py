"""``fastbp compile``: compile every kernel a fit, a prediction or a gradient can run, for the
given dtypes, into numba's on-disk cache, so that later processes (a container's jobs, a job
array's tasks) start warm.

The kernels are specialised on array types only (optimizers, losses and activations are
run-time codes), so a few tiny fits per dtype reach every compiled signature: a plain network
with row blocks (batches of 64 rows or more of a small network) and one without (a layer too
large for them), a structured one (skips, batch and layer normalisation, dropout), the
inference, loss and gradient entry points of each, and the scikit-learn estimators when
scikit-learn is installed.  With two dtypes and more than one compile job
(``_config.compile_jobs()``), the second dtype compiles side by side in a process of its own,
each taking its share of the jobs (empty cache, 2 cores: 61-65 s -> 47 s for both).
"""
import os
import time

import numpy as np

from .. import _config


def _exercise(dtype):
    from ..model.network import Network
    from ..model.trainer import Trainer
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 8)).astype(dtype)
    y = (X[:, 0] > 0).astype(np.int64)
    nets = [Network([8, 16, 2], output_activation="softmax", dtype=dtype, seed=0),
            Network([8, 16, 16, 2], output_activation="softmax", dtype=dtype, seed=0,
                    skips="residual", normalization=["batch", "layer"], dropout=0.1),
            # the last column a category of 4 levels: the embedding tables' passes
            Network([8, 16, 2], output_activation="softmax", dtype=dtype, seed=0,
                    embeddings=[(4, 3)])]
    X[:, -1] = np.arange(X.shape[0]) % 4
    for net in nets:
        for batch in (128, 32):     # row blocks, then threads inside each product
            Trainer(net, loss="cross_entropy", batch_size=batch, epochs=1,
                    seed=0).fit(X, y, validation_data=(X[:16], y[:16]))
        net.predict(X[:4])
        net.loss(X[:4], y[:4], loss="cross_entropy")
        net.gradients(X[:4], y[:4], loss="cross_entropy")
    # a layer too large for row blocks (the workspace without their buffers)
    big = Network([8, 1 << 14, 2], output_activation="softmax", dtype=dtype, seed=0)
    Trainer(big, loss="cross_entropy", batch_size=128, epochs=1, seed=0).fit(X[:128], y[:128])
    # the finiteness pass over a large read-only X (memory-mapped data; a writable one shares
    # the divergence guard's signature, compiled by the fits above)
    from .. import engine
    engine.all_finite(engine.readonly(np.zeros(engine.FINITE_PASS_MIN, dtype)))
    try:            # the scikit-learn estimators, when scikit-learn is installed
        import warnings
        from sklearn.exceptions import ConvergenceWarning
        from ..sklearn import MLPClassifier
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, early_stopping=True,
                      random_state=0).fit(X, y).predict_proba(X[:4])


def compile_kernels(args):
    dtypes = list(dict.fromkeys(d.strip() for d in args.dtype.split(",") if d.strip()))
    for d in dtypes or [args.dtype]:
        if d not in ("float32", "float64"):
            from .common import UsageError
            raise UsageError(f"--dtype takes float32, float64 or both (comma-separated); "
                             f"got {d!r}")
    # the dtypes' kernels are independent: the others compile side by side in processes of
    # their own, this one's here, each with its share of the compile jobs
    jobs = _config.compile_jobs()
    share = max(1, jobs // len(dtypes))
    aside = _start(dtypes[1:], share) if jobs > 1 else {}
    env_jobs = os.environ.get("FASTBP_COMPILE_JOBS")
    t = time.perf_counter()
    try:
        if aside:
            os.environ["FASTBP_COMPILE_JOBS"] = str(share)
        try:
            _exercise(np.dtype(dtypes[0]))
        finally:
            _restore("FASTBP_COMPILE_JOBS", env_jobs)
        _report(args, dtypes[0], t)
        for d in dtypes[1:]:
            p = aside.pop(d, None)
            if p is None or p.wait() != 0:     # (no process, or it failed): here
                _exercise(np.dtype(d))
            _report(args, d, t)
    finally:
        for p in aside.values():
            p.kill()
            p.wait()
    return 0


def _start(dtypes, jobs):
    """A process compiling each of ``dtypes`` (``jobs``: its FASTBP_COMPILE_JOBS)."""
    procs = {d: _config.compile_child("import numpy; from fastbp.cli.compile import _exercise; "
                                      "_exercise(numpy.dtype(sys.argv[2]))", [d], jobs)
             for d in dtypes}
    return {d: p for d, p in procs.items() if p is not None}     # the others: here


def _restore(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _report(args, dtype, t0):
    if not args.quiet:
        print(f"{dtype}: compiled (or found in the cache) {time.perf_counter() - t0:.1f} s "
              f"after the start", flush=True)
