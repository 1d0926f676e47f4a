"""xpnet.viz on every backend: PNG files of the requested pixel size that are not blank, and the
plotted data (kernels, feature maps, confusion counts) checked against independent references."""

import functools

import numpy
import pytest

import xpnet
from tests.helpers import host
from xpnet import layers as L
from xpnet import optim, viz

mpimg = pytest.importorskip("matplotlib.image")

H = W = 12  # conv3 -> 10x10, pool2 -> 5x5, conv3 -> 3x3


@functools.lru_cache(maxsize=1)
def digits():
    """The first 64 built-in MNIST training images, cropped to 12x12 around the centre."""
    (x, y), _ = xpnet.datasets.load_mnist()
    return numpy.ascontiguousarray(x[:64, :, 8:20, 8:20]), y[:64]


def trained_model(device):
    """A tiny conv net trained for one epoch on ``device`` (its weights are device arrays)."""
    model = xpnet.Sequential(
        L.Conv2d(1, 3, 3), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(3, 4, 3), L.ReLU(), L.Flatten(), L.Linear(4 * 3 * 3, 10),
        seed=0, device=device,
    )
    model.compile(optim.Adam(lr=1e-2), "cross_entropy", ["accuracy"])
    x, y = digits()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    return model


def read_png(path):
    image = mpimg.imread(str(path))
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image


def assert_png(path, width_px, height_px):
    assert path.is_file() and path.suffix == ".png"
    image = read_png(path)
    assert image.shape[:2] == (height_px, width_px)
    assert float(image[..., :3].var()) > 1e-4, "the image is blank"
    return image


# --- training curves -----------------------------------------------------------------
def test_plot_history_from_fit(device, tmp_path):
    model = trained_model(device)
    x, y = digits()
    history = model.fit(x, y, epochs=3, initial_epoch=1, batch_size=32, validation_data=(x, y), verbose=0)
    path = viz.plot_history(history, tmp_path / "history.png", "tiny", figsize=(6, 3), dpi=50)
    assert path == tmp_path / "history.png"
    assert_png(path, 300, 150)
    fig = viz.history_figure(history)
    loss_ax, acc_ax = fig.axes
    assert [len(line.get_xdata()) for line in loss_ax.lines] == [2, 2]
    assert numpy.allclose(loss_ax.lines[0].get_ydata(), history.history["loss"])
    assert numpy.allclose(acc_ax.lines[1].get_ydata(), history.history["val_accuracy"])


def test_plot_history_default_size_and_dict(tmp_path):
    path = viz.plot_history({"loss": [2.0, 1.0, 0.5], "accuracy": [0.3, 0.6, 0.8]}, tmp_path / "h.png")
    assert_png(path, 900, 350)  # the default 9 x 3.5 inches at 100 dpi


# --- learned filters -----------------------------------------------------------------
def test_filter_weights_are_host_copies(device):
    model = trained_model(device)
    conv = model.layers[3]
    weights = viz.filter_weights(conv)
    assert isinstance(weights, numpy.ndarray) and weights.shape == (4, 3, 3, 3)
    numpy.testing.assert_array_equal(weights, host(conv.weight.value))
    weights[:] = 0
    assert numpy.abs(host(conv.weight.value)).sum() > 0, "filter_weights must return a copy"


@pytest.mark.parametrize("index, grid", [(0, (2, 2)), (3, (4, 3))])
def test_filters_figure_has_one_panel_per_kernel(device, index, grid):
    conv = trained_model(device).layers[index]
    c_out, c_in = conv.out_channels, conv.in_channels
    fig = viz.filters_figure(conv)
    assert len(fig.axes) == c_out * c_in
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == grid
    expected = host(conv.weight.value)
    for ax in fig.axes:
        o, c = map(int, ax.get_label().split(","))
        spec = ax.get_subplotspec()
        position = (o, c) if c_in > 1 else divmod(o, grid[1])  # row o = output channel, column c = input
        assert (spec.rowspan.start, spec.colspan.start) == position
        (image,) = ax.get_images()
        numpy.testing.assert_array_equal(image.get_array(), expected[o, c])
    assert sorted(ax.get_label() for ax in fig.axes) == sorted(f"{o},{c}" for o in range(c_out) for c in range(c_in))


def test_plot_filters_png(device, tmp_path):
    conv = trained_model(device).layers[3]
    path = viz.plot_filters(conv, tmp_path / "filters.png", figsize=(3, 4), dpi=60)
    assert_png(path, 180, 240)


@pytest.mark.parametrize("layer, message", [
    (L.Linear(4, 2), "needs a Conv2d layer.*got Linear"),
    (L.MaxPool2d(2), "needs a Conv2d layer.*got MaxPool2d"),
])
def test_plot_filters_rejects_other_layers(layer, message, tmp_path):
    with pytest.raises(TypeError, match=message):
        viz.plot_filters(layer, tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def test_plot_filters_refuses_too_many_panels(tmp_path):
    with pytest.raises(ValueError, match=r"8 x 6 = 48 kernels, more than max_panels=40"):
        viz.plot_filters(L.Conv2d(6, 8, 3), tmp_path / "f.png", max_panels=40)
    assert not (tmp_path / "f.png").exists()


# --- feature maps --------------------------------------------------------------------
def test_feature_maps_match_the_model(device):
    model = trained_model(device)
    x, _ = digits()
    maps = viz.feature_maps(model, x[5])
    names = ["input"] + [layer.name for layer in model.layers]
    assert [name for name, _ in maps] == names
    shape = (1, H, W)
    assert maps[0][1].shape == shape
    for layer, (_, m) in zip(model.layers, maps[1:]):
        shape = layer.output_shape(shape)
        assert m.shape == shape and isinstance(m, numpy.ndarray)
    numpy.testing.assert_allclose(maps[-1][1], model.predict(x[5:6])[0], rtol=1e-6, atol=1e-6)
    relu = maps[2][1]
    numpy.testing.assert_array_equal(relu, numpy.maximum(maps[1][1], 0))
    pooled = relu.reshape(3, 5, 2, 5, 2).max(axis=(2, 4))
    numpy.testing.assert_array_equal(maps[3][1], pooled)


def test_feature_maps_accept_a_batch_of_one_on_the_device(device, xp):
    model = trained_model(device)
    x, _ = digits()
    from_host = viz.feature_maps(model, x[7])
    from_device = viz.feature_maps(model, xp.asarray(x[7:8]))
    for (name_a, a), (name_b, b) in zip(from_host, from_device):
        assert name_a == name_b
        numpy.testing.assert_array_equal(a, b)  # bit-exact: a batch of one either way, same ops and shapes


def test_feature_maps_figure_rows_and_channels(device):
    model = trained_model(device)
    x, _ = digits()
    fig = viz.feature_maps_figure(model, x[0])
    per_layer = {}
    for ax in fig.axes:
        per_layer[ax.get_label()] = per_layer.get(ax.get_label(), 0) + 1
    # input, conv2d, relu, max_pool2d, conv2d_1, relu_1: one panel per channel; linear: one bar chart
    assert per_layer == {"input": 1, "conv2d": 3, "relu": 3, "max_pool2d": 3, "conv2d_1": 4, "relu_1": 4,
                         "linear": 1}
    rows = sorted({ax.get_subplotspec().rowspan.start for ax in fig.axes})
    assert rows == list(range(7))
    (bars,) = [ax for ax in fig.axes if ax.get_label() == "linear"]
    heights = [patch.get_height() for patch in bars.patches]
    numpy.testing.assert_allclose(heights, model.predict(x[:1])[0], rtol=1e-6, atol=1e-6)


def test_feature_maps_figure_caps_channels(device):
    model = trained_model(device)
    fig = viz.feature_maps_figure(model, digits()[0][0], max_channels=2)
    assert sum(ax.get_label() == "conv2d_1" for ax in fig.axes) == 2


def test_plot_feature_maps_png(device, tmp_path):
    model = trained_model(device)
    path = viz.plot_feature_maps(model, digits()[0][0], tmp_path / "maps.png", figsize=(5, 6), dpi=40)
    assert_png(path, 200, 240)


@pytest.mark.parametrize("shape, error, message", [
    ((H, W), xpnet.ShapeError, r"\(12, 12\) do not fit the model.*expects 4-D input \(N, C, H, W\)"),
    ((2, 1, H, W), xpnet.ShapeError, r"takes one image, .*; got a batch of shape \(2, 1, 12, 12\)"),
    ((3, H, W), xpnet.ShapeError, r"\(3, 12, 12\) do not fit the model.*expects 1 input channels"),
    ((1, 28, 28), xpnet.ShapeError, r"\(1, 28, 28\) do not fit the model"),
])
def test_plot_feature_maps_rejects_bad_images(device, tmp_path, shape, error, message):
    model = trained_model(device)
    before = [host(p.value).copy() for p in model.parameters()]
    image = numpy.ones(shape, dtype=numpy.float32)
    with pytest.raises(error, match=message):
        viz.plot_feature_maps(model, image, tmp_path / "maps.png")
    assert not (tmp_path / "maps.png").exists()
    assert numpy.all(image == 1)
    for old, p in zip(before, model.parameters()):
        numpy.testing.assert_array_equal(old, host(p.value))


def test_plot_feature_maps_rejects_non_numeric_images(tmp_path):
    model = trained_model("cpu")
    with pytest.raises(TypeError, match="must hold real numbers; got dtype <U1"):
        viz.plot_feature_maps(model, numpy.full((1, H, W), "a"), tmp_path / "maps.png")


def test_feature_maps_of_a_dense_model_are_bars():
    model = xpnet.Sequential(L.Linear(6, 5), L.ReLU(), L.Linear(5, 3), seed=0)
    x = numpy.linspace(-1, 1, 6, dtype=numpy.float32)
    maps = viz.feature_maps(model, x)
    assert [m.shape for _, m in maps] == [(6,), (5,), (5,), (3,)]
    fig = viz.feature_maps_figure(model, x)
    assert [ax.get_label() for ax in fig.axes] == ["input", "linear", "relu", "linear_1"]
    assert [len(ax.patches) for ax in fig.axes] == [6, 5, 5, 3]


def test_viz_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'needs matplotlib: pip install "xpnet\[viz\]"'):
        viz.plot_filters(L.Conv2d(1, 2, 3), tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def test_plot_feature_maps_rejects_bad_max_channels(device, tmp_path):
    with pytest.raises(ValueError, match="max_channels must be a positive int; received 0"):
        viz.plot_feature_maps(trained_model(device), digits()[0][0], tmp_path / "m.png", max_channels=0)


# --- confusion matrix ----------------------------------------------------------------
def loop_confusion(t, p, k):
    m = numpy.zeros((k, k), dtype=numpy.int64)
    for a, b in zip(t, p):
        m[a, b] += 1
    return m


def test_confusion_matrix_counts(xp, rng):
    t = rng.integers(0, 5, size=200)
    p = numpy.where(rng.random(200) < 0.7, t, rng.integers(0, 5, size=200))
    m = viz.confusion_matrix(xp.asarray(t), xp.asarray(p), 5)
    assert isinstance(m, numpy.ndarray) and m.dtype == numpy.int64 and m.shape == (5, 5)
    numpy.testing.assert_array_equal(m, loop_confusion(t, p, 5))
    assert m.sum() == 200
    numpy.testing.assert_array_equal(numpy.diag(m), numpy.bincount(t[t == p], minlength=5))
    numpy.testing.assert_array_equal(m.sum(axis=1), numpy.bincount(t, minlength=5))


def test_confusion_matrix_of_a_trained_model(device, xp):
    model = trained_model(device)
    x, y = digits()
    scores = model.predict(x)
    m = viz.confusion_matrix(y, scores, [str(d) for d in range(10)])
    predicted = scores.argmax(axis=1)
    assert m.sum() == len(y)
    assert numpy.trace(m) == int((predicted == y).sum())
    numpy.testing.assert_array_equal(m, loop_confusion(y, predicted, 10))
    numpy.testing.assert_array_equal(viz.confusion_matrix(y, xp.asarray(scores), 10), m)


def test_confusion_matrix_infers_the_class_count():
    m = viz.confusion_matrix(numpy.array([0, 2, 2]), numpy.array([1, 2, 0]))
    numpy.testing.assert_array_equal(m, [[0, 1, 0], [0, 0, 0], [1, 0, 1]])


@pytest.mark.parametrize("t, p, classes, error, message", [
    ([0, 1], [0], 2, ValueError, "y_true has 2 samples but y_pred has 1"),
    ([0, 3], [0, 1], 3, ValueError, r"y_true holds labels outside \[0, 3\) \(1 values; first 3 at index 1\)"),
    ([0, 1], [-1, 1], 3, ValueError, r"y_pred holds labels outside \[0, 3\)"),
    ([0.5, 1.0], [0, 1], 2, TypeError, "y_true must hold integer class labels"),
    ([[[0]]], [0], 2, xpnet.ShapeError, r"labels \(N,\) or scores \(N, K\)"),
    ([], [], 2, ValueError, "0 samples"),
    ([0], [0], 0, ValueError, "classes must be positive"),
])
def test_confusion_matrix_rejects_bad_labels(t, p, classes, error, message):
    with pytest.raises(error, match=message):
        viz.confusion_matrix(numpy.array(t), numpy.array(p), classes)


def test_plot_confusion_matrix_png_and_cells(device, tmp_path):
    model = trained_model(device)
    x, y = digits()
    scores = model.predict(x)
    names = [f"d{i}" for i in range(10)]
    path = viz.plot_confusion_matrix(y, scores, names, tmp_path / "cm.png", figsize=(5, 4), dpi=50)
    assert_png(path, 250, 200)
    matrix = viz.confusion_matrix(y, scores, 10)
    fig = viz.confusion_matrix_figure(matrix, names)
    ax = fig.axes[0]
    numpy.testing.assert_array_equal(ax.get_images()[0].get_array(), matrix)
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    cells = [int(t.get_text()) for t in ax.texts]
    assert cells == matrix.ravel().tolist()


def test_confusion_matrix_figure_normalized_rows():
    matrix = numpy.array([[3, 1], [0, 4]])
    fig = viz.confusion_matrix_figure(matrix, normalize=True)
    shown = fig.axes[0].get_images()[0].get_array()
    numpy.testing.assert_allclose(shown, [[0.75, 0.25], [0.0, 1.0]])
    with pytest.raises(xpnet.ShapeError, match="square"):
        viz.confusion_matrix_figure(numpy.zeros((2, 3)))
    with pytest.raises(ValueError, match="3 class names for a 2x2"):
        viz.confusion_matrix_figure(matrix, ["a", "b", "c"])
