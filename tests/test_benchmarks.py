"""Smoke test of the benchmark suite (benchmarks/): tiny workloads, with and without PyTorch."""

import dataclasses
import json
import re
import sys

import pytest

import xpnet
from benchmarks import memory, report, scaling, suite, timing
from benchmarks.cases import ConvCase, Target

TINY = suite.Settings(repeats=1, min_time=0.0, train_images=20, train_batch=8, infer_images=30, infer_batch=16,
                      resnet_images=8, resnet_batch=4,
                      conv_cases=(ConvCase("t", 2, 2, 3, 8, 3, padding=1),), pool_shape=(2, 2, 8, 8),
                      adam_shape=(10, 10), gemm_size=64, gemm_repeats=1, memory_images=16, memory_epochs=1,
                      scaling_images=256, scaling_epochs=1, scaling_rounds=1, settle=0.0)
HAS_MPI = scaling.mpiexec() is not None
CASE_IDS = ["train", "infer", "resnet", "conv_t", "pool", "adam", "memory"] + ["scaling"] * HAS_MPI


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(suite.PRESETS, "quick", TINY)


def _run(tmp_path, *args):
    assert suite.main(["--quick", "--out", str(tmp_path), "--label", "smoke", *args]) == 0
    results = json.loads((tmp_path / "cpu-smoke.json").read_text())
    return results, (tmp_path / "cpu-smoke.md").read_text()


def _check_side(side):
    assert side["min"] <= side["median"] <= side["max"]
    assert side["min"] > 0 and len(side["values"]) >= 1


def test_without_torch_runs_xpnet_alone_and_says_how_to_install(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    results, md = _run(tmp_path)
    out = capsys.readouterr().out
    assert "PyTorch is not installed" in out and "pip install torch==2.13.0" in out
    assert "pip install torch==2.13.0" in md
    assert [c["id"] for c in results["cases"]] == CASE_IDS
    machine = results["machine"]
    assert machine["torch"] is None and machine["torch_threads"] is None
    assert {"cpu_model", "usable_cpus", "numpy", "blas", "blas_threads", "xpnet", "date_utc", "cpu_kind",
            "blas_kernel", "openblas_coretype_env"} <= set(machine)
    assert machine["cpu_kind"]["isa"] and "- CPU kind: " in md and "OpenBLAS kernel " in md
    assert machine["blas_threads"] >= 1
    assert list(results["gemm_peak_gflops"]) == ["numpy"] and len(results["gemm_peak_runs"]) == 2
    assert results["gemm_peak_gflops"]["numpy"] == max(run["numpy"] for run in results["gemm_peak_runs"])
    for case in results["cases"]:
        assert case["torch"] is None and case["ratio"] is None
        _check_side(case["xpnet"])
    conv = results["cases"][3]
    assert conv["flop_per_call"] == 3 * 2 * 2 * 3 * 2 * 3 * 3 * 8 * 8
    assert conv["gflops"]["xpnet"] > 0 and 0 < conv["peak_share"]["xpnet"]
    assert "| case | unit | xpnet | PyTorch | xpnet/PyTorch |" in md
    assert "LeNet-5 training" in md and "conv (t)" in md and "peak memory" in md


def test_with_torch_reports_ratios_and_matches_threads(tiny, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:
        results, md = _run(tmp_path, "--threads", "1", "--cases", "train,infer,resnet,conv,pool,adam")
    finally:
        torch.set_num_threads(threads)
    assert results["machine"]["torch_threads"] == 1
    assert "torch.set_num_threads(1)" in capsys.readouterr().out
    assert [c["id"] for c in results["cases"]] == CASE_IDS[:6]
    assert list(results["gemm_peak_gflops"]) == ["numpy", "torch"]
    for case in results["cases"]:
        _check_side(case["torch"])
        assert case["ratio"] > 0
    assert results["cases"][3]["gflops"]["torch"] > 0
    assert "Residual CNN training" in md
    assert re.search(r"\| LeNet-5 training.*\| \*\*\d+\.\d\d\*\*( ⚠)? \|", md)
    assert "pip install torch" not in md


def test_memory_child_trains_torch_and_prints_its_peak(capsys):
    pytest.importorskip("torch")
    assert memory.child(["--framework", "torch", "--images", "20", "--epochs", "2", "--batch-size", "8",
                         "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["batches"] == 6
    assert report["peak_rss_mib"] >= report["baseline_rss_mib"] > 0


def test_memory_ratio_is_xpnet_peak_over_torch_peak(monkeypatch):
    calls = []

    def fake_measure(framework, images, epochs, batch_size, device, threads):
        calls.append(framework)
        return {"peak_rss_mib": {"xpnet": 150.0, "torch": 300.0}[framework], "baseline_rss_mib": 50.0, "batches": 4}
    monkeypatch.setattr(memory, "measure", fake_measure)
    target = Target("cpu", xpnet.get_device("cpu"), torch=object())
    [record] = suite.run_memory(target, dataclasses.replace(TINY, memory_runs=3), threads=1)
    assert calls == ["xpnet", "torch", "torch", "xpnet", "xpnet", "torch"]
    assert record["ratio"] == pytest.approx(0.5) and record["better"] == "lower"
    assert record["xpnet"]["median"] == 150.0 and record["batches"] == 4


@pytest.mark.skipif(not HAS_MPI, reason='needs mpi4py and mpiexec: pip install "xpnet[mpi]"')
def test_scaling_case_times_two_ranks_against_one_process(tiny, tmp_path):
    results, md = _run(tmp_path, "--cases", "scaling", "--no-torch")
    (case,) = results["cases"]
    _check_side(case["xpnet"])
    _check_side(case["baseline"])
    assert case["efficiency"] == pytest.approx(case["xpnet"]["median"] / (2 * case["baseline"]["median"]), abs=2e-3)
    assert re.search(r"\| scaling efficiency \*\*\d\.\d\d\*\*( ⚠)? \|", md)


def test_scaling_case_without_mpi_is_skipped_with_a_note(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(scaling, "mpiexec", lambda: None)
    results, md = _run(tmp_path, "--cases", "scaling,pool", "--no-torch")
    assert [c["id"] for c in results["cases"]] == ["pool"]
    assert "the scaling case was skipped" in md and 'pip install "xpnet[mpi]"' in md


def test_subset_of_cases(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    results, md = _run(tmp_path, "--cases", "pool,adam")
    assert [c["id"] for c in results["cases"]] == ["pool", "adam"]
    assert "gemm_peak_gflops" not in results and "Convolutions" not in md


@pytest.mark.parametrize("args, message", [
    (["--cases", "pool,bogus"], r"unknown cases \['bogus'\]"),
    (["--repeats", "0"], r"--repeats must be at least 1"),
])
def test_bad_arguments_are_rejected(tmp_path, capsys, args, message):
    assert suite.main(["--out", str(tmp_path), *args]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(xpnet.gpu_available(), reason="checks the error without a usable GPU")
def test_cuda_without_a_gpu_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert suite.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert re.search(r"--device cuda: .+", capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_alternate_swaps_the_order_on_every_repeat():
    log = []
    sides = [timing.Contender(name, lambda name=name: log.append(name)) for name in ("a", "b")]
    samples = timing.alternate(sides, repeats=3, settle=0.0)
    assert log == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-ups, then a b | b a | a b
    assert [len(samples[n].seconds) for n in "ab"] == [3, 3]


def test_ratio_is_pytorch_time_over_xpnet_time():
    samples = {"xpnet": timing.Samples([1.0, 2.0, 3.0]), "torch": timing.Samples([4.0, 5.0, 6.0])}
    record = suite._throughput("x", "x", "", "images/s", 10, samples, TINY)
    assert record["ratio"] == pytest.approx(2.5)
    assert record["xpnet"]["median"] == pytest.approx(5.0) and record["torch"]["median"] == pytest.approx(2.0)


@pytest.mark.parametrize("xpnet_range, load, others, flagged", [
    ((1.0, 1.4), 0.2, None, False),
    ((1.0, 1.6), 0.2, None, True),   # wide spread
    ((1.0, 1.1), 1.5, None, True),   # older results: load above half of 2 CPUs
    ((1.0, 1.1), 1.9, 0.1, False),   # a high load from the benchmark's own threads only
    ((1.0, 1.1), 0.2, 0.6, True),    # other processes busy on the CPUs
])
def test_disturbed_rows_are_flagged(xpnet_range, load, others, flagged):
    side = lambda lo, hi: {"median": lo, "min": lo, "max": hi}  # noqa: E731
    case = {"xpnet": side(*xpnet_range), "torch": side(2.0, 2.1), "ratio": 0.5, "load_average_1min": load,
            "other_cpus": others}
    assert report.disturbed(case, cpus=2) is flagged
    assert report.ratio_cell(case, cpus=2) == ("**0.50** ⚠" if flagged else "**0.50**")


def test_other_cpus_leaves_out_the_own_process(monkeypatch):
    from benchmarks import machine
    assert machine.other_cpus((1.0, 0.0, 0.0), (3.0, 0.5, 1.0)) == 1.5  # 2 busy s, 0.5 own s, in 1 s
    assert machine.other_cpus((10.0, 1.0, 0.0), (12.0, 3.0, 1.0)) == 0.0  # all the busy time was ours
    assert machine.other_cpus((None, 0.0, 0.0), (None, 1.0, 1.0)) is None  # no /proc/stat
    busy = machine._machine_busy_seconds()
    assert busy is None or busy > 0
    monkeypatch.setattr(machine, "_machine_busy_seconds", lambda: 7.0)
    snapshot = machine.cpu_snapshot()
    assert snapshot[0] == 7.0 and snapshot[1] > 0  # this process has used some CPU time by now


@pytest.mark.skipif(xpnet.gpu_available(), reason="checks the failure without a usable GPU")
def test_gpu_acceptance_fails_without_a_gpu_and_says_why(tmp_path, capsys):
    from benchmarks import gpu_acceptance
    assert gpu_acceptance.main(["--out", str(tmp_path)]) == 1
    summary = (tmp_path / "summary.md").read_text()
    assert "| GPU check (xpnet info, smoke test) | FAILED |" in summary
    assert xpnet.gpu_unavailable_reason() in summary and xpnet.gpu_unavailable_reason() in capsys.readouterr().err
    assert "xpnet   " in (tmp_path / "device.txt").read_text()  # the `xpnet info` output is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.txt", "summary.md"]


def test_gpu_acceptance_runs_every_step_and_fails_when_one_fails(tmp_path, monkeypatch):
    from benchmarks import gpu_acceptance
    monkeypatch.setattr(xpnet, "gpu_available", lambda: True)
    monkeypatch.setattr(xpnet.backend, "gpu_devices", lambda: [(0, "NVIDIA H200")])
    ok, bad = [sys.executable, "-c", "print('fine')"], [sys.executable, "-c", "raise SystemExit(3)"]
    steps = [("pytest", [bad, ok], "pytest.log", 30), ("compare", [ok], "compare.log", 30)]
    monkeypatch.setattr(gpu_acceptance, "_steps", lambda out, label: steps if label == "NVIDIA-H200" else [])
    assert gpu_acceptance.main(["--out", str(tmp_path)]) == 1
    log = (tmp_path / "pytest.log").read_text()
    assert "(exit 3)" in log and "fine" in log  # the second command ran after the first failed
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("# GPU acceptance: NVIDIA H200")
    assert "| pytest | FAILED |" in summary and "| compare | passed |" in summary
    steps[0] = ("pytest", [ok], "pytest.log", 30)
    assert gpu_acceptance.main(["--out", str(tmp_path)]) == 0
