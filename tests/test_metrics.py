"""fastbp.data.metrics against sklearn.metrics: fixed cases, properties (hypothesis), errors."""
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastbp.data.metrics import classification_metrics, regression_metrics

sk = pytest.importorskip("sklearn.metrics")


def _same(ours, theirs, rtol=1e-12, atol=1e-12):
    """Our value (None: undefined) against scikit-learn's (NaN: undefined)."""
    if ours is None:
        return isinstance(theirs, float) and math.isnan(theirs)
    assert isinstance(ours, float)
    return math.isclose(ours, float(theirs), rel_tol=rtol, abs_tol=atol)


def sklearn_classification(y, proba):
    """scikit-learn's values of every classification metric, over K = proba's columns (two for
    a single column)."""
    p = np.asarray(proba)
    if p.ndim == 1 or p.shape[1] == 1:     # P(class 1): P(class 0) = 1 - p in p's dtype
        P = np.column_stack([1 - p.ravel(), p.ravel()])
    else:
        P = p
    K = P.shape[1]
    pred = np.argmax(P, axis=1)
    labels = list(range(K))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # classes absent from y_true, undefined AUC
        out = {
            "accuracy": sk.accuracy_score(y, pred),
            "balanced_accuracy": sk.balanced_accuracy_score(y, pred),
            "f1_macro": sk.f1_score(y, pred, average="macro", zero_division=0),
            "log_loss": sk.log_loss(y, p, labels=labels),
            "confusion_matrix": sk.confusion_matrix(y, pred, labels=labels).tolist(),
        }
        if K == 2:
            out["roc_auc"] = sk.roc_auc_score(y, P[:, 1]) if len(np.unique(y)) == 2 else math.nan
        else:
            out["roc_auc"] = sk.roc_auc_score(y, p, multi_class="ovr", average="macro",
                                              labels=labels)
    return out


def check_classification(y, proba, rtol=1e-12, atol=1e-12):
    ours = classification_metrics(y, proba)
    theirs = sklearn_classification(y, proba)
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc"):
        assert _same(ours[key], theirs[key]), (key, ours[key], theirs[key])
    assert _same(ours["log_loss"], theirs["log_loss"], rtol, atol), (ours["log_loss"],
                                                                     theirs["log_loss"])
    assert ours["confusion_matrix"] == theirs["confusion_matrix"]
    assert ours["n"] == len(y) and type(ours["n"]) is int
    return ours


def check_regression(y, pred, rtol=1e-12, atol=1e-12):
    ours = regression_metrics(y, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # r2 with one sample
        theirs = {"mse": sk.mean_squared_error(y, pred),
                  "rmse": sk.root_mean_squared_error(y, pred),
                  "mae": sk.mean_absolute_error(y, pred),
                  "r2": sk.r2_score(y, pred)}
    for key, value in theirs.items():
        assert _same(ours[key], value, rtol, atol), (key, ours[key], value)
    assert ours["n"] == len(y)
    return ours


# -- fixed cases -----------------------------------------------------------------------------
Y_BIN = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
P_BIN = np.array([0.1, 0.8, 0.35, 0.4, 0.9, 0.6, 0.2, 0.55, 0.7, 0.3])
Y_MULTI = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 0])
P_MULTI = np.array([[.7, .2, .1], [.1, .6, .3], [.2, .2, .6], [.3, .4, .3], [.5, .3, .2],
                    [.4, .4, .2], [.1, .1, .8], [.2, .5, .3], [.6, .1, .3], [.3, .3, .4],
                    [.25, .5, .25], [.9, .05, .05]])


@pytest.mark.parametrize("shape", ["vector", "column", "two columns"])
def test_binary(shape):
    proba = {"vector": P_BIN, "column": P_BIN[:, None],
             "two columns": np.column_stack([1 - P_BIN, P_BIN])}[shape]
    out = check_classification(Y_BIN, proba)
    # hand-checked: predictions 0 1 0 0 1 1 0 1 1 0 (p > 0.5)
    assert out["confusion_matrix"] == [[3, 1], [2, 4]]
    assert out["accuracy"] == 0.7
    assert out["roc_auc"] == pytest.approx(19 / 24)     # 19 of the 24 (pos, neg) pairs ordered


def test_multiclass():
    out = check_classification(Y_MULTI, P_MULTI)
    assert len(out["confusion_matrix"]) == 3 and sum(map(sum, out["confusion_matrix"])) == 12


def test_argmax_ties_take_the_lowest_index():
    proba = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    out = check_classification(np.array([1, 2, 2]), proba)
    assert out["confusion_matrix"] == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    # a single column at exactly 0.5 predicts class 0, as argmax([0.5, 0.5]) does
    assert classification_metrics([1], [0.5])["confusion_matrix"] == [[0, 0], [1, 0]]


def test_class_absent_from_y_true():
    """Class 1 never occurs in y_true but is predicted: balanced accuracy over the present
    classes, F1 over the classes seen anywhere, AUC undefined (scikit-learn: NaN)."""
    y = np.array([0, 2, 2, 0, 2, 3, 3, 0])
    proba = np.array([[.6, .2, .1, .1], [.1, .6, .2, .1], [.1, .1, .7, .1], [.2, .5, .2, .1],
                      [.2, .2, .5, .1], [.1, .1, .1, .7], [.1, .3, .2, .4], [.7, .1, .1, .1]])
    out = check_classification(y, proba)
    assert out["roc_auc"] is None
    assert out["confusion_matrix"][1] == [0, 0, 0, 0]
    assert out["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_class_absent_everywhere_is_left_out_of_f1():
    y = np.array([0, 0, 2, 2])
    proba = np.array([[.8, .1, .1], [.6, .1, .3], [.1, .1, .8], [.5, .1, .4]])
    out = check_classification(y, proba)
    assert out["f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)     # classes 0 and 2 only


def test_one_class_in_y_true():
    out = check_classification(np.ones(5, int), np.array([.9, .2, .6, .7, .4]))
    assert out["roc_auc"] is None
    assert out["balanced_accuracy"] == 0.6


def _pairs_auc(positive, scores):
    """The AUC by its definition: over every (positive, negative) pair, 1 when the positive
    scores higher, 1/2 on a tie."""
    pos, neg = scores[positive], scores[~positive]
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def test_ties_in_scores():
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0, 0, 1])
    p = np.array([.5, .5, .2, .8, .5, .2, .2, .8, .5, .5])
    out = check_classification(y, p)
    # 25 pairs: 10 ordered, 9 tied, 6 reversed
    assert out["roc_auc"] == _pairs_auc(y == 1, p) == 14.5 / 25
    P = np.array([[.4, .3, .3], [.3, .4, .3], [.4, .3, .3], [.3, .3, .4], [.3, .4, .3],
                  [.3, .3, .4], [.4, .3, .3], [.3, .4, .3], [.3, .3, .4]])
    y = np.array([0, 1, 2, 2, 1, 0, 1, 0, 2])
    out = check_classification(y, P)
    assert out["roc_auc"] == pytest.approx(np.mean([_pairs_auc(y == k, P[:, k]) for k in range(3)]))


def test_perfect_predictions():
    y = np.array([0, 1, 2, 1, 0, 2])
    out = check_classification(y, np.eye(3)[y])
    assert out["accuracy"] == out["balanced_accuracy"] == out["f1_macro"] == out["roc_auc"] == 1.0
    # probabilities of exactly 1 and 0 are clipped at eps: the loss is -log(1 - eps), not 0
    assert out["log_loss"] == pytest.approx(-math.log(1 - np.finfo(np.float64).eps))


def test_constant_predictions():
    y = np.array([0, 1, 2, 1, 0, 2, 2])
    out = check_classification(y, np.full((7, 3), 1 / 3))
    assert out["roc_auc"] == 0.5
    assert out["confusion_matrix"] == [[2, 0, 0], [2, 0, 0], [3, 0, 0]]
    out = check_classification(Y_BIN, np.zeros(10))        # P(class 1) = 0 everywhere
    assert out["roc_auc"] == 0.5 and out["log_loss"] == pytest.approx(
        -0.6 * math.log(np.finfo(np.float64).eps) - 0.4 * math.log(1 - np.finfo(float).eps))


def test_float32_input():
    P32 = P_MULTI.astype(np.float32)
    out = check_classification(Y_MULTI, P32, rtol=1e-6, atol=1e-7)
    assert all(type(out[k]) is float for k in ("accuracy", "log_loss", "roc_auc"))
    # eps is float32's: a zero probability of the true class costs -log(eps32)
    out = classification_metrics([0], np.array([[0.0, 1.0]], np.float32))
    assert out["log_loss"] == pytest.approx(-math.log(np.finfo(np.float32).eps))
    assert out["log_loss"] == pytest.approx(sk.log_loss([0], np.array([[0.0, 1.0]], np.float32),
                                                        labels=[0, 1]), rel=1e-6)
    check_classification(Y_BIN, P_BIN.astype(np.float32), rtol=1e-6, atol=1e-7)
    # a single float32 column: P(class 0) = 1 - p is formed in float32, as scikit-learn forms
    # it, then the logarithm taken in float64
    p = np.array([0.1, 0.3, 0.7], np.float32)
    out = classification_metrics([0, 0, 0], p)
    q = (1 - p).astype(np.float64)
    assert out["log_loss"] == pytest.approx(-np.mean(np.log(q)), rel=1e-15)
    assert out["log_loss"] != pytest.approx(-np.mean(np.log(1 - p.astype(np.float64))), rel=1e-9)
    assert out["log_loss"] == pytest.approx(sk.log_loss([0, 0, 0], p, labels=[0, 1]), rel=1e-6)


def test_integer_and_float_label_arrays():
    a = classification_metrics(Y_MULTI, P_MULTI)
    assert classification_metrics(Y_MULTI.astype(np.float64), P_MULTI) == a
    assert classification_metrics(list(Y_MULTI), P_MULTI.tolist()) == a
    assert classification_metrics(Y_BIN.astype(bool), P_BIN) == classification_metrics(Y_BIN, P_BIN)


def test_classes_are_returned_json_ready():
    out = classification_metrics(Y_MULTI, P_MULTI, classes=np.array(["a", "b", "c"]))
    assert out["classes"] == ["a", "b", "c"] and all(type(c) is str for c in out["classes"])
    out = classification_metrics(Y_BIN, P_BIN, classes=np.array([3, 7]))
    assert out["classes"] == [3, 7] and all(type(c) is int for c in out["classes"])
    with pytest.raises(ValueError, match="classes"):
        classification_metrics(Y_BIN, P_BIN, classes=["a", "b", "c"])


def test_regression_fixed():
    y = np.array([3.0, -0.5, 2.0, 7.0])
    pred = np.array([2.5, 0.0, 2.0, 8.0])
    out = check_regression(y, pred)
    assert out == {"mse": 0.375, "rmse": math.sqrt(0.375), "mae": 0.5,
                   "r2": pytest.approx(0.9486081370449679), "n": 4}
    # several outputs: uniform averages; rmse is the mean of the outputs' RMSEs
    Y = np.array([[0.5, 1.0], [-1.0, 1.0], [7.0, -6.0]])
    P = np.array([[0.0, 2.0], [-1.0, 2.0], [8.0, -5.0]])
    out = check_regression(Y, P)
    assert out["rmse"] != pytest.approx(math.sqrt(out["mse"]))
    check_regression(y[:, None], pred)          # (n, 1) against (n,)


def test_regression_constant_targets():
    y = np.full(5, 2.5)
    assert check_regression(y, y.copy())["r2"] == 1.0
    assert check_regression(y, y + 0.1)["r2"] == 0.0
    # one constant output among two: (1.0 or 0.0) averaged with the other's r2
    Y = np.column_stack([y, np.arange(5.0)])
    check_regression(Y, Y + [[0.0, 0.5]])
    check_regression(Y, Y + [[0.5, 0.5]])


def test_regression_perfect_and_one_sample():
    y = np.array([1.0, 2.0, 4.0])
    assert regression_metrics(y, y) == {"mse": 0.0, "rmse": 0.0, "mae": 0.0, "r2": 1.0, "n": 3}
    assert check_regression(np.array([1.0]), np.array([2.0]))["r2"] is None


def test_regression_float32_input():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((40, 2)).astype(np.float32)
    pred = (y + 0.3 * rng.standard_normal((40, 2))).astype(np.float32)
    out = check_regression(y, pred, rtol=1e-5, atol=1e-6)
    # computed in float64: the float64 values of the same float32 numbers, exactly
    assert out == regression_metrics(y.astype(np.float64), pred.astype(np.float64))


def test_json_round_trip():
    for out in (classification_metrics(Y_MULTI, P_MULTI.astype(np.float32),
                                       classes=["x", "y", "z"]),
                classification_metrics(np.ones(3, int), [.2, .4, .9]),      # roc_auc None
                regression_metrics(np.arange(6.0).reshape(3, 2), np.ones((3, 2), np.float32)),
                regression_metrics([1.0], [1.5])):                         # r2 None
        text = json.dumps(out, allow_nan=False)
        assert json.loads(text) == out


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("y, proba, match", [
    ([0, 1], [[0.5, 0.5]], "different lengths"),
    ([], np.empty((0, 2)), "empty"),
    ([0, 1], [0.5, np.nan], "NaN"),
    ([0, 1], [[0.5, 0.5], [np.inf, 0.0]], "infinite"),
    ([0, 1], np.ones((2, 2, 1)) / 2, "shape"),
    ([0, 1], np.empty((2, 0)), "shape"),
    ([[0], [1]], [0.5, 0.5], "1-D"),
    ([0, 1], [[0.6, 0.6], [0.5, 0.5]], "sum to 1"),
    ([0, 1], [1.5, 0.5], r"\[0, 1\]"),
    ([0, 1], [-0.1, 0.5], r"\[0, 1\]"),
    ([0, 2], [0.5, 0.5], "0..1"),
    ([0, -1], [[0.5, 0.5], [0.5, 0.5]], "0..1"),
    ([0, 0.5], [0.5, 0.5], "integer"),
    ([0, np.nan], [0.5, 0.5], "NaN"),
    (["a", "b"], [0.5, 0.5], "numeric"),
])
def test_classification_errors(y, proba, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(np.asarray(y), np.asarray(proba))


@pytest.mark.parametrize("y, pred, match", [
    ([1.0, 2.0], [1.0], "different lengths"),
    (np.ones((3, 2)), np.ones((3, 3)), "outputs"),
    (np.ones((3, 2)), np.ones(3), "outputs"),
    ([], [], "empty"),
    ([1.0, 2.0], [1.0, np.nan], "NaN"),
    ([1.0, np.inf], [1.0, 2.0], "infinite"),
    (np.ones((2, 2, 2)), np.ones((2, 2, 2)), "shape"),
    (1.0, 1.0, "shape"),
])
def test_regression_errors(y, pred, match):
    with pytest.raises(ValueError, match=match):
        regression_metrics(np.asarray(y), np.asarray(pred))


# -- properties ------------------------------------------------------------------------------
# probabilities from few distinct weights (ties in the scores and in the argmax) or many
WEIGHTS = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0]),
                    st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False))


@st.composite
def classification_case(draw):
    K = draw(st.integers(2, 5))
    n = draw(st.integers(1, 40))
    y = np.array(draw(st.lists(st.integers(0, K - 1), min_size=n, max_size=n)))
    if K == 2 and draw(st.booleans()):      # a single column of P(class 1)
        p = np.array(draw(st.lists(st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]),
                                             st.floats(0.0, 1.0)), min_size=n, max_size=n)))
        if draw(st.booleans()):
            p = p[:, None]
    else:
        W = np.array(draw(st.lists(st.lists(WEIGHTS, min_size=K, max_size=K),
                                   min_size=n, max_size=n)))
        W[W.sum(axis=1) == 0, 0] = 1.0
        p = W / W.sum(axis=1, keepdims=True)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return y, p.astype(dtype)


@settings(max_examples=300)
@given(classification_case())
def test_classification_matches_sklearn(case):
    y, p = case
    float32 = p.dtype == np.float32
    ours = check_classification(y, p, rtol=1e-6 if float32 else 1e-12,
                                atol=1e-6 if float32 else 1e-12)
    assert 0.0 <= ours["accuracy"] <= 1.0 and ours["log_loss"] >= 0.0
    assert np.sum(ours["confusion_matrix"]) == len(y)
    if ours["roc_auc"] is not None:     # against the definition too, not only scikit-learn
        P = np.column_stack([1 - p.ravel(), p.ravel()]) if p.ndim == 1 or p.shape[1] == 1 else p
        P = P.astype(np.float64)
        K = P.shape[1]
        expected = (_pairs_auc(y == 1, P[:, 1]) if K == 2 else
                    np.mean([_pairs_auc(y == k, P[:, k]) for k in range(K)]))
        assert ours["roc_auc"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    json.loads(json.dumps(ours, allow_nan=False))


@settings(max_examples=200)
@given(st.integers(1, 30), st.integers(1, 3), st.booleans(), st.booleans(),
       st.integers(0, 2 ** 32 - 1))
def test_regression_matches_sklearn(n, k, vector, constant, seed):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, k)) * rng.uniform(0.1, 100)
    if constant:
        y[:, 0] = y[0, 0]
    pred = y + rng.standard_normal((n, k)) * rng.choice([0.0, 0.01, 1.0])
    if vector and k == 1:
        y, pred = y.ravel(), pred.ravel()
    ours = check_regression(y, pred, rtol=1e-10, atol=1e-12)
    assert ours["rmse"] >= 0.0 and ours["mse"] >= 0.0
    json.loads(json.dumps(ours, allow_nan=False))
