"""Containers (layers.Sequential, Residual, Concat): gradients through trees, shape errors, names.

The generic layer checks (bad inputs, casts, moves, configs) run on containers too, in
tests/layers/test_base.py; here: what only trees have.
"""

import numpy
import pytest

import xpnet
from tests.helpers import assert_close, host, layer_gradcheck
from xpnet import layers as L


def resnet_block(c_in, c_out, stride):
    body = L.Sequential(L.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, seed=0), L.BatchNorm2d(c_out),
                        L.ReLU(), L.Conv2d(c_out, c_out, 3, padding=1, seed=1))
    shortcut = None if stride == 1 and c_in == c_out else L.Conv2d(c_in, c_out, 1, stride=stride, seed=2)
    return L.Residual(body, shortcut)


TREES = {
    "identity residual": (lambda: resnet_block(3, 3, 1), (2, 3, 5, 5)),
    "projection residual": (lambda: resnet_block(2, 4, 2), (2, 2, 5, 5)),
    "identity body": (lambda: L.Residual(L.Tanh()), (2, 3, 4)),  # dL/dx = dy * (1 + tanh')
    "concat of branches": (lambda: L.Concat(L.Conv2d(2, 3, 1, seed=0),
                                            L.Sequential(L.Conv2d(2, 2, 3, padding=1, seed=1), L.Sigmoid()),
                                            L.MaxPool2d(3, 1, 1)), (2, 2, 4, 5)),
    "nested": (lambda: L.Sequential(L.Residual(L.Sequential(L.Residual(L.Tanh()), L.Linear(4, 4, seed=0))),
                                    L.Concat(L.Linear(4, 2, seed=1), L.Sequential())), (3, 4)),
    "depthwise separable": (lambda: L.Sequential(L.Conv2d(4, 4, 3, padding=1, groups=4, seed=0), L.BatchNorm2d(4),
                                                 L.Conv2d(4, 6, 1, seed=1)), (2, 4, 5, 5)),
}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_gradcheck_through_trees(xp, rng, tree):
    """Parameter gradients and the input gradient summed over both paths, in float64."""
    factory, shape = TREES[tree]
    x = rng.standard_normal(shape)
    layer_gradcheck(xp, factory(), x + numpy.sign(x) * 0.05)  # away from ReLU's kink


def test_residual_adds_the_shortcut_and_concat_stacks_channels(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(numpy.float32)
    conv = L.Conv2d(3, 3, 3, padding=1, seed=0)
    want = conv.forward(x) + x
    assert_close(L.Residual(conv).forward(x), want, rtol=0, atol=0)  # bit-exact: the same conv, plus x
    a, b = L.Conv2d(3, 2, 1, seed=1), L.Conv2d(3, 5, 1, seed=2)
    y = L.Concat(a, b).forward(x)
    assert y.shape == (2, 7, 4, 4)
    numpy.testing.assert_array_equal(y[:, :2], a.forward(x))
    numpy.testing.assert_array_equal(y[:, 2:], b.forward(x))


def test_residual_backward_does_not_write_into_the_gradient_it_receives(rng):
    layer = L.Residual(L.Sequential(L.Flatten(), L.Linear(12, 12, seed=0)), L.Flatten())
    x = rng.standard_normal((2, 3, 2, 2))
    layer.cast("float64")
    layer.forward(x, train=True)
    dy = rng.standard_normal((2, 12))
    kept = dy.copy()
    layer.backward(dy)
    numpy.testing.assert_array_equal(dy, kept)


@pytest.mark.parametrize("make, pattern", [
    (lambda: L.Residual(L.Conv2d(2, 3, 3, padding=1), name="block"),
     r"block: the body gives per-sample shape \(3, 5, 5\) but the identity shortcut gives \(2, 5, 5\)"),
    (lambda: L.Residual(L.Conv2d(2, 3, 3, stride=2, padding=1), L.Conv2d(2, 3, 1), name="down"),
     r"down: the body gives per-sample shape \(3, 3, 3\) but the shortcut Conv2d gives \(3, 5, 5\)"),
    (lambda: L.Concat(L.Conv2d(2, 3, 1), L.MaxPool2d(2), name="mix"),
     r"mix: branch 0 gives per-sample shape \(3, 5, 5\) but branch 1 gives \(2, 2, 2\)"),
])
def test_shape_mismatch_is_named_by_summary_and_at_the_first_call(make, pattern):
    model = xpnet.Sequential(make(), seed=0)
    with pytest.raises(xpnet.ShapeError, match=pattern):
        model.summary((2, 5, 5), print_fn=None)
    x = numpy.zeros((1, 2, 5, 5), numpy.float32)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(xpnet.ShapeError, match=pattern):
        model.forward(x, train=True)
    for name, value in model.state_dict().items():  # nothing ran: no running statistics moved
        numpy.testing.assert_array_equal(value, before[name])


def test_containers_are_layers_anywhere_and_need_no_input_gradient_at_the_model_input():
    block = resnet_block(1, 2, 2)
    model = xpnet.Sequential(block, L.ReLU(), L.Flatten(), L.Linear(2 * 14 * 14, 10), seed=0)
    assert block.need_input_grad is False
    assert block.body.layers[0].need_input_grad is False and block.shortcut.need_input_grad is False
    assert block.body.layers[1].need_input_grad is True
    x = numpy.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(numpy.float32)
    model.compile(xpnet.optim.SGD(lr=0.1), "cross_entropy")
    history = model.fit(x, numpy.arange(4), epochs=3, batch_size=4, verbose=0, shuffle=False)
    assert history["loss"][-1] < history["loss"][0]


def test_summary_is_an_indented_tree_with_counts():
    model = xpnet.Sequential(L.Conv2d(1, 4, 3, padding=1), resnet_block(4, 4, 1), L.Flatten(), seed=0)
    text = model.summary((1, 6, 6), print_fn=None)
    assert "\nresidual (Residual)" in text and "\n  sequential (Sequential)" in text
    assert "\n    conv2d_1 (Conv2d)" in text and "\n    batch_norm2d (BatchNorm2d)" in text
    row = next(line for line in text.splitlines() if line.startswith("residual (Residual)"))
    assert row.split()[-1] == f"{model.layers[1].num_parameters():,}" and "(None, 4, 6, 6)" in row


def test_sequential_layer_supports_len_iteration_and_indexing():
    seq = L.Sequential(L.ReLU(), L.Tanh(), L.Sigmoid())
    assert len(seq) == 3 and [type(layer).__name__ for layer in seq] == ["ReLU", "Tanh", "Sigmoid"]
    assert isinstance(seq[1], L.Tanh) and len(seq[1:]) == 2


@pytest.mark.parametrize("make, error", [
    (lambda: L.Sequential(L.ReLU(), "relu"), r"child #1 is a str, not an xpnet Layer"),
    (lambda: L.Residual(None), r"child #0 is a NoneType"),
    (lambda: L.Concat(), r"needs at least one branch"),
    (lambda: L.Concat(L.ReLU(), axis=0), r"axis must be an int >= 1"),
])
def test_bad_container_arguments(make, error):
    with pytest.raises((TypeError, ValueError), match=error):
        make()


def test_containers_move_and_cast_their_whole_subtree(device):
    block = resnet_block(2, 3, 2)
    block.apply(lambda a: xpnet.to_device(a, device))
    assert {xpnet.device_of(v.value) for v in block.variables()} == {device}
    block.cast("float64")
    assert {v.value.dtype for v in block.variables() if v.name != "num_batches_tracked"} == {numpy.dtype("float64")}
    x = xpnet.to_device(numpy.ones((2, 2, 5, 5)), device)
    assert host(block.forward(x, train=True)).dtype == numpy.float64
