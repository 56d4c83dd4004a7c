"""``exp`` that LLVM can vectorise: range reduction and a polynomial, emitted inline as IR.

numba calls libm's scalar ``exp`` for ``math.exp``: a call per element that no loop around it
can vectorise (a cross-entropy output of 100 rows × 10 classes spent 12 µs in its 1000 calls,
more than the layer's product).  :func:`vexp` emits the classic reduction instead, a few
instructions with no call and no branch, so a loop over a row of logits becomes vector code:

* ``k = round(x / ln 2)``, ``r = x − k·ln 2`` (two FMAs with ln 2 split in a high and a low
  part: exact to the last bit of ``r``), ``|r| <= ln 2 / 2``;
* ``e^r`` by its Taylor polynomial of degree 13 (float64) or 7 (float32), Horner with FMAs
  (truncation below 0.05 ulp);
* times ``2^k`` built from exponent bits, as ``2^(k//2) · 2^(k − k//2)`` so that results in the
  subnormal range round once and ``k`` up to 1076 (float64) needs no special case.

Within 2 ulp of a correctly rounded ``exp`` (tested against NumPy over the whole range);
``exp(0) = 1``, ``exp(-inf) = 0``, ``exp(inf) = inf``, NaN stays NaN.  The instructions are
FMA intrinsics and multiplications flagged ``contract`` only, so the caller's ``reassoc``
cannot regroup the reduction.
"""
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# per float width: (mantissa bits, exponent bias, clamp low, clamp high, Taylor degree)
_FORMATS = {64: (52, 1023, -746.0, 710.0, 13), 32: (23, 127, -104.0, 89.0, 7)}


# ln 2 = LN2_HI + LN2_LO: the float64 nearest ln 2 and the rest (ln 2 to 25 digits,
# 0.6931471805599453094172321); float32 takes its own nearest and the rest to float64 precision
LN2_HI, LN2_LO = 0.6931471805599452862267640, 2.319046813846299558e-17


def _split_ln2(dtype):
    hi = float(dtype(LN2_HI))
    return hi, float(dtype((LN2_HI - hi) + LN2_LO))


# numba adds the caller's fast-math flags to every float instruction that has none: with
# ``reassoc``, LLVM would fold ``(p·2^a)·2^b`` into ``p·2^(a+b)``, which overflows
_NO_REGROUPING = ("contract",)


@intrinsic
def vexp(typingctx, x):
    """``e^x`` for a float32 or float64 scalar, in x's type (see the module's docstring)."""
    if not isinstance(x, types.Float):
        return None
    bits = x.bitwidth

    def codegen(context, builder, sig, args):
        (v,) = args
        fty = v.type
        ity = ir.IntType(bits)
        mant, bias, lo, hi, degree = _FORMATS[bits]
        ln2_hi, ln2_lo = _split_ln2(np.float64 if bits == 64 else np.float32)
        mod = builder.module
        fma = cgutils.get_or_insert_function(mod, ir.FunctionType(fty, [fty] * 3),
                                             f"llvm.fma.f{bits}")
        floor = cgutils.get_or_insert_function(mod, ir.FunctionType(fty, [fty]),
                                               f"llvm.floor.f{bits}")

        def c(value):
            return ir.Constant(fty, value)

        # clamp with ordered compares, false for NaN: a NaN passes through
        t = builder.select(builder.fcmp_ordered("<", v, c(lo)), c(lo), v)
        t = builder.select(builder.fcmp_ordered(">", t, c(hi)), c(hi), t)
        # k from t with NaN replaced by 0: converting a NaN to an integer is poison in LLVM
        tk = builder.select(builder.fcmp_unordered("uno", t, t), c(0.0), t)
        k = builder.call(floor, [builder.call(fma, [tk, c(1 / math.log(2)), c(0.5)])])
        nk = builder.fneg(k)
        r = builder.call(fma, [nk, c(ln2_hi), t])
        r = builder.call(fma, [nk, c(ln2_lo), r])
        p = c(1 / math.factorial(degree))
        for n in range(degree - 1, -1, -1):
            p = builder.call(fma, [p, r, c(1 / math.factorial(n))])
        ki = builder.fptosi(k, ity)
        k1 = builder.ashr(ki, ir.Constant(ity, 1))
        k2 = builder.sub(ki, k1)
        for half in (k1, k2):
            exponent = builder.shl(builder.add(half, ir.Constant(ity, bias)), ir.Constant(ity, mant))
            p = builder.fmul(p, builder.bitcast(exponent, fty), flags=_NO_REGROUPING)
        return p

    return x(x), codegen
