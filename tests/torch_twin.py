"""The same structured network in PyTorch (float64), for the tests that compare against it.

``Twin(sd, spec)`` builds it from a state_dict-like dict (fastbp's keys; see tests/naive.py)
and a naive.Spec: one ``nn.Linear`` per dense layer (``weight = W.T``), ``nn.BatchNorm1d`` /
``nn.LayerNorm`` (eps 1e-5, momentum 0.1) on the normalised hidden layers, the per-layer
activations, and a forward that adds the skips.  Dropout is not torch's random one: the
forward takes fixed masks (``{l: bool (n, units)}``, True = kept) and applies them as inverted
dropout, so a comparison with fastbp (whose masks come from ``fastbp.engine.dropout_keep``) or
with the naive reference is exact.

Import it after ``pytest.importorskip("torch")``."""
import numpy as np
import torch
from torch import nn

import naive

DT = torch.float64
# these networks are tiny: torch's intra-op threads only add overhead, and on a small machine
# they fight the numba threads of the same process (seconds per step instead of microseconds)
torch.set_num_threads(1)


def _act(name, x):
    if name == "identity":
        return x
    if name == "relu":
        return torch.relu(x)
    if name == "leaky_relu":
        return nn.functional.leaky_relu(x, naive.LEAKY)
    if name in ("sigmoid", "logistic"):
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "exp":
        return torch.exp(x)
    if name == "softmax":
        return torch.softmax(x, dim=1)
    raise ValueError(name)


def _t(a):
    return torch.from_numpy(np.array(a, np.float64))


class Twin(nn.Module):
    """``forward(x, masks=None)`` returns the output layer's pre-activation z_L (the losses
    take it); :meth:`predict` the output activations in eval mode (running statistics)."""

    def __init__(self, sd, spec):
        super().__init__()
        self.spec = spec
        L = spec.n_layers
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleDict()
        self.embeddings = nn.ModuleList()
        for e, (levels, dim) in enumerate(spec.embeddings):
            emb = nn.Embedding(levels, dim, dtype=DT)
            with torch.no_grad():
                emb.weight.copy_(_t(sd[f"embeddings.{e}.weight"]))
            self.embeddings.append(emb)
        for l in range(L):
            W = np.asarray(sd[f"layers.{l}.weight"], np.float64)
            lin = nn.Linear(W.shape[0], W.shape[1], dtype=DT)
            with torch.no_grad():
                lin.weight.copy_(_t(W.T))
                lin.bias.copy_(_t(sd[f"layers.{l}.bias"]))
            self.linears.append(lin)
            kind = spec.norms[l] if l < L - 1 else None
            if kind is None:
                continue
            n = W.shape[1]
            if kind == "batch":
                norm = nn.BatchNorm1d(n, eps=naive.EPS, momentum=naive.MOMENTUM, dtype=DT)
            else:
                norm = nn.LayerNorm(n, eps=naive.EPS, dtype=DT)
            with torch.no_grad():
                norm.weight.copy_(_t(sd[f"norms.{l}.weight"]))
                norm.bias.copy_(_t(sd[f"norms.{l}.bias"]))
                if kind == "batch":
                    # fastbp's state_dict may omit them only for a fresh net; default 0 / 1
                    norm.running_mean.copy_(_t(sd.get(f"norms.{l}.running_mean", np.zeros(n))))
                    norm.running_var.copy_(_t(sd.get(f"norms.{l}.running_var", np.ones(n))))
            self.norms[str(l)] = norm

    def forward(self, x, masks=None):
        spec = self.spec
        L = spec.n_layers
        if spec.embeddings:     # the last columns: codes, looked up
            m = spec.n_numeric
            codes = x[:, m:].round().long()
            x = torch.cat([x[:, :m]] + [emb(codes[:, e]) for e, emb in enumerate(self.embeddings)],
                          dim=1)
        a = [x]
        for k in range(1, L):
            l = k - 1
            z = self.linears[l](a[k - 1])
            if str(l) in self.norms:
                z = self.norms[str(l)](z)
            h = _act(spec.hidden[l], z)
            keep = None if masks is None or not self.training else masks.get(l)
            if keep is not None and spec.dropout[l] > 0:
                h = h * torch.from_numpy(np.asarray(keep, np.float64)) / (1 - spec.dropout[l])
            for i, j in spec.skips:
                if j == k:
                    h = h + a[i]
            a.append(h)
        return self.linears[L - 1](a[L - 1])

    def predict(self, X):
        was = self.training
        self.eval()
        with torch.no_grad():
            out = _act(self.spec.out, self(_t(X))).numpy()
        self.train(was)
        return out

    def trainable(self):
        """The parameters in fastbp's flat order (the tables, then W, b, γ, β per layer)."""
        out = [emb.weight for emb in self.embeddings]
        for l, lin in enumerate(self.linears):
            out += [lin.weight, lin.bias]
            if str(l) in self.norms:
                out += [self.norms[str(l)].weight, self.norms[str(l)].bias]
        return out

    def numpy_state_dict(self):
        """The parameters and running statistics under fastbp's keys (weights (n_in, n_out))."""
        sd = {f"embeddings.{e}.weight": emb.weight.detach().numpy().copy()
              for e, emb in enumerate(self.embeddings)}
        for l, lin in enumerate(self.linears):
            sd[f"layers.{l}.weight"] = lin.weight.detach().numpy().T.copy()
            sd[f"layers.{l}.bias"] = lin.bias.detach().numpy().copy()
            if str(l) in self.norms:
                m = self.norms[str(l)]
                sd[f"norms.{l}.weight"] = m.weight.detach().numpy().copy()
                sd[f"norms.{l}.bias"] = m.bias.detach().numpy().copy()
                if isinstance(m, nn.BatchNorm1d):
                    sd[f"norms.{l}.running_mean"] = m.running_mean.numpy().copy()
                    sd[f"norms.{l}.running_var"] = m.running_var.numpy().copy()
        return sd

    def grads(self):
        """The .grad of every trainable parameter under fastbp's keys (weights (n_in, n_out))."""
        keys = naive.trainable_keys(self.spec)
        return {k: (p.grad.numpy().T if k.endswith("weight") and k.startswith("layers")
                    else p.grad.numpy()).copy() for k, p in zip(keys, self.trainable())}


def loss_of(z, Y, loss, out):
    """The mean per-sample loss (fastbp's definitions) from the output pre-activation z."""
    n_out = z.shape[1]
    Y = np.asarray(Y)
    if loss == "cross_entropy":
        if Y.ndim == 1 and np.issubdtype(Y.dtype, np.integer):
            return nn.functional.cross_entropy(z, torch.from_numpy(Y.astype(np.int64)))
        T = _t(naive.targets(Y, n_out))
        return -(T * torch.log_softmax(z, dim=1)).sum(dim=1).mean()
    T = _t(naive.targets(Y, n_out))
    if loss == "squared_error":
        return 0.5 * ((_act(out, z) - T) ** 2).sum(dim=1).mean()
    if loss == "binary_cross_entropy":
        return nn.functional.binary_cross_entropy_with_logits(z, T, reduction="none").sum(1).mean()
    if loss == "poisson":
        return (torch.special.xlogy(T, T) - T * z - T + torch.exp(z)).sum(dim=1).mean()
    raise ValueError(loss)


def gradients(twin, X, Y, loss, masks=None):
    """(mean loss, {key: gradient}) by autograd in training mode, the running statistics put
    back afterwards (like fastbp's net.gradients)."""
    saved = {k: v.clone() for k, v in twin.state_dict().items()}
    twin.train()
    twin.zero_grad()
    value = loss_of(twin(_t(X), masks), Y, loss, twin.spec.out)
    value.backward()
    grads = twin.grads()
    with torch.no_grad():
        for k, v in twin.state_dict().items():
            if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
                v.copy_(saved[k])
    return float(value.detach()), grads


def make_optimizer(params, optimizer, lr, weight_decay=0.0, momentum=0.9):
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if optimizer in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=optimizer == "nesterov")
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(optimizer)


def train(twin, X, Y, loss, optimizer="sgd", lr=0.01, batch_size=16, epochs=1,
          weight_decay=0.0, masks=None):
    """fastbp's Trainer with ``shuffle=False``, done with torch: consecutive batches (None:
    full batch; the last one partial), BatchNorm1d in training mode (running statistics
    updated at every step), and per step the dropout masks ``masks(step, rows)`` ->
    {l: keep} (step 1-based over the whole run; rows the batch's data row indices).  Returns
    the per-epoch mean losses; ``twin`` is trained in place."""
    n = len(X)
    B = n if batch_size is None else min(batch_size, n)
    opt = make_optimizer(twin.trainable(), optimizer, lr, weight_decay)
    Xt = _t(X)
    Y = np.asarray(Y)
    twin.train()
    step, losses = 0, []
    for _ in range(epochs):
        total = 0.0
        for s in range(0, n, B):
            rows = np.arange(s, min(s + B, n))
            step += 1
            m = masks(step, rows) if masks is not None else None
            opt.zero_grad()
            value = loss_of(twin(Xt[rows], m), Y[rows], loss, twin.spec.out)
            value.backward()
            opt.step()
            total += float(value.detach()) * len(rows)
        losses.append(total / n)
    return losses
