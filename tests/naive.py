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
