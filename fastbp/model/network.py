"""Network: a fully-connected feed-forward net whose parameters live in one flat buffer."""
import functools
import os

import numpy as np

from .. import engine
from .._validation import (InputError, InputTypeError, check_choice, check_dtype, check_float,
                           check_int, check_targets, check_X)
from ..engine import Codes, Structure, Workspace
from ..kernels.activations import HIDDEN, NAMES as ACT_NAMES, OUTPUT, RELU, LEAKY_RELU
from ..kernels.losses import LOSSES
from ..kernels import structure as S
from . import modelfile

INIT_BLOCK = 1 << 16    # elements per block of initial weights drawn at once
FLOAT32_CODES = 1 << 24     # float32 holds every integer up to here exactly
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
    activation : {"relu", "leaky_relu", "sigmoid" (alias "logistic"), "tanh", "identity"} or list
        Hidden-layer activation (leaky_relu has slope 0.01), or one per hidden layer.
    output_activation : {"identity", "sigmoid", "softmax", "exp"}
        ``exp`` (a positive rate) goes with the Poisson loss.
    dtype : float32 or float64
        Kept end to end: parameters, inputs (converted once), kernels and outputs.
    init : {"auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "normal"}
        Weight initialisation; biases start at zero.  ``auto`` is He (uniform) for relu-like
        activations and Glorot (uniform) otherwise; ``normal`` is N(0, 0.01²).
    seed : int, numpy Generator or None
        Seed of the initial weights.
    skips : None, "residual" or list of (i, j)
        Skip connections ``a_j += a_i`` (activations numbered like ``layer_sizes``: ``a_0 = X``,
        ``a_k`` the output of layer k) for ``0 <= i < j < L`` with equal widths, added after
        layer j's dropout; ``"residual"``: every ``(j-1, j)``, ``1 <= j < L``, whose widths
        match (with embeddings, none from the input).
    normalization : None, "batch", "layer" or a list (one per hidden layer, entries None too)
        Normalisation of a hidden layer's ``z`` before its activation, with gain γ (starts at
        1) and shift β (starts at 0) after the layer's W and b in :attr:`params`, eps 1e-5:
        ``"batch"`` as ``torch.nn.BatchNorm1d`` (training: the batch's statistics, running
        mean and unbiased variance updated with momentum 0.1 at every step; ``forward`` and
        validation use the running statistics), ``"layer"`` as ``torch.nn.LayerNorm``.
    dropout : float in [0, 1) or list (one per hidden layer)
        Inverted dropout after a hidden layer's activation, during training only; the masks
        are keyed by (the trainer's seed, step, sample, unit): never by threads or blocks.
    embeddings : None or list of (n_levels, dim)
        One learned table per categorical input: the last ``len(embeddings)`` columns of X
        hold integer category codes ``0 .. n_levels − 1`` (as numbers of X's dtype), and
        each is replaced by its row of the table (``torch.nn.Embedding``), so that the first
        dense layer sees ``[X[:, :n_x − k], E_0[code_0], E_1[code_1], ...]`` and has
        ``n_x − k + Σ dim`` inputs.  Tables start N(0, 1), drawn after the dense weights;
        they come first in :attr:`params`.  Codes are checked at every call (an integer in
        range, else ValueError); a float32 network takes at most 2**24 levels (float32 holds
        integers exactly up to there).  No skip may come from the input (``(0, j)``).

    Attributes
    ----------
    params : ndarray
        The flat parameter buffer; ``weights[l]`` (``(n_in, n_out)``) and ``biases[l]`` are views
        into it, so writing into them changes the network.
    """

    def __init__(self, layer_sizes, activation="relu", output_activation="identity",
                 dtype=np.float32, init="auto", seed=None, skips=None, normalization=None,
                 dropout=0.0, embeddings=None):
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
            raise InputTypeError(f"layer_sizes must be a sequence of positive integers; got {layer_sizes!r}")
        sizes = [check_int(f"layer_sizes[{i}]", s, minimum=1) for i, s in enumerate(layer_sizes)]
        if len(sizes) < 2:
            raise InputError(f"layer_sizes needs at least two sizes [n_in, n_out]; got {list(layer_sizes)}")
        hidden = len(sizes) - 2
        acts = _per_layer("activation", activation, hidden,
                          lambda name, v: check_choice(name, v, HIDDEN))
        norms = _per_layer("normalization", normalization, hidden, _check_norm)
        drops = _per_layer("dropout", dropout, hidden,
                           lambda name, v: check_float(name, v, 0, 1, high_open=True))
        output_activation = check_choice("output_activation", output_activation, OUTPUT)
        init = check_choice("init", init, INITS)
        self._dtype = check_dtype(dtype)
        self._embeddings = _check_embeddings(embeddings, sizes[0], self._dtype)
        self._skips = _check_skips(skips, sizes, bool(self._embeddings))
        self._sizes = tuple(sizes)
        self._acts = [HIDDEN[a] for a in acts]
        # the name as given (canonical: "logistic" is "sigmoid"), or one per hidden layer
        single = None if isinstance(activation, (list, tuple)) else HIDDEN[check_choice(
            "activation", activation, HIDDEN)]
        self._activation = (ACT_NAMES[single] if single is not None
                            else [ACT_NAMES[a] for a in self._acts])
        self._init_act = single if single is not None else (self._acts[-1] if self._acts else RELU)
        self._norms, self._drops = norms, drops
        self._out = OUTPUT[output_activation]
        self._st = Structure(sizes, self._acts, [S.NORMS[v] for v in norms], drops, self._skips,
                             self._dtype, self._embeddings)
        self._layout = self._st.layout
        self._params = np.zeros(self._st.n_params, self._dtype)
        for l in range(hidden):
            g = self._layout[l, S.G_OFF]
            if g >= 0:
                self._params[g:g + sizes[l + 1]] = 1        # γ starts at 1, β at 0
        self._init(init, seed)

    # -- construction ---------------------------------------------------------------------
    def _init(self, init, seed):
        rng = np.random.default_rng(seed)
        chosen = init
        for l, W in enumerate(self.weights):
            if chosen == "auto":    # by the activation after the product (the output layer:
                act = self._acts[l] if l < len(self._acts) else self._init_act    # the last's)
                init = "he_uniform" if act in (RELU, LEAKY_RELU) else "glorot_uniform"
            fan_in, fan_out = W.shape
            if init == "glorot_uniform":
                lim = np.sqrt(6.0 / (fan_in + fan_out))
                draw = functools.partial(rng.uniform, -lim, lim)
            elif init == "glorot_normal":
                draw = functools.partial(rng.normal, 0.0, np.sqrt(2.0 / (fan_in + fan_out)))
            elif init == "he_uniform":
                lim = np.sqrt(6.0 / fan_in)
                draw = functools.partial(rng.uniform, -lim, lim)
            elif init == "he_normal":
                draw = functools.partial(rng.normal, 0.0, np.sqrt(2.0 / fan_in))
            else:
                draw = functools.partial(rng.normal, 0.0, NORMAL_STD)
            # in blocks of rows: the generator's float64 draws never take more than ~0.5 MiB
            # (a whole 2048×2048 layer would be 32 MiB at once); the same stream of values
            rows = max(1, INIT_BLOCK // fan_out)
            for r0 in range(0, fan_in, rows):
                block = W[r0:r0 + rows]
                block[...] = draw(block.shape)
        # the tables after every dense weight: a network without them draws what it always drew
        for table in self._tables(self._params):
            levels, dim = table.shape
            rows = max(1, INIT_BLOCK // dim)
            for r0 in range(0, levels, rows):
                block = table[r0:r0 + rows]
                block[...] = rng.standard_normal(block.shape)     # torch.nn.Embedding's N(0, 1)

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
        """The hidden activation: a name, or a list of one per hidden layer when given so."""
        return self._activation

    @property
    def activations(self):
        """The hidden activation of each hidden layer (a list of names)."""
        return [ACT_NAMES[a] for a in self._acts]

    @property
    def skips(self):
        """The skip connections as ``(i, j)`` pairs (``"residual"`` expanded)."""
        return list(self._skips)

    @property
    def normalization(self):
        """Each hidden layer's normalisation: None, "batch" or "layer"."""
        return list(self._norms)

    @property
    def dropout(self):
        """Each hidden layer's dropout probability."""
        return list(self._drops)

    @property
    def embeddings(self):
        """The embedding tables' ``(n_levels, dim)``, one per categorical input column (the
        last columns of X)."""
        return list(self._embeddings)

    def _tables(self, buf):
        """The embedding tables in ``buf`` (the parameters or a gradient): ``(n_levels, dim)``
        views."""
        return [buf[o:o + n * d].reshape(n, d) for n, d, o in self._st.emb[:, 1:4]]

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
        for n_in, n_out, w, b in self._layout[:, :4]:
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
        meta = dict(self._structure_meta(), embeddings=self.embeddings)
        extra = "".join(f", {k}={v!r}" for k, v in meta.items()
                        if v not in (None, 0.0, []) and k != "activation")
        return (f"Network(layer_sizes={list(self._sizes)}, activation={self.activation!r}, "
                f"output_activation={self.output_activation!r}{extra}, "
                f"dtype=np.{self._dtype.name})")

    # -- state dict --------------------------------------------------------------------------
    def _entries(self):
        """``(key, buffer, lo, shape)`` of every state_dict entry, in order."""
        out = [(f"embeddings.{e}.weight", self._params, int(o), (int(n), int(d)))
               for e, (n, d, o) in enumerate(self._st.emb[:, 1:4])]
        for l in range(self.n_layers):
            n_in, n_out, w, b = (int(v) for v in self._layout[l, :4])
            out += [(f"layers.{l}.weight", self._params, w, (n_in, n_out)),
                    (f"layers.{l}.bias", self._params, b, (n_out,))]
            g = int(self._layout[l, S.G_OFF])
            if g >= 0:
                out += [(f"norms.{l}.weight", self._params, g, (n_out,)),
                        (f"norms.{l}.bias", self._params, g + n_out, (n_out,))]
            o = int(self._layout[l, S.S_OFF])
            if o >= 0:
                out += [(f"norms.{l}.running_mean", self._st.stats, o, (n_out,)),
                        (f"norms.{l}.running_var", self._st.stats, o + n_out, (n_out,))]
        return out

    def state_dict(self):
        """Every parameter and running statistic by name (PyTorch's naming):
        ``embeddings.{e}.weight`` ``(n_levels, dim)`` for each embedding (``nn.Embedding``'s),
        ``layers.{l}.weight`` ``(n_in, n_out)`` and ``layers.{l}.bias``, and for a normalised
        hidden layer l
        ``norms.{l}.weight`` (γ), ``norms.{l}.bias`` (β), plus ``norms.{l}.running_mean`` and
        ``norms.{l}.running_var`` for batch normalisation; ``l`` is the 0-based dense layer.
        The values are writable views into the network's buffers."""
        return {k: buf[lo:lo + int(np.prod(shape))].reshape(shape)
                for k, buf, lo, shape in self._entries()}

    def load_state_dict(self, state):
        """Set every entry of :meth:`state_dict` from ``state`` (the same keys and shapes,
        finite values; running variances > 0).  Checked before anything changes."""
        if not hasattr(state, "keys"):
            raise InputTypeError(f"load_state_dict takes a dict of arrays; got "
                                 f"{type(state).__name__}")
        entries = self._entries()
        want = {k for k, *_ in entries}
        missing, unexpected = sorted(want - set(state)), sorted(set(state) - want)
        if missing or unexpected:
            raise InputError(f"load_state_dict: missing keys {missing}, unexpected keys "
                             f"{unexpected}")
        values = []
        for k, buf, lo, shape in entries:
            arr = np.asarray(state[k])
            if arr.dtype.kind not in "biuf":
                raise InputTypeError(f"{k} must hold real numbers; got dtype {arr.dtype}")
            if arr.shape != shape:
                raise InputError(f"{k} must have shape {shape}; got {arr.shape}")
            if not np.isfinite(arr).all():
                raise InputError(f"{k} contains NaN or inf")
            if k.endswith("running_var") and not (arr > 0).all():
                raise InputError(f"{k} must be positive")
            values.append(arr)
        for (k, buf, lo, shape), v in zip(entries, values):
            buf[lo:lo + v.size] = v.ravel()

    # -- computation ---------------------------------------------------------------------------
    def _codes(self, loss=None):
        return Codes(self._out, LOSSES[loss] if loss else 0)

    def _check_X(self, X, name="X"):
        """``check_X`` for this network's input, and its embedding columns' codes."""
        out = check_X(X, self._dtype, self._sizes[0], name=name)
        if self._embeddings:
            check_codes(X, out, self._embeddings, name)
        return out

    def forward(self, X):
        """Output activations for the rows of ``X``: an array ``(n_samples, n_out)``.  Read-only
        and memory-mapped ``X`` are read in place (converted only if not C-contiguous in the
        network's dtype)."""
        X = self._check_X(X)
        out = np.empty((X.shape[0], self._sizes[-1]), self._dtype)
        return engine.predict(self._params, self._st, self._codes(), X, out)

    predict = forward

    def _prepare(self, X, Y, loss):
        loss = self.loss_name(loss)
        X = self._check_X(X)
        Yf, Yi = check_targets(Y, loss, self._sizes[-1], X.shape[0], self._dtype)
        return X, Yf, Yi, loss

    def loss(self, X, Y, loss=None):
        """Mean per-sample loss over ``X`` (``loss=None``: the output's natural loss), in
        inference mode like :meth:`forward`: batch normalisation with its running statistics,
        no dropout (``gradients(...)[0]`` is the training-mode loss)."""
        X, Yf, Yi, loss = self._prepare(X, Y, loss)
        return engine.evaluate(self._params, self._st, self._codes(loss), X, Yf, Yi) / X.shape[0]

    def _backprop_all(self, X, Y, loss):
        X, Yf, Yi, loss = self._prepare(X, Y, loss)
        n = X.shape[0]
        if n == 1 and self._st.batch_norm:
            raise InputError("batch normalisation needs more than one sample (a batch of one row "
                             "has no variance; PyTorch refuses it too)")
        ws = Workspace(self._st, n, self._dtype, train=True)
        grads = np.zeros_like(self._params)
        total, _ = engine.batch_gradients(self._params, self._st, self._codes(loss), X, Yf,
                                          Yi, np.arange(n, dtype=np.int64), grads, ws)
        return total / n, grads, ws

    def deltas(self, X, Y, loss=None):
        """Per-layer deltas ``δ_l = ∂E_i/∂z_l`` for every sample (not divided by n; batch
        normalisation with the statistics of all of X, no dropout).

        Returns a list with one ``(n_samples, layer_sizes[l])`` array per layer, l = 1..L."""
        _, _, ws = self._backprop_all(X, Y, loss)
        n = ws.capacity
        return [ws.view("deltas", l, n).copy() for l in range(1, len(self._sizes))]

    def gradients(self, X, Y, loss=None, as_dict=False):
        """``(mean loss, [∂E/∂W per layer], [∂E/∂b per layer])``, means over the samples;
        ``as_dict``: ``(mean loss, {key: gradient})`` for every trainable entry of
        :meth:`state_dict` (embedding tables, weights, biases, γ, β).  Training-mode
        normalisation (the statistics of all of X as one batch), no dropout; running statistics
        unchanged."""
        loss_value, grads, _ = self._backprop_all(X, Y, loss)
        if as_dict:
            return loss_value, {k: grads[lo:lo + int(np.prod(shape))].reshape(shape)
                                for k, buf, lo, shape in self._entries() if buf is self._params}
        return loss_value, self._views(grads, 0), self._views(grads, 1)

    # -- files ---------------------------------------------------------------------------------
    def _structure_meta(self):
        meta = {"activation": self.activation,
                "skips": [list(p) for p in self._skips] or None,
                "normalization": (None if not any(self._norms) else self.normalization),
                "dropout": (0.0 if not any(self._drops) else self.dropout)}
        if self._embeddings:    # only then: the files and states of other networks unchanged
            meta["embeddings"] = [list(p) for p in self._embeddings]
        return meta

    def _meta(self):
        return {"layer_sizes": self.layer_sizes, **self._structure_meta(),
                "output_activation": self.output_activation, "dtype": self._dtype.name}

    def save(self, path, extra=None):
        """Write the network to ``path`` (.npz, no pickle; see :func:`fastbp.load`): the
        parameters followed by the running statistics, and the structure.  ``extra``: more
        JSON metadata to keep beside it (a model's preprocessor), under the same checksum."""
        modelfile.write_model(path, np.concatenate([self._params, self._st.stats]),
                              {**self._meta(), **(extra or {})})

    def to_onnx(self, path):
        """Write the network to ``path`` as an ONNX model (opset 17), for deployment.

        The graph maps ``"input"``, shape ``["batch", n_in]``, to ``"output"``, shape
        ``["batch", n_out]``: the values of :meth:`predict`, in this network's dtype (float32 ->
        FLOAT, float64 -> DOUBLE; feed it arrays of that dtype).  Each layer is a MatMul and an
        Add with the weights and biases as initializers (named as :meth:`state_dict`), then
        its normalisation in inference form (batch norm with the running statistics), its
        activation and its skips' Adds; dropout is not in the graph; embeddings cast the
        input's code columns to int64 and Gather their tables' rows (layout in
        :mod:`fastbp.model.onnx_export`; the graph does not check the codes).  Written
        atomically.  Needs the ``onnx`` package (``pip install "fastbp[onnx]"``); onnxruntime
        runs the file.

        Returns ``os.fspath(path)``; raises TypeError when ``path`` is not a str or
        os.PathLike."""
        from . import onnx_export   # here, not at the top: ``import fastbp`` does not need onnx
        path = onnx_export._check_path(path)
        return onnx_export.write(self.onnx_model(), path)

    def onnx_model(self, input_name="input"):
        """The ONNX ModelProto of :meth:`to_onnx`, its input named ``input_name`` (a front end
        composes it after its own nodes: a :class:`fastbp.Model`'s preprocessing)."""
        from . import onnx_export
        layers, embeddings = self.onnx_layers()
        return onnx_export.model(layers, embeddings=embeddings, n_x=self._sizes[0],
                                 name="fastbp.Network", doc=repr(self), input_name=input_name)

    def onnx_layers(self):
        """``(layers, embeddings)``: the network as :mod:`fastbp.model.onnx_export` takes it
        (views of the parameters: the graph copies them)."""
        from .onnx_export import Embedding, Layer
        sd = self.state_dict()
        acts = self.activations + [self.output_activation]
        norms = self.normalization + [None]
        layers = []
        for l in range(self.n_layers):
            kw = {}
            if norms[l] is not None:
                kw = dict(gamma=sd[f"norms.{l}.weight"], beta=sd[f"norms.{l}.bias"])
            if norms[l] == "batch":
                kw.update(running_mean=sd[f"norms.{l}.running_mean"],
                          running_var=sd[f"norms.{l}.running_var"])
            skips = tuple(sorted(i for i, j in self.skips if j == l + 1))
            layers.append(Layer(sd[f"layers.{l}.weight"], sd[f"layers.{l}.bias"], acts[l],
                                norm=norms[l], skips_from=skips, **kw))
        n_x, k = self._sizes[0], len(self.embeddings)
        return layers, [Embedding(n_x - k + e, sd[f"embeddings.{e}.weight"]) for e in range(k)]


def load(path):
    """Read a network written by :meth:`Network.save`.

    Raises ValueError for a truncated, altered or foreign file, or one holding pickled objects;
    nothing in the file is executed."""
    return read(path)[0]


def read(path):
    """``(network, metadata)`` of a file written by :meth:`Network.save` (the metadata holds
    the ``extra`` it was given)."""
    meta, params = modelfile.read_model(path)
    try:
        skips = meta.get("skips")
        net = Network(meta["layer_sizes"], activation=meta["activation"],
                      output_activation=meta["output_activation"], dtype=meta["dtype"],
                      init="normal", seed=0,
                      skips=None if skips is None else [tuple(p) for p in skips],
                      normalization=meta.get("normalization"), dropout=meta.get("dropout", 0.0),
                      embeddings=meta.get("embeddings"))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{os.fspath(path)}: the metadata do not describe a network: {e}") from None
    n, m = net._params.shape[0], net._st.stats.shape[0]
    if params.shape != (n + m,) or params.dtype != net._dtype:
        raise InputError(f"{os.fspath(path)}: {params.shape[0]} {params.dtype} parameters do not "
                         f"fit layer sizes {net.layer_sizes} ({net._dtype})")
    if m and not (params[n:][_var_mask(net)] > 0).all():
        raise InputError(f"{os.fspath(path)}: a running variance is not positive")
    net._params[...] = params[:n]
    net._st.stats[...] = params[n:]
    return net, meta


def _var_mask(net):
    """Which entries of the running statistics are variances."""
    mask = np.zeros(net._st.stats.shape[0], bool)
    for l in range(net.n_layers):
        o = int(net._layout[l, S.S_OFF])
        if o >= 0:
            n = net.layer_sizes[l + 1]
            mask[o + n:o + 2 * n] = True
    return mask


def _per_layer(name, value, hidden, check):
    """One checked value per hidden layer from a single value or a list of ``hidden``."""
    if isinstance(value, (list, tuple)):
        if len(value) != hidden:
            raise InputError(f"{name} has {len(value)} entries; the network has {hidden} hidden "
                             f"layers (one each)")
        return [check(f"{name}[{i}]", v) for i, v in enumerate(value)]
    v = check(name, value)
    return [v] * hidden


def _check_norm(name, value):
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in ("batch", "layer"):
        raise InputError(f"unknown {name} {value!r}; expected None, 'batch' or 'layer'")
    return value.lower()


def _check_embeddings(embeddings, n_x, dtype):
    """The embeddings as a list of (n_levels, dim) pairs of ints."""
    if embeddings is None:
        return []
    if isinstance(embeddings, (str, bytes, dict)) or not hasattr(embeddings, "__iter__"):
        raise InputTypeError(f"embeddings must be None or a list of (n_levels, dim) pairs; got "
                             f"{embeddings!r}")
    out = []
    for e, pair in enumerate(embeddings):
        if (isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2):
            raise InputTypeError(f"embeddings[{e}] must be a pair (n_levels, dim); got {pair!r}")
        levels = check_int(f"embeddings[{e}] n_levels", pair[0], minimum=1)
        dim = check_int(f"embeddings[{e}] dim", pair[1], minimum=1)
        if dtype == np.float32 and levels > FLOAT32_CODES:
            raise InputError(f"embeddings[{e}] has {levels} levels: a float32 network holds codes "
                             f"exactly up to 2**24 = {FLOAT32_CODES} (use dtype=np.float64)")
        out.append((levels, dim))
    if len(out) > n_x:
        raise InputError(f"{len(out)} embeddings need as many code columns, but X has "
                         f"layer_sizes[0] = {n_x} columns")
    return out


def check_codes(X, converted, embeddings, name="X"):
    """Each embedding column of ``X`` (the last ``len(embeddings)``; ``converted``: X as the
    network's dtype, already checked) holds integers in [0, n_levels): else a ValueError naming
    the column.  Read from X as given, before any rounding into the network's dtype."""
    arr = X if isinstance(X, np.ndarray) and X.ndim == 2 else np.asarray(X)
    if arr.dtype.kind not in "biuf" or arr.shape != converted.shape:
        arr = converted
    k = len(embeddings)
    n_x = arr.shape[1]
    for e, (levels, _) in enumerate(embeddings):
        j = n_x - k + e
        col = arr[:, j]
        if col.dtype.kind == "f":
            bad = ~((col >= 0) & (col < levels) & (col == np.floor(col)))
        else:
            bad = (col < 0) | (col >= levels)
        if bad.any():
            v = col[np.argmax(bad)].item()
            raise InputError(f"{name} column {j} (embedding {e}) holds {v!r}; codes must be "
                             f"integers in [0, {levels})")


def residual_skips(sizes, embedded=False):
    """``skips="residual"``'s pairs for a network of ``sizes``: every ``(j-1, j)``, ``1 <= j <
    L``, whose widths match; none from the input when it is ``embedded``."""
    return [(j - 1, j) for j in range(1 + embedded, len(sizes) - 1) if sizes[j - 1] == sizes[j]]


def _check_skips(skips, sizes, embedded=False):
    """The skip connections as a sorted list of (i, j) pairs (none from the input when it is
    embedded)."""
    L = len(sizes) - 1
    if skips is None:
        return []
    if isinstance(skips, str):
        if skips != "residual":
            raise InputError(f"skips must be None, 'residual' or a list of (i, j); got {skips!r}")
        return residual_skips(sizes, embedded)
    if not hasattr(skips, "__iter__"):
        raise InputTypeError(f"skips must be None, 'residual' or a list of (i, j); got {skips!r}")
    out = []
    for k, pair in enumerate(skips):
        if (not hasattr(pair, "__len__") or len(pair) != 2
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                           for v in pair)):
            raise InputTypeError(f"skips[{k}] must be a pair of integers (i, j); got {pair!r}")
        i, j = int(pair[0]), int(pair[1])
        if not 0 <= i < j:
            raise InputError(f"skips[{k}] = ({i}, {j}): a skip goes forward, 0 <= i < j")
        if j >= L:
            raise InputError(f"skips[{k}] = ({i}, {j}): j must be a hidden layer (< {L}); the "
                             f"output layer takes no skip")
        if i == 0 and embedded:
            raise InputError(f"skips[{k}] = ({i}, {j}): no skip can come from the input of a "
                             f"network with embeddings (its columns are codes, not values to "
                             f"add)")
        if sizes[i] != sizes[j]:
            raise InputError(f"skips[{k}] = ({i}, {j}): widths differ ({sizes[i]} and "
                             f"{sizes[j]})")
        if (i, j) in out:
            raise InputError(f"skips[{k}] = ({i}, {j}) is given twice")
        out.append((i, j))
    return sorted(out)
