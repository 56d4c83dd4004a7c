"""The base of the drop-ins (scikit-learn's ``_base.py`` and the shared part of
``_multilayer_perceptron.py``): parameters and their validation, the fit loops (stochastic and
lbfgs) on fastbp's engine, prediction, the early-stopping scores, the ONNX export."""
import warnings
from numbers import Integral, Real

import numpy as np

from .. import engine
from .._validation import _check_finite
from ..engine import Codes, Structure, Workspace
from ..kernels.activations import HIDDEN, NAMES as ACT_NAMES, OUTPUT
from ..kernels.losses import LOSSES
from ._fixes import (BaseEstimator, ConvergenceWarning, Interval, Options, ShuffleSplit,
                     StratifiedShuffleSplit, StrOptions, _check_optimize_result,
                     _check_sample_weight, _fit_context, _validate_shuffle_split,
                     check_random_state, is_classifier, lbfgs_options, sp, validate_data)
from ._stochastic_optimizers import _Optimizer

_STOCHASTIC_SOLVERS = ("sgd", "adam")
# scikit-learn's output activation names -> fastbp's, and the loss each one is trained with
_OUT = {"identity": "identity", "logistic": "sigmoid", "softmax": "softmax", "exp": "exp"}
_LOSS = {"identity": "squared_error", "logistic": "binary_cross_entropy", "softmax": "cross_entropy",
         "exp": "poisson"}


class _BaseMLP(BaseEstimator):
    """The machinery shared by the two estimators (scikit-learn's BaseMultilayerPerceptron)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu", "leaky_relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
    }

    def _init_params(self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                     learning_rate_init, power_t, max_iter, loss, shuffle, random_state, tol,
                     verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
                     validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        if loss is not None:
            self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    # -- the flat parameter buffer behind coefs_ and intercepts_ ----------------------------------
    def _params(self):
        """The flat buffer the kernels train, with ``coefs_``/``intercepts_`` as views into it,
        and the network's :class:`~fastbp.engine.Structure` (kept with the buffer while the
        activation stays the same: ``activation`` may change between fits, and a Structure
        costs ~20 µs to build, twice an epoch with early stopping).

        Rebuilt (copying the user's arrays in) whenever those lists no longer view it: after
        unpickling, cloning, early stopping's restore, or an assignment such as
        ``est.coefs_[0] = W``."""
        cache = getattr(self, "_flat", None)
        if cache is not None:   # still the same view objects (held here, so ids cannot recur)
            flat, views, st, act = cache
            current = list(self.coefs_) + list(self.intercepts_)
            if len(current) == len(views) and all(a is b for a, b in zip(current, views)):
                if act != self.activation:
                    st = Structure(self._sizes(), HIDDEN[self.activation], dtype=flat.dtype)
                    self._flat = (flat, views, st, self.activation)
                return flat, st
        sizes = [np.shape(c)[0] for c in self.coefs_] + [np.shape(self.coefs_[-1])[1]]
        dtype = np.asarray(self.coefs_[0]).dtype
        st = Structure(sizes, HIDDEN[self.activation], dtype=dtype)
        layout, n = st.layout[:, :4], st.n_params
        for l, (n_in, n_out, _, _) in enumerate(layout):
            c, b = np.asarray(self.coefs_[l]), np.asarray(self.intercepts_[l])
            if c.shape != (n_in, n_out) or b.shape != (n_out,):
                raise ValueError(f"coefs_[{l}] / intercepts_[{l}] must have shapes "
                                 f"{(n_in, n_out)} / {(n_out,)}; got {c.shape} / {b.shape}")
        flat = np.empty(n, dtype)
        coefs, intercepts = [], []
        for l, (n_in, n_out, w, b) in enumerate(layout):
            W = flat[w:w + n_in * n_out].reshape(n_in, n_out)
            bias = flat[b:b + n_out]
            W[...] = self.coefs_[l]
            bias[...] = self.intercepts_[l]
            coefs.append(W)
            intercepts.append(bias)
        self.coefs_, self.intercepts_ = coefs, intercepts
        self._flat = (flat, tuple(coefs + intercepts), st, self.activation)
        return flat, st

    def _sizes(self):
        return [c.shape[0] for c in self.coefs_] + [self.n_outputs_]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_flat", None)   # coefs_/intercepts_ hold the values; rebuilt on first use
        return state

    # -- fitting ----------------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sp.issparse(X):
            X = X.toarray()
        if not first_pass and X.dtype != self.coefs_[0].dtype:
            X = X.astype(self.coefs_[0].dtype)
        X = np.ascontiguousarray(X)     # read-only or memory-mapped X: read in place
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        if not is_classifier(self) and self.loss == "poisson" and np.any(y < 0):
            raise ValueError("loss='poisson' needs non-negative targets y; got a minimum of "
                             f"{y.min()}")
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features] + hidden + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        elif [c.shape for c in self.coefs_] != list(zip(layer_units[:-1], layer_units[1:])):
            raise ValueError(f"the fitted layers {[c.shape for c in self.coefs_]} do not match "
                             f"hidden_layer_sizes={self.hidden_layer_sizes} for this data; "
                             f"refit with warm_start=False")
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, y, sample_weight, incremental)
        else:
            self._fit_lbfgs(X, y, sample_weight)
        params, _ = self._params()
        if not np.isfinite(params).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        # Glorot uniform, scikit-learn's factor and draw order (coefs then intercept per layer)
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
            self.intercepts_.append(self._random_state.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
        self._flat = None
        self._best_params = self._params()[0].copy()
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _targets(self, y, dtype):
        """``(Yf, Yi, codes, loss_div)`` for the kernels from the (binarised) 2-D targets."""
        out = _OUT[self.out_activation_]
        loss = _LOSS[self.out_activation_]
        codes = Codes(OUTPUT[out], LOSSES[loss])
        if out == "softmax":        # one-hot rows -> class indices (the faster path)
            return np.zeros((1, y.shape[1]), dtype), np.argmax(y, axis=1).astype(np.int64), codes, 1.0
        Yf = np.ascontiguousarray(y, dtype=dtype)
        return Yf, np.empty(0, np.int64), codes, float(y.shape[1]) if loss == "squared_error" else 1.0

    def _fit_stochastic(self, X, y, sample_weight, incremental):
        params, st = self._params()
        dtype = params.dtype
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _Optimizer(self, params.shape[0], dtype)
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            train, val = self._validation_split(X.shape[0], stratify)
            X_train, X_val, y_train, y_val = X[train], X[val], y[train], y[val]
            sw_train, sw_val = ((None, None) if sample_weight is None
                                else (sample_weight[train], sample_weight[val]))
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            Yf_val, Yi_val, val_codes, val_div = self._targets(y_val, dtype)
            # read-only views once (the engine would make them at every epoch's pass)
            val_targets = (engine.readonly(Yf_val), engine.readonly(Yi_val), val_codes, val_div)
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            X_train = np.ascontiguousarray(X_train)
            X_val = engine.readonly(np.ascontiguousarray(X_val))
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            X_val = y_val = sw_val = None
        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        Yf, Yi, codes, loss_div = self._targets(y_train, dtype)
        sw = None if sw_train is None else np.ascontiguousarray(sw_train, dtype)
        opt = self._optimizer
        if early_stopping:      # its validation pass compiled aside too, on a cold start
            engine.expect_calls(dtype, "evaluate_out")
        runner = engine.EpochRunner(params, st, codes, opt.engine, X_train, Yf, Yi,
                                    batch_size, sw=sw, alpha=self.alpha, loss_div=loss_div,
                                    rollback=False)   # scikit-learn keeps the failed update
        if early_stopping:      # allocated once: the validation pass runs every epoch
            vws = engine.inference_workspace(st, X_val.shape[0], dtype)
            val_out = np.empty((X_val.shape[0], self.n_outputs_), dtype)
            scorer = self._scorer(y_val, sw_val)
            sw_val_kernel = (None if sw_val is None
                             else engine.readonly(np.ascontiguousarray(sw_val, dtype)))
        else:
            vws = val_out = scorer = None
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:   # sklearn.utils.shuffle's draw (arange, then shuffle), without
                    #                its per-call checks
                    sample_idx = sample_idx[self._random_state.permutation(n_samples)]
                try:
                    epoch = runner.run(sample_idx)
                except engine.Diverged as e:    # as in scikit-learn, the failed update stays
                    if not early_stopping:
                        raise ValueError("Solver produced non-finite parameter weights. The "
                                         "input data may contain large values and need to be "
                                         "preprocessed.") from None
                    # scikit-learn goes on: its losses become inf or NaN, its validation
                    # scores NaN (never "no improvement": the epochs run out), and the best
                    # epoch's weights are restored at the end (scikit-learn issue 29504)
                    epoch = runner.finish_unchecked(e)
                self.n_iter_ += 1
                self.loss_ = epoch.loss
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                score = (self._validation_pass(X_val, val_targets, sw_val_kernel, scorer, vws,
                                               val_out) if early_stopping else None)
                self._update_no_improvement_count(early_stopping, score)
                opt.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if opt.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                                  "optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if early_stopping:
            params[...] = self._best_params    # the best weights, restored in place

    def _validation_split(self, n_samples, stratify):
        """``(train, validation)`` row indices: the split ``train_test_split(...,
        random_state=self._random_state, test_size=self.validation_fraction,
        stratify=stratify)`` makes (the same splitter and draw), without its per-array
        checks and indexing (a quarter of a small fit's fixed cost)."""
        n_train, n_val = _validate_shuffle_split(n_samples, self.validation_fraction, None,
                                                 default_test_size=0.25)
        splitter = ShuffleSplit if stratify is None else StratifiedShuffleSplit
        cv = splitter(test_size=n_val, train_size=n_train, random_state=self._random_state)
        return next(cv.split(np.empty((n_samples, 0)), stratify))

    def _validation_pass(self, X_val, targets, sw, scorer, ws, out):
        """Early stopping's end of an epoch: one pass over the validation set appends the
        validation loss to ``validation_loss_curve_`` and gives the validation score (``scorer``
        from ``_scorer``, built once per fit; ``out``: the outputs' buffer)."""
        params, st = self._params()
        Yf, Yi, codes, loss_div = targets
        total = engine.evaluate(params, st, codes, X_val, Yf, Yi, sw=sw, out=out, ws=ws)
        weight = X_val.shape[0] if sw is None else float(np.sum(sw))
        self.validation_loss_curve_.append(total / loss_div / weight)
        y_pred = self._decode(out)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return scorer(y_pred)

    def _update_no_improvement_count(self, early_stopping, score):
        if early_stopping:
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._params()[0].copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, y, sample_weight):
        try:
            import scipy.optimize
        except ImportError as e:  # pragma: no cover
            raise ImportError('solver="lbfgs" needs scipy: pip install scipy') from e
        params, st = self._params()
        dtype = params.dtype
        # scikit-learn packs every layer's W, then every b: the same coordinate order for L-BFGS
        layout = st.layout[:, :4]
        order = np.concatenate([np.arange(w, w + a * b) for a, b, w, _ in layout]
                               + [np.arange(o, o + b) for _, b, _, o in layout])
        Yf, Yi, codes, loss_div = self._targets(y, dtype)
        n = X.shape[0]
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype)
        ws = Workspace(st, n, dtype, train=True)
        grads = np.empty_like(params)
        rows = np.arange(n, dtype=np.int64)

        def loss_grad(x):
            params[order] = x
            loss, wsum = engine.batch_gradients(params, st, codes, X, Yf, Yi, rows, grads, ws,
                                                sw=sw, alpha=self.alpha, loss_div=loss_div)
            return loss / wsum, grads[order]

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        extra = lbfgs_options("iprint", iprint)
        opt_res = scipy.optimize.minimize(
            loss_grad, params[order], method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol, **extra})
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        params[order] = opt_res.x

    # -- prediction -------------------------------------------------------------------------------
    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        if sp.issparse(X):
            X = X.toarray()
        params, st = self._params()
        before = X.dtype
        with np.errstate(over="ignore"):    # an overflow is reported below, by name
            X = np.ascontiguousarray(X, dtype=params.dtype)
        if before != params.dtype:     # e.g. float64 values that overflow a float32 model
            _check_finite(f"X (as {params.dtype})", X)
        out = np.empty((X.shape[0], self.n_outputs_), params.dtype)
        codes = Codes(OUTPUT[_OUT[self.out_activation_]])
        return engine.predict(params, st, codes, X, out)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. %s is "
                                 "not stochastic." % self.solver)
        return True

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            float32 input trains a float32 model; anything else trains in float64.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _accuracy(y_true, y_pred, sample_weight):
    """sklearn.metrics.accuracy_score on already-validated labels, without its per-call checks
    (early stopping scores every epoch)."""
    if y_true.ndim == 2:    # multilabel: a row counts when every label matches
        score = np.count_nonzero(y_true != y_pred, axis=1) == 0
    else:
        score = y_true == y_pred
    return float(np.average(score, weights=sample_weight))


class _R2:
    """sklearn.metrics.r2_score (uniform average over outputs, force_finite) against fixed,
    validated targets, computed as scikit-learn computes it; the denominator once (early
    stopping scores every epoch).  ``pred_dtype``: the predictions' dtype."""

    def __init__(self, y_true, sample_weight, pred_dtype):
        # scikit-learn's dtype: the widest floating one among the arrays (integer targets do
        # not count: a float32 model's score of integer targets is float32's)
        arrays = (y_true, sample_weight, np.empty(0, pred_dtype))
        dtype = np.result_type(*[a.dtype for a in arrays
                                 if a is not None and np.issubdtype(a.dtype, np.floating)])
        self.dtype = dtype
        self.y = np.asarray(y_true, dtype).reshape(len(y_true), -1)
        self.weight = None if sample_weight is None else sample_weight[:, None]
        self.denominator = self._weighted_sum(
            (self.y - np.average(self.y, axis=0, weights=sample_weight)) ** 2)

    def _weighted_sum(self, sq):
        # scikit-learn multiplies by weight = 1.0 when there are none: exact, so skipped
        return np.sum(sq if self.weight is None else self.weight * sq, axis=0)

    def __call__(self, y_pred):
        y_pred = np.asarray(y_pred, self.dtype).reshape(len(y_pred), -1)
        numerator = self._weighted_sum((self.y - y_pred) ** 2)
        if numerator.shape[0] == 1:     # one output: the same score without the masks below
            num, den = numerator[0], self.denominator[0]
            return 1.0 if num == 0 else 0.0 if den == 0 else float(1 - num / den)
        nonzero_den, nonzero_num = self.denominator != 0, numerator != 0
        scores = np.ones(self.y.shape[1], dtype=numerator.dtype)
        valid = nonzero_den & nonzero_num
        scores[valid] = 1 - numerator[valid] / self.denominator[valid]
        scores[nonzero_num & ~nonzero_den] = 0.0
        return float(np.average(scores))


def _to_onnx(estimator, path):
    """Write a fitted estimator to ``path`` as ONNX: its layers as the export takes them; the
    output what ``predict_proba`` (classifier) or ``predict`` (regressor) returns for input in
    the estimator's dtype: ``(batch, n_classes)`` probabilities, ``[1-p, p]`` for a binary
    classifier; ``(batch,)`` for a regressor with one output, ``(batch, n_outputs)``
    otherwise."""
    from ..model import onnx_export
    path = onnx_export._check_path(path)
    estimator._params()     # coefs_/intercepts_ as views of one checked buffer, one dtype
    hidden = ACT_NAMES[HIDDEN[estimator.activation]]
    output = ACT_NAMES[OUTPUT[_OUT[estimator.out_activation_]]]
    n = len(estimator.coefs_)
    layers = [onnx_export.Layer(W, b, hidden if l < n - 1 else output)
              for l, (W, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_))]
    classifier = is_classifier(estimator)
    head = None
    if estimator.n_outputs_ == 1:
        head = "binary_proba" if classifier else "squeeze"
    kind = type(estimator).__name__
    values = "predict_proba, columns ordered as classes_" if classifier else "predict"
    sizes = [W.shape[0] for W in estimator.coefs_] + [estimator.n_outputs_]
    doc = (f"fastbp.{kind}: {values}; layer sizes {sizes}, activation "
           f"{estimator.activation!r}, output activation {estimator.out_activation_!r}")
    return onnx_export.write(onnx_export.model(layers, head=head, name=f"fastbp.{kind}",
                                               doc=doc), path)
