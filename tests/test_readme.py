"""The README's code must keep working: its tour runs as written (1 epoch, on a data slice)."""

import re
from pathlib import Path

import numpy

import xpnet

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tour_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"## A short tour\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "model.fit(" in code and "xpnet.load(" in code
    full = xpnet.datasets.load_mnist

    def small(*args, **kwargs):  # same API, fewer images: the test checks wiring, not accuracy
        (x, y), (xt, yt) = full(*args, **kwargs)
        return (x[:1024], y[:1024]), (xt[:256], yt[:256])

    monkeypatch.setattr(xpnet.datasets, "load_mnist", small)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code.replace("epochs=5", "epochs=1"), "README tour", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out and "'accuracy'" in out
    assert (tmp_path / "lenet.xpnet").is_file()
    probabilities = namespace["probabilities"]
    assert probabilities.shape == (256, 10) and numpy.allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    # bit-exact: the reloaded model repeats predict's ops on the same shapes (save/load round trip)
    assert numpy.array_equal(namespace["model"].predict(namespace["x_test"]), namespace["logits"])


def test_readme_layer_tree_example_runs(capsys):
    code = re.search(r"## Layer trees: .*?\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code, "README layer trees", "exec"), namespace)
    out = capsys.readouterr().out
    assert "residual (Residual)" in out and "  sequential (Sequential)" in out
    keys = list(namespace["state"])
    assert keys[:2] == ["0.weight", "0.bias"] and "2.body.0.weight" in keys and "2.shortcut.1.running_var" in keys
    assert "4.branches.1.0.weight" in keys
