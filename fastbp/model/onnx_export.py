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

A hidden layer of a structured network (:class:`~fastbp.Network`'s ``normalization``,
``skips``, ``dropout``, per-layer ``activation``) is, in the order of the kernels
(:mod:`fastbp.kernels.structure`)::

    layers.{l}.z                       as above
    norms.{l}.y  = x̂ · norms.{l}.weight + norms.{l}.bias       normalised layers only
    layers.{l}.h = activation(norms.{l}.y or layers.{l}.z)     its own activation
    layers.{l}.a = h + a_i + a_j ...                           one Add per skip (i, l + 1), i
                                                               ascending; a_0 = "input"

(without skips the activation's output is ``layers.{l}.a`` itself, and an identity activation
has no node: the layer's output is then the tensor before it).  Dropout is left out: at
inference it is the identity (inverted dropout scales during training).

A network with embeddings (:class:`Embedding`) takes ``"input"`` ``[batch, n_x]`` with the codes
in its last ``k`` columns, as fastbp does, and builds the first layer's input from it::

    embeddings.numeric  = Slice(input, 0, n_x - k, axis 1)          (none when n_x = k)
    embeddings.{e}.code = Cast<int64>(Squeeze(Slice(input, col_e, col_e + 1, axis 1), 1))
    embeddings.{e}.rows = Gather(embeddings.{e}.weight, embeddings.{e}.code, axis 0)
    embeddings.a0       = Concat(numeric, rows_0, rows_1, ..., axis 1)

with the tables as initializers under their state-dict names.  The codes are not checked in
the graph (Gather refuses an index out of range; a fractional code is truncated by the Cast):
check them before, as fastbp's own calls do.  ``x̂`` is, in the
network's dtype::

    batch:  (z - norms.{l}.running_mean) · Reciprocal(Sqrt(norms.{l}.running_var + 1e-5))
    layer:  d = z - ReduceMean(z, -1);  d · Reciprocal(Sqrt(ReduceMean(d · d, -1) + 1e-5))

the kernels' formulas (two passes over the row, the biased variance, ``1/σ`` then a product),
with the running statistics as initializers under their state-dict names (onnxruntime folds
``Reciprocal(Sqrt(var + eps))`` into a constant when it loads the model).

Why not the ONNX ops, though both have float32 and float64 CPU kernels in onnxruntime:

* their ``epsilon`` is a *float32* attribute, so a float64 graph would normalise with ``1e-5f``
  (2.5e-13 from ``1e-5``), which moves x̂ by ~1e-12 relative where a variance is ~0.1 and more
  where it is smaller: over the 1e-12 that float64 export is held to (measured: 1.5e-12 batch,
  4.6e-12 layer; 1e-15 with the composed nodes);
* onnxruntime's BatchNormalization computes ``z·s + (β - μ·s)`` with ``s = γ/σ`` and its
  LayerNormalization the variance as ``mean(z²) - mean(z)²``, both in the dtype: they lose the
  digits that cancel when a mean is large next to the spread (float32, a mean of 60 σ: 2e-5
  relative, over float32's 1e-5; the composed batch norm: 2e-7; the composed layer norm
  centres on a mean rounded to the dtype, as fastbp's kernel does);
* onnxruntime fuses MatMul + BatchNormalization into a Gemm with rescaled weights
  (MatmulBNFusion), one rounding more per weight.

``d · d``, ``Reciprocal`` and ``Mul`` (not ``Pow(d, 2)`` and ``Div``) also keep onnxruntime's
LayerNormFusion from rewriting the subgraph into its LayerNormalization (float32 epsilon and
the one-pass variance again).

``onnx`` is imported only when a model is written, so ``import fastbp`` does not need it.
"""
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .._validation import InputError, InputTypeError
from ..kernels.activations import LEAKY_SLOPE
from ..kernels.structure import EPS
from .modelfile import atomic_write

OPSET = 17          # runs on onnxruntime 1.16+ (ReduceMean still takes ``axes`` as an attribute)
IR_VERSION = 8      # opset 17's (onnx 1.12): older runtimes refuse onnx's default, its newest
INPUT, OUTPUT, BATCH = "input", "output", "batch"
# protobuf refuses to serialise a message of 2 GiB or more (ONNX's external-data format would be
# needed, which a single-file deployment does not want)
_PROTOBUF_LIMIT = 2 ** 31 - 2 ** 20
_HIDDEN = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")
_OUTPUT = ("identity", "sigmoid", "softmax", "exp")
_NORMS = (None, "batch", "layer")


@dataclass(frozen=True)
class Layer:
    """One dense layer of the exported graph: ``z = a_prev @ weight + bias``, then (hidden
    layers) the normalisation of ``z``, ``a = f(·)`` and the skip connections.

    ``activation`` is a fastbp name (hidden or output).  ``norm``: None, ``"batch"`` (needs
    ``gamma``, ``beta``, ``running_mean``, ``running_var``) or ``"layer"`` (``gamma``,
    ``beta``), all of shape ``(n_out,)``.  ``skips_from``: the indices ``i`` of the
    activations ``a_i`` (``a_0``: the input, ``a_k``: layer ``k - 1``'s output) added to this
    layer's output, in that order.  Dropout has no field: it does nothing at inference."""
    weight: np.ndarray      # (n_in, n_out)
    bias: np.ndarray        # (n_out,)
    activation: str
    norm: Optional[str] = None
    gamma: Optional[np.ndarray] = None
    beta: Optional[np.ndarray] = None
    running_mean: Optional[np.ndarray] = None
    running_var: Optional[np.ndarray] = None
    skips_from: Tuple[int, ...] = ()

    def arrays(self, l):
        """``(initializer name, array)`` of every parameter, state-dict names."""
        out = [(f"layers.{l}.weight", self.weight), (f"layers.{l}.bias", self.bias)]
        for key, field in (("weight", "gamma"), ("bias", "beta"),
                           ("running_mean", "running_mean"), ("running_var", "running_var")):
            if getattr(self, field) is not None:
                out.append((f"norms.{l}.{key}", getattr(self, field)))
        return out


@dataclass(frozen=True)
class Embedding:
    """A learned table ``(n_levels, dim)`` whose rows replace the integer codes in column
    ``column`` of the input (see the module docstring)."""
    column: int
    table: np.ndarray


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
    widths = [np.shape(layers[0].weight)[0]]       # widths[k]: the width of a_k
    for l, layer in enumerate(layers):
        n_prev = widths[-1]
        w, b = np.asarray(layer.weight), np.asarray(layer.bias)
        if w.ndim != 2 or w.shape[0] != n_prev or b.shape != (w.shape[1],):
            raise InputError(f"layer {l}: weight {w.shape} and bias {b.shape} do not continue "
                             f"a layer of {n_prev} units")
        last = l == len(layers) - 1
        allowed = _OUTPUT if last else _HIDDEN
        if layer.activation not in allowed:
            raise InputError(f"layer {l}: activation {layer.activation!r} cannot be exported "
                             f"there (expected one of {list(allowed)})")
        if layer.norm not in _NORMS:
            raise InputError(f"layer {l}: unknown normalisation {layer.norm!r}")
        if last and (layer.norm is not None or layer.skips_from):
            raise InputError(f"layer {l}: the output layer takes no normalisation or skip")
        needs = {None: (), "layer": ("gamma", "beta"),
                 "batch": ("gamma", "beta", "running_mean", "running_var")}[layer.norm]
        for field in ("gamma", "beta", "running_mean", "running_var"):
            if (getattr(layer, field) is not None) != (field in needs):
                raise InputError(f"layer {l}: {field} {'missing' if field in needs else 'given'}"
                                 f" for normalisation {layer.norm!r}")
        n = w.shape[1]
        for name, arr in layer.arrays(l):
            arr = np.asarray(arr)
            if arr.dtype != dtype:
                raise InputError(f"layer {l}: {name} of dtype {arr.dtype} in a {dtype} network")
            if name.startswith("norms.") and arr.shape != (n,):
                raise InputError(f"layer {l}: {name} has shape {arr.shape}, not ({n},)")
            if not np.isfinite(arr).all():
                raise InputError(f"layer {l} has NaN or infinite parameters ({name}); nothing "
                                 f"was written")
        if layer.norm == "batch" and (np.asarray(layer.running_var) < 0).any():
            raise InputError(f"layer {l}: norms.{l}.running_var has negative entries")
        for i in layer.skips_from:
            if not (isinstance(i, (int, np.integer)) and 0 <= i <= l):
                raise InputError(f"layer {l}: a skip comes from a_0 .. a_{l}; got {i!r}")
            if widths[i] != n:
                raise InputError(f"layer {l}: skip from a_{i} of width {widths[i]} into "
                                 f"{n} units")
        widths.append(n)
    return dtype


class _Graph:
    """Nodes and initializers of a graph in one dtype; every tensor and node name unique."""

    def __init__(self, onnx, dtype, prefix="const"):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers = [], []
        self._constants = {}
        self._prefix = prefix       # of the constants' names (two graphs joined: two prefixes)

    def initializer(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array),
                                                                   name))
        return name

    def constant(self, value, dtype=None):
        """A scalar (or 1-D int64 list) initializer, shared by every node that needs it."""
        arr = np.asarray(value, dtype or self.dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._constants:
            self._constants[key] = self.initializer(f"{self._prefix}.{len(self._constants)}",
                                                    arr)
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


# --- normalisation: x̂, then γ·x̂ + β (see the module docstring) -----------------------------
def _normalise(g, z, layer, l):
    """The nodes of ``γ·x̂ + β`` for ``z``; returns the name of the result."""
    p = f"norms.{l}"
    if layer.norm == "batch":
        mean = g.initializer(f"{p}.running_mean", layer.running_mean)
        var = g.initializer(f"{p}.running_var", layer.running_var)
    else:
        mean = g.node("ReduceMean", [z], f"{p}.mean", axes=[-1], keepdims=1)
    d = g.node("Sub", [z, mean], f"{p}.centered")
    if layer.norm == "layer":
        var = g.node("ReduceMean", [g.node("Mul", [d, d], f"{p}.squared")], f"{p}.var",
                     axes=[-1], keepdims=1)
    std = g.node("Sqrt", [g.node("Add", [var, g.constant(EPS)], f"{p}.var_eps")], f"{p}.std")
    xhat = g.node("Mul", [d, g.node("Reciprocal", [std], f"{p}.inv_std")], f"{p}.xhat")
    gamma = g.initializer(f"{p}.weight", layer.gamma)
    beta = g.initializer(f"{p}.bias", layer.beta)
    return g.node("Add", [g.node("Mul", [xhat, gamma], f"{p}.scaled"), beta], f"{p}.y")


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


def _embed(g, embeddings, n_x, source=INPUT):
    """The nodes of the first layer's input from ``source`` (``n_x`` columns, codes in the
    last ``len(embeddings)``); returns its name."""
    k = len(embeddings)
    i64 = lambda *v: g.constant(list(v), np.int64)
    parts = []
    if n_x > k:
        parts.append(g.node("Slice", [source, i64(0), i64(n_x - k), i64(1)], "embeddings.numeric"))
    for e, emb in enumerate(embeddings):
        p = f"embeddings.{e}"
        col = g.node("Slice", [source, i64(emb.column), i64(emb.column + 1), i64(1)],
                     f"{p}.column")
        code = g.node("Cast", [g.node("Squeeze", [col, i64(1)], f"{p}.squeezed")], f"{p}.code",
                      to=g.onnx.TensorProto.INT64)
        table = g.initializer(f"{p}.weight", emb.table)
        parts.append(g.node("Gather", [table, code], f"{p}.rows", axis=0))
    if len(parts) == 1:
        return parts[0]
    return g.node("Concat", parts, "embeddings.a0", axis=1)


def _check_embeddings(embeddings, n_x, n_in, dtype):
    """``embeddings`` read the last columns of ``n_x``, in order, and with the numeric columns
    give the first layer's ``n_in`` inputs."""
    k = len(embeddings)
    dims = 0
    for e, emb in enumerate(embeddings):
        t = np.asarray(emb.table)
        if t.ndim != 2 or t.dtype != dtype:
            raise InputError(f"embedding {e}: its table must be a 2-D {dtype} array")
        if not np.isfinite(t).all():
            raise InputError(f"embedding {e} has NaN or infinite parameters; nothing was "
                             f"written")
        if emb.column != n_x - k + e:
            raise InputError(f"embedding {e} reads column {emb.column}; the codes are the last "
                             f"{k} of {n_x} columns, in order")
        dims += t.shape[1]
    if n_x - k + dims != n_in:
        raise InputError(f"the embeddings make {n_x - k + dims} inputs; the first layer takes "
                         f"{n_in}")


def model(layers, *, embeddings=(), n_x=None, head=None, name="fastbp", doc="",
          input_name=INPUT):
    """The ModelProto of ``layers`` (:class:`Layer`, in order), after ``embeddings``
    (:class:`Embedding`: the codes in the last columns of an input of ``n_x`` columns looked
    up; None: the first layer's input width) and before ``head`` (None, ``"binary_proba"`` or
    ``"squeeze"``), reading the tensor ``input_name``.  Each front end builds the layers it
    exports (``Network.onnx_model``, the scikit-learn estimators' ``to_onnx``); raises as
    :func:`write`."""
    onnx = _onnx()
    dtype = _check_layers(layers)
    n_in = np.shape(layers[0].weight)[0]
    n_x = n_in if n_x is None else n_x
    _check_embeddings(embeddings, n_x, n_in, dtype)
    size = sum(np.asarray(arr).nbytes for l, x in enumerate(layers) for _, arr in x.arrays(l))
    size += sum(np.asarray(e.table).nbytes for e in embeddings)
    if size > _PROTOBUF_LIMIT:
        raise InputError(f"the network's parameters take {size / 2 ** 30:.1f} GiB: more than "
                         f"one ONNX file holds (protobuf's 2 GiB limit)")
    g = _Graph(onnx, dtype)
    # outputs[k]: the tensor of a_k (after its skips); a_0 with the embeddings' rows
    outputs = [_embed(g, embeddings, n_x, input_name) if embeddings else input_name]
    for l, layer in enumerate(layers):
        p = f"layers.{l}"
        W = g.initializer(f"{p}.weight", layer.weight)
        b = g.initializer(f"{p}.bias", layer.bias)
        z = g.node("Add", [g.node("MatMul", [outputs[-1], W], f"{p}.matmul"), b], f"{p}.z")
        if layer.norm is not None:
            z = _normalise(g, z, layer, l)
        ops = _OUTPUT_OPS if l == len(layers) - 1 else _HIDDEN_OPS
        a = ops[layer.activation](g, z, f"{p}.h" if layer.skips_from else f"{p}.a")
        for n, i in enumerate(layer.skips_from):    # the kernels' order: a = ((h + a_i) + ...)
            last = n == len(layer.skips_from) - 1
            a = g.node("Add", [a, outputs[i]], f"{p}.a" if last else f"{p}.skip{n}")
        outputs.append(a)
    a = outputs[-1]
    n_out = np.shape(layers[-1].weight)[1]
    y, shape = _HEADS[head](g, a, n_out)
    g.rename(y, OUTPUT)
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    graph = onnx.helper.make_graph(
        g.nodes, name, [onnx.helper.make_tensor_value_info(input_name, elem, [BATCH, n_x])],
        [onnx.helper.make_tensor_value_info(OUTPUT, elem, shape)], initializer=g.initializers)
    from .._version import __version__
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="fastbp", producer_version=__version__,
                                   doc_string=doc)
    proto.ir_version = IR_VERSION
    return proto


def write(proto, path):
    """Write the ModelProto ``proto`` to ``path`` atomically (a reader sees the old file or
    the new one); returns ``os.fspath(path)``.

    Raises TypeError when ``path`` is not a str or os.PathLike; ValueError (from
    :func:`model`) for NaN or infinite parameters, a negative running variance, or more than
    one ONNX file holds; ImportError without the ``onnx`` package (``pip install
    "fastbp[onnx]"``)."""
    path = _check_path(path)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return path
