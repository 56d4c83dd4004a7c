"""ONNX export of a :class:`~fastbp.data.Model`: the fitted preprocessing in the graph, so that a
deployment feeds the table's columns as they are and gets labels or values back.

Inputs: one per column the model reads (:attr:`Model.feature_names_in_`), by the column's name,
shape ``["batch", 1]``:

==========================  ==================  =============================================
the column's role           ONNX type            missing values
==========================  ==================  =============================================
numeric                     DOUBLE              NaN
boolean (numbers, bool)     DOUBLE (0 / 1)      NaN
boolean (text: yes/no ...)  STRING              "" (any other unknown text too)
categorical (text)          STRING              ""
categorical (numbers)       DOUBLE              NaN
==========================  ==================  =============================================

A categorical level the model has not seen maps to its "other" level, as in Python.  Text is
matched as it is fed: strip surrounding spaces first (Python's reader does; the graph cannot).
A column named like an output (``label``, ``probabilities``, ``prediction``) cannot be
exported: rename it.  Outputs:
a classifier's ``"label"`` (``["batch"]``: STRING, INT64, DOUBLE or BOOL, the classes' type)
and ``"probabilities"`` (``["batch", n_classes]``, in the network's dtype, columns in
``classes_`` order); a regressor's ``"prediction"`` (``["batch"]``, DOUBLE, in the target's
units).  The network between them is the graph of :meth:`fastbp.Network.to_onnx`,
reading the preprocessed matrix.  Numbers are standardised in DOUBLE and then cast to the
network's dtype, as :meth:`Preprocessor.transform` does; onnxruntime reproduces
:meth:`Model.predict_proba` to 1e-5 (float32).  Text levels go through ``ai.onnx.ml``'s
LabelEncoder (onnxruntime implements it).
"""
import numpy as np

from .._validation import InputError
from ..model import onnx_export as _net

ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 2
FEATURES = "features"       # the preprocessed matrix, the network's input


def _column_input(onnx, spec):
    """``(ONNX element type, kind)`` of a column's graph input: kind "number" or "text"."""
    T = onnx.TensorProto
    if spec["role"] == "categorical":
        if not spec["numeric_levels"]:
            return T.STRING, "text"
        if any(float(np.float32(v)) != float(v) for v in spec["levels"]):
            raise InputError(f"column {spec['name']!r}: a categorical level is not exact in "
                             f"float32 (ONNX's LabelEncoder keys): cannot be exported")
        return T.DOUBLE, "number"
    if spec["role"] == "boolean" and "true" in spec:
        return T.STRING, "text"
    return T.DOUBLE, "number"


def _numeric(g, x, spec, p, dtype):
    """Standardised value (0 where missing) and, when fitted, the indicator: ``[batch, w]``."""
    missing = g.node("IsNaN", [x], f"{p}.isnan")
    z = g.node("Div", [g.node("Sub", [x, g.constant(spec["mean"], np.float64)], f"{p}.centered"),
                       g.constant(spec["std"], np.float64)], f"{p}.scaled")
    z = g.node("Where", [missing, g.constant(0.0, np.float64), z], f"{p}.filled")
    z = g.node("Cast", [z], f"{p}.value", to=_elem(g))
    if not spec["indicator"]:
        return z
    ind = g.node("Cast", [missing], f"{p}.indicator", to=_elem(g))
    return g.node("Concat", [z, ind], f"{p}.out", axis=1)


def _elem(g):
    return g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype)


def _boolean_text(g, x, spec, p):
    """A text boolean as 0/1 doubles (NaN: missing or unknown text), with the spellings
    :func:`fastbp.data.preprocess._boolean_values` takes."""
    pairs = {}
    for words, value in ((spec["true"] + ["true", "1", "1.0"], 1.0),
                         (spec["false"] + ["false", "0", "0.0"], 0.0)):
        for w in words:
            for variant in (w, w.lower(), w.upper(), w.capitalize()):
                pairs.setdefault(variant, value)
    f = g.node("LabelEncoder", [x], f"{p}.bool", domain=ML_DOMAIN, keys_strings=list(pairs),
               values_floats=list(pairs.values()), default_float=float("nan"))
    return g.node("Cast", [f], f"{p}.double", to=g.onnx.TensorProto.DOUBLE)


def _categorical(g, x, spec, p, kind):
    """Each row's level index ``[batch, 1]`` (int64): the model's index of a known level, and
    "other"/"missing" as :meth:`Preprocessor.transform` places them for this encoding."""
    m = len(spec["levels"])
    embedded = spec["encoding"] == "embedding"
    other = m if (embedded or spec["other"]) else -1
    missing = (m + 1 if embedded else m + spec["other"]) if (embedded or spec["missing"]) else -1
    if kind == "text":
        keys = [str(v) for v in spec["levels"]] + [""]
        values = list(range(m)) + [missing]
        return g.node("LabelEncoder", [x], f"{p}.index", domain=ML_DOMAIN, keys_strings=keys,
                      values_int64s=values, default_int64=other)
    as_float = g.node("Cast", [x], f"{p}.float", to=g.onnx.TensorProto.FLOAT)
    known = g.node("LabelEncoder", [as_float], f"{p}.known", domain=ML_DOMAIN,
                   keys_floats=[float(v) for v in spec["levels"]], values_int64s=list(range(m)),
                   default_int64=other)
    return g.node("Where", [g.node("IsNaN", [x], f"{p}.isnan"),
                            g.constant([missing], np.int64), known], f"{p}.index")


def _one_hot(g, idx, width, p):
    cols = g.constant(np.arange(width, dtype=np.int64), np.int64)
    return g.node("Cast", [g.node("Equal", [idx, cols], f"{p}.equal")], f"{p}.onehot",
                  to=_elem(g))


def _preprocessing(g, pre):
    """The nodes from the graph's column inputs to :data:`FEATURES`; returns the inputs' value
    infos and the aliases the nodes read them by (``{alias: column}``: every column is read
    through an Identity added last, so that no internal tensor need share a column's name)."""
    onnx = g.onnx
    inputs, parts, tail, aliases = [], [], [], {}
    for k, spec in enumerate(pre.columns):
        elem, kind = _column_input(onnx, spec)
        name = spec["name"]
        inputs.append(onnx.helper.make_tensor_value_info(name, elem, [_net.BATCH, 1]))
        p = f"pre.{k}"
        x = f"{p}.in"
        aliases[x] = name
        if spec["role"] == "categorical":
            idx = _categorical(g, x, spec, p, kind)
            if spec["encoding"] == "embedding":
                tail.append(g.node("Cast", [idx], f"{p}.code", to=_elem(g)))
            else:
                width = len(spec["levels"]) + spec["other"] + spec["missing"]
                parts.append(_one_hot(g, idx, width, p))
        else:
            x = _boolean_text(g, x, spec, p) if kind == "text" else x
            parts.append(_numeric(g, x, spec, p, g.dtype))
    g.node("Concat", parts + tail, FEATURES, axis=1)
    return inputs, aliases


def _head(g, pre, out):
    """The outputs after the network's ``out``: ``label`` and ``probabilities``, or
    ``prediction``."""
    onnx = g.onnx
    t = pre.target
    elem = _elem(g)
    if t["task"] == "classification":
        if t["loss"] == "binary_cross_entropy":
            q = g.node("Sub", [g.constant(1), out], "head.negative")
            proba = g.node("Concat", [q, out], "probabilities", axis=1)
        else:
            proba = g.node("Identity", [out], "probabilities")
        idx = g.node("ArgMax", [proba], "head.argmax", axis=1, keepdims=0)
        classes = t["classes"]
        if all(isinstance(c, str) for c in classes):
            arr, lt = np.array(classes, object), onnx.TensorProto.STRING
        elif all(isinstance(c, bool) for c in classes):
            arr, lt = np.array(classes, bool), onnx.TensorProto.BOOL
        elif all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
            arr, lt = np.array(classes, np.int64), onnx.TensorProto.INT64
        else:
            arr, lt = np.array([float(c) for c in classes]), onnx.TensorProto.DOUBLE
        table = g.initializer("head.classes", arr)
        g.node("Gather", [table, idx], "label", axis=0)
        return [onnx.helper.make_tensor_value_info("label", lt, [_net.BATCH]),
                onnx.helper.make_tensor_value_info("probabilities", elem,
                                                   [_net.BATCH, len(classes)])]
    first = g.node("Squeeze", [out, g.constant([1], np.int64)], "head.squeeze")
    y = g.node("Cast", [first], "head.double", to=onnx.TensorProto.DOUBLE)
    y = g.node("Mul", [y, g.constant(t["std"], np.float64)], "head.scaled")
    g.node("Add", [y, g.constant(t["mean"], np.float64)], "prediction")
    return [onnx.helper.make_tensor_value_info("prediction", onnx.TensorProto.DOUBLE,
                                               [_net.BATCH])]


def _apart(nodes, initializers, aliases, onnx):
    """Rename every internal tensor that has the name of a column (an input), then read each
    column into its alias (an Identity first): the inputs keep the columns' names, which a
    deployment feeds by.  Returns the nodes."""
    inputs = set(aliases.values())
    internal = ({t for n in nodes for t in n.output} | {i.name for i in initializers}
                | set(aliases))
    taken = internal | inputs
    rename = {}
    for name in sorted(internal & inputs):
        k = 1
        while f"{name}~{k}" in taken:
            k += 1
        rename[name] = f"{name}~{k}"
        taken.add(rename[name])
    for n in nodes:
        n.input[:] = [rename.get(t, t) for t in n.input]
        n.output[:] = [rename.get(t, t) for t in n.output]
    for i in initializers:
        i.name = rename.get(i.name, i.name)
    reads = [onnx.helper.make_node("Identity", [column], [rename.get(alias, alias)],
                                   name=f"read.{rename.get(alias, alias)}")
             for alias, column in aliases.items()]
    return reads + nodes


def model_graph(model):
    """The ModelProto of a :class:`~fastbp.data.Model` (see the module's docstring)."""
    onnx = _net._onnx()
    pre, net = model.preprocessor, model.network
    if pre.target is None:
        raise InputError("the model has no target: nothing to export")
    outputs_named = {"label", "probabilities", "prediction"}
    clash = sorted(set(pre.input_names) & outputs_named)
    if clash:
        raise InputError(f"column {clash[0]!r} has the name of an output of the graph "
                         f"({', '.join(sorted(outputs_named))}): rename it to export the model")
    inner = net.onnx_model(input_name=FEATURES)
    g = _net._Graph(onnx, net.dtype, prefix="model.const")
    inputs, aliases = _preprocessing(g, pre)
    out_name = "network.output"
    for node in inner.graph.node:
        node.output[:] = [out_name if t == _net.OUTPUT else t for t in node.output]
        node.input[:] = [out_name if t == _net.OUTPUT else t for t in node.input]
    g_nodes_pre = list(g.nodes)
    g.nodes = []
    outputs = _head(g, pre, out_name)
    initializers = list(g.initializers) + list(inner.graph.initializer)
    nodes = _apart(g_nodes_pre + list(inner.graph.node) + g.nodes, initializers, aliases, onnx)
    graph = onnx.helper.make_graph(nodes, "fastbp.Model", inputs, outputs,
                                   initializer=initializers)
    from .._version import __version__
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", _net.OPSET),
                              onnx.helper.make_opsetid(ML_DOMAIN, ML_OPSET)],
        producer_name="fastbp", producer_version=__version__, doc_string=repr(model))
    proto.ir_version = _net.IR_VERSION
    return proto


def to_onnx(model, path):
    """Write a :class:`~fastbp.data.Model` (its ``network`` and ``preprocessor``) to ``path``
    as ONNX, atomically; returns the path.  Raises TypeError for a bad path, ValueError for a
    model that cannot be exported, ImportError without the onnx package."""
    path = _net._check_path(path)
    return _net.write(model_graph(model), path)
