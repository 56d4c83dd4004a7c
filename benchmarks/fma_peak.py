"""The measured FMA peak of this machine, and the products' GFLOP/s against it.

The probe is a compiled loop of independent vector fused multiply-adds held in registers (as
many chains as the target's vector registers allow beside two operands: 24 with AVX-512's 32,
12 with 16), at the widest vector width numba targets (kernels/simd.py's choice), one loop per
thread in a parallel region: no loads, no stores, nothing but the FMA ports.  Two FLOPs per lane
per FMA.  Without FMA instructions (baseline x86-64) it is a multiply and an add, still counted
as two FLOPs.

    NUMBA_NUM_THREADS=2 python benchmarks/fma_peak.py         # the peak, then the products

asv: ``FmaPeak.track_gflops`` (per dtype and thread count).  Then the three products of the
wide and mnist layers (bench_kernels.py's shapes) as GFLOP/s and as a fraction of the 2-thread
peak, the figure issue 17 asks the kernels to be reported against.
"""
import os
import time

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "2")


def _probe():
    """The compiled probe ``run(n_iter, threads, dtype_witness) -> seconds`` (built lazily:
    asv imports this module in environments where compiling is not wanted at import)."""
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from fastbp.kernels import simd

    @intrinsic
    def fma_chains(typingctx, n, witness):
        """``n`` iterations of independent vector FMA chains; returns a sum of them (so the
        loop is not deleted)."""
        dtype = witness.dtype

        def codegen(context, builder, sig, args):
            lanes = simd._lanes(context, dtype)
            nbytes = simd.vector_bytes(context)
            simd._allow_wide_vectors(builder, nbytes)
            chains = 24 if nbytes == 64 else 12
            fused = "+fma" in simd._features(context)
            scalar = context.get_value_type(dtype)
            vty = ir.VectorType(scalar, lanes)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                                 f"llvm.fma.v{lanes}f{dtype.bitwidth}")
            # x, y from the loop count, so that LLVM cannot fold the chains into constants
            nf = builder.sitofp(args[0], scalar)
            x = builder.insert_element(ir.Constant(vty, None), builder.fdiv(
                ir.Constant(scalar, 1.0), builder.fadd(nf, ir.Constant(scalar, 2.0))),
                ir.Constant(ir.IntType(32), 0))
            x = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                         [0] * lanes))
            y = ir.Constant(vty, [ir.Constant(scalar, 0.999999)] * lanes)
            i64 = ir.IntType(64)
            pre = builder.basic_block
            loop = builder.append_basic_block("probe.loop")
            done = builder.append_basic_block("probe.done")
            builder.cbranch(builder.icmp_signed(">", args[0], ir.Constant(i64, 0)), loop, done)
            builder.position_at_end(loop)
            k = builder.phi(i64)
            k.add_incoming(ir.Constant(i64, 0), pre)
            accs = []
            for c in range(chains):
                phi = builder.phi(vty)
                phi.add_incoming(ir.Constant(vty, [ir.Constant(scalar, float(c))] * lanes), pre)
                accs.append(phi)
            new = [builder.call(fma, [a, y, x]) if fused else builder.fadd(builder.fmul(a, y), x)
                   for a in accs]
            for phi, v in zip(accs, new):
                phi.add_incoming(v, loop)
            k1 = builder.add(k, ir.Constant(i64, 1))
            k.add_incoming(k1, loop)
            builder.cbranch(builder.icmp_signed("<", k1, args[0]), loop, done)
            builder.position_at_end(done)
            outs = []
            for v, a0 in zip(new, accs):       # every phi first, at the top of the block
                phi = builder.phi(vty)
                phi.add_incoming(a0.incomings[0][0], pre)
                phi.add_incoming(v, loop)
                outs.append(phi)
            total = ir.Constant(scalar, 0.0)
            for phi in outs:
                total = builder.fadd(total, builder.extract_element(phi, ir.Constant(
                    ir.IntType(32), 0)))
            return builder.fpext(total, ir.DoubleType()) if dtype.bitwidth == 32 else total

        return types.float64(types.int64, witness), codegen

    @intrinsic
    def flops_per_iter(typingctx, witness):
        dtype = witness.dtype

        def codegen(context, builder, sig, args):
            nbytes = simd.vector_bytes(context)
            chains = 24 if nbytes == 64 else 12
            return context.get_constant(types.int64,
                                        2 * chains * simd._lanes(context, dtype))
        return types.int64(witness), codegen

    @njit(parallel=True, cache=False)
    def run(n, threads, witness):
        out = np.zeros(threads)
        for t in prange(threads):
            out[t] = fma_chains(n, witness)
        return out.sum(), flops_per_iter(witness)

    return run


def peak_gflops(dtype="float32", threads=2, seconds=0.3):
    """The measured peak (GFLOP/s) of ``threads`` threads in ``dtype``: the best of 5 timed
    runs of about ``seconds`` each."""
    import numba
    run = _probe()
    witness = np.zeros(1, dtype)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        _, per = run(1000, threads, witness)        # compile
        n = 1 << 16
        while True:                                  # size one run to about `seconds`
            t = time.perf_counter()
            run(n, threads, witness)
            dt = time.perf_counter() - t
            if dt > seconds / 4:
                break
            n *= 4
        n = int(n * seconds / dt)
        best = 0.0
        for _ in range(5):
            t = time.perf_counter()
            run(n, threads, witness)
            best = max(best, per * n * threads / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        numba.set_num_threads(previous)


class FmaPeak:
    params = (["float32", "float64"], [1, 2])
    param_names = ["dtype", "threads"]
    timeout = 120

    def setup(self, dtype, threads):
        import numba
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise NotImplementedError("fewer threads than that")

    def track_gflops(self, dtype, threads):
        return peak_gflops(dtype, threads)
    track_gflops.unit = "GFLOP/s"


def main():
    import argparse
    from bench_kernels import Dense

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="256x1024x2048,256x2048x2048,256x2048x10,"
                                        "128x784x256,128x256x128")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    import numba
    peaks = {t: peak_gflops(args.dtype, t) for t in (1, numba.config.NUMBA_NUM_THREADS)}
    for t, p in peaks.items():
        print(f"FMA peak, {args.dtype}, {t} thread(s): {p:.1f} GFLOP/s")
    peak = peaks[numba.config.NUMBA_NUM_THREADS]
    print(f"{'shape (batch x n_in x n_out)':30s} {'forward':>16s} {'backprop':>16s} "
          f"{'gradient':>16s}   (GFLOP/s, % of the {peak:.0f} peak)")
    for shape in args.shapes.split(","):
        d = Dense()
        d.setup(shape, args.dtype)
        cells = []
        for name in ("forward", "backprop", "gradient"):
            fn = getattr(d, f"time_{name}")
            reps = max(3, int(1e9 // d.flops))
            best = 0.0
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(reps):
                    fn(shape, args.dtype)
                best = max(best, d.flops * reps / (time.perf_counter() - t) / 1e9)
            cells.append(f"{best:7.1f} ({100 * best / peak:3.0f}%)")
        print(f"{shape:30s} " + " ".join(f"{c:>16s}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
