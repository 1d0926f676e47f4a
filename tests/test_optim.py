"""Optimizers, schedules and gradient clipping (xpnet/optim.py) on every backend.

The references below are naive float64 NumPy loops written from PyTorch's documented
update rules (torch.optim.SGD / Adam / AdamW / RMSprop, dampening 0, maximize False,
amsgrad False, centered False), one formula per line, independent of xpnet's code.
"""

from __future__ import annotations

import json
import math

import numpy
import pytest

import xpnet
from tests.strict_backend import TRANSFERS, strict
from xpnet import host_threads, optim
from xpnet.parameter import Parameter

SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 6
TOLS = {numpy.float64: dict(rtol=1e-10, atol=1e-12), numpy.float32: dict(rtol=2e-5, atol=2e-6)}


# ----------------------------------------------------------------------------- helpers
def host_problem(dtype, seed=0):
    """Initial parameter values and one gradient per step and parameter, rounded to ``dtype``."""
    gen = numpy.random.default_rng(seed)
    values = [gen.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[gen.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return values, grads


def make_params(xp, values):
    return [Parameter(xp.asarray(v.copy()), f"p{i}") for i, v in enumerate(values)]


def set_grads(xp, params, grads):
    for p, g in zip(params, grads, strict=False):
        p.grad[...] = xp.asarray(g)


def run(xp, opt, params, grads_per_step):
    for grads in grads_per_step:
        set_grads(xp, params, grads)
        opt.step()
    return [numpy.array(xpnet.to_numpy(p.value)) for p in params]  # copies (numpy's to_numpy aliases)


# --------------------------------------------------------- naive float64 references
def ref_sgd(values, grads_per_step, lrs, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD: g += wd p; b = g (t=1) else mu b + g; g = g + mu b if nesterov else b; p -= lr g."""
    ps = [v.astype(numpy.float64) for v in values]
    bufs = [None] * len(ps)
    for t, grads in enumerate(grads_per_step):
        for i, g in enumerate(grads):
            g = g.astype(numpy.float64)
            if weight_decay != 0:
                g = g + weight_decay * ps[i]
            if momentum != 0:
                if bufs[i] is None:
                    bufs[i] = g.copy()
                else:
                    bufs[i] = momentum * bufs[i] + g
                if nesterov:
                    g = g + momentum * bufs[i]
                else:
                    g = bufs[i]
            ps[i] = ps[i] - lrs[t] * g
    return ps


def ref_adam(values, grads_per_step, lrs, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """torch.optim.Adam (L2: g += wd p) and torch.optim.AdamW (decoupled: p -= lr wd p first)."""
    b1, b2 = betas
    ps = [v.astype(numpy.float64) for v in values]
    ms = [numpy.zeros_like(p) for p in ps]
    vs = [numpy.zeros_like(p) for p in ps]
    for step, grads in enumerate(grads_per_step):
        t = step + 1
        lr = lrs[step]
        for i, g in enumerate(grads):
            g = g.astype(numpy.float64)
            if decoupled:
                ps[i] = ps[i] * (1 - lr * weight_decay)
            elif weight_decay != 0:
                g = g + weight_decay * ps[i]
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat = ms[i] / (1 - b1 ** t)
            v_hat = vs[i] / (1 - b2 ** t)
            ps[i] = ps[i] - lr * m_hat / (numpy.sqrt(v_hat) + eps)
    return ps


def ref_rmsprop(values, grads_per_step, lrs, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    """torch.optim.RMSprop: s = a s + (1-a) g^2; b = mu b + g/(sqrt(s)+eps); p -= lr b (or lr g/(sqrt(s)+eps))."""
    ps = [v.astype(numpy.float64) for v in values]
    ss = [numpy.zeros_like(p) for p in ps]
    bufs = [numpy.zeros_like(p) for p in ps]
    for step, grads in enumerate(grads_per_step):
        for i, g in enumerate(grads):
            g = g.astype(numpy.float64)
            if weight_decay != 0:
                g = g + weight_decay * ps[i]
            ss[i] = alpha * ss[i] + (1 - alpha) * g * g
            avg = numpy.sqrt(ss[i]) + eps
            if momentum > 0:
                bufs[i] = momentum * bufs[i] + g / avg
                ps[i] = ps[i] - lrs[step] * bufs[i]
            else:
                ps[i] = ps[i] - lrs[step] * g / avg
    return ps


CASES = {
    "sgd": (lambda: optim.SGD(lr=0.1), lambda v, g, lrs: ref_sgd(v, g, lrs)),
    "sgd-momentum": (lambda: optim.SGD(lr=0.1, momentum=0.9),
                     lambda v, g, lrs: ref_sgd(v, g, lrs, momentum=0.9)),
    "sgd-nesterov": (lambda: optim.SGD(lr=0.05, momentum=0.8, nesterov=True),
                     lambda v, g, lrs: ref_sgd(v, g, lrs, momentum=0.8, nesterov=True)),
    "sgd-weight-decay": (lambda: optim.SGD(lr=0.1, weight_decay=0.3),
                         lambda v, g, lrs: ref_sgd(v, g, lrs, weight_decay=0.3)),
    "sgd-momentum-nesterov-wd": (lambda: optim.SGD(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.2),
                                 lambda v, g, lrs: ref_sgd(v, g, lrs, momentum=0.7, nesterov=True,
                                                           weight_decay=0.2)),
    "adam": (lambda: optim.Adam(lr=0.01), lambda v, g, lrs: ref_adam(v, g, lrs)),
    "adam-betas-eps": (lambda: optim.Adam(lr=0.02, betas=(0.8, 0.95), eps=1e-3),
                       lambda v, g, lrs: ref_adam(v, g, lrs, betas=(0.8, 0.95), eps=1e-3)),
    "adam-l2": (lambda: optim.Adam(lr=0.01, weight_decay=0.5),
                lambda v, g, lrs: ref_adam(v, g, lrs, weight_decay=0.5)),
    "adamw": (lambda: optim.AdamW(lr=0.01, weight_decay=0.5),
              lambda v, g, lrs: ref_adam(v, g, lrs, weight_decay=0.5, decoupled=True)),
    "adamw-default-wd": (lambda: optim.AdamW(lr=0.1),
                         lambda v, g, lrs: ref_adam(v, g, lrs, weight_decay=0.01, decoupled=True)),
    "rmsprop": (lambda: optim.RMSprop(lr=0.01), lambda v, g, lrs: ref_rmsprop(v, g, lrs)),
    "rmsprop-momentum": (lambda: optim.RMSprop(lr=0.01, alpha=0.9, momentum=0.8, eps=1e-4),
                         lambda v, g, lrs: ref_rmsprop(v, g, lrs, alpha=0.9, momentum=0.8, eps=1e-4)),
    "rmsprop-wd": (lambda: optim.RMSprop(lr=0.01, weight_decay=0.1),
                   lambda v, g, lrs: ref_rmsprop(v, g, lrs, weight_decay=0.1)),
}


# ------------------------------------------------------------ 1. update rules
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_update_matches_pytorch_rule(xp, case, dtype):
    make, reference = CASES[case]
    values, grads = host_problem(dtype)
    params = make_params(xp, values)
    opt = make()
    opt.bind(params)
    lrs = [opt.current_lr()] * STEPS
    got = run(xp, opt, params, grads)
    expected = reference(values, grads, lrs)
    for i, (g, e) in enumerate(zip(got, expected, strict=False)):
        assert g.dtype == dtype, f"parameter {i} changed dtype to {g.dtype}"
        numpy.testing.assert_allclose(g, e, **TOLS[dtype], err_msg=f"{case}: parameter {i}")
    # the reference must actually move the parameters (guards against a vacuous comparison)
    assert all(not numpy.allclose(e, v, rtol=0, atol=1e-4) for e, v in zip(expected, values, strict=False))
    assert opt.iterations == STEPS


@pytest.mark.parametrize("case", sorted(CASES))
def test_large_parameters_update_in_slices_bit_identically(monkeypatch, case):
    make, _ = CASES[case]
    values, grads = host_problem(numpy.float32)
    monkeypatch.setattr(host_threads, "_cpu_count", lambda: 3)
    results, calls = {}, []
    for min_elements in (1, 10**9):  # every parameter in 3 slices in threads, then in one piece
        monkeypatch.setattr(host_threads, "PARALLEL_MIN_ELEMENTS", min_elements)
        opt, params = make(), make_params(numpy, values)
        opt.bind(params)
        update = opt._update
        opt._update = lambda *args, update=update, tag=min_elements: calls.append(tag) or update(*args)
        results[min_elements] = run(numpy, opt, params, grads)
    for sliced, whole in zip(results[1], results[10**9], strict=True):
        numpy.testing.assert_array_equal(sliced, whole)
    assert calls.count(1) == 3 * len(SHAPES) * STEPS and calls.count(10**9) == len(SHAPES) * STEPS


def test_optimizers_that_do_not_declare_elementwise_updates_are_never_sliced(monkeypatch):
    class Scaled(optim.Optimizer):  # a user's optimizer: its update reads the whole gradient
        def _update(self, value, grad, state, lr):
            value -= lr * grad / numpy.abs(grad).max()

        def hyperparameters(self):
            return {}

    monkeypatch.setattr(host_threads, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(host_threads, "_cpu_count", lambda: 2)
    param = Parameter(numpy.zeros(4, numpy.float32), "p")
    param.grad[...] = numpy.array([1, 2, 3, 4], numpy.float32)
    Scaled([param], lr=1.0).step()
    numpy.testing.assert_allclose(param.value, [-0.25, -0.5, -0.75, -1.0])  # max over all 4, not per slice


def test_adam_first_step_is_lr_times_sign(xp):
    """Bias correction: Adam's first step is lr * g / (|g| + eps) elementwise (≈ lr * sign(g))."""
    values, grads = host_problem(numpy.float64)
    params = make_params(xp, values)
    run(xp, optim.Adam(params, lr=0.01, eps=1e-8), params, grads[:1])
    for p, v, g in zip(params, values, grads[0], strict=False):
        numpy.testing.assert_allclose(xpnet.to_numpy(p.value), v - 0.01 * g / (numpy.abs(g) + 1e-8), rtol=1e-12)


def test_adamw_differs_from_adam_l2(xp):
    """Decoupled weight decay is not L2: same hyperparameters, different trajectories."""
    values, grads = host_problem(numpy.float64)
    a_params, w_params = make_params(xp, values), make_params(xp, values)
    a = run(xp, optim.Adam(a_params, lr=0.01, weight_decay=0.5), a_params, grads)
    w = run(xp, optim.AdamW(w_params, lr=0.01, weight_decay=0.5), w_params, grads)
    assert max(numpy.abs(x - y).max() for x, y in zip(a, w, strict=False)) > 1e-3


# ------------------------------------------------- 2. in place, state, devices
@pytest.mark.parametrize("case", sorted(CASES))
def test_in_place_and_lazy_state_on_device(xp, case):
    values, grads = host_problem(numpy.float32)
    params = make_params(xp, values)
    opt = CASES[case][0]()
    opt.bind(params)
    assert opt.state == [], "state must be created lazily at the first step"
    objects = [p.value for p in params]
    set_grads(xp, params, grads[0])
    before = dict(TRANSFERS)
    opt.step()
    if xp is strict:
        assert TRANSFERS == before, "an optimizer step transferred data between host and device"
    for i, p in enumerate(params):
        assert p.value is objects[i], f"parameter {i} was replaced instead of updated in place"
        assert not numpy.array_equal(xpnet.to_numpy(p.value), values[i]), f"parameter {i} did not move"
    assert len(opt.state) == len(params)
    for i, (p, state) in enumerate(zip(params, opt.state, strict=False)):
        assert set(state) == set(opt.state_names)
        for name, a in state.items():
            assert type(a) is type(p.value), f"state {i}/{name} is a {type(a).__name__}, not on the device"
            assert a.shape == p.value.shape and a.dtype == p.value.dtype, f"state {i}/{name}"
    state_objects = [dict(s) for s in opt.state]
    set_grads(xp, params, grads[1])
    opt.step()
    for s, old in zip(opt.state, state_objects, strict=False):  # state also updated in place, not re-created
        assert all(s[k] is old[k] for k in s)


def test_state_is_in_parameter_order(xp):
    """state[i] belongs to params[i]: after one step, Adam's m = (1 - b1) g_i and SGD's velocity = g_i."""
    values, grads = host_problem(numpy.float64)
    params = make_params(xp, values)
    adam = optim.Adam(params, betas=(0.5, 0.9))
    set_grads(xp, params, grads[0])
    adam.step()
    sgd_params = make_params(xp, values)[::-1]  # a different order binds a different state order
    sgd = optim.SGD(sgd_params, momentum=0.9)
    set_grads(xp, sgd_params, grads[0][::-1])
    sgd.step()
    for i, g in enumerate(grads[0]):
        numpy.testing.assert_allclose(xpnet.to_numpy(adam.state[i]["m"]), 0.5 * g, rtol=1e-15)
        numpy.testing.assert_allclose(xpnet.to_numpy(adam.state[i]["v"]), 0.1 * g * g, rtol=1e-12)
    for i, g in enumerate(grads[0][::-1]):
        numpy.testing.assert_array_equal(xpnet.to_numpy(sgd.state[i]["velocity"]), g)


@pytest.mark.parametrize("case", ["sgd-momentum", "adamw", "rmsprop-momentum"])
def test_apply_moves_state_and_training_continues(xp, device, case):
    """Two steps on numpy, move parameters and state to the device, two more: same as four on numpy."""
    values, grads = host_problem(numpy.float64)
    make = CASES[case][0]
    ref_params = make_params(numpy, values)
    expected = run(numpy, make().bind(ref_params), ref_params, grads[:4])

    params = make_params(numpy, values)
    opt = make().bind(params)
    run(numpy, opt, params, grads[:2])
    for p in params:
        p.apply(lambda a: xpnet.to_device(a, device))
    opt.apply(lambda a: xpnet.to_device(a, device))
    for p, s in zip(params, opt.state, strict=False):
        assert all(type(a) is type(p.value) for a in s.values())
    got = run(xp, opt, params, grads[2:4])
    for g, e in zip(got, expected, strict=False):
        numpy.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def test_apply_casts_state(xp):
    values, grads = host_problem(numpy.float64)
    params = make_params(xp, values)
    opt = optim.Adam(params)
    run(xp, opt, params, grads[:1])
    for p in params:
        p.apply(lambda a: a.astype(numpy.float32))
    opt.apply(lambda a: a.astype(numpy.float32))
    assert all(a.dtype == numpy.float32 for s in opt.state for a in s.values())
    got = run(xp, opt, params, grads[1:3])
    assert all(g.dtype == numpy.float32 for g in got)


def test_bind_resets_state_and_skips_frozen_parameters(xp):
    values, grads = host_problem(numpy.float64)
    params = make_params(xp, values)
    frozen = Parameter(xp.asarray(values[1].copy()), "running_mean", trainable=False)
    opt = optim.SGD([params[0], frozen, params[2]], lr=0.1, momentum=0.9)
    assert opt.params == [params[0], params[2]]
    assert all(a is b for a, b in zip(opt.params, [params[0], params[2]], strict=False))
    frozen.grad[...] = xp.asarray(grads[0][1])
    set_grads(xp, [params[0], params[2]], [grads[0][0], grads[0][2]])
    opt.step()
    numpy.testing.assert_array_equal(xpnet.to_numpy(frozen.value), values[1])
    assert len(opt.state) == 2
    opt.bind(params)
    assert opt.state == [] and len(opt.params) == 3


def test_zero_grad(xp):
    values, grads = host_problem(numpy.float64)
    params = make_params(xp, values)
    opt = optim.SGD(params)
    set_grads(xp, params, grads[0])
    grad_objects = [p.grad for p in params]
    opt.zero_grad()
    for p, g in zip(params, grad_objects, strict=False):
        assert p.grad is g
        assert not xpnet.to_numpy(p.grad).any()


# ------------------------------------------------------------- 3. schedules
def test_step_decay_values():
    s = optim.StepDecay(0.1, step_size=3, gamma=0.5)
    assert [s(t) for t in range(8)] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025], rel=1e-15)


def test_exponential_decay_values():
    s = optim.ExponentialDecay(0.1, decay_rate=0.5, decay_steps=2)
    assert s(0) == pytest.approx(0.1, rel=1e-15)
    assert s(1) == pytest.approx(0.1 * math.sqrt(0.5), rel=1e-15)
    assert s(2) == pytest.approx(0.05, rel=1e-15)
    assert s(6) == pytest.approx(0.0125, rel=1e-15)


def test_cosine_decay_values():
    s = optim.CosineDecay(1.0, total_steps=10, warmup_steps=4, min_lr=0.1)
    # warmup: linear from lr/warmup to lr
    assert [s(t) for t in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0], rel=1e-15)
    assert s(4) == pytest.approx(1.0, rel=1e-15)  # cosine starts at lr
    assert s(5) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 6)), rel=1e-15)
    assert s(7) == pytest.approx(0.55, rel=1e-15)  # half way: (lr + min_lr) / 2
    assert s(10) == pytest.approx(0.1, rel=1e-15)  # min_lr at total_steps
    assert s(11) == s(1000) == pytest.approx(0.1, rel=1e-15)  # and stays there
    cosine = [s(t) for t in range(3, 12)]
    assert all(a >= b for a, b in zip(cosine, cosine[1:], strict=False))
    no_warmup = optim.CosineDecay(0.2, total_steps=4)
    assert [no_warmup(t) for t in range(6)] == pytest.approx(
        [0.2, 0.1 * (1 + math.cos(math.pi / 4)), 0.1, 0.1 * (1 + math.cos(3 * math.pi / 4)), 0.0, 0.0], abs=1e-16)


@pytest.mark.parametrize("lr_scale", [1.0, 0.25])
def test_optimizer_follows_schedule(xp, lr_scale):
    """Step t (0-based) uses schedule(t) * lr_scale: plain SGD moves each parameter by exactly lr_t * g_t."""
    schedule = optim.StepDecay(0.1, step_size=2, gamma=0.5)
    values, grads = host_problem(numpy.float64)
    params = make_params(xp, values)
    opt = optim.SGD(params, lr=schedule)
    opt.lr_scale = lr_scale
    lrs = []
    for t in range(5):
        lrs.append(opt.current_lr())
        run(xp, opt, params, grads[t:t + 1])
    expected_lrs = [lr_scale * x for x in (0.1, 0.1, 0.05, 0.05, 0.025)]
    assert lrs == pytest.approx(expected_lrs, rel=1e-15)
    expected = ref_sgd(values, grads[:5], expected_lrs)
    for got, e in zip([xpnet.to_numpy(p.value) for p in params], expected, strict=True):
        numpy.testing.assert_allclose(got, e, rtol=1e-12, atol=1e-14)


def test_adam_with_cosine_schedule_matches_reference(xp):
    schedule = optim.CosineDecay(0.05, total_steps=4, warmup_steps=2, min_lr=0.01)
    values, grads = host_problem(numpy.float64)
    params = make_params(xp, values)
    got = run(xp, optim.AdamW(params, lr=schedule, weight_decay=0.1), params, grads)
    expected = ref_adam(values, grads, [schedule(t) for t in range(STEPS)], weight_decay=0.1, decoupled=True)
    for g, e in zip(got, expected, strict=False):
        numpy.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- 4. clipping
def _device_grads(xp, dtype, scale, seed=3):
    gen = numpy.random.default_rng(seed)
    host_grads = [(scale * gen.standard_normal(s)).astype(dtype) for s in SHAPES]
    return host_grads, [xp.asarray(g.copy()) for g in host_grads]


def _host_norm(host_grads):
    return math.sqrt(sum(float((g.astype(numpy.float64) ** 2).sum()) for g in host_grads))


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32], ids=["f64", "f32"])
def test_global_norm_is_a_device_scalar(xp, dtype):
    host_grads, grads = _device_grads(xp, dtype, 1.0)
    before = dict(TRANSFERS)
    norm = optim.global_norm(grads)
    assert TRANSFERS == before, "global_norm synchronised with the host"
    assert norm.ndim == 0
    if xp is not numpy:
        assert isinstance(norm, xp.ndarray), f"global_norm returned a {type(norm).__name__}, not a device array"
    assert float(norm) == pytest.approx(_host_norm(host_grads), rel=1e-12 if dtype == numpy.float64 else 1e-6)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32], ids=["f64", "f32"])
def test_clip_scales_large_gradients_to_max_norm(xp, dtype):
    host_grads, grads = _device_grads(xp, dtype, 10.0)
    objects = list(grads)
    norm_before = _host_norm(host_grads)
    assert norm_before > 20
    before = dict(TRANSFERS)
    returned = optim.clip_by_global_norm(grads, 2.0)
    assert TRANSFERS == before, "clip_by_global_norm synchronised with the host"
    rtol = 1e-12 if dtype == numpy.float64 else 1e-6
    assert float(returned) == pytest.approx(norm_before, rel=rtol)  # the norm before clipping
    assert all(a is b for a, b in zip(grads, objects, strict=False))  # scaled in place
    clipped = [xpnet.to_numpy(g) for g in grads]
    assert _host_norm(clipped) == pytest.approx(2.0, rel=rtol)
    for c, h in zip(clipped, host_grads, strict=False):  # same direction: one global factor, not per parameter
        assert c.dtype == dtype
        numpy.testing.assert_allclose(c, h * (2.0 / norm_before), rtol=10 * rtol, atol=1e-7)


def test_clip_leaves_small_gradients_untouched(xp):
    host_grads, grads = _device_grads(xp, numpy.float64, 0.01)
    assert _host_norm(host_grads) < 1.0
    optim.clip_by_global_norm(grads, 1.0)
    for g, h in zip(grads, host_grads, strict=False):
        numpy.testing.assert_array_equal(xpnet.to_numpy(g), h)


def test_clip_handles_gradients_whose_squares_overflow(xp):
    """Finite float32 gradients of 1e20 have a finite norm; clipping must not zero them (overflow in g*g)."""
    host_grads = [numpy.full((3,), 1e20, numpy.float32), numpy.full((2, 2), -1e20, numpy.float32)]
    grads = [xp.asarray(g.copy()) for g in host_grads]
    assert float(optim.global_norm(grads)) == pytest.approx(math.sqrt(7) * 1e20, rel=1e-6)
    optim.clip_by_global_norm(grads, 1.0)
    clipped = [xpnet.to_numpy(g) for g in grads]
    assert _host_norm(clipped) == pytest.approx(1.0, rel=1e-6)
    numpy.testing.assert_allclose(clipped[0], 1 / math.sqrt(7), rtol=1e-6)


def test_clip_zero_gradients_stay_zero(xp):
    grads = [xp.zeros((3,)), xp.zeros((2, 2))]
    assert float(optim.global_norm(grads)) == 0.0
    optim.clip_by_global_norm(grads, 1.0)
    assert all(not xpnet.to_numpy(g).any() for g in grads)


def test_clip_norm_bounds_the_update(xp):
    """SGD(lr=1, clip_norm=0.5): the update over all parameters has global norm exactly 0.5."""
    values, grads = host_problem(numpy.float64)
    assert _host_norm(grads[0]) > 1.0
    params = make_params(xp, values)
    opt = optim.SGD(params, lr=1.0, clip_norm=0.5)
    before = dict(TRANSFERS)
    set_grads(xp, params, grads[0])
    opt.step()
    if xp is strict:
        assert TRANSFERS["to_host"] == before["to_host"], "clipping inside step() synchronised with the host"
    updates = [v - xpnet.to_numpy(p.value) for p, v in zip(params, values, strict=False)]
    assert _host_norm(updates) == pytest.approx(0.5, rel=1e-12)
    small = make_params(xp, values)  # a gradient already under the bound is used as is
    small_grads = [0.01 * g for g in grads[0]]
    opt = optim.SGD(small, lr=1.0, clip_norm=0.5)
    run(xp, opt, small, [small_grads])
    for p, v, g in zip(small, values, small_grads, strict=False):
        numpy.testing.assert_array_equal(xpnet.to_numpy(p.value), v - g)


# ------------------------------------------------------------ 5. bad inputs
BAD_HYPERPARAMETERS = [
    (lambda: optim.SGD(lr=0.0), "Invalid learning rate"),
    (lambda: optim.SGD(lr=-0.01), r"Invalid learning rate: -0\.01"),
    (lambda: optim.Adam(lr=float("nan")), "Invalid learning rate"),
    (lambda: optim.RMSprop(lr="0.1"), "Invalid learning rate"),
    (lambda: optim.Adam(betas=(1.0, 0.9)), "Invalid beta parameter at index 0"),
    (lambda: optim.AdamW(betas=(0.9, -0.1)), "Invalid beta parameter at index 1"),
    (lambda: optim.Adam(betas=(0.9,)), "Invalid betas"),
    (lambda: optim.Adam(weight_decay=-1e-4), "Invalid weight_decay value"),
    (lambda: optim.SGD(weight_decay=-0.1), "Invalid weight_decay value"),
    (lambda: optim.RMSprop(weight_decay=-0.1), "Invalid weight_decay value"),
    (lambda: optim.SGD(momentum=1.0), "Invalid momentum"),
    (lambda: optim.SGD(momentum=-0.5), "Invalid momentum"),
    (lambda: optim.RMSprop(momentum=1.5), "Invalid momentum"),
    (lambda: optim.SGD(lr=0.1, nesterov=True), "Nesterov momentum requires a momentum"),
    (lambda: optim.Adam(eps=-1e-8), "Invalid epsilon value"),
    (lambda: optim.RMSprop(eps=-1.0), "Invalid epsilon value"),
    (lambda: optim.RMSprop(alpha=1.0), "Invalid alpha"),
    (lambda: optim.SGD(clip_norm=0.0), "Invalid clip_norm"),
    (lambda: optim.CosineDecay(0.1, total_steps=5, warmup_steps=5), "warmup_steps < total_steps"),
    (lambda: optim.CosineDecay(0.1, total_steps=5, warmup_steps=9), "warmup_steps < total_steps"),
    (lambda: optim.CosineDecay(0.1, total_steps=5, min_lr=0.5), "Invalid min_lr"),
    (lambda: optim.CosineDecay(-0.1, total_steps=5), "Invalid learning rate"),
    (lambda: optim.StepDecay(0.1, step_size=0), "Invalid step_size"),
    (lambda: optim.StepDecay(0.0, step_size=2), "Invalid learning rate"),
    (lambda: optim.ExponentialDecay(0.1, decay_rate=0.9, decay_steps=0), "Invalid decay_steps"),
    (lambda: optim.ExponentialDecay(0.1, decay_rate=-0.5), "Invalid decay_rate"),
]


@pytest.mark.parametrize("make, message", BAD_HYPERPARAMETERS, ids=[m for _, m in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_step_without_parameters_raises(xp):
    with pytest.raises(RuntimeError, match="SGD has no parameters"):
        optim.SGD().step()
    frozen = Parameter(xp.asarray(numpy.ones(3)), "frozen", trainable=False)
    opt = optim.Adam([frozen])
    with pytest.raises(RuntimeError, match="Adam has no parameters"):
        opt.step()
    assert opt.iterations == 0 and opt.state == []
    numpy.testing.assert_array_equal(xpnet.to_numpy(frozen.value), numpy.ones(3))


def test_get_optimizer():
    assert type(optim.get_optimizer("adam")) is optim.Adam
    assert type(optim.get_optimizer("SGD")) is optim.SGD
    assert type(optim.get_optimizer("AdamW")) is optim.AdamW
    existing = optim.RMSprop(lr=0.5)
    assert optim.get_optimizer(existing) is existing
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamm'\. Available: adam, adamw, rmsprop, sgd"):
        optim.get_optimizer("adamm")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optim.get_optimizer(3)


# ---------------------------------------------------- 6. config round trip
ROUND_TRIP = {
    "sgd": lambda: optim.SGD(lr=optim.StepDecay(0.1, step_size=2, gamma=0.5), momentum=0.9, nesterov=True,
                             weight_decay=0.01, clip_norm=3.0),
    "adam": lambda: optim.Adam(lr=optim.CosineDecay(0.01, total_steps=8, warmup_steps=2, min_lr=1e-3),
                               betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    "adamw": lambda: optim.AdamW(lr=optim.ExponentialDecay(0.02, decay_rate=0.9), weight_decay=0.2),
    "rmsprop": lambda: optim.RMSprop(lr=0.01, alpha=0.9, eps=1e-5, momentum=0.5, weight_decay=0.01, clip_norm=1.0),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_config_round_trip_continues_identically(xp, name):
    values, grads = host_problem(numpy.float64)
    params = make_params(xp, values)
    original = ROUND_TRIP[name]().bind(params)
    run(xp, original, params, grads[:2])

    config = json.loads(json.dumps(original.config()))  # plain data only
    rebuilt = optim.optimizer_from_config(config)
    assert type(rebuilt) is type(original)
    assert rebuilt.config() == original.config()
    assert type(rebuilt.lr) is type(original.lr)
    # resume as a checkpoint does: copies of parameters and state, the step counter
    copies = make_params(xp, [xpnet.to_numpy(p.value) for p in params])
    rebuilt.bind(copies)
    rebuilt.state = [{k: xp.asarray(numpy.array(xpnet.to_numpy(a))) for k, a in s.items()} for s in original.state]
    rebuilt.iterations = original.iterations
    assert rebuilt.current_lr() == original.current_lr()
    a = run(xp, original, params, grads[2:])
    b = run(xp, rebuilt, copies, grads[2:])
    for x, y in zip(a, b, strict=False):
        numpy.testing.assert_array_equal(x, y)


def test_config_round_trip_from_scratch(xp):
    values, grads = host_problem(numpy.float64)
    for make in ROUND_TRIP.values():
        p1, p2 = make_params(xp, values), make_params(xp, values)
        original = make().bind(p1)
        rebuilt = optim.optimizer_from_config(original.config()).bind(p2)
        for x, y in zip(run(xp, original, p1, grads), run(xp, rebuilt, p2, grads), strict=False):
            numpy.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("config, message", [
    ({"class": "Adamax", "lr": 0.1}, "unknown optimizer class"),
    ({"class": "os.system", "lr": 0.1}, "unknown optimizer class"),
    ({"class": ["SGD"], "lr": 0.1}, "unknown optimizer class"),
    ({"lr": 0.1}, "unknown optimizer class"),
    ({"class": "SGD", "lr": {"schedule": "PolyDecay", "lr": 0.1}}, "unknown schedule"),
    ({"class": "SGD", "lr": {"schedule": {"x": 1}, "lr": 0.1}}, "unknown schedule"),
    ({"class": "SGD", "lr": -1.0}, "Invalid learning rate"),
])
def test_optimizer_from_bad_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        optim.optimizer_from_config(config)


# ---------------------------------------------------------- 7. training sanity
def test_sgd_momentum_minimises_least_squares(xp):
    gen = numpy.random.default_rng(7)
    a_host = gen.standard_normal((40, 3))
    b_host = a_host @ numpy.array([1.5, -2.0, 0.5]) + 0.1 * gen.standard_normal(40)
    a, b = xp.asarray(a_host), xp.asarray(b_host)
    w = Parameter(xp.zeros((3,)), "w")
    opt = optim.SGD([w], lr=0.02, momentum=0.5)
    losses = []
    for _ in range(50):
        residual = a @ w.value - b
        losses.append(float(0.5 * (residual * residual).mean()))
        opt.zero_grad()
        w.grad += a.T @ residual / 40
        opt.step()
    decreasing = all(x > y for x, y in zip(losses, losses[1:], strict=False))
    assert decreasing, f"loss did not decrease monotonically: {losses}"
    optimum = numpy.linalg.lstsq(a_host, b_host, rcond=None)[0]
    best = 0.5 * float(((a_host @ optimum - b_host) ** 2).mean())
    assert losses[-1] - best < 0.2 * (losses[0] - best)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_sliced_updates_work_in_a_forked_child(monkeypatch):
    import os
    monkeypatch.setattr(host_threads, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(host_threads, "_cpu_count", lambda: 2)
    param = Parameter(numpy.ones(1000, numpy.float32), "p")
    opt = optim.SGD([param], lr=0.5)
    param.grad[...] = 1.0
    opt.step()  # the parent's worker threads now exist
    parent_pool = host_threads._thread_pool()
    pid = os.fork()
    if pid == 0:  # child: the inherited pool has no live threads; work sent to it could hang
        __import__("signal").alarm(20)  # so a hang ends the child (and fails the test) instead
        opt.step()
        fresh = host_threads._thread_pool() is not parent_pool
        os._exit(0 if fresh and numpy.all(param.value == 0.0) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    numpy.testing.assert_array_equal(param.value, numpy.full(1000, 0.5, numpy.float32))
