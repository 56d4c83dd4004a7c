"""Where a cold start's compile time goes: runs bench_compile's small Trainer fit (or a script
given as an argument) with numba's compile events recorded, and prints per function the
inclusive and the self time (self = inclusive less the nested compiles it triggered).

numba links each callee's code into its caller and optimises and emits it again there, so the
self time of a caller includes the re-emission of everything it calls that is not inlined.

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/compile_profile.py [script.py] [--top N]
        [--tree SECONDS]

``--tree``: every compile of at least SECONDS as a tree, each under the compile that triggered
it, named with its module: a library overload pulled into a kernel (numba's ``impl`` of
``a.view(...)`` cost 1.4 s inside ``train_epoch`` once) shows under its caller.

The events are this process's: what helper processes compile side by side (kernels/native.py)
is not in them; FASTBP_COMPILE_JOBS=1 compiles everything here, for the whole picture.

Not an asv suite (nothing runs on import)."""
import argparse
import collections
import time


def main():
    from numba.core import event

    ap = argparse.ArgumentParser()
    ap.add_argument("script", nargs="?")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--tree", type=float, metavar="SECONDS",
                    help="print the nested compiles of at least this many seconds as a tree")
    args = ap.parse_args()
    if args.script:
        with open(args.script) as f:
            code = f.read()
    else:
        from bench_compile import SCRIPT as code

    stack, records, tree = [], [], []

    class Recorder(event.Listener):
        def on_start(self, ev):
            node = [len(stack), None, 0.0, 0.0]      # depth, name, inclusive, self (in order)
            tree.append(node)
            stack.append([0.0, ev.data.get("dispatcher"), time.perf_counter(), node])

        def on_end(self, ev):
            nested, disp, t0, node = stack.pop()
            t = time.perf_counter() - t0
            if stack:
                stack[-1][0] += t
            fn = getattr(disp, "py_func", None)
            name = getattr(fn, "__qualname__", str(disp))
            records.append((name, t, t - nested))
            node[1:] = [f"{getattr(fn, '__module__', '?')}.{name}", t, t - nested]

    event.register("numba:compile", Recorder())
    t0 = time.perf_counter()
    exec(compile(code, args.script or "bench_compile.SCRIPT", "exec"), {"__name__": "__main__"})
    wall = time.perf_counter() - t0
    incl = collections.defaultdict(float)
    self_t = collections.defaultdict(float)
    count = collections.Counter()
    for name, t, s in records:
        incl[name] += t
        self_t[name] += s
        count[name] += 1
    print(f"wall {wall:.1f} s, compiling {sum(self_t.values()):.1f} s")
    print(f"{'inclusive':>9} {'self':>7} {'n':>3}  function")
    for name in sorted(self_t, key=lambda k: -self_t[k])[:args.top]:
        print(f"{incl[name]:9.2f} {self_t[name]:7.2f} {count[name]:3d}  {name}")
    if args.tree is not None:
        print(f"\n{'inclusive':>9} {'self':>7}  compiles of {args.tree} s and more, nested")
        for depth, name, t, s in tree:
            if t >= args.tree:
                print(f"{t:9.2f} {s:7.2f}  {'  ' * depth}{name}")


if __name__ == "__main__":
    main()
