"""The task grid of the products (kernels/dense.py's ``_gemm``), recomputed from its formulas:
how many independent tasks each product of a network offers, i.e. how many threads it can
keep busy.  Not an asv suite; run it by hand (docs/performance.md, "Many cores"):

    python benchmarks/task_grid.py [--lanes 16]
"""
import argparse

# kernels/dense.py's constants and kernels/simd.py's AVX-512 tiles (16 accumulators)
TASKS, MC_MAX, GROUP_MAX, ACC, PAR_MIN = 8, 256, 8, 16, 1 << 18
CONFIGS = {"mnist b128": ([784, 256, 128, 10], 128), "mnist b1024": ([784, 256, 128, 10], 1024),
           "wide b256": ([1024, 2048, 2048, 10], 256),
           "one wide layer b256": ([256, 4096, 1000], 256)}


def tasks(M, K, N, lanes=16):
    """Tasks of an M×K·K×N product (1 when it runs serially)."""
    nv = 1 if N <= lanes else 2 if N <= 2 * lanes else 4
    NR, MR = nv * lanes, ACC // nv
    full = N // NR if nv == 4 else 0
    r = N - full * NR
    npan = full + (0 if r == 0 else (2 if 2 * lanes < r <= 3 * lanes else 1))
    if M * N * K < PAR_MIN:
        return 1
    nmb = min((M + MR - 1) // MR, max((TASKS + npan - 1) // npan, (M + MC_MAX - 1) // MC_MAX))
    MC = (((M + nmb - 1) // nmb + MR - 1) // MR) * MR
    nmb = (M + MC - 1) // MC
    G = max(1, min(GROUP_MAX, npan * nmb // TASKS))
    return ((npan + G - 1) // G) * nmb


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
