"""fastbp.MLPClassifier / MLPRegressor against scikit-learn's on scikit-learn's shipped datasets.

For each dataset (standardised) and seed: one train/test split, then the same estimator
parameters for both libraries; prints the mean ± std test score over the seeds and the fit time
per epoch (``fit seconds / n_iter_``), fastbp warm (compiled before timing).  Both run in this
process, alternating per seed, so the ratio is side by side; each fit after a short rest (QUIET).

    NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2 python benchmarks/sklearn_datasets.py [--seeds 5]
        [--dtype float32]
"""
import argparse
import os
import time
import warnings

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402

import fastbp  # noqa: E402

try:
    from sklearn import datasets, neural_network
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
except ImportError:     # asv imports every module here to find suites (this one has none)
    datasets = None

# Seconds of rest before each timed fit: OpenBLAS's threads keep spinning for ~0.1 s after a
# scikit-learn fit and would take the cores from the next fit (measured: fastbp's digits epoch
# 25% slower right after scikit-learn's).  Each fit starts on a quiet machine.
QUIET = 0.3

# case -> (dataset: sklearn.datasets.load_<dataset>, classifier?, estimator parameters shared
# by both libraries)
CASES = {
    "digits": ("digits", True, dict(hidden_layer_sizes=(100,))),
    "digits-128-64": ("digits", True, dict(hidden_layer_sizes=(128, 64))),
    "digits-sgd-32": ("digits", True, dict(hidden_layer_sizes=(256,), solver="sgd",
                                           batch_size=32)),
    "breast_cancer": ("breast_cancer", True, dict(hidden_layer_sizes=(100,))),
    "wine": ("wine", True, dict(hidden_layer_sizes=(100,))),
    "iris": ("iris", True, dict(hidden_layer_sizes=(100,), max_iter=500)),
    "diabetes": ("diabetes", False, dict(hidden_layer_sizes=(100,), alpha=1.0,
                                         early_stopping=True, max_iter=500)),
}


def split(name, seed, dtype=np.float64):
    dataset, classifier, _ = CASES[name]
    X, y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed,
                                          stratify=y if classifier else None)
    scaler = StandardScaler().fit(Xtr)
    if not classifier:
        mu, sd = ytr.mean(), ytr.std()
        ytr, yte = (ytr - mu) / sd, (yte - mu) / sd
    return scaler.transform(Xtr).astype(dtype), scaler.transform(Xte).astype(dtype), ytr, yte


def run(lib, name, seed, dtype=np.float64):
    _, classifier, params = CASES[name]
    mod = fastbp if lib == "fastbp" else neural_network
    est = getattr(mod, "MLPClassifier" if classifier else "MLPRegressor")(random_state=seed, **params)
    Xtr, Xte, ytr, yte = split(name, seed, dtype)
    time.sleep(QUIET)
    t0 = time.perf_counter()
    est.fit(Xtr, ytr)
    seconds = time.perf_counter() - t0
    return est.score(Xte, yte), seconds / est.n_iter_, est.n_iter_


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", default=",".join(CASES))
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                    help="dtype of X for both libraries (both keep float32 end to end)")
    args = ap.parse_args(argv)
    if datasets is None:
        raise SystemExit("this benchmark needs scikit-learn: pip install scikit-learn")
    warnings.simplefilter("ignore", ConvergenceWarning)
    names = args.datasets.split(",")
    for name in names:                     # compile (or load the cache) outside the timings
        run("fastbp", name, 0, args.dtype)
    print(f"{'dataset':14s} {'score sklearn':>16s} {'score fastbp':>16s} {'ms/epoch sklearn':>17s} "
          f"{'ms/epoch fastbp':>16s} {'speed-up':>9s}")
    for name in names:
        res = {"sklearn": [], "fastbp": []}
        for seed in range(args.seeds):
            for lib in ("sklearn", "fastbp"):
                res[lib].append(run(lib, name, seed, args.dtype))
        s, f = np.array(res["sklearn"]), np.array(res["fastbp"])
        print(f"{name:14s} {s[:, 0].mean():9.4f} ± {s[:, 0].std():.3f} {f[:, 0].mean():9.4f} ± "
              f"{f[:, 0].std():.3f} {1e3 * np.median(s[:, 1]):17.3f} {1e3 * np.median(f[:, 1]):16.3f} "
              f"{np.median(s[:, 1]) / np.median(f[:, 1]):8.1f}x", flush=True)


if __name__ == "__main__":
    main()
