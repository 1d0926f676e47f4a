"""Package structure: import direction, where cupy may be imported, banned constructs, numpy-only import."""

import ast
import io
import json
import re
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xpnet"


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name, path, node):
    """The absolute module an ImportFrom refers to."""
    if node.level == 0:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(name, path=None, source=None):
    """Every module imported anywhere in a module (function-level imports included).

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module of xpnet.
    """
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    path = path or Path(name.replace(".", "/") + ".py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path, node)
            submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
            found.update(submodules)
            if len(submodules) < len(node.names):  # some names come from the package itself
                found.add(base)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            found.add(node.args[0].value)
    return found


def xpnet_imports(name):
    return {m for m in imports_of(name, MODULES[name]) if m == "xpnet" or m.startswith("xpnet.")}


def _in(module, *prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# module prefix -> the xpnet modules it may import (the direction backend <- ops <- layers)
ALLOWED = {
    "xpnet.errors": set(),
    "xpnet.backend": {"xpnet.errors"},
    "xpnet.initializers": set(),
    "xpnet.parameter": {"xpnet.backend", "xpnet.errors"},
    "xpnet.ops": {"xpnet.backend", "xpnet.errors", "xpnet.ops"},
    "xpnet.layers": {"xpnet.backend", "xpnet.errors", "xpnet.ops", "xpnet.parameter", "xpnet.initializers",
                     "xpnet.layers"},
    "xpnet.distributed": {"xpnet.backend", "xpnet.errors"},  # sees the model only through its methods
}
RULED = [m for m in MODULES if any(_in(m, prefix) for prefix in ALLOWED)]


def test_the_rules_see_the_core_modules():
    for expected in ["xpnet.backend", "xpnet.errors", "xpnet.ops.conv", "xpnet.ops.im2col",
                     "xpnet.layers.conv", "xpnet.layers.base", "xpnet.parameter", "xpnet.initializers"]:
        assert expected in RULED
    assert "xpnet.ops.im2col" in xpnet_imports("xpnet.ops.conv")
    assert "xpnet.ops.pool" in xpnet_imports("xpnet.layers.pool")


@pytest.mark.parametrize("name", RULED)
def test_imports_point_down_the_layering(name):
    prefix = max((p for p in ALLOWED if _in(name, p)), key=len)
    wrong = sorted(m for m in xpnet_imports(name) if not any(_in(m, a) for a in ALLOWED[prefix]))
    assert not wrong, f"{name} imports {wrong}; allowed: {sorted(ALLOWED[prefix])}"


def test_ops_never_import_layers_and_layers_never_import_models_or_training():
    higher = ("xpnet.model", "xpnet.models", "xpnet.training", "xpnet.cli", "xpnet.optim", "xpnet.io",
              "xpnet.data", "xpnet.datasets", "xpnet.callbacks", "xpnet.compare", "xpnet.inputs", "xpnet.model_files",
              "xpnet.interop", "xpnet.distributed")
    for name in RULED:
        for imported in xpnet_imports(name):
            assert not (_in(name, "xpnet.ops") and _in(imported, "xpnet.layers")), (name, imported)
            assert not _in(imported, *higher), (name, imported)
            assert imported != "xpnet", f"{name} imports the xpnet facade (a cycle through __init__)"


def find_cycle(graph):
    """One cycle of a {node: successors} graph as a list of nodes, or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, trail + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        cycle = None if start in state else visit(start, [start])
        if cycle:
            return cycle
    return None


def test_find_cycle_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_between_modules():
    graph = {name: {m for m in xpnet_imports(name) if m in MODULES} for name in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("name", [n for n in MODULES if n != "xpnet.backend"])
def test_only_the_backend_imports_cupy(name):
    cupy = sorted(m for m in imports_of(name, MODULES[name]) if _in(m, "cupy", "cupyx"))
    assert not cupy, f"{name} imports {cupy}"


def test_the_backend_imports_cupy_lazily():
    tree = ast.parse(MODULES["xpnet.backend"].read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert "cupy" in imports_of("xpnet.backend", MODULES["xpnet.backend"])
    assert not any("cupy" in ast.unparse(node) for node in top_level)


FOREIGN = ("scipy", "torch", "tensorflow", "jax", "sklearn", "pandas", "chainer", "keras")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_other_frameworks(name):
    foreign = sorted(m for m in imports_of(name, MODULES[name]) if _in(m, *FOREIGN))
    assert not foreign, f"{name} imports {foreign}"


def code_without_prose(source):
    """The source with comments and docstrings removed (other strings stay: a kernel's code is code)."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.add((first.lineno, first.col_offset))
    kept = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and tok.start in docstrings):
            continue
        kept.append(tok.string)
    return " ".join(kept)


BANNED = {
    "pickle": r"\b(import|from)\s+(c?pickle|dill|cloudpickle|shelve)\b",
    "allow_pickle=True": r"allow_pickle\s*=\s*(True|1|not\b)",
    ".add.at(": r"\.\s*add\s*\.\s*at\s*\(",
    "scatter_add": r"scatter_add",
    "atomicAdd": r"atomicAdd",
}


def violations(source):
    code = code_without_prose(source)
    found = {what for what, pattern in BANNED.items() if re.search(pattern, code)}
    for node in ast.walk(ast.parse(source)):  # the builtins, not methods such as model.eval()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
            found.add(f"{node.func.id}(")
    return sorted(found)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_banned_constructs(name):
    assert violations(MODULES[name].read_text()) == []


@pytest.mark.parametrize("what, snippet", [
    ("pickle", "import pickle\n"),
    ("pickle", "def f():\n    from pickle import loads\n"),
    ("allow_pickle=True", "numpy.load(f, allow_pickle=True)\n"),
    ("eval(", "x = eval('1 + 1')\n"),
    ("exec(", "exec(code)\n"),
    (".add.at(", "xp.add.at(dx, idx, dy)\n"),
    ("scatter_add", "cupyx.scatter_add(a, i, b)\n"),
    ("atomicAdd", "KERNEL = 'extern \"C\" __global__ void k(float* a) { atomicAdd(a, 1.0f); }'\n"),
])
def test_the_banned_construct_check_can_fail(what, snippet):
    assert violations(snippet) == [what]


def test_the_banned_construct_check_ignores_prose_and_methods():
    source = textwrap.dedent('''
        """No pickle here: arrays are read with allow_pickle=False; never xp.add.at(...) or eval(...)."""
        import numpy

        class Model:
            """Calls self.eval() -- scatter_add and atomicAdd are not used."""

            def eval(self):  # not the builtin eval(...); no pickle
                return self.train(False)

        def load(f):
            return numpy.load(f, allow_pickle=False)
        ''')
    assert violations(source) == []


def test_imports_of_sees_function_level_and_dynamic_imports():
    source = "def f():\n    import cupy\n\ndef g():\n    importlib.import_module('cupyx.scipy')\n"
    assert {"cupy", "cupyx.scipy"} <= imports_of("xpnet.fake", Path("xpnet/fake.py"), source)


BLOCKED = ("cupy", "cupyx", "scipy", "torch", "tensorflow", "jax")
SCRIPT = textwrap.dedent('''
    import json, sys, warnings

    def blocked(top):
        if BLOCK_ALL_BUT_NUMPY:
            return top not in sys.stdlib_module_names and top not in ("numpy", "xpnet") and top not in BEFORE
        return top in BLOCKED

    class Block:
        def find_spec(self, name, path=None, target=None):
            if blocked(name.split(".")[0]):
                raise ImportError(f"blocked import of {name}")
            return None

    BEFORE = {m.split(".")[0] for m in sys.modules}
    sys.meta_path.insert(0, Block())
    import numpy
    import xpnet
    conv = xpnet.layers.Conv2d(1, 2, 3, seed=0)
    y = conv(numpy.ones((1, 1, 5, 5), numpy.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = xpnet.get_device("cuda")
    print(json.dumps({
        "shape": list(y.shape), "device": str(device), "warnings": [str(w.message) for w in caught],
        "gpu": xpnet.gpu_available(), "reason": xpnet.gpu_unavailable_reason(),
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    }))
    ''')


@pytest.mark.parametrize("block_all_but_numpy", [False, True], ids=["gpu_and_science_blocked", "only_numpy"])
def test_import_works_when_cupy_scipy_and_torch_cannot_be_imported(block_all_but_numpy):
    script = f"BLOCKED = {BLOCKED!r}\nBLOCK_ALL_BUT_NUMPY = {block_all_but_numpy}\n{SCRIPT}"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"] == [1, 2, 3, 3]
    assert report["loaded"] == []
    assert report["gpu"] is False and "blocked import of cupy" in report["reason"]
    assert report["device"] == "cpu" and len(report["warnings"]) == 1
    assert "blocked import of cupy" in report["warnings"][0]


def test_model_files_and_input_checks_sit_between_the_model_and_training():
    """model <- inputs, model_files <- training <- cli: each concern in its own module, pointing down."""
    assert "xpnet.model" in xpnet_imports("xpnet.model_files") and "xpnet.model" in xpnet_imports("xpnet.inputs")
    assert {"xpnet.inputs", "xpnet.model_files", "xpnet.model"} <= xpnet_imports("xpnet.training")
    for lower in ("xpnet.model", "xpnet.inputs", "xpnet.model_files"):
        assert not {"xpnet.training", "xpnet.cli", "xpnet.compare"} & xpnet_imports(lower), lower
