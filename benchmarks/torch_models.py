"""The same network in torch.nn, built from an xpnet layer tree (benchmarks only; needs PyTorch).

``to_torch(model, torch)`` mirrors each xpnet layer with its torch.nn counterpart, so the
state_dict names match and ``net.load_state_dict(model.state_dict())`` gives both the same weights.
"""

from __future__ import annotations

from typing import Any

from xpnet import layers as L


def _module(layer: L.Layer, torch: Any) -> Any:
    nn = torch.nn
    if isinstance(layer, L.Sequential):
        return nn.Sequential(*(_module(child, torch) for child in layer))
    if isinstance(layer, L.Residual):
        return _residual(torch)(_module(layer.body, torch), None if layer.shortcut is None
                                else _module(layer.shortcut, torch))
    if isinstance(layer, L.BatchNorm1d):
        return nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
                              track_running_stats=layer.track_running_stats)
    if isinstance(layer, L.LayerNorm):
        return nn.LayerNorm(layer.normalized_shape, eps=layer.eps, elementwise_affine=layer.elementwise_affine,
                            bias=layer.bias is not None)
    if isinstance(layer, L.GroupNorm):
        return nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps, affine=layer.affine)
    if isinstance(layer, L.Conv2d):
        if isinstance(layer.padding, str) or (isinstance(layer.padding, tuple) and len(layer.padding) != 2):
            raise NotImplementedError(f"{layer.name}: padding {layer.padding!r} is not mirrored here")
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                         bias=layer.bias is not None)
    if isinstance(layer, L.ConvTranspose2d):
        return nn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                                  padding=layer.padding, output_padding=layer.output_padding, groups=layer.groups,
                                  bias=layer.bias is not None, dilation=layer.dilation)
    if isinstance(layer, L.BatchNorm2d):
        return nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, L.Linear):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    simple = {L.ReLU: nn.ReLU, L.Flatten: nn.Flatten, L.Tanh: nn.Tanh, L.Sigmoid: nn.Sigmoid,
              L.GlobalAvgPool2d: lambda: nn.AdaptiveAvgPool2d(1), L.Identity: nn.Identity}
    if type(layer) in simple:
        return simple[type(layer)]()
    if isinstance(layer, L.MaxPool2d):
        return nn.MaxPool2d(layer.kernel_size, layer.stride)
    if isinstance(layer, L.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool2d(layer.output_size)
    if isinstance(layer, L.Dropout2d):  # before Dropout, its base class
        return nn.Dropout2d(layer.p)
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.p)
    raise NotImplementedError(f"no torch.nn counterpart written for {type(layer).__name__}")


def _residual(torch: Any) -> type:
    class Residual(torch.nn.Module):
        """``body(x) + shortcut(x)``, children named as in xpnet's Residual."""

        def __init__(self, body: Any, shortcut: Any) -> None:
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x: Any) -> Any:
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))
    return Residual


def to_torch(model: Any, torch: Any) -> Any:
    """A torch.nn.Sequential mirroring ``model``'s tree, holding the same weights."""
    net = torch.nn.Sequential(*(_module(layer, torch) for layer in model.layers))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    return net
