"""Network: a fully-connected feed-forward net whose parameters live in one flat buffer."""
import os

import numpy as np

from .. import engine
from .._validation import (InputError, InputTypeError, check_choice, check_dtype, check_int,
                           check_targets, check_X)
from ..engine import Codes, Workspace, parameter_layout
from ..kernels.activations import HIDDEN, NAMES as ACT_NAMES, OUTPUT, RELU, LEAKY_RELU
from ..kernels.losses import LOSSES
from . import modelfile

INITS = ("auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "normal")
NORMAL_STD = 0.01

# which losses accept which output activation (the kernels compute every loss from z)
_COMPATIBLE = {"squared_error": ("identity", "sigmoid", "softmax"),
               "cross_entropy": ("identity", "softmax"),
               "binary_cross_entropy": ("identity", "sigmoid"),
               "poisson": ("exp",)}
_DEFAULT_LOSS = {"identity": "squared_error", "softmax": "cross_entropy",
                 "sigmoid": "binary_cross_entropy", "exp": "poisson"}


class Network:
    """A multilayer perceptron ``layer_sizes = [n_in, h1, ..., n_out]``.

    Parameters
    ----------
    layer_sizes : sequence of int
        Two or more positive sizes; ``[n_in, n_out]`` is a single-layer network.
    activation : {"relu", "leaky_relu", "sigmoid" (alias "logistic"), "tanh", "identity"}
        Hidden-layer activation (leaky_relu has slope 0.01).
    output_activation : {"identity", "sigmoid", "softmax", "exp"}
        ``exp`` (a positive rate) goes with the Poisson loss.
    dtype : float32 or float64
        Kept end to end: parameters, inputs (converted once), kernels and outputs.
    init : {"auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "normal"}
        Weight initialisation; biases start at zero.  ``auto`` is He (uniform) for relu-like
        activations and Glorot (uniform) otherwise; ``normal`` is N(0, 0.01²).
    seed : int, numpy Generator or None
        Seed of the initial weights.

    Attributes
    ----------
    params : ndarray
        The flat parameter buffer; ``weights[l]`` (``(n_in, n_out)``) and ``biases[l]`` are views
        into it, so writing into them changes the network.
    """

    def __init__(self, layer_sizes, activation="relu", output_activation="identity",
                 dtype=np.float32, init="auto", seed=None):
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
            raise InputTypeError(f"layer_sizes must be a sequence of positive integers; got {layer_sizes!r}")
        sizes = [check_int(f"layer_sizes[{i}]", s, minimum=1) for i, s in enumerate(layer_sizes)]
        if len(sizes) < 2:
            raise InputError(f"layer_sizes needs at least two sizes [n_in, n_out]; got {list(layer_sizes)}")
        activation = check_choice("activation", activation, HIDDEN)
        output_activation = check_choice("output_activation", output_activation, OUTPUT)
        init = check_choice("init", init, INITS)
        self._dtype = check_dtype(dtype)
        self._sizes = tuple(sizes)
        self._act = HIDDEN[activation]
        self._out = OUTPUT[output_activation]
        self._layout, n = parameter_layout(sizes)
        self._params = np.zeros(n, self._dtype)
        self._init(init, seed)

    # -- construction ---------------------------------------------------------------------
    def _init(self, init, seed):
        rng = np.random.default_rng(seed)
        if init == "auto":
            init = "he_uniform" if self._act in (RELU, LEAKY_RELU) else "glorot_uniform"
        for W in self.weights:
            fan_in, fan_out = W.shape
            if init == "glorot_uniform":
                lim = np.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-lim, lim, W.shape)
            elif init == "glorot_normal":
                w = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), W.shape)
            elif init == "he_uniform":
                lim = np.sqrt(6.0 / fan_in)
                w = rng.uniform(-lim, lim, W.shape)
            elif init == "he_normal":
                w = rng.normal(0.0, np.sqrt(2.0 / fan_in), W.shape)
            else:
                w = rng.normal(0.0, NORMAL_STD, W.shape)
            W[...] = w

    # -- structure --------------------------------------------------------------------------
    @property
    def params(self):
        """The flat parameter buffer (writable).  Assigning to it copies the values in: the
        buffer itself, which the compiled code and every view share, is never replaced."""
        return self._params

    @params.setter
    def params(self, value):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise InputTypeError(f"params must hold real numbers; got dtype {arr.dtype}")
        if arr.shape != self._params.shape:
            raise InputError(f"params must have shape {self._params.shape} (this network's "
                             f"parameter count); got {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError("params contains NaN or inf")
        self._params[...] = arr

    @property
    def layer_sizes(self):
        return list(self._sizes)

    @property
    def activation(self):
        return ACT_NAMES[self._act]

    @property
    def output_activation(self):
        return ACT_NAMES[self._out]

    @property
    def dtype(self):
        return self._dtype

    @property
    def n_layers(self):
        return len(self._sizes) - 1

    def _views(self, buf, which):
        out = []
        for n_in, n_out, w, b in self._layout:
            out.append(buf[w:w + n_in * n_out].reshape(n_in, n_out) if which == 0 else buf[b:b + n_out])
        return out

    @property
    def weights(self):
        """Per-layer weight matrices ``(n_in, n_out)``: writable views of :attr:`params`."""
        return self._views(self.params, 0)

    @weights.setter
    def weights(self, values):
        self._assign(values, 0, "weights")

    @property
    def biases(self):
        """Per-layer bias vectors ``(n_out,)``: writable views of :attr:`params`."""
        return self._views(self.params, 1)

    @biases.setter
    def biases(self, values):
        self._assign(values, 1, "biases")

    def _assign(self, values, which, name):
        targets = self._views(self.params, which)
        if len(values) != len(targets):
            raise InputError(f"{name} needs {len(targets)} arrays, one per layer; got {len(values)}")
        converted = []
        for l, (v, t) in enumerate(zip(values, targets)):
            arr = np.asarray(v)
            if arr.dtype.kind not in "biuf":
                raise InputTypeError(f"{name}[{l}] must hold real numbers; got dtype {arr.dtype}")
            if arr.shape != t.shape:
                raise InputError(f"{name}[{l}] must have shape {t.shape}; got {arr.shape}")
            if not np.isfinite(arr).all():
                raise InputError(f"{name}[{l}] contains NaN or inf")
            converted.append(arr)
        for v, t in zip(converted, targets):   # only once every layer has passed
            t[...] = v

    def loss_name(self, loss):
        """Validate ``loss`` for this network's output (None: the natural one for it)."""
        out = ACT_NAMES[self._out]
        if loss is None:
            return _DEFAULT_LOSS[out]
        loss = check_choice("loss", loss, LOSSES)
        if out not in _COMPATIBLE[loss]:
            raise InputError(f"loss {loss!r} does not fit output_activation {out!r}; it takes "
                             f"{' or '.join(_COMPATIBLE[loss])} outputs")
        return loss

    def __repr__(self):
        return (f"Network(layer_sizes={list(self._sizes)}, activation={self.activation!r}, "
                f"output_activation={self.output_activation!r}, dtype=np.{self._dtype.name})")

    # -- computation ---------------------------------------------------------------------------
    def _codes(self, loss=None):
        return Codes(self._act, self._out, LOSSES[loss] if loss else 0)

    def forward(self, X):
        """Output activations for the rows of ``X``: an array ``(n_samples, n_out)``.  Read-only
        and memory-mapped ``X`` are read in place (converted only if not C-contiguous in the
        network's dtype)."""
        X = check_X(X, self._dtype, self._sizes[0])
        out = np.empty((X.shape[0], self._sizes[-1]), self._dtype)
        return engine.predict(self._params, self._layout, self._codes(), X, out)

    predict = forward

    def _prepare(self, X, Y, loss):
        loss = self.loss_name(loss)
        X = check_X(X, self._dtype, self._sizes[0])
        Yf, Yi = check_targets(Y, loss, self._sizes[-1], X.shape[0], self._dtype)
        return X, Yf, Yi, loss

    def loss(self, X, Y, loss=None):
        """Mean per-sample loss over ``X`` (``loss=None``: the output's natural loss)."""
        X, Yf, Yi, loss = self._prepare(X, Y, loss)
        return engine.evaluate(self._params, self._layout, self._codes(loss), X, Yf, Yi) / X.shape[0]

    def _backprop_all(self, X, Y, loss):
        X, Yf, Yi, loss = self._prepare(X, Y, loss)
        n = X.shape[0]
        ws = Workspace(self._sizes, n, self._dtype, train=True)
        grads = np.empty_like(self._params)
        total, _ = engine.batch_gradients(self._params, self._layout, self._codes(loss), X, Yf,
                                          Yi, np.arange(n, dtype=np.int64), grads, ws)
        return total / n, grads, ws

    def deltas(self, X, Y, loss=None):
        """Per-layer deltas ``δ_l = ∂E_i/∂z_l`` for every sample (not divided by n).

        Returns a list with one ``(n_samples, layer_sizes[l])`` array per layer, l = 1..L."""
        _, _, ws = self._backprop_all(X, Y, loss)
        n = ws.capacity
        return [ws.view("deltas", l, n).copy() for l in range(1, len(self._sizes))]

    def gradients(self, X, Y, loss=None):
        """``(mean loss, [∂E/∂W per layer], [∂E/∂b per layer])``, means over the samples."""
        loss_value, grads, _ = self._backprop_all(X, Y, loss)
        return loss_value, self._views(grads, 0), self._views(grads, 1)

    # -- files ---------------------------------------------------------------------------------
    def _meta(self):
        return {"layer_sizes": self.layer_sizes, "activation": self.activation,
                "output_activation": self.output_activation, "dtype": self._dtype.name}

    def save(self, path):
        """Write the network to ``path`` (.npz, no pickle; see :func:`fastbp.load`)."""
        modelfile.write_model(path, self._params, self._meta())

    def to_onnx(self, path):
        """Write the network to ``path`` as an ONNX model (opset 17), for deployment.

        The graph maps ``"input"``, shape ``["batch", n_in]``, to ``"output"``, shape
        ``["batch", n_out]``: the values of :meth:`predict`, in this network's dtype (float32 ->
        FLOAT, float64 -> DOUBLE; feed it arrays of that dtype).  Each layer is a MatMul and an
        Add with the weights and biases as initializers, then its activation (layout in
        :mod:`fastbp.model.onnx_export`).  Written atomically.  Needs the ``onnx`` package
        (``pip install "fastbp[onnx]"``); onnxruntime runs the file.

        Returns ``os.fspath(path)``; raises TypeError when ``path`` is not a str or
        os.PathLike."""
        from . import onnx_export   # here, not at the top: ``import fastbp`` does not need onnx
        return onnx_export.to_onnx(self, path)


def load(path):
    """Read a network written by :meth:`Network.save`.

    Raises ValueError for a truncated, altered or foreign file, or one holding pickled objects;
    nothing in the file is executed."""
    meta, params = modelfile.read_model(path)
    try:
        net = Network(meta["layer_sizes"], activation=meta["activation"],
                      output_activation=meta["output_activation"], dtype=meta["dtype"],
                      init="normal", seed=0)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{os.fspath(path)}: the metadata do not describe a network: {e}") from None
    if params.shape != net._params.shape or params.dtype != net._dtype:
        raise InputError(f"{os.fspath(path)}: {params.shape[0]} {params.dtype} parameters do not "
                         f"fit layer sizes {net.layer_sizes} ({net._dtype})")
    net._params[...] = params
    return net
