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
    np.savez(tmp_path / "d.npz", X=X, y=np.array(["a", "b", "a", "b"]), w=np.ones(4))
    t = read_file(tmp_path / "d.npz")
    assert t.names == ["0", "1", "2", "y", "w"] and t["y"].kind == "text"
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
    pq.write_table(pa.table({"l": [[1, 2], [3]]}), tmp_path / "list.parquet")
    with pytest.raises(InputError, match="'l' has type list"):
        read_file(tmp_path / "list.parquet")
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
