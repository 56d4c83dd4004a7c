"""fastbp: fast backpropagation for multilayer perceptrons on the CPU (Numba kernels)."""
from . import _config  # noqa: F401  (fixes the threading layer before anything compiles)
from .io import load
from .network import Network
from .trainer import History, Trainer, TrainingDivergedError

__version__ = "0.1.0"
__all__ = ["Network", "Trainer", "History", "TrainingDivergedError", "load", "__version__"]
