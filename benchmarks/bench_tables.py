"""From a CSV file to the training matrix (fastbp.data.prepare: read, roles, split, fit the
preprocessor, transform): time and peak memory on a mixed-type table of 1M rows and 50 columns
(30 floats with missing values, 8 integers, 6 low-cardinality strings with missing values,
2 high-cardinality strings, 2 yes/no columns, a row number, the target)."""
import os
import tempfile

import numpy as np

ROWS = 1_000_000


def mixed_table(rows, seed=0):
    """The benchmark's columns, as a pyarrow Table."""
    import pyarrow as pa
    rng = np.random.default_rng(seed)
    cols = {"id": np.arange(rows)}
    for j in range(30):
        v = rng.normal(100 * j, 10 + j, rows).round(3)
        mask = rng.random(rows) < 0.02 if j % 3 == 0 else None
        cols[f"f{j}"] = pa.array(v, mask=mask)
    for j in range(8):
        cols[f"i{j}"] = rng.integers(0, 1000, rows)
    for j in range(6):
        levels = np.array([f"level{k}" for k in range(5 + 3 * j)])
        cols[f"c{j}"] = pa.array(levels[rng.integers(0, len(levels), rows)],
                                 mask=rng.random(rows) < 0.01)
    for j in range(2):
        shops = np.array([f"shop-{k}" for k in range(1000)])
        cols[f"h{j}"] = shops[rng.zipf(1.3, rows) % 1000]
    for j in range(2):
        cols[f"b{j}"] = np.where(rng.random(rows) < 0.5, "yes", "no")
    cols["target"] = np.array(["low", "mid", "high"])[rng.integers(0, 3, rows)]
    return pa.table(cols)


def write_csv(path, rows, seed=0):
    import pyarrow.csv as pcsv
    pcsv.write_csv(mixed_table(rows, seed), path)


class CsvToMatrix:
    """``prepare(file.csv, target)`` on the mixed 1M x 50 table (float32 matrix out)."""
    timeout = 600
    number = 1
    repeat = 3
    rounds = 1

    def setup_cache(self):
        path = os.path.join(tempfile.mkdtemp(prefix="fastbp-bench-"), "mixed.csv")
        write_csv(path, ROWS)
        return path

    def setup(self, path):
        from fastbp.data import prepare
        self.prepare = prepare

    def time_csv_to_matrix(self, path):
        self.prepare(path, "target", validation_split=0.1)

    def peakmem_csv_to_matrix(self, path):
        self.prepare(path, "target", validation_split=0.1)

    def track_matrix_mb(self, path):
        p = self.prepare(path, "target", validation_split=0.1)
        return (p.Xtr.nbytes + p.val[0].nbytes) / 2 ** 20
    track_matrix_mb.unit = "MiB"
