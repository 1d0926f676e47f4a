"""ONNX export: a model's layer tree as an ONNX graph (opset 17), built with the ``onnx`` package.

The input is ``["N", C, H, W]`` (a dynamic batch), weights are initializers named by their
state_dict keys ("3.body.0.weight"), and every layer maps to ONNX operators in inference form:

==================  ===========================================================================
xpnet               ONNX
==================  ===========================================================================
Conv2d              Conv with explicit ``pads`` [top, left, bottom, right] (TF "same" resolved
                    for the export's input size, extra pixel at the end), strides, dilations, group
ConvTranspose2d     ConvTranspose with pads [PH, PW, PH, PW], output_padding, strides, dilations,
                    group (the weight keeps PyTorch's (C_in, C_out/group, KH, KW), as ONNX's)
MaxPool2d           MaxPool (padding never wins); MinPool2d: Neg, MaxPool, Neg
AvgPool2d           AveragePool with ``count_include_pad`` written explicitly
GlobalAvgPool2d     GlobalAveragePool (then Flatten unless ``keepdims``)
AdaptiveAvgPool2d   GlobalAveragePool for a 1 x 1 output, else AveragePool with kernel = stride =
                    (H/OH, W/OW) when the export's input size makes the bins uniform; ONNX has
                    no adaptive pooling, so other sizes raise NotImplementedError
Linear              Gemm (transB=1);  Flatten: Flatten(axis=1)
BatchNorm2d         BatchNormalization with the running statistics
BatchNorm1d         BatchNormalization with the running statistics; with track_running_stats=False,
                    batch statistics from ReduceMean (as torch)
LayerNorm           LayerNormalization(axis=-len(normalized_shape)) (a ones scale without weight)
GroupNorm           Reshape (N, G, -1), mean and variance by ReduceMean, Reshape back, Mul/Add per channel
Dropout, Dropout2d  Identity (inference);  Identity: Identity
ReLU, LeakyReLU,    Relu, LeakyRelu, Sigmoid, Tanh, Softmax(axis);
Sigmoid, Tanh,      GELU from Erf (or Tanh for ``approximate="tanh"``), as opset 17 has no Gelu
Softmax, GELU
Upsample            Resize, nearest, asymmetric coordinates, floor (PyTorch's nearest)
Sequential          its children in order;  Residual: Add of body and shortcut;  Concat: Concat
==================  ===========================================================================

The graph is float32 (a float64 model's weights are cast).  A layer without a mapping raises
:class:`NotImplementedError` naming it.  ``onnx`` is an optional extra, imported here only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy

from ..backend import to_numpy
from ..io import atomic_write
from ..layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Concat,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Dropout2d,
    Flatten,
    GlobalAvgPool2d,
    GroupNorm,
    Identity,
    Layer,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool2d,
    MinPool2d,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    Upsample,
)
from ..ops._args import resolve_pads
from ..ops.adaptive_pool import resolve_output_hw, uniform_bins

OPSET = 17
Shape = tuple[int, ...]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "xpnet[onnx]"') from None
    return onnx


class _Graph:
    """Nodes and initializers being built; names are unique (a counter per operator type)."""

    def __init__(self, onnx: Any) -> None:
        self.onnx, self.nodes, self.initializers, self.count = onnx, [], [], {}

    def name(self, base: str) -> str:
        self.count[base] = self.count.get(base, 0) + 1
        return f"{base}_{self.count[base]}"

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attributes))
        return out

    def constant(self, name: str, array: Any) -> str:
        host = numpy.ascontiguousarray(to_numpy(array), dtype=numpy.float32)
        self.initializers.append(self.onnx.numpy_helper.from_array(host, name=name))
        return name


def _conv(g: _Graph, layer: Conv2d, x: str, shape: Shape, path: str) -> str:
    (top, bottom), (left, right) = resolve_pads(layer.padding, shape[1:], layer.kernel_size, layer.stride,
                                                layer.dilation)
    inputs = [x, g.constant(f"{path}weight", layer.weight.value)]
    if layer.bias is not None:
        inputs.append(g.constant(f"{path}bias", layer.bias.value))
    return g.node("Conv", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  dilations=list(layer.dilation), group=layer.groups, pads=[top, left, bottom, right])


def _conv_transpose(g: _Graph, layer: ConvTranspose2d, x: str, path: str) -> str:
    inputs = [x, g.constant(f"{path}weight", layer.weight.value)]  # (C_in, C_out/group, KH, KW) in both
    if layer.bias is not None:
        inputs.append(g.constant(f"{path}bias", layer.bias.value))
    ph, pw = layer.padding
    return g.node("ConvTranspose", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  dilations=list(layer.dilation), group=layer.groups, pads=[ph, pw, ph, pw],
                  output_padding=list(layer.output_padding))


def _adaptive_avg_pool(g: _Graph, layer: AdaptiveAvgPool2d, x: str, shape: Shape) -> str:
    hw = (shape[1], shape[2])
    out_hw = resolve_output_hw(layer.output_size, hw)
    if out_hw == (1, 1):
        return g.node("GlobalAveragePool", [x])
    if not uniform_bins(hw, out_hw):
        raise NotImplementedError(
            f"{layer.name} (AdaptiveAvgPool2d) cannot be exported to ONNX for input H x W {hw[0]}x{hw[1]}: its "
            f"{out_hw[0]}x{out_hw[1]} bins are not uniform (ONNX has no adaptive pooling, and AveragePool needs "
            f"H and W divisible by the output size); export with an input size that is, or use AvgPool2d")
    kernel = [hw[0] // out_hw[0], hw[1] // out_hw[1]]
    return g.node("AveragePool", [x], kernel_shape=kernel, strides=kernel)


def _pool_args(layer: Any) -> dict[str, Any]:
    ph, pw = layer.padding
    return {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride), "pads": [ph, pw, ph, pw]}


def _gelu(g: _Graph, layer: GELU, x: str) -> str:
    half = g.constant(g.name("half"), numpy.float32(0.5))
    one = g.constant(g.name("one"), numpy.float32(1.0))
    if layer.approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [cube, g.constant(g.name("c"), numpy.float32(0.044715))])])
        core = g.node("Tanh", [g.node("Mul", [inner, g.constant(g.name("k"), numpy.float32(math.sqrt(2 / math.pi)))])])
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        core = g.node("Erf", [g.node("Div", [x, g.constant(g.name("sqrt2"), numpy.float32(math.sqrt(2)))])])
    return g.node("Mul", [g.node("Mul", [x, half]), g.node("Add", [core, one])])


def _int64(g: _Graph, values: list[int]) -> str:
    """An int64 initializer (a shape or an axes list)."""
    name = g.name("ints")
    g.initializers.append(g.onnx.numpy_helper.from_array(numpy.array(values, numpy.int64), name=name))
    return name


def _per_channel(g: _Graph, name: str, value: Any, rank: int) -> str:
    """A (C,) variable as the initializer ``name``, unsqueezed to (C, 1, ...) for a (N, C, *) input of ``rank`` axes."""
    c = g.constant(name, value)
    return c if rank <= 2 else g.node("Unsqueeze", [c, _int64(g, list(range(1, rank - 1)))])


def _scale_shift(g: _Graph, layer: Any, y: str, rank: int, path: str) -> str:
    """y * weight + bias per channel, where the layer has them."""
    if layer.weight is None:
        return y
    y = g.node("Mul", [y, _per_channel(g, f"{path}weight", layer.weight.value, rank)])
    return g.node("Add", [y, _per_channel(g, f"{path}bias", layer.bias.value, rank)])


def _standardise(g: _Graph, x: str, axes: list[int], eps: float) -> str:
    """(x - mean) / sqrt(var + eps) over ``axes``, biased variance, two passes (ReduceMean)."""
    centred = g.node("Sub", [x, g.node("ReduceMean", [x], axes=axes, keepdims=1)])
    var = g.node("ReduceMean", [g.node("Mul", [centred, centred])], axes=axes, keepdims=1)
    eps = g.constant(g.name("eps"), numpy.float32(eps))
    return g.node("Div", [centred, g.node("Sqrt", [g.node("Add", [var, eps])])])


def _batch_norm1d(g: _Graph, layer: BatchNorm1d, x: str, shape: Shape, path: str) -> str:
    rank = len(shape) + 1  # (N, C) or (N, C, L)
    if not layer.track_running_stats:  # batch statistics in inference too, as torch
        return _scale_shift(g, layer, _standardise(g, x, [0, 2][:rank - 1], layer.eps), rank, path)
    c = layer.num_features
    if layer.affine:
        affine = [g.constant(f"{path}weight", layer.weight.value), g.constant(f"{path}bias", layer.bias.value)]
    else:
        affine = [g.constant(g.name("ones"), numpy.ones(c)), g.constant(g.name("zeros"), numpy.zeros(c))]
    stats = [g.constant(f"{path}{v}", getattr(layer, v).value) for v in ("running_mean", "running_var")]
    return g.node("BatchNormalization", [x, *affine, *stats], epsilon=layer.eps)


def _layer_norm(g: _Graph, layer: LayerNorm, x: str, path: str) -> str:
    shape = layer.normalized_shape
    scale = (g.constant(f"{path}weight", layer.weight.value) if layer.weight is not None
             else g.constant(g.name("ones"), numpy.ones(shape)))
    bias = [g.constant(f"{path}bias", layer.bias.value)] if layer.bias is not None else []
    return g.node("LayerNormalization", [x, scale, *bias], axis=-len(shape), epsilon=layer.eps)


def _group_norm(g: _Graph, layer: GroupNorm, x: str, shape: Shape, path: str) -> str:
    grouped = g.node("Reshape", [x, _int64(g, [0, layer.num_groups, -1])])  # (N, C, *) -> (N, G, C / G * prod(*))
    normed = _standardise(g, grouped, [2], layer.eps)
    back = g.node("Reshape", [normed, _int64(g, [0, *shape])])  # (N, G, C / G * prod(*)) -> (N, C, *)
    return _scale_shift(g, layer, back, len(shape) + 1, path)


def _leaf(g: _Graph, layer: Layer, x: str, shape: Shape, path: str) -> str:
    """The ONNX nodes of one leaf layer; returns the output's name."""
    simple: dict[type, Callable[[], str]] = {
        ReLU: lambda: g.node("Relu", [x]), Sigmoid: lambda: g.node("Sigmoid", [x]), Tanh: lambda: g.node("Tanh", [x]),
        Flatten: lambda: g.node("Flatten", [x], axis=1), Dropout: lambda: g.node("Identity", [x]),
        Dropout2d: lambda: g.node("Identity", [x]), Identity: lambda: g.node("Identity", [x]),
    }
    if type(layer) in simple:
        return simple[type(layer)]()
    if isinstance(layer, Conv2d):
        return _conv(g, layer, x, shape, path)
    if isinstance(layer, ConvTranspose2d):
        return _conv_transpose(g, layer, x, path)
    if isinstance(layer, AdaptiveAvgPool2d):
        return _adaptive_avg_pool(g, layer, x, shape)
    if isinstance(layer, Linear):
        inputs = [x, g.constant(f"{path}weight", layer.weight.value)]
        inputs += [g.constant(f"{path}bias", layer.bias.value)] if layer.bias is not None else []
        return g.node("Gemm", inputs, transB=1)
    if isinstance(layer, BatchNorm1d):
        return _batch_norm1d(g, layer, x, shape, path)
    if isinstance(layer, LayerNorm):
        return _layer_norm(g, layer, x, path)
    if isinstance(layer, GroupNorm):
        return _group_norm(g, layer, x, shape, path)
    if isinstance(layer, BatchNorm2d):
        names = [g.constant(f"{path}{v}", getattr(layer, v).value)
                 for v in ("weight", "bias", "running_mean", "running_var")]
        return g.node("BatchNormalization", [x, *names], epsilon=layer.eps)
    if isinstance(layer, MinPool2d):
        return g.node("Neg", [g.node("MaxPool", [g.node("Neg", [x])], **_pool_args(layer))])
    if isinstance(layer, MaxPool2d):
        return g.node("MaxPool", [x], **_pool_args(layer))
    if isinstance(layer, AvgPool2d):
        return g.node("AveragePool", [x], **_pool_args(layer), count_include_pad=int(layer.count_include_pad))
    if isinstance(layer, GlobalAvgPool2d):
        pooled = g.node("GlobalAveragePool", [x])
        return pooled if layer.keepdims else g.node("Flatten", [pooled], axis=1)
    if isinstance(layer, LeakyReLU):
        return g.node("LeakyRelu", [x], alpha=float(layer.negative_slope))
    if isinstance(layer, Softmax):
        return g.node("Softmax", [x], axis=layer.axis)
    if isinstance(layer, GELU):
        return _gelu(g, layer, x)
    if isinstance(layer, Upsample):
        scales = g.constant(g.name("scales"), numpy.array([1, 1, *layer.scale_factor], numpy.float32))
        return g.node("Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                      nearest_mode="floor")
    raise NotImplementedError(f"{layer.name} ({type(layer).__name__}) cannot be exported to ONNX: no mapping "
                              "is written for this layer")


def _emit(g: _Graph, layer: Layer, x: str, shape: Shape, path: str) -> str:
    """The nodes of ``layer`` and its subtree on input ``x`` of per-sample ``shape``."""
    if isinstance(layer, Sequential):
        for name, child in layer.children():
            x, shape = _emit(g, child, x, shape, f"{path}{name}."), child.output_shape(shape)
        return x
    if isinstance(layer, Residual):
        body = _emit(g, layer.body, x, shape, f"{path}body.")
        short = x if layer.shortcut is None else _emit(g, layer.shortcut, x, shape, f"{path}shortcut.")
        return g.node("Add", [body, short])
    if isinstance(layer, Concat):
        outs = [_emit(g, child, x, shape, f"{path}{name}.") for name, child in layer.children()]
        return g.node("Concat", outs, axis=layer.axis)
    return _leaf(g, layer, x, shape, path)


def export_onnx(model: Any, path: str | Path, input_shape: Shape) -> None:
    """Write ``model`` (an ``xpnet.Sequential``) to ``path`` as ONNX, for per-sample ``input_shape``."""
    onnx = _onnx()
    input_shape = tuple(int(s) for s in input_shape)
    out_shape = model.check_input_shape(input_shape)  # ShapeError before anything is built
    g = _Graph(onnx)
    output = _emit(g, model.root, "input", input_shape, "")
    g.nodes.append(onnx.helper.make_node("Identity", [output], ["output"], name="output"))
    float32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, "xpnet", [onnx.helper.make_tensor_value_info("input", float32, ["N", *input_shape])],
        [onnx.helper.make_tensor_value_info("output", float32, ["N", *out_shape])], g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="xpnet")
    onnx.checker.check_model(proto)
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))
