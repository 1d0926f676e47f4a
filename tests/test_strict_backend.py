"""The strict test backend offers exactly what CuPy 14 offers (tests/cupy_api/cupy-14.json).

An op that reaches for a NumPy-only name must fail here, on the CPU, rather than on the first GPU.
"""

import ast
import importlib.util
from pathlib import Path

import numpy
import pytest

import xpnet
from tests.strict_backend import CUPY_API, MODULE_NAMES, NDARRAY_NAMES, NotInCupyError, StrictArray, strict

PACKAGE = Path(xpnet.__file__).parent


@pytest.fixture
def a():
    return strict.asarray(numpy.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("name", ["nditer", "errstate", "insert", "block", "geomspace", "nanquantile", "vecdot",
                                  "seterr", "memmap"])
def test_numpy_only_module_names_are_refused(name):
    assert hasattr(numpy, name)
    with pytest.raises(AttributeError, match=f"CuPy 14.* has no xp.{name}; an op that uses it would fail on a GPU"):
        getattr(strict, name)


@pytest.mark.parametrize("call, pattern", [
    (lambda a: numpy.insert(a, 0, 1.0), "has no xp.insert"),
    (lambda a: numpy.linalg.multi_dot([a, a.T]), "has no xp.linalg.multi_dot"),
    (lambda a: numpy.spacing(a), "has no xp.spacing"),                        # a ufunc CuPy lacks
    (lambda a: strict.sum(a, where=a > 0), "xp.sum.*unexpected keyword argument 'where'"),
    (lambda a: strict.take_along_axis(a, strict.zeros((2, 1), dtype=numpy.int64)), "missing a required argument"),
    (lambda a: strict.zeros((2,), like=a), "xp.zeros.*'like'"),
])
def test_numpy_functions_cupy_lacks_or_calls_it_refuses_are_refused(a, call, pattern):
    with pytest.raises(TypeError, match=pattern):
        call(a)


@pytest.mark.parametrize("name", ["resize", "ctypes", "setflags", "getfield", "to_device"])
def test_numpy_only_array_attributes_are_refused(a, name):
    assert hasattr(numpy.ones(1), name)
    with pytest.raises(AttributeError, match=f"arrays have no attribute '{name}'"):
        getattr(a, name)


def test_in_place_matmul_is_refused_as_cupy_has_none(a):
    b = strict.asarray(numpy.eye(3))
    with pytest.raises(NotInCupyError, match="__imatmul__"):
        a @= b


def test_what_cupy_has_still_works(a):
    assert strict.pad(a, 1).shape == (4, 5)
    assert float(strict.maximum(a, 2.0).sum()) == 18.0
    assert float(strict.linalg.norm(a)) == pytest.approx(numpy.sqrt(55.0))
    assert numpy.add.reduce(a, axis=0).get().tolist() == [3.0, 5.0, 7.0]
    assert a.reshape(3, 2).T.shape == (2, 3) and a.astype(numpy.float32).dtype == numpy.float32


def test_random_draws_are_device_arrays_with_cupys_names():
    assert isinstance(strict.random.standard_normal((2, 3)), StrictArray)
    generator = strict.random.default_rng(0)
    assert isinstance(generator.random((4,)), StrictArray)
    with pytest.raises(AttributeError, match="has no xp.random.bit_generator"):
        strict.random.bit_generator  # noqa: B018
    with pytest.raises(AttributeError, match="random.Generator has no 'spawn'"):
        generator.spawn  # noqa: B018


def mutant_relu(x):
    """ReLU written with a NumPy-only name: passes on numpy, must fail on the strict backend."""
    xp = xpnet.get_xp(x)
    with xp.errstate(invalid="ignore"):
        return xp.maximum(x, 0)


def test_a_mutant_op_with_a_numpy_only_name_fails_on_the_strict_backend(xp):
    x = xp.asarray(numpy.array([-1.0, 2.0]))
    if xp is strict:
        with pytest.raises(AttributeError, match="no xp.errstate"):
            mutant_relu(x)
    else:
        assert xpnet.to_numpy(mutant_relu(x)).tolist() == [0.0, 2.0]


def _xp_attribute_chains(tree: ast.AST):
    """Every ``xp.a.b`` chain in a module, as ("a", "b") (and its prefixes, as ("a",))."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id == "xp":
                yield tuple(reversed(chain))


def test_every_xp_name_in_the_package_exists_in_cupy():
    """A static check: even code paths no test reaches use only CuPy's names (``xp.cuda`` is CuPy's own)."""
    missing = set()
    for path in PACKAGE.rglob("*.py"):
        for chain in _xp_attribute_chains(ast.parse(path.read_text(encoding="utf-8"))):
            sub = ".".join(chain[:-1]) if chain[0] in ("linalg", "random", "fft") else ""
            name = chain[-1] if sub else chain[0]
            if chain[0] != "cuda" and name not in MODULE_NAMES.get(sub, ()):
                missing.add(f"{path.relative_to(PACKAGE)}: xp.{'.'.join(chain)}")
    assert not missing, sorted(missing)


def test_snapshot_matches_an_installed_cupy():
    """Where CuPy is installed (a GPU machine), the strict backend offers nothing that CuPy lacks."""
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("cupy is not installed")
    import cupy
    if cupy.__version__.split(".")[0] != CUPY_API["cupy_version"].split(".")[0]:
        pytest.skip(f"cupy {cupy.__version__} is not the snapshot's major version")
    assert MODULE_NAMES[""] <= set(dir(cupy)) and NDARRAY_NAMES <= set(dir(cupy.ndarray))
    assert MODULE_NAMES["linalg"] <= set(dir(cupy.linalg)) and MODULE_NAMES["random"] <= set(dir(cupy.random))
