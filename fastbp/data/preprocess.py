"""Column roles and the fitted preprocessor: a :class:`~fastbp.data.tables.Table` in, the
network's input matrix out (and the target encoded for training, decoded at prediction).

Roles (:func:`infer_roles`), from the column's values and the user's overrides:

* **numeric**: numbers (and dates); standardised with the training rows' mean and standard
  deviation; a missing value becomes the training mean (0 after standardising) and, when the
  training rows had missing values in that column, an is-missing indicator column (0/1) follows;
* **boolean**: ``true/false``, ``yes/no``, ``t/f``, ``y/n`` (any case) as a text column's only
  values, Arrow booleans, or a numeric column of 0s and 1s: encoded 0/1, then as numeric;
* **categorical**: strings, and numeric columns named with ``categorical``; levels seen fewer
  than ``min_frequency`` times in the training rows are pooled into an "other" level, which also
  takes levels never seen in training; missing values have a level of their own.  At most
  ``max_onehot`` levels (kept, other and missing together): one-hot columns; more: a learned
  embedding (its codes are the last columns of the matrix, as :class:`fastbp.Network`'s
  ``embeddings`` take them), of ``embedding_dim(levels)`` dimensions;
* **dropped**: given with ``drop``; empty (every value missing); constant; id-like (a text
  column with a distinct value on nearly every row — names, ticket numbers, free text —, or an
  integer column that counts the rows or is named like an index).

The target: a classifier's labels (strings, booleans, or integers with few distinct values)
become class indices (``classes``: sorted, in their original type); a regressor's values are
standardised for training (``mean``, ``std``) and mapped back by :meth:`Preprocessor.decode`.

Everything fitted is plain JSON (:meth:`Preprocessor.to_json`): model files keep it under their
checksum, no pickle.
"""
import math

import numpy as np

from .._validation import InputError
from .tables import Column, _threads

MIN_FREQUENCY = 5       # a categorical level seen fewer times in training is pooled ("other")
MAX_ONEHOT = 16         # levels up to which a categorical column is one-hot (else embedded)
ID_FRACTION = 0.9       # a text column with distinct values on this fraction of its rows
ID_MIN_DISTINCT = 20    # ... and more than this many of them is id-like
INDEX_NAMES = frozenset({"", "id", "index", "rownames", "row", "rowid", "row_id"})
BOOLEANS = (("true", "false"), ("yes", "no"), ("t", "f"), ("y", "n"))
BLOCK_ROWS = 1 << 13    # rows transformed at a time (the block stays in cache)
FORMAT = 1


def embedding_dim(n_levels):
    """fastai's rule of thumb for an embedding's width: ``min(600, round(1.6·n^0.56))``."""
    return int(min(600, round(1.6 * n_levels ** 0.56)))


# -- roles -----------------------------------------------------------------------------------
def column_names(value, what):
    """A list of column names from a comma-separated string or a sequence of strings (None:
    none); ``what`` names the setting in the message of a refusal."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{what} takes column names (a,b or a list); got {value!r}")
    out = []
    for v in value:
        if not isinstance(v, str):
            raise InputError(f"{what} takes column names (a,b or a list); got {v!r}")
        out.append(v.strip())
    return out


def _boolean_levels(levels, used):
    """``(true spellings, false spellings)`` when the used text levels are one of the
    :data:`BOOLEANS` pairs (any case), else None; each list holds the pair's word in lower
    case too, seen or not (a column of "no" and blanks still reads "yes" as true)."""
    words = {levels[i].lower() for i in np.flatnonzero(used)}
    for t, f in BOOLEANS:
        if words and words <= {t, f}:
            trues = {levels[i] for i in np.flatnonzero(used) if levels[i].lower() == t} | {t}
            falses = {levels[i] for i in np.flatnonzero(used) if levels[i].lower() == f} | {f}
            return sorted(trues), sorted(falses)
    return None


def _row_counter(v):
    """An integer column that counts rows: whole numbers in a constant nonzero step."""
    if v.shape[0] < ID_MIN_DISTINCT or np.isnan(v).any():
        return False
    d = np.diff(v)
    return bool(d[0] != 0 and np.all(d == d[0]))


def infer_roles(table, exclude=(), categorical=(), numeric=(), drop=()):
    """``{name: role}`` for the columns of ``table`` not in ``exclude`` (the target, the
    sample weights), with the reason of each dropped one: roles are ``"numeric"``,
    ``"boolean"``, ``"categorical"`` or ``("dropped", reason)``.  ``categorical``, ``numeric``,
    ``drop``: column names the user gave (each must exist)."""
    categorical, numeric, drop = (column_names(categorical, "categorical"),
                                  column_names(numeric, "numeric"), column_names(drop, "drop"))
    for what, names in (("categorical", categorical), ("numeric", numeric), ("drop", drop)):
        for n in names:
            if n not in table:
                raise InputError(f"--{what} {n}: no such column; the columns are "
                                 f"{table.names}")
            if n in exclude:
                raise InputError(f"--{what} {n}: that column is the target or the sample weights")
    both = (set(categorical) & set(numeric)) | (set(drop) & (set(categorical) | set(numeric)))
    if both:
        raise InputError(f"column {sorted(both)[0]!r} is given two roles")
    roles = {}
    for col in table.columns:
        name = col.name
        if name in exclude:
            continue
        if name in drop:
            roles[name] = ("dropped", "--drop")
            continue
        roles[name] = _role(col, name in categorical, name in numeric)
    return roles


NUMERIC_SHARE = 0.9     # a text column whose values are this share numbers is numeric


def _role(col, as_categorical, as_numeric):
    n = len(col)
    if col.kind == "other":
        return ("dropped", f"its type {col.source} is not used")
    miss = col.missing
    n_missing = int(miss.sum())
    if n_missing == n:
        return ("dropped", "empty: every value is missing")
    if col.kind == "text":
        counts = np.bincount(col.values[~miss], minlength=len(col.levels))
        used = counts > 0
        n_used = int(used.sum())
        if as_numeric:
            return "numeric"
        if as_categorical:
            return "categorical"
        if _boolean_levels(col.levels, used) is not None:
            return "boolean" if n_used > 1 or n_missing else ("dropped", "constant")
        if n_used == 1 and not n_missing:
            return ("dropped", f"constant: always {col.levels[int(np.argmax(used))]!r}")
        numbers = ~np.isnan(level_numbers(col.levels))
        if counts[numbers].sum() >= NUMERIC_SHARE * counts.sum():
            return "numeric"        # numbers with a stray token or two ("n.a.", "-")
        if n_used > ID_MIN_DISTINCT and n_used >= ID_FRACTION * (n - n_missing):
            return ("dropped", f"id-like: {n_used} distinct values in {n - n_missing} rows")
        return "categorical"
    v = col.values
    if as_categorical:
        return "categorical"
    finite = v[~miss]
    lo, hi = float(finite.min()), float(finite.max())
    if col.kind == "bool":
        return "boolean" if lo != hi or n_missing else ("dropped", "constant")
    if as_numeric:
        return "numeric"
    if lo == hi and not n_missing:
        return ("dropped", f"constant: always {lo:g}")
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise InputError(f"column {col.name!r} holds an infinite value")
    head = finite[:4096]        # most columns of reals show it in their first values
    integral = bool(np.all(head == np.round(head))) and bool(np.all(finite == np.round(finite)))
    if integral and lo >= 0 and hi <= 1 and lo != hi:
        return "boolean"
    if integral and _row_counter(v):
        return ("dropped", f"id-like: counts the rows ({v[0]:g}, {v[1]:g}, {v[2]:g}, ...)")
    named = col.name.strip().lower()
    if integral and (named in INDEX_NAMES or named.startswith("unnamed:")):
        if np.unique(finite).shape[0] == finite.shape[0] == n:
            return ("dropped", "id-like: an index column (distinct whole numbers)")
    return "numeric"


def level_numbers(levels):
    """Each text level's number (NaN where it is not one)."""
    out = np.empty(len(levels))
    for i, s in enumerate(levels):
        try:
            out[i] = float(s)
        except ValueError:
            out[i] = np.nan
    return out


def _parse_numbers(col):
    """float64 values of a text column read as numbers: NaN where missing or not a number."""
    vals = np.append(level_numbers(col.levels), np.nan)
    return vals[np.where(col.values < 0, len(col.levels), col.values)]


def _not_numbers(col):
    """``{"count", "examples", "distinct"}`` of a text column's values that are not numbers
    (how many, the three most frequent, how many different ones)."""
    miss = col.values < 0
    counts = np.bincount(col.values[~miss], minlength=len(col.levels))
    bad = np.flatnonzero(np.isnan(level_numbers(col.levels)) & (counts > 0))
    order = bad[np.argsort(-counts[bad], kind="stable")]
    return {"count": int(counts[bad].sum()), "examples": [col.levels[i] for i in order[:3]],
            "distinct": int(bad.size)}


# -- level matching -------------------------------------------------------------------------
def number_text(x):
    """A number as settings and levels spell it: whole numbers without ``.0``."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _key(x, numeric):
    """The matching key of a level or value ``x`` (a str, or a float read from a number
    column): against numeric levels its float (``true``/``false`` as 1/0; None when a string
    is no number), against text levels its text (whole numbers without ``.0``)."""
    if numeric:
        if isinstance(x, str):
            w = x.strip().lower()
            if w in ("true", "false"):
                return float(w == "true")
            try:
                return float(w)
            except ValueError:
                return None
        return float(x)
    return x if isinstance(x, str) else number_text(x)


def _index(col, levels, numeric):
    """Each row's index into ``levels`` (-1: missing, -2: not one of them) for the column
    ``col`` of whatever kind it has now: text matched as text, numbers as numbers (a text
    column against numeric levels is parsed, numbers against text levels are printed)."""
    where = {_key(v, numeric): i for i, v in enumerate(levels)}
    if col.kind == "text":
        lut = np.array([where.get(_key(s, numeric), -2) for s in col.levels] + [-1], np.int64)
        return lut[np.where(col.values < 0, len(col.levels), col.values)]
    if col.kind == "bool" and not numeric:      # True/False in a file read as booleans
        spelt = {str(v).lower(): i for i, v in enumerate(levels)}
        col = Column(col.name, "text", np.where(np.isnan(col.values), -1,
                                                col.values).astype(np.int32),
                     ["false", "true"], col.source)
        lut = np.array([spelt.get("false", -2), spelt.get("true", -2), -1], np.int64)
        return lut[np.where(col.values < 0, 2, col.values)]
    v = col.values
    miss = np.isnan(v)
    out = np.full(v.shape[0], -1, np.int64)
    uniq, inv = np.unique(v[~miss], return_inverse=True)
    if uniq.size:
        lut = np.array([where.get(_key(u, numeric), -2) for u in uniq.tolist()], np.int64)
        out[~miss] = lut[inv]
    return out


def _boolean_values(col, spec):
    """0/1 float64 values (NaN missing) of a boolean column, whatever its kind now."""
    if col.kind in ("bool", "number"):
        v = col.values.copy()
        bad = ~np.isnan(v) & (v != 0) & (v != 1)
        if bad.any():
            raise InputError(f"column {col.name!r} is boolean; it holds {v[bad][0]:g}")
        return v
    trues = {s.lower() for s in spec.get("true", [])} or {t for t, _ in BOOLEANS}
    falses = {s.lower() for s in spec.get("false", [])} or {f for _, f in BOOLEANS}
    lut = np.empty(len(col.levels) + 1)
    for i, s in enumerate(col.levels):
        w = s.lower()
        if w in trues or w in ("true", "1", "1.0"):
            lut[i] = 1.0
        elif w in falses or w in ("false", "0", "0.0"):
            lut[i] = 0.0
        else:
            raise InputError(f"column {col.name!r} is boolean ({'/'.join(sorted(trues))} or "
                             f"{'/'.join(sorted(falses))}); it holds {s!r}")
    lut[-1] = np.nan
    return lut[np.where(col.values < 0, len(col.levels), col.values)]


def _numeric_values(col):
    if col.kind == "text":
        return _parse_numbers(col)
    return col.values


# -- the target ------------------------------------------------------------------------------
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")
REGRESSION_LOSSES = ("squared_error", "poisson")
MAX_INT_CLASSES = 20


def _label_values(col):
    """The target column's values as a Python-typed list of its distinct labels and each row's
    index into them (-1 missing): strings, booleans, numbers (ints when whole)."""
    miss = col.missing
    if col.kind == "text":
        counts = np.bincount(col.values[~miss], minlength=len(col.levels))
        used = np.flatnonzero(counts)
        order = sorted(used, key=lambda i: col.levels[i])
        lut = np.full(len(col.levels) + 1, -1, np.int64)
        lut[np.array(order, np.int64)] = np.arange(len(order))
        return [col.levels[i] for i in order], lut[np.where(miss, len(col.levels), col.values)]
    v = col.values
    uniq, inv = np.unique(v[~miss], return_inverse=True)
    idx = np.full(len(col), -1, np.int64)
    idx[~miss] = inv
    if col.kind == "bool":
        labels = [bool(u) for u in uniq]
    elif np.all(uniq == np.round(uniq)):
        labels = [int(u) for u in uniq]
    else:
        labels = [float(u) for u in uniq]
    return labels, idx


def _finite_target(name, v, rows=None):
    """Refuse an infinite target value, naming the column and the row."""
    bad = np.isinf(v)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        where = f"row {int(rows[r]) + 1}" if rows is not None else "a row"
        raise InputError(f"target {name!r} holds an infinite value ({where})")


def choose_task(col, loss=None):
    """``(task, loss)`` for the target column ``col``: text (unless every value is a number)
    and boolean targets, and whole numbers with at most :data:`MAX_INT_CLASSES` distinct
    values (and at most a fifth of the rows), are classified (cross-entropy); anything else is
    regressed (squared error), unless ``loss`` says."""
    numbers = col.kind == "number" or (col.kind == "text" and col.levels and not np.isnan(
        level_numbers(col.levels)).any())
    if loss is not None:
        if loss in CLASSIFICATION_LOSSES:
            return "classification", loss
        if loss in REGRESSION_LOSSES:
            if not numbers:
                raise InputError(f"target {col.name!r} holds labels, not numbers: loss {loss} "
                                 f"needs numbers")
            return "regression", loss
        raise InputError(f"unknown loss {loss!r}; expected cross_entropy, binary_cross_entropy, "
                         f"squared_error or poisson")
    if col.kind == "bool" or not numbers:
        return "classification", "cross_entropy"
    v = _numeric_values(col)
    v = v[~np.isnan(v)]
    _finite_target(col.name, v)
    if v.size and np.all(v == np.round(v)):
        k = np.unique(v).shape[0]
        if k <= MAX_INT_CLASSES and k <= max(2, v.shape[0] // 5):
            return "classification", "cross_entropy"
    return "regression", "squared_error"


# -- the preprocessor ------------------------------------------------------------------------
class Preprocessor:
    """The fitted transformation of a table's columns into the network's input (see the module's
    docstring).  Build it with :meth:`fit`, or from saved JSON with :meth:`from_json`.

    Attributes (after fitting): ``columns`` (one dict per input column used, in table order:
    name, role and what was fitted), ``dropped`` (``[{"name", "reason"}]``), ``target`` (name,
    task, loss, and ``classes`` or ``mean``/``std``), ``feature_names`` (the matrix's columns),
    ``embeddings`` (``[(levels, dim)]`` of the embedded columns, whose codes end the matrix)."""

    def __init__(self, max_onehot=MAX_ONEHOT, min_frequency=MIN_FREQUENCY, scale=True):
        self.max_onehot = int(max_onehot)
        self.min_frequency = int(min_frequency)
        self.scale = bool(scale)
        self.columns, self.dropped, self.target = [], [], None

    # -- fitting -------------------------------------------------------------------------
    def fit(self, table, target, roles, rows=None, loss=None, all_rows=None):
        """Fit on ``rows`` of ``table`` (the training rows; None: all) with the ``roles`` of
        :func:`infer_roles`; ``target``: the target column's name (None: no target).  The
        classes of a classifier come from ``all_rows`` (the rows with a target; None: all)."""
        columns, dropped = [], []         # assigned at the end: a refused fit changes nothing
        for col in table.columns:
            role = roles.get(col.name)
            if role is None:
                continue
            if isinstance(role, tuple):
                dropped.append({"name": col.name, "reason": role[1]})
                continue
            c = col if rows is None else col.take(rows)     # one column at a time
            if role == "categorical":
                columns.append(self._fit_categorical(c))
            elif role == "boolean":
                spec = {"name": col.name, "role": "boolean"}
                if c.kind == "text":
                    counts = np.bincount(col.values[col.values >= 0], minlength=len(col.levels))
                    t, f = _boolean_levels(col.levels, counts > 0)
                    spec["true"], spec["false"] = t, f
                columns.append(self._fit_numeric(spec, _boolean_values(c, spec)))
            else:
                spec = {"name": col.name, "role": "numeric"}
                if c.kind == "text":        # numbers with a few that are not
                    bad = _not_numbers(c)
                    if bad["count"]:
                        spec["not_numbers"] = bad
                columns.append(self._fit_numeric(spec, _numeric_values(c)))
        if not columns:
            raise InputError(f"{table.source}: no feature columns are left (dropped: "
                             + ", ".join(f"{d['name']} ({d['reason']})" for d in dropped)
                             + ")" if dropped else f"{table.source}: no feature columns")
        fitted = None
        if target is not None:
            fitted = self._fit_target(table[target], rows, loss, all_rows)
        self.columns, self.dropped, self.target = columns, dropped, fitted
        return self

    def _fit_numeric(self, spec, v):
        present = v[~np.isnan(v)]
        if present.size and self.scale:
            mean = float(present.mean())
            std = float(present.std())
        else:
            mean, std = 0.0, 1.0
        if not std > 0 or not math.isfinite(std):
            std = 1.0
        spec.update(mean=mean, std=std, indicator=bool(present.size < v.size))
        return spec

    def _fit_categorical(self, c):
        if c.kind == "text":
            miss = c.values < 0
            counts = np.bincount(c.values[~miss], minlength=len(c.levels))
            levels = [(c.levels[i], int(counts[i])) for i in np.flatnonzero(counts)]
            numeric = False
        else:
            v = c.values
            miss = np.isnan(v)
            uniq, counts = np.unique(v[~miss], return_counts=True)
            levels = [(float(u) if c.kind == "number" else bool(u), int(k))
                      for u, k in zip(uniq, counts)]
            numeric = True
        kept = sorted((lv for lv, k in levels if k >= self.min_frequency),
                      key=lambda x: (isinstance(x, str), x))
        other = any(k < self.min_frequency for _, k in levels)
        if not kept and 0 < len(levels) <= self.max_onehot:
            # every level rare, but few of them (a small table): keep them all rather than none;
            # many rare levels (an id, a name per row or two) pool into "other" as they are
            kept = sorted((lv for lv, _ in levels), key=lambda x: (isinstance(x, str), x))
            other = False
        if c.kind == "bool":
            kept = [float(x) for x in kept]
        spec = {"name": c.name, "role": "categorical", "levels": kept,
                "numeric_levels": numeric, "other": bool(other), "missing": bool(miss.any())}
        n_onehot = len(kept) + other + spec["missing"]
        if n_onehot <= self.max_onehot:
            spec["encoding"] = "onehot"
        else:
            spec["encoding"] = "embedding"
            spec["dim"] = embedding_dim(len(kept) + 2)
        return spec

    def _fit_target(self, col, rows, loss, all_rows):
        task, loss = choose_task(col, loss)
        t = {"name": col.name, "task": task, "loss": loss}
        if task == "classification":
            labels, idx = _label_values(col if all_rows is None else col.take(all_rows))
            if len(labels) < 2:
                raise InputError(f"target {col.name!r} has a single class {labels}: nothing to "
                                 f"learn")
            if loss == "binary_cross_entropy" and len(labels) != 2:
                raise InputError(f"loss binary_cross_entropy needs two classes; target "
                                 f"{col.name!r} has {len(labels)}")
            n = int((idx >= 0).sum())
            if len(labels) > MAX_INT_CLASSES and len(labels) > n // 2:
                raise InputError(f"target {col.name!r} has {len(labels)} distinct labels in {n} "
                                 f"rows: a classifier needs several rows per class (an id? "
                                 f"give another --target)")
            t["classes"] = labels
        else:
            v = _numeric_values(col)
            v = v if rows is None else v[rows]
            v = v[~np.isnan(v)]
            _finite_target(col.name, v)
            if loss == "poisson":
                if np.any(v < 0):
                    raise InputError(f"loss poisson needs targets >= 0; {col.name!r} has "
                                     f"{v.min():g}")
                t["mean"], t["std"] = 0.0, 1.0      # the rate's own units
            else:
                std = float(v.std()) if v.size else 1.0
                t["mean"] = float(v.mean()) if v.size else 0.0
                t["std"] = std if std > 0 and math.isfinite(std) else 1.0
        return t

    # -- what it makes -------------------------------------------------------------------
    @property
    def feature_names(self):
        """The names of the matrix's columns: numeric and boolean columns by name (an
        indicator as ``name=missing``), one-hot columns as ``name=level`` (``name=(other)``,
        ``name=(missing)``), embedded columns' codes as ``name`` (last)."""
        out, tail = [], []
        for c in self.columns:
            if c["role"] != "categorical":
                out.append(c["name"])
                if c["indicator"]:
                    out.append(f"{c['name']}=(missing)")
            elif c["encoding"] == "onehot":
                out += [f"{c['name']}={_show(v)}" for v in c["levels"]]
                out += [f"{c['name']}=(other)"] * c["other"]
                out += [f"{c['name']}=(missing)"] * c["missing"]
            else:
                tail.append(c["name"])
        return out + tail

    @property
    def n_features(self):
        return len(self.feature_names)

    @property
    def embeddings(self):
        """``[(levels, dim)]`` of the embedded columns, in the order of their codes at the end
        of the matrix: each table has the kept levels, then "other", then "missing"."""
        return [(len(c["levels"]) + 2, c["dim"]) for c in self.columns
                if c["role"] == "categorical" and c["encoding"] == "embedding"]

    @property
    def untrained_rows(self):
        """``[(embedding k, row)]``: the "other" and "missing" rows of each embedding that no
        training row reaches (zero them: an unseen level then adds nothing)."""
        out = []
        k = 0
        for c in self.columns:
            if c["role"] == "categorical" and c["encoding"] == "embedding":
                m = len(c["levels"])
                if not c["other"]:
                    out.append((k, m))
                if not c["missing"]:
                    out.append((k, m + 1))
                k += 1
        return out

    @property
    def input_names(self):
        """The table's columns the preprocessor reads (by name)."""
        return [c["name"] for c in self.columns]

    @property
    def classes(self):
        return None if self.target is None else self.target.get("classes")

    @property
    def task(self):
        return None if self.target is None else self.target["task"]

    @property
    def n_outputs(self):
        t = self.target
        if t["task"] == "regression":
            return 1
        return 1 if t["loss"] == "binary_cross_entropy" else len(t["classes"])

    @property
    def output_activation(self):
        return {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid",
                "squared_error": "identity", "poisson": "exp"}[self.target["loss"]]

    # -- applying it ---------------------------------------------------------------------
    def check_columns(self, table):
        """Refuse a table that lacks one of the input columns (naming it)."""
        missing = [n for n in self.input_names if n not in table]
        if missing:
            raise InputError(f"{table.source}: column{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(repr(m) for m in missing)} missing; the model reads "
                             f"{self.input_names}")

    def transform(self, table, dtype=np.float32, rows=None):
        """The matrix ``(rows, n_features)`` in ``dtype`` of ``table``'s rows (``rows``: an index
        array; None: all), its columns found by name (any order; others ignored)."""
        self.check_columns(table)
        n = table.n_rows if rows is None else len(rows)
        X = np.empty((n, self.n_features), dtype)
        parts = [self._encoder(c, table[c["name"]]) for c in self.columns]
        order = [p for p in parts if not p[2]] + [p for p in parts if p[2]]
        # a block of rows is built column by column in a column-major buffer (contiguous
        # writes), then copied into the rows of X (one transposing copy, in cache); the
        # blocks are shared out to threads (NumPy lets go of the GIL in these loops)
        blocks = list(range(0, n, BLOCK_ROWS))

        def work(part):
            buf = np.empty((self.n_features, min(n, BLOCK_ROWS)), dtype)
            for r0 in part:
                r1 = min(n, r0 + BLOCK_ROWS)
                idx = slice(r0, r1) if rows is None else rows[r0:r1]
                block = buf[:, :r1 - r0]
                j = 0
                for width, fill, _ in order:
                    fill(block[j:j + width], idx)
                    j += width
                X[r0:r1] = block.T

        workers = min(_threads(), len(blocks))
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(work, [blocks[w::workers] for w in range(workers)]))
        else:
            work(blocks)
        return X

    def _encoder(self, spec, col):
        """``(width, fill(out, row index), is_code)``: the spec's columns of the matrix from
        the column ``col``; ``fill`` writes a block's rows of them into ``out``, shaped
        ``(width, rows)`` (column-major)."""
        role = spec["role"]
        if role in ("numeric", "boolean"):
            v = _numeric_values(col) if role == "numeric" else _boolean_values(col, spec)
            mean, std, ind = spec["mean"], spec["std"], spec["indicator"]

            def fill(out, idx):
                x = v[idx]
                miss = np.isnan(x)
                z = (x - mean) / std
                z[miss] = 0.0
                if not np.isfinite(z).all():
                    raise InputError(f"column {spec['name']!r} holds an infinite value")
                out[0] = z
                if ind:
                    out[1] = miss
            return 1 + ind, fill, False
        codes = _index(col, spec["levels"], spec["numeric_levels"])
        m = len(spec["levels"])
        if spec["encoding"] == "embedding":
            codes = np.where(codes == -1, m + 1, np.where(codes == -2, m, codes))

            def fill(out, idx):
                out[0] = codes[idx]
            return 1, fill, True
        other = m if spec["other"] else -1
        missing = m + spec["other"] if spec["missing"] else -1
        width = m + spec["other"] + spec["missing"]
        col_of = np.where(codes == -1, missing, np.where(codes == -2, other, codes))

        def fill(out, idx):
            out[...] = 0
            c = col_of[idx]
            hit = np.flatnonzero(c >= 0)
            out[c[hit], hit] = 1
        return width, fill, False

    def encode_target(self, table, dtype=np.float32):
        """``(y, present)``: the target of the rows that have one, as the trainer takes it
        (class indices, a (n, 1) 0/1 column for binary cross-entropy, or standardised values),
        and the mask of the rows that have one."""
        t = self.target
        if t["name"] not in table:
            raise InputError(f"{table.source}: no target column {t['name']!r}; the columns are "
                             f"{table.names}")
        col = table[t["name"]]
        if t["task"] == "classification":
            idx = self._label_index(col)
            present = idx >= 0
            y = idx[present]
            if t["loss"] == "binary_cross_entropy":
                y = y.astype(dtype).reshape(-1, 1)
            return y, present
        v = _numeric_values(col)
        present = ~np.isnan(v)
        _finite_target(t["name"], v[present], np.flatnonzero(present))
        return ((v[present] - t["mean"]) / t["std"]).astype(dtype), present

    def _label_index(self, col):
        """Each row's class index (-1: missing); a label the model does not know is refused."""
        classes = self.target["classes"]
        idx = _index(col, classes, not any(isinstance(c, str) for c in classes))
        bad = idx == -2
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise InputError(f"target {col.name!r}: label {col.objects()[r]!r} (row {r + 1}) is "
                             f"not one of the model's classes {classes}")
        return idx

    def decode(self, out):
        """Predictions in the target's terms from the network's outputs ``out``: class labels
        (an object array of the original labels) for a classifier, values in the target's units
        for a regressor."""
        t = self.target
        if t["task"] == "classification":
            classes = np.array(t["classes"], object)
            if t["loss"] == "binary_cross_entropy":
                return classes[(out[:, 0] > 0.5).astype(np.int64)]
            return classes[out.argmax(1)]
        return out[:, 0].astype(np.float64) * t["std"] + t["mean"]

    def probabilities(self, out):
        """A classifier's ``(n, classes)`` probabilities from the network's outputs (float64)."""
        if self.target["loss"] == "binary_cross_entropy":
            p = out[:, :1].astype(np.float64)
            return np.hstack([1 - p, p])
        return out.astype(np.float64)

    # -- saving --------------------------------------------------------------------------
    def to_json(self):
        return {"format": FORMAT, "columns": self.columns, "dropped": self.dropped,
                "target": self.target, "max_onehot": self.max_onehot,
                "min_frequency": self.min_frequency, "scale": self.scale}

    @classmethod
    def from_json(cls, d):
        """The preprocessor saved by :meth:`to_json` (refuses a damaged or foreign one)."""
        try:
            if d.get("format") != FORMAT:
                raise InputError(f"preprocessor format {d.get('format')!r} is not {FORMAT}")
            p = cls(d["max_onehot"], d["min_frequency"], d["scale"])
            p.columns, p.dropped, p.target = list(d["columns"]), list(d["dropped"]), d["target"]
            for c in p.columns:
                if c["role"] == "categorical":
                    c["levels"], c["encoding"] = list(c["levels"]), c["encoding"]
                    if c["encoding"] == "embedding":
                        int(c["dim"])
                elif c["role"] in ("numeric", "boolean"):
                    float(c["mean"]), float(c["std"]), bool(c["indicator"])
                else:
                    raise KeyError(c["role"])
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"the saved preprocessor is damaged ({type(e).__name__}: {e})") \
                from None
        return p

    # -- the summary ---------------------------------------------------------------------
    def summary(self):
        """Lines describing the columns' roles, what was dropped and why, and the task."""
        by = {"numeric": [], "boolean": [], "categorical": []}
        for c in self.columns:
            text = c["name"]
            if c["role"] == "categorical":
                k = len(c["levels"])
                how = ("one-hot" if c["encoding"] == "onehot"
                       else f"embedding of {c['dim']}")
                extra = (" + rare pooled" if c["other"] else "") + (
                    " + missing" if c["missing"] else "")
                text += f" ({k} levels{extra}, {how})"
            else:
                notes = []
                if c.get("not_numbers"):
                    bad = c["not_numbers"]
                    notes.append(f"{bad['count']} not numbers, as missing: "
                                 + ", ".join(repr(e) for e in bad["examples"])
                                 + (", ..." if bad["distinct"] > len(bad["examples"]) else ""))
                if c["indicator"]:
                    notes.append("missing: + indicator")
                if notes:
                    text += f" ({'; '.join(notes)})"
            by[c["role"]].append(text)
        lines = []
        for role in ("numeric", "boolean", "categorical"):
            if by[role]:
                lines.append(f"  {role} ({len(by[role])}): {_clip(', '.join(by[role]))}")
        if self.dropped:
            lines.append(f"  dropped ({len(self.dropped)}): " + _clip(
                ", ".join(f"{d['name'] or repr(d['name'])} ({d['reason']})"
                          for d in self.dropped)))
        return lines


def _show(v):
    return number_text(v) if not isinstance(v, str) else v


def _clip(text, width=400):
    return text if len(text) <= width else text[:width - 5] + " ..."


def split_rows(n, fraction, seed):
    """``(train, validation)`` row indices of ``n`` rows: a seeded shuffle, the last
    ``round(n·fraction)`` of it held out (``fastbp.datasets.train_test_split``'s split)."""
    idx = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    return idx[n_val:], idx[:n_val]
