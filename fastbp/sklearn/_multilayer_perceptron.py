"""The estimators, ``MLPClassifier`` and ``MLPRegressor`` (scikit-learn's
``_multilayer_perceptron.py``): their constructors, labels and outputs."""
import numpy as np

from ._base import _BaseMLP, _R2, _accuracy, _to_onnx
from ._fixes import (ClassifierMixin, LabelBinarizer, RegressorMixin, StrOptions,
                     _check_partial_fit_first_call, _fit_context, available_if,
                     check_is_fitted, column_or_1d, type_of_target, unique_labels,
                     validate_data)

_DOC_PARAMS = """
    Every parameter has scikit-learn 1.9's name, meaning and default; see
    :class:`sklearn.neural_network.{name}`.  ``activation`` also accepts ``"leaky_relu"``.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = ("Multi-layer perceptron classifier: scikit-learn's MLPClassifier on fastbp's "
               "kernels.\n" + _DOC_PARAMS.format(name="MLPClassifier"))

    loss = "log_loss"   # not a parameter (as in scikit-learn): the classifier's only loss

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        self._init_params(hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                          learning_rate_init, power_t, max_iter, None, shuffle, random_state,
                          tol, verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
                          validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes "
                                     f"as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def predict(self, X):
        """Predict the class labels of X."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        return self._decode(self._forward_pass_fast(X, check_input=check_input))

    def _decode(self, out):
        """Class labels from the network's outputs."""
        return self._label_binarizer.inverse_transform(out.ravel() if self.n_outputs_ == 1
                                                       else out)

    def _scorer(self, y, sample_weight):
        return lambda y_pred: _accuracy(y, y_pred, sample_weight)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` (every label) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        y_prob = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)``, columns ordered as ``classes_``."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def to_onnx(self, path):
        """Write the fitted classifier to ``path`` as an ONNX model (opset 17).

        The graph's output ``"output"`` holds the class probabilities, the values of
        :meth:`predict_proba`: ``["batch", n_classes]``, columns ordered as ``classes_``
        (a binary classifier's single logistic unit ``p`` becomes ``[1 - p, p]``; a
        multilabel one gives one probability per label).  Class labels are not in the graph:
        take ``classes_[argmax]`` (``p >= 0.5`` per label for multilabel).  The input
        ``"input"``, ``["batch", n_features]``, is in the model's dtype (float32 when fitted
        on float32 data, else float64) and dense: cast and densify what ``predict_proba``
        would convert.  Needs ``pip install "fastbp[onnx]"``.  Returns ``os.fspath(path)``."""
        check_is_fitted(self)
        return _to_onnx(self, path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = ("Multi-layer perceptron regressor: scikit-learn's MLPRegressor on fastbp's "
               "kernels.\n" + _DOC_PARAMS.format(name="MLPRegressor"))

    _parameter_constraints: dict = {**_BaseMLP._parameter_constraints,
                                    "loss": [StrOptions({"squared_error", "poisson"})]}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        self._init_params(hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                          learning_rate_init, power_t, max_iter, loss, shuffle, random_state, tol,
                          verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
                          validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun)

    def predict(self, X):
        """Predicted values ``(n_samples,)`` or ``(n_samples, n_outputs)``."""
        check_is_fitted(self)
        return self._predict(X)

    def to_onnx(self, path):
        """Write the fitted regressor to ``path`` as an ONNX model (opset 17).

        The graph's output ``"output"`` holds the values of :meth:`predict`, with the same
        shape: ``["batch"]`` for one output, ``["batch", n_outputs]`` otherwise (``loss=
        "poisson"``: the positive rate ``exp(z)``).  The input ``"input"``, ``["batch",
        n_features]``, is in the model's dtype (float32 when fitted on float32 data, else
        float64) and dense: cast and densify what ``predict`` would convert.  Needs
        ``pip install "fastbp[onnx]"``.  Returns ``os.fspath(path)``."""
        check_is_fitted(self)
        return _to_onnx(self, path)

    def _predict(self, X, check_input=True):
        return self._decode(self._forward_pass_fast(X, check_input=check_input))

    @staticmethod
    def _decode(out):
        """Predictions from the network's outputs."""
        return out.ravel() if out.shape[1] == 1 else out

    def _scorer(self, y, sample_weight):
        return _R2(y, sample_weight, self.coefs_[0].dtype)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
