"""Reading tables (fastbp.data.tables): every format and Python object into the same typed
columns, missing values, CSV dialects and compression, and clear errors."""
import bz2
import gzip
import lzma

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from fastbp._validation import InputError
from fastbp.data import read_table
from fastbp.data.tables import read_file, sniff_delimiter

from messy import messy_frame


def _same(t, df):
    """The Table ``t`` holds the columns of ``df`` (names, kinds, values, missing)."""
    assert t.names == [str(c) for c in df.columns]
    for name in df.columns:
        col, s = t[str(name)], df[name]
        miss = s.isna().to_numpy()
        assert np.array_equal(col.missing, miss), name
        if col.kind == "text":
            got = col.objects()
            assert list(got[~miss]) == [str(v).strip() for v in s[~miss]], name
        elif col.kind == "bool":
            assert np.array_equal(col.values[~miss], s[~miss].astype(float).to_numpy()), name
        else:
            np.testing.assert_allclose(col.values[~miss], s[~miss].astype(float).to_numpy(),
                                       rtol=1e-15, err_msg=name)


def test_the_same_table_from_every_source(tmp_path):
    df = messy_frame(120, seed=1)
    df.to_csv(tmp_path / "m.csv", index=False)
    df.to_parquet(tmp_path / "m.parquet")
    feather.write_feather(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "m.feather")
    sources = [tmp_path / "m.csv", str(tmp_path / "m.parquet"), tmp_path / "m.feather", df,
               pa.Table.from_pandas(df, preserve_index=False),
               {c: df[c].to_numpy() for c in df.columns}]
    kinds = None
    for src in sources:
        t = read_table(src)
        _same(t, df)
        k = {c.name: c.kind for c in t.columns}
        kinds = kinds or k
        assert k == kinds, (src, k)
    assert kinds["city"] == "text" and kinds["member"] == "bool" and kinds["income"] == "number"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_detected_and_quoting_respected(tmp_path, delimiter):
    df = pd.DataFrame({"a b": [1.5, 2.0, None], "text": ['say "hi", ok', "x;y|z", ""],
                       "n": [1, 2, 3]})
    path = tmp_path / "d.csv"
    df.to_csv(path, sep=delimiter, index=False)
    assert sniff_delimiter(path.read_text()) == delimiter
    t = read_file(path)
    assert t.names == ["a b", "text", "n"]
    assert t["text"].objects().tolist() == ['say "hi", ok', "x;y|z", None]     # "": missing
    assert np.isnan(t["a b"].values[2]) and t["n"].values.tolist() == [1, 2, 3]
    named = {",": ",", ";": ";", "\t": "tab", "|": "|"}[delimiter]
    assert read_file(path, delimiter=named).names == ["a b", "text", "n"]


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open),
                                           (".xz", lzma.open), (".zst", None)])
def test_compressed_csv(tmp_path, suffix, opener):
    df = messy_frame(80, seed=2)
    plain = tmp_path / "m.csv"
    df.to_csv(plain, index=False)
    packed = tmp_path / ("m.csv" + suffix)
    if opener is None:
        with pa.output_stream(str(packed), compression="zstd") as f:
            f.write(plain.read_bytes())
    else:
        with opener(packed, "wb") as f:
            f.write(plain.read_bytes())
    _same(read_file(packed), df)


def test_headerless_numeric_csv_and_missing_markers(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("1,2,3\n4,NA,6\n7,?,\n")
    t = read_file(path)
    assert t.names == ["0", "1", "2"]
    assert t["1"].missing.tolist() == [False, True, True]
    assert t["2"].missing.tolist() == [False, False, True]


def test_text_is_stripped_and_true_false_read_as_booleans(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,flag\n Adelie,True\nAdelie ,False\n  ,true\nGentoo,\n")
    t = read_file(path)
    assert t["a"].levels == ["Adelie", "Gentoo"] and t["a"].values.tolist() == [0, 0, -1, 1]
    assert t["flag"].kind == "bool"
    assert t["flag"].objects().tolist() == [True, False, True, None]


def test_dates_become_days(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("when,x\n1970-01-02,1\n2000-01-01,2\n,3\n")
    t = read_file(path)
    assert t["when"].kind == "number"
    assert t["when"].values[0] == 1.0 and t["when"].values[1] == 10957.0
    assert np.isnan(t["when"].values[2])


def test_arrays_npz_npy(tmp_path):
    X = np.arange(12.0).reshape(4, 3)
    np.savez(tmp_path / "d.npz", X=X, y=np.array(["a", "b", "a", "b"]), w=np.ones(4),
             y_onehot=np.eye(2)[[0, 1, 0, 1]])
    t = read_file(tmp_path / "d.npz")        # X and y only: other arrays are no features
    assert t.names == ["0", "1", "2", "y"] and t["y"].kind == "text" and t.target == "y"
    assert read_file(tmp_path / "d.npz", extra=["w"]).names == ["0", "1", "2", "y", "w"]
    np.save(tmp_path / "x.npy", X)
    assert read_file(tmp_path / "x.npy").names == ["0", "1", "2"]
    t = read_table(X)
    assert t.n_rows == 4 and t["2"].values.tolist() == [2.0, 5.0, 8.0, 11.0]


def test_a_dataframe_with_mixed_object_columns(tmp_path):
    df = pd.DataFrame({"mixed": [1, "two", None, 3.5], "x": [1.0, 2.0, 3.0, 4.0]})
    t = read_table(df)
    assert t["mixed"].kind == "text"
    assert t["mixed"].objects().tolist() == ["1", "two", None, "3.5"]


@pytest.mark.parametrize("make,needle", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_text(""), "empty file"),
    (lambda p: p.write_text("a,b\n"), "a header row and no data"),
    (lambda p: p.write_text("a,b\n1,2\n3,4,5\n"), "not a readable CSV"),
    (lambda p: p.write_text("a,a\n1,2\n"), "appears twice"),
])
def test_bad_csv_files_are_named_in_one_line(tmp_path, make, needle):
    path = tmp_path / "bad.csv"
    make(path)
    with pytest.raises(InputError, match=needle) as e:
        read_file(path)
    assert "bad.csv" in str(e.value)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="directory"):
        read_file(tmp_path)
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(InputError, match="unknown data format '.xlsx'"):
        read_file(tmp_path / "x.xlsx")
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet"):
        read_file(tmp_path / "x.parquet")
    pq.write_table(pa.table({"l": [[1, 2], [3]], "x": [1.0, 2.0]}), tmp_path / "list.parquet")
    t = read_file(tmp_path / "list.parquet")     # kept to be named and left out
    assert t["l"].kind == "other" and "list" in t["l"].source
    with pytest.raises(TypeError, match="cannot read a table from int"):
        read_table(3)


def test_decimal_commas_with_semicolons(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("prix;nom;n\n3,14;a;1\n-2,5;b;2\n10;c;3\n")
    t = read_file(path)
    assert t["prix"].kind == "number" and t["prix"].values.tolist() == [3.14, -2.5, 10.0]
    path.write_text("x;y\n1.5;a,b\n2.5;c\n")       # points: commas in text stay text
    t = read_file(path)
    assert t["x"].values.tolist() == [1.5, 2.5] and t["y"].objects().tolist() == ["a,b", "c"]


def test_integers_beyond_float64s_exact_range_are_text(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("id,v\n12345678901234567,1\n12345678901234568,2\n")
    t = read_file(path)
    assert t["id"].kind == "text" and t["id"].levels == ["12345678901234567",
                                                         "12345678901234568"]
    assert t["v"].objects().tolist() == [1, 2]          # whole numbers come back as ints


def test_files_that_are_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("ville,x\nMontr\xe9al,1\nQu\xe9bec,2\n".encode("latin-1"))
    t = read_file(path)             # not UTF-8: read as Latin-1
    assert t["ville"].levels == ["Montréal", "Québec"]
    path.write_bytes("vill\xe9,x\n1,2\n3,4\n".encode("latin-1"))
    assert read_file(path).names == ["villé", "x"]
    path.write_bytes("a,x\nb\xe9,1\n".encode("utf-16"))
    t = read_file(path, encoding="utf-16")
    assert t["a"].levels == ["bé"]


def test_a_pandas_index_in_parquet_is_not_a_column(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}).sample(frac=1, random_state=0)
    df.to_parquet(tmp_path / "p.parquet")           # a non-range index: written as a column
    assert read_file(tmp_path / "p.parquet").names == ["x", "y"]
    assert read_table(pa.Table.from_pandas(df)).names == ["x", "y"]


@pytest.mark.parametrize("text,header,names", [
    ("1,,3\n4,5,6\n7,8,9\n", None, ["0", "1", "2"]),              # a missing field: data
    ("5.1,3.5,setosa\n4.9,3.0,versicolor\n", None, ["0", "1", "2"]),  # text in the data
    ("a,b\n1,2\n", None, ["a", "b"]),
    ("2019,2020\n1,2\n3,4\n", True, ["2019", "2020"]),             # numbers as names: say so
    ("x,y\n1,2\n", False, ["0", "1"]),
    ("a, b ,c\n1,2,3\n", None, ["a", "b", "c"]),                   # names stripped
])
def test_the_header_row(tmp_path, text, header, names):
    path = tmp_path / "h.csv"
    path.write_text(text)
    assert read_file(path, header=header).names == names


def test_headerless_decimal_commas_and_space_delimited(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("3,14;2,5\n1,5;7\n")
    t = read_file(path)
    assert t.names == ["0", "1"] and t["0"].values.tolist() == [3.14, 1.5]
    path = tmp_path / "s.txt"
    path.write_text("a b c\n1 2 3\n4 5 6\n")
    assert read_file(path).names == ["a", "b", "c"]


def test_a_header_only_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("a,b")          # no newline either
    with pytest.raises(InputError, match="a header row and no data"):
        read_file(path)


def test_only_the_columns_asked_for_are_read(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2.0], "junk": [[1], [2, 3]], "y": ["a", "b"]})
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "p.parquet")
    assert read_file(tmp_path / "p.parquet", columns=["x", "y"]).names == ["x", "y"]
    assert read_table(df, columns=["y"]).names == ["y"]
    pd.DataFrame({"x": [1.0], " y ": ["a"], "z": [3]}).to_csv(tmp_path / "c.csv", index=False)
    assert read_file(tmp_path / "c.csv", columns=["y", "nope"]).names == ["y"]
    df2 = pd.DataFrame({"c": [1 + 2j, 3j], "x": [1.0, 2.0]})
    assert read_table(df2)["c"].kind == "other"
