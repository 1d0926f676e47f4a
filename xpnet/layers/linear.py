"""Linear (Dense): y = x @ weight.T + bias, weight of shape (out_features, in_features)."""

from __future__ import annotations

from typing import Any

import numpy

from ..backend import Array
from ..errors import ShapeError
from ..initializers import get_initializer
from ..ops.linear import check_linear_input, linear_backward, linear_forward
from ..parameter import Parameter
from .base import Layer, Shape, as_rng, draw_into, float_dtype, new_parameter, positive_int


class Linear(Layer):
    """Fully connected layer: (N, in_features) -> (N, out_features).

    Weights default to Kaiming-uniform (suited to ReLU), biases to zeros.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_init: str = "kaiming_uniform", bias_init: str = "zeros",
                 dtype: Any = numpy.float32, seed: numpy.random.Generator | int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.in_features = positive_int(in_features, "in_features", self.name)
        self.out_features = positive_int(out_features, "out_features", self.name)
        self.weight_init, self.bias_init = get_initializer(weight_init), get_initializer(bias_init)
        dtype = float_dtype(dtype, self.name)
        shape = (self.out_features, self.in_features)
        self.weight = new_parameter(shape, dtype, "weight")
        self.bias = new_parameter((self.out_features,), dtype, "bias") if bias else None
        self.reset_parameters(seed)

    def sample_shape(self) -> tuple[int | None, ...]:
        return (self.in_features,)

    def own_variables(self) -> list[Parameter]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def reset_parameters(self, rng: numpy.random.Generator | int | None = None) -> None:
        rng = as_rng(rng)
        draw_into(self.weight, self.weight_init, rng)
        if self.bias is not None:
            draw_into(self.bias, self.bias_init, rng)

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != (self.in_features,):
            raise ShapeError(f"{self.name} expects input of shape (N, {self.in_features}), "
                             f"got per-sample shape {tuple(input_shape)}")
        return (self.out_features,)

    def forward(self, x: Array, train: bool = False) -> Array:
        check_linear_input(x, self.in_features, who=self.name)
        self._check_dtype(x)
        bias = self.bias.value if self.bias is not None else None
        y, self._cache = linear_forward(x, self.weight.value, bias)
        return y

    def backward(self, dy: Array) -> Array | None:
        dx, dweight, dbias = linear_backward(dy, self._cached(), self.need_input_grad)
        self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias
        return dx

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}
