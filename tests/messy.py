"""A messy table of the kind people really have, built here (no download): unscaled numbers,
missing values everywhere, strings, yes/no and True/False columns, a row number, a name per
row, a constant and an empty column, a high-cardinality category, and two targets that the
columns predict (a string label with some rows missing, and a price)."""
import numpy as np
import pandas as pd

CITIES = ["Lyon", "Paris", "Nice", "Lille", "Nantes"]


def messy_frame(n=400, seed=0, levels=60):
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 15_000, n).round(2)          # unscaled, in the tens of thousands
    age = rng.integers(18, 80, n).astype(float)
    city = rng.choice(CITIES, n, p=[0.3, 0.3, 0.2, 0.15, 0.05])
    smoker = rng.choice(["yes", "no"], n)
    member = rng.random(n) < 0.4
    shop = rng.zipf(1.6, n) % levels                           # many levels, a long tail
    signal = (income - 50_000) / 15_000 + (city == "Paris") * 1.5 - (smoker == "yes") \
        + 0.8 * np.sin(shop) + rng.normal(0, 0.3, n)
    label = np.where(signal > 0.5, "high", np.where(signal < -0.5, "low", "mid")).astype(object)
    price = 1000 + 300 * signal + rng.normal(0, 20, n)
    df = pd.DataFrame({
        "row": np.arange(1, n + 1),                           # a row number: id-like
        "name": [f"customer {i:05d}" for i in rng.permutation(n)],   # a distinct string per row
        "income": income,
        "age": age,
        "city": city,
        "smoker": smoker,
        "member": member,                                     # True/False
        "shop": [f"shop-{s}" for s in shop],
        "constant": "same",
        "empty": np.full(n, np.nan),
        "label": label,
        "price": price,
    })
    # missing values: numbers, strings, booleans and the label
    df.loc[rng.random(n) < 0.1, "income"] = np.nan
    df.loc[rng.random(n) < 0.05, "age"] = np.nan
    df.loc[rng.random(n) < 0.08, "city"] = None
    df.loc[rng.random(n) < 0.05, "smoker"] = None
    df.loc[rng.random(n) < 0.05, "label"] = None
    return df
