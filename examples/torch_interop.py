"""Move weights between xpnet and PyTorch through state_dict (needs PyTorch; xpnet does not).

    python examples/torch_interop.py

Builds LeNet-5 and a residual block in xpnet and the same networks in ``torch.nn``, trains the
xpnet model briefly, copies its state_dict into torch (``strict=True``), checks that both give
the same outputs, then copies torch's weights back.  The rules that make this work: the same
layer tree (a torch ``Sequential`` numbers its children like xpnet's; a residual block is a
module with ``body`` and ``shortcut`` children), and PyTorch's weight shapes, which xpnet uses.
"""

from __future__ import annotations

import numpy
import torch
from torch import nn

import xpnet
from xpnet import layers as L


class Residual(nn.Module):
    """torch's twin of ``xpnet.layers.Residual``: ``body(x) + shortcut(x)``."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


def xpnet_model() -> xpnet.Sequential:
    block = L.Residual(L.Sequential(L.Conv2d(6, 6, 3, padding=1, bias=False), L.BatchNorm2d(6), L.ReLU(),
                                    L.Conv2d(6, 6, 3, padding=1, bias=False), L.BatchNorm2d(6)))
    return xpnet.Sequential(L.Conv2d(1, 6, 5, padding=2), L.ReLU(), block, L.ReLU(), L.MaxPool2d(2),
                            L.Conv2d(6, 16, 5), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                            L.Linear(400, 120), L.ReLU(), L.Linear(120, 10), seed=0)


def torch_model() -> nn.Sequential:
    block = Residual(nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                                   nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)))
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), block, nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10))


def main() -> None:
    (x, y), (x_test, _) = xpnet.datasets.load_mnist()
    model = xpnet_model().compile(xpnet.optim.Adam(lr=2e-3), "cross_entropy", ["accuracy"])
    model.fit(x[:2048], y[:2048], epochs=1, batch_size=64, verbose=0)

    net = torch_model()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    net.eval()
    with torch.no_grad():
        theirs = net(torch.from_numpy(x_test[:500])).numpy()
    ours = model.predict(x_test[:500])
    difference = float(numpy.abs(theirs - ours).max())
    assert difference < 1e-4, difference
    print(f"xpnet -> torch: outputs agree on 500 test images (max |difference| {difference:.2e}, float32)")

    back = xpnet_model()
    back.load_state_dict(net.state_dict())  # CPU tensors are taken as they are
    assert numpy.array_equal(back.predict(x_test[:500]), ours)
    print("torch -> xpnet: the reloaded model gives bit-identical outputs")


if __name__ == "__main__":
    main()
