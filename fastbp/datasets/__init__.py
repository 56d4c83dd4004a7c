"""Small real datasets shipped inside the package (no network needed)."""
from importlib import resources

import numpy as np


def load_digits(dtype=np.float32):
    """The 8x8 handwritten digits (1797 samples, 64 features scaled to [0, 1], 10 classes).

    Returns ``(X, y)``: X of ``dtype``, y int64 labels.  Origin and licence: DIGITS.txt beside
    this module (E. Alpaydin, C. Kaynak, UCI Machine Learning Repository, CC BY 4.0)."""
    with resources.files(__name__).joinpath("digits.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as z:
            X, y = z["X"], z["y"]
    return (X / 16.0).astype(dtype), y.astype(np.int64)


def train_test_split(X, y, test_fraction=0.25, seed=0):
    """A shuffled split into ``(X_train, X_test, y_train, y_test)``."""
    idx = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(len(X) * test_fraction))
    test, train = idx[:n_test], idx[n_test:]
    return X[train], X[test], y[train], y[test]
