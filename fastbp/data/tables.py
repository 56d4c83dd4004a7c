"""Reading tables: files (CSV, Parquet, Arrow IPC/Feather, ``.npz``/``.npy``) and Python objects
(pandas DataFrames, Arrow tables, dicts of columns, 2-D arrays) into a :class:`Table` of typed
columns, through pyarrow's readers.

A :class:`Table` holds each column in one of three forms, whatever its source:

* ``"number"``: float64 values, NaN where missing (integers, floats, decimals; dates and times
  as days since 1970-01-01); integers beyond ±2**53 (float64's exact range: ids, hashes) are
  read as text;
* ``"bool"``: float64 0/1, NaN where missing (Arrow booleans: Parquet, or ``True``/``False`` in
  a CSV);
* ``"text"``: int32 codes into ``levels`` (a list of distinct strings, surrounding whitespace
  stripped), -1 where missing;
* ``"other"``: a type fastbp does not use (lists, durations, bytes...): kept only so that it can
  be named and left out (its ``source`` says the type).

Missing values are a null in the source, NaN, or in a CSV an empty field or one of
:data:`NULL_VALUES`.  Every problem with the user's data (a missing file, a malformed CSV, two
columns of the same name) is an :class:`~fastbp._validation.InputError` naming the file and
what is wrong.
"""
import bz2
import csv
import gzip
import io
import lzma
import os
import re

import numpy as np

from .._validation import InputError, InputTypeError

# CSV fields read as missing (besides an empty field): pandas' defaults, and "?" (UCI files)
NULL_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "None",
               "none", "#N/A", "#NA", "<NA>", "?", "NA_character_", "-1.#IND", "1.#QNAN"]
DELIMITERS = "\t;|, "       # in order of preference (see sniff_delimiter)
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".dat")
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": None}
PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".feather", ".arrow", ".ipc")
SNIFF_BYTES = 1 << 16
CSV_BLOCK = 4 << 20       # bytes of CSV a thread parses at a time (2-16 MiB ran alike)


class Column:
    """One column of a :class:`Table`: ``kind`` "number", "bool" or "text" (see the module's
    docstring), ``values`` (float64, or int32 codes for text), ``levels`` (text only) and
    ``source`` (the type it was read as, for messages: ``int64``, ``string``, ...)."""

    __slots__ = ("name", "kind", "values", "levels", "source")

    def __init__(self, name, kind, values, levels=None, source=""):
        self.name, self.kind, self.values, self.levels, self.source = (
            name, kind, values, levels, source)

    def __len__(self):
        return self.values.shape[0]

    @property
    def missing(self):
        """A boolean mask of the missing rows (every row of an "other" column)."""
        if self.kind == "other":
            return np.ones(len(self), bool)
        return self.values < 0 if self.kind == "text" else np.isnan(self.values)

    def take(self, rows):
        """The column's ``rows`` (an index array), the same levels."""
        return Column(self.name, self.kind, self.values[rows], self.levels, self.source)

    @classmethod
    def other(cls, name, n, source):
        """A column of a type fastbp does not use (``source``), ``n`` rows."""
        return cls(name, "other", np.zeros(n, np.int8), source=source)

    def objects(self):
        """The values as a Python-typed object array (str, int for whole numbers, float, bool;
        None where missing)."""
        out = np.empty(len(self), object)
        miss = self.missing
        if self.kind == "text":
            lv = np.array(self.levels + [None], object)
            out[:] = lv[np.where(miss, len(self.levels), self.values)]
        elif self.kind == "bool":
            out[:] = [None if m else bool(v) for v, m in zip(self.values, miss)]
        elif self.kind == "number":
            v = self.values[~miss]
            whole = v.size and np.all(v == np.round(v)) and np.all(np.abs(v) < 2 ** 53)
            out[~miss] = v.astype(np.int64).tolist() if whole else v.tolist()
            out[miss] = None
        return out


class Table:
    """Named columns of equal length, in order (see the module's docstring); ``source``: where
    they came from, for messages."""

    def __init__(self, columns, source="data", target=None):
        names = [c.name for c in columns]
        seen = set()
        for n in names:
            if n in seen:
                raise InputError(f"{source}: column {n!r} appears twice; column names must be "
                                 f"unique")
            seen.add(n)
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise InputError(f"{source}: the columns have different lengths {sorted(lengths)}")
        self.columns, self.source = list(columns), source
        self.target = target        # the source's own target column (an .npz's y), or None
        self._index = {c.name: i for i, c in enumerate(columns)}

    @property
    def names(self):
        return [c.name for c in self.columns]

    @property
    def n_rows(self):
        return len(self.columns[0]) if self.columns else 0

    def __len__(self):
        return self.n_rows

    def __contains__(self, name):
        return name in self._index

    def __getitem__(self, name):
        return self.columns[self._index[name]]

    def take(self, rows):
        return Table([c.take(rows) for c in self.columns], self.source, self.target)

    def without(self, names):
        drop = set(names)
        return Table([c for c in self.columns if c.name not in drop], self.source,
                     None if self.target in drop else self.target)

    def __repr__(self):
        return f"Table({self.n_rows} rows: {', '.join(self.names[:8])}" + (
            ", ...)" if len(self.columns) > 8 else ")")


# -- from Arrow ----------------------------------------------------------------------------------
def _pa():
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
    except ImportError:    # pragma: no cover - a dependency of fastbp
        raise InputError("reading tables needs pyarrow (pip install pyarrow)") from None
    return pyarrow


_POOL = []


def _pool(pa):
    """The Arrow memory pool fastbp reads with: jemalloc, returning freed memory to the system
    at once (Arrow's default pool, mimalloc, keeps it: after a large CSV the process then held
    the parse buffers' pages while the matrix was built, 3.6 times the matrix at its peak
    against 2.4); the default pool where jemalloc is not built in."""
    if not _POOL:
        try:
            pool = pa.jemalloc_memory_pool()
            pa.jemalloc_set_decay_ms(0)
        except (NotImplementedError, pa.ArrowNotImplementedError, AttributeError):
            pool = pa.default_memory_pool()
        _POOL.append(pool)
    return _POOL[0]


def _kind(arrow_type, pa):
    """How an Arrow type is read: "bool", "number", "date", "time" (days since 1970-01-01),
    "text", or "other" (a type fastbp does not use)."""
    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_boolean(t):
        return "bool"
    if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
            or pa.types.is_null(t)):
        return "number"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "time"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    return "other"


EXACT = 2 ** 53         # integers beyond it are not exact in float64: read as text (ids)


def _column(name, chunked, source, pa):
    """A :class:`Column` of an Arrow ChunkedArray: each chunk converted into its stretch of one
    preallocated array (the only copy), in fastbp's reading pool."""
    kind, src = _kind(chunked.type, pa), str(chunked.type)
    pc, pool = pa.compute, _pool(pa)
    n = len(chunked)
    if kind == "other":
        return Column.other(name, n, src)
    if pa.types.is_integer(chunked.type) and chunked.null_count < n:
        mm = pc.min_max(chunked).as_py()
        if max(abs(mm["min"]), abs(mm["max"])) > EXACT:
            kind, chunked = "text", pc.cast(chunked, pa.string(), memory_pool=pool)
    try:
        return _convert_column(name, kind, src, chunked, n, pa, pc, pool)
    except pa.ArrowException as e:
        raise InputError(f"{source}: column {name!r} ({src}) cannot be read: "
                         f"{str(e).splitlines()[0]}") from None


def _convert_column(name, kind, src, chunked, n, pa, pc, pool):
    values = np.empty(n, np.int32 if kind == "text" else np.float64)
    where = {}          # text: level -> code
    o = 0
    for arr in chunked.chunks:
        m = len(arr)
        if kind == "text":
            if pa.types.is_dictionary(arr.type):
                arr = pc.cast(arr, arr.type.value_type, memory_pool=pool)
            enc = pc.dictionary_encode(arr, memory_pool=pool)
            lut = np.array([where.setdefault(v, len(where)) for v in enc.dictionary.to_pylist()]
                           + [-1], np.int32)
            idx = pc.coalesce(enc.indices, pa.scalar(-1, enc.indices.type), memory_pool=pool)
            np.take(lut, idx.to_numpy(zero_copy_only=False), out=values[o:o + m])
        else:
            if kind == "date":
                arr = pc.cast(pc.cast(arr, pa.date32(), memory_pool=pool), pa.int32(),
                              memory_pool=pool)
            elif kind == "time":
                arr = pc.cast(pc.cast(arr, pa.timestamp("s"), safe=False, memory_pool=pool),
                              pa.int64(), memory_pool=pool)
            if arr.type != pa.float64():
                arr = pc.cast(arr, pa.float64(), safe=False, memory_pool=pool)
            if arr.null_count:
                arr = pc.coalesce(arr, pa.scalar(np.nan), memory_pool=pool)
            values[o:o + m] = arr.to_numpy(zero_copy_only=False)
        o += m
    del chunked
    if kind == "time":
        values /= 86400.0
    if kind != "text":
        return Column(name, "bool" if kind == "bool" else "number", values, source=src)
    raw = list(where)
    # surrounding whitespace stripped, empty strings missing, equal stripped levels merged
    stripped = [v.strip() for v in raw]
    if stripped == raw and "" not in raw:
        return Column(name, "text", values, raw, source=src)
    levels, remap, merged = [], np.empty(len(raw) + 1, np.int32), {}
    for i, v in enumerate(stripped):
        remap[i] = -1 if v == "" else merged.setdefault(v, len(merged))
        if v and remap[i] == len(levels):
            levels.append(v)
    remap[-1] = -1
    return Column(name, "text", remap[values], levels, source=src)


def from_arrow(table, source="data"):
    """A :class:`Table` from a ``pyarrow.Table``."""
    return _convert([table], source)


def _convert(holder, source):
    """A :class:`Table` from the ``pyarrow.Table`` in the list ``holder``, which it empties:
    its columns are converted on threads, each column's Arrow memory let go as soon as it is
    converted when nothing else holds the table (a reader's freshly read one)."""
    pa = _pa()
    table = holder.pop()
    names = [str(n).strip() for n in table.column_names]
    arrays = [table.column(i) for i in range(table.num_columns)]
    del table

    def one(i):
        chunked, arrays[i] = arrays[i], None
        return _column(names[i], chunked, source, pa)
    workers = min(_threads(), len(names))
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(workers) as pool:
            cols = list(pool.map(one, range(len(names))))
    else:
        cols = [one(i) for i in range(len(names))]
    return Table(cols, source)


def _threads():
    """Threads for reading and transforming tables: numba's (``NUMBA_NUM_THREADS``, or
    ``numba.set_num_threads``), which sizes all of fastbp's compute."""
    import numba
    return max(1, numba.get_num_threads())


# -- files ---------------------------------------------------------------------------------------
def _suffixes(path):
    """``(format suffix, compression suffix or "")`` of a path, lower case."""
    base = os.path.basename(path).lower()
    stem, ext = os.path.splitext(base)
    if ext in COMPRESSED:
        return os.path.splitext(stem)[1], ext
    return ext, ""


def _open_text(path, compression):
    """A binary file object of ``path``'s decompressed bytes."""
    if compression == ".zst":
        pa = _pa()
        return pa.input_stream(path, compression="zstd")
    if compression:
        return COMPRESSED[compression](path, "rb")
    return open(path, "rb")


def sniff_delimiter(sample):
    """The delimiter of a CSV sample (text): of ``<tab> ; | , <space>``, the first in that order
    that splits every line into the same number (> 1) of fields (``;`` before ``,``: a
    semicolon file with decimal commas splits evenly on both); else the one that splits the
    most lines like the first; ``,`` when none splits it at all."""
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]      # a line cut by the sample's end
    best, score = ",", 0
    for d in DELIMITERS:
        try:
            counts = [len(r) for r in csv.reader(lines, delimiter=d, skipinitialspace=d == " ")]
        except csv.Error:
            continue
        if not counts or counts[0] < 2:
            continue
        if len(counts) > 1 and all(c == counts[0] for c in counts):
            return d
        s = sum(c == counts[0] for c in counts) * counts[0]
        if s > score:
            best, score = d, s
    return best


def decimal_point(sample, delimiter):
    """``","`` when a CSV sample delimited by something else than a comma writes its decimals
    with commas (``3,14``: European spreadsheets, usually with ``;``) and never with points;
    else ``"."``."""
    if delimiter == ",":
        return "."
    comma = point = 0
    for row in csv.reader(sample.splitlines()[:200], delimiter=delimiter):
        for field in row:
            f = field.strip()
            comma += bool(_COMMA_NUMBER.match(f))
            point += bool(_POINT_NUMBER.match(f))
    return "," if comma and not point else "."


_COMMA_NUMBER = re.compile(r"^-?\d+,\d+$")
_POINT_NUMBER = re.compile(r"^-?\d+\.\d+$")


def _number(field, decimal):
    try:
        float(field.replace(",", ".") if decimal == "," else field)
        return True
    except ValueError:
        return False


def has_header(rows, decimal="."):
    """Whether the first of the parsed CSV ``rows`` names the columns (as ``csv.Sniffer``
    judges it): a column of numbers whose first field is not one votes for a header, one whose
    first field is a number too votes against; a column of text votes for a header when its
    first field's length is not one of the others'.  No vote either way: a header."""
    if len(rows) < 2:
        return not all(_number(f, decimal) for f in rows[0]) if rows else True
    votes = 0
    for j, first in enumerate(rows[0]):
        rest = [r[j].strip() for r in rows[1:] if j < len(r) and r[j].strip()
                and r[j].strip() not in NULL_VALUES]
        first = first.strip()
        if not rest or not first:
            continue
        if all(_number(f, decimal) for f in rest):
            votes += -1 if _number(first, decimal) else 1
        elif len(first) not in {len(f) for f in rest}:
            votes += 1
        else:
            votes -= 1
    return votes >= 0


def _sniff(path, compression, delimiter, header, encoding):
    """``(delimiter, decimal point, header, encoding, header names)`` of a CSV from its first
    64 KiB: the delimiter and the header row detected unless given, the encoding UTF-8 unless
    given or the sample is not UTF-8 (then Latin-1, which reads any byte)."""
    try:
        with _open_text(path, compression) as f:
            head = f.read(SNIFF_BYTES)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise InputError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from None
    except Exception as e:      # pyarrow's own errors for a damaged .zst
        raise InputError(f"{path}: unreadable ({e})") from None
    if isinstance(head, memoryview):
        head = bytes(head)
    if encoding is None:
        try:    # (a multi-byte character may be cut at the sample's end)
            head[:-3].decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "latin-1"
    try:
        text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    except LookupError:
        raise InputError(f"--encoding {encoding}: no such text encoding") from None
    if not text.strip():
        raise InputError(f"{path}: empty file")
    if delimiter is None:
        delimiter = sniff_delimiter(text)
    elif len(delimiter) != 1:
        delimiter = {"tab": "\t", "\\t": "\t", "space": " "}.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1:
            raise InputError(f"--delimiter must be one character (or 'tab'); got {delimiter!r}")
    decimal = decimal_point(text, delimiter)
    lines = text.splitlines()
    if len(lines) > 1 and len(head) == SNIFF_BYTES:
        lines = lines[:-1]
    rows = list(csv.reader(lines[:100], delimiter=delimiter,
                           skipinitialspace=delimiter == " "))
    rows = [r for r in rows if any(f.strip() for f in r)]
    if header is None:
        header = has_header(rows, decimal)
    first = rows[0] if rows and header else None
    return delimiter, decimal, header, encoding, first


def read_csv(path, delimiter=None, header=None, encoding=None, columns=None):
    """A :class:`Table` from a CSV file (optionally ``.gz``, ``.bz2``, ``.xz``, ``.zst``): the
    delimiter detected unless given (``"tab"`` names a tab), a header row detected unless
    ``header`` says (without one the columns are named ``0``, ``1``, ...; header names are
    stripped of surrounding spaces), UTF-8 text unless ``encoding`` says (a file that is not
    UTF-8 is read as Latin-1), quoting as RFC 4180, decimal commas with a ``;`` or tab
    delimiter, :data:`NULL_VALUES` and empty fields missing.  ``columns``: read only these (by
    name; those the file lacks are left out)."""
    pa = _pa()
    import pyarrow.csv as pcsv
    _, compression = _suffixes(path)
    delimiter, decimal, header, encoding, first = _sniff(path, compression, delimiter, header,
                                                         encoding)
    read = pcsv.ReadOptions(use_threads=True, block_size=CSV_BLOCK, encoding=encoding,
                            autogenerate_column_names=not header)
    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=False,
                              ignore_empty_lines=True)
    include = None
    if columns is not None:         # Arrow's names: the header's fields as written, or f0, ...
        wanted = {str(c) for c in columns}
        include = ([n for n in first if n.strip() in wanted] if header else
                   [f"f{c}" for c in sorted(wanted) if c.isdigit()])
    f = None
    try:    # by path, Arrow reads (and decompresses gz, bz2, zst) in C++; xz: Python does
        for attempt in (include, None):
            convert = pcsv.ConvertOptions(null_values=NULL_VALUES, strings_can_be_null=True,
                                          quoted_strings_can_be_null=True,
                                          decimal_point=decimal, include_columns=attempt)
            f = _open_text(path, compression) if compression == ".xz" else None
            try:
                table = pcsv.read_csv(path if f is None else f, read_options=read,
                                      parse_options=parse, convert_options=convert,
                                      memory_pool=_pool(pa))
                break
            except KeyError:        # a header Python's csv splits otherwise: read them all
                if attempt is None:
                    raise
            finally:
                if f is not None:
                    f.close()
                    f = None
    except pa.ArrowInvalid as e:
        msg = str(e).splitlines()[0]
        if "Empty CSV file" in msg:
            raise InputError(f"{path}: a header row and no data" if header else
                             f"{path}: no data") from None
        raise InputError(f"{path}: not a readable CSV ({msg})") from None
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise InputError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from None
    if header:      # names stripped of surrounding spaces ("a, b" names b, not " b")
        table = table.rename_columns([str(n).strip() for n in table.column_names])
    else:           # Arrow names them f0, f1, ...: positions, as for arrays
        table = table.rename_columns([n[1:] for n in table.column_names])
    if table.num_rows == 0:
        raise InputError(f"{path}: a header row and no data" if header else f"{path}: no data")
    holder = [table]
    del table
    return _convert(holder, path)


def _pandas_index(schema):
    """The columns pandas wrote for a DataFrame's index (``__index_level_0__``): not data."""
    meta = schema.pandas_metadata or {}
    return [c for c in meta.get("index_columns", []) if isinstance(c, str)]


def _read_arrow_file(path, kind, columns=None):
    pa = _pa()
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq
            schema = pq.read_schema(path)
            skip = set(_pandas_index(schema))
            table = pq.read_table(path, columns=[
                n for n in schema.names if n not in skip
                and (columns is None or n.strip() in {str(c) for c in columns})])
        else:
            import pyarrow.feather as feather
            table = feather.read_table(path)
            skip = set(_pandas_index(table.schema))
            table = table.select([n for n in table.column_names if n not in skip and (
                columns is None or n.strip() in {str(c) for c in columns})])
    except (OSError, pa.ArrowException) as e:
        what = "Parquet" if kind == "parquet" else "Arrow IPC/Feather"
        raise InputError(f"{path}: not a readable {what} file "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows")
    table = table.rename_columns([str(n).strip() for n in table.column_names])
    holder = [table]
    del table
    return _convert(holder, path)


def _array_columns(X, source, prefix=""):
    X = np.asarray(X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise InputError(f"{source}: an array of features must be 2-D (rows, columns); got shape "
                         f"{X.shape}")
    cols = []
    for j in range(X.shape[1]):
        cols.append(_array_column(f"{prefix}{j}", X[:, j], source))
    return cols


def _array_column(name, a, source):
    a = np.asarray(a)
    if a.dtype.kind == "b":
        return Column(name, "bool", a.astype(np.float64), source=str(a.dtype))
    if a.dtype.kind in "iuf":
        return Column(name, "number", a.astype(np.float64), source=str(a.dtype))
    if a.dtype.kind in "USO":
        pa = _pa()
        return _column(name, pa.chunked_array([_arrow_array(a, pa)]), source, pa)
    raise InputError(f"{source}: column {name!r} has dtype {a.dtype}, which fastbp cannot use")


def _arrow_array(values, pa):
    """An Arrow array of a column of Python objects: mixed types (numbers among strings) are
    read as their text."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        texts = [None if _is_missing(v) else str(v) for v in values]
        return pa.array(texts, type=pa.string())


def _is_missing(v):
    return v is None or (isinstance(v, float) and v != v)


def arrays_table(X, y=None, source="arrays"):
    """A :class:`Table` of the arrays ``X`` (columns ``0``, ``1``, ...) and ``y`` (a column
    ``y``, the table's target; None: none)."""
    table = X if isinstance(X, Table) else Table(_array_columns(X, source), source)
    if y is None:
        return table
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != table.n_rows:
        raise InputError(f"{source}: X has {table.n_rows} rows but y has shape {y.shape} (one "
                         f"value per row needed)")
    return Table(table.without(["y"]).columns + [_array_column("y", y, source)], source,
                 target="y")


def read_npz(path, extra=()):
    """A :class:`Table` from an ``.npz``: array ``X`` (columns ``0``, ``1``, ...), ``y`` when
    there is one (a column ``y``, the table's target), and the arrays named in ``extra`` (one
    value per row each: e.g. sample weights).  Other arrays are not read."""
    import zipfile
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{path}: not a readable .npz of numeric arrays ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: unreadable .npz file ({e})") from None
    if not hasattr(z, "files"):
        raise InputError(f"{path}: needs arrays X and y; found a bare array (a .npy)")
    try:
        with z:
            if "X" not in z.files:
                raise InputError(f"{path}: needs an array X (and y); found {z.files}")
            X = z["X"]
            cols = _array_columns(X, path)
            for name in ["y", *extra]:
                if name not in z.files:
                    continue
                a = z[name]
                if a.ndim == 2 and a.shape[1] == 1:
                    a = a[:, 0]
                if a.ndim != 1 or a.shape[0] != X.shape[0]:
                    raise InputError(f"{path}: X has {len(X)} rows but {name} has shape "
                                     f"{a.shape} (one value per row needed)")
                cols.append(_array_column(name, a, path))
    except ValueError as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: not a readable .npz of numeric arrays ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: unreadable .npz file ({e})") from None
    return Table(cols, path, target="y" if "y" in z.files else None)


def load_npy(path):
    """The array of a ``.npy`` file (numbers only; no pickle)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{path}: not a numeric .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: unreadable .npy file ({e})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise InputError(f"{path}: an .npz archive, not a .npy array")
    return arr


def read_file(path, delimiter=None, header=None, encoding=None, columns=None, extra=()):
    """A :class:`Table` from the file ``path``, its format by its suffix: ``.csv`` (also
    ``.tsv``, ``.txt``; compressed ``.gz``, ``.bz2``, ``.xz``, ``.zst``: see :func:`read_csv`
    for ``delimiter``, ``header``, ``encoding``), ``.parquet``/``.pq``,
    ``.feather``/``.arrow``/``.ipc`` (a pandas index written with the frame is not read),
    ``.npz`` (see :func:`read_npz` for ``extra``), ``.npy`` (a 2-D array: columns ``0``, ``1``,
    ...).  ``columns``: only these columns are needed (by name; others may be left unread)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory, not a data file")
    ext, compression = _suffixes(path)
    if ext in CSV_SUFFIXES or (compression and ext in CSV_SUFFIXES + ("",)):
        return read_csv(path, delimiter, header, encoding, columns)
    if compression:
        raise InputError(f"{path}: only CSV files can be read compressed")
    if ext in PARQUET_SUFFIXES:
        return _read_arrow_file(path, "parquet", columns)
    if ext in ARROW_SUFFIXES:
        return _read_arrow_file(path, "arrow", columns)
    if ext == ".npz":
        return read_npz(path, extra)
    if ext == ".npy":
        arr = load_npy(path)
        return Table(_array_columns(arr, path), path)
    raise InputError(f"{path}: unknown data format {ext or '(no suffix)'!r}; use .csv (or .tsv, "
                     f"compressed .gz/.bz2/.xz/.zst), .parquet, .feather/.arrow, .npz (arrays "
                     f"X, y) or .npy")


def read_table(data, delimiter=None, columns=None, header=None, encoding=None):
    """A :class:`Table` from ``data``: a path (see :func:`read_file`), a pandas DataFrame, a
    pyarrow Table or RecordBatch (or anything with the Arrow PyCapsule stream interface, e.g.
    polars), a dict of columns, a 2-D NumPy array (columns ``0``, ``1``, ...) or a Table.
    ``columns``: only these are needed (by name): the others are not converted (a column of a
    type fastbp cannot use then costs nothing)."""
    if isinstance(data, Table):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_file(data, delimiter, header, encoding, columns)
    pa = _pa()
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if not isinstance(data, pa.Table) and hasattr(data, "__arrow_c_stream__") and not \
            _is_dataframe(data):
        data = pa.table(data)
    want = None if columns is None else {str(c) for c in columns}
    if isinstance(data, pa.Table):
        skip = set(_pandas_index(data.schema))
        keep = [n for n in data.column_names if n not in skip
                and (want is None or str(n).strip() in want)]
        return from_arrow(data.select(keep), "table")
    if _is_dataframe(data):
        return _from_pandas(data, pa, want)
    if isinstance(data, dict):
        cols = [_array_column(str(name), _column_values(values), "dict")
                for name, values in data.items() if want is None or str(name) in want]
        if not data:
            raise InputError("the dict of columns is empty")
        return Table(cols, "dict")
    if isinstance(data, (np.ndarray, list, tuple)):
        arr = np.asarray(data)
        if arr.dtype == object and arr.ndim == 2:
            return Table([_array_column(str(j), arr[:, j], "array")
                          for j in range(arr.shape[1])], "array")
        return Table(_array_columns(arr, "array"), "array")
    raise InputTypeError(f"cannot read a table from {type(data).__name__}: give a file path, a "
                         f"pandas DataFrame, a pyarrow Table, a dict of columns or a 2-D array")


def _column_values(values):
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        try:
            return values.to_numpy()
        except TypeError:
            pass
    return np.asarray(values)


def _is_dataframe(obj):
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns") and hasattr(obj, "iloc")


def _from_pandas(df, pa, want=None):
    """A DataFrame's columns by name (the index is not a column; ``want``: only these);
    object columns that mix types are read as their text, types fastbp cannot use kept as
    "other" columns."""
    names = [str(c).strip() for c in df.columns]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"DataFrame: column {dup!r} appears twice; column names must be unique")
    cols = []
    for j, name in enumerate(names):
        if want is not None and name not in want:
            continue
        s = df.iloc[:, j]
        try:
            arr = pa.Array.from_pandas(s)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            arr = _arrow_array(list(s), pa)
        except pa.ArrowException:
            cols.append(Column.other(name, len(df), str(s.dtype)))
            continue
        cols.append(_column(name, pa.chunked_array([arr]), "DataFrame", pa))
    return Table(cols, "DataFrame")


def write_table(path, columns):
    """Write ``columns`` (a dict name -> 1-D array, in order) to ``path``, atomically: CSV
    (a header, missing values as empty fields, numbers in their shortest exact form, quotes
    only where a field needs them) or Parquet (typed columns), by its suffix."""
    from ..model.modelfile import atomic_write
    ext, compression = _suffixes(os.fspath(path))
    if ext in PARQUET_SUFFIXES and not compression:
        pa = _pa()
        import pyarrow.parquet as pq
        table = pa.table({k: _arrow_array(np.asarray(v).tolist() if np.asarray(v).dtype == object
                                          else v, pa) for k, v in columns.items()})
        atomic_write(path, lambda f: pq.write_table(table, f))
    elif ext in CSV_SUFFIXES and not compression:
        text = csv_text(columns).encode()
        atomic_write(path, lambda f: f.write(text))
    else:
        raise InputError(f"{path}: predictions are written as .csv or .parquet (or .npy)")


def csv_text(columns):
    """The CSV text of ``columns`` (see :func:`write_table`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(columns))
    w.writerows(zip(*[_cells(v) for v in columns.values()]))
    return buf.getvalue()


def _cells(values):
    values = np.asarray(values)
    if values.dtype == np.float32:      # its own shortest repr, not float64's 17 digits
        return ["" if v != v else str(v) for v in values]
    out = []
    for v in values.astype(object).tolist():
        if v is None or (isinstance(v, float) and v != v):
            out.append("")
        elif isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out
