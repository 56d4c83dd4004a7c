"""Activations and their derivatives, applied in place to one row, selected by a small integer.

Derivatives are computed from the activation's *output* ``a`` (never from ``z``), so the forward
pass keeps one buffer per layer: relu ``H(a)``, leaky_relu ``1 or 0.01``, sigmoid ``a(1-a)``,
tanh ``1-a²``, identity ``1``.
"""
import math

import numpy as np
from numba import njit

from .._config import JIT

IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH, SOFTMAX = 0, 1, 2, 3, 4, 5

HIDDEN = {"identity": IDENTITY, "relu": RELU, "leaky_relu": LEAKY_RELU, "sigmoid": SIGMOID,
          "logistic": SIGMOID, "tanh": TANH}
OUTPUT = {"identity": IDENTITY, "sigmoid": SIGMOID, "softmax": SOFTMAX}
NAMES = {IDENTITY: "identity", RELU: "relu", LEAKY_RELU: "leaky_relu", SIGMOID: "sigmoid",
         TANH: "tanh", SOFTMAX: "softmax"}
LEAKY_SLOPE = 0.01


@njit(**JIT)
def sigmoid(x, one):
    """Logistic function without overflow for either sign; ``one`` is 1 in x's dtype (a bare
    literal would promote float32 to float64)."""
    if x >= 0:
        return one / (one + math.exp(-x))
    e = math.exp(x)
    return e / (one + e)


@njit(**JIT)
def activate_row(z, code):
    """``z <- f(z)`` for a hidden or output activation (softmax over the whole row)."""
    n = np.uint64(z.shape[0])   # unsigned: no negative-index wraparound, so loops vectorise
    if code == RELU:
        for j in range(n):
            if z[j] < 0:
                z[j] = 0
    elif code == LEAKY_RELU:
        slope = z.dtype.type(LEAKY_SLOPE)
        for j in range(n):
            if z[j] < 0:
                z[j] = z[j] * slope
    elif code == SIGMOID:
        one = z.dtype.type(1)
        for j in range(n):
            z[j] = sigmoid(z[j], one)
    elif code == TANH:
        for j in range(n):
            z[j] = math.tanh(z[j])
    elif code == SOFTMAX:
        m = z[0]
        for j in range(np.uint64(1), n):
            if z[j] > m:
                m = z[j]
        s = z.dtype.type(0)
        for j in range(n):
            z[j] = math.exp(z[j] - m)
            s += z[j]
        inv = z.dtype.type(1) / s
        for j in range(n):
            z[j] = z[j] * inv


@njit(**JIT)
def scale_by_derivative_row(d, a, code):
    """``d <- d * f'(z)`` where ``a = f(z)`` is the layer's stored output (hidden codes only)."""
    n = np.uint64(d.shape[0])
    if code == RELU:
        for j in range(n):
            if a[j] <= 0:
                d[j] = 0
    elif code == LEAKY_RELU:
        slope = d.dtype.type(LEAKY_SLOPE)
        for j in range(n):
            if a[j] <= 0:
                d[j] = d[j] * slope
    elif code == SIGMOID:
        one = d.dtype.type(1)
        for j in range(n):
            d[j] = d[j] * (a[j] * (one - a[j]))
    elif code == TANH:
        one = d.dtype.type(1)
        for j in range(n):
            d[j] = d[j] * (one - a[j] * a[j])
