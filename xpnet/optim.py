r"""Optimizers, learning-rate schedules and gradient clipping.

Every update is written once with ``xp`` arithmetic and applied in place, so it runs
on numpy and cupy alike.  State arrays are created on the parameter's device, lazily at
the first step, and kept in a list aligned with the parameter list (never keyed by id).

    SGD       v = mu v + g;  p -= lr * (g + mu v if nesterov else v)     (g includes wd * p)
    Adam      m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
              p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    AdamW     Adam on g without wd, then p -= lr * wd * p   (decoupled weight decay)
    RMSprop   s = a s + (1-a) g^2;  p -= lr * g / (sqrt(s) + eps)  (with optional momentum)

These updates are elementwise (``Optimizer.elementwise``), so on the CPU a large parameter is
updated in one slice per core, in threads (:mod:`xpnet.host_threads`); the result is
bit-identical to the one-piece update.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .backend import Array, get_xp
from .host_threads import update_in_slices
from .parameter import Parameter


def _check(value: float, name: str, low: float, high: float = math.inf, high_open: bool = False) -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        low <= value and (value < high if high_open else value <= high))
    if bad:
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"Invalid {name}: {value!r}; expected a number in {interval}")
    return float(value)


def _check_lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"Invalid learning rate: {lr!r}; expected a positive number")
    return lr


def _check_steps(value: int, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= {low}")
    return value


class Schedule:
    """A learning-rate schedule: ``lr = schedule(step)`` for the 0-based optimizer step."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return dict(vars(self))


class StepDecay(Schedule):
    """lr * gamma ** (step // step_size)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        _check_lr(lr)
        self.lr, self.step_size, self.gamma = lr, _check_steps(step_size, "step_size"), _check(gamma, "gamma", 0)

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)


class ExponentialDecay(Schedule):
    """lr * decay_rate ** (step / decay_steps)."""

    def __init__(self, lr: float, decay_rate: float, decay_steps: int = 1) -> None:
        _check_lr(lr)
        self.lr, self.decay_rate = lr, _check(decay_rate, "decay_rate", 0)
        self.decay_steps = _check_steps(decay_steps, "decay_steps")

    def __call__(self, step: int) -> float:
        return self.lr * self.decay_rate ** (step / self.decay_steps)


class CosineDecay(Schedule):
    """Linear warmup from lr / warmup_steps up to lr over ``warmup_steps``, then cosine from lr
    down to ``min_lr`` at ``total_steps`` (and ``min_lr`` after)."""

    def __init__(self, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0) -> None:
        _check_lr(lr)
        _check(min_lr, "min_lr", 0, lr)
        _check_steps(total_steps, "total_steps")
        _check_steps(warmup_steps, "warmup_steps", 0)
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"CosineDecay needs 0 <= warmup_steps < total_steps; received "
                             f"warmup_steps={warmup_steps}, total_steps={total_steps}")
        self.lr, self.total_steps, self.warmup_steps, self.min_lr = lr, int(total_steps), int(warmup_steps), min_lr

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))


def global_norm(grads: Sequence[Array]) -> Array:
    """sqrt(sum of squares of every gradient), as a 0-d array on the gradients' device (no sync).

    The squares are summed after dividing by the largest magnitude, so a finite norm is
    returned even when squaring the raw gradients would overflow (1e20 in float32).
    """
    xp = get_xp(*grads)
    grads = [g for g in grads if g.size]
    if not grads:
        return xp.zeros(())
    peak = abs(grads[0]).max()
    for g in grads[1:]:
        peak = xp.maximum(peak, abs(g).max())
    scale = xp.where(xp.isfinite(peak) & (peak > 0), peak, xp.ones_like(peak)).astype(grads[0].dtype)
    return xp.sqrt(sum(((g / scale) ** 2).sum() for g in grads)) * scale


def clip_by_global_norm(grads: Sequence[Array], max_norm: float) -> Array:
    """Scale gradients in place so their global norm is at most ``max_norm``; returns the norm before."""
    norm = global_norm(grads)
    scale = get_xp(norm).minimum(1.0, max_norm / (norm + 1e-12)).astype(grads[0].dtype)
    for g in grads:
        g *= scale
    return norm


class Optimizer:
    """Base class: parameter binding, lr (number or schedule), clipping, state list, step counter."""

    state_names: tuple[str, ...] = ()
    # True when _update is elementwise and writes its state in place, so that a large parameter
    # may be updated in slices, in threads.  Subclasses opt in.
    elementwise: bool = False

    def __init__(self, params: Iterable[Parameter] | None = None, lr: float | Schedule = 1e-3,
                 clip_norm: float | None = None) -> None:
        if not isinstance(lr, Schedule):
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ValueError(f"Invalid learning rate: {lr!r}; expected a positive number or a Schedule")
        if clip_norm is not None:
            _check(clip_norm, "clip_norm", 1e-12)
        self.lr = lr
        self.lr_scale = 1.0  # multiplied in by ReduceLROnPlateau
        self.clip_norm = clip_norm
        self.iterations = 0
        self.params: list[Parameter] = []
        self.state: list[dict[str, Array]] = []
        if params is not None:
            self.bind(params)

    def bind(self, params: Iterable[Parameter]) -> Optimizer:
        """Attach the parameters to update (a model's compile() does this); resets state."""
        self.params = [p for p in params if p.trainable]
        self.state = []
        return self

    def current_lr(self) -> float:
        """The learning rate of the next step."""
        base = self.lr(self.iterations) if isinstance(self.lr, Schedule) else self.lr
        return base * self.lr_scale

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()

    def _init_state(self) -> None:
        self.state = [{name: get_xp(p.value).zeros_like(p.value) for name in self.state_names}
                      for p in self.params]

    def step(self) -> None:
        """One in-place update of every parameter from its gradient."""
        if not self.params:
            raise RuntimeError(f"{type(self).__name__} has no parameters; pass them or compile a model first")
        if len(self.state) != len(self.params):
            self._init_state()
        if self.clip_norm is not None:
            clip_by_global_norm([p.grad for p in self.params], self.clip_norm)
        lr = self.current_lr()
        self.iterations += 1
        for p, state in zip(self.params, self.state):
            if not (self.elementwise and update_in_slices(self._update, p.value, p.grad, state, lr)):
                self._update(p.value, p.grad, state, lr)

    def _update(self, value: Array, grad: Array, state: dict[str, Array], lr: float) -> None:
        raise NotImplementedError

    def apply(self, fn: Callable[[Array], Array]) -> None:
        """Replace every state array by ``fn(array)`` (a device move or a cast)."""
        self.state = [{k: fn(v) for k, v in s.items()} for s in self.state]

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments as plain data (for model files)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        lr = {"schedule": type(self.lr).__name__, **self.lr.config()} if isinstance(self.lr, Schedule) else self.lr
        return {"class": type(self).__name__, "lr": lr, "clip_norm": self.clip_norm, **self.hyperparameters()}


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    elementwise = True

    def __init__(self, params: Iterable[Parameter] | None = None, lr: float | Schedule = 0.01,
                 momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 clip_norm: float | None = None) -> None:
        self.momentum = _check(momentum, "momentum", 0, 1, high_open=True)
        self.weight_decay = _check(weight_decay, "weight_decay value", 0)
        if nesterov and self.momentum == 0:
            raise ValueError("Nesterov momentum requires a momentum > 0")
        self.nesterov = bool(nesterov)
        self.state_names = ("velocity",) if self.momentum else ()
        super().__init__(params, lr, clip_norm)

    def _update(self, value: Array, grad: Array, state: dict[str, Array], lr: float) -> None:
        g = grad + self.weight_decay * value if self.weight_decay else grad
        if self.momentum:
            v = state["velocity"]
            v *= self.momentum
            v += g
            g = g + self.momentum * v if self.nesterov else v
        value -= lr * g

    def hyperparameters(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; ``weight_decay`` is L2 added to the gradient."""

    elementwise = True

    state_names = ("m", "v")
    decoupled = False

    def __init__(self, params: Iterable[Parameter] | None = None, lr: float | Schedule = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Invalid betas: {betas!r}; expected a pair (beta1, beta2)")
        for i, beta in enumerate(betas):
            if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta!r}; expected a number in [0, 1)")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _check(eps, "epsilon value", 0)
        self.weight_decay = _check(weight_decay, "weight_decay value", 0)
        super().__init__(params, lr, clip_norm)

    def _update(self, value: Array, grad: Array, state: dict[str, Array], lr: float) -> None:
        xp = get_xp(value)
        b1, b2 = self.betas
        t = self.iterations
        if self.weight_decay and not self.decoupled:
            grad = grad + self.weight_decay * value
        m, v = state["m"], state["v"]
        # In place, with two temporaries (work, step), so large models stay memory-light.
        work = grad * (1 - b1)
        m *= b1
        m += work
        xp.multiply(grad, grad, out=work)
        work *= 1 - b2
        v *= b2
        v += work
        if self.weight_decay and self.decoupled:
            value *= 1 - lr * self.weight_decay
        step = xp.sqrt(v, out=work)  # sqrt(v_hat) = sqrt(v) / sqrt(1 - b2^t)
        step *= 1 / math.sqrt(1 - b2 ** t)
        step += self.eps
        xp.divide(m, step, out=step)
        step *= lr / (1 - b1 ** t)
        value -= step

    def hyperparameters(self) -> dict[str, Any]:
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p -= lr * wd * p."""

    decoupled = True

    def __init__(self, params: Iterable[Parameter] | None = None, lr: float | Schedule = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, clip_norm: float | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, clip_norm)


class RMSprop(Optimizer):
    """RMSprop (Hinton): divide the gradient by a running RMS; optional momentum."""

    elementwise = True

    def __init__(self, params: Iterable[Parameter] | None = None, lr: float | Schedule = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        self.alpha = _check(alpha, "alpha", 0, 1, high_open=True)
        self.eps = _check(eps, "epsilon value", 0)
        self.momentum = _check(momentum, "momentum", 0, 1, high_open=True)
        self.weight_decay = _check(weight_decay, "weight_decay value", 0)
        self.state_names = ("square_avg", "buffer") if self.momentum else ("square_avg",)
        super().__init__(params, lr, clip_norm)

    def _update(self, value: Array, grad: Array, state: dict[str, Array], lr: float) -> None:
        xp = get_xp(value)
        g = grad + self.weight_decay * value if self.weight_decay else grad
        s = state["square_avg"]
        s *= self.alpha
        s += (1 - self.alpha) * (g * g)
        step = g / (xp.sqrt(s) + self.eps)
        if self.momentum:
            buf = state["buffer"]
            buf *= self.momentum
            buf += step
            step = buf
        value -= lr * step

    def hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "eps": self.eps, "momentum": self.momentum, "weight_decay": self.weight_decay}


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSprop)}
SCHEDULES = {cls.__name__: cls for cls in (StepDecay, ExponentialDecay, CosineDecay)}


def get_optimizer(name: str | Optimizer) -> Optimizer:
    """An optimizer instance from a name ("sgd", "adam", ...) with default hyperparameters."""
    if isinstance(name, Optimizer):
        return name
    lookup = {k.lower(): v for k, v in OPTIMIZERS.items()}
    if not isinstance(name, str) or name.lower() not in lookup:
        close = difflib.get_close_matches(str(name).lower(), list(lookup), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown optimizer {name!r}. Available: {', '.join(sorted(lookup))}.{hint}")
    return lookup[name.lower()]()


def optimizer_from_config(config: dict[str, Any]) -> Optimizer:
    """Rebuild an optimizer from ``Optimizer.config()`` (classes resolved through the registry only)."""
    config = dict(config)
    name = config.pop("class", None)
    cls = OPTIMIZERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown optimizer class in config; known: {', '.join(OPTIMIZERS)}")
    lr = config.pop("lr")
    if isinstance(lr, dict):
        lr = dict(lr)
        name = lr.pop("schedule", None)
        schedule = SCHEDULES.get(name) if isinstance(name, str) else None
        if schedule is None:
            raise ValueError(f"unknown schedule in config; known: {', '.join(SCHEDULES)}")
        lr = schedule(**lr)
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    return cls(lr=lr, **config)
