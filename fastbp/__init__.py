"""fastbp: fast backpropagation for multilayer perceptrons on the CPU (Numba kernels)."""
from . import _config  # noqa: F401  (fixes the threading layer before anything compiles)
from .model.network import Network
from .data.model import Model, load
from .data.tables import read_table
from .model.trainer import History, Trainer, TrainingDivergedError
from . import schedules  # noqa: E402  (fastbp.schedules.StepLR, ...)

from ._version import __version__


def __getattr__(name):
    # the scikit-learn estimators load on first use: `import fastbp` works without scikit-learn
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import sklearn
        return getattr(sklearn, name)
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")
__all__ = ["Network", "Trainer", "History", "TrainingDivergedError", "Model", "load", "read_table",
           "schedules", "__version__"]
