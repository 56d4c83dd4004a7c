"""ONNX export of a trained network, for deployment with onnxruntime or any other ONNX runtime.

The graph (opset :data:`OPSET`, IR version :data:`IR_VERSION`) has one input ``"input"`` of
shape ``["batch", n_in]`` and one output ``"output"``, both in the network's dtype (float32 ->
FLOAT, float64 -> DOUBLE; the batch dimension is a ``dim_param``, so any number of rows).
Layer ``l`` (0-based) is::

    layers.{l}.matmul = MatMul(a_prev, layers.{l}.weight)   a_prev: "input", or layers.{l-1}.a
    layers.{l}.z      = Add(layers.{l}.matmul, layers.{l}.bias)
    layers.{l}.a      = activation(layers.{l}.z)

with the parameters as initializers under the names ``layers.{l}.weight`` / ``layers.{l}.bias``
(the keys of a state dict), and the last tensor renamed ``"output"``.  MatMul + Add rather than
Gemm: onnxruntime fuses either into a Gemm (float32 and, from 1.18, float64), but before 1.18 it
also fused Gemm + activation into a FusedGemm that has no float64 kernel, so a float64 Gemm
graph failed to load (onnxruntime PR #19612); MatMul + Add loads on every onnxruntime from 1.16.

Activations, chosen to reproduce fastbp's kernels rather than to look alike:

=============  ===========================================================================
relu           Relu
leaky_relu     LeakyRelu(alpha=0.01) in float32; in float64 ``Max(z, z·0.01)`` (equal to it),
               because LeakyRelu's ``alpha`` is a float32 attribute: 0.01f is 2e-8 away from
               the float64 slope fastbp uses
sigmoid        Sigmoid in a hidden layer.  In the output layer the kernels' overflow-free
               form, ``Where(z >= 0, 1, e) / (1 + e)`` with ``e = Exp(-|z|)``: onnxruntime's
               Sigmoid is accurate to about 1e-7 (float32) / 1e-16 (float64) *absolute* for
               z < 0, so a float32 probability of 1e-6 would be off by up to ~10 %; inside
               the net an error of that size is no bigger than rounding
tanh           Tanh
identity       no node
softmax        Softmax(axis=-1) (output only: over the units of a row)
exp            Exp (output only: the Poisson rate)
=============  ===========================================================================

The graph is built layer by layer from a list of :class:`Layer` descriptions; normalisation
(BatchNormalization of ``z`` with the running statistics, or LayerNormalization, axis -1,
eps 1e-5, both in opset 17) and skip connections (``a_k = a_k + a_i``) slot in where
:func:`_build_model` says, once :class:`~fastbp.Network` has them.

``onnx`` is imported only when a model is written, so ``import fastbp`` does not need it.
"""
import os
from dataclasses import dataclass

import numpy as np

from .._validation import InputError, InputTypeError
from ..kernels.activations import LEAKY_SLOPE
from .modelfile import atomic_write

OPSET = 17          # LayerNormalization's first opset (for later); runs on onnxruntime 1.16+
IR_VERSION = 8      # opset 17's (onnx 1.12): older runtimes refuse onnx's default, its newest
INPUT, OUTPUT, BATCH = "input", "output", "batch"
# protobuf refuses to serialise a message of 2 GiB or more (ONNX's external-data format would be
# needed, which a single-file deployment does not want)
_PROTOBUF_LIMIT = 2 ** 31 - 2 ** 20
_HIDDEN = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")
_OUTPUT = ("identity", "sigmoid", "softmax", "exp")


@dataclass(frozen=True)
class Layer:
    """One dense layer of the exported graph: ``z = a_prev @ weight + bias``, ``a = f(z)``.

    ``activation`` is a fastbp name (hidden or output).  A later normalisation or skip
    connection is one more field here (e.g. ``norm`` with its parameters, ``skips_from``: the
    indices ``i`` of ``a_i`` added to this layer's output)."""
    weight: np.ndarray      # (n_in, n_out)
    bias: np.ndarray        # (n_out,)
    activation: str


def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError('ONNX export needs the onnx package: pip install "fastbp[onnx]"') from e
    return onnx


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise InputTypeError(f"path must be a str or os.PathLike naming the .onnx file to "
                             f"write; got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise InputTypeError(f"path must be a text path (str), not {type(path).__name__}")
    if not path:
        raise InputError("path is empty")
    return path


def _check_layers(layers):
    """The dtype shared by every parameter of ``layers``, after checking that they chain."""
    dtype = np.asarray(layers[0].weight).dtype
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"only float32 and float64 networks can be exported; got {dtype}")
    n_prev = np.shape(layers[0].weight)[0]
    for l, layer in enumerate(layers):
        w, b = np.asarray(layer.weight), np.asarray(layer.bias)
        if w.ndim != 2 or w.shape[0] != n_prev or b.shape != (w.shape[1],):
            raise InputError(f"layer {l}: weight {w.shape} and bias {b.shape} do not continue "
                             f"a layer of {n_prev} units")
        if w.dtype != dtype or b.dtype != dtype:
            raise InputError(f"layer {l}: parameters of dtype {w.dtype}/{b.dtype} in a {dtype} "
                             f"network")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise InputError(f"layer {l} has NaN or infinite parameters; nothing was written")
        allowed = _OUTPUT if l == len(layers) - 1 else _HIDDEN
        if layer.activation not in allowed:
            raise InputError(f"layer {l}: activation {layer.activation!r} cannot be exported "
                             f"there (expected one of {list(allowed)})")
        n_prev = w.shape[1]
    return dtype


class _Graph:
    """Nodes and initializers of a graph in one dtype; every tensor and node name unique."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers = [], []
        self._constants = {}

    def initializer(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array),
                                                                   name))
        return name

    def constant(self, value, dtype=None):
        """A scalar (or 1-D int64 list) initializer, shared by every node that needs it."""
        arr = np.asarray(value, dtype or self.dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._constants:
            self._constants[key] = self.initializer(f"const.{len(self._constants)}", arr)
        return self._constants[key]

    def node(self, op, inputs, out, **attrs):
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def rename(self, old, new):
        for n in self.nodes:
            n.output[:] = [new if t == old else t for t in n.output]
            n.input[:] = [new if t == old else t for t in n.input]
            if n.name == old:
                n.name = new


# --- activations: emit the nodes of f(x) under the tensor name ``out``, return that name ------
def _identity(g, x, out):
    return x


def _relu(g, x, out):
    return g.node("Relu", [x], out)


def _leaky_relu(g, x, out):
    if g.dtype == np.float32:    # alpha is a float attribute: exactly fastbp's float32 slope
        return g.node("LeakyRelu", [x], out, alpha=LEAKY_SLOPE)
    # max(z, 0.01 z) is 0.01 z for z < 0 and z otherwise: the kernel's branch, rounding included
    scaled = g.node("Mul", [x, g.constant(LEAKY_SLOPE)], out + ".scaled")
    return g.node("Max", [x, scaled], out)


def _sigmoid(g, x, out):
    return g.node("Sigmoid", [x], out)


def _sigmoid_output(g, x, out):
    """kernels.activations.sigmoid: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) otherwise (each
    accurate to a few ulp relative to its value, however small)."""
    one = g.constant(1)
    e = g.node("Exp", [g.node("Neg", [g.node("Abs", [x], out + ".abs")], out + ".neg")],
               out + ".exp")
    positive = g.node("GreaterOrEqual", [x, g.constant(0)], out + ".positive")
    numerator = g.node("Where", [positive, one, e], out + ".numerator")
    return g.node("Div", [numerator, g.node("Add", [one, e], out + ".denominator")], out)


def _tanh(g, x, out):
    return g.node("Tanh", [x], out)


def _softmax(g, x, out):
    return g.node("Softmax", [x], out, axis=-1)


def _exp(g, x, out):
    return g.node("Exp", [x], out)


_HIDDEN_OPS = {"identity": _identity, "relu": _relu, "leaky_relu": _leaky_relu,
               "sigmoid": _sigmoid, "tanh": _tanh}
_OUTPUT_OPS = {"identity": _identity, "sigmoid": _sigmoid_output, "softmax": _softmax,
               "exp": _exp}


# --- heads: what follows the last layer (estimators shape their outputs) ---------------------
def _binary_proba(g, p, n_out):
    """[1 - p, p]: predict_proba of a binary classifier with one logistic output."""
    q = g.node("Sub", [g.constant(1), p], "proba.negative")
    return g.node("Concat", [q, p], "proba", axis=1), [BATCH, 2]


def _squeeze(g, y, n_out):
    """(batch, 1) -> (batch,): a single-output regressor's predict."""
    return g.node("Squeeze", [y, g.constant([1], np.int64)], "squeeze"), [BATCH]


_HEADS = {None: lambda g, y, n_out: (y, [BATCH, n_out]), "binary_proba": _binary_proba,
          "squeeze": _squeeze}


def _build_model(layers, *, head=None, name="fastbp", doc=""):
    """The ModelProto of ``layers`` (a list of :class:`Layer`) followed by ``head``."""
    onnx = _onnx()
    dtype = _check_layers(layers)
    size = sum(np.asarray(x.weight).nbytes + np.asarray(x.bias).nbytes for x in layers)
    if size > _PROTOBUF_LIMIT:
        raise InputError(f"the network's parameters take {size / 2 ** 30:.1f} GiB: more than "
                         f"one ONNX file holds (protobuf's 2 GiB limit)")
    g = _Graph(onnx, dtype)
    a = INPUT
    for l, layer in enumerate(layers):
        p = f"layers.{l}"
        W = g.initializer(f"{p}.weight", layer.weight)
        b = g.initializer(f"{p}.bias", layer.bias)
        z = g.node("Add", [g.node("MatMul", [a, W], f"{p}.matmul"), b], f"{p}.z")
        # normalisation goes here: BatchNormalization(z, weight, bias, running mean, var,
        # epsilon=1e-5) in eval mode, or LayerNormalization(z, weight, bias, axis=-1)
        ops = _OUTPUT_OPS if l == len(layers) - 1 else _HIDDEN_OPS
        a = ops[layer.activation](g, z, f"{p}.a")
        # skip connections go here: a = Add(a, output of layer i) for each skip (i, l + 1),
        # keeping every layer's output name in a list (a_0 = INPUT)
    n_out = np.shape(layers[-1].weight)[1]
    y, shape = _HEADS[head](g, a, n_out)
    g.rename(y, OUTPUT)
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    n_in = np.shape(layers[0].weight)[0]
    graph = onnx.helper.make_graph(
        g.nodes, name, [onnx.helper.make_tensor_value_info(INPUT, elem, [BATCH, n_in])],
        [onnx.helper.make_tensor_value_info(OUTPUT, elem, shape)], initializer=g.initializers)
    from .. import __version__
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="fastbp", producer_version=__version__,
                                   doc_string=doc)
    model.ir_version = IR_VERSION
    return model


def _write(model, path):
    data = model.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return path


def network_layers(network):
    """The :class:`Layer` list of a :class:`~fastbp.Network` (its parameters are copied when
    the graph is built, not here)."""
    acts = [network.activation] * (network.n_layers - 1) + [network.output_activation]
    return [Layer(W, b, f) for W, b, f in zip(network.weights, network.biases, acts)]


def to_onnx(network, path):
    """Write ``network`` (a :class:`~fastbp.Network`) to ``path`` as an ONNX model.

    The graph maps ``"input"`` ``(batch, n_in)`` to ``"output"`` ``(batch, n_out)``, the values
    of ``network.predict``, in the network's dtype; see the module docstring for its nodes.
    The file is written atomically (a reader sees the old file or the new one).

    Returns
    -------
    str
        ``os.fspath(path)``.

    Raises
    ------
    TypeError
        ``network`` is not a Network, or ``path`` not a str or os.PathLike.
    ValueError
        The parameters hold NaN or inf, or are too large for one ONNX file.
    ImportError
        The ``onnx`` package is missing (``pip install "fastbp[onnx]"``).
    """
    from .network import Network
    if not isinstance(network, Network):
        raise InputTypeError(f"network must be a fastbp.Network; got {type(network).__name__}")
    path = _check_path(path)
    model = _build_model(network_layers(network), name="fastbp.Network", doc=repr(network))
    return _write(model, path)


def estimator_to_onnx(estimator, path):
    """Write a fitted :class:`fastbp.MLPClassifier` or :class:`fastbp.MLPRegressor` to ``path``.

    The output is what ``predict_proba`` (classifier) or ``predict`` (regressor) returns for
    input in the estimator's dtype: ``(batch, n_classes)`` probabilities, ``[1-p, p]`` for a
    binary classifier; ``(batch,)`` for a regressor with one output, ``(batch, n_outputs)``
    otherwise."""
    from sklearn.base import is_classifier

    from ..kernels.activations import HIDDEN, NAMES, OUTPUT as OUT_CODES
    from ..sklearn import _OUT

    path = _check_path(path)
    estimator._params()     # coefs_/intercepts_ as views of one checked buffer, one dtype
    hidden = NAMES[HIDDEN[estimator.activation]]
    output = NAMES[OUT_CODES[_OUT[estimator.out_activation_]]]
    n = len(estimator.coefs_)
    layers = [Layer(W, b, hidden if l < n - 1 else output)
              for l, (W, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_))]
    classifier = is_classifier(estimator)
    head = None
    if estimator.n_outputs_ == 1:
        head = "binary_proba" if classifier else "squeeze"
    kind = type(estimator).__name__
    values = "predict_proba, columns ordered as classes_" if classifier else "predict"
    sizes = [W.shape[0] for W in estimator.coefs_] + [estimator.n_outputs_]
    doc = (f"fastbp.{kind}: {values}; layer sizes {sizes}, activation "
           f"{estimator.activation!r}, output activation {estimator.out_activation_!r}")
    model = _build_model(layers, head=head, name=f"fastbp.{kind}", doc=doc)
    return _write(model, path)
