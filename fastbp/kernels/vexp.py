"""``exp`` that LLVM can vectorise: range reduction and a polynomial, emitted inline as IR.

numba calls libm's scalar ``exp`` for ``math.exp``: a call per element that no loop around it
can vectorise (a cross-entropy output of 100 rows × 10 classes spent 12 µs in its 1000 calls,
more than the layer's product).  :func:`vexp` emits the classic reduction instead, a few
instructions with no call and no branch, so a loop over a row of logits becomes vector code:

* ``k = round(x / ln 2)``, ``r = x − k·ln 2`` (Cody–Waite: ln 2 split in a high part with
  trailing zero bits, so that ``k·hi`` and ``x − k·hi`` are exact, and a low part; no fused
  operation needed, so a CPU without FMA gets the same accuracy), ``|r| <= ln 2 / 2``;
* ``e^r`` by its Taylor polynomial of degree 13 (float64) or 7 (float32), Horner with FMAs
  (truncation below 0.05 ulp);
* times ``2^k`` built from exponent bits, as ``2^(k//2) · 2^(k − k//2)`` so that results in the
  subnormal range round once and ``k`` up to 1076 (float64) needs no special case.

Within 2 ulp of a correctly rounded ``exp`` (tested over the whole range, natively and in CI
compiled for AVX2 and for baseline x86-64 without FMA);
``exp(0) = 1``, ``exp(-inf) = 0``, ``exp(inf) = inf``, NaN stays NaN.  The instructions are
FMA intrinsics (the polynomial) and arithmetic flagged ``contract`` only, so the caller's
``reassoc`` cannot regroup the reduction.
"""
import math

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# per float width: (mantissa bits, exponent bias, clamp low, clamp high, Taylor degree)
_FORMATS = {64: (52, 1023, -746.0, 710.0, 13), 32: (23, 127, -104.0, 89.0, 7)}


# Cody–Waite: ln 2 = LN2_HI + LN2_LO, LN2_HI with its low bits zero so that k·LN2_HI is exact
# for every k the clamp allows (|k| <= 1077: 11 bits; float32 |k| <= 150: 8 bits), and then
# t − k·LN2_HI is exact too (Sterbenz): the reduction needs no fused multiply-add, and is as
# exact on a CPU without FMA (where LLVM splits a flagged llvm.fma) as with it
_LN2 = {64: (0.693147180369123816490, 1.90821492927058770002e-10),     # fdlibm's ln2HI, ln2LO
        32: (0.693359375, -2.12194440e-4)}                              # cephes' C1, C2


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
        ln2_hi, ln2_lo = _LN2[bits]
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
        r = builder.fsub(t, builder.fmul(k, c(ln2_hi), flags=_NO_REGROUPING),
                         flags=_NO_REGROUPING)
        r = builder.fsub(r, builder.fmul(k, c(ln2_lo), flags=_NO_REGROUPING),
                         flags=_NO_REGROUPING)
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
