"""Compiled code only: no validation, no Python objects.  Callers (network.py, trainer.py) check
and convert every input first; these functions trust shapes, dtypes and contiguity."""
