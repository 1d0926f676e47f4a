"""BatchNorm2d: per-channel normalisation with learned scale and shift."""

from __future__ import annotations

import math
from typing import Any

import numpy

from ..backend import Array
from ..errors import ShapeError
from ..ops.batchnorm import (
    BatchNormCache,
    batch_norm2d_backward,
    batch_norm2d_forward,
    check_batchnorm_input,
    update_running_stats,
)
from ..parameter import Parameter
from .base import Layer, Shape, float_dtype, new_parameter, positive_int


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, numpy.integer, numpy.floating)) and not isinstance(value, bool)


def check_eps(eps: Any, who: str) -> float:
    """``eps`` as a float, or ValueError naming the layer unless it is positive and finite."""
    if not _is_real(eps) or not 0 < eps < math.inf:
        raise ValueError(f"{who}: eps must be positive and finite; received eps={eps!r}")
    return float(eps)


def check_momentum(momentum: Any, who: str) -> float:
    """``momentum`` as a float, or ValueError naming the layer unless it is in [0, 1]."""
    if not _is_real(momentum) or not 0 <= momentum <= 1:
        raise ValueError(f"{who}: momentum must be in [0, 1]; received momentum={momentum!r}")
    return float(momentum)


def record_batch(layer: Any, cache: BatchNormCache, count: int) -> None:
    """Move ``layer``'s running statistics towards a training batch's (``count`` values per channel),
    in place, and count the batch in ``num_batches_tracked``."""
    mean, var = update_running_stats(layer.running_mean.value, layer.running_var.value, cache, count,
                                     layer.momentum)
    layer.running_mean.value[...] = mean
    layer.running_var.value[...] = var
    layer.num_batches_tracked.value[...] += 1


class BatchNorm2d(Layer):
    """Normalise (N, C, H, W) per channel: batch statistics in training, running ones in evaluation.

    Running statistics follow PyTorch: ``r <- (1 - momentum) r + momentum * batch`` with the
    unbiased batch variance.  The scale ``weight`` (gamma) starts at 1 and the shift ``bias``
    (beta) at 0; the buffers are ``running_mean``, ``running_var`` and ``num_batches_tracked``
    (a 0-d int64 counter of training batches), as in ``torch.nn.BatchNorm2d``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 dtype: Any = numpy.float32, name: str | None = None) -> None:
        super().__init__(name)
        self.num_features = positive_int(num_features, "num_features", self.name)
        self.eps, self.momentum = check_eps(eps, self.name), check_momentum(momentum, self.name)
        dtype = float_dtype(dtype, self.name)
        C = self.num_features
        self.weight = new_parameter((C,), dtype, "weight", fill=1.0)
        self.bias = new_parameter((C,), dtype, "bias")
        self.running_mean = new_parameter((C,), dtype, "running_mean", trainable=False)
        self.running_var = new_parameter((C,), dtype, "running_var", fill=1.0, trainable=False)
        self.num_batches_tracked = new_parameter((), numpy.int64, "num_batches_tracked", trainable=False)

    @property
    def gamma(self) -> Parameter:
        """The scale, PyTorch's ``weight``."""
        return self.weight

    @property
    def beta(self) -> Parameter:
        """The shift, PyTorch's ``bias``."""
        return self.bias

    def sample_shape(self) -> tuple[int | None, ...]:
        return (self.num_features, None, None)

    def own_variables(self) -> list[Parameter]:
        return [self.weight, self.bias, self.running_mean, self.running_var, self.num_batches_tracked]

    def reset_parameters(self, rng: numpy.random.Generator | int | None = None) -> None:
        for param, fill in ((self.weight, 1), (self.bias, 0), (self.running_mean, 0), (self.running_var, 1),
                            (self.num_batches_tracked, 0)):
            param.value[...] = fill

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_rank(input_shape, 3, "C, H, W")
        if input_shape[0] != self.num_features:
            raise ShapeError(f"{self.name} expects {self.num_features} channels, got per-sample shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x: Array, train: bool = False) -> Array:
        check_batchnorm_input(x, self.num_features, who=self.name)
        self._check_dtype(x)
        if train and x.shape[0] * x.shape[2] * x.shape[3] < 2:
            raise ShapeError(f"{self.name} needs more than one value per channel in training, "
                             f"got input shape {tuple(x.shape)}")
        y, cache = batch_norm2d_forward(x, self.weight.value, self.bias.value, self.running_mean.value,
                                        self.running_var.value, train=train, eps=self.eps)
        if train:
            record_batch(self, cache, x.shape[0] * x.shape[2] * x.shape[3])
        self._cache = cache
        return y

    def backward(self, dy: Array) -> Array:
        dx, dgamma, dbeta = batch_norm2d_backward(dy, self._cached())
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}
