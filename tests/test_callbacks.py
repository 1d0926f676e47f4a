"""Callbacks on every backend: EarlyStopping, ModelCheckpoint, CSVLogger, ReduceLROnPlateau, History."""

import csv
import warnings

import numpy
import pytest

import xpnet
from tests.helpers import host
from tests.test_training import held_out, tiny, train_slice
from xpnet import optim
from xpnet.callbacks import Callback, CSVLogger, EarlyStopping, History, ModelCheckpoint, ReduceLROnPlateau


class Script(Callback):
    """Puts a scripted value under ``key`` into each epoch's logs (callbacks after it see it)."""

    def __init__(self, values, key="score"):
        self.values, self.key = list(values), key

    def on_epoch_end(self, epoch, logs):
        logs[self.key] = self.values[epoch]


class Snapshots(Callback):
    """Host copies of every model variable at the end of each epoch."""

    def __init__(self):
        self.weights = []

    def on_epoch_end(self, epoch, logs):
        self.weights.append([host(v.value).copy() for _, v in self.model.variables()])


def current(model):
    return [host(v.value).copy() for _, v in model.variables()]


def assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        numpy.testing.assert_array_equal(u, v)


def fit(model, callbacks, epochs, **kwargs):
    x, y = train_slice(128)
    return model.fit(x, y, epochs=epochs, batch_size=32, callbacks=callbacks, verbose=0, **kwargs)


# --- EarlyStopping -------------------------------------------------------------------------
@pytest.mark.parametrize("patience, stops_after", [(0, 3), (1, 4), (2, 5)])
def test_early_stopping_tolerates_patience_epochs_without_improvement(patience, stops_after):
    # best at epoch 2 (index 1); every later epoch is worse
    scores = [3.0, 2.0, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0]
    stopper = EarlyStopping(monitor="score", patience=patience)
    history = fit(tiny(), [Script(scores), stopper], epochs=8)
    assert len(history.epoch) == stops_after
    assert stopper.stopped_epoch == stops_after - 1 and stopper.best == 2.0


def test_early_stopping_restores_the_best_weights(device):
    scores = [3.0, 1.0, 2.0, 2.5, 0.5, 4.0]
    snapshots = Snapshots()
    model = tiny(device=device)
    stopper = EarlyStopping(monitor="score", patience=1, restore_best_weights=True)
    history = fit(model, [Script(scores), snapshots, stopper], epochs=6)
    assert len(history.epoch) == 4  # epochs 3 and 4 do not improve on epoch 2
    assert_same(current(model), snapshots.weights[1])
    assert not numpy.array_equal(snapshots.weights[1][0], snapshots.weights[3][0])
    assert all(xpnet.device_of(p.value) == device for p in model.parameters())
    model.fit(*train_slice(64), epochs=5, batch_size=32, verbose=0)  # still trains after the restore


def test_early_stopping_without_restore_keeps_the_last_weights(device):
    snapshots = Snapshots()
    model = tiny(device=device)
    fit(model, [Script([1.0, 2.0, 3.0]), snapshots, EarlyStopping(monitor="score", patience=0)], epochs=3)
    assert len(snapshots.weights) == 2
    assert_same(current(model), snapshots.weights[-1])


def test_early_stopping_on_accuracy_maximizes_and_resets_between_fits():
    stopper = EarlyStopping(monitor="val_accuracy", patience=0)
    assert stopper.bigger_is_better
    fit(tiny(), [Script([0.5, 0.6, 0.55, 0.9], key="val_accuracy"), stopper], epochs=4)
    assert stopper.stopped_epoch == 2 and stopper.best == 0.6
    assert EarlyStopping(monitor="val_loss").bigger_is_better is False
    assert EarlyStopping(monitor="val_loss", mode="max").bigger_is_better is True
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max'; received 'up'"):
        EarlyStopping(mode="up")


def test_early_stopping_min_delta():
    stopper = EarlyStopping(monitor="score", patience=0, min_delta=0.1)
    history = fit(tiny(), [Script([1.0, 0.95, 0.5]), stopper], epochs=3)
    assert len(history.epoch) == 2  # 0.95 is not better than 1.0 by 0.1


def test_early_stopping_on_real_val_loss_runs_every_epoch_while_it_improves(device):
    x, y = train_slice(256)
    model = tiny(device=device)
    stopper = EarlyStopping(monitor="val_loss", patience=0, restore_best_weights=True)
    history = model.fit(x, y, epochs=3, batch_size=32, validation_data=held_out(100), callbacks=[stopper],
                        verbose=0)
    assert len(history.epoch) == 3 and stopper.stopped_epoch is None
    assert stopper.best == history["val_loss"][-1] == min(history["val_loss"])


# --- ModelCheckpoint -----------------------------------------------------------------------
def test_model_checkpoint_every_epoch(device, tmp_path):
    snapshots = Snapshots()
    model = tiny(device=device)
    checkpoint = ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.xpnet")
    history = fit(model, [snapshots, checkpoint], epochs=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"ckpt-{e:02d}-{history['loss'][e - 1]:.3f}.xpnet" for e in (1, 2, 3)]
    assert checkpoint.saved == [str(tmp_path / n) for n in names]
    for epoch, name in enumerate(names):
        loaded = xpnet.load(tmp_path / name)
        assert_same(current(loaded), snapshots.weights[epoch])
        assert loaded.epoch == epoch + 1  # a full checkpoint (include_optimizer=True by default)
    assert len(list(tmp_path.iterdir())) == 3  # no temporary files left behind


def test_model_checkpoint_save_best_only(device, tmp_path):
    snapshots = Snapshots()
    model = tiny(device=device)
    checkpoint = ModelCheckpoint(tmp_path / "best-{epoch}.xpnet", monitor="score", save_best_only=True)
    fit(model, [Script([3.0, 2.0, 2.5, 1.0, 1.0]), snapshots, checkpoint], epochs=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-1.xpnet", "best-2.xpnet", "best-4.xpnet"]
    assert_same(current(xpnet.load(tmp_path / "best-4.xpnet")), snapshots.weights[3])


def test_model_checkpoint_fixed_name_holds_the_best_epoch(tmp_path):
    snapshots = Snapshots()
    path = tmp_path / "best.xpnet"
    fit(tiny(), [Script([0.2, 0.5, 0.9, 0.4], key="val_accuracy"), snapshots,
                 ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True, include_optimizer=False)],
        epochs=4)
    loaded = xpnet.load(path)
    assert_same(current(loaded), snapshots.weights[2])
    assert loaded.epoch == 0  # weights only


# --- CSVLogger -----------------------------------------------------------------------------
def test_csv_logger_writes_a_header_and_one_row_per_epoch(device, tmp_path):
    path = tmp_path / "log.csv"
    x, y = train_slice(128)
    history = tiny(device=device).fit(x, y, epochs=3, batch_size=32, validation_data=held_out(64),
                                      callbacks=[CSVLogger(path)], verbose=0)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", *history.history]
    assert set(rows[0][1:]) == {"loss", "accuracy", "lr", "images_per_s", "val_loss", "val_accuracy"}
    assert len(rows) == 4
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch + 1
        assert [float(v) for v in row[1:]] == [history.history[k][epoch] for k in rows[0][1:]]


def test_csv_logger_overwrites_or_appends(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old contents\n")
    fit(tiny(), [CSVLogger(path)], epochs=2)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("epoch,loss,accuracy") and len(lines) == 3
    model = tiny()
    fit(model, [CSVLogger(path, append=True)], epochs=2)
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and sum(line.startswith("epoch,") for line in lines) == 1
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "1", "2"]


# --- ReduceLROnPlateau ---------------------------------------------------------------------
def test_reduce_lr_on_plateau_lowers_the_learning_rate(device):
    model = tiny(device=device, optimizer=optim.SGD(lr=0.01))
    # the learning rate never increases, so "lr" in mode max cannot improve after epoch 1
    reducer = ReduceLROnPlateau(monitor="lr", mode="max", factor=0.1, patience=1)
    history = fit(model, [reducer], epochs=5)
    numpy.testing.assert_allclose(history["lr"], [0.01, 0.01, 0.01, 0.001, 0.001], rtol=1e-12)
    assert model.optimizer.current_lr() == pytest.approx(1e-4, rel=1e-12)


def test_reduce_lr_on_plateau_respects_min_lr_and_cooldown():
    model = tiny(optimizer=optim.SGD(lr=0.01))
    fit(model, [ReduceLROnPlateau(monitor="lr", mode="max", factor=0.1, patience=0, min_lr=5e-4)], epochs=4)
    assert model.optimizer.current_lr() == pytest.approx(5e-4, rel=1e-12)
    model = tiny(optimizer=optim.SGD(lr=0.01))
    history = fit(model, [ReduceLROnPlateau(monitor="lr", mode="max", factor=0.5, patience=0, cooldown=1)],
                  epochs=5)
    numpy.testing.assert_allclose(history["lr"], [0.01, 0.01, 0.005, 0.005, 0.0025], rtol=1e-12)


def test_reduce_lr_on_plateau_changes_the_actual_updates(rng):
    """The reduced rate is what the optimizer uses, not just what is logged."""
    x, y = train_slice(64)
    a = tiny(optimizer=optim.SGD(lr=0.01))
    b = tiny(optimizer=optim.SGD(lr=0.01))
    a.fit(x, y, epochs=2, batch_size=64, verbose=0)
    b.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[ReduceLROnPlateau(monitor="lr", patience=0,
                                                                                 mode="max", factor=0.5)])
    assert_same(current(a), current(b))  # the reduction happens at the end of epoch 2 (same shapes: bit-exact)
    assert b.optimizer.current_lr() == 0.005
    before = [host(p.value).copy() for p in a.parameters()]
    a.optimizer.lr = 0.005
    a.fit(x, y, epochs=4, batch_size=64, verbose=0)
    b.fit(x, y, epochs=4, batch_size=64, verbose=0)
    assert_same(current(a), current(b))
    assert not numpy.array_equal(before[0], host(a.parameters()[0].value))


def test_reduce_lr_on_plateau_rejects_a_bad_factor():
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\); received factor=1.5"):
        ReduceLROnPlateau(factor=1.5)


# --- monitoring a key that is not logged ----------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda tmp: EarlyStopping(monitor="val_loss", patience=0),
    lambda tmp: ModelCheckpoint(tmp / "m.xpnet", monitor="val_loss", save_best_only=True),
    lambda tmp: ReduceLROnPlateau(monitor="val_loss", patience=0),
], ids=["EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau"])
def test_monitoring_a_missing_key_warns_once_and_does_nothing(make, tmp_path):
    callback = make(tmp_path)
    model = tiny(optimizer=optim.SGD(lr=0.01))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(model, [callback], epochs=3)
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len(messages) == 1, messages
    assert "'val_loss'" in messages[0] and "not logged" in messages[0] and "loss, accuracy" in messages[0]
    assert len(history.epoch) == 3 and model.optimizer.current_lr() == 0.01
    assert list(tmp_path.iterdir()) == []


# --- History and the callback protocol ------------------------------------------------------
def test_callback_hooks_are_called_in_order_with_the_logged_values(device):
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, logs=None):
            calls.append(("train_begin", self.model is model))

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(("epoch_begin", epoch))

        def on_epoch_end(self, epoch, logs):
            calls.append(("epoch_end", epoch, dict(logs)))

        def on_train_end(self, logs=None):
            calls.append(("train_end",))

    model = tiny(device=device)
    history = fit(model, [Recorder()], epochs=2)
    assert [c[0] for c in calls] == ["train_begin", "epoch_begin", "epoch_end", "epoch_begin", "epoch_end",
                                     "train_end"]
    assert calls[0][1] is True
    for epoch in (0, 1):
        logs = calls[2 + 2 * epoch][2]
        assert {k: [v] for k, v in logs.items()} == {k: [vals[epoch]] for k, vals in history.history.items()}
    assert isinstance(history, History) and "History(epochs=2" in repr(history)


def test_a_callback_can_stop_training():
    class StopAfterFirst(Callback):
        def on_epoch_end(self, epoch, logs):
            self.model.stop_training = True

    model = tiny()
    assert len(fit(model, [StopAfterFirst()], epochs=5).epoch) == 1
    assert len(fit(model, [], epochs=3).epoch) == 3  # stop_training is reset by the next fit
