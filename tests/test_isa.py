"""Every x86 vector width, on every push: the kernel, gradient and network tests run again in
subprocesses whose kernels numba compiles for AVX2 (``NUMBA_CPU_NAME=haswell`` with the host's
feature string, everything Haswell lacks turned off: the name alone would still let LLVM emit
AVX-512) and for baseline x86-64 (``generic``: SSE2, no FMA).  Each child has its own empty
numba cache, so it compiles everything for its target; the children first check, in the
generated assembly, that the target is the one asked for."""
import os
import subprocess
import sys

import pytest

from fastbp._config import haswell_features

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = "FASTBP_TEST_ISA"       # set in the children: this file's tests do not recurse
SUITES = ["test_kernels.py", "test_gradients.py", "test_network.py"]


def _has(feature):
    import llvmlite.binding as ll
    return ll.get_host_cpu_features().get(feature, False)


TARGETS = {
    "avx2": dict(NUMBA_CPU_NAME="haswell", features=haswell_features),
    "generic": dict(NUMBA_CPU_NAME="generic", features=None),
}

# run in each child before its tests: the generated code is the target's, and the products'
# inner loops (the three register tiles) keep their accumulators in registers
ASM_CHECK = r"""
import re
import numpy as np
from numba import njit
from fastbp._config import JIT
from fastbp import compilation
from fastbp.kernels import dense, native
from fastbp.kernels.simd import vector_lanes


def vector_spills(asm):
    # the innermost loops (a backward jump to a label above) of the products' code (dense.py's
    # functions) made of vector multiplies (at least 8, at least a tenth of the loop's lines:
    # not the stores of a tile, whose loop over the rows may be laid out apart from its k
    # loop and which reload their masks and row vectors once per tile), and the most vector
    # stack accesses in one
    lines = asm.splitlines()
    owner, fn = [], ""
    for x in lines:
        m = re.match(r"^(_Z\w+):", x)
        fn = m.group(1) if m else fn
        owner.append("7kernels5dense" in fn)
    labels = {m.group(1): i for i, m in enumerate(re.match(r"^(\.LBB\w+):", x) for x in lines)
              if m}
    loops = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s+j[a-z]+\s+(\.LBB\w+)\s*$", line)
        if m and labels.get(m.group(1), i) < i and owner[i]:
            loops.append((labels[m.group(1)], i))
    inner = [(a, b) for a, b in loops
             if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)]
    mults = [(a, b, sum(re.search(r"v?fmadd|mulp[sd]", x) is not None for x in lines[a:b + 1]))
             for a, b in inner]
    hot = [lines[a:b + 1] for a, b, n in mults if n >= 8 and 10 * n >= b - a + 1]
    return len(hot), max((sum("(%rsp)" in x and re.search(r"%[xyz]mm", x) is not None
                              for x in body) for body in hot), default=0)


@njit(**dict(JIT, cache=False))
def product(fns, A, W, b, Z, sq):
    dense.forward(fns, A, W, b, Z, np.int64(0), sq, np.bool_(False))
    return vector_lanes(Z)


fns = compilation.Table(np.float32).need([native.FN_GEMM, native.FN_TASK])


for n in (64, 12, 6):           # every register tile (its code is there whatever n is)
    A, W = np.ones((32, 64), np.float32), np.ones((64, n), np.float32)
    Z = np.empty((32, n), np.float32)
    lanes = product(fns, A, W, np.zeros(n, np.float32), Z, np.zeros(64, np.float64))
    assert (Z == 64).all()
asm = "\n".join(dense._task.inspect_asm().values())     # the tiles' code: compiled here
libm_fma = re.search(r"\$fmaf?\b", asm) is not None    # a libm call per lane: no FMA unit
print(lanes, "zmm" in asm, "ymm" in asm, "vfmadd" in asm, libm_fma, *vector_spills(asm))
"""


def _child(target, tmp_path):
    t = TARGETS[target]
    env = {**os.environ, CHILD: target, "NUMBA_CPU_NAME": t["NUMBA_CPU_NAME"],
           "NUMBA_CACHE_DIR": str(tmp_path / target / "numba-cache"), "NUMBA_NUM_THREADS": "1"}
    env.pop("NUMBA_CPU_FEATURES", None)
    if t["features"] is not None:
        env["NUMBA_CPU_FEATURES"] = t["features"]()
    (tmp_path / target).mkdir()
    return env


@pytest.mark.skipif(os.environ.get(CHILD) is not None, reason="inside a target's own run")
@pytest.mark.skipif(not _has("avx2"), reason="the host has no AVX2")
def test_kernels_gradients_and_network_at_every_vector_width(tmp_path):
    """Both targets at once, one thread each (compiling is serial: two cores, half the time)."""
    envs = {target: _child(target, tmp_path) for target in TARGETS}
    for target, env in envs.items():
        check = subprocess.run([sys.executable, "-c", ASM_CHECK], capture_output=True,
                               text=True, env=env, timeout=600)
        assert check.returncode == 0, (target, check.stderr)
        lanes, zmm, ymm, fma, libm_fma, loops, spills = check.stdout.split()
        # float32 lanes of the widest vector; no 512-bit register; FMA only with AVX2, and
        # never as libm's fmaf (the micro-kernel's llvm.fma where the target has none); the
        # tiles' loops found (two shapes with 16 registers: wide and mid are one, and LLVM
        # may merge their code), with no vector spilled to the stack
        assert (lanes, zmm, ymm, fma, libm_fma) == (
            ("8", "False", "True", "True", "False") if target == "avx2"
            else ("4", "False", "False", "False", "False")), check.stdout
        assert int(loops) >= 2 and spills == "0", (target, check.stdout)
    runs = {target: subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         *[os.path.join(HERE, s) for s in SUITES]], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path / target)
        for target, env in envs.items()}
    for target, run in runs.items():
        out, _ = run.communicate(timeout=1500)
        assert run.returncode == 0, (target, out[-8000:])


@pytest.mark.parametrize("cpu, features, wide", [
    ("znver5", "+avx512f,+fma", (4, 4)), ("znver4", "+avx512f,+fma", (4, 4)),
    ("emeraldrapids", "+avx512f,+fma", (6, 4)), ("rocketlake", "+avx512f,+fma", (6, 4)),
    ("haswell", "+avx,+fma", (6, 2)), ("x86-64", "+sse2", (4, 2))])
def test_the_register_tile_is_chosen_by_the_target(monkeypatch, cpu, features, wide):
    """AVX-512 on AMD (the CPU numba compiles for is a znver): the 4 × 4 tile measured there; on
    Intel 6 × 4; 16 registers: the 12- and 8-accumulator tiles (kernels/simd.py, TILES)."""
    from fastbp.kernels import simd
    monkeypatch.setattr(simd, "_cpu_name", lambda context: cpu)
    monkeypatch.setattr(simd, "_features", lambda context: set(features.split(",")))
    assert simd.tile(None, "wide") == wide
    MR, NV = wide
    assert MR * NV + NV + 1 <= (32 if "+avx512f" in features else 16)     # no spill
