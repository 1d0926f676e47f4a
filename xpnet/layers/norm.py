r"""BatchNorm1d, LayerNorm and GroupNorm: the normalisation layers besides BatchNorm2d.

Each follows its ``torch.nn`` namesake: the same arguments, parameter and buffer names, shapes,
dtypes and initial values (weight 1, bias 0, running mean 0, running variance 1), so a
state_dict moves between the two unchanged.  ``dtype`` (float32 or float64) and ``name`` are
xpnet's, as for every layer.

===========  ===================  =========================================  ====================
layer        input                statistics over                            weight, bias
===========  ===================  =========================================  ====================
BatchNorm1d  (N, C) or (N, C, L)  N (and L) values per channel in training;  (C,)
                                  the running ones in evaluation
LayerNorm    (N, *, *S)           the last len(S) axes, per sample and       S = normalized_shape
                                  position of *
GroupNorm    (N, C, *)            C / G channels and *, per sample and       (C,)
                                  group, in training and evaluation alike
===========  ===================  =========================================  ====================

All three preserve the input's shape and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy

from ..backend import Array, get_xp
from ..errors import ShapeError
from ..ops._args import check_float
from ..ops.batchnorm import batch_norm2d_backward, batch_norm2d_forward
from ..ops.norm import (
    as_normalized_shape,
    check_group_norm_input,
    check_layer_norm_input,
    group_norm_backward,
    group_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from ..parameter import Parameter
from .base import Layer, Shape, float_dtype, new_parameter, positive_int
from .batchnorm import check_eps, check_momentum, record_batch


def _flag(value: Any, name: str, who: str) -> bool:
    """``value`` as a bool, or TypeError naming the layer and argument unless it is one."""
    if not isinstance(value, (bool, numpy.bool_)):
        raise TypeError(f"{who}: {name} must be True or False; received {name}={value!r}")
    return bool(value)


def _reset(*pairs: tuple[Parameter | None, float]) -> None:
    """Fill each present variable with its initial value, in place."""
    for param, fill in pairs:
        if param is not None:
            param.value[...] = fill


class BatchNorm1d(Layer):
    r"""Normalise (N, C) or (N, C, L) per channel: batch statistics in training, running ones in evaluation.

    With M = N (or N * L) values per channel:  mu = mean(x),  var = mean((x - mu)^2) (biased),
    y = weight * (x - mu) / sqrt(var + eps) + bias;  after a training batch
    ``r <- (1 - momentum) r + momentum * batch``, with the unbiased variance var * M / (M - 1).
    Computed by the BatchNorm2d op on a view of x: (N, C) as (N, C, 1, 1), (N, C, L) as (N, C, L, 1).

    As ``torch.nn.BatchNorm1d``: parameters ``weight`` (gamma, 1s) and ``bias`` (beta, 0s), of
    shape (C,), unless ``affine=False``; buffers ``running_mean`` (0s), ``running_var`` (1s) and
    ``num_batches_tracked`` (a 0-d int64) unless ``track_running_stats=False``, in which case the
    batch statistics are used in evaluation too.  ``momentum=None`` (torch's cumulative average)
    is not offered, as in BatchNorm2d.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype: Any = numpy.float32, name: str | None = None) -> None:
        super().__init__(name)
        self.num_features = positive_int(num_features, "num_features", self.name)
        self.eps, self.momentum = check_eps(eps, self.name), check_momentum(momentum, self.name)
        self.affine = _flag(affine, "affine", self.name)
        self.track_running_stats = _flag(track_running_stats, "track_running_stats", self.name)
        dtype = float_dtype(dtype, self.name)
        C = self.num_features
        self.weight = new_parameter((C,), dtype, "weight", fill=1.0) if self.affine else None
        self.bias = new_parameter((C,), dtype, "bias") if self.affine else None
        self.running_mean = self.running_var = self.num_batches_tracked = None
        if self.track_running_stats:
            self.running_mean = new_parameter((C,), dtype, "running_mean", trainable=False)
            self.running_var = new_parameter((C,), dtype, "running_var", fill=1.0, trainable=False)
            self.num_batches_tracked = new_parameter((), numpy.int64, "num_batches_tracked", trainable=False)

    @property
    def gamma(self) -> Parameter | None:
        """The scale, PyTorch's ``weight``."""
        return self.weight

    @property
    def beta(self) -> Parameter | None:
        """The shift, PyTorch's ``bias``."""
        return self.bias

    def sample_shape(self) -> None:
        # (C,) and (C, L) both fit and the output has the input's shape, so, as for an
        # activation, the next layer that constrains the shape tells the model's sample shape
        return None

    def own_variables(self) -> list[Parameter]:
        return [v for v in (self.weight, self.bias, self.running_mean, self.running_var, self.num_batches_tracked)
                if v is not None]

    def reset_parameters(self, rng: numpy.random.Generator | int | None = None) -> None:
        _reset((self.weight, 1), (self.bias, 0), (self.running_mean, 0), (self.running_var, 1),
               (self.num_batches_tracked, 0))

    def _expected(self) -> str:
        return f"(N, {self.num_features}) or (N, {self.num_features}, L)"

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) not in (1, 2) or input_shape[0] != self.num_features:
            raise ShapeError(f"{self.name} expects input {self._expected()}, got per-sample shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x: Array, train: bool = False) -> Array:
        check_float(x, f"{self.name} input")
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ShapeError(f"{self.name} expects input {self._expected()}, got shape {tuple(x.shape)}")
        self._check_dtype(x)
        batch_stats = train or not self.track_running_stats
        count = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1)  # values per channel
        if batch_stats and count < 2:
            raise ShapeError(f"{self.name} needs more than one value per channel when it uses batch statistics, "
                             f"got input shape {tuple(x.shape)}")
        x4 = x.reshape(*x.shape, *(1,) * (4 - x.ndim))  # (N, C) -> (N, C, 1, 1); (N, C, L) -> (N, C, L, 1)
        y4, cache = batch_norm2d_forward(x4, *self._op_arrays(x), train=batch_stats, eps=self.eps)
        if train and self.track_running_stats:
            record_batch(self, cache, count)
        self._cache = cache
        return y4.reshape(x.shape)  # (N, C, L or 1, 1) -> (N, C[, L])

    def _op_arrays(self, x: Array) -> list[Array]:
        """gamma, beta, running mean and variance for the op: constants where the layer has none."""
        xp = get_xp(x)

        def constant(fill: float) -> Array:
            return xp.full(self.num_features, fill, dtype=x.dtype)

        affine = [self.weight.value, self.bias.value] if self.affine else [constant(1.0), constant(0.0)]
        # without running statistics the op normalises with the batch's; these only fill its arguments
        tracked = self.track_running_stats
        stats = [self.running_mean.value, self.running_var.value] if tracked else [constant(0.0), constant(1.0)]
        return affine + stats

    def backward(self, dy: Array) -> Array:
        cache = self._cached()
        dx, dgamma, dbeta = batch_norm2d_backward(dy.reshape(cache.centered.shape), cache)  # (N, C[, L]) -> 4-D
        if self.affine:
            self.weight.grad += dgamma
            self.bias.grad += dbeta
        return dx.reshape(dy.shape)  # 4-D -> (N, C[, L])

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}


class LayerNorm(Layer):
    r"""Normalise each sample over its last ``len(normalized_shape)`` axes; the same in training and evaluation.

    x: (N, *, *S) with S = normalized_shape (an int means (int,)); per sample and position of *,
    over the D = prod(S) values of S:  y = weight * (x - mean) / sqrt(var + eps) + bias, with the
    biased variance.  As ``torch.nn.LayerNorm``: ``weight`` (1s) and ``bias`` (0s) of shape S,
    none with ``elementwise_affine=False``, no bias with ``bias=False``; no buffers.  Unlike torch,
    the input has a batch axis N, as for every xpnet layer.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype: Any = numpy.float32, name: str | None = None) -> None:
        super().__init__(name)
        self.normalized_shape = as_normalized_shape(normalized_shape, self.name)
        self.eps = check_eps(eps, self.name)
        self.elementwise_affine = _flag(elementwise_affine, "elementwise_affine", self.name)
        with_bias = _flag(bias, "bias", self.name)
        dtype = float_dtype(dtype, self.name)
        S = self.normalized_shape
        self.weight = new_parameter(S, dtype, "weight", fill=1.0) if self.elementwise_affine else None
        self.bias = new_parameter(S, dtype, "bias") if self.elementwise_affine and with_bias else None

    def sample_shape(self) -> tuple[int, ...]:
        return self.normalized_shape  # the smallest sample it takes; leading axes (*) may come before

    def own_variables(self) -> list[Parameter]:
        return [v for v in (self.weight, self.bias) if v is not None]

    def reset_parameters(self, rng: numpy.random.Generator | int | None = None) -> None:
        _reset((self.weight, 1), (self.bias, 0))

    def output_shape(self, input_shape: Shape) -> Shape:
        k = len(self.normalized_shape)
        if len(input_shape) < k or tuple(input_shape[len(input_shape) - k:]) != self.normalized_shape:
            dims = ", ".join(map(str, self.normalized_shape))
            raise ShapeError(f"{self.name} expects input (N, *, {dims}), got per-sample shape {tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x: Array, train: bool = False) -> Array:
        check_layer_norm_input(x, self.normalized_shape, who=self.name, batched=True)
        self._check_dtype(x)
        weight, bias = (None if p is None else p.value for p in (self.weight, self.bias))
        y, self._cache = layer_norm_forward(x, self.normalized_shape, weight, bias, eps=self.eps)
        return y

    def backward(self, dy: Array) -> Array:
        dx, dweight, dbias = layer_norm_backward(dy, self._cached())
        if self.weight is not None:
            self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias
        return dx

    def config(self) -> dict[str, Any]:
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.bias is not None}


class GroupNorm(Layer):
    r"""Normalise each group of ``num_channels / num_groups`` channels of each sample; the same in
    training and evaluation.

    x: (N, C, *) with C = num_channels, channels split into G = num_groups groups of C / G
    consecutive channels; per sample and group, over its C / G * prod(*) values:
    xhat = (x - mean) / sqrt(var + eps) (biased variance), then y = weight[c] * xhat + bias[c] per
    channel c.  As ``torch.nn.GroupNorm``: ``weight`` (1s) and ``bias`` (0s) of shape (C,), none
    with ``affine=False``; no buffers.  G = 1 is a layer norm over (C, *), G = C an instance norm.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype: Any = numpy.float32, name: str | None = None) -> None:
        super().__init__(name)
        self.num_groups = positive_int(num_groups, "num_groups", self.name)
        self.num_channels = positive_int(num_channels, "num_channels", self.name)
        if self.num_channels % self.num_groups:
            raise ValueError(f"{self.name}: num_channels must be divisible by num_groups; received "
                             f"num_channels={self.num_channels}, num_groups={self.num_groups}")
        self.eps = check_eps(eps, self.name)
        self.affine = _flag(affine, "affine", self.name)
        dtype = float_dtype(dtype, self.name)
        C = self.num_channels
        self.weight = new_parameter((C,), dtype, "weight", fill=1.0) if self.affine else None
        self.bias = new_parameter((C,), dtype, "bias") if self.affine else None

    def sample_shape(self) -> None:
        # (C, *) of any rank fits and the output has the input's shape, so, as for an activation,
        # the next layer that constrains the shape tells the model's sample shape
        return None

    def own_variables(self) -> list[Parameter]:
        return [v for v in (self.weight, self.bias) if v is not None]

    def reset_parameters(self, rng: numpy.random.Generator | int | None = None) -> None:
        _reset((self.weight, 1), (self.bias, 0))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1 or input_shape[0] != self.num_channels:
            raise ShapeError(f"{self.name} expects input (N, {self.num_channels}, *), got per-sample shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x: Array, train: bool = False) -> Array:
        check_group_norm_input(x, self.num_groups, self.num_channels, who=self.name)
        self._check_dtype(x)
        weight, bias = (None, None) if not self.affine else (self.weight.value, self.bias.value)
        y, self._cache = group_norm_forward(x, self.num_groups, weight, bias, eps=self.eps)
        return y

    def backward(self, dy: Array) -> Array:
        dx, dweight, dbias = group_norm_backward(dy, self._cached())
        if self.affine:
            self.weight.grad += dweight
            self.bias.grad += dbias
        return dx

    def config(self) -> dict[str, Any]:
        return {"num_groups": self.num_groups, "num_channels": self.num_channels, "eps": self.eps,
                "affine": self.affine}
