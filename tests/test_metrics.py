"""Metrics: top-k accuracy and the macro scores from the confusion matrix, against loop references,
on every backend, and through compile/fit/evaluate (summed over batches as one pass would)."""

import numpy
import pytest

from tests.helpers import host
from tests.test_training import held_out, tiny, train_slice
from xpnet import metrics


def loop_confusion(y_true, y_pred, k):
    c = numpy.zeros((k, k), numpy.int64)
    for t, p in zip(y_true, y_pred):
        c[t, p] += 1
    return c


def loop_scores(c):
    """Per class: precision, recall, F1 (0 where undefined); macro over classes seen as label or prediction."""
    k, rows = len(c), []
    for i in range(k):
        tp, fp, fn = c[i, i], c[:, i].sum() - c[i, i], c[i, :].sum() - c[i, i]
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        rows.append((p, r, f, tp + fp + fn > 0))
    present = [row for row in rows if row[3]]
    return {name: sum(row[j] for row in present) / len(present)
            for j, name in enumerate(["macro_precision", "macro_recall", "macro_f1"])}


def test_confusion_matrix_counts_like_a_loop(rng):
    y_true, y_pred = rng.integers(0, 6, 300), rng.integers(0, 6, 300)
    numpy.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred), loop_confusion(y_true, y_pred, 6))
    scores = rng.standard_normal((300, 7))
    numpy.testing.assert_array_equal(metrics.confusion_matrix(y_true, scores),
                                     loop_confusion(y_true, scores.argmax(1), 7))


def test_confusion_matrix_refuses_bad_labels():
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\); found -1\.\.2"):
        metrics.confusion_matrix(numpy.array([0, -1, 2]), numpy.array([0, 1, 2]), num_classes=3)
    with pytest.raises(ValueError, match=r"shape \(N,\) on both sides; received \(3,\) and \(2,\)"):
        metrics.confusion_matrix(numpy.array([0, 1, 2]), numpy.array([0, 1]))


def test_macro_scores_match_the_loop_reference_with_absent_and_never_predicted_classes(rng):
    y_true = rng.integers(0, 5, 200)  # class 5 never occurs; class 6 is only predicted
    y_pred = numpy.where(rng.random(200) < 0.6, y_true, rng.integers(0, 7, 200))
    y_pred[y_pred == 4] = 3  # class 4 is never predicted: its precision is 0/0
    c = metrics.confusion_matrix(y_true, y_pred, num_classes=8)
    got = metrics.precision_recall_f1(c)
    for key, want in loop_scores(c).items():
        assert got[key] == pytest.approx(want, rel=1e-12), key
    assert got["precision"][4] == 0 and got["recall"][5] == 0 and got["f1"].shape == (8,)


def test_top_k_hits_match_sorting(xp, rng):
    scores, labels = rng.standard_normal((50, 10)), rng.integers(0, 10, 50)
    rank = (-scores).argsort(axis=1).argsort(axis=1)[numpy.arange(50), labels]  # 0 = the best score
    for k in (1, 3, 10):
        got = host(metrics.top_k_hits(xp.asarray(scores), xp.asarray(labels), k))
        numpy.testing.assert_array_equal(got, rank < k)


def test_device_confusion_counts_equal_the_host_matrix(xp, rng):
    scores, labels = rng.standard_normal((64, 4)), rng.integers(0, 4, 64)
    counts = host(metrics.confusion_counts(xp.asarray(scores), xp.asarray(labels)))
    numpy.testing.assert_array_equal(counts.reshape(4, 4), metrics.confusion_matrix(labels, scores))


@pytest.mark.parametrize("name, k", [("top_k_accuracy", 5), ("top2_accuracy", 2), ("top_3_accuracy", 3)])
def test_top_k_names(name, k, rng):
    scores, labels = rng.standard_normal((40, 10)), rng.integers(0, 10, 40)
    counts = metrics.get_metric(name).batch(scores, labels)
    assert counts.shape == (1,) and counts[0] == metrics.top_k_hits(scores, labels, k).sum()


@pytest.mark.parametrize("name", ["top0_accuracy", "f1", "acuracy"])
def test_unknown_metrics_are_refused_with_the_list(name):
    with pytest.raises(ValueError, match=r"Unknown metric .*Available: accuracy, .*top<k>_accuracy"):
        metrics.get_metric(name)


def test_evaluate_and_fit_report_the_metrics_of_the_whole_set(device):
    """Summed over batches of 37, the metrics equal those of the confusion matrix of all predictions."""
    names = ["accuracy", "top3_accuracy", "macro_precision", "macro_recall", "macro_f1"]
    x, y = train_slice(300)
    x_val, y_val = held_out(150)
    model = tiny(device=device, metrics=names)
    history = model.fit(x, y, epochs=2, batch_size=37, validation_data=(x_val, y_val), verbose=0)
    result = model.evaluate(x_val, y_val, batch_size=37)
    scores = model.predict(x_val, batch_size=37)  # the same batches as evaluate: the same sums
    c = metrics.confusion_matrix(y_val, scores, num_classes=10)
    want = metrics.precision_recall_f1(c)
    assert result["accuracy"] == pytest.approx(numpy.trace(c) / len(y_val), abs=1e-12)
    assert result["top3_accuracy"] == pytest.approx(metrics.top_k_hits(scores, y_val, 3).mean(), abs=1e-12)
    for key in ("macro_precision", "macro_recall", "macro_f1"):
        assert result[key] == pytest.approx(want[key], rel=1e-9), key
        assert history.history[f"val_{key}"][-1] == pytest.approx(result[key], rel=1e-9)
        assert 0 < history.history[key][-1] <= 1
    assert result["top3_accuracy"] >= result["accuracy"]


def test_ties_rank_as_argmax_breaks_them_so_top1_is_accuracy(rng):
    scores = numpy.zeros((6, 4))  # every class tied: argmax says class 0
    labels = numpy.array([0, 1, 2, 3, 0, 1])
    assert metrics.top_k_hits(scores, labels, 1).tolist() == [True, False, False, False, True, False]
    assert metrics.top_k_hits(scores, labels, 2).tolist() == [True, True, False, False, True, True]
    assert metrics.top_k_hits(scores, labels, 1).sum() == metrics.correct_count(scores, labels)
    rounded = numpy.round(rng.standard_normal((200, 5)))  # many ties
    y = rng.integers(0, 5, 200)
    assert metrics.top_k_hits(rounded, y, 1).sum() == metrics.correct_count(rounded, y)


@pytest.mark.parametrize("names, outputs, message", [
    (["accuracy"], 1, r"metric 'accuracy' needs at least 2 outputs per sample, but the model gives 1; use "
                      r"'binary_accuracy' for one logit per sample"),
    (["macro_f1"], 1, r"metric 'macro_f1' needs at least 2 outputs"),
    (["top_k_accuracy"], 5, r"metric 'top_k_accuracy' needs at least 6 outputs per sample, but the model gives 5"),
])
def test_metrics_that_mean_nothing_for_the_model_are_refused(names, outputs, message):
    with pytest.raises(ValueError, match=message):
        metrics.check_outputs(names, outputs)
    metrics.check_outputs(names, 10)


def test_fit_refuses_accuracy_of_one_logit_before_training():
    import xpnet
    from xpnet import layers as L
    model = xpnet.Sequential(L.Flatten(), L.Linear(784, 1)).compile("sgd", "binary_cross_entropy", ["accuracy"])
    x, y = train_slice(8)
    before = [p.value.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match="use 'binary_accuracy'"):
        model.fit(x, (y % 2).astype(numpy.float32).reshape(-1, 1), verbose=0)
    assert all((p.value == b).all() for p, b in zip(model.parameters(), before))


def test_confusion_matrix_takes_one_hot_and_refuses_fractional_labels():
    y = numpy.array([0, 2, 1, 2])
    numpy.testing.assert_array_equal(metrics.confusion_matrix(numpy.eye(3)[y], y), metrics.confusion_matrix(y, y))
    numpy.testing.assert_array_equal(metrics.confusion_matrix(y.astype(float), y), metrics.confusion_matrix(y, y))
    with pytest.raises(ValueError, match=r"y_true must hold whole-number labels; found 1\.7"):
        metrics.confusion_matrix(numpy.array([0.0, 1.7]), numpy.array([0, 1]))
    with pytest.raises(ValueError, match="num_classes must be a positive int; received 0"):
        metrics.confusion_matrix(y, y, num_classes=0)
