"""The benchmark cases: for each, an xpnet contender and the equivalent PyTorch contender.

Every builder returns the contenders plus the amount of work one call does; the suite times
them with :func:`benchmarks.timing.alternate`.  Inputs are drawn on the host from one seeded
generator and copied to each library once, outside the timed region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy

import xpnet
from xpnet import ops
from xpnet.parameter import Parameter

from .timing import SETTLE, Contender, alternate
from .torch_models import to_torch

LR = 0.01  # plain SGD (no momentum) on both sides


@dataclass(frozen=True)
class ConvCase:
    """One convolution: input (N, C_in, H, W), C_out filters of k x k, stride, padding."""

    label: str
    n: int
    c_in: int
    c_out: int
    size: int
    k: int
    stride: int = 1
    padding: int = 0

    @property
    def out_size(self) -> int:
        return (self.size + 2 * self.padding - self.k) // self.stride + 1

    def gemm_flop(self) -> int:
        """2 * N * C_out * C_in * KH * KW * OH * OW: the multiply-adds of one of its three GEMMs."""
        return 2 * self.n * self.c_out * self.c_in * self.k * self.k * self.out_size ** 2

    def describe(self) -> str:
        text = f"N={self.n}, {self.c_in}->{self.c_out}, {self.size}x{self.size}, k{self.k}"
        return text + (f" s{self.stride}" if self.stride != 1 else "") + (f" p{self.padding}" if self.padding else "")


CONV_CASES = (
    ConvCase("a", 128, 1, 6, 28, 5, padding=2),
    ConvCase("b", 32, 64, 64, 32, 3, padding=1),
    ConvCase("c", 8, 3, 64, 224, 7, stride=2, padding=3),
)


@dataclass
class Target:
    """Where both libraries compute: xpnet's device and PyTorch's, with their sync functions."""

    name: str  # "cpu" or "cuda[:N]"
    xpnet_device: xpnet.Device
    torch: Any | None
    torch_device: Any | None = None

    @classmethod
    def create(cls, name: str, torch: Any | None) -> Target:
        device = xpnet.get_device(name, strict=True)
        torch_device = None if torch is None else torch.device(str(device))
        return cls(str(device), device, torch, torch_device)

    @property
    def is_gpu(self) -> bool:
        return self.xpnet_device.type != "cpu"

    def xpnet_sync(self) -> None:
        if self.is_gpu:
            self.xpnet_device.xp.cuda.Device(self.xpnet_device.index).synchronize()

    def torch_sync(self) -> None:
        if self.is_gpu:
            self.torch.cuda.synchronize(self.torch_device)

    def xpnet_array(self, host: numpy.ndarray) -> Any:
        return self.xpnet_device.asarray(host)

    def torch_tensor(self, host: numpy.ndarray, requires_grad: bool = False) -> Any:
        tensor = self.torch.from_numpy(numpy.ascontiguousarray(host)).to(self.torch_device)
        return tensor.requires_grad_(requires_grad)

    def contenders(self, xpnet_fn: Any, torch_fn: Any | None) -> list[Contender]:
        sides = [Contender("xpnet", xpnet_fn, self.xpnet_sync)]
        if torch_fn is not None:
            sides.append(Contender("torch", torch_fn, self.torch_sync))
        return sides


def torch_lenet5(torch: Any) -> Any:
    """PyTorch's LeNet-5, layer for layer the same as ``xpnet.models.lenet5``."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def xpnet_trainer(target: Target, x: numpy.ndarray, y: numpy.ndarray, batch_size: int,
                  build: Any = xpnet.models.lenet5) -> Any:
    """One epoch of ``fit`` over (x, y) per call (SGD, cross-entropy, no metrics, silent)."""
    model = build(seed=0, device=target.xpnet_device)
    model.compile(optimizer=xpnet.optim.SGD(lr=LR), loss="cross_entropy")

    def epoch() -> None:
        history = model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
        if history.nonfinite:  # fit stopped early: the images/s would be wrong
            raise RuntimeError(f"xpnet training diverged: {history.nonfinite}")
    return epoch


def torch_trainer(target: Target, x: numpy.ndarray, y: numpy.ndarray, batch_size: int,
                  build: Any = None) -> Any:
    """The loop ``fit`` runs, in PyTorch: host shuffle, one transfer per batch, SGD step, loss summed
    on the device.  ``build``: an xpnet model builder mirrored in torch.nn (default: LeNet-5)."""
    torch = target.torch
    torch.manual_seed(0)
    net = (torch_lenet5(torch) if build is None else to_torch(build(seed=0), torch)).to(target.torch_device)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    rng = numpy.random.default_rng(0)
    cross_entropy = torch.nn.functional.cross_entropy

    def epoch() -> float:
        net.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        total = torch.zeros((), device=target.torch_device)
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            xb, yb = images[index].to(target.torch_device), labels[index].to(target.torch_device)
            optimizer.zero_grad()
            loss = cross_entropy(net(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        return float(total) / len(x)
    return epoch


def train(target: Target, x: numpy.ndarray, y: numpy.ndarray, batch_size: int = 128) -> list[Contender]:
    """LeNet-5 training through ``Sequential.fit`` against the equivalent PyTorch loop."""
    torch_fn = None if target.torch is None else torch_trainer(target, x, y, batch_size)
    return target.contenders(xpnet_trainer(target, x, y, batch_size), torch_fn)


def train_resnet(target: Target, x: numpy.ndarray, y: numpy.ndarray, batch_size: int = 64) -> list[Contender]:
    """The residual CNN of ``xpnet.models.resnet_mnist`` trained through ``fit``, against the same
    tree in torch.nn (built from it, with its weights)."""
    build = xpnet.models.resnet_mnist
    torch_fn = None if target.torch is None else torch_trainer(target, x, y, batch_size, build)
    return target.contenders(xpnet_trainer(target, x, y, batch_size, build), torch_fn)


def infer(target: Target, x: numpy.ndarray, batch_size: int = 1000) -> list[Contender]:
    """LeNet-5 inference: ``predict`` against PyTorch eval() + no_grad(); both return a host array."""
    model = xpnet.models.lenet5(seed=0, device=target.xpnet_device)
    xpnet_fn = lambda: model.predict(x, batch_size=batch_size)  # noqa: E731
    if target.torch is None:
        return target.contenders(xpnet_fn, None)
    torch = target.torch
    net = torch_lenet5(torch).to(target.torch_device).eval()
    images = torch.from_numpy(x)

    def torch_fn() -> numpy.ndarray:
        with torch.no_grad():
            outputs = [net(images[s:s + batch_size].to(target.torch_device)).cpu().numpy()
                       for s in range(0, len(x), batch_size)]
        return numpy.concatenate(outputs)
    return target.contenders(xpnet_fn, torch_fn)


def conv(target: Target, case: ConvCase, rng: numpy.random.Generator) -> list[Contender]:
    """Forward + backward (input, weight and bias gradients) of one convolution."""
    x = rng.standard_normal((case.n, case.c_in, case.size, case.size), dtype=numpy.float32)
    w = rng.standard_normal((case.c_out, case.c_in, case.k, case.k), dtype=numpy.float32) * 0.1
    b = rng.standard_normal(case.c_out, dtype=numpy.float32)
    dy = rng.standard_normal((case.n, case.c_out, case.out_size, case.out_size), dtype=numpy.float32)
    xd, wd, bd, dyd = (target.xpnet_array(a) for a in (x, w, b, dy))

    def xpnet_fn() -> Any:
        _, cache = ops.conv2d_forward(xd, wd, bd, stride=case.stride, padding=case.padding)
        return ops.conv2d_backward(dyd, cache)
    if target.torch is None:
        return target.contenders(xpnet_fn, None)
    torch = target.torch
    xt, wt, bt = (target.torch_tensor(a, requires_grad=True) for a in (x, w, b))
    dyt = target.torch_tensor(dy)

    def torch_fn() -> Any:
        out = torch.nn.functional.conv2d(xt, wt, bt, stride=case.stride, padding=case.padding)
        return torch.autograd.grad(out, (xt, wt, bt), dyt)
    return target.contenders(xpnet_fn, torch_fn)


def max_pool(target: Target, shape: tuple[int, ...], rng: numpy.random.Generator) -> list[Contender]:
    """2x2 max pooling (stride 2), forward + backward."""
    x = rng.standard_normal(shape, dtype=numpy.float32)
    dy = rng.standard_normal((*shape[:2], shape[2] // 2, shape[3] // 2), dtype=numpy.float32)
    xd, dyd = target.xpnet_array(x), target.xpnet_array(dy)

    def xpnet_fn() -> Any:
        _, cache = ops.max_pool2d_forward(xd, 2)
        return ops.max_pool2d_backward(dyd, cache)
    if target.torch is None:
        return target.contenders(xpnet_fn, None)
    torch = target.torch
    xt, dyt = target.torch_tensor(x, requires_grad=True), target.torch_tensor(dy)

    def torch_fn() -> Any:
        return torch.autograd.grad(torch.nn.functional.max_pool2d(xt, 2), xt, dyt)
    return target.contenders(xpnet_fn, torch_fn)


def adam(target: Target, shape: tuple[int, ...], rng: numpy.random.Generator) -> list[Contender]:
    """One Adam step (lr 1e-3, default betas and eps) on one parameter of ``shape`` with a fixed gradient."""
    value = rng.standard_normal(shape, dtype=numpy.float32)
    grad = rng.standard_normal(shape, dtype=numpy.float32)
    param = Parameter(target.xpnet_array(value), "weight")
    param.grad[...] = target.xpnet_array(grad)
    xpnet_opt = xpnet.optim.Adam([param], lr=1e-3)
    if target.torch is None:
        return target.contenders(xpnet_opt.step, None)
    torch = target.torch
    weight = torch.nn.Parameter(target.torch_tensor(value.copy()))
    weight.grad = target.torch_tensor(grad)
    torch_opt = torch.optim.Adam([weight], lr=1e-3)
    return target.contenders(xpnet_opt.step, torch_opt.step)


def gemm_peak(target: Target, size: int, repeats: int, settle: float = SETTLE) -> dict[str, float]:
    """Best GFLOP/s of a float32 (size x size) @ (size x size) product: {"numpy" (or "cupy"): ..., "torch": ...}."""
    rng = numpy.random.default_rng(1)
    a, b = (rng.standard_normal((size, size), dtype=numpy.float32) for _ in range(2))
    flop = 2.0 * size ** 3
    xp = target.xpnet_device.xp
    ad, bd = target.xpnet_array(a), target.xpnet_array(b)
    out = xp.empty((size, size), dtype=numpy.float32)
    sides = [Contender("xpnet", lambda: xp.matmul(ad, bd, out=out), target.xpnet_sync)]
    if target.torch is not None:
        at, bt = target.torch_tensor(a), target.torch_tensor(b)
        tout = target.torch.empty((size, size), device=target.torch_device)
        sides.append(Contender("torch", lambda: target.torch.mm(at, bt, out=tout), target.torch_sync))
    samples = alternate(sides, repeats, min_time=0.0, warmup=1, settle=settle)
    names = {"xpnet": xp.__name__, "torch": "torch"}
    return {names[name]: flop / min(s.seconds) / 1e9 for name, s in samples.items()}
