"""fit, evaluate and predict on data read one batch at a time: a numpy.memmap, a dataset object that
takes one index, and one that takes index arrays (increasing, as h5py requires)."""

import re

import numpy
import pytest

from tests.test_examples import EXAMPLES, run_script
from tests.test_training import held_out, tiny, train_slice, weights
from xpnet.inputs import Samples


class OneAtATime:
    """The minimal protocol: len() and x[i] -> one sample; records every index read."""

    def __init__(self, images):
        self.images, self.reads = images, []

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if not isinstance(i, int):
            raise TypeError("one int index only")
        self.reads.append(i)
        return self.images[i]


class IncreasingBatches(OneAtATime):
    """Also takes index arrays, but only increasing ones (as h5py datasets)."""

    def __getitem__(self, index):
        if isinstance(index, int):
            return super().__getitem__(index)
        index = numpy.asarray(index)
        if (numpy.diff(index) <= 0).any():
            raise TypeError("indices must be increasing")
        self.reads.append(len(index))
        return self.images[index]


def to_memmap(path, x):
    on_disk = numpy.lib.format.open_memmap(path, mode="w+", dtype=x.dtype, shape=x.shape)
    on_disk[:] = x
    on_disk.flush()
    return numpy.load(path, mmap_mode="r")


def _fit(x, y, **kwargs):
    model = tiny()
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, **kwargs)
    return model, history.history


@pytest.mark.parametrize("kind", ["memmap", "one_at_a_time", "increasing_batches"])
def test_fit_evaluate_predict_read_by_batch_give_what_arrays_give(kind, tmp_path):
    x, y = train_slice(200)
    xv, yv = held_out(100)
    wrap = {"memmap": lambda a: to_memmap(tmp_path / f"{len(a)}.npy", a), "one_at_a_time": OneAtATime,
            "increasing_batches": IncreasingBatches}[kind]
    source = wrap(x)
    want_model, want = _fit(x, y, validation_split=0.2)
    model, got = _fit(source, y, validation_split=0.2)  # the split is lazy: a subset of rows, not a copy
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert got[key] == want[key], key  # the same batches, shapes and order: the same numbers
    for a, b in zip(weights(model), weights(want_model)):
        numpy.testing.assert_array_equal(a, b)
    held = wrap(xv)
    assert model.evaluate(held, yv, batch_size=32) == model.evaluate(xv, yv, batch_size=32)
    numpy.testing.assert_array_equal(model.predict(held, batch_size=32), model.predict(xv, batch_size=32))


def test_nothing_is_read_before_it_is_needed_and_each_epoch_reads_each_sample_once():
    x, y = train_slice(96)
    source = OneAtATime(x)
    model = tiny()
    model.compile(model.optimizer, "cross_entropy")
    samples = Samples(source, "fit")
    assert source.reads == [0]  # the first sample, for the shape and dtype
    source.reads.clear()
    model.fit(source, y, epochs=2, batch_size=32, verbose=0)
    assert sorted(source.reads[-192:]) == sorted(list(range(96)) * 2)  # two epochs
    assert len(source.reads) <= 192 + 2  # before training, at most two looks at the first sample
    assert len(samples) == 96 and samples.shape == (96, 1, 28, 28)


def test_batched_sources_get_one_call_per_batch():
    x, y = train_slice(96)
    source = IncreasingBatches(x)
    tiny().fit(source, y, epochs=1, batch_size=32, verbose=0)
    assert [n for n in source.reads if n == 32] == [32, 32, 32]


def test_a_nan_sample_is_reported_when_its_batch_is_read():
    x, y = train_slice(64)
    x = x.copy()
    x[40, 0, 3, 3] = numpy.nan
    with pytest.raises(ValueError, match=r"fit: input x contains NaN: sample 40, at \(0, 3, 3\) within the sample"):
        tiny().fit(OneAtATime(x), y, epochs=1, batch_size=16, verbose=0)  # shuffled: sample 40 is anywhere


def test_samples_of_another_shape_are_refused_naming_both():
    x, y = train_slice(64)
    ragged = OneAtATime([x[i] if i != 5 else x[i][:, :20] for i in range(64)])
    with pytest.raises(ValueError, match=r"fit: sample 5 of x has shape \(1, 20, 28\), but the first sample has "
                                         r"shape \(1, 28, 28\)"):
        tiny().fit(ragged, y, epochs=1, batch_size=64, shuffle=False, verbose=0)


def test_a_dataset_of_the_wrong_sample_shape_fails_before_training():
    x, y = train_slice(32)
    with pytest.raises(ValueError, match=r"fit: input samples of shape \(28, 28\) do not fit the model"):
        tiny().fit(OneAtATime(x[:, 0]), y, epochs=1, verbose=0)


def test_memmap_example_trains_from_disk():
    result = run_script(EXAMPLES / "train_from_memmap.py", "--epochs", "1", "--limit", "300")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^trained on 300 images read from disk by batch; test accuracy \d+\.\d\d%", result.stdout, re.M)
    objects = run_script(EXAMPLES / "train_from_memmap.py", "--epochs", "1", "--limit", "300", "--dataset-object")
    assert objects.returncode == 0, objects.stderr
    assert objects.stdout.splitlines()[-1].split(";")[1] == result.stdout.splitlines()[-1].split(";")[1]


def test_validation_split_reads_each_sample_once_per_epoch():
    """The split is a lazy subset: nothing is copied out of the source when fit starts."""
    x, y = train_slice(96)
    source = OneAtATime(x)
    tiny().fit(source, y, epochs=1, batch_size=32, validation_split=0.25, verbose=0)
    assert sorted(source.reads[-96:]) == list(range(96))  # 72 training and 24 validation samples, once each
    assert len(source.reads) <= 96 + 2


class WholeArrayOnRequest(IncreasingBatches):
    """Like an h5py dataset: it could turn itself into one array, which must not be asked."""

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole dataset was read")


def test_objects_that_could_convert_whole_are_still_read_by_batch():
    x, y = train_slice(64)
    source = WholeArrayOnRequest(x)
    model = tiny()
    model.fit(source, y, epochs=1, batch_size=32, verbose=0)
    numpy.testing.assert_array_equal(model.predict(source, batch_size=32), model.predict(x, batch_size=32))


def test_empty_reads_and_subsets_keep_the_sample_shape():
    x, _ = train_slice(8)
    samples = Samples(OneAtATime(x), "fit")
    assert samples[numpy.array([], dtype=int)].shape == (0, 1, 28, 28)
    empty = samples.subset(slice(8, 8))
    assert len(empty) == 0 and empty.shape == (0, 1, 28, 28) and empty[:].shape == (0, 1, 28, 28)


def test_a_dataset_of_pairs_is_refused_with_what_to_do():
    x, y = train_slice(8)
    pairs = OneAtATime([(x[i], y[i]) for i in range(8)])
    with pytest.raises(TypeError, match=r"fit: x\[i\] must return one sample \(an array\), got a tuple of 2; "
                                        r"for a dataset of \(image, label\) pairs, pass the images as x"):
        tiny().fit(pairs, y, verbose=0)
