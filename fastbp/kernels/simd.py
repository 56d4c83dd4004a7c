"""The register-tile micro-kernel, written as LLVM IR through a numba intrinsic.

A micro-kernel computes an ``MR x NR`` tile ``C[r, j] (+)= Σ_k A[a_r + k·acs] · Bp[k·NR + j]``
(``NR = NV`` vectors of the CPU's widest vector): ``MR·NV`` vector accumulators held in phi
nodes — registers by construction — one broadcast of A per row and one load of the packed B
panel per vector per k, and ``llvm.fma``.  Three shapes per target (TILES): with AVX-512's 32
registers 6×4 vectors (Intel) or 4×4 (AMD) for wide outputs, 8×2 and 16×1 for narrow ones (a
10-class output in a 64-wide tile would waste 85%); with 16 registers (AVX2, SSE) at most 12
accumulators (6×2 and 12×1; 8 without FMA), so that no accumulator is spilled.  Plain numba loops
over a stack tile compile to the same instructions only when LLVM unrolls and promotes them exactly
right; on this machine they spilled (29 GFLOP/s against 175 here), so the tile is spelled out.

The vector width and the register count follow the CPU features numba compiles for (the
codegen's own string, so ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` decide them): 64 bytes and
32 registers with AVX-512, 32 bytes with AVX, else 16 bytes; 16 registers without AVX-512.
Every output element is accumulated in k order by one FMA chain: deterministic.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .activations import LEAKY_SLOPE

# The register tiles (rows MR, vectors NV) of each shape by the target's vector registers,
# chosen per machine from measurement.  32 (AVX-512) on AMD (Zen 4, Zen 5: the CPU numba compiles
# for is a ``znver``): 16 accumulators, the NV vectors of B and a broadcast of A leave 11
# registers free (products at 81-92% of the FMA peak on a Zen 5, 2026-12-05).  32 on Intel
# (Emerald Rapids): a 6 × 4 wide tile, 24 accumulators + 4 + 1 = 29 registers (as BLIS's 6 × 64
# sgemm kernels), +7.6% over 4 × 4 on the wide and mnist products (265 -> 285 GFLOP/s, 2 threads,
# four interleaved rounds, 2026-12-07; 5 × 4, 8 × 3, 12 × 2, 14 × 2 and k-blocks of 96 and 192
# no better).  16 with FMA (AVX2): a 16-accumulator tile spills every k step (measured: 6 stack
# stores and 6 reloads per 16 FMAs), so 12 accumulators, as BLIS's Haswell kernel (6 × 2 vectors:
# 12 + 2 + 1 = 15 registers), and the wide tile is the 2-vector one.  16 without FMA (baseline
# x86-64, SSE2): each multiply-add needs a temporary too, so 8 accumulators.  Checked in CI: no
# vector register spilled in the tiles' loops (tests/test_isa.py).
TILES = {"avx512": {"wide": (6, 4), "mid": (8, 2), "narrow": (16, 1)},
         "avx512-amd": {"wide": (4, 4), "mid": (8, 2), "narrow": (16, 1)},
         "fma16": {"wide": (6, 2), "mid": (6, 2), "narrow": (12, 1)},
         "sse16": {"wide": (4, 2), "mid": (4, 2), "narrow": (8, 1)}}
# What the micro-kernel applies to a tile before storing it: nothing; with the row stored after
# the packed panel, + the row (a bias), + the row then relu / leaky relu (slope LEAKY_SLOPE), or
# × the row (the gradient's scale); with ``aux`` (the layer's output, C's shape), the derivative
# of relu / leaky relu (δ zeroed / × LEAKY_SLOPE where aux <= 0)
EPI_NONE, EPI_BIAS, EPI_RELU, EPI_LEAKY, EPI_SCALE, EPI_DRELU, EPI_DLEAKY = 0, 1, 2, 3, 4, 5, 6


def vector_bytes(context):
    """Widest vector register (bytes) of the CPU numba compiles for."""
    flags = _features(context)
    if "+avx512f" in flags:
        return 64
    if "+avx" in flags:
        return 32
    return 16


# Multiply-adds below which a product runs serially, by the host's CPU family (measured): on the
# AMD EPYCs a parallel region's launch and wait cost ~2 µs (2026-12-04); on the Intel Xeon VM of
# 2026-12-07 far more, and serial products won up to 2M multiply-adds under OpenMP and tbb alike
# (64-256-10 at batch 32, float32: 610-690k -> 940-1,030k samples/s; 96-512-10: +8-25%;
# scikit-learn's digits with sgd at batch 32, float64: 5.1-5.3 -> 3.4-3.8 ms an epoch)
PAR_MIN = {"amd": 1 << 18, "other": 1 << 21}


def host_family():
    """"amd" when the host is an AMD Zen (LLVM's name for it starts with znver), else
    "other"."""
    import llvmlite.binding as ll
    return "amd" if ll.get_host_cpu_name().startswith("znver") else "other"


@intrinsic
def serial_below(typingctx, arr):
    """:data:`PAR_MIN` of this host (a compile-time constant; ``arr``: any array, for typing)."""
    def codegen(context, builder, sig, args):
        return context.get_constant(types.int64, PAR_MIN[host_family()])
    return types.int64(arr), codegen


def _cpu_name(context):
    """The CPU numba compiles for (``NUMBA_CPU_NAME``, else the host's, as LLVM names it)."""
    try:
        return context.codegen()._get_host_cpu_name()
    except AttributeError:      # numba internals moved: ask llvmlite about the host
        import llvmlite.binding as ll
        return ll.get_host_cpu_name()


def _features(context):
    codegen = context.codegen()
    features = getattr(codegen, "_tm_features", None)
    if features is None:    # numba internals moved: ask llvmlite about the host
        import llvmlite.binding as ll
        features = ll.get_host_cpu_features().flatten()
    return set(features.split(","))


def tile(context, shape):
    """``(MR, NV)`` of the register tile ``shape`` ("wide", "mid", "narrow") for the CPU numba
    compiles for (see TILES)."""
    if vector_bytes(context) == 64:
        kind = "avx512-amd" if _cpu_name(context).startswith("znver") else "avx512"
    else:
        kind = "fma16" if "+fma" in _features(context) else "sse16"
    return TILES[kind][shape]


def _allow_wide_vectors(builder, nbytes):
    """LLVM tunes Intel AVX-512 CPUs with prefer-256-bit, and then splits explicit 512-bit
    vectors into halves — the 16-accumulator tile would need 32 registers and spill.  The
    function attribute clang puts on code using 512-bit intrinsics makes them legal again, for
    this function only (llvmlite's attribute set only knows flag attributes, hence set.add)."""
    if nbytes > 32:
        set.add(builder.function.attributes, f'"min-legal-vector-width"="{nbytes * 8}"')


def _lanes(context, dtype):
    return vector_bytes(context) // (dtype.bitwidth // 8)


def _widest(context, builder, dtype):
    """``(lanes, vector type, its pointer type, alignment)`` of the widest vectors of dtype, made
    legal in the function being built (see _allow_wide_vectors)."""
    _allow_wide_vectors(builder, vector_bytes(context))
    vty = ir.VectorType(context.get_value_type(dtype), _lanes(context, dtype))
    return vty.count, vty, vty.as_pointer(), dtype.bitwidth // 8


def _lane_mask(builder, n, lanes):
    """The ``<lanes x i1>`` mask of the lanes below the int64 ``n``."""
    i32, ity = ir.IntType(32), ir.VectorType(ir.IntType(64), lanes)
    nv = builder.insert_element(ir.Constant(ity, ir.Undefined), n, ir.Constant(i32, 0))
    nv = builder.shuffle_vector(nv, nv, ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))
    return builder.icmp_signed("<", ir.Constant(ity, list(range(lanes))), nv)


def _masked(builder, op, vty, dtype):
    """LLVM's ``llvm.masked.load`` or ``llvm.masked.store`` ("load", "store") for vectors vty."""
    i32, mty = ir.IntType(32), ir.VectorType(ir.IntType(1), vty.count)
    ftype = (ir.FunctionType(vty, [vty.as_pointer(), i32, mty, vty]) if op == "load" else
             ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), i32, mty]))
    return cgutils.get_or_insert_function(
        builder.module, ftype, f"llvm.masked.{op}.v{vty.count}f{dtype.bitwidth}.p0")


@intrinsic
def vector_lanes(typingctx, arr):
    """Elements of ``arr``'s dtype per vector register (a compile-time constant)."""
    def codegen(context, builder, sig, args):
        return context.get_constant(types.int64, _lanes(context, arr.dtype))
    return types.int64(arr), codegen


@intrinsic
def tile_table(typingctx, arr):
    """``(W, MR_wide, MR_mid, MR_narrow)`` for ``arr``'s dtype on this CPU (compile-time
    constants): W the vectors of the wide tile, then each tile's rows (see TILES)."""
    def codegen(context, builder, sig, args):
        values = [tile(context, "wide")[1]] + [tile(context, k)[0] for k in ("wide", "mid",
                                                                            "narrow")]
        return context.make_tuple(builder, sig.return_type,
                                  [context.get_constant(types.int64, v) for v in values])
    return types.UniTuple(types.int64, 4)(arr), codegen


def _make_microkernel(shape):
    @intrinsic
    def microkernel(typingctx, A, abase, a_rs, a_cs, mr, nr, Bp, kc, C, coff, crs, accumulate,
                    epi, aux):
        """``C[coff + r·crs + j] (+)= Σ_{k<kc} A[a_r + k·a_cs] · Bp[k·NR + j]`` for r < mr
        <= MR, j < nr <= NR = NV·lanes, where row r of A starts at ``a_r = abase + r·a_rs``.
        An edge tile computes MR rows (those past ``mr`` repeat the last one) and stores ``mr``
        of them, the last vector of each with a mask when ``nr < NR``: only that one can be
        partial (see dense._panel).  ``accumulate`` adds into C instead of overwriting.
        ``epi`` (EPI_*): then adds the row ``Bp[kc·NR + j]`` (a bias) and applies relu / leaky relu, or multiplies by it (a
        scale), or multiplies by the activation's derivative read from ``aux`` at C's offsets,
        in registers, so that a product writes its output once (stores are the bottleneck of
        short-K products on this machine).  No bounds checks: the caller guarantees them."""
        dtype = A.dtype
        if (not isinstance(dtype, types.Float) or Bp.dtype != dtype or C.dtype != dtype
                or aux.dtype != dtype):
            return None
        i64 = types.int64

        def codegen(context, builder, sig, args):
            (a_arr, abase_, a_rs_, a_cs_, mr_, nr_, b_arr, kc_, c_arr, coff_, crs_, acc_, epi_,
             x_arr) = args
            ad = context.make_array(sig.args[0])(context, builder, a_arr).data
            bd = context.make_array(sig.args[6])(context, builder, b_arr).data
            cd = context.make_array(sig.args[8])(context, builder, c_arr).data
            xd = context.make_array(sig.args[13])(context, builder, x_arr).data
            lanes = _lanes(context, dtype)
            MR, NV = tile(context, shape)
            _allow_wide_vectors(builder, vector_bytes(context))
            nr = NV * lanes
            align = dtype.bitwidth // 8
            vty = ir.VectorType(context.get_value_type(dtype), lanes)
            vptr = vty.as_pointer()
            lty = ir.IntType(64)

            def const(v):
                return ir.Constant(lty, v)

            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                                 f"llvm.fma.v{lanes}f{dtype.bitwidth}")
            fused = "+fma" in _features(context)
            zero = ir.Constant(vty, None)
            undef = ir.Constant(vty, ir.Undefined)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            i32_0 = ir.Constant(ir.IntType(32), 0)
            last = builder.sub(mr_, const(1))
            rows = []
            for r in range(MR):
                rr = builder.select(builder.icmp_signed("<", const(r), last), const(r), last)
                rows.append(builder.add(abase_, builder.mul(rr, a_rs_)))

            pre = builder.basic_block
            loop = builder.append_basic_block("mk.loop")
            done = builder.append_basic_block("mk.done")
            builder.cbranch(builder.icmp_signed(">", kc_, const(0)), loop, done)

            builder.position_at_end(loop)
            k = builder.phi(lty)
            k.add_incoming(const(0), pre)
            accs = []
            for _ in range(MR * NV):
                phi = builder.phi(vty)
                phi.add_incoming(zero, pre)
                accs.append(phi)
            bbase = builder.mul(k, const(nr))
            bvec = [builder.load(builder.bitcast(builder.gep(bd, [builder.add(bbase, const(q * lanes))]), vptr),
                                 align=align) for q in range(NV)]
            koff = builder.mul(k, a_cs_)
            new = []
            for row in rows:
                a = builder.load(builder.gep(ad, [builder.add(row, koff)]))
                av = builder.shuffle_vector(builder.insert_element(undef, a, i32_0), undef, splat)
                for q in range(NV):
                    acc = accs[len(new)]
                    # without FMA instructions llvm.fma is a libm call per lane (numba's
                    # fast-math flags reach scalar calls only): a multiply and an add instead
                    new.append(builder.call(fma, [av, bvec[q], acc]) if fused else
                               builder.fadd(builder.fmul(av, bvec[q]), acc))
            k_next = builder.add(k, const(1))
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

            scalar = context.get_value_type(dtype)
            slope = ir.Constant(vty, [ir.Constant(scalar, LEAKY_SLOPE)] * lanes)
            off = ir.Constant(ir.VectorType(ir.IntType(1), lanes), None)

            # the last vector of each row: a mask of its lanes below nr (all of them in a full
            # panel); masked loads read nothing past C's and aux's ends
            mask = _lane_mask(builder, builder.sub(nr_, const((NV - 1) * lanes)), lanes)
            partial = builder.icmp_signed("<", nr_, const(nr))
            mload = _masked(builder, "load", vty, dtype)
            mstore = _masked(builder, "store", vty, dtype)
            ialign = ir.Constant(ir.IntType(32), align)

            def load(ptr, q):
                if q < NV - 1:
                    return builder.load(ptr, align=align)
                return builder.call(mload, [ptr, ialign, mask, zero])

            def put(value, ptr, q):
                if q < NV - 1:
                    builder.store(value, ptr, align=align)
                    return
                with builder.if_else(partial) as (part, whole):
                    with part:
                        builder.call(mstore, [value, ptr, ialign, mask])
                    with whole:
                        builder.store(value, ptr, align=align)

            def store(kind):
                """The stores of the mr rows, after ``kind``: None, "row" (bias, relu, leaky,
                scale: the row after the panel) or "derivative" (of relu, leaky relu: aux)."""
                if kind == "row":
                    boff = builder.mul(kc_, const(nr))
                    row = [builder.load(builder.bitcast(
                        builder.gep(bd, [builder.add(boff, const(q * lanes))]), vptr), align=align)
                        for q in range(NV)]
                    relu = builder.icmp_signed("==", epi_, const(EPI_RELU))
                    scale = builder.icmp_signed("==", epi_, const(EPI_SCALE))
                else:
                    row = relu = scale = None
                leaky = builder.icmp_signed("==", epi_, const(
                    EPI_DLEAKY if kind == "derivative" else EPI_LEAKY))
                store_row(kind, 0, row, relu, scale, leaky)     # mr >= 1
                for r in range(1, MR):
                    with builder.if_then(builder.icmp_signed("<", const(r), mr_)):
                        store_row(kind, r, row, relu, scale, leaky)

            def store_row(kind, r, row, relu, scale, leaky):
                rowbase = builder.add(coff_, builder.mul(const(r), crs_))
                for q in range(NV):
                    offset = builder.add(rowbase, const(q * lanes))
                    ptr = builder.bitcast(builder.gep(cd, [offset]), vptr)
                    value = results[r * NV + q]
                    with builder.if_else(acc_) as (add, keep):
                        with add:
                            added = builder.fadd(load(ptr, q), value)
                            add_bb = builder.basic_block
                        with keep:
                            keep_bb = builder.basic_block
                    v = builder.phi(vty)
                    v.add_incoming(added, add_bb)
                    v.add_incoming(value, keep_bb)
                    if kind == "row":
                        v = builder.select(scale, builder.fmul(v, row[q]),
                                           builder.fadd(v, row[q]))
                        neg = builder.fcmp_ordered("<", v, zero)     # NaN stays NaN
                        v = builder.select(builder.select(relu, neg, off), zero, v)
                        v = builder.select(builder.select(leaky, neg, off),
                                           builder.fmul(v, slope), v)
                    elif kind == "derivative":  # as scale_by_derivative: aux NaN keeps δ
                        a = load(builder.bitcast(builder.gep(xd, [offset]), vptr), q)
                        v = builder.select(builder.fcmp_ordered("<=", a, zero),
                                           builder.select(leaky, builder.fmul(v, slope), zero),
                                           v)
                    put(v, ptr, q)

            with builder.if_else(builder.icmp_signed(">", epi_, const(EPI_NONE))) as (fused, plain):
                with fused:
                    with builder.if_else(builder.icmp_signed(">=", epi_, const(EPI_DRELU))) as (
                            derivative, row):
                        with derivative:
                            store("derivative")
                        with row:
                            store("row")
                with plain:
                    store(None)
            return context.get_dummy_value()

        sig = types.none(A, i64, i64, i64, i64, i64, Bp, i64, C, i64, i64, types.boolean, i64,
                         aux)
        return sig, codegen

    return microkernel


microkernel_wide = _make_microkernel("wide")
microkernel_mid = _make_microkernel("mid")
microkernel_narrow = _make_microkernel("narrow")


@intrinsic
def transpose_block(typingctx, src, soff, s_rs, dst, doff, d_rs):
    """``dst[doff + k·d_rs + j] = src[soff + j·s_rs + k]`` for j, k < lanes: a square block of
    the widest vectors transposed in registers (lanes loads, log2(lanes) rounds of lanes
    two-vector shuffles, the perfect shuffle, lanes stores), for backprop's packing of Wᵀ:
    strided scalar reads of the same block ran at ~1.5 elements per cycle."""
    if (not isinstance(src.dtype, types.Float) or dst.dtype != src.dtype):
        return None
    dtype = src.dtype

    def codegen(context, builder, sig, args):
        s_arr, soff_, s_rs_, d_arr, doff_, d_rs_ = args
        sd = context.make_array(sig.args[0])(context, builder, s_arr).data
        dd = context.make_array(sig.args[3])(context, builder, d_arr).data
        lanes, vty, vptr, align = _widest(context, builder, dtype)
        lty = ir.IntType(64)
        rows = [builder.load(builder.bitcast(builder.gep(sd, [builder.add(
            soff_, builder.mul(ir.Constant(lty, j), s_rs_))]), vptr), align=align)
            for j in range(lanes)]
        half = lanes // 2
        i32 = ir.IntType(32)
        lo = ir.Constant(ir.VectorType(i32, lanes), [x for i in range(half) for x in (i, lanes + i)])
        hi = ir.Constant(ir.VectorType(i32, lanes), [x for i in range(half, lanes)
                                                     for x in (i, lanes + i)])
        n = lanes
        while n > 1:        # log2(lanes) rounds
            new = []
            for i in range(half):
                new.append(builder.shuffle_vector(rows[i], rows[i + half], lo))
                new.append(builder.shuffle_vector(rows[i], rows[i + half], hi))
            rows = new
            n //= 2
        for k in range(lanes):
            ptr = builder.gep(dd, [builder.add(doff_, builder.mul(ir.Constant(lty, k), d_rs_))])
            builder.store(rows[k], builder.bitcast(ptr, vptr), align=align)
        return context.get_dummy_value()

    i64 = types.int64
    return types.none(src, i64, i64, dst, i64, i64), codegen


@intrinsic
def copy_vector(typingctx, src, soff, dst, doff, n):
    """``dst[doff + j] = src[soff + j]`` for j < n, 0 for n <= j < lanes: one vector, read with
    a mask (nothing read past ``n``) and stored whole, for the zero-padded edge panels of B
    (scalar copies of 10 columns and 6 zeros per k cost as much as the 10-class products)."""
    if not isinstance(src.dtype, types.Float) or dst.dtype != src.dtype:
        return None
    dtype = src.dtype

    def codegen(context, builder, sig, args):
        s_arr, soff_, d_arr, doff_, n_ = args
        sd = context.make_array(sig.args[0])(context, builder, s_arr).data
        dd = context.make_array(sig.args[2])(context, builder, d_arr).data
        lanes, vty, vptr, align = _widest(context, builder, dtype)
        value = builder.call(_masked(builder, "load", vty, dtype), [
            builder.bitcast(builder.gep(sd, [soff_]), vptr), ir.Constant(ir.IntType(32), align),
            _lane_mask(builder, n_, lanes), ir.Constant(vty, None)])
        builder.store(value, builder.bitcast(builder.gep(dd, [doff_]), vptr), align=align)
        return context.get_dummy_value()

    i64 = types.int64
    return types.none(src, i64, dst, i64, i64), codegen
