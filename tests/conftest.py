import os

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hypothesis import settings  # noqa: E402

settings.register_profile("fastbp", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("fastbp")

TOL = {np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}


def tol(dtype):
    return TOL[np.dtype(dtype)]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def data(rng, n, d, dtype=np.float64):
    return rng.standard_normal((n, d)).astype(dtype)


def targets_for(rng, loss, n, k, dtype=np.float64):
    if loss == "cross_entropy":
        return rng.integers(0, k, n)
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, (n, k)).astype(dtype)
    if loss == "poisson":
        return rng.poisson(1.5, (n, k)).astype(dtype)
    return rng.standard_normal((n, k)).astype(dtype)
