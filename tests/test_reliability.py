"""Bad luck and bad input: a run that goes wrong never destroys a good model, and no file or
dataset can exhaust memory (docs/reliability.md lists each failure mode and what xpnet does)."""

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy
import pytest

import xpnet
from tests.test_datasets import idx_bytes, write_mnist
from tests.test_training import mnist
from xpnet import callbacks, layers, optim
from xpnet.cli import main
from xpnet.datasets import read_idx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """The four IDX files of 64 training and 32 test images from the built-in data."""
    (x, y), (xt, yt) = mnist()
    raw = lambda a: numpy.rint(a[:, 0] * 255).astype(numpy.uint8)  # noqa: E731
    return write_mnist(tmp_path_factory.mktemp("tiny"), raw(x[:64]), y[:64].astype(numpy.uint8),
                       raw(xt[:32]), yt[:32].astype(numpy.uint8))


def small_model(seed=0):
    model = xpnet.Sequential(layers.Flatten(), layers.Linear(784, 16), layers.ReLU(), layers.Linear(16, 10), seed=seed)
    return model.compile(optim.SGD(lr=0.05), "cross_entropy", ["accuracy"])


def train_args(folder, out, *extra):
    return ["train", "--data", str(folder), "--out", str(out), "--epochs", "1", "--verbose", "0", *extra]


def rewrite_config(src, dst, edit):
    """Copy a model file with its config.json changed by ``edit`` (members stay uncompressed)."""
    with zipfile.ZipFile(src) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    text = edit(config) or json.dumps(config)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, text if name == "config.json" else data)
    return dst


# --- 1, 2: non-finite weights never replace a good file -------------------------------
def test_cli_diverging_run_keeps_the_good_file_and_exits_3(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "m.xpnet"
    assert main(train_args(tiny_mnist, out)) == 0
    good = out.read_bytes()
    assert main(train_args(tiny_mnist, out, "--lr", "1e30", "--batch-size", "16")) == 3
    err = capsys.readouterr().err
    assert re.search(r"stopped: the loss became \S+ at epoch 1, batch \d+ .*nothing saved; .*m\.xpnet is unchanged",
                     err)
    assert out.read_bytes() == good and numpy.isfinite(xpnet.load(out).predict(mnist()[1][0][:4])).all()


def test_save_refuses_non_finite_weights_and_writes_nothing(tmp_path):
    model, path = small_model(), tmp_path / "m.xpnet"
    model.save(path)
    good = path.read_bytes()
    model.layers[1].weight.value[0, 3] = numpy.nan
    with pytest.raises(xpnet.NonFiniteError, match=r"m\.xpnet: not saved: NaN or infinity in 1\.weight"):
        model.save(path)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["m.xpnet"]
    model.save(tmp_path / "nan.xpnet", allow_nonfinite=True)  # on purpose, to inspect a divergence
    assert numpy.isnan(xpnet.load(tmp_path / "nan.xpnet").layers[1].weight.value[0, 3])


class DivergeAtEpoch(callbacks.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.optimizer.lr_scale = 1e30


def test_model_checkpoint_keeps_the_last_good_checkpoint_when_an_epoch_diverges(tmp_path):
    (x, y), _ = mnist()
    path = tmp_path / "ckpt.xpnet"
    model = small_model()
    skipped = "epoch 2 ended on a non-finite loss; not saved"
    with numpy.errstate(all="ignore"), pytest.warns(RuntimeWarning, match=skipped):
        history = model.fit(x[:256], y[:256], epochs=3, batch_size=64, verbose=0,
                            callbacks=[callbacks.ModelCheckpoint(path), DivergeAtEpoch(1)])
    assert history.nonfinite["epoch"] == 2
    saved = xpnet.load(path)
    assert saved.epoch == 1 and all(numpy.isfinite(v.value).all() for _, v in saved.variables())


# --- 3: output paths are checked before training ----------------------------------------
@pytest.mark.parametrize("make_out, pattern", [
    (lambda tmp: tmp / "no-such-folder" / "m.xpnet",
     r"cannot write \S*no-such-folder/m\.xpnet: the folder .* does not exist"),
    (lambda tmp: tmp, r"is a folder; give the path of a file to write"),
])
def test_cli_bad_out_path_fails_before_training_naming_it(tiny_mnist, tmp_path, capsys, make_out, pattern):
    out = make_out(tmp_path)
    assert main(train_args(tiny_mnist, out)) == 2
    captured = capsys.readouterr()
    assert "Training" not in captured.out and re.search(pattern, captured.err)
    assert str(out) in captured.err and "xpnet-tmp" not in captured.err and len(captured.err.splitlines()) == 1


def test_save_errors_name_the_target_not_the_temporary_file(tmp_path):
    target = tmp_path / "missing" / "m.xpnet"
    with pytest.raises(FileNotFoundError, match=re.escape(str(target))) as info:
        small_model().save(target)
    assert "tmp" not in str(info.value).replace(str(tmp_path), "")


def test_model_checkpoint_checks_its_keys_and_folder_before_training(tmp_path):
    (x, y), _ = mnist()
    model = small_model()
    with pytest.raises(ValueError, match=r"ModelCheckpoint\('\{val_loss\}.xpnet'\): val_loss will not be logged; "
                                         r"available: epoch, loss, accuracy, lr"):
        model.fit(x[:64], y[:64], verbose=0, callbacks=[callbacks.ModelCheckpoint("{val_loss}.xpnet")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.fit(x[:64], y[:64], verbose=0, callbacks=[callbacks.ModelCheckpoint(tmp_path / "no" / "c.xpnet")])
    assert model.epoch == 0 and model.optimizer.iterations == 0  # nothing trained


# --- 4: a forged file costs no memory ---------------------------------------------------
def test_forged_config_declaring_huge_layers_is_refused_before_allocating(tmp_path):
    small = tmp_path / "small.xpnet"
    xpnet.Sequential(layers.Flatten(), layers.Linear(12, 12), layers.BatchNorm2d(3), seed=0).save(small)

    def huge(config):
        for entry in config["layers"]:
            entry["config"].update({"Linear": {"in_features": 12000, "out_features": 12000},
                                    "BatchNorm2d": {"num_features": 10**8}}.get(entry["class"], {}))
    forged = rewrite_config(small, tmp_path / "forged.xpnet", huge)
    with pytest.raises(xpnet.ModelFileError, match=r"does not fit its config: size mismatch for 1\.weight: "
                                                  r"file \(12, 12\), config \(12000, 12000\)"):
        xpnet.load(forged)
    script = ("import resource, sys, xpnet\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "try:\n    xpnet.load(sys.argv[1])\nexcept xpnet.ModelFileError:\n    pass\n"
              "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    grown_mb = int(subprocess.run([sys.executable, "-c", script, str(forged)], cwd=ROOT, capture_output=True,
                                  text=True, check=True, timeout=60).stdout)
    assert grown_mb < 20, f"loading a 3 kB forged file grew the process by {grown_mb} MB"


def test_config_with_a_5000_digit_integer_names_the_file(tmp_path):
    small = tmp_path / "small.xpnet"
    small_model().save(small)
    bad = rewrite_config(small, tmp_path / "digits.xpnet",
                         lambda c: json.dumps(c).replace('"seed": 0', '"seed": ' + "9" * 5000))
    with pytest.raises(xpnet.ModelFileError, match=r"digits\.xpnet: config\.json is not valid JSON"):
        xpnet.load(bad)


def test_checkpoint_with_a_negative_epoch_is_refused(tmp_path):
    (x, y), _ = mnist()
    model, path = small_model(), tmp_path / "ckpt.xpnet"
    model.fit(x[:64], y[:64], verbose=0)
    model.save(path, include_optimizer=True)
    bad = rewrite_config(path, tmp_path / "neg.xpnet", lambda c: c["training"].update(epoch=-7))
    with pytest.raises(xpnet.ModelFileError, match=r"neg\.xpnet: invalid training state .*epoch must be an int >= 0, "
                                                   r"got -7"):
        xpnet.load(bad)


# --- 5: saves keep modes, follow links, leave no temporaries -----------------------------
def test_save_keeps_the_permission_bits_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "m.xpnet"
    small_model().save(path)
    os.chmod(path, 0o600)
    small_model(seed=1).save(path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_save_through_a_symlink_writes_the_real_file_and_keeps_the_link(tmp_path):
    real, link = tmp_path / "real.xpnet", tmp_path / "link.xpnet"
    small_model().save(real)
    link.symlink_to(real)
    model = small_model(seed=5)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    numpy.testing.assert_array_equal(xpnet.load(real).layers[1].weight.value, model.layers[1].weight.value)


def test_a_failed_save_removes_its_temporary_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "m.xpnet"
    small_model().save(path)
    good = path.read_bytes()

    def broken(member, array):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(xpnet.io, "write_array", broken)
    with pytest.raises(OSError, match="No space left"):
        small_model(seed=1).save(path)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["m.xpnet"]


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_save_removes_temporaries_of_killed_saves_only(tmp_path):
    path = tmp_path / "m.xpnet"
    killed = tmp_path / f".m.xpnet.{_dead_pid()}-0123abcd.xpnet-tmp"
    alive = tmp_path / f".m.xpnet.{os.getppid()}-4567cdef.xpnet-tmp"  # a save still running in another process
    other = tmp_path / f".other.xpnet.{_dead_pid()}-89abcdef.xpnet-tmp"  # another target's
    for leftover in (killed, alive, other):
        leftover.write_bytes(b"half a model")
    small_model().save(path)
    assert not killed.exists() and alive.exists() and other.exists()


def test_a_save_killed_with_sigkill_is_cleaned_by_the_next_save(tmp_path):
    path = tmp_path / "big.xpnet"
    script = ("import sys, xpnet\nfrom xpnet import layers\n"
              "m = xpnet.Sequential(layers.Linear(2000, 2000), seed=0)\n"
              "print('ready', flush=True)\nwhile True:\n    m.save(sys.argv[1])\n")
    command = [sys.executable, "-c", script, str(path)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".big.xpnet.*.xpnet-tmp")) and time.monotonic() < deadline:
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
    leftovers = list(tmp_path.glob(".big.xpnet.*.xpnet-tmp"))
    if not leftovers:
        pytest.skip("the kill did not land during a write this time")
    xpnet.Sequential(layers.Linear(2, 2), seed=0).save(path)
    assert not list(tmp_path.glob(".big.xpnet.*")) and xpnet.load(path).layers[0].weight.shape == (2, 2)


# --- 6: bad data: one line, exit 2; bombs refused from the header --------------------------
@pytest.mark.parametrize("spoil, pattern", [
    (lambda x, y: (x, numpy.where(numpy.arange(len(y)) == 5, 200, y).astype(numpy.uint8)),
     r"training labels must be digits 0-9; found 200 at index 5"),
    (lambda x, y: (numpy.zeros((len(x), 32, 32), numpy.uint8), y), r"training images have shape \(1, 32, 32\)"),
])
def test_cli_bad_data_content_is_one_line_and_exit_2(tmp_path, capsys, spoil, pattern):
    (x, y), (xt, yt) = mnist()
    raw = lambda a: numpy.rint(a[:, 0] * 255).astype(numpy.uint8)  # noqa: E731
    x_bad, y_bad = spoil(raw(x[:64]), y[:64].astype(numpy.uint8))
    folder = write_mnist(tmp_path / "bad", x_bad, y_bad, raw(xt[:32]), yt[:32].astype(numpy.uint8))
    assert main(train_args(folder, tmp_path / "m.xpnet")) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and re.search(pattern, err) and "Traceback" not in err


def _gzip_of_zeros(header, n_bytes, chunk=1 << 20):
    """A gzip stream of ``header`` then ``n_bytes`` zeros, built without holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(header)]
    zeros = bytes(chunk)
    for _ in range(n_bytes // chunk):
        parts.append(compressor.compress(zeros))
    return b"".join(parts) + compressor.flush()


def test_gzip_bomb_is_refused_from_its_header_without_decompressing(tmp_path):
    header = idx_bytes(numpy.zeros((10, 28, 28), numpy.uint8))[:16]  # declares 7,856 bytes
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    bomb.write_bytes(_gzip_of_zeros(header, 256 << 20))  # holds 256 MB
    assert bomb.stat().st_size < 1 << 20
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"header says shape \(10, 28, 28\) \(7856 bytes in all\) but the file holds"):
        read_idx(bomb)
    assert time.perf_counter() - started < 0.5  # 256 MB were not inflated


def test_idx_header_declaring_more_than_the_cap_is_refused(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(idx_bytes(numpy.zeros((2, 3), numpy.uint8))[:12]
                                   .replace(b"\x00\x00\x00\x02", (2**31 - 1).to_bytes(4, "big"))))
    with pytest.raises(ValueError, match=r"header declares shape \(2147483647, 3\) .* more than the 1,073,741,824 "
                                         r"allowed"):
        read_idx(path)


# --- 7: Ctrl-C ---------------------------------------------------------------------
def test_cli_ctrl_c_exits_130_in_one_line_and_keeps_the_file(tiny_mnist, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.xpnet"
    out.write_bytes(b"an earlier model")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(xpnet.Sequential, "fit", interrupted)
    assert main(train_args(tiny_mnist, out)) == 130
    err = capsys.readouterr().err
    assert err.strip() == f"xpnet train: interrupted; nothing saved; {out} is unchanged"
    assert out.read_bytes() == b"an earlier model"


def test_sigint_stops_a_real_training_run_within_seconds(tiny_mnist, tmp_path):
    out = tmp_path / "m.xpnet"
    command = [sys.executable, "-m", "xpnet", "train", "--data", str(tiny_mnist), "--out", str(out),
               "--epochs", "100000", "--verbose", "0"]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert child.stdout.readline().startswith("Training LeNet-5")
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130 and time.monotonic() - sent < 5
    assert err.strip() == "xpnet train: interrupted; nothing saved" and not out.exists()


# --- 8: smaller ones -----------------------------------------------------------------
@pytest.mark.parametrize("initial_epoch", [-2, 1.5, True])
def test_fit_refuses_a_bad_initial_epoch(initial_epoch):
    (x, y), _ = mnist()
    with pytest.raises(ValueError, match=r"initial_epoch must be an int >= 0"):
        small_model().fit(x[:8], y[:8], initial_epoch=initial_epoch, verbose=0)


def test_cli_negative_seed_names_the_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--seed", "-5"])
    assert info.value.code == 2
    assert "argument --seed: expected a non-negative integer, got '-5'" in capsys.readouterr().err


@pytest.mark.parametrize("x", [numpy.float32(1.0), numpy.array(2.0)])
def test_predict_on_a_scalar_says_so(x):
    with pytest.raises(ValueError, match=r"predict: x must be an array of samples, shape \(N, \.\.\.\); got a scalar"):
        small_model().predict(x)


def test_warnings_are_not_raised_by_a_healthy_checkpointed_run(tmp_path):
    (x, y), _ = mnist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small_model().fit(x[:128], y[:128], epochs=2, verbose=0,
                          callbacks=[callbacks.ModelCheckpoint(tmp_path / "c-{epoch}-{loss:.2f}.xpnet")])
    assert len(list(tmp_path.glob("c-*.xpnet"))) == 2


def test_compare_checks_its_output_paths_before_running(tmp_path, capsys):
    target = tmp_path / "missing" / "report.json"
    assert main(["compare", "--steps", "1", "--json", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"cannot write {target}" in captured.err
