"""compile/fit/evaluate/predict on every backend: learning, History, progress, splits, casts,
determinism, host-transfer bounds, non-finite losses and bad inputs (docs/reliability.md §D, §H)."""

import functools
import importlib.util
import warnings

import numpy
import pytest

import xpnet
from tests.helpers import assert_blas_close, host
from tests.strict_backend import STRICT_DEVICE, TRANSFERS
from xpnet import layers as L
from xpnet import ops, optim, training
from xpnet.models import lenet5

HISTORY_KEYS = {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "images_per_s"}


@functools.lru_cache(maxsize=1)
def mnist():
    """The built-in MNIST, loaded once per session (shared by the other model test files)."""
    return xpnet.datasets.load_mnist()


def train_slice(n=512):
    (x, y), _ = mnist()
    return x[:n], y[:n]


def held_out(n=200):
    _, (x, y) = mnist()
    return x[:n], y[:n]


def tiny(seed=0, device="cpu", lr=3e-3, optimizer=None, metrics=("accuracy",), compile=True):
    """Conv 1->4 k5 s2, ReLU, max pool 2, flatten, linear 144->10: trains in milliseconds."""
    model = xpnet.Sequential(L.Conv2d(1, 4, 5, stride=2), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                             L.Linear(144, 10), seed=seed, device=device)
    if compile:
        model.compile(optimizer or optim.Adam(lr=lr), "cross_entropy", list(metrics))
    return model


def weights(model):
    return [host(p.value).copy() for p in model.parameters()]


def snapshot(model):
    """Everything a failed call must leave alone."""
    opt = model.optimizer
    return {
        "weights": [host(v.value).copy() for _, v in model.variables()],
        "grads": [host(p.grad).copy() for p in model.parameters()],
        "state": None if opt is None else [{k: host(a).copy() for k, a in s.items()} for s in opt.state],
        "iterations": None if opt is None else opt.iterations,
        "epoch": model.epoch,
        "rng": model.rng.bit_generator.state,
        "device": model.device,
        "compiled": (opt, model.loss_name, list(model.metric_names)),
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    for key in ("weights", "grads"):
        assert len(after[key]) == len(before[key])
        for a, b in zip(after[key], before[key]):
            numpy.testing.assert_array_equal(a, b, err_msg=f"{key} changed")
    if before["state"] is not None:
        assert len(after["state"]) == len(before["state"])
        for s, s0 in zip(after["state"], before["state"]):
            assert set(s) == set(s0)
            for k in s:
                numpy.testing.assert_array_equal(s[k], s0[k], err_msg=f"optimizer state {k} changed")
    for key in ("iterations", "epoch", "rng", "device"):
        assert after[key] == before[key], f"{key} changed"
    assert after["compiled"][0] is before["compiled"][0] and after["compiled"][1:] == before["compiled"][1:]


def history_values(history):
    """History without the timing entry (which differs between runs)."""
    return {k: v for k, v in history.history.items() if k != "images_per_s"}


# --- learning and the History --------------------------------------------------------------
def test_fit_learns_and_history_has_one_entry_per_epoch(device):
    x, y = train_slice()
    model = tiny(device=device)
    history = model.fit(x, y, epochs=3, batch_size=64, validation_data=held_out(), verbose=0)
    assert isinstance(history, xpnet.callbacks.History)
    assert set(history.history) == HISTORY_KEYS
    assert all(len(v) == 3 for v in history.history.values()) and history.epoch == [0, 1, 2]
    assert all(isinstance(v, float) for values in history.history.values() for v in values)
    loss, acc = history["loss"], history["accuracy"]
    assert loss[0] > loss[1] > loss[2] and acc[0] < acc[1] < acc[2]
    assert history["val_loss"][2] < history["val_loss"][0] and history["val_accuracy"][2] > 0.4
    assert history["lr"] == [pytest.approx(3e-3)] * 3
    assert all(v > 0 for v in history["images_per_s"])
    assert history.nonfinite is None and model.epoch == 3
    assert all(xpnet.device_of(p.value) == device for p in model.parameters())
    # as in Keras, initial_epoch continues a run and a plain second call trains again
    more = model.fit(x, y, epochs=4, initial_epoch=model.epoch, batch_size=64, verbose=0)
    assert more.epoch == [3] and model.epoch == 4
    before = host(model.parameters()[0].value).copy()
    again = model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert again.epoch == [0] and model.epoch == 1
    assert not numpy.array_equal(host(model.parameters()[0].value), before)


def test_lenet5_learns_on_a_small_slice(device):
    x, y = train_slice(256)
    model = lenet5(seed=0, device=device).compile(optim.Adam(lr=2e-3), "cross_entropy", ["accuracy"])
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert history["loss"][1] < history["loss"][0] and history["accuracy"][1] > history["accuracy"][0]


def parse_verbose2(text):
    """{key: [values per epoch]} from the lines verbose=2 prints."""
    parsed = {}
    lines = [line for line in text.splitlines() if line.startswith("Epoch ")]
    for line in lines:
        _, _, body = line.partition(": ")
        for part in body.split(" · "):
            if part.endswith(" img/s"):
                parsed.setdefault("images_per_s", []).append(float(part[:-6].replace(",", "")))
            else:
                key, value = part.rsplit(" ", 1)
                parsed.setdefault(key, []).append(float(value))
    return lines, parsed


def test_history_equals_what_verbose_2_printed(device, capsys):
    x, y = train_slice(256)
    history = tiny(device=device).fit(x, y, epochs=2, batch_size=64, validation_split=0.25, verbose=2)
    lines, printed = parse_verbose2(capsys.readouterr().out)
    assert [line.split(":")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert set(printed) == set(history.history) == HISTORY_KEYS
    for key, values in history.history.items():
        assert len(printed[key]) == len(values) == 2
        for shown, value in zip(printed[key], values):
            if key == "images_per_s":
                assert abs(shown - value) <= 0.5
            elif key == "lr":
                assert shown == pytest.approx(value, rel=1e-3)
            else:
                assert abs(shown - value) <= 5e-5, (key, shown, value)


def test_verbose_0_prints_nothing(device, capsys):
    x, y = train_slice(128)
    model = tiny(device=device)
    model.fit(x, y, epochs=2, batch_size=64, validation_split=0.25, verbose=0)
    model.evaluate(x, y)
    model.predict(x)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_1_shows_a_progress_bar_with_the_final_values(capsys):
    x, y = train_slice(128)
    history = tiny().fit(x, y, epochs=1, batch_size=32, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out
    if importlib.util.find_spec("tqdm") is not None:  # an optional extra; without it, one line per epoch
        assert "4/4" in out
    assert f"loss {history['loss'][0]:.4f}" in out and f"accuracy {history['accuracy'][0]:.4f}" in out


def test_evaluate_prints_only_when_verbose(capsys):
    x, y = held_out(64)
    result = tiny().evaluate(x, y, verbose=1)
    assert f"loss {result['loss']:.4f}" in capsys.readouterr().out


# --- which samples go where ----------------------------------------------------------------
class Spy:
    """Records, through model.forward, which samples each pass sees (by image bytes)."""

    def __init__(self, model, x):
        self.index = {sample.tobytes(): i for i, sample in enumerate(x)}
        assert len(self.index) == len(x), "test data must have distinct samples"
        self.train, self.eval = [], []
        original = model.forward

        def forward(batch, train=None):
            rows = [self.index[sample.tobytes()] for sample in host(batch)]
            (self.train if train else self.eval).append(rows)
            return original(batch, train=train)
        model.forward = forward


def test_validation_split_is_random_seeded_and_disjoint(device):
    x, y = train_slice(200)

    def split(seed):
        model = tiny(seed=seed, device=device)
        spy = Spy(model, x)
        model.fit(x, y, epochs=1, batch_size=32, validation_split=0.2, verbose=0)
        val = sorted(i for batch in spy.eval for i in batch)
        train = sorted(i for batch in spy.train for i in batch)
        return val, train

    val, train = split(0)
    assert len(val) == 40 and len(train) == 160
    assert sorted(val + train) == list(range(200))  # disjoint, nothing lost
    assert val != list(range(160, 200)), "validation split is the last fraction (Keras), not random"
    assert split(0)[0] == val  # same seed, same split
    assert split(1)[0] != val  # another seed, another split


def test_validation_split_is_the_same_on_every_call(device):
    x, y = train_slice(200)
    model = tiny(device=device)
    spy = Spy(model, x)
    model.fit(x, y, epochs=1, batch_size=32, validation_split=0.2, verbose=0)
    first = sorted(i for b in spy.eval for i in b)
    spy.eval.clear()
    model.fit(x, y, epochs=1, batch_size=32, validation_split=0.2, verbose=0)
    assert sorted(i for b in spy.eval for i in b) == first


def test_validation_data_is_evaluated_each_epoch(device):
    x, y = train_slice(128)
    xv, yv = held_out(64)
    model = tiny(device=device)
    spy = Spy(model, numpy.concatenate([x, xv]))
    history = model.fit(x, y, epochs=2, batch_size=32, validation_data=(xv, yv), verbose=0)
    assert sorted(i for b in spy.eval for i in b) == sorted(list(range(128, 192)) * 2)
    assert sorted(i for b in spy.train for i in b) == sorted(list(range(128)) * 2)
    # bit-exact: fit validates in batches of batch_size, so evaluate with 32 repeats the same GEMMs
    assert history["val_loss"][-1] == model.evaluate(xv, yv, batch_size=32)["loss"]
    assert history["val_accuracy"][-1] == model.evaluate(xv, yv, batch_size=32)["accuracy"]


def test_validation_name_prefixes_the_held_out_keys(capsys):
    x, y = train_slice(64)
    xv, yv = held_out(32)
    model = tiny()
    history = model.fit(x, y, epochs=1, batch_size=32, validation_data=(xv, yv), validation_name="test", verbose=2)
    assert set(history.history) == {"loss", "accuracy", "lr", "images_per_s", "test_loss", "test_accuracy"}
    assert model.log_keys[-2:] == ["test_loss", "test_accuracy"]
    out = capsys.readouterr().out
    assert "test_accuracy" in out and "val_" not in out
    with pytest.raises(ValueError, match="validation_name must be a name such as 'val' or 'test'; received 'a b'"):
        model.fit(x, y, validation_data=(xv, yv), validation_name="a b")


def test_shuffle_false_keeps_the_order_and_shuffle_true_permutes(device):
    x, y = train_slice(96)
    model = tiny(device=device)
    spy = Spy(model, x)
    model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    assert spy.train == [list(range(i, i + 32)) for i in (0, 32, 64)] * 2
    spy.train.clear()
    model.fit(x, y, epochs=4, batch_size=32, shuffle=True, verbose=0)
    orders = [sum(spy.train[i:i + 3], []) for i in (0, 3)]
    assert all(sorted(o) == list(range(96)) for o in orders)
    assert orders[0] != list(range(96)) and orders[0] != orders[1]


def test_shuffle_false_is_deterministic(device):
    x, y = train_slice(128)
    runs = [tiny(seed=0, device=device) for _ in range(2)]
    histories = [m.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0) for m in runs]
    # bit-exact: the same computation (same ops, same shapes) twice on one machine
    assert history_values(histories[0]) == history_values(histories[1])
    for a, b in zip(weights(runs[0]), weights(runs[1])):
        numpy.testing.assert_array_equal(a, b)


def test_last_partial_batch_is_trained_and_weighted_by_its_size(device):
    x, y = train_slice(70)
    model = tiny(device=device)
    spy = Spy(model, x)
    history = model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert [len(b) for b in spy.train] == [32, 32, 6]
    assert history["accuracy"][0] * 70 == pytest.approx(round(history["accuracy"][0] * 70), abs=1e-9)


# --- evaluate and predict -----------------------------------------------------------------------
def test_evaluate_matches_forward_and_softmax_cross_entropy(device):
    x, y = held_out(100)
    model = tiny(device=device)
    model.fit(*train_slice(256), epochs=1, batch_size=64, verbose=0)
    result = model.evaluate(x, y, batch_size=32)
    assert set(result) == {"loss", "accuracy"} and all(isinstance(v, float) for v in result.values())
    logits = model.forward(device.asarray(x), train=False)
    loss, _ = ops.softmax_cross_entropy(logits, device.asarray(y))
    assert result["loss"] == pytest.approx(float(host(loss)), rel=1e-5)
    # the arg-max of logits from GEMMs of another shape may flip on a near-tie: count on the same batches
    batched = numpy.concatenate([host(model.forward(device.asarray(x[s:s + 32]), train=False))
                                 for s in range(0, len(x), 32)])
    assert result["accuracy"] == numpy.mean(batched.argmax(axis=1) == y)
    assert model.training is False


def test_predict_returns_host_array_equal_to_forward_in_batches(device):
    x, _ = held_out(50)
    model = tiny(device=device)
    model.fit(*train_slice(128), epochs=1, batch_size=64, verbose=0)
    model.train()
    out = model.predict(x, batch_size=256)
    assert type(out) is numpy.ndarray and out.shape == (50, 10) and out.dtype == numpy.float32
    expected = host(model.forward(device.asarray(x), train=False))
    numpy.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # batches of 7 vs one of 50: other GEMM shapes, equal to rounding (conv 5x5 then linear 144)
    assert_blas_close(model.predict(x, batch_size=7), out, reduction_length=25 + 144)
    numpy.testing.assert_array_equal(model.predict(x[:1], batch_size=1).shape, (1, 10))
    assert model.training is False


@pytest.mark.parametrize("dtype", ["uint8", "int32", "int64", "float64", "bool"])
@pytest.mark.filterwarnings("ignore:.*x is uint8 with values up to:RuntimeWarning")  # checked below
def test_inputs_of_any_real_dtype_are_cast(device, dtype):
    (_, _), (raw, labels) = xpnet.datasets.load_mnist(dtype="uint8")
    xr = raw[:64] if dtype != "bool" else raw[:64] > 127
    x = xr.astype(dtype)
    model = tiny(device=device)
    # bit-exact throughout: the cast input goes through the same ops with the same shapes
    expected = model.predict(x.astype(numpy.float32))
    numpy.testing.assert_array_equal(model.predict(x), expected)
    result = model.evaluate(x, labels[:64])
    assert result == model.evaluate(x.astype(numpy.float32), labels[:64])
    other = tiny(device=device)
    reference = tiny(device=device)
    other.fit(x, labels[:64], epochs=1, batch_size=32, verbose=0)
    reference.fit(x.astype(numpy.float32), labels[:64], epochs=1, batch_size=32, verbose=0)
    for a, b in zip(weights(other), weights(reference)):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("label_dtype", ["uint8", "int32", "int16"])
def test_integer_labels_of_any_width_train_the_same(label_dtype):
    x, y = train_slice(96)
    a, b = tiny(), tiny()
    ha = a.fit(x, y.astype(label_dtype), epochs=1, batch_size=32, verbose=0)
    hb = b.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert history_values(ha) == history_values(hb)  # bit-exact: same ops, same shapes, same machine
    for wa, wb in zip(weights(a), weights(b)):
        numpy.testing.assert_array_equal(wa, wb)


def test_one_hot_float_labels_train_like_integer_labels(device):
    x, y = train_slice(128)
    one_hot = numpy.eye(10, dtype=numpy.float32)[y]
    a, b = tiny(device=device), tiny(device=device)
    ha = a.fit(x, one_hot, epochs=2, batch_size=32, validation_data=held_out(64), verbose=0)
    hb = b.fit(x, y, epochs=2, batch_size=32, validation_data=held_out(64), verbose=0)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        numpy.testing.assert_allclose(ha[key], hb[key], rtol=1e-6)
    for wa, wb in zip(weights(a), weights(b)):
        numpy.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)
    xt, yt = held_out(64)
    assert a.evaluate(xt, numpy.eye(10)[yt])["accuracy"] == a.evaluate(xt, yt)["accuracy"]


def test_mse_with_float_targets(device, rng):
    x = rng.random((96, 1, 4, 4), dtype=numpy.float32)
    target = (x.reshape(96, 16) @ rng.standard_normal((16, 2))).astype(numpy.float32)
    model = xpnet.Sequential(L.Flatten(), L.Linear(16, 2), seed=0, device=device)
    model.compile(optim.Adam(lr=5e-2), loss="mse")
    history = model.fit(x, target, epochs=8, batch_size=16, verbose=0)
    assert set(history.history) == {"loss", "lr", "images_per_s"}
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    pred = model.predict(x)
    assert model.evaluate(x, target)["loss"] == pytest.approx(float(numpy.mean((pred - target) ** 2)), rel=1e-4)
    before = snapshot(model)
    with pytest.raises(xpnet.ShapeError, match=r"y has per-sample shape \(3,\) but the model outputs \(2,\)"):
        model.fit(x, numpy.zeros((96, 3), numpy.float32), verbose=0)
    assert_unchanged(model, before)


# --- determinism ------------------------------------------------------------------------------
def test_two_fits_with_the_same_seed_are_bit_identical(device):
    x, y = train_slice(192)
    runs = []
    for _ in range(2):
        model = tiny(seed=5, device=device)
        history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0)
        runs.append((weights(model), history_values(history), model.predict(held_out(32)[0])))
    (w0, h0, p0), (w1, h1, p1) = runs
    assert h0 == h1  # bit-exact: the same computation twice on one machine
    for a, b in zip(w0 + [p0], w1 + [p1]):
        numpy.testing.assert_array_equal(a, b)


def test_numpy_and_strict_backends_train_bit_identically():
    x, y = train_slice(128)
    results = []
    for device in ("cpu", STRICT_DEVICE):
        model = tiny(seed=2, device=device)
        history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0)
        results.append((weights(model), history_values(history)))
    # bit-exact: strict calls numpy with the same shapes (one conv chunk per batch, no grid: stride 2)
    assert results[0][1] == results[1][1]
    for a, b in zip(results[0][0], results[1][0]):
        numpy.testing.assert_array_equal(a, b)


# --- host transfers (ARCHITECTURE §4) ----------------------------------------------------------
@pytest.fixture
def transfers(monkeypatch):
    monkeypatch.setitem(TRANSFERS, "to_device", 0)
    monkeypatch.setitem(TRANSFERS, "to_host", 0)
    return TRANSFERS


@pytest.mark.parametrize("interval", [5, 1])
def test_fit_syncs_the_host_once_per_interval_not_per_batch(monkeypatch, transfers, interval):
    monkeypatch.setattr(training, "SYNC_INTERVAL", interval)
    x, y = train_slice(512)
    model = tiny(device=STRICT_DEVICE)
    transfers.update(to_device=0, to_host=0)
    epochs, batches = 2, 2 * 16  # 16 batches of 32 per epoch
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    assert transfers["to_device"] == 2 * batches  # x and y, one batch at a time
    syncs = epochs * -(-16 // interval)
    assert syncs <= transfers["to_host"] <= syncs + epochs, transfers
    if interval == 5:
        assert transfers["to_host"] <= batches / 5 + epochs
    # validation: 100 images in 4 batches per epoch, one sync for the whole evaluation
    transfers.update(to_device=0, to_host=0)
    model.fit(x, y, epochs=epochs, batch_size=32, validation_data=held_out(100), verbose=0)
    assert transfers["to_device"] == 2 * batches + epochs * 2 * 4
    assert syncs + epochs <= transfers["to_host"] <= syncs + 2 * epochs, transfers


def test_evaluate_and_predict_transfers_are_per_batch_with_one_sync(transfers):
    x, y = held_out(200)
    model = tiny(device=STRICT_DEVICE)
    transfers.update(to_device=0, to_host=0)
    model.evaluate(x, y, batch_size=50)
    assert transfers == {"to_device": 8, "to_host": 1}
    transfers.update(to_device=0, to_host=0)
    model.predict(x, batch_size=50)
    assert transfers == {"to_device": 4, "to_host": 4}


def test_strict_sync_interval_is_not_one():
    assert training.SYNC_INTERVAL >= 5


# --- non-finite losses (docs/reliability.md §H) ------------------------------------------------------
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nonfinite_loss_stops_training_and_records_where(device):
    x, y = train_slice(128)
    model = tiny(device=device)
    history = model.fit(x * 1e38, y, epochs=3, batch_size=32, verbose=0)
    assert history.nonfinite is not None
    assert history.nonfinite["epoch"] == 1 and history.nonfinite["batch"] == 1
    assert not numpy.isfinite(history.nonfinite["loss"])
    assert len(history.epoch) == 1 and model.epoch == 1 and model.stop_training


def test_huge_learning_rate_stops_training_early(device, rng):
    x = rng.random((256, 1, 4, 4), dtype=numpy.float32)
    target = x.reshape(256, 16).sum(axis=1, keepdims=True)

    def diverging():
        model = xpnet.Sequential(L.Flatten(), L.Linear(16, 1), seed=0, device=device)
        return model.compile(optim.SGD(lr=1e6), "mse")

    model = diverging()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflow warnings on the way to inf
        history = model.fit(x, target, epochs=10, batch_size=32, verbose=0)
        assert history.nonfinite is not None, history.history["loss"]
        assert set(history.nonfinite) == {"epoch", "batch", "loss"}
        epoch, batch = history.nonfinite["epoch"], history.nonfinite["batch"]
        assert epoch == 1 and 2 <= batch <= 8 and not numpy.isfinite(history.nonfinite["loss"])
        assert len(history.epoch) == 1 and model.epoch == 1  # stopped early, no exception
        with pytest.raises(xpnet.NonFiniteError, match=rf"at epoch 1, batch {batch}\b.*lr=1e\+06"):
            diverging().fit(x, target, epochs=10, batch_size=32, verbose=0, on_nonfinite="raise")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nonfinite_raise(device):
    x, y = train_slice(128)
    model = tiny(device=device)
    with pytest.raises(xpnet.NonFiniteError, match=r"at epoch 1, batch 1\b") as info:
        model.fit(x * 1e38, y, epochs=3, batch_size=32, verbose=0, on_nonfinite="raise")
    assert isinstance(info.value, FloatingPointError)


# --- bad inputs at the model level (docs/reliability.md §D) --------------------------------------------
def _x(n=8):
    return train_slice(n)[0].copy()


def _y(n=8):
    return train_slice(n)[1].copy()


def _nan_x():
    x = _x()
    x[1, 0, 5, 7] = x[2, 0, 0, 0] = x[3, 0, 1, 1] = numpy.nan
    return x


def _inf_x():
    x = _x()
    x[4, 0, 2, 3] = -numpy.inf
    return x


def _bad_labels():
    y = _y()
    y[1], y[5], y[6] = 10, -1, 10
    return y


BAD_DATA = [
    ("length", lambda: (_x(3), _y(2)), ValueError, r"x has 3 samples but y has 2"),
    ("labels out of range", lambda: (_x(), _bad_labels()), ValueError,
     r"labels must be integers in \[0, 10\); got values \[-1, 10\] \(first at index 1\)"),
    ("labels too big", lambda: (_x(), numpy.full(8, 12)), ValueError, r"got values \[12\] \(first at index 0\)"),
    ("fractional float labels", lambda: (_x(), _y().astype(numpy.float32) + 0.5), ValueError,
     r"float labels must be whole numbers in \[0, 10\); got \d\.5 at index 0"),
    ("labels of another rank", lambda: (_x(), _y()[:, None, None]), ValueError,
     r"labels must be integers of shape \(N,\) or one-hot \(N, 10\); got dtype int64 and shape \(8, 1, 1\)"),
    ("one-hot width", lambda: (_x(), numpy.eye(5, dtype=numpy.float32)[_y() % 5]), xpnet.ShapeError,
     r"y has 5 columns but the model outputs 10 classes"),
    ("3-D labels", lambda: (_x(), numpy.zeros((8, 10, 1), numpy.int64)), ValueError, r"labels must be integers"),
    ("string labels", lambda: (_x(), numpy.array(["1"] * 8)), xpnet.DTypeError, r"y must hold numbers"),
    ("NaN in y", lambda: (_x(), numpy.full((8, 10), numpy.nan, numpy.float32)), ValueError, r"y contains NaN"),
    ("wrong channels", lambda: (numpy.zeros((8, 3, 28, 28), numpy.float32), _y()), xpnet.ShapeError,
     r"input samples of shape \(3, 28, 28\) do not fit the model"),
    ("too small", lambda: (numpy.zeros((8, 1, 20, 20), numpy.float32), _y()), xpnet.ShapeError,
     r"input samples of shape \(1, 20, 20\) do not fit the model.*144"),
    ("flat images", lambda: (numpy.zeros((8, 784), numpy.float32), _y()), xpnet.ShapeError,
     r"input samples of shape \(784,\) do not fit"),
    ("NaN in x", lambda: (_nan_x(), _y()), ValueError,
     r"input x contains NaN \(3 values; first at index \(1, 0, 5, 7\)\)"),
    ("inf in x", lambda: (_inf_x(), _y()), ValueError,
     r"input x contains infinity \(1 values; first at index \(4, 0, 2, 3\)\)"),
    ("no samples", lambda: (_x()[:0], _y()[:0]), ValueError, r"got 0 samples"),
    ("scalar x", lambda: (numpy.float32(1.0), _y(1)), ValueError, r"got 0 samples|samples"),
    ("complex x", lambda: (_x().astype(numpy.complex64), _y()), xpnet.DTypeError,
     r"must hold real numbers; got dtype complex64"),
    ("object x", lambda: (_x().astype(object), _y()), xpnet.DTypeError, r"got dtype object"),
    ("str x", lambda: (numpy.array([["a"]] * 8), _y()), xpnet.DTypeError, r"got dtype <U1"),
]


@pytest.fixture
def trained(device):
    """A compiled model that has trained one epoch (so the optimizer has state to protect)."""
    model = tiny(device=device)
    model.fit(*train_slice(64), epochs=1, batch_size=32, verbose=0)
    assert len(model.optimizer.state) == 4 and model.epoch == 1
    return model


@pytest.mark.parametrize("case, make, error, match", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_is_rejected_and_changes_nothing(trained, case, make, error, match):
    x, y = make()
    before = snapshot(trained)
    with pytest.raises(error, match=match):
        trained.fit(x, y, epochs=3, verbose=0)
    assert_unchanged(trained, before)
    with pytest.raises(error, match=match):
        trained.evaluate(x, y)
    with pytest.raises(error, match=match):
        trained.fit(*train_slice(16), epochs=3, validation_data=(x, y), verbose=0)
    assert_unchanged(trained, before)


BAD_X = [c for c in BAD_DATA if c[0] in ("wrong channels", "too small", "flat images", "NaN in x", "inf in x",
                                         "no samples", "complex x", "object x", "str x")]


@pytest.mark.parametrize("case, make, error, match", BAD_X, ids=[c[0] for c in BAD_X])
def test_predict_rejects_bad_x(trained, case, make, error, match):
    x, _ = make()
    before = snapshot(trained)
    with pytest.raises(error, match=match):
        trained.predict(x)
    assert_unchanged(trained, before)


def test_labels_are_checked_on_the_host_before_any_transfer(transfers):
    model = tiny(device=STRICT_DEVICE)
    transfers.update(to_device=0, to_host=0)
    with pytest.raises(ValueError, match=r"got values \[-1, 10\]"):
        model.fit(_x(), _bad_labels(), verbose=0)
    with pytest.raises(ValueError, match=r"got values \[-1, 10\]"):
        model.evaluate(_x(), _bad_labels())
    assert transfers == {"to_device": 0, "to_host": 0}


BAD_ARGS = [
    (dict(epochs=0), ValueError, r"epochs must be a positive int; received epochs=0"),
    (dict(epochs=2.0), ValueError, r"epochs must be a positive int"),
    (dict(batch_size=0), ValueError, r"batch_size must be a positive int; received batch_size=0"),
    (dict(batch_size=True), ValueError, r"batch_size must be a positive int"),
    (dict(validation_split=1.0), ValueError, r"validation_split must be in \[0, 1\); received 1.0"),
    (dict(validation_split=-0.1), ValueError, r"validation_split must be in \[0, 1\)"),
    (dict(validation_split=0.01), ValueError, r"validation_split=0.01 leaves 8 training and 0 validation"),
    (dict(validation_split=0.99), ValueError, r"leaves 0 training and 8 validation"),
    (dict(on_nonfinite="bogus"), ValueError, r"on_nonfinite must be 'stop' or 'raise'; received 'bogus'"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_ARGS)
def test_bad_fit_arguments_are_rejected_and_change_nothing(trained, kwargs, error, match):
    before = snapshot(trained)
    with pytest.raises(error, match=match):
        trained.fit(_x(), _y(), **{"epochs": 3, "verbose": 0, **kwargs})
    assert_unchanged(trained, before)


def test_bad_batch_size_for_evaluate_and_predict(trained):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        trained.evaluate(_x(), _y(), batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        trained.predict(_x(), batch_size=-1)


def test_fit_and_evaluate_before_compile(device):
    model = tiny(device=device, compile=False)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match=r"call compile\(\) before fit\(\)"):
        model.fit(_x(), _y(), verbose=0)
    with pytest.raises(RuntimeError, match=r"call compile\(\) before evaluate\(\)"):
        model.evaluate(_x(), _y())
    assert_unchanged(model, before)
    assert model.predict(_x()).shape == (8, 10)  # predict needs no compile (like Keras)


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss="cross_entropi"), r"Unknown loss 'cross_entropi'\. Available: .*Did you mean 'cross_entropy'\?"),
    (dict(metrics=["acuracy"]), r"Unknown metric 'acuracy'\. Available: accuracy.*Did you mean 'accuracy'\?"),
    (dict(optimizer="adma"), r"Unknown optimizer 'adma'\. Available: .*Did you mean 'adam'\?"),
])
def test_unknown_names_are_rejected_with_a_suggestion_and_change_nothing(trained, kwargs, match):
    before = snapshot(trained)
    with pytest.raises(ValueError, match=match):
        trained.compile(**{"optimizer": "sgd", "loss": "cross_entropy", "metrics": ["accuracy"], **kwargs})
    assert_unchanged(trained, before)


def test_failed_compile_keeps_the_previous_configuration(trained):
    before = snapshot(trained)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        trained.compile(optimizer="bogus", loss="mse")
    assert_unchanged(trained, before)
    assert trained.loss_name == "cross_entropy"


def test_compile_accepts_aliases_and_returns_the_model():
    model = tiny(compile=False)
    assert model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"]) is model
    assert model.loss_name == "cross_entropy" and isinstance(model.optimizer, optim.SGD)
    assert model.optimizer.params == model.parameters()


def test_custom_loss_takes_integer_labels_or_targets_shaped_like_the_output(device):
    x, y = train_slice(64)
    smoothed = functools.partial(ops.softmax_cross_entropy, label_smoothing=0.1, validate=False)
    model = tiny(device=device).compile("adam", smoothed, ["accuracy"])
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert model.loss_name == "custom_loss" and numpy.isfinite(history["loss"][0])
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 10\)"):
        model.fit(x, y + 10, epochs=1, batch_size=32, verbose=0)
    onehot = numpy.eye(10, dtype=numpy.float32)[y]
    assert numpy.isfinite(model.fit(x, onehot, epochs=1, batch_size=32, verbose=0)["loss"][0])


def test_predict_proba_and_predict_classes():
    x, _ = train_slice(16)
    model = tiny()
    logits = model.predict(x)
    proba = model.predict_proba(x)
    assert proba.shape == logits.shape and proba.dtype == logits.dtype
    numpy.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    numpy.testing.assert_array_equal(model.predict_classes(x), logits.argmax(axis=1))
    assert model.predict_classes(x).dtype == numpy.int64
    with_softmax = xpnet.Sequential(*tiny().layers, L.Softmax(), seed=0)  # already probabilities: unchanged
    numpy.testing.assert_array_equal(with_softmax.predict_proba(x), with_softmax.predict(x))


def test_whole_number_float_labels_are_accepted_and_others_refused():
    x, y = train_slice(32)
    a, b = tiny(seed=0), tiny(seed=0)
    ha = a.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    hb = b.fit(x, y.astype(float), epochs=1, batch_size=16, verbose=0, shuffle=False)
    assert ha.history["loss"] == hb.history["loss"]  # the same computation: bit-exact
    for bad, shown in ((2.5, "2.5"), (10.0, "10.0"), (-1.0, "-1.0")):
        labels = y.astype(float)
        labels[3] = bad
        with pytest.raises(ValueError, match=rf"float labels must be whole numbers in \[0, 10\); got .*{shown} at "
                                             r"index 3"):
            tiny().fit(x, labels, verbose=0)


def test_uint8_images_above_one_warn_that_they_are_not_scaled():
    (_, _), (raw, _) = xpnet.datasets.load_mnist(dtype="uint8")
    model = tiny()
    with pytest.warns(RuntimeWarning, match=r"predict: x is uint8 with values up to 255; it is cast to float "
                                            r"without scaling \(divide by 255"):
        model.predict(raw[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict((raw[:4] > 127).astype(numpy.uint8))  # 0/1 masks are fine as they are


def test_one_unbatched_sample_gives_one_unbatched_result():
    x, _ = train_slice(3)
    model = tiny()
    batch = model.predict(x)
    one = model.predict(x[1])  # (1, 28, 28): one sample, as torch's conv layers accept
    assert one.shape == (10,)
    assert_blas_close(one, batch[1], reduction_length=25 + 144)  # batch 1 against 3: other GEMM shapes
    assert model.predict_classes(x[1]) == batch[1].argmax() and model.predict_proba(x[1]).shape == (10,)


@pytest.mark.parametrize("shape, received", [((28, 28), r"x has shape \(28, 28\) \(28 samples\)"),
                                             ((2, 3, 28, 28), r"x has shape \(2, 3, 28, 28\) \(2 samples\)")])
def test_a_misshapen_input_names_the_expected_sample_shape_and_the_whole_shape(shape, received):
    with pytest.raises(xpnet.ShapeError, match=received + r", the model takes samples of shape \(1, H, W\) \(give a "
                                               r"batch \(N, \*sample\), or one sample\)"):
        tiny().predict(numpy.zeros(shape, numpy.float32))
