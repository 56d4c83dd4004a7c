"""scikit-learn's names that the drop-ins use, public and private, in one place (as
scikit-learn keeps its own compatibility shims in ``sklearn/utils/fixes.py``): a release that
moves one breaks here, with the message below when scikit-learn is missing."""
try:
    import scipy.sparse as sp
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
    from sklearn.model_selection._split import _validate_shuffle_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
    from sklearn.utils.optimize import _check_optimize_result
except ImportError as e:  # pragma: no cover - exercised in a subprocess without scikit-learn
    raise ImportError(
        "fastbp.MLPClassifier and fastbp.MLPRegressor need scikit-learn >= 1.6 (and scipy): "
        'pip install "fastbp[sklearn]"') from e


def lbfgs_options(name, value):
    """scikit-learn's extra options of scipy's L-BFGS-B (``iprint`` moved in scipy 1.15);
    ``{name: value}`` where scikit-learn has no helper for it."""
    try:
        from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    except ImportError:  # pragma: no cover - older scikit-learn
        return {name: value}
    return _get_additional_lbfgs_options_dict(name, value)


__all__ = ["sp", "BaseEstimator", "ClassifierMixin", "RegressorMixin", "_fit_context",
           "is_classifier", "ConvergenceWarning", "ShuffleSplit", "StratifiedShuffleSplit",
           "_validate_shuffle_split", "LabelBinarizer", "check_random_state", "column_or_1d",
           "Interval", "Options", "StrOptions", "available_if", "_check_partial_fit_first_call",
           "type_of_target", "unique_labels", "_check_sample_weight", "check_is_fitted",
           "validate_data", "_check_optimize_result", "lbfgs_options"]
