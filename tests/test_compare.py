"""xpnet.compare and `xpnet compare`: float32 vs float64 and vs the strict device, reports, failures, CLI."""

import functools
import importlib.util
import json
import math
import re
import warnings

import numpy
import pytest

import xpnet
from tests.strict_backend import STRICT_DEVICE
from xpnet import layers as L
from xpnet.cli import main
from xpnet.compare import (
    Comparison,
    Tolerances,
    _template,
    _tie_breaks,
    difference,
    format_table,
    parse_config,
    resolve_config,
)

no_gpu = pytest.mark.skipif(xpnet.gpu_available(), reason="checks the CPU fallback without a usable GPU")
LENET_LAYERS = ["conv2d", "relu", "max_pool2d", "conv2d_1", "relu_1", "max_pool2d_1", "flatten",
                "linear", "relu_2", "linear_1", "relu_3", "linear_2"]
SMALL = dict(steps=3, batch_size=16, train_images=128, test_images=64)
SMALL_ARGS = ["--steps", "3", "--batch-size", "16", "--train-images", "128", "--test-images", "64"]


@functools.lru_cache(maxsize=1)
def mnist():
    return xpnet.datasets.load_mnist()


def small_run(**kwargs):
    options = {**SMALL, "b": "cpu:float64", "data": mnist(), **kwargs}
    return xpnet.compare(**options)


def all_diffs(result):
    for row in result.layers:
        yield row["name"], "output", row["output"]
        if row["input_grad"] is not None:
            yield row["name"], "d input", row["input_grad"]
        for name, diff in row["param_grads"].items():
            yield row["name"], f"d {name}", diff


def perturb_output(monkeypatch, cls, layer_name, dtype, delta):
    """Add ``delta`` to one layer's output in the run of the given dtype only."""
    original = cls.forward

    def forward(self, x, train=False):
        y = original(self, x, train=train)
        return y + delta if self.name == layer_name and y.dtype == dtype else y
    monkeypatch.setattr(cls, "forward", forward)


def tiny_model(seed=0):
    return xpnet.Sequential(
        L.Conv2d(1, 4, 3), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2), L.Flatten(), L.Dropout(0.3),
        L.Linear(4 * 13 * 13, 10), seed=seed)


# --- float32 against float64 ---------------------------------------------------------------
def test_float32_against_float64_passes_and_measures_real_differences():
    result = small_run()
    assert result.passed and result.failures == []
    assert (result.a["device"], result.a["dtype"], result.b["device"], result.b["dtype"]) == \
        ("cpu", "float32", "cpu", "float64")
    assert [row["name"] for row in result.layers] == LENET_LAYERS
    assert all(c["passed"] for c in result.checks.values())
    diffs = list(all_diffs(result))
    assert len(diffs) == 12 + 12 + 2 * 5  # outputs, input grads (the first layer's too), weights and biases
    assert all(d["ratio"] <= 1 and d["dtype_a"] == "float32" and d["dtype_b"] == "float64" for *_, d in diffs)
    assert max(d["max_abs"] for *_, d in diffs) > 0  # float32 really differs from float64 ...
    assert max(d["max_rel"] for *_, d in diffs) < 1e-5  # ... by float32 rounding only
    assert len(result.training["loss_a"]) == len(result.training["accuracy_b"]) == 3
    assert 0 < result.training["loss_diff"] < 1e-5
    assert result.predictions["images"] == 64 and result.predictions["share"] >= 0.98


def test_full_100_step_run_keeps_the_loss_curves_within_1e_4():
    result = xpnet.compare(b="cpu:float64", steps=100, batch_size=16, data=mnist(), test_images=500)
    assert result.passed, format_table(result)
    t = result.training
    assert len(t["loss_a"]) == 100 and t["loss_diff"] <= 1e-4
    assert t["loss_a"][-1] < 0.5 * t["loss_a"][0]  # it trained
    assert t["weights_max_abs"] < 1e-4  # docs/reliability.md B.4 (reported, not judged)
    assert result.predictions["share"] >= 0.99
    check_batch = result.settings.pop("check_batch")
    assert 1 <= check_batch <= 8
    assert result.settings == {"steps": 100, "batch_size": 16, "lr": 0.05, "optimizer": "SGD",
                               "loss": "cross_entropy", "seed": 0, "data": "arrays",
                               "train_images": 2048, "test_images": 500, "resync": True}


def test_both_runs_start_from_bit_identical_weights():
    template = _template(None, seed=0)
    source = xpnet.models.lenet5(seed=0)
    f32, f64 = (template.build(resolve_config(spec)) for spec in ("cpu:float32", "cpu:float64"))
    for (name, p), (_, q), (_, r) in zip(source.variables(), f32.variables(), f64.variables()):
        assert q.value.dtype == numpy.float32 and r.value.dtype == numpy.float64
        numpy.testing.assert_array_equal(q.value, p.value, err_msg=name)
        numpy.testing.assert_array_equal(r.value, p.value.astype(numpy.float64), err_msg=name)
    next(iter(f32.parameters())).value[...] = 0  # builds share no memory with the template
    assert template.build(resolve_config("cpu")).parameters()[0].value.any()


def test_a_model_object_is_used_and_left_unchanged():
    model = xpnet.models.lenet5(seed=3)
    before = [xpnet.to_numpy(p.value).copy() for p in model.parameters()]
    result = small_run(model=model)
    default = small_run()
    assert result.passed and result.model["source"] == "Sequential (12 layers)"
    assert result.training["loss_a"][0] != default.training["loss_a"][0]
    for old, p in zip(before, model.parameters()):
        numpy.testing.assert_array_equal(xpnet.to_numpy(p.value), old)


# --- other devices ---------------------------------------------------------------------------
def test_compare_against_each_backend_passes(device):
    result = small_run(b=device)
    assert result.passed, format_table(result)
    assert result.b["device"] == str(device) and result.b["dtype"] == "float32"
    if device.type == "cpu":  # the same code on the same arrays: bit-identical
        assert all(d["max_abs"] == 0 for *_, d in all_diffs(result))
        assert result.training["loss_a"] == result.training["loss_b"]
        assert result.training["tie_break_steps"] == []
    same = [n for n in result.notes if "compares the implementation with itself" in n]
    assert len(same) == (device.type == "cpu")


def test_strict_device_in_float64_against_cpu_float32():
    result = small_run(b=(STRICT_DEVICE, "float64"))
    assert result.passed and result.b["device"] == "strict" and result.b["dtype"] == "float64"
    assert result.layers[0]["output"]["dtype_b"] == "float64"


# --- ties ------------------------------------------------------------------------------------
def swap_pool_routing(monkeypatch, when):
    """Break ties differently on purpose: in the float32 run, max_pool2d_1 sends each gradient to
    the other row of its window on the backward calls ``when(call)`` selects (calls count from 1)."""
    original = L.MaxPool2d.backward
    calls = {"n": 0}

    def backward(self, dy):
        dx = original(self, dy)
        if self.name != "max_pool2d_1" or dx.dtype != numpy.float32:
            return dx
        calls["n"] += 1
        if not when(calls["n"]):
            return dx
        swapped = dx.copy()
        swapped[:, :, 0::2], swapped[:, :, 1::2] = dx[:, :, 1::2], dx[:, :, 0::2]
        return swapped
    monkeypatch.setattr(L.MaxPool2d, "backward", backward)


def test_tie_breaks_counts_elements_that_are_zero_in_one_run_only():
    a = [numpy.array([0.0, 1.0, 0.0]), numpy.ones(2), None, numpy.array([[0.0, 2.0], [1.0, 1.0]])]
    b = [numpy.array([0.0, 0.0, 3.0]), numpy.ones(3), numpy.ones(1), numpy.array([[0.0, 2.5], [0.0, 1.0]])]
    zeros = lambda arrays: [None if x is None else x == 0 for x in arrays]  # noqa: E731
    assert _tie_breaks(["relu", "pool"], zeros(a), zeros(b)) == {"relu output": 2, "pool d input": 1}
    assert _tie_breaks(["relu", "pool"], zeros(b), zeros(b)) == {}


def test_the_per_layer_check_skips_a_batch_whose_ties_were_broken_differently(monkeypatch):
    swap_pool_routing(monkeypatch, lambda call: call == 1)  # the first candidate batch of the check
    result = small_run()
    assert result.passed and result.settings["check_batch"] == 2
    assert result.notes[0].startswith("batch 1 was not used for the per-layer check")
    assert "max_pool2d_1 d input: " in result.notes[0]
    assert "(batch 2)" in format_table(result)


def test_training_resynchronises_after_a_tie_break_and_reports_it(monkeypatch):
    swap_pool_routing(monkeypatch, lambda call: call == 1 + 3)  # the third training step
    result = small_run(steps=6)
    assert result.passed, format_table(result)
    events = result.training["tie_break_steps"]
    assert 3 in [e["step"] for e in events] and result.training["resynchronised"]
    assert next(e for e in events if e["step"] == 3)["tie_breaks"]["max_pool2d_1 d input"] > 10
    assert result.training["loss_diff"] < 1e-5 and result.training["weights_max_abs"] < 1e-6
    assert re.search(r"ties broken differently at \d+ step\(s\): .*\b3\b.*a took b's weights again",
                     format_table(result))


def test_without_resync_a_tie_break_lets_the_runs_drift_apart(monkeypatch):
    swap_pool_routing(monkeypatch, lambda call: call == 1 + 3)
    result = small_run(steps=6, resync=False)
    assert not result.passed and not result.checks["loss_curve"]["passed"]
    assert result.checks["forward"]["passed"] and result.checks["gradients"]["passed"]
    assert result.training["weights_max_abs"] > 1e-5
    assert re.search(r"loss curves: .* first broke a tie differently at step \d+ .*not re-synchronised",
                     result.failures[-1])


# --- reports ---------------------------------------------------------------------------
def test_json_round_trip(tmp_path):
    result = small_run()
    path = tmp_path / "report.json"
    text = result.to_json(path)
    assert path.read_text() == text + "\n"
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["passed"] is True and data["a"]["dtype"] == "float32" and data["b"]["dtype"] == "float64"
    assert data["checks"]["loss_curve"]["passed"] is True and len(data["training"]["loss_b"]) == 3
    again = Comparison.from_json(path)
    assert again.to_dict() == result.to_dict()
    assert Comparison.from_json(text).to_dict() == result.to_dict()
    assert format_table(again) == format_table(result)


def test_from_dict_rejects_other_json():
    with pytest.raises(ValueError, match="not a comparison report: missing .*layers"):
        Comparison.from_dict({"a": {}, "b": {}})


def test_table_lists_every_layer_and_tensor():
    result = small_run()
    table = format_table(result)
    assert str(result) == table
    for name in LENET_LAYERS:
        assert re.search(rf"^{name} \(\w+\)\s+output\s+\(", table, re.M), name
    assert len(re.findall(r"^\s+d weight\s+\(", table, re.M)) == 5
    assert len(re.findall(r"\)\s+\S+\s+\S+\s+\S+\s+ok$", table, re.M)) == 12 + 12 + 10
    assert "a = cpu float32" in table and "b = cpu float64  (reference)" in table
    assert re.search(r"held-out predictions: 6\d/64 identical \(\d+\.\d\d%\)", table)
    assert table.splitlines()[-1].startswith("PASS")


# --- failures are caught and named -------------------------------------------------------------
def test_a_perturbed_layer_fails_and_is_named(monkeypatch):
    perturb_output(monkeypatch, L.Linear, "linear_1", numpy.float64, 1e-3)
    result = small_run()
    assert not result.passed
    forward = result.checks["forward"]
    assert not forward["passed"] and forward["first_divergent_layer"] == "linear_1"
    assert [r["output"]["passed"] for r in result.layers] == [True] * 9 + [False] * 3
    assert result.failures[0].startswith("linear_1 (Linear) output: max |a-b| = 0.001")
    assert "FAIL" in format_table(result) and "first diverges at layer linear_1" in format_table(result)


def test_a_perturbed_gradient_fails_only_the_gradient_check(monkeypatch):
    original = L.ReLU.backward

    def backward(self, dy):
        dx = original(self, dy)
        return dx * 1.01 if self.name == "relu_2" and dx.dtype == numpy.float64 else dx
    monkeypatch.setattr(L.ReLU, "backward", backward)
    result = small_run(steps=1)
    assert result.checks["forward"]["passed"] and not result.checks["gradients"]["passed"]
    failing = result.checks["gradients"]["failing"]
    assert failing[0] == "relu_2 d input"
    assert "linear_1 d weight" not in failing and "linear d weight" in failing  # only upstream of relu_2


def test_a_perturbed_optimizer_fails_the_loss_curve_check(monkeypatch):
    original = xpnet.optim.SGD._update

    def update(self, value, grad, state, lr):
        original(self, value, grad, state, lr * 1.05 if value.dtype == numpy.float64 else lr)
    monkeypatch.setattr(xpnet.optim.SGD, "_update", update)
    result = small_run(steps=6)
    checks = result.checks
    assert checks["forward"]["passed"] and checks["gradients"]["passed"] and not checks["loss_curve"]["passed"]
    assert result.training["loss_a"][0] == pytest.approx(result.training["loss_b"][0], abs=1e-6)
    assert result.training["loss_diff"] > 1e-4 and result.failures[-1].startswith("loss curves:")


def test_an_output_in_the_wrong_dtype_fails_the_dtype_check(monkeypatch):
    original = L.Flatten.forward
    monkeypatch.setattr(L.Flatten, "forward", lambda self, x, train=False: original(self, x, train).astype("float64"))
    with pytest.raises(xpnet.DTypeError, match="linear has float32 parameters, got float64 input"):
        small_run()  # a leak into a layer with parameters is refused by the layer itself ...
    monkeypatch.undo()
    last = L.Linear.forward
    monkeypatch.setattr(L.Linear, "forward", lambda self, x, train=False: (
        last(self, x, train).astype("float64") if self.name == "linear_2" else last(self, x, train)))
    result = small_run(steps=1)  # ... a leak at the output is caught by the dtype check
    assert not result.checks["dtypes"]["passed"]
    assert result.checks["dtypes"]["mismatches"] == ["linear_2: a float64, b float64"]


def test_cli_exits_1_and_names_the_perturbed_layer(monkeypatch, tmp_path, capsys):
    perturb_output(monkeypatch, L.ReLU, "relu_1", numpy.float64, 1e-2)
    report = tmp_path / "r.json"
    code = main(["compare", *SMALL_ARGS, "--b", "cpu:float64", "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"^relu_1 \(ReLU\)\s+output .* FAIL$", out, re.M)
    assert "the forward pass first diverges at layer relu_1" in out
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["checks"]["forward"]["first_divergent_layer"] == "relu_1"


# --- inputs: model files, devices, arguments ------------------------------------------------------
def test_a_model_file_with_dropout_and_batch_norm(tmp_path, capsys):
    path = tmp_path / "tiny.xpnet"
    tiny_model(seed=5).save(path)
    result = small_run(model=str(path))
    assert result.passed, format_table(result)
    assert result.model["source"] == str(path)
    assert [r["type"] for r in result.layers] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten",
                                                 "Dropout", "Linear"]
    assert set(result.layers[1]["param_grads"]) == {"weight", "bias"}  # BatchNorm2d's, named as in torch
    dropout = result.layers[5]["output"]
    assert dropout["max_rel"] < 1e-5  # the same units were dropped in both runs
    assert main(["compare", "--model", str(path), *SMALL_ARGS, "--b", "cpu:float64"]) == 0
    assert f"xpnet compare: {path}" in capsys.readouterr().out


@no_gpu
def test_cuda_falls_back_to_the_cpu_with_one_warning(capsys):
    with pytest.warns(RuntimeWarning) as record:
        result = small_run(b="cuda")
    assert len(record) == 1 and "'cuda' was requested" in str(record[0].message)
    assert record[0].filename == __file__
    assert result.b["requested"] == "cuda" and result.b["device"] == "cpu" and result.b["dtype"] == "float32"
    assert xpnet.gpu_unavailable_reason() in result.b["fallback"] and result.passed
    assert any(n.startswith("b: device 'cuda' was requested") for n in result.notes)
    with pytest.warns(RuntimeWarning) as record:
        code = main(["compare", *SMALL_ARGS, "--b", "cuda"])
    assert code == 0 and len([w for w in record if w.category is RuntimeWarning]) == 1
    out = capsys.readouterr().out
    assert "b = cpu float32 [requested cuda: fell back]" in out
    assert "a and b both ran on cpu in float32" in out


@no_gpu
def test_auto_is_float64_on_the_cpu_silently(capsys):
    assert parse_config("auto") == ("cpu", numpy.dtype("float64"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["compare", *SMALL_ARGS]) == 0
    assert "b = cpu float64  (reference)" in capsys.readouterr().out


@pytest.mark.parametrize("spec, expected", [
    ("cpu", ("cpu", "float32")), ("CPU:float64", ("cpu", "float64")), ("cuda", ("cuda", "float32")),
    ("cuda:1", ("cuda:1", "float32")), ("cuda:1:f64", ("cuda:1", "float64")), ("gpu:float32", ("gpu", "float32")),
    (("cpu", numpy.float64), ("cpu", "float64")), (("cuda:0", "float32"), ("cuda:0", "float32")),
])
def test_parse_config(spec, expected):
    device, dtype = parse_config(spec)
    assert (device, str(dtype)) == expected


@pytest.mark.parametrize("spec, error, match", [
    ("tpu", ValueError, "unknown configuration 'tpu'"),
    ("cpu:float16", ValueError, "unknown configuration 'cpu:float16'"),
    ("cuda:x", ValueError, "unknown configuration"),
    ("", ValueError, "unknown configuration"),
    (("cpu", "int8"), ValueError, "unknown dtype 'int8'"),
    (("cpu",), ValueError, r"must be \(device, dtype\)"),
    (3, TypeError, "received int"),
])
def test_parse_config_rejects_unknown_configurations(spec, error, match):
    with pytest.raises(error, match=match):
        parse_config(spec)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(steps=0), ValueError, "steps must be a positive int; received steps=0"),
    (dict(batch_size=2.5), ValueError, "batch_size must be a positive int"),
    (dict(lr=0), ValueError, "lr must be a positive number"),
    (dict(seed=-1), ValueError, "seed must be a non-negative int"),
    (dict(model=42), TypeError, "model must be None .* received int"),
    (dict(b="tpu"), ValueError, "unknown configuration 'tpu'"),
    (dict(data=42), TypeError, "data must be None, an MNIST folder"),
    (dict(model=xpnet.Sequential(L.Flatten(), L.Linear(3, 2))), xpnet.ShapeError, "do not fit the model"),
])
def test_compare_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_run(**kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda tmp: tmp / "missing.xpnet", "missing.xpnet"),
    (lambda tmp: (tmp / "junk.xpnet").write_bytes(b"not a zip") and tmp / "junk.xpnet", "junk.xpnet"),
])
def test_cli_bad_model_file_exits_2(make, match, tmp_path, capsys):
    model = make(tmp_path)
    code = main(["compare", "--model", str(model), *SMALL_ARGS, "--json", str(tmp_path / "r.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet compare: error:") and match in err
    assert not (tmp_path / "r.json").exists()


def test_cli_model_that_does_not_fit_mnist_exits_2(tmp_path, capsys):
    path = tmp_path / "mlp.xpnet"
    xpnet.Sequential(L.Flatten(), L.Linear(10, 2)).save(path)
    assert main(["compare", "--model", str(path), *SMALL_ARGS]) == 2
    assert "do not fit the model" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_cli_plot_writes_a_png(tmp_path, capsys):
    png = tmp_path / "losses.png"
    assert main(["compare", *SMALL_ARGS, "--b", "cpu:float64", "--plot", str(png)]) == 0
    assert f"saved {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


# --- the difference measure ------------------------------------------------------------------
def test_difference_uses_atol_plus_rtol_times_b():
    b = numpy.array([1.0, 2.0, 0.0])
    ok = difference(b + numpy.array([0, 1e-4, 1e-5]), b)  # allowed: 1e-5 * max(1, s) + 1e-4 * |b|
    assert ok["passed"] and ok["atol"] == pytest.approx(2.0001e-5) and ok["rtol"] == 1e-4  # s = max|a|
    assert ok["ratio"] == pytest.approx(1e-5 / 2.0001e-5, rel=1e-6) and ok["index"] == [2]  # atol dominates at 0
    assert ok["max_rel"] == pytest.approx(max(1e-4 / 2, 1e-5 / 0.20001))  # |b| floored at atol / rtol
    bad = difference(b + numpy.array([0, 3e-4, 0]), b)
    assert not bad["passed"] and bad["ratio"] == pytest.approx(3e-4 / (2.0003e-5 + 2e-4), rel=1e-6)
    assert (bad["a"], bad["b"]) == (2.0003, 2.0) and bad["max_abs"] == pytest.approx(3e-4)
    assert bad["max_rel"] == pytest.approx(1.5e-4)


def test_difference_of_gradients_scales_atol_with_the_tensor():
    b = numpy.array([1e-3, -2e-3, 0.0])
    diff = difference(b + numpy.array([0, 0, 1.9e-7]), b, "gradient")  # atol = 1e-4 * 2e-3
    assert diff["passed"] and diff["atol"] == pytest.approx(2e-7) and diff["rtol"] == 1e-3
    assert not difference(b + numpy.array([0, 0, 2.1e-7]), b, "gradient")["passed"]
    assert difference(numpy.zeros(3), numpy.zeros(3), "gradient")["ratio"] == 0
    assert not difference(numpy.array([0, 1e-30, 0]), numpy.zeros(3), "gradient")["passed"]
    assert difference(b, b, "gradient", Tolerances(grad_atol=0))["passed"]


@pytest.mark.parametrize("a, b, passed", [
    ([numpy.nan, 1.0], [numpy.nan, 1.0], True), ([numpy.inf, 1.0], [numpy.inf, 1.0], True),
    ([numpy.nan, 1.0], [1.0, 1.0], False), ([numpy.inf, 1.0], [-numpy.inf, 1.0], False),
    ([1.0, 1.0], [numpy.inf, 1.0], False),
])
def test_difference_with_non_finite_values(a, b, passed):
    diff = difference(numpy.array(a), numpy.array(b))
    assert diff["passed"] is passed
    assert diff["ratio"] == (0.0 if passed else math.inf)


def test_difference_of_other_shapes_fails():
    diff = difference(numpy.zeros((2, 3)), numpy.zeros((3, 2)))
    assert not diff["passed"] and diff["shape_a"] == [2, 3] and diff["shape"] == [3, 2]


def test_a_tree_model_is_compared_leaf_by_leaf_named_by_path():
    """Residual blocks and their shortcuts: every leaf gets a row, named by its path in the tree."""
    from xpnet.models import resnet_mnist
    result = small_run(model=resnet_mnist(seed=1))
    assert result.passed, format_table(result)
    names = [row["name"] for row in result.layers]
    assert names[:3] == ["conv2d", "batch_norm2d", "relu"]
    assert "3.body.0 conv2d_1" in names and "7.shortcut.0 conv2d_7" in names
    assert len(names) == len([p for p, layer in resnet_mnist().named_layers() if not layer.children()])
    shortcut = next(row for row in result.layers if row["path"] == "7.shortcut.1")
    assert shortcut["type"] == "BatchNorm2d" and set(shortcut["param_grads"]) == {"weight", "bias"}
    assert "3.body.0 conv2d_1 (Conv2d)" in format_table(result)
