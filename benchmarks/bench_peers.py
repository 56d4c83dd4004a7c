"""fastbp against its peers inside asv: the ratio of samples/s, fastbp / peer, for PyTorch eager,
torch.compile (the whole step one compiled graph) and JAX (the whole epoch one jitted
``lax.scan``), with peers.py's protocol (the same data and configs, each trainer in a fresh
process, the two alternating; compilation and warm-up excluded).  A ratio is comparable across
machines where absolute times are not; asv tracks it per commit.

A peer that is not installed where asv runs is skipped (asv's own virtualenvs hold numpy and
numba only: run ``asv run --python=same -b Peers`` where torch and jax are installed), and so is
torch.compile without a C++ compiler.  ``README.md``'s table comes from ``python
benchmarks/peers.py --rounds 5 --peers torch,torchc,jax`` (every config, more rounds)."""
import importlib.util
import shutil
import statistics

from . import peers

ROUNDS = 2      # alternating pairs per sample; the median of their ratios


class Peers:
    params = (["tabular", "mnist", "wide", "batch1"], ["torch", "torchc", "jax"])
    param_names = ["config", "peer"]
    timeout = 900
    number = 1
    repeat = 1

    def setup(self, cfg, peer):
        if importlib.util.find_spec(peers.MODULES[peer]) is None:
            raise NotImplementedError(f"{peers.MODULES[peer]} is not installed")
        if peer == "torchc" and shutil.which("g++") is None and shutil.which("c++") is None:
            raise NotImplementedError("torch.compile needs a C++ compiler")

    def track_ratio(self, cfg, peer):
        ratios = []
        for _ in range(ROUNDS):
            mine, theirs = peers.spawn("fastbp", cfg), peers.spawn(peer, cfg)
            for r in (mine, theirs):
                if "error" in r:
                    raise RuntimeError(f"{r['trainer']} {cfg}: {r['error']}")
            ratios.append(mine["samples_per_s"] / theirs["samples_per_s"])
        return statistics.median(ratios)
    track_ratio.unit = "fastbp/peer"
