"""Evaluation metrics for ``fastbp evaluate`` and the end-of-training line, in NumPy only.

Each metric is scikit-learn's (``sklearn.metrics``, 1.9) with its default arguments, computed
here without scikit-learn: the tests check every value against it.  Both functions return a
dict of plain Python floats, ints, lists and ``None`` (a metric that is not defined for the
input), ready for ``json.dumps``.  Every value is computed in float64 whatever the input's
dtype (scikit-learn computes float32 input in float32: the two then agree to float32's
precision).
"""
import numpy as np

from .._validation import InputError

__all__ = ["classification_metrics", "regression_metrics"]


def _numeric(name, a):
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise InputError(f"{name} must be numeric; got an array of dtype {a.dtype}")
    return a


def _check_finite(name, a):
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        what = "NaN" if np.isnan(a).any() else "infinite values"
        raise InputError(f"{name} contains {what}")


def _json_scalar(value):
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _auc(positive, scores):
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive`` (both kinds
    present): the Mann-Whitney statistic with tied scores given their average rank, equal to
    the trapezoid area under the ROC curve that ``sklearn.metrics.roc_auc_score`` computes.
    Twice each rank is an integer, so the sum is exact and the result is one division."""
    n = scores.shape[0]
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    ends = np.append(starts[1:], n)
    twice_rank = np.empty(n, np.int64)
    # positions start+1 .. end (1-based) share the average rank (start + 1 + end) / 2
    twice_rank[order] = np.repeat(starts + ends + 1, ends - starts)
    n_pos = int(np.count_nonzero(positive))
    n_neg = n - n_pos
    twice_u = int(twice_rank[positive].sum()) - n_pos * (n_pos + 1)
    return twice_u / (2 * n_pos * n_neg)


def classification_metrics(y_true, proba, classes=None):
    """Metrics of predicted class probabilities.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
        The true class indices, ``0 .. K-1``.
    proba : array-like of float, shape (n, K), or (n, 1) or (n,) when K == 2
        Predicted probabilities, column ``k`` for class ``k`` (each row sums to 1); for two
        classes a single column (or a vector) of P(class 1) is accepted too.  The predicted
        class is the row's argmax (ties: the lowest index).
    classes : sequence of length K, optional
        The class labels in column order; returned as ``"classes"`` (to name the confusion
        matrix's rows and columns).

    Returns
    -------
    dict
        ``accuracy``; ``balanced_accuracy`` (the mean recall over the classes present in
        ``y_true``); ``f1_macro`` (the mean F1 over the classes present in ``y_true`` or in the
        predictions, 0 where undefined); ``log_loss`` (probabilities clipped to
        ``[eps, 1 - eps]``, eps of proba's floating dtype, float64's for integers);
        ``roc_auc`` (two classes: the AUC of P(class 1); more: the one-vs-rest AUC averaged
        over the classes; ``None`` when a class has no sample in ``y_true``, where scikit-learn
        gives NaN); ``confusion_matrix`` (K lists of K counts, rows the true class, columns the
        predicted one); ``n``; and ``classes`` when given.  As scikit-learn's
        ``accuracy_score``, ``balanced_accuracy_score``, ``f1_score(average="macro",
        zero_division=0)``, ``log_loss(labels=range(K))``, ``roc_auc_score`` (of column 1 for
        two classes; ``multi_class="ovr", average="macro", labels=range(K)`` for more) and
        ``confusion_matrix(labels=range(K))``.

    Raises
    ------
    ValueError
        Empty input, lengths that differ, proba of the wrong shape, NaN or infinite values,
        probabilities outside [0, 1] or rows that do not sum to 1, labels that are not
        integers in ``0 .. K-1``, or ``classes`` of the wrong length.
    """
    y = _numeric("y_true", y_true)
    p = _numeric("proba", proba)
    if y.ndim != 1:
        raise InputError(f"y_true must be a 1-D array of class indices; got shape {y.shape}")
    if p.ndim not in (1, 2) or (p.ndim == 2 and p.shape[1] == 0):
        raise InputError("proba must have shape (n, K), or (n,) / (n, 1) for two classes; got "
                         f"shape {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise InputError(f"y_true and proba have different lengths: {y.shape[0]} and "
                         f"{p.shape[0]}")
    n = y.shape[0]
    if n == 0:
        raise InputError("no samples: y_true and proba are empty")
    _check_finite("y_true", y)
    _check_finite("proba", p)
    # scikit-learn clips log_loss's probabilities at the epsilon of their floating dtype
    # (integers: converted to float64 first)
    dtype = p.dtype if p.dtype.kind == "f" else np.dtype(np.float64)
    p = p.astype(dtype, copy=False)
    if p.min() < 0 or p.max() > 1:
        raise InputError(f"proba must hold probabilities in [0, 1]; got values in "
                         f"[{p.min()}, {p.max()}]")
    if p.ndim == 1 or p.shape[1] == 1:
        p1 = p.reshape(n)
        # P(class 0) = 1 - p in proba's dtype, as scikit-learn's log_loss forms it
        P = np.stack([(1 - p1).astype(np.float64), p1.astype(np.float64)], axis=1)
    else:
        P = p.astype(np.float64)
        if not np.allclose(P.sum(axis=1), 1.0):
            raise InputError("each row of proba must sum to 1 (probabilities over the K "
                             "classes)")
    K = P.shape[1]
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        raise InputError("y_true must hold integer class indices")
    if y.min() < 0 or y.max() >= K:
        raise InputError(f"y_true must hold class indices in 0..{K - 1} (proba has {K} "
                         f"columns); got values in [{y.min()}, {y.max()}]")
    y = y.astype(np.int64)
    if classes is not None:
        classes = [_json_scalar(c) for c in classes]
        if len(classes) != K:
            raise InputError(f"classes must name the {K} classes; got {len(classes)}")

    pred = np.argmax(P, axis=1)
    cm = np.bincount(y * K + pred, minlength=K * K).reshape(K, K)
    tp = np.diag(cm)
    true_sum, pred_sum = cm.sum(axis=1), cm.sum(axis=0)

    present = true_sum > 0
    balanced = float(np.mean(tp[present] / true_sum[present]))
    seen = present | (pred_sum > 0)     # sklearn's labels=None: in y_true or in predictions
    f1 = float(np.mean(2.0 * tp[seen] / (true_sum[seen] + pred_sum[seen])))

    eps = float(np.finfo(dtype).eps)
    clipped = np.clip(P[np.arange(n), y], eps, 1 - eps)
    log_loss = float(-np.mean(np.log(clipped)))

    if not present.all():
        roc_auc = None      # a class without positives (two classes: only one class)
    elif K == 2:
        roc_auc = float(_auc(y == 1, P[:, 1]))
    else:
        roc_auc = float(np.mean([_auc(y == k, P[:, k]) for k in range(K)]))

    out = {"accuracy": float(np.mean(pred == y)), "balanced_accuracy": balanced,
           "f1_macro": f1, "log_loss": log_loss, "roc_auc": roc_auc,
           "confusion_matrix": cm.tolist(), "n": int(n)}
    if classes is not None:
        out["classes"] = classes
    return out


def _outputs(name, a):
    a = _numeric(name, a)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    elif a.ndim != 2:
        raise InputError(f"{name} must have shape (n,) or (n, k); got shape {a.shape}")
    return a


def regression_metrics(y_true, y_pred):
    """Metrics of predicted values.

    Parameters
    ----------
    y_true, y_pred : array-like of float, shape (n,) or (n, k)
        True and predicted values (k outputs; ``(n,)`` and ``(n, 1)`` are the same).

    Returns
    -------
    dict
        ``mse``, ``rmse``, ``mae``, ``r2``, ``n``: scikit-learn's ``mean_squared_error``,
        ``root_mean_squared_error``, ``mean_absolute_error`` and ``r2_score``, each averaged
        uniformly over the outputs (``rmse`` is the mean of the outputs' RMSEs, as
        scikit-learn's).  ``r2`` of an output whose true values are constant is 1.0 when it is
        predicted exactly and 0.0 otherwise (scikit-learn's ``force_finite=True``), and
        ``None`` with fewer than two samples (scikit-learn: NaN).

    Raises
    ------
    ValueError
        Empty input, shapes that differ, NaN or infinite values.
    """
    t = _outputs("y_true", y_true)
    p = _outputs("y_pred", y_pred)
    if t.shape[0] != p.shape[0]:
        raise InputError(f"y_true and y_pred have different lengths: {t.shape[0]} and "
                         f"{p.shape[0]}")
    if t.shape[1] != p.shape[1]:
        raise InputError(f"y_true and y_pred have different numbers of outputs: {t.shape[1]} "
                         f"and {p.shape[1]}")
    n = t.shape[0]
    if n == 0 or t.shape[1] == 0:
        raise InputError("no values: y_true and y_pred are empty")
    _check_finite("y_true", t)
    _check_finite("y_pred", p)
    t = t.astype(np.float64)
    p = p.astype(np.float64)

    sq = (t - p) ** 2
    mse_k = np.mean(sq, axis=0)
    if n < 2:
        r2 = None
    else:
        numerator = np.sum(sq, axis=0)
        denominator = np.sum((t - np.mean(t, axis=0)) ** 2, axis=0)
        scores = np.ones(t.shape[1])        # a zero numerator: perfect, 1.0
        valid = (numerator != 0) & (denominator != 0)
        scores[valid] = 1 - numerator[valid] / denominator[valid]
        scores[(numerator != 0) & (denominator == 0)] = 0.0
        r2 = float(np.mean(scores))
    return {"mse": float(np.mean(mse_k)), "rmse": float(np.mean(np.sqrt(mse_k))),
            "mae": float(np.mean(np.mean(np.abs(p - t), axis=0))), "r2": r2, "n": int(n)}
