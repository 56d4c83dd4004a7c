"""The task grid of the products (kernels/dense.py's ``_gemm``), recomputed from its formulas:
how many independent tasks each product of a network offers, i.e. how many threads it can
keep busy.  Not an asv suite; run it by hand (docs/performance.md, "Many cores"):

    python benchmarks/task_grid.py [--lanes 16]
"""
import argparse

from fastbp.kernels import dense, simd

PAR_MIN = simd.PAR_MIN[simd.host_family()]

ACC = 16        # kernels/simd.py's AVX-512 tiles: 16 accumulators (4×4, 8×2, 16×1 vectors)
CONFIGS = {"mnist b128": ([784, 256, 128, 10], 128), "mnist b1024": ([784, 256, 128, 10], 1024),
           "wide b256": ([1024, 2048, 2048, 10], 256),
           "one wide layer b256": ([256, 4096, 1000], 256)}


def tasks(M, K, N, lanes=16):
    """Tasks of an M×K·K×N product (1 when it runs serially), by dense.py's own grid."""
    nv = dense._vectors.py_func(N, lanes, 4)
    full, npan = dense._panels.py_func(N, nv, lanes, 4)
    MC, nmb, ngroups = dense.grid.py_func(M, ACC // nv, npan, M * N * K < PAR_MIN)
    return 1 if M * N * K < PAR_MIN else nmb * ngroups


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=16, help="float32 lanes (AVX-512: 16)")
    lanes = ap.parse_args().lanes
    for name, (sizes, B) in CONFIGS.items():
        rows = []
        for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            bp = tasks(B, b, a, lanes) if l > 0 else "-"
            rows.append(f"{a}x{b}: forward {tasks(B, a, b, lanes)}, backprop {bp}, "
                        f"gradient {tasks(a, B, b, lanes)}")
        print(f"{name}: " + "; ".join(rows))


if __name__ == "__main__":
    main()
