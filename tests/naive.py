"""Slow, obvious NumPy twins of every kernel: the reference the tests trust.

Everything is computed in float64 with whole-array NumPy expressions taken straight from the
mathematics in docs/design.md ("The mathematics"), with none of the kernels' tricks (no fusion,
no flat buffers)."""
import numpy as np

LEAKY = 0.01


def act(name, z):
    z = np.asarray(z, np.float64)
    if name == "identity":
        return z.copy()
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY * z)
    if name in ("sigmoid", "logistic"):
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "exp":
        return np.exp(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(name)


def act_deriv(name, z):
    """f'(z) from z (the kernels use a = f(z); this checks they agree)."""
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY)
    if name in ("sigmoid", "logistic"):
        s = act("sigmoid", z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    raise ValueError(name)


def one_hot(y, k):
    t = np.zeros((len(y), k))
    t[np.arange(len(y)), np.asarray(y, int)] = 1
    return t


def targets(Y, n_out):
    Y = np.asarray(Y)
    if Y.ndim == 1 and np.issubdtype(Y.dtype, np.integer) and n_out > 1:
        return one_hot(Y, n_out)
    return np.asarray(Y, np.float64).reshape(len(Y), n_out)


def sample_losses(loss, out, z, T):
    """Per-sample losses from the output pre-activation z (float64)."""
    if loss == "squared_error":
        a = act(out, z)
        return 0.5 * ((a - T) ** 2).sum(axis=1)
    if loss == "cross_entropy":
        m = z.max(axis=1, keepdims=True)
        logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        return -(T * logp).sum(axis=1)
    if loss == "binary_cross_entropy":
        a = act("sigmoid", z)
        return -(T * np.log(a) + (1 - T) * np.log(1 - a)).sum(axis=1)
    if loss == "poisson":   # scikit-learn's: xlogy(t, t / exp(z)) - t + exp(z)
        mu = np.exp(z)
        return (np.where(T > 0, T * np.log(np.where(T > 0, T, 1) / mu), 0) - T + mu).sum(axis=1)
    raise ValueError(loss)


def output_delta(loss, out, z, T):
    if loss == "squared_error":
        a = act(out, z)
        g = a - T
        if out == "identity":
            return g
        if out == "sigmoid":
            return a * (1 - a) * g
        # softmax Jacobian J = diag(a) - a aᵀ applied to g
        return a * g - a * (a * g).sum(axis=1, keepdims=True)
    if loss == "cross_entropy":
        return act("softmax", z) * T.sum(axis=1, keepdims=True) - T
    if loss == "poisson":
        return np.exp(z) - T
    return act("sigmoid", z) - T


def forward(Ws, bs, hidden, out, X):
    """Lists of pre-activations z_l and activations a_l (a_0 = X), l = 1..L."""
    a = [np.asarray(X, np.float64)]
    zs = []
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = a[-1] @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        zs.append(z)
        a.append(act(hidden if l < len(Ws) - 1 else out, z))
    return zs, a


def backprop(Ws, bs, hidden, out, loss, X, Y):
    """(per-sample losses, [δ_l], [∂E/∂W_l], [∂E/∂b_l]) with the mean over the samples."""
    zs, a = forward(Ws, bs, hidden, out, X)
    T = targets(Y, len(bs[-1]))
    n = len(X)
    deltas = [None] * len(Ws)
    deltas[-1] = output_delta(loss, out, zs[-1], T)
    for l in range(len(Ws) - 2, -1, -1):
        deltas[l] = (deltas[l + 1] @ np.asarray(Ws[l + 1], np.float64).T) * act_deriv(hidden, zs[l])
    gW = [a[l].T @ deltas[l] / n for l in range(len(Ws))]
    gb = [deltas[l].mean(axis=0) for l in range(len(Ws))]
    return sample_losses(loss, out, zs[-1], T), deltas, gW, gb


class Optimizer:
    """PyTorch's documented update rules, written out per parameter array, float64."""

    def __init__(self, name, lr, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.name, self.lr, self.mu, self.b1, self.b2 = name, lr, momentum, beta1, beta2
        self.eps, self.wd, self.t, self.state = eps, weight_decay, 0, {}

    def step(self, params, grads):
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            g = np.asarray(g, np.float64).copy()
            st = self.state.setdefault(i, {})
            if self.name == "adamw":
                p *= 1 - self.lr * self.wd
            elif self.wd and not self.name.startswith("sk_"):   # sklearn's L2 is in the gradient
                g += self.wd * p
            if self.name == "sgd":
                p -= self.lr * g
            elif self.name in ("momentum", "nesterov"):
                buf = g.copy() if "buf" not in st else self.mu * st["buf"] + g
                st["buf"] = buf
                p -= self.lr * (g + self.mu * buf if self.name == "nesterov" else buf)
            elif self.name in ("adam", "adamw"):
                m = st.get("m", np.zeros_like(g)) * self.b1 + (1 - self.b1) * g
                v = st.get("v", np.zeros_like(g)) * self.b2 + (1 - self.b2) * g * g
                st["m"], st["v"] = m, v
                step_size = self.lr / (1 - self.b1 ** self.t)
                p -= step_size * m / (np.sqrt(v) / np.sqrt(1 - self.b2 ** self.t) + self.eps)
            elif self.name == "rmsprop":
                v = st.get("v", np.zeros_like(g)) * 0.99 + (1 - 0.99) * g * g   # torch: value=1 - alpha
                st["v"] = v
                p -= self.lr * g / (np.sqrt(v) + self.eps)
            elif self.name in ("sk_sgd", "sk_nesterov"):   # sklearn's SGDOptimizer
                v = self.mu * st.get("v", np.zeros_like(g)) - self.lr * g
                st["v"] = v
                p += self.mu * v - self.lr * g if self.name == "sk_nesterov" else v
            elif self.name == "sk_adam":                    # sklearn's AdamOptimizer
                m = self.b1 * st.get("m", np.zeros_like(g)) + (1 - self.b1) * g
                v = self.b2 * st.get("v", np.zeros_like(g)) + (1 - self.b2) * g ** 2
                st["m"], st["v"] = m, v
                lr = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
                p += -lr * m / (np.sqrt(v) + self.eps)
            else:
                raise ValueError(self.name)


def train(Ws, bs, hidden, out, loss, X, Y, opt, batch_size, epochs, perms=None):
    """Mini-batch training, float64; ``perms[e]`` is epoch e's order (identity when None).
    Returns the per-epoch mean losses; Ws and bs are updated in place."""
    n = len(X)
    B = n if batch_size is None else min(batch_size, n)
    losses = []
    for e in range(epochs):
        order = np.arange(n) if perms is None else perms[e]
        total = 0.0
        for s in range(0, n, B):
            idx = order[s:s + B]
            Yb = np.asarray(Y)[idx]
            li, _, gW, gb = backprop(Ws, bs, hidden, out, loss, np.asarray(X)[idx], Yb)
            total += li.sum()
            opt.step(list(Ws) + list(bs), gW + gb)
        losses.append(total / n)
    return losses


# -- structure: skip connections, batch/layer normalisation, dropout, per-layer activations ----
#
# Parameters come as a state_dict-like dict of arrays (Network.state_dict()'s keys):
#   "layers.{l}.weight" (n_in, n_out), "layers.{l}.bias" (n_out,)     l = 0..L-1, dense layer l
#                                                                      produces a_{l+1}
#   "norms.{l}.weight" (γ), "norms.{l}.bias" (β)                      normalised hidden layers
#   "norms.{l}.running_mean", "norms.{l}.running_var"                 batch normalisation only
#   "embeddings.{e}.weight" (n_levels, dim)                            embedding e's table
# Embeddings: the last k = len(spec.embeddings) columns of X hold integer codes; a_0 (what the
# first dense layer sees) is [X[:, :n_x - k], onehot(code_0) E_0, onehot(code_1) E_1, ...]: an
# embedding is a dense layer without bias on the one-hot code (the definition, not the lookup).
# Hidden layer k = l + 1 (1 <= k < L): z = a_{k-1} W + b; y = γ x̂ + β (x̂ the normalised z) when
# normalised; h = f_k(y); h·keep/(1-p) when a dropout mask is given (training); then
# a_k = h + Σ a_i over the skips (i, k).  The output layer is dense plus output_activation.

EPS = 1e-5          # BatchNorm1d / LayerNorm eps
MOMENTUM = 0.1      # BatchNorm1d momentum


class Spec:
    """A network's structure, spelt out: ``sizes``, ``hidden`` (one activation name per hidden
    layer), ``out``, ``skips`` (sorted list of (i, j)), ``norms`` (None/"batch"/"layer" per
    hidden layer) and ``dropout`` (a float per hidden layer).  Build it with :func:`make_spec`."""

    def __init__(self, sizes, hidden, out, skips, norms, dropout, embeddings=()):
        self.sizes, self.hidden, self.out = list(sizes), list(hidden), out
        self.skips, self.norms, self.dropout = list(skips), list(norms), list(dropout)
        self.embeddings = [(int(n), int(d)) for n, d in embeddings]

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def n_numeric(self):
        """X's columns that are not codes."""
        return self.sizes[0] - len(self.embeddings)

    @property
    def dense_sizes(self):
        """The dense layers' sizes: the first one's input is a_0 (numeric columns + rows)."""
        return [self.n_numeric + sum(d for _, d in self.embeddings)] + self.sizes[1:]

    def __repr__(self):
        return (f"Spec({self.sizes}, hidden={self.hidden}, out={self.out!r}, skips={self.skips}, "
                f"norms={self.norms}, dropout={self.dropout}, embeddings={self.embeddings})")


def make_spec(layer_sizes, activation="relu", output_activation="identity", skips=None,
              normalization=None, dropout=0.0, dtype=None, init=None, seed=None, embeddings=None):
    """The Spec of ``fastbp.Network(**kw)`` for the same keyword arguments (dtype, init and seed
    are accepted and ignored, so a test can pass the very same dict).  Asserts (rather than
    validates) that the structure is legal: this is the reference, not the checker."""
    sizes = [int(s) for s in layer_sizes]
    L = len(sizes) - 1
    per = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * (L - 1)
    hidden, norms, drop = per(activation), per(normalization), [float(p) for p in per(dropout)]
    assert len(hidden) == len(norms) == len(drop) == L - 1
    if skips is None:
        skips = []
    elif isinstance(skips, str):
        assert skips == "residual", skips
        skips = [(j - 1, j) for j in range(1 + bool(embeddings), L) if sizes[j - 1] == sizes[j]]
    skips = sorted((int(i), int(j)) for i, j in skips)
    for i, j in skips:
        assert 0 <= i < j < L and sizes[i] == sizes[j], (i, j)
        assert i > 0 or not embeddings, "no skip from an embedded input"
    embeddings = list(embeddings or [])
    assert len(embeddings) <= sizes[0]
    assert all(m in (None, "batch", "layer") for m in norms), norms
    assert all(0 <= p < 1 for p in drop), drop
    return Spec(sizes, hidden, output_activation, skips, norms, drop, embeddings)


def trainable_keys(spec):
    """The keys of the trainable arrays, in fastbp's flat order (the embedding tables, then per
    layer W, b, then γ, β)."""
    keys = [f"embeddings.{e}.weight" for e in range(len(spec.embeddings))]
    for l in range(spec.n_layers):
        keys += [f"layers.{l}.weight", f"layers.{l}.bias"]
        if l < spec.n_layers - 1 and spec.norms[l] is not None:
            keys += [f"norms.{l}.weight", f"norms.{l}.bias"]
    return keys


def state_keys(spec):
    """Every key of a state_dict: the trainable ones plus the batch-norm running statistics."""
    keys = trainable_keys(spec)
    for l, m in enumerate(spec.norms):
        if m == "batch":
            keys += [f"norms.{l}.running_mean", f"norms.{l}.running_var"]
    return keys


def init_state_dict(spec, rng, perturb=True):
    """Random float64 parameters for ``spec``; ``perturb`` moves biases, γ, β and the running
    statistics off their initial values (0, 1, 0; mean 0, var 1) so that their gradients and
    uses are exercised."""
    sd = {}
    s = 0.3 if perturb else 0.0
    for e, (levels, dim) in enumerate(spec.embeddings):
        sd[f"embeddings.{e}.weight"] = rng.normal(0, 1, (levels, dim))
    sizes = spec.dense_sizes
    for l in range(spec.n_layers):
        n_in, n_out = sizes[l], sizes[l + 1]
        sd[f"layers.{l}.weight"] = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out))
        sd[f"layers.{l}.bias"] = rng.normal(0, s, n_out)
        if l < spec.n_layers - 1 and spec.norms[l] is not None:
            sd[f"norms.{l}.weight"] = 1 + rng.normal(0, s, n_out)
            sd[f"norms.{l}.bias"] = rng.normal(0, s, n_out)
            if spec.norms[l] == "batch":
                sd[f"norms.{l}.running_mean"] = rng.normal(0, s, n_out)
                sd[f"norms.{l}.running_var"] = np.exp(rng.normal(0, s, n_out))
    return sd


def as_float64(sd):
    return {k: np.array(v, np.float64) for k, v in sd.items()}


def codes_for(rng, spec, n):
    """Random codes for the embedding columns: (n, k) floats, every level of small tables
    drawn (so that every table row gets a gradient) when n allows."""
    return np.stack([rng.integers(0, levels, n) for levels, _ in spec.embeddings],
                    axis=1).astype(np.float64).reshape(n, len(spec.embeddings))


def embed(sd, X, spec):
    """(a_0, [one-hot of each embedding's codes]): the numeric columns of X, then each code's
    one-hot times its table."""
    X = np.asarray(X, np.float64)
    m = spec.n_numeric
    parts, hots = [X[:, :m]], []
    for e, (levels, _) in enumerate(spec.embeddings):
        codes = X[:, m + e]
        assert np.all(codes == np.round(codes)) and codes.min() >= 0 and codes.max() < levels
        hot = one_hot(codes.astype(int), levels)
        hots.append(hot)
        parts.append(hot @ np.asarray(sd[f"embeddings.{e}.weight"], np.float64))
    return np.concatenate(parts, axis=1), hots


def _normalise(z, mode, kind, sd, l):
    """(x̂, 1/sqrt(var + eps), batch mean, batch biased var) of z for layer l."""
    if kind == "layer":
        mean, var = z.mean(axis=1, keepdims=True), z.var(axis=1, keepdims=True)
    elif mode == "train":
        mean, var = z.mean(axis=0), z.var(axis=0)
    else:
        mean = np.asarray(sd[f"norms.{l}.running_mean"], np.float64)
        var = np.asarray(sd[f"norms.{l}.running_var"], np.float64)
    inv_std = 1 / np.sqrt(var + EPS)
    return (z - mean) * inv_std, inv_std, mean, var


def structured_forward(sd, X, spec, mode="train", masks=None):
    """The forward pass of a structured network, float64.

    ``mode="train"``: batch normalisation with the batch's mean and biased variance, and the
    dropout masks when ``masks`` is given (``masks[l]``: bool (n, sizes[l+1]), True = kept, for
    hidden dense layer l; missing/None = no dropout there); ``mode="eval"``: the running
    statistics, no dropout.  Returns a dict of lists indexed by layer k (index 0 unused except
    ``a[0] = X``): ``a`` (outputs, a[L] the network's output), ``z`` (pre-normalisation; z[L] the
    output pre-activation), ``xhat``, ``inv_std``, ``y`` (what the activation sees), ``mean``,
    ``var`` (the batch's, for batch-norm layers in training), ``keep`` (the masks used)."""
    assert mode in ("train", "eval"), mode
    L = spec.n_layers
    c = {k: [None] * (L + 1) for k in ("a", "z", "xhat", "inv_std", "y", "mean", "var", "keep")}
    c["a"][0], c["hot"] = embed(sd, X, spec)
    for k in range(1, L + 1):
        l = k - 1
        z = c["a"][k - 1] @ np.asarray(sd[f"layers.{l}.weight"], np.float64) \
            + np.asarray(sd[f"layers.{l}.bias"], np.float64)
        c["z"][k] = z
        if k == L:
            c["a"][k] = act(spec.out, z)
            break
        y = z
        if spec.norms[l] is not None:
            xhat, inv_std, mean, var = _normalise(z, mode, spec.norms[l], sd, l)
            y = np.asarray(sd[f"norms.{l}.weight"], np.float64) * xhat \
                + np.asarray(sd[f"norms.{l}.bias"], np.float64)
            c["xhat"][k], c["inv_std"][k], c["mean"][k], c["var"][k] = xhat, inv_std, mean, var
        c["y"][k] = y
        h = act(spec.hidden[l], y)
        keep = None
        if mode == "train" and masks is not None:
            keep = masks.get(l) if isinstance(masks, dict) else masks[l]
        if keep is not None and spec.dropout[l] > 0:
            keep = np.asarray(keep, bool)
            assert keep.shape == h.shape, (keep.shape, h.shape)
            h = h * keep / (1 - spec.dropout[l])
            c["keep"][k] = keep
        for i, j in spec.skips:
            if j == k:
                h = h + c["a"][i]
        c["a"][k] = h
    return c


def structured_loss(sd, X, Y, spec, loss, mode="train", masks=None):
    """Mean per-sample loss of the structured network (training mode by default: batch
    statistics, and the masks when given)."""
    c = structured_forward(sd, X, spec, mode, masks)
    T = targets(Y, spec.sizes[-1])
    return sample_losses(loss, spec.out, c["z"][-1], T).mean()


def structured_gradients(sd, X, Y, spec, loss, masks=None, mode="train"):
    """``(mean loss, {key: gradient})`` for every trainable key of ``sd`` (weights, biases, γ,
    β), by the explicit backward formulas.  Works with Σℓ per sample and divides the parameter
    gradients by n at the end (the normalisation backward is linear in its input, so this is
    the gradient of the mean loss).

    Per hidden layer k (going down, so ∂/∂a_k is complete when k is reached): a skip (i, k)
    adds ∂/∂a_k to ∂/∂a_i; dropout multiplies by keep/(1-p); the activation by f'(y);
    γ, β get Σ_rows(g·x̂), Σ_rows g; normalisation backward with dx̂ = g·γ:
    dz = inv_std·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), the means over the batch (batch norm,
    training) or over the row's units (layer norm); in eval mode batch norm is affine:
    dz = dx̂·inv_std."""
    c = structured_forward(sd, X, spec, mode, masks)
    L = spec.n_layers
    n = len(c["a"][0])
    T = targets(Y, spec.sizes[-1])
    value = sample_losses(loss, spec.out, c["z"][L], T).mean()
    W = lambda l: np.asarray(sd[f"layers.{l}.weight"], np.float64)
    grads = {}
    g_a = [np.zeros_like(c["a"][k]) for k in range(L)]          # ∂Σℓ/∂a_k, k = 0..L-1
    dz = output_delta(loss, spec.out, c["z"][L], T)
    for k in range(L, 0, -1):
        l = k - 1
        if k < L:
            g = g_a[k]
            for i, j in spec.skips:
                if j == k:
                    g_a[i] = g_a[i] + g
            if c["keep"][k] is not None:
                g = g * c["keep"][k] / (1 - spec.dropout[l])
            g = g * act_deriv(spec.hidden[l], c["y"][k])
            kind = spec.norms[l]
            if kind is None:
                dz = g
            else:
                xhat, inv_std = c["xhat"][k], c["inv_std"][k]
                grads[f"norms.{l}.weight"] = (g * xhat).sum(axis=0) / n
                grads[f"norms.{l}.bias"] = g.sum(axis=0) / n
                dxh = g * np.asarray(sd[f"norms.{l}.weight"], np.float64)
                if kind == "batch" and mode == "eval":
                    dz = dxh * inv_std
                else:
                    ax = 0 if kind == "batch" else 1
                    dz = inv_std * (dxh - dxh.mean(axis=ax, keepdims=True)
                                    - xhat * (dxh * xhat).mean(axis=ax, keepdims=True))
        grads[f"layers.{l}.weight"] = c["a"][k - 1].T @ dz / n
        grads[f"layers.{l}.bias"] = dz.sum(axis=0) / n
        if k > 1:
            g_a[k - 1] = g_a[k - 1] + dz @ W(l).T
        elif spec.embeddings:      # a_0's embedded columns: a dense layer on the one-hot codes
            g0 = dz @ W(0).T
            col = spec.n_numeric
            for e, (_, dim) in enumerate(spec.embeddings):
                grads[f"embeddings.{e}.weight"] = c["hot"][e].T @ g0[:, col:col + dim] / n
                col += dim
    return value, {key: grads[key] for key in trainable_keys(spec)}


def running_update(sd, X, spec, masks=None):
    """The batch-norm running statistics after one training step on the batch X (momentum 0.1,
    the unbiased batch variance), as a new dict {key: array}; nothing is changed in ``sd``.
    ``masks`` matter: a dropout mask upstream changes the later layers' batch statistics."""
    c = structured_forward(sd, X, spec, "train", masks)
    n = len(X)
    new = {}
    for l, kind in enumerate(spec.norms):
        if kind == "batch":
            k = l + 1
            rm, rv = sd[f"norms.{l}.running_mean"], sd[f"norms.{l}.running_var"]
            new[f"norms.{l}.running_mean"] = (1 - MOMENTUM) * np.asarray(rm, np.float64) \
                + MOMENTUM * c["mean"][k]
            new[f"norms.{l}.running_var"] = (1 - MOMENTUM) * np.asarray(rv, np.float64) \
                + MOMENTUM * c["var"][k] * n / (n - 1)
    return new


def structured_train(sd, X, Y, spec, loss, opt, batch_size, epochs, masks=None):
    """fastbp's Trainer with ``shuffle=False``, float64: consecutive batches of ``batch_size``
    rows (None: full batch; the last one partial), per step the gradients (training mode,
    masks = ``masks(step, rows)`` -> {l: keep} or None, step 1-based over the whole run), the
    running statistics updated from the same forward, then ``opt`` (a naive.Optimizer) on the
    trainable arrays.  ``sd`` is updated in place (float64 arrays); returns the per-epoch mean
    losses."""
    n = len(X)
    B = n if batch_size is None else min(batch_size, n)
    keys = trainable_keys(spec)
    X, Y = np.asarray(X), np.asarray(Y)
    losses, step = [], opt.t
    for _ in range(epochs):
        total = 0.0
        for s in range(0, n, B):
            rows = np.arange(s, min(s + B, n))
            step += 1
            m = masks(step, rows) if masks is not None else None
            value, g = structured_gradients(sd, X[rows], Y[rows], spec, loss, masks=m)
            total += value * len(rows)
            for key, v in running_update(sd, X[rows], spec, m).items():
                sd[key][...] = v
            opt.step([sd[key] for key in keys], [g[key] for key in keys])
        losses.append(total / n)
    return losses
