"""The data layer: tables in (CSV, Parquet, Arrow/Feather, .npz/.npy; DataFrames, Arrow tables,
dicts of columns), column roles, the fitted preprocessor, metrics, and the trained
:class:`Model` that predicts from tables by column name."""
from .tables import Table, read_table
from .preprocess import Preprocessor, infer_roles
from .model import Model, Prepared, load, prepare

__all__ = ["Table", "read_table", "Preprocessor", "infer_roles", "Model", "Prepared", "load",
           "prepare"]
