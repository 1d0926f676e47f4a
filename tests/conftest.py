"""The ``xp`` fixture: every test that takes it runs once per available backend.

numpy always; the strict device-like backend (tests/strict_backend.py) always; cupy when
``xpnet.gpu_available()``.  Tests build inputs on the host with numpy, move them with
``xp.asarray`` and bring results back with ``xpnet.to_numpy``.

``XPNET_REQUIRE_GPU=1 pytest`` fails at once, naming the reason, when no GPU is usable, instead
of skipping every cupy test (the GPU acceptance run, ``python -m benchmarks.gpu_acceptance``,
sets it).
"""

from __future__ import annotations

import importlib
import os

import numpy
import pytest

import xpnet
from tests.optional import settings
from tests.strict_backend import STRICT_DEVICE, strict

settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("XPNET_REQUIRE_GPU", "0") not in ("", "0") and not xpnet.gpu_available():
        raise pytest.UsageError(f"XPNET_REQUIRE_GPU is set but no GPU is usable: {xpnet.gpu_unavailable_reason()}")


def _cupy():
    import cupy  # only reached when a GPU is usable
    return cupy


BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("strict", id="strict"),
    pytest.param("cupy", id="cupy", marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not xpnet.gpu_available(),
                           reason=f"no usable GPU: {xpnet.gpu_unavailable_reason()}"),
    ]),
]


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test: numpy, the strict test backend, or cupy."""
    if request.param == "numpy":
        return numpy
    if request.param == "strict":
        return strict
    return _cupy()


@pytest.fixture
def device(xp):
    """The xpnet device matching ``xp`` (for moving layers: layer.apply(to(device)))."""
    if xp is numpy:
        return xpnet.get_device("cpu")
    if xp is strict:
        return STRICT_DEVICE
    return xpnet.get_device("cuda", strict=True)


@pytest.fixture
def rng():
    """A fresh seeded host generator per test."""
    return numpy.random.default_rng(1234)


@pytest.fixture(autouse=True, scope="session")
def _no_tf32():
    """Correctness tests run without TF32 (docs/reliability.md B.5)."""
    assert os.environ.get("CUPY_TF32", "0") == "0", "unset CUPY_TF32 for the test suite"


@pytest.fixture(params=["batch-last", "grid"])
def dx_layout(request, monkeypatch):
    """Run a convolution test with each route to the input gradient: col2im over the
    batch-last columns, or (for stride 1) col2im_grid over the padded grid."""
    from xpnet.ops import conv
    on_grid = request.param == "grid"
    monkeypatch.setattr(conv, "input_grad_on_grid", lambda cache, *_: on_grid and cache.stride == (1, 1))
    return request.param


@pytest.fixture(params=["one-pass", "two-pass"])
def im2col_passes(request, monkeypatch):
    """Run an im2col/col2im test down each code path: tap by tap, or columns then rows."""
    module = importlib.import_module("xpnet.ops.im2col")  # the name xpnet.ops.im2col is the function
    monkeypatch.setattr(module, "ROW_PASS_BYTES", 0 if request.param == "one-pass" else 2**62)
    return request.param
