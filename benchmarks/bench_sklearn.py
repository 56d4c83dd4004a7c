"""The scikit-learn drop-ins on scikit-learn's shipped datasets: a fixed number of epochs of
fastbp.MLPClassifier / MLPRegressor, side by side with scikit-learn's own (the ratio the README
reports comes from benchmarks/sklearn_datasets.py)."""
import warnings

import numpy as np

DATASETS = ["digits", "breast_cancer", "diabetes"]
EPOCHS = 20


def _need_sklearn():
    """asv skips a benchmark whose setup raises NotImplementedError: scikit-learn is not in
    asv's environment matrix (these suites run where it is installed, e.g. --python=same)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise NotImplementedError("scikit-learn is not installed") from None


def _data(name):
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    if name == "diabetes":
        y = (y - y.mean()) / y.std()
    return StandardScaler().fit_transform(X), y


def _estimator(lib, name):
    if lib == "fastbp":
        import fastbp as mod
    else:
        from sklearn import neural_network as mod
    cls = mod.MLPRegressor if name == "diabetes" else mod.MLPClassifier
    # tol=0 and a large n_iter_no_change: every fit runs exactly EPOCHS epochs
    return cls(hidden_layer_sizes=(100,), max_iter=EPOCHS, tol=0.0, n_iter_no_change=10 ** 6,
               random_state=0)


class SklearnFit:
    params = (DATASETS, ["fastbp", "sklearn"])
    param_names = ["dataset", "library"]
    timeout = 300

    def setup(self, name, lib):
        _need_sklearn()
        from sklearn.exceptions import ConvergenceWarning
        warnings.simplefilter("ignore", ConvergenceWarning)
        self.X, self.y = _data(name)
        _estimator(lib, name).set_params(max_iter=1).fit(self.X[:50], self.y[:50])   # compile

    def time_fit(self, name, lib):
        _estimator(lib, name).fit(self.X, self.y)

    def track_ms_per_epoch(self, name, lib):
        import time
        t = time.perf_counter()
        _estimator(lib, name).fit(self.X, self.y)
        return 1e3 * (time.perf_counter() - t) / EPOCHS
    track_ms_per_epoch.unit = "ms"


class SklearnPredict:
    params = (["fastbp", "sklearn"],)
    param_names = ["library"]

    def setup(self, lib):
        _need_sklearn()
        from sklearn.exceptions import ConvergenceWarning
        warnings.simplefilter("ignore", ConvergenceWarning)
        X, y = _data("digits")
        self.X = np.repeat(X, 10, axis=0)
        self.est = _estimator(lib, "digits").set_params(max_iter=2).fit(X, y)
        self.est.predict_proba(self.X[:10])

    def time_predict_proba(self, lib):
        self.est.predict_proba(self.X)
