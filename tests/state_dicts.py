"""Helpers of the tests that compare networks through their state dicts (structure,
embeddings): a network with its NumPy twin's spec, copies and comparisons of state dicts,
finite differences, dropout masks."""
import numpy as np

import fastbp
import naive


def net_and_spec(kw, out="softmax", dtype=np.float64, seed=0, perturb=True):
    """``(net, spec)`` for the Network keywords ``kw``; with ``perturb``, biases, γ, β and
    running statistics moved off their initial values (the weights and tables are fastbp's
    own)."""
    net = fastbp.Network(output_activation=out, dtype=dtype, seed=seed, **kw)
    spec = naive.make_spec(output_activation=out, **kw)
    if perturb:
        sd = net.state_dict()
        ref = naive.init_state_dict(spec, np.random.default_rng(seed + 100))
        new = {k: (np.array(v) if k.endswith(".weight") and not k.startswith("norms") else ref[k])
               for k, v in sd.items()}
        net.load_state_dict({k: v.astype(dtype) for k, v in new.items()})
    return net, spec


def sd64(net):
    return naive.as_float64(net.state_dict())


def copy(sd):
    return {k: np.array(v, copy=True) for k, v in sd.items()}


def same(a, b):
    """Bitwise equal state dicts."""
    return sorted(a) == sorted(b) and all(np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes()
                                          and np.shape(a[k]) == np.shape(b[k]) for k in a)


def finite_differences(f, sd, keys, h=1e-6):
    """Central differences of ``f()`` in every entry of ``sd[key]`` for ``keys`` (changed in
    place and put back)."""
    num = {}
    for key in keys:
        arr = sd[key]
        g = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + h
            up = f()
            arr[idx] = old - h
            down = f()
            arr[idx] = old
            g[idx] = (up - down) / (2 * h)
        num[key] = g
    return num


def dropout_masks(rng, spec, n):
    """Fixed dropout masks {l: keep} for the layers with p > 0."""
    return {l: rng.uniform(size=(n, spec.sizes[l + 1])) >= p
            for l, p in enumerate(spec.dropout) if p > 0}
