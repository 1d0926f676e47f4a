"""Devices and array modules: get_device fallbacks and errors, get_xp, transfers, GPU detection."""

import importlib.util
import re
import sys
import types
import warnings

import numpy
import pytest

import xpnet
from tests.strict_backend import STRICT_DEVICE, TRANSFERS, StrictArray, strict
from xpnet import backend
from xpnet.backend import Device

no_gpu = pytest.mark.skipif(xpnet.gpu_available(), reason="these check the fallback without a usable GPU")


class FakeDeviceArray(numpy.ndarray):
    """The fake GPU's arrays: numpy arrays with cupy's explicit copy back."""

    def get(self) -> numpy.ndarray:
        return numpy.asarray(self)


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install a fake ``cupy`` module whose kernels run on numpy (or fail as told); the detection
    cache is cleared before and after."""
    def install(get_device_count, current=0, **broken):
        module = types.ModuleType("cupy")
        runtime = types.SimpleNamespace(getDeviceCount=get_device_count, getDevice=lambda: current)
        module.cuda = types.SimpleNamespace(runtime=runtime)
        module.ndarray = FakeDeviceArray
        module.asarray = lambda a: numpy.asarray(a).view(FakeDeviceArray)
        module.matmul = numpy.matmul
        for name, error in broken.items():  # e.g. matmul=ImportError("libcublas.so.12 ...")
            setattr(module, name, lambda *_, error=error: (_ for _ in ()).throw(error))
        monkeypatch.setitem(sys.modules, "cupy", module)
        backend._import_cupy.cache_clear()
        return module
    yield install
    monkeypatch.undo()
    backend._import_cupy.cache_clear()


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu ", None, Device("cpu")])
def test_cpu_specs_give_the_cpu_device(spec):
    device = xpnet.get_device(spec)
    assert device == Device("cpu") and str(device) == "cpu" and device.xp is numpy


@no_gpu
@pytest.mark.parametrize("strict_flag", [False, True])
def test_auto_is_the_cpu_silently_without_a_gpu(strict_flag):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xpnet.get_device("auto", strict=strict_flag) == Device("cpu")


@no_gpu
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1", "gpu", "CUDA:3"])
def test_cuda_falls_back_to_the_cpu_with_one_warning_saying_why(spec):
    with pytest.warns(RuntimeWarning) as record:
        device = xpnet.get_device(spec)
    assert device == Device("cpu")
    assert len(record) == 1
    message = str(record[0].message)
    assert repr(spec) in message and "using the CPU" in message
    assert xpnet.gpu_unavailable_reason() in message
    assert record[0].filename == __file__, "the warning should point at the caller"


@no_gpu
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_with_strict_raises_device_error_with_the_reason(spec):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(xpnet.DeviceError, match=f"{spec!r}.*{re.escape(xpnet.gpu_unavailable_reason())}"):
            xpnet.get_device(spec, strict=True)


def test_device_error_is_a_runtime_error():
    assert issubclass(xpnet.DeviceError, RuntimeError) and issubclass(xpnet.DeviceError, xpnet.XpnetError)


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cuda:-1", "cuda:1:2", "", "auto:1"])
def test_unknown_device_names_raise_value_error(spec):
    with pytest.raises(ValueError, match=f"unknown device {spec!r}.*'cpu', 'cuda', 'cuda:N' or 'auto'"):
        xpnet.get_device(spec)


@pytest.mark.parametrize("spec", [3, 1.0, ["cpu"], b"cpu"])
def test_non_string_device_specs_raise_type_error(spec):
    with pytest.raises(TypeError, match=f"str or Device, got {type(spec).__name__}"):
        xpnet.get_device(spec)


def test_device_instances_pass_through_unchanged():
    assert xpnet.get_device(STRICT_DEVICE) is STRICT_DEVICE
    cuda = Device("cuda", 1)
    assert xpnet.get_device(cuda, strict=True) is cuda


def test_device_names_and_equality():
    assert str(Device("cuda", 1)) == "cuda:1" and str(Device("cpu")) == "cpu"
    assert Device("cuda") == Device("cuda", 0) != Device("cuda", 1)
    assert STRICT_DEVICE != Device("cpu")


@no_gpu
def test_a_cuda_device_without_a_gpu_refuses_to_give_its_module():
    with pytest.raises(xpnet.DeviceError, match=f"cuda:0 cannot be used: {re.escape(xpnet.gpu_unavailable_reason())}"):
        _ = Device("cuda").xp


@no_gpu
def test_gpu_available_is_false_with_a_reason_here():
    assert xpnet.gpu_available() is False
    reason = xpnet.gpu_unavailable_reason()
    if importlib.util.find_spec("cupy") is None:
        assert reason.startswith("cupy is not installed") and 'pip install "xpnet[cuda12]"' in reason
    else:  # cupy is installed, yet this machine's driver, devices or CUDA libraries fail
        assert re.search("driver|no CUDA device|failed", reason), reason


def test_gpu_detection_reports_a_broken_driver(fake_cupy):
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    fake_cupy(no_driver)
    assert xpnet.gpu_available() is False
    reason = xpnet.gpu_unavailable_reason()
    assert "driver" in reason and "cudaErrorInsufficientDriver" in reason
    with pytest.warns(RuntimeWarning, match="driver") as record:
        assert xpnet.get_device("cuda") == Device("cpu")
    assert len(record) == 1
    with pytest.raises(xpnet.DeviceError, match="driver"):
        xpnet.get_device("cuda", strict=True)


def test_gpu_detection_reports_zero_devices(fake_cupy):
    fake_cupy(lambda: 0)
    assert xpnet.gpu_available() is False
    assert "no CUDA device" in xpnet.gpu_unavailable_reason()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xpnet.get_device("auto") == Device("cpu")


def test_gpu_detection_with_one_device_rejects_a_missing_index(fake_cupy):
    fake_cupy(lambda: 1)
    assert xpnet.gpu_available() is True and xpnet.gpu_unavailable_reason() == ""
    assert xpnet.get_device("cuda:0", strict=True) == Device("cuda", 0)
    assert xpnet.get_device("auto") == Device("cuda", 0)
    with pytest.raises(xpnet.DeviceError, match="only 1 CUDA device"):
        xpnet.get_device("cuda:1", strict=True)


@pytest.mark.parametrize("broken, library", [
    ({"matmul": ImportError("libcublas.so.12: cannot open shared object file")}, "cuBLAS"),
    ({"asarray": RuntimeError("cudaErrorNoKernelImageForDevice")}, "the CUDA runtime"),
])
def test_gpu_smoke_test_names_the_missing_cuda_library(fake_cupy, broken, library):
    fake_cupy(lambda: 1, **broken)
    assert xpnet.gpu_available() is False
    reason = xpnet.gpu_unavailable_reason()
    assert library in reason and str(next(iter(broken.values()))) in reason
    assert 'pip install "xpnet[cuda12]"' in reason
    with pytest.warns(RuntimeWarning, match=re.escape(library)):
        assert xpnet.get_device("cuda") == Device("cpu")


def test_gpu_smoke_test_refuses_wrong_numbers(fake_cupy):
    fake_cupy(lambda: 1)
    sys.modules["cupy"].matmul = lambda a, b: numpy.matmul(a, b) + 1
    assert xpnet.gpu_available() is False
    assert "a matrix product gave wrong numbers" in xpnet.gpu_unavailable_reason()


def test_cuda_n_must_be_the_current_device(fake_cupy):
    fake_cupy(lambda: 2, current=0)
    assert xpnet.get_device("cuda") == Device("cuda", 0)
    for strict_flag in (False, True):
        with pytest.raises(xpnet.DeviceError, match="cuda:1.*current device, cuda:0.*CUDA_VISIBLE_DEVICES=1"):
            xpnet.get_device("cuda:1", strict=strict_flag)
    with pytest.raises(xpnet.DeviceError, match="cuda:1 is not CuPy's current device"):
        Device("cuda", 1).asarray(numpy.ones(2))  # a Device built by hand is checked at the transfer


def test_cuda_follows_cupys_current_device(fake_cupy):
    fake_cupy(lambda: 2, current=1)
    assert xpnet.get_device("cuda") == Device("cuda", 1) == xpnet.get_device("cuda:1", strict=True)
    assert xpnet.get_device("auto") == Device("cuda", 1)
    moved = xpnet.to_device(numpy.arange(3.0), "cuda:1")
    assert isinstance(moved, FakeDeviceArray) and moved.get().tolist() == [0.0, 1.0, 2.0]


def test_detection_forgets_a_fake_once_the_cache_is_cleared(monkeypatch):
    real = xpnet.gpu_unavailable_reason(), xpnet.gpu_available()
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 0))
    try:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "cupy", fake)
            backend._import_cupy.cache_clear()
            assert "no CUDA device" in xpnet.gpu_unavailable_reason()
    finally:
        backend._import_cupy.cache_clear()
    assert sys.modules.get("cupy") is not fake
    assert (xpnet.gpu_unavailable_reason(), xpnet.gpu_available()) == real


@pytest.mark.parametrize("arrays", [
    (numpy.ones(2),), (numpy.ones(2), None, 3, 2.5, True), (None, numpy.float32(1)), (), (None, 1),
])
def test_get_xp_of_host_arrays_is_numpy(arrays):
    assert xpnet.get_xp(*arrays) is numpy


def test_get_xp_of_strict_arrays_is_the_strict_module():
    a = strict.asarray(numpy.ones(3))
    assert xpnet.get_xp(a) is strict
    assert xpnet.get_xp(None, a, 2.0, a * 2) is strict


@pytest.mark.parametrize("order", ["host_first", "device_first"])
def test_get_xp_refuses_to_mix_backends_naming_both_types(order):
    pair = [numpy.ones(3), strict.asarray(numpy.ones(3))]
    if order == "device_first":
        pair.reverse()
    with pytest.raises(TypeError, match=r"(?s)(?=.*numpy\.ndarray)(?=.*StrictArray)(?=.*to_device)"):
        xpnet.get_xp(*pair)


@pytest.mark.parametrize("value", [[1, 2], "abc", object()])
def test_get_xp_refuses_non_arrays(value):
    with pytest.raises(TypeError, match=f"got {type(value).__name__}"):
        xpnet.get_xp(numpy.ones(1), value)


def test_round_trip_to_the_strict_device_is_bit_identical_and_counted():
    x = numpy.random.default_rng(0).standard_normal((3, 4)).astype(numpy.float32)
    before = dict(TRANSFERS)
    on_device = xpnet.to_device(x, STRICT_DEVICE)
    assert isinstance(on_device, StrictArray) and xpnet.device_of(on_device) == STRICT_DEVICE
    assert TRANSFERS["to_device"] == before["to_device"] + 1 and TRANSFERS["to_host"] == before["to_host"]
    back = xpnet.to_numpy(on_device)
    assert TRANSFERS["to_host"] == before["to_host"] + 1
    assert type(back) is numpy.ndarray and back.dtype == x.dtype
    numpy.testing.assert_array_equal(back, x)
    again = xpnet.to_device(on_device, "cpu")
    assert TRANSFERS["to_host"] == before["to_host"] + 2
    numpy.testing.assert_array_equal(again, x)


def test_to_device_on_the_same_device_returns_the_same_object():
    x = numpy.ones(3)
    before = dict(TRANSFERS)
    assert xpnet.to_device(x, "cpu") is x
    assert xpnet.to_device(x, Device("cpu")) is x
    on_device = strict.asarray(x)
    assert xpnet.to_device(on_device, STRICT_DEVICE) is on_device
    assert TRANSFERS["to_host"] == before["to_host"]
    assert TRANSFERS["to_device"] == before["to_device"] + 1


def test_to_numpy_of_host_data():
    x = numpy.arange(4.0)
    assert xpnet.to_numpy(x) is x
    scalar = xpnet.to_numpy(numpy.float32(2.5))
    assert isinstance(scalar, numpy.ndarray) and scalar.shape == () and scalar.dtype == numpy.float32
    numpy.testing.assert_array_equal(xpnet.to_numpy([1, 2]), [1, 2])


def test_device_of():
    assert xpnet.device_of(numpy.ones(2)) == Device("cpu")
    assert xpnet.device_of(numpy.float64(1)) == Device("cpu")
    assert xpnet.device_of(strict.asarray(numpy.ones(2))) == STRICT_DEVICE
    with pytest.raises(TypeError, match="got list"):
        xpnet.device_of([1.0])


def test_cpu_device_asarray_does_not_copy_host_arrays():
    x = numpy.ones(3)
    assert Device("cpu").asarray(x) is x
