"""The register-tile micro-kernel, written as LLVM IR through a numba intrinsic.

``microkernel`` computes a ``MR x NR`` tile ``C[r, j] (+)= Σ_k A[a_r + k·acs] · Bp[k·NR + j]``
(``MR = 4`` rows, ``NR = 4`` vectors of the widest vector the CPU prefers): 16 vector
accumulators held in phi nodes — registers by construction — one broadcast of A per row and
one load of the packed B panel per vector per k, and ``llvm.fma``.  Plain numba loops over a
stack tile compile to the same instructions only when LLVM unrolls and promotes them exactly
right; on this machine they spilled (29 GFLOP/s against 120+ here), so the tile is spelled out.

The vector width follows the CPU features numba compiles for (the codegen's own string):
64 bytes with AVX-512 unless LLVM is tuned to prefer 256-bit vectors, 32 with AVX, else 16.
Every output element is accumulated in k order by one FMA chain: deterministic.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

MR = 4          # rows of the register tile
NV = 4          # vectors per row of the register tile


def vector_bytes(context):
    """Widest vector (bytes) the code numba generates should use."""
    codegen = context.codegen()
    features = getattr(codegen, "_tm_features", "") or ""
    cpu = codegen._get_host_cpu_name() if hasattr(codegen, "_get_host_cpu_name") else ""
    flags = set(features.split(","))
    if "+avx512f" in flags and ("-prefer-256-bit" in flags or cpu.startswith("znver")):
        return 64
    if "+avx" in flags:
        return 32
    return 16


def _lanes(context, dtype):
    return vector_bytes(context) // (dtype.bitwidth // 8)


@intrinsic
def panel_width(typingctx, arr):
    """NR: the register tile's width in elements for ``arr``'s dtype (a compile-time constant)."""
    def codegen(context, builder, sig, args):
        return context.get_constant(types.int64, NV * _lanes(context, arr.dtype))
    return types.int64(arr), codegen


@intrinsic
def microkernel(typingctx, A, a0, a1, a2, a3, acs, Bp, kc, C, coff, crs, accumulate):
    """``C[coff + r·crs + j] (+)= Σ_{k<kc} A[a_r + k·acs] · Bp[k·NR + j]`` for r < 4, j < NR.

    A, Bp, C are 1-D arrays of one float dtype; ``a0..a3`` are the element offsets of the tile's
    four rows of A (at k = 0), ``acs`` the element stride along k.  ``accumulate`` adds into C
    instead of overwriting it.  No bounds checks: the caller guarantees every access."""
    dtype = A.dtype
    if not isinstance(dtype, types.Float) or Bp.dtype != dtype or C.dtype != dtype:
        return None
    i64 = types.int64

    def codegen(context, builder, sig, args):
        (a_arr, r0, r1, r2, r3, acs_, b_arr, kc_, c_arr, coff_, crs_, acc_) = args
        ad = context.make_array(sig.args[0])(context, builder, a_arr).data
        bd = context.make_array(sig.args[6])(context, builder, b_arr).data
        cd = context.make_array(sig.args[8])(context, builder, c_arr).data
        lanes = _lanes(context, dtype)
        nr = NV * lanes
        align = dtype.bitwidth // 8
        fty = context.get_value_type(dtype)
        vty = ir.VectorType(fty, lanes)
        vptr = vty.as_pointer()
        lty = ir.IntType(64)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                             f"llvm.fma.v{lanes}f{dtype.bitwidth}")
        zero = ir.Constant(vty, None)
        undef = ir.Constant(vty, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        i32_0 = ir.Constant(ir.IntType(32), 0)

        pre = builder.basic_block
        loop = builder.append_basic_block("mk.loop")
        done = builder.append_basic_block("mk.done")
        builder.cbranch(builder.icmp_signed(">", kc_, ir.Constant(lty, 0)), loop, done)

        builder.position_at_end(loop)
        k = builder.phi(lty)
        k.add_incoming(ir.Constant(lty, 0), pre)
        accs = []
        for _ in range(MR * NV):
            phi = builder.phi(vty)
            phi.add_incoming(zero, pre)
            accs.append(phi)
        bbase = builder.mul(k, ir.Constant(lty, nr))
        bvec = [builder.load(builder.bitcast(builder.gep(bd, [builder.add(bbase, ir.Constant(lty, q * lanes))]), vptr),
                             align=align) for q in range(NV)]
        koff = builder.mul(k, acs_)
        new = []
        for row in (r0, r1, r2, r3):
            a = builder.load(builder.gep(ad, [builder.add(row, koff)]))
            av = builder.shuffle_vector(builder.insert_element(undef, a, i32_0), undef, splat)
            for q in range(NV):
                new.append(builder.call(fma, [av, bvec[q], accs[len(new)]]))
        k_next = builder.add(k, ir.Constant(lty, 1))
        for phi, value in zip(accs, new):
            phi.add_incoming(value, loop)
        k.add_incoming(k_next, loop)
        builder.cbranch(builder.icmp_signed("<", k_next, kc_), loop, done)

        builder.position_at_end(done)
        results = []
        for value in new:              # every phi first, at the top of the block
            phi = builder.phi(vty)
            phi.add_incoming(zero, pre)
            phi.add_incoming(value, loop)
            results.append(phi)
        for r in range(MR):
            rowbase = builder.add(coff_, builder.mul(ir.Constant(lty, r), crs_))
            for q in range(NV):
                result = results[r * NV + q]
                ptr = builder.bitcast(builder.gep(cd, [builder.add(rowbase, ir.Constant(lty, q * lanes))]), vptr)
                with builder.if_else(acc_) as (add, store):
                    with add:
                        builder.store(builder.fadd(builder.load(ptr, align=align), result), ptr, align=align)
                    with store:
                        builder.store(result, ptr, align=align)
        return context.get_dummy_value()

    sig = types.none(A, i64, i64, i64, i64, i64, Bp, i64, C, i64, i64, types.boolean)
    return sig, codegen
