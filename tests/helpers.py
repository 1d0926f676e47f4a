"""Shared test helpers: moving data between host and backend, gradient checks, comparisons."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy

import xpnet
from xpnet.layers import Layer

# Tolerances (docs/reliability.md §0/§B): float32 forward vs a float64 reference, and float64.
TOL = {numpy.dtype(numpy.float32): dict(rtol=1e-4, atol=1e-5),
       numpy.dtype(numpy.float64): dict(rtol=1e-7, atol=1e-9)}


def host(a: Any) -> numpy.ndarray | None:
    """Bring a backend array to the host (None passes through)."""
    return None if a is None else xpnet.to_numpy(a)


def assert_close(actual: Any, expected: Any, rtol: float = 1e-7, atol: float = 0.0, what: str = "") -> None:
    """assert_allclose on host copies, requiring equal shapes."""
    actual, expected = host(actual), numpy.asarray(host(expected))
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    numpy.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def assert_blas_close(actual: Any, expected: Any, reduction_length: int, what: str = "") -> None:
    """assert_close for results whose BLAS calls differ in shape, chunking, batch split or thread count.

    BLAS picks its kernel and blocking by CPU, shape and thread count, so such results agree
    only to rounding: a sum of K products is off by at most about K * eps of its magnitude.
    Tolerance: rtol = 4 * eps * K and atol = that times max|expected|, with eps of the coarser
    dtype.  For a chain of products (a network), pass the sum of their reduction lengths.
    """
    actual, expected = host(actual), numpy.asarray(host(expected))
    eps = max(numpy.finfo(actual.dtype).eps, numpy.finfo(expected.dtype).eps)
    tol = 4 * float(eps) * max(int(reduction_length), 1)
    scale = float(numpy.max(numpy.abs(expected), initial=0.0))
    assert_close(actual, expected, rtol=tol, atol=tol * scale, what=what)


def to_layer_backend(layer: Layer, xp: Any, dtype: Any = numpy.float64) -> Layer:
    """Cast a layer's arrays to ``dtype`` and put them on ``xp``'s device (returns the layer)."""
    return layer.apply(lambda a: xp.asarray(xpnet.to_numpy(a).astype(dtype)))


def _loss(forward: Callable, xp: Any, inputs: Sequence[numpy.ndarray], dy: numpy.ndarray) -> float:
    y = forward(*[xp.asarray(a) for a in inputs])
    return float(numpy.sum(host(y) * dy))


def gradcheck(xp: Any, forward: Callable, backward: Callable, inputs: Sequence[numpy.ndarray],
              wrt: Sequence[int] | None = None, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, max_full: int = 400, directions: int = 3, seed: int = 0) -> None:
    """Central-difference gradient check in float64.

    ``forward(*arrays) -> y`` and ``backward(dy, *arrays) -> sequence of gradients`` (one
    per input; None for inputs without one).  The scalar checked is ``sum(y * dy)`` for a
    random ``dy``.  Inputs with at most ``max_full`` elements get a full elementwise check;
    larger ones are checked along ``directions`` random directions (Chainer's mode).
    Also asserts that neither pass modifies its inputs.
    """
    inputs = [numpy.asarray(a) for a in inputs]
    for i, a in enumerate(inputs):
        if a.dtype != numpy.float64:
            raise TypeError(f"gradcheck needs float64 inputs; got {a.dtype} for input #{i}")
    originals = [a.copy() for a in inputs]
    gen = numpy.random.default_rng(seed)
    device_inputs = [xp.asarray(a) for a in inputs]
    y = host(forward(*device_inputs))
    dy = gen.standard_normal(y.shape)
    grads = [host(g) for g in backward(xp.asarray(dy), *device_inputs)]
    for i, (a, d) in enumerate(zip(originals, device_inputs)):
        numpy.testing.assert_array_equal(host(d), a, err_msg=f"input #{i} was modified by forward/backward")
    for i in (range(len(inputs)) if wrt is None else wrt):
        analytic = grads[i]
        assert analytic is not None, f"no gradient returned for input #{i}"
        assert analytic.shape == inputs[i].shape, f"gradient #{i} shape {analytic.shape} != {inputs[i].shape}"

        def loss_at(delta: numpy.ndarray, i: int = i) -> float:
            shifted = list(inputs)
            shifted[i] = inputs[i] + delta
            return _loss(forward, xp, shifted, dy)

        if inputs[i].size <= max_full:
            numeric = numpy.zeros_like(inputs[i])
            for k in range(inputs[i].size):
                delta = numpy.zeros_like(inputs[i])
                delta.flat[k] = eps
                numeric.flat[k] = (loss_at(delta) - loss_at(-delta)) / (2 * eps)
            numpy.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol,
                                          err_msg=f"gradient mismatch for input #{i}")
        else:
            for _ in range(directions):
                direction = gen.standard_normal(inputs[i].shape)
                direction /= numpy.linalg.norm(direction)
                numeric = (loss_at(eps * direction) - loss_at(-eps * direction)) / (2 * eps)
                numpy.testing.assert_allclose(numpy.sum(analytic * direction), numeric, rtol=rtol, atol=atol,
                                              err_msg=f"directional gradient mismatch for input #{i}")


def layer_gradcheck(xp: Any, layer: Layer, x: numpy.ndarray, train: bool = True, **kwargs: Any) -> None:
    """gradcheck of a layer with respect to its input and every trainable parameter (float64)."""
    to_layer_backend(layer, xp, numpy.float64)
    params = layer.parameters()
    host_params = [host(p.value).astype(numpy.float64) for p in params]

    def set_params(values: Sequence[Any]) -> None:
        for p, v in zip(params, values):
            p.value = v

    def forward(x_dev: Any, *values: Any) -> Any:
        set_params(values)
        return layer.forward(x_dev, train=train)

    def backward(dy: Any, x_dev: Any, *values: Any) -> list:
        set_params(values)
        layer.forward(x_dev, train=train)
        layer.zero_grad()
        dx = layer.backward(dy)
        return [dx] + [p.grad for p in params]

    gradcheck(xp, forward, backward, [numpy.asarray(x, dtype=numpy.float64)] + host_params, **kwargs)
