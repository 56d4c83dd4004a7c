"""The data layer: tables, column roles, the fitted preprocessor and evaluation metrics."""
