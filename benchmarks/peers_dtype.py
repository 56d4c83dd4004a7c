#!/usr/bin/env python3
"""fastbp against PyTorch in float64 (or float32): ``benchmarks/peers.py`` with ``PEERS_DTYPE``
and ``--peers torch`` (one epoch of plain SGD, each trainer in a fresh process, alternating,
medians), kept for the commands docs/performance.md quotes.  Not an asv benchmark; run it by
hand:

    python benchmarks/peers_dtype.py --dtype float64 --configs tabular,mnist,wide --rounds 3
"""
import argparse
import os
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--configs", default="tabular,mnist,wide")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    peers = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers.py")
    sys.exit(subprocess.call([sys.executable, peers, "--peers", "torch", "--configs", a.configs,
                              "--rounds", str(a.rounds)],
                             env={**os.environ, "PEERS_DTYPE": a.dtype}))


if __name__ == "__main__":
    main()
