"""A trained network with its fitted preprocessor (:class:`Model`): predictions from tables by
column name, evaluation, saving; :func:`prepare`, the one way a table becomes training data
(the command line and the Python API share it); :func:`load`, ``fastbp.load``."""
import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .._validation import InputError, check_dtype, check_float, check_int, check_weights
from ..model import network as _network
from .preprocess import Preprocessor, infer_roles, split_rows
from .tables import read_table

MODEL_FILE = "model.npz"     # in a run directory (fastbp train --out)


class Model:
    """A :class:`fastbp.Network` behind the :class:`~fastbp.data.Preprocessor` fitted on its
    training table: what ``fastbp train`` writes and :func:`fastbp.load` reads.

    ``predict``, ``predict_proba``, ``transform`` and ``evaluate`` take any table
    (:func:`fastbp.data.read_table`: a pandas DataFrame, an Arrow table, a dict of columns, a
    file path; a 2-D array for a model trained on arrays, whose columns are named ``0``, ``1``,
    ...), find the input columns by name in any order and ignore the others (the target among
    them).  A missing input column is a ValueError naming it."""

    def __init__(self, network, preprocessor):
        self.network, self.preprocessor = network, preprocessor

    @property
    def classes_(self):
        """A classifier's class labels in their original type (None for a regressor)."""
        return self.preprocessor.classes

    @property
    def feature_names_in_(self):
        """The input columns, by name."""
        return self.preprocessor.input_names

    @property
    def target(self):
        return self.preprocessor.target["name"]

    @property
    def task(self):
        """``"classification"`` or ``"regression"``."""
        return self.preprocessor.task

    def __repr__(self):
        what = (f"{len(self.classes_)} classes" if self.task == "classification"
                else "regression")
        return (f"Model({self.target!r}: {what}, {len(self.feature_names_in_)} input columns, "
                f"{self.network!r})")

    def transform(self, data, delimiter=None):
        """The network's input matrix for the rows of ``data``."""
        table = read_table(data, delimiter, columns=self.feature_names_in_)
        return self.preprocessor.transform(table, self.network.dtype)

    def _outputs(self, data):
        return self.network.predict(self.transform(data))

    def predict(self, data):
        """Class labels (their original type: str, int, bool, ...) for a classifier, values in
        the target's units for a regressor; one per row of ``data``."""
        return typed_labels(self.preprocessor.decode(self._outputs(data)))

    def predict_proba(self, data):
        """A classifier's probabilities, ``(rows, classes)`` in :attr:`classes_`'s order."""
        if self.task != "classification":
            raise InputError("predict_proba needs a classifier; this model is a regressor")
        return self.preprocessor.probabilities(self._outputs(data))

    def evaluate(self, data, delimiter=None):
        """The metrics of the model on ``data``, which holds the target column (rows without a
        target are left out): a classifier's accuracy, balanced_accuracy, f1_macro, log_loss,
        roc_auc, confusion_matrix (rows: the true classes, in ``classes``' order) and classes; a
        regressor's mse, rmse, mae, r2 in the target's units; ``n``, the rows evaluated."""
        table = read_table(data, delimiter, columns=self.feature_names_in_ + [self.target])
        pre = self.preprocessor
        y, present = pre.encode_target(table, self.network.dtype)
        if not present.any():
            raise InputError(f"{table.source}: no row has a target ({self.target!r})")
        X = pre.transform(table, self.network.dtype, rows=np.flatnonzero(present))
        return evaluate_outputs(self.network, pre, X, y)

    def save(self, path):
        """Write the model to ``path`` (one ``.npz``: the network's parameters and, in its JSON
        metadata under the same checksum, the preprocessor; no pickle)."""
        self.network.save(path, extra={"preprocessor": self.preprocessor.to_json()})

    def to_onnx(self, path):
        """Write the model, its preprocessing included, as ONNX: one input per column read,
        ``label`` and ``probabilities`` (classifier) or ``prediction`` (regressor) out (see
        :mod:`fastbp.data.onnx_export`).  Needs ``pip install "fastbp[onnx]"``."""
        from . import onnx_export
        return onnx_export.to_onnx(self, path)


def build_network(pre, layers, **kwargs):
    """A :class:`fastbp.Network` for the fitted preprocessor ``pre``: its inputs (embeddings
    included), the hidden ``layers``, its outputs and output activation; ``kwargs`` as the
    Network takes them.  The rows of an embedding that no training row reaches (the "other"
    and "missing" levels, when training had none) start at zero: an unseen level then adds
    nothing."""
    extra = {"embeddings": pre.embeddings} if pre.embeddings else {}
    net = _network.Network([pre.n_features, *layers, pre.n_outputs],
                           output_activation=pre.output_activation, **extra, **kwargs)
    if pre.embeddings:
        state = net.state_dict()
        for k, row in pre.untrained_rows:
            state[f"embeddings.{k}.weight"][row] = 0
    return net


def evaluate_outputs(net, pre, X, y):
    """The metrics dict of :meth:`Model.evaluate` for the matrix ``X`` and encoded targets
    ``y``."""
    from .metrics import classification_metrics, regression_metrics
    t = pre.target
    out = net.predict(X)
    if t["task"] == "classification":
        labels = y[:, 0].astype(np.int64) if y.ndim == 2 else y
        return classification_metrics(labels, pre.probabilities(out), t["classes"])
    truth = y.astype(np.float64) * t["std"] + t["mean"]
    return regression_metrics(truth, pre.decode(out))


def typed_labels(values):
    """An object array of labels as a plain typed array when they share a type."""
    if values.dtype != object or not values.size:
        return values
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return values.astype(str)
    if kinds == {bool}:
        return values.astype(bool)
    if kinds <= {int}:
        return values.astype(np.int64)
    if kinds <= {int, float}:
        return values.astype(np.float64)
    return values


def resolve(path):
    """The model file of ``path``: ``path`` itself, or ``path/model.npz`` for a run
    directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = os.path.join(path, MODEL_FILE)
        if not os.path.exists(inside):
            raise InputError(f"{path}: a directory without {MODEL_FILE} (not a fastbp run "
                             f"directory)")
        return inside
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    return path


def load(path):
    """Read what :meth:`Network.save` or :meth:`Model.save` wrote; ``path`` is the ``.npz`` or a
    run directory of ``fastbp train`` (its ``model.npz``).

    Returns a :class:`Model` when the file holds a preprocessor (every ``fastbp train`` run),
    else the :class:`fastbp.Network`.  Raises ValueError for a missing, truncated, altered or
    foreign file, or one holding pickled objects; nothing in the file is executed."""
    net, meta = _network.read(resolve(path))
    if meta.get("preprocessor") is None:
        return net
    pre = Preprocessor.from_json(meta["preprocessor"])
    if pre.n_features != net.layer_sizes[0] or (pre.target is not None
                                                and pre.n_outputs != net.layer_sizes[-1]):
        raise InputError(f"{path}: the preprocessor makes {pre.n_features} inputs and "
                         f"{pre.n_outputs if pre.target else '?'} outputs, the network has "
                         f"layer sizes {net.layer_sizes}: the file is damaged")
    return Model(net, pre)


# -- preparing training data ---------------------------------------------------------------
@dataclass
class Prepared:
    """A table made into training data: the matrices and encoded targets of the training and
    validation rows (``val`` None without a validation split), the training rows' sample
    weights (None: unweighted), the fitted preprocessor, and what the summary tells."""
    Xtr: np.ndarray
    ytr: np.ndarray
    val: tuple
    preprocessor: Preprocessor
    wtr: np.ndarray = None
    rows: int = 0
    no_target: int = 0
    notes: list = field(default_factory=list)

    @property
    def fingerprint(self):
        """SHA-256 of everything the training sees (matrices, targets, weights, the fitted
        preprocessor): a resumed run must see the same."""
        h = hashlib.sha256()
        arrays = [self.Xtr, self.ytr] + (list(self.val) if self.val else [])
        arrays += [] if self.wtr is None else [self.wtr]
        for a in arrays:
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).data)       # no copy of a contiguous array
        h.update(json.dumps(self.preprocessor.to_json(), sort_keys=True).encode())
        return h.hexdigest()

    def summary(self, source):
        """The lines shown before training: rows, rows dropped, the columns' roles, the task."""
        pre = self.preprocessor
        t = pre.target
        n_val = 0 if self.val is None else len(self.val[0])
        head = f"fastbp: {source}: {self.rows} rows"
        if self.no_target:
            head += (f", {self.no_target} dropped (no target {t['name']!r}), "
                     f"{self.rows - self.no_target} used")
        head += f": {len(self.Xtr)} training, {n_val} validation"
        if t["task"] == "classification":
            classes = ", ".join(map(str, t["classes"][:8])) + (", ..." if len(t["classes"]) > 8
                                                               else "")
            task = f"classification of {len(t['classes'])} classes ({classes}), {t['loss']}"
        else:
            task = f"regression, {t['loss']}" + (" (the target standardised for training)"
                                                 if t["loss"] == "squared_error" else "")
        lines = [head, f"  target {t['name']!r}: {task}"] + pre.summary() + self.notes
        emb = len(pre.embeddings)
        lines.append(f"  network input: {pre.n_features} columns"
                     + (f" ({emb} of them embedded categories)" if emb else ""))
        return lines


def prepare(data, target=None, *, categorical=(), numeric=(), drop=(), loss=None,
            validation_split=0.25, seed=0, dtype=np.float32, sample_weight=None,
            max_onehot=None, min_frequency=None, scale=True, delimiter=None):
    """Make ``data`` (anything :func:`read_table` takes, or a Table) into training data: the
    target column (default: the last), the columns' roles (:func:`infer_roles`, with the
    overrides), rows without a target dropped, a seeded validation split, the preprocessor
    fitted on the training rows only, the matrices in ``dtype``.  ``sample_weight``: the name
    of a column of weights (not a feature then), or an array of one weight per row.  Returns a
    :class:`Prepared`."""
    dtype = check_dtype(dtype)
    validation_split = check_float("validation_split", validation_split, 0, 1, high_open=True)
    seed = check_int("seed", seed, 0)
    max_onehot = None if max_onehot is None else check_int("max_onehot", max_onehot, 0)
    min_frequency = None if min_frequency is None else check_int("min_frequency", min_frequency)
    table = read_table(data, delimiter)
    if not table.columns:
        raise InputError(f"{table.source}: no columns")
    if target is None:      # the source's own (an .npz's y), else the last column
        target = table.target if table.target in table else table.names[-1]
    elif target not in table:
        raise InputError(f"{table.source}: no column {target!r}; the columns are {table.names}")
    exclude = {target}
    weights = None
    if isinstance(sample_weight, str):
        if sample_weight not in table:
            raise InputError(f"{table.source}: no column {sample_weight!r} for the sample "
                             f"weights; the columns are {table.names}")
        if sample_weight == target:
            raise InputError(f"column {target!r} cannot be both the target and the sample "
                             f"weights")
        col = table[sample_weight]
        if col.kind == "text":
            raise InputError(f"sample weights {sample_weight!r}: the weights must be numbers")
        weights = _check_weights(col.values, table.n_rows, f"column {sample_weight!r}")
        exclude.add(sample_weight)
    elif sample_weight is not None:
        weights = _check_weights(sample_weight, table.n_rows, "sample_weight")
    roles = infer_roles(table, exclude, categorical, numeric, drop)
    present = ~table[target].missing
    with_target = np.flatnonzero(present)
    if with_target.size < 2:
        raise InputError(f"{table.source}: {with_target.size} rows have a target "
                         f"({target!r}): too few to train on")
    pre = Preprocessor(**{k: v for k, v in (("max_onehot", max_onehot),
                                             ("min_frequency", min_frequency))
                          if v is not None}, scale=scale)
    if validation_split:
        tr, va = split_rows(with_target.size, validation_split, seed)
        if tr.size == 0 or va.size == 0:
            raise InputError(f"validation_split {validation_split} leaves an empty set of "
                             f"{with_target.size} samples")
        # in file order: the same rows, gathered faster (the trainer shuffles them anyway)
        train_rows, val_rows = np.sort(with_target[tr]), np.sort(with_target[va])
    else:
        train_rows, val_rows = with_target, None
    pre.fit(table, target, roles, rows=train_rows, loss=loss, all_rows=with_target)
    y_all, present = pre.encode_target(table, dtype)
    where = np.full(table.n_rows, -1, np.int64)
    where[present] = np.arange(int(present.sum()))
    Xtr = pre.transform(table, dtype, rows=train_rows)
    ytr = y_all[where[train_rows]]
    val = None
    if val_rows is not None:
        val = (pre.transform(table, dtype, rows=val_rows), y_all[where[val_rows]])
    wtr = None if weights is None else weights[train_rows]
    if wtr is not None and not wtr.any():
        raise InputError("sample weights: every training row's weight is zero")
    notes = []
    if weights is not None:
        notes.append(f"  sample weights: {sample_weight if isinstance(sample_weight, str) else 'given'}")
    return Prepared(Xtr, ytr, val, pre, wtr, rows=table.n_rows,
                    no_target=int(table.n_rows - with_target.size), notes=notes)


def _check_weights(w, n, source):
    """The sample weights as float64, checked: one finite number >= 0 per row (``source``
    names them in a refusal)."""
    w = np.asarray(w)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    return check_weights(f"sample weights ({source})", w, n, np.float64)
