"""The house's rules, checked on the source: no import cycle among fastbp's modules (imports
inside functions included), the kernels import nothing above themselves, and one module (the
engine) imports the compiled entry points, which it calls with their arguments by name
(engine.Call), so that no argument list of theirs is written outside its definition."""
import ast
import os

import fastbp

ROOT = os.path.dirname(fastbp.__file__)


def _modules():
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return mods


def _imports(mods):
    """``{module: {modules of fastbp it imports}}``, from every import statement (at the top or
    in a function), ``from . import x`` resolved to the module ``x`` when there is one."""
    edges = {}
    for mod, path in mods.items():
        package = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(open(path).read())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package
                    for _ in range(node.level - 1):
                        up = up.rpartition(".")[0]
                    base = up + ("." + node.module if node.module else "")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rpartition(".")[0]
                if t in mods and t != mod:
                    found.add(t)
        edges[mod] = found
    return edges


def _cycles(edges):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert _cycles(_imports(_modules())) == []


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_kernels_import_nothing_above_them():
    edges = _imports(_modules())
    for mod, targets in edges.items():
        if mod.startswith("fastbp.kernels"):
            above = {t for t in targets if not t.startswith("fastbp.kernels")
                     and t != "fastbp._config"}
            assert not above, (mod, above)


def test_only_the_engine_imports_the_compiled_entry_points():
    importers = {m for m, t in _imports(_modules()).items() if "fastbp.kernels.train" in t}
    assert importers == {"fastbp.engine"}, importers


# the most arguments the engine passes positionally to a kernel's function (more go by name,
# through engine.Call)
MAX_POSITIONAL = 8


def _long_kernel_calls(source):
    """The calls in ``source`` (the engine's) of functions from fastbp's kernels with more than
    MAX_POSITIONAL arguments, or with arguments unpacked from a sequence (``*args``: its order
    written somewhere else), as ``(line, function)``."""
    tree = ast.parse(source)
    modules, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and "kernels" in node.module:
            for a in node.names:
                (modules if node.module == "kernels" else names).add(a.asname or a.name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = (f.id if isinstance(f, ast.Name) and f.id in names else
                f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name) and f.value.id in modules else None)
        if name and (len(node.args) + len(node.keywords) > MAX_POSITIONAL
                     or any(isinstance(a, ast.Starred) for a in node.args)):
            found.append((node.lineno, name))
    return found


def test_the_engine_calls_kernels_with_long_argument_lists_by_name():
    with open(os.path.join(ROOT, "engine.py")) as f:
        assert _long_kernel_calls(f.read()) == []


def test_the_checker_finds_a_positional_argument_list():
    source = ("from .kernels import train as K\nfrom .kernels.losses import count_correct\n"
              "K.train_epoch(*args)\nK.sumsq(a, 0, 1)\ncount_correct(1, 2, 3, 4, 5, 6, 7, 8, 9)\n")
    assert _long_kernel_calls(source) == [(3, "K.train_epoch"), (5, "count_correct")]
