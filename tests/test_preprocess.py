"""Column roles and the fitted preprocessor (fastbp.data.preprocess): each role as the design
says, statistics from the training rows only, columns by name in any order, the target encoded
and decoded, and the JSON a model file keeps; checked against a plain pandas reference."""
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from fastbp._validation import InputError
from fastbp.data import Preprocessor, infer_roles, prepare, read_table
from fastbp.data.preprocess import embedding_dim, split_rows

from messy import messy_frame


def _fit(df, target, rows=None, **kw):
    table = read_table(df)
    roles = infer_roles(table, {target})
    return Preprocessor(**kw).fit(table, target, roles, rows=rows), table


def test_roles_of_a_messy_table():
    roles = infer_roles(read_table(messy_frame()), {"label", "price"})
    assert roles["income"] == "numeric" and roles["age"] == "numeric"
    assert roles["smoker"] == "boolean" and roles["member"] == "boolean"
    assert roles["city"] == "categorical" and roles["shop"] == "categorical"
    assert roles["row"][0] == "dropped" and "counts the rows" in roles["row"][1]
    assert roles["name"][0] == "dropped" and "id-like" in roles["name"][1]
    assert roles["constant"] == ("dropped", "constant: always 'same'")
    assert roles["empty"][0] == "dropped" and "empty" in roles["empty"][1]
    assert "label" not in roles and "price" not in roles


@pytest.mark.parametrize("values,role", [
    (["yes", "no", "Yes", None], "boolean"), (["T", "f", "t"], "boolean"),
    (["y", "n", "y"], "boolean"), (["TRUE", "false", "true"], "boolean"),
    ([0, 1, 1, 0], "boolean"), ([0.0, 1.0, np.nan], "boolean"),
    (["yes", "no", "maybe"], "categorical"), ([0, 1, 2], "numeric"),
    ([1.5, 1.5, 1.5], "dropped"), (["a", "a", None], "categorical"),
])
def test_role_of_one_column(values, role):
    df = pd.DataFrame({"c": values, "t": range(len(values))})
    got = infer_roles(read_table(df), {"t"})["c"]
    assert (got[0] if isinstance(got, tuple) else got) == role, got


def test_an_index_column_and_user_overrides(tmp_path):
    df = messy_frame(100)
    df["zip"] = np.random.default_rng(0).choice([75001, 69002, 13003], 100)
    df.to_csv(tmp_path / "m.csv")       # pandas' index: a column named "" of 0, 1, 2, ...
    t = read_table(tmp_path / "m.csv")
    roles = infer_roles(t, {"label"}, categorical="zip", numeric=[], drop="city,age")
    assert roles[""][0] == "dropped" and roles["zip"] == "categorical"
    assert roles["city"] == ("dropped", "--drop") and roles["age"] == ("dropped", "--drop")
    with pytest.raises(InputError, match="--categorical nope: no such column"):
        infer_roles(t, {"label"}, categorical="nope")
    with pytest.raises(InputError, match="given two roles"):
        infer_roles(t, {"label"}, categorical="zip", numeric="zip")
    with pytest.raises(InputError, match="target"):
        infer_roles(t, {"label"}, drop="label")
    # --numeric reads a text column as numbers, those that are not as missing (and says so)
    text_numbers = pd.DataFrame({"n": ["1", "2.5", "x", "4"] * 5, "t": [0, 1] * 10})
    p = prepare(text_numbers, "t", numeric="n", validation_split=0)
    spec = p.preprocessor.columns[0]
    assert spec["role"] == "numeric" and spec["indicator"]
    assert spec["not_numbers"] == {"count": 5, "examples": ["x"], "distinct": 1}
    assert "n (5 not numbers, as missing: 'x'; missing: + indicator)" in \
        "\n".join(p.preprocessor.summary())


def _reference(df, target, train, min_frequency=5, max_onehot=16):
    """The matrix by hand, in pandas: what the design says each role becomes."""
    cols = []
    tail = []
    tr = df.iloc[train]
    for name in ["income", "age", "city", "smoker", "member", "shop"]:
        s = df[name]
        if name in ("income", "age", "smoker", "member"):
            v = s.map({"yes": 1.0, "no": 0.0}) if name == "smoker" else s.astype(float)
            vt = v.iloc[train]
            z = ((v - vt.mean()) / vt.std(ddof=0)).fillna(0.0)
            cols.append(z.to_numpy())
            if vt.isna().any():
                cols.append(v.isna().to_numpy(float))
        else:
            counts = tr[name].value_counts()
            kept = sorted(counts[counts >= min_frequency].index)
            other = bool((counts < min_frequency).any())
            missing = bool(tr[name].isna().any())
            if len(kept) + other + missing > max_onehot:
                idx = s.map({k: i for i, k in enumerate(kept)})
                idx = np.where(s.isna(), len(kept) + 1, idx.fillna(len(kept)))
                tail.append(idx.astype(float))
                continue
            for k in kept:
                cols.append((s == k).to_numpy(float))
            if other:
                cols.append((s.notna() & ~s.isin(kept)).to_numpy(float))
            if missing:
                cols.append(s.isna().to_numpy(float))
    return np.column_stack(cols + tail)


@pytest.mark.parametrize("max_onehot", [16, 4])
def test_the_matrix_equals_the_reference_and_uses_training_rows_only(max_onehot):
    df = messy_frame(300, seed=3).drop(columns=["row", "name", "constant", "empty", "price"])
    df = df[df["label"].notna()].reset_index(drop=True)
    train, val = split_rows(len(df), 0.25, 0)
    df.loc[val, "income"] = df.loc[val, "income"] * 1000     # the validation rows must not count
    pre, table = _fit(df, "label", rows=train, max_onehot=max_onehot)
    X = pre.transform(table, np.float64)
    np.testing.assert_allclose(X, _reference(df, "label", train, max_onehot=max_onehot),
                               rtol=1e-12, atol=1e-12)
    Xtr = X[train, 0]
    assert abs(Xtr[~df["income"].iloc[train].isna().to_numpy()].mean()) < 1e-12
    if max_onehot == 4:       # city (5 levels + missing) and shop are embedded: codes last
        assert [len(pre.embeddings), pre.feature_names[-2:]] == [2, ["city", "shop"]]
        assert pre.embeddings[0] == (5 + 2, embedding_dim(7))


def test_other_missing_and_unseen_levels():
    df = pd.DataFrame({"c": ["a"] * 6 + ["b"] * 6 + ["rare", None], "t": [0, 1] * 7})
    pre, table = _fit(df, "t")
    spec = pre.columns[0]
    assert spec["levels"] == ["a", "b"] and spec["other"] and spec["missing"]
    assert pre.feature_names == ["c=a", "c=b", "c=(other)", "c=(missing)"]
    new = read_table(pd.DataFrame({"c": ["b", "never seen", None, "rare"]}))
    np.testing.assert_array_equal(pre.transform(new), [[0, 1, 0, 0], [0, 0, 1, 0],
                                                       [0, 0, 0, 1], [0, 0, 1, 0]])
    # no "other" column when training had no rare level: an unseen level is all zeros
    df2 = pd.DataFrame({"c": ["a"] * 6 + ["b"] * 6, "t": [0, 1] * 6})
    pre2, _ = _fit(df2, "t")
    assert pre2.transform(read_table(pd.DataFrame({"c": ["z"]}))).tolist() == [[0, 0]]


def test_columns_by_name_in_any_order_extra_ignored_missing_refused():
    df = messy_frame(200, seed=4)
    p = prepare(df, "label", validation_split=0)
    pre = p.preprocessor
    shuffled = df[list(reversed(df.columns))].assign(extra=1.0).drop(columns=["label"])
    X = pre.transform(read_table(df), rows=np.flatnonzero(df["label"].notna().to_numpy()))
    np.testing.assert_array_equal(pre.transform(read_table(shuffled))[df["label"].notna()], X)
    np.testing.assert_array_equal(X, p.Xtr)
    with pytest.raises(InputError, match="column 'income' missing"):
        pre.transform(read_table(df.drop(columns=["income"])))


def test_columns_change_kind_between_fit_and_use():
    """A CSV read at prediction time may hold a column as text that training read as numbers
    (or the other way round): values are matched by meaning."""
    df = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0] * 5, "zip": [75001, 69002] * 10,
                       "b": ["yes", "no"] * 10, "t": [0, 1] * 10})
    table = read_table(df)
    pre = Preprocessor(min_frequency=1).fit(table, "t", infer_roles(table, {"t"},
                                                                    categorical="zip"))
    as_text = read_table(pd.DataFrame({"n": ["1", "4"], "zip": ["69002", "75001"],
                                       "b": ["Yes", "NO"]}))
    as_numbers = read_table(pd.DataFrame({"n": [1, 4], "zip": [69002.0, 75001.0],
                                          "b": [True, False]}))
    np.testing.assert_array_equal(pre.transform(as_text), pre.transform(as_numbers))
    with pytest.raises(InputError, match="'b' is boolean"):
        pre.transform(read_table(pd.DataFrame({"n": [1], "zip": [1], "b": ["perhaps"]})))


def test_targets_classes_and_regression_scale():
    df = messy_frame(200, seed=5)
    p = prepare(df, "label", validation_split=0.2, seed=1)
    t = p.preprocessor.target
    assert t["classes"] == ["high", "low", "mid"] and t["loss"] == "cross_entropy"
    assert p.no_target == int(df["label"].isna().sum()) and p.Xtr.shape[0] + len(p.val[0]) == \
        200 - p.no_target
    r = prepare(df, "price", validation_split=0.2, seed=1)
    t = r.preprocessor.target
    assert abs(r.ytr.mean()) < 1e-5 and abs(r.ytr.std() - 1) < 1e-5      # standardised
    out = r.ytr.reshape(-1, 1)
    train = np.sort(split_rows(200, 0.2, 1)[0])        # the training rows, in file order
    np.testing.assert_allclose(r.preprocessor.decode(out), df["price"].iloc[train], rtol=1e-6)
    with pytest.raises(InputError, match="single class"):
        prepare(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "a", "a"]}), "y")
    with pytest.raises(InputError, match="no column 'nope'"):
        prepare(df, "nope")


@pytest.mark.parametrize("values,task", [
    (["a", "b"] * 10, "classification"), ([True, False] * 10, "classification"),
    ([0, 1, 2, 3] * 5, "classification"), (list(range(20)), "regression"),
    (np.linspace(0, 1, 20), "regression"),
])
def test_the_task_is_inferred_from_the_target(values, task):
    df = pd.DataFrame({"x": np.arange(20.0) % 7, "y": values})
    assert prepare(df, "y", validation_split=0).preprocessor.task == task


def test_json_round_trip_is_plain_json_and_transforms_the_same():
    df = messy_frame(150, seed=6)
    p = prepare(df, "label", max_onehot=4)
    text = json.dumps(p.preprocessor.to_json(), allow_nan=False)
    again = Preprocessor.from_json(json.loads(text))
    table = read_table(df)
    np.testing.assert_array_equal(again.transform(table), p.preprocessor.transform(table))
    broken = json.loads(text)
    del broken["columns"][0]["mean"]
    with pytest.raises(InputError, match="damaged"):
        Preprocessor.from_json(broken)


@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(-1e6, 1e6)),
                          st.one_of(st.none(), st.sampled_from(["x", "y", "z", " x"])),
                          st.integers(0, 2)), min_size=4, max_size=40),
       st.permutations([0, 1, 2]))
def test_any_table_gives_a_finite_matrix_whatever_the_column_order(rows, order):
    df = pd.DataFrame(rows, columns=["num", "cat", "t"])
    if df["t"].nunique() < 2:
        df.loc[0, "t"], df.loc[1, "t"] = 0, 1
    names = ["num", "cat", "t"]
    try:
        p = prepare(df, "t", validation_split=0, min_frequency=1)
    except InputError as e:             # only: every feature column dropped
        assert "no feature columns" in str(e)
        return
    X = p.Xtr
    assert np.isfinite(X).all() and X.shape[1] == p.preprocessor.n_features
    swapped = read_table(df[[names[i] for i in order]])
    np.testing.assert_array_equal(p.preprocessor.transform(swapped), X)


def test_every_level_rare():
    """A small table's few rare levels are kept; many rare levels (ids) pool into "other"."""
    few = pd.DataFrame({"c": ["a", "b", "c", "a", "b", "c"], "t": [0, 1] * 3})
    pre, _ = _fit(few, "t")
    assert pre.columns[0]["levels"] == ["a", "b", "c"] and not pre.columns[0]["other"]
    ids = pd.DataFrame({"c": [f"id{i // 2}" for i in range(60)], "t": [0, 1] * 30})
    pre, table = _fit(ids, "t")
    spec = pre.columns[0]
    assert spec["levels"] == [] and spec["other"] and spec["encoding"] == "onehot"
    assert pre.transform(table).tolist() == [[1.0]] * 60


def test_text_levels_matched_by_a_column_read_as_booleans():
    """Training saw True/False/Unknown as text; a file of only True/False is read as booleans:
    its values still find their levels."""
    train = pd.DataFrame({"b": ["True", "False", "Unknown"] * 10, "t": [0, 1, 1] * 10})
    pre, _ = _fit(train, "t", min_frequency=1)
    as_text = pre.transform(read_table(pd.DataFrame({"b": ["False", "True"]})))
    as_bool = pre.transform(read_table(pd.DataFrame({"b": [False, True]})))
    np.testing.assert_array_equal(as_bool, as_text)
    assert as_text.sum() == 2


def test_prepare_checks_its_arguments_and_a_refused_fit_changes_nothing():
    df = messy_frame(60, seed=1)
    for kw, needle in [({"validation_split": -0.1}, "validation_split"),
                       ({"validation_split": "0.2"}, "validation_split"),
                       ({"dtype": np.int32}, "dtype"), ({"max_onehot": -1}, "max_onehot"),
                       ({"min_frequency": 0}, "min_frequency"), ({"seed": -3}, "seed")]:
        with pytest.raises((ValueError, TypeError), match=needle):
            prepare(df, "label", **kw)
    pre, table = _fit(df, "label")
    before = json.dumps(pre.to_json())
    one = read_table(df.assign(label="same"))
    with pytest.raises(InputError, match="single class"):
        pre.fit(one, "label", infer_roles(one, {"label"}))
    assert json.dumps(pre.to_json()) == before


def test_an_infinite_target_is_named():
    df = pd.DataFrame({"x": np.random.default_rng(0).normal(size=10), "y": [1.0] * 9 + [np.inf]})
    with pytest.raises(InputError, match="target 'y' holds an infinite value"):
        prepare(df, "y", validation_split=0)


def test_a_numeric_text_target_is_regressed_and_an_id_target_refused():
    df = pd.DataFrame({"x": np.random.default_rng(0).normal(size=40),
                       "y": [str(v / 7) for v in range(40)]})
    assert prepare(df, "y", validation_split=0).preprocessor.task == "regression"
    df["y"] = [f"id{i}" for i in range(40)]
    with pytest.raises(InputError, match="40 distinct labels in 40 rows"):
        prepare(df, "y", validation_split=0)
