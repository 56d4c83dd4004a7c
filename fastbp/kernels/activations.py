"""Activations and their derivatives, applied in place to one row, selected by a small integer.

Derivatives are computed from the activation's *output* ``a`` (never from ``z``), so the forward
pass keeps one buffer per layer: relu ``H(a)``, leaky_relu ``1 or 0.01``, sigmoid ``a(1-a)``,
tanh ``1-a²``, identity ``1``.  ``exp`` is an output activation only (the Poisson loss's
inverse link).
"""
import math

import numpy as np
from numba import njit

from .._config import INLINE_JIT, JIT
from .vexp import vexp

IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH, SOFTMAX, EXP = 0, 1, 2, 3, 4, 5, 6

HIDDEN = {"identity": IDENTITY, "relu": RELU, "leaky_relu": LEAKY_RELU, "sigmoid": SIGMOID,
          "logistic": SIGMOID, "tanh": TANH}
OUTPUT = {"identity": IDENTITY, "sigmoid": SIGMOID, "softmax": SOFTMAX, "exp": EXP}
NAMES = {IDENTITY: "identity", RELU: "relu", LEAKY_RELU: "leaky_relu", SIGMOID: "sigmoid",
         TANH: "tanh", SOFTMAX: "softmax", EXP: "exp"}
LEAKY_SLOPE = 0.01


@njit(**INLINE_JIT)
def sigmoid(x, one):
    """Logistic function without overflow for either sign; ``one`` is 1 in x's dtype (a bare
    literal would promote float32 to float64)."""
    if x >= 0:
        return one / (one + math.exp(-x))
    e = math.exp(x)
    return e / (one + e)


# Activations work on ``n`` elements of a flat buffer from offset ``lo`` rather than on row
# views: a view made per row costs an atomic reference-count pair, and in small layers those
# (NRT_incref/NRT_decref) took more time than the arithmetic.  Indices are unsigned: signed ones
# keep numba's negative-index wraparound, which stops LLVM from vectorising.


@njit(**JIT)
def activate(z, lo, n, code):
    """``z[lo:lo+n] <- f(z[lo:lo+n])`` for a hidden or output activation (softmax: the span)."""
    lo = np.uint64(lo)
    hi = lo + np.uint64(n)
    if code == RELU:
        for j in range(lo, hi):
            if z[j] < 0:
                z[j] = 0
    elif code == LEAKY_RELU:
        slope = z.dtype.type(LEAKY_SLOPE)
        for j in range(lo, hi):
            if z[j] < 0:
                z[j] = z[j] * slope
    elif code == SIGMOID:
        one = z.dtype.type(1)
        for j in range(lo, hi):
            z[j] = sigmoid(z[j], one)
    elif code == TANH:
        for j in range(lo, hi):
            z[j] = math.tanh(z[j])
    elif code == EXP:
        for j in range(lo, hi):
            z[j] = math.exp(z[j])
    elif code == SOFTMAX:
        m = z[lo]
        for j in range(lo, hi):
            if z[j] > m:
                m = z[j]
        s = z.dtype.type(0)
        for j in range(lo, hi):
            z[j] = vexp(z[j] - m)
            s += z[j]
        inv = z.dtype.type(1) / s
        for j in range(lo, hi):
            z[j] = z[j] * inv


@njit(**JIT)
def scale_by_derivative(d, d_lo, a, a_lo, n, code):
    """``d[d_lo:d_lo+n] *= f'(z)`` where ``a[a_lo:a_lo+n] = f(z)`` is the layer's stored output
    (hidden codes only)."""
    d_lo = np.uint64(d_lo)
    a_lo = np.uint64(a_lo)
    un = np.uint64(n)
    if code == RELU:
        for j in range(un):
            if a[a_lo + j] <= 0:
                d[d_lo + j] = 0
    elif code == LEAKY_RELU:
        slope = d.dtype.type(LEAKY_SLOPE)
        for j in range(un):
            if a[a_lo + j] <= 0:
                d[d_lo + j] = d[d_lo + j] * slope
    elif code == SIGMOID:
        one = d.dtype.type(1)
        for j in range(un):
            x = a[a_lo + j]
            d[d_lo + j] = d[d_lo + j] * (x * (one - x))
    elif code == TANH:
        one = d.dtype.type(1)
        for j in range(un):
            x = a[a_lo + j]
            d[d_lo + j] = d[d_lo + j] * (one - x * x)
