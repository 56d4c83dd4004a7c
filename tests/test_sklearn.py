"""fastbp.MLPClassifier / MLPRegressor against scikit-learn's own MLPs, step for step.

The same random_state gives the same initial weights, shuffles, batches and validation split, so
in float64 every fitted attribute must agree to rounding: that pins the semantics (loss and L2
scaling, update rules, schedules, stopping rules) down exactly."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastbp import MLPClassifier, MLPRegressor  # noqa: E402

RTOL = dict(rtol=1e-9, atol=1e-12)


def _data(kind, n=90, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal((d, 3))
    if kind == "binary":
        return X, np.where(X @ w[:, 0] > 0, "yes", "no")
    if kind == "multiclass":
        return X, np.argmax(X @ w + rng.normal(0, 0.5, (n, 3)), axis=1) * 10 + 1
    if kind == "multilabel":
        return X, (X @ w + rng.normal(0, 0.5, (n, 3)) > 0).astype(int)
    if kind == "regression":
        return X, X @ w[:, 0] + 0.1 * rng.standard_normal(n)
    if kind == "multioutput":
        return X, X @ w[:, :2]
    if kind == "counts":
        return X, rng.poisson(np.exp(0.3 * X @ w[:, :2]))
    raise ValueError(kind)


def _pair(kind, **params):
    classifier = kind in ("binary", "multiclass", "multilabel")
    ours, theirs = (MLPClassifier, sk.MLPClassifier) if classifier else (MLPRegressor, sk.MLPRegressor)
    if kind == "counts":
        params["loss"] = "poisson"
    params = {"hidden_layer_sizes": (7, 5), "max_iter": 6, "random_state": 3, **params}
    return ours(**params), theirs(**params)


def _fit_both(a, b, X, y, **fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(X, y, **fit)
        b.fit(X, y, **fit)


def _assert_same_model(a, b, X):
    assert len(a.coefs_) == len(b.coefs_)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert p.dtype == q.dtype and p.shape == q.shape
        np.testing.assert_allclose(p, q, **RTOL)
    for attr in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-9)
    for attr in ("loss_curve_", "validation_scores_"):
        if hasattr(b, attr) and getattr(b, attr) is not None:
            np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=1e-9)
    for attr in ("best_loss_", "best_validation_score_"):
        if getattr(b, attr, None) is not None:
            assert getattr(a, attr) == pytest.approx(getattr(b, attr), rel=1e-9)
    if hasattr(b, "classes_"):
        np.testing.assert_array_equal(a.classes_, b.classes_)
        np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), **RTOL)
    np.testing.assert_array_equal(a.predict(X), b.predict(X)) if hasattr(b, "classes_") else \
        np.testing.assert_allclose(a.predict(X), b.predict(X), **RTOL)


KINDS = ["binary", "multiclass", "multilabel", "regression", "multioutput", "counts"]
SOLVERS = [dict(solver="adam"), dict(solver="sgd"), dict(solver="sgd", nesterovs_momentum=False),
           dict(solver="sgd", momentum=0.0, learning_rate="invscaling", power_t=0.3),
           dict(solver="lbfgs")]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("params", SOLVERS, ids=lambda p: "-".join(f"{v}" for v in p.values()))
def test_same_model_as_scikit_learn(kind, params):
    X, y = _data(kind)
    if kind == "counts" and params["solver"] == "sgd":
        params = {**params, "learning_rate_init": 1e-4}   # exp output: small steps stay finite
    a, b = _pair(kind, batch_size=16, **params)
    _fit_both(a, b, X, y)
    _assert_same_model(a, b, X)


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
@pytest.mark.parametrize("activation", ["logistic", "tanh", "identity"])
def test_same_model_every_activation_and_alpha(kind, activation):
    X, y = _data(kind)
    a, b = _pair(kind, activation=activation, alpha=0.3, batch_size=32)
    _fit_both(a, b, X, y)
    _assert_same_model(a, b, X)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_same_model_with_sample_weight(kind, solver):
    X, y = _data(kind)
    sw = np.random.default_rng(1).uniform(0.2, 3.0, len(X))
    a, b = _pair(kind, solver=solver, batch_size=20)
    _fit_both(a, b, X, y, sample_weight=sw)
    _assert_same_model(a, b, X)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "regression", "multioutput"])
@pytest.mark.parametrize("weighted", [False, True])
def test_early_stopping_same_scores_and_best_weights(kind, weighted):
    X, y = _data(kind, n=150)
    a, b = _pair(kind, early_stopping=True, max_iter=40, n_iter_no_change=3, tol=1e-3,
                 learning_rate_init=0.05)
    sw = np.random.default_rng(2).uniform(0.2, 3.0, len(X)) if weighted else None
    _fit_both(a, b, X, y, sample_weight=sw)
    _assert_same_model(a, b, X)
    assert len(a.validation_loss_curve_) == a.n_iter_ == len(a.validation_scores_)
    assert np.all(np.isfinite(a.validation_loss_curve_)) and a.best_loss_ is None


def test_early_stopping_asks_for_its_validation_pass_to_compile_aside(monkeypatch):
    """Named before the fit (engine.expect_calls), so that on a cold cache the fit's helpers
    compile it beside the kernels; a fit without early stopping asks for nothing."""
    from fastbp import engine
    asked = []
    monkeypatch.setattr(engine, "expect_calls", lambda dtype, *names: asked.append(names))
    X, y = _data("multiclass")
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
    assert asked == []
    MLPClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=2,
                  random_state=0).fit(X, y)
    assert asked == [("evaluate_out",)]


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", ["random", "perfect", "constant_target", "constant_and_perfect"])
def test_early_stopping_scorers_are_scikit_learns(outputs, weighted, case):
    """The per-epoch validation scores (fastbp's check-free copies) equal sklearn.metrics'
    exactly, in the corner cases too (a zero numerator and/or denominator of R²)."""
    from sklearn.metrics import accuracy_score, r2_score

    from fastbp.sklearn._base import _R2, _accuracy
    rng = np.random.default_rng(3)
    y = rng.standard_normal((25, outputs))
    if case.startswith("constant"):
        y[:, 0] = 0.5
    p = y.copy() if case.endswith("perfect") else rng.standard_normal((25, outputs))
    w = rng.uniform(0.2, 3.0, 25) if weighted else None
    y, p = (y.ravel(), p.ravel()) if outputs == 1 else (y, p)
    got = _R2(y, w, np.float64)(p)
    assert type(got) is float and got == r2_score(y, p, sample_weight=w)
    labels, pred = (y > 0).astype(int), (p > 0).astype(int)
    assert _accuracy(labels, pred, w) == accuracy_score(labels, pred, sample_weight=w)


@pytest.mark.parametrize("pred_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_early_stopping_r2_takes_scikit_learns_dtype(pred_dtype, weighted):
    """r2_score computes in the widest floating dtype of its arrays, integer targets not
    counting: a float32 model's score of integer targets (iris) is a float32 computation."""
    from sklearn.metrics import r2_score

    from fastbp.sklearn._base import _R2
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 40)
    p = (y + rng.standard_normal(40) / 3).astype(pred_dtype)
    w = rng.uniform(0.2, 3.0, 40).astype(pred_dtype) if weighted else None
    scorer = _R2(y, w, pred_dtype)
    assert scorer.dtype == pred_dtype
    assert scorer(p) == r2_score(y, p, sample_weight=w)


def test_tol_stopping_and_adaptive_learning_rate():
    X, y = _data("multiclass")
    a, b = _pair("multiclass", solver="sgd", learning_rate="adaptive", max_iter=80,
                 n_iter_no_change=2, tol=0.05, learning_rate_init=0.2)
    _fit_both(a, b, X, y)
    _assert_same_model(a, b, X)
    assert a.n_iter_ < 80 and a._optimizer.learning_rate < 0.2   # it stopped, the rate was cut


def test_partial_fit_and_warm_start_follow_scikit_learn():
    X, y = _data("multiclass")
    a, b = _pair("multiclass", solver="sgd")
    for lo in range(0, 90, 30):
        a.partial_fit(X[lo:lo + 30], y[lo:lo + 30], classes=np.unique(y))
        b.partial_fit(X[lo:lo + 30], y[lo:lo + 30], classes=np.unique(y))
    _assert_same_model(a, b, X)
    a, b = _pair("regression", warm_start=True, max_iter=3)
    X, y = _data("regression")
    for _ in range(2):
        _fit_both(a, b, X, y)
    _assert_same_model(a, b, X)


def test_float32_stays_float32_and_follows_scikit_learn():
    X, y = _data("multiclass")
    X = X.astype(np.float32)
    a, b = _pair("multiclass", solver="sgd")
    _fit_both(a, b, X, y)
    assert all(c.dtype == np.float32 for c in a.coefs_ + a.intercepts_)
    assert a.predict_proba(X).dtype == np.float32
    for p, q in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(p, q, rtol=1e-3, atol=1e-4)


def test_predict_proba_log_proba_and_score():
    X, y = _data("binary")
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.02, max_iter=300, random_state=0).fit(X, y)
    P = clf.predict_proba(X)
    assert P.shape == (90, 2) and np.allclose(P.sum(axis=1), 1)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(P))
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[P.argmax(axis=1)])
    assert clf.score(X, y) > 0.9


def test_pickle_clone_and_coefficient_assignment():
    X, y = _data("multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=20, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    again.partial_fit(X, y)                        # training after unpickling moves coefs_ too
    assert not np.array_equal(again.coefs_[0], clf.coefs_[0])
    assert clone(clf).get_params() == clf.get_params() and not hasattr(clone(clf), "coefs_")
    clf.coefs_[0] = np.zeros_like(clf.coefs_[0])   # a user's assignment is what predicts
    clf.coefs_[1][...] = 0
    P = clf.predict_proba(X)
    assert np.allclose(P, P[0])
    clf.coefs_[0] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="coefs_\\[0\\]"):
        clf.predict(X)


def test_pipeline_grid_search_threads_processes_and_cross_val():
    X, y = _data("multiclass", n=120)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert cross_val_score(pipe, X, y, cv=3).mean() > 0.5
        grid = {"mlpclassifier__hidden_layer_sizes": [(5,), (10,)], "mlpclassifier__alpha": [1e-4, 1e-2]}
        results = []
        for backend in ("threading", "loky"):
            from joblib import parallel_backend
            with parallel_backend(backend, n_jobs=2):
                gs = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(X, y)
            results.append(gs.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(results[0], results[1])   # threads or processes: same numbers


@pytest.mark.parametrize("params,match", [
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(activation="softplus"), "activation"),
    (dict(solver="newton"), "solver"),
    (dict(alpha=-1.0), "alpha"),
    (dict(batch_size=0), "batch_size"),
    (dict(learning_rate_init=0.0), "learning_rate_init"),
    (dict(momentum=1.5), "momentum"),
    (dict(validation_fraction=1.0), "validation_fraction"),
])
def test_bad_parameters_are_refused_by_name(params, match):
    X, y = _data("multiclass")
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**params).fit(X, y)


def test_bad_input_is_refused_and_changes_nothing():
    X, y = _data("regression")
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    before = [c.copy() for c in reg.coefs_]
    with pytest.raises(ValueError, match="features"):
        reg.predict(X[:, :3])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reg.partial_fit(bad, y)
    with pytest.raises(ValueError, match="non-negative"):
        MLPRegressor(loss="poisson").fit(X, y)
    with pytest.raises(AttributeError, match="partial_fit"):
        MLPRegressor(solver="lbfgs").partial_fit(X, y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        MLPClassifier().partial_fit(X, y > 0)
    for p, q in zip(reg.coefs_, before):
        np.testing.assert_array_equal(p, q)


def test_divergence_raises_scikit_learn_error():
    """Without early stopping a diverged fit raises scikit-learn's error (fastbp at once,
    scikit-learn after its remaining epochs on NaN)."""
    X, y = _data("regression")
    params = dict(solver="sgd", learning_rate_init=1e6, max_iter=50, random_state=0)
    for cls in (MLPRegressor, sk.MLPRegressor):
        with pytest.raises(ValueError, match="non-finite parameter weights"), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(**params).fit(X * 1e3, y * 1e6)


def _iris():
    from sklearn.datasets import load_iris
    iris = load_iris()
    return iris.data, iris.target


def test_mlp_diverging_loss():
    """scikit-learn's own test_mlp_diverging_loss (sklearn/neural_network/tests/test_mlp.py,
    the non-regression test of scikit-learn issue 29504), run on fastbp's MLPRegressor: a
    diverging fit with early stopping raises nothing, and its last validation score is a NaN
    Python float."""
    X_iris, y_iris = _iris()
    mlp = MLPRegressor(
        hidden_layer_sizes=100,
        activation="identity",
        solver="sgd",
        alpha=0.0001,
        learning_rate="constant",
        learning_rate_init=1,
        shuffle=True,
        max_iter=20,
        early_stopping=True,
        n_iter_no_change=10,
        random_state=0,
    )

    with warnings.catch_warnings():
        # RuntimeWarning: overflow encountered in matmul
        # ConvergenceWarning: Stochastic Optimizer: Maximum iteration
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_iris, y_iris)

    # In python, float("nan") != float("nan")
    assert str(mlp.validation_scores_[-1]) == str(np.nan)
    assert isinstance(mlp.validation_scores_[-1], float)


_DIVERGING = dict(hidden_layer_sizes=100, activation="identity", solver="sgd", alpha=0.0001,
                  learning_rate="constant", learning_rate_init=1, max_iter=20,
                  early_stopping=True, n_iter_no_change=10, random_state=0)
# scikit-learn's case (the first overflow: the gradient's squared norm in epoch 5, whose loss
# is still finite), the first overflow part-way through an epoch, a best epoch after the first,
# the adaptive rate's cuts, sample weights, float32, a Nesterov-free momentum, an update that
# overflows part-way through an epoch, Adam (the gradient's squared norm overflows at the
# epoch's second step, its loss still finite: the continuation's sum and Adam's step count;
# scikit-learn's fit stays finite)
_DIVERGING_CASES = {
    "scikit-learn's": ("iris", {}),
    "mid-epoch": ("regression", dict(hidden_layer_sizes=(7, 5), batch_size=16,
                                     learning_rate_init=0.12)),
    "later best epoch": ("regression", dict(hidden_layer_sizes=(7, 5), learning_rate_init=0.25,
                                            random_state=3)),
    "adaptive": ("iris", dict(learning_rate="adaptive", n_iter_no_change=2, max_iter=30)),
    "sample weights": ("iris", dict(batch_size=50)),
    "float32": ("iris32", {}),
    "momentum": ("regression", dict(hidden_layer_sizes=(7, 5), nesterovs_momentum=False,
                                    batch_size=16, learning_rate_init=0.1)),
    "update overflows": ("regression", dict(hidden_layer_sizes=(7, 5), batch_size=16,
                                            learning_rate_init=1e308)),
    "adam": ("iris", dict(solver="adam", learning_rate_init=1e60, batch_size=45)),
}


def _diverging_fit(case, cls):
    data, params = _DIVERGING_CASES[case]
    X, y = _iris() if data.startswith("iris") else _data("regression")
    if data == "iris32":
        X = X.astype(np.float32)
    sw = np.linspace(0.2, 3.0, len(X)) if case == "sample weights" else None
    est = cls(**{**_DIVERGING, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y, sample_weight=sw)
    return est


@pytest.mark.parametrize("case", list(_DIVERGING_CASES))
def test_diverged_fit_with_early_stopping_follows_scikit_learn(case, monkeypatch):
    """With early stopping a fit whose loss overflows goes on as scikit-learn's: every epoch
    runs (a NaN validation score is never "no improvement"), the losses and scores turn inf
    and NaN where scikit-learn's do, and the best epoch's weights come back at the end."""
    from fastbp import engine
    finish, continued = engine.EpochRunner.finish_unchecked, []

    def spy(runner, diverged):
        continued.append(diverged.what)
        return finish(runner, diverged)

    monkeypatch.setattr(engine.EpochRunner, "finish_unchecked", spy)
    a = _diverging_fit(case, MLPRegressor)
    b = _diverging_fit(case, sk.MLPRegressor)
    assert continued        # the engine's guard tripped: the case takes the diverged path
    if case == "adam":      # Adam's bounded steps: the loss stays finite (~1e244) ...
        assert continued[0] == "the gradient" and np.isfinite(b.loss_curve_).all()
    else:
        assert not np.isfinite(b.loss_curve_[-1]) and np.isnan(b.validation_scores_[-1])
    float32 = case == "float32"
    rtol = 1e-5 if float32 else 1e-9
    # rounding differences grow with the weights in the epochs that blow up (~1e-8 at 1e152)
    curve_rtol = 1e-5 if float32 else 1e-6
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_
    curve_a, curve_b = np.array(a.loss_curve_), np.array(b.loss_curve_)
    if float32:
        # a float32 model's squared error: fastbp's in float32, scikit-learn's in float64 (the
        # targets' dtype), so fastbp's loss may overflow an epoch before scikit-learn's
        finite_a, finite_b = np.isfinite(curve_a), np.isfinite(curve_b)
        assert (finite_a <= finite_b).all() and finite_a[:3].all()
        curve_a, curve_b = curve_a[finite_a], curve_b[finite_a]
    np.testing.assert_allclose(curve_a, curve_b, rtol=curve_rtol, equal_nan=True)
    np.testing.assert_allclose(a.validation_scores_, b.validation_scores_, rtol=curve_rtol,
                               equal_nan=True)
    assert all(type(s) is float for s in a.validation_scores_)
    assert a.best_validation_score_ == pytest.approx(b.best_validation_score_, rel=rtol)
    assert a.best_loss_ is None and (np.isnan(a.loss_) or case == "adam")
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert np.isfinite(p).all()
        np.testing.assert_allclose(p, q, rtol=rtol, atol=1e-6 if float32 else 1e-12)
    X = _iris()[0] if _DIVERGING_CASES[case][0].startswith("iris") else _data("regression")[0]
    assert np.isfinite(a.predict(X)).all()


def test_diverged_fit_restores_the_best_epochs_weights(monkeypatch):
    """The weights after a diverged fit with early stopping are the best epoch's, bit for bit:
    finite, although every epoch's weights after the overflow are not."""
    from fastbp.sklearn._base import _BaseMLP
    snapshots = []
    update = _BaseMLP._update_no_improvement_count

    def spy(self, early_stopping, score):     # the weights at the end of each epoch
        snapshots.append(self._params()[0].copy())
        return update(self, early_stopping, score)

    monkeypatch.setattr(_BaseMLP, "_update_no_improvement_count", spy)
    est = _diverging_fit("later best epoch", MLPRegressor)
    scores = np.array(est.validation_scores_)
    best = int(np.nanargmax(scores))
    assert len(snapshots) == est.n_iter_ == 20 and 0 < best < 19
    assert np.isnan(scores[-1]) and not np.isfinite(snapshots[-1]).all()
    restored = est._params()[0]      # the flat buffer behind coefs_ and intercepts_
    assert np.isfinite(restored).all()
    np.testing.assert_array_equal(restored, snapshots[best])
    assert est.best_validation_score_ == scores[best]
    X, y = _data("regression")
    assert np.isfinite(est.predict(X)).all()


def test_diverged_classifier_with_early_stopping_follows_scikit_learn():
    """A classifier's NaN outputs still predict a class (scikit-learn scores their accuracy,
    not NaN): NaN weights can score best, be restored, and fail the final check, as
    scikit-learn's do."""
    X, y = _iris()
    params = dict(_DIVERGING, learning_rate_init=100, batch_size=20)
    fitted = []
    for cls in (MLPClassifier, sk.MLPClassifier):
        est = cls(**params)
        with pytest.raises(ValueError, match="non-finite parameter weights"), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X * 1000, y)
        fitted.append(est)
    a, b = fitted
    assert a.n_iter_ == b.n_iter_ < params["max_iter"]    # finite scores: no improvement stops it
    np.testing.assert_array_equal(a.validation_scores_, b.validation_scores_)
    assert np.isnan(a.loss_curve_[-1]) and np.isnan(b.loss_curve_[-1])


def test_import_without_scikit_learn():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'sklearn': raise ImportError('blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import fastbp\n"
            "try:\n"
            "    fastbp.MLPClassifier\n"
            "except ImportError as e:\n"
            "    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERR" in out.stdout and "fastbp[sklearn]" in out.stdout


# scikit-learn's own MLPs run its common checks with max_iter=100, and two checks with other
# parameters (sklearn/utils/_test_common/instance_generator.py): the same here
_CHECK_PARAMS = {("MLPClassifier", "check_sample_weight_equivalence_on_dense_data"): dict(solver="lbfgs"),
                 ("MLPRegressor", "check_sample_weight_equivalence_on_dense_data"):
                     dict(solver="sgd", tol=1e-2, random_state=42)}


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_scikit_learn_estimator_checks(estimator, check):
    name = getattr(check, "func", check).__name__
    params = _CHECK_PARAMS.get((type(estimator).__name__, name))
    if params:   # on a copy: the instance is shared by every check
        estimator = clone(estimator).set_params(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_float64_input_overflowing_a_float32_model_is_refused_by_name():
    X, y = _data("regression")
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X.astype(np.float32), y)
    big = X.copy()
    big[3, 1] = 1e300
    with pytest.raises(ValueError, match="X \\(as float32\\) contains 1 non-finite"):
        reg.predict(big)
