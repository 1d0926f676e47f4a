"""Run xpnet against PyTorch side by side; write benchmarks/results/<device>-<label>.json and .md.

    python -m benchmarks                    # the default suite (2-4 minutes on 2 cores)
    python -m benchmarks --quick            # ~30 s: fewer repeats, smaller workloads
    python -m benchmarks --label ci         # writes benchmarks/results/cpu-ci.{json,md}
    python -m benchmarks --cases conv,pool  # a subset
    python -m benchmarks --no-torch         # xpnet alone
    python -m benchmarks --cases scaling    # data-parallel: 2 ranks x 1 thread against 1 process (needs mpi4py)
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy

import xpnet

from . import TORCH_INSTALL, cases, memory, report, scaling
from .cases import CONV_CASES, ConvCase, Target
from .machine import blas_threads, cpu_snapshot, load_average, machine_info, other_cpus
from .timing import SETTLE, Contender, Samples, alternate, summary

RESULTS = Path(__file__).resolve().parent / "results"
CASE_IDS = ("train", "infer", "resnet", "conv", "pool", "adam", "memory", "scaling")


@dataclass(frozen=True)
class Settings:
    """Workload sizes and repeat counts of one run."""

    repeats: int = 7               # timed repeats per side (odd: the median is a measured value)
    min_time: float = 0.4          # seconds one timed repeat of an op case lasts at least
    train_images: int = 5120       # images per training repeat (40 batches of 128)
    train_batch: int = 128
    infer_images: int = 5000       # images per inference repeat (5 batches of 1000)
    infer_batch: int = 1000
    resnet_images: int = 640       # images per residual-CNN training repeat (10 batches of 64)
    resnet_batch: int = 64
    conv_cases: tuple[ConvCase, ...] = CONV_CASES
    pool_shape: tuple[int, int, int, int] = (128, 6, 28, 28)
    adam_shape: tuple[int, ...] = (1000, 1000)  # 1M parameters
    gemm_size: int = 2048
    gemm_repeats: int = 5
    memory_images: int = 12800     # 100 batches per epoch
    memory_epochs: int = 2
    memory_runs: int = 1           # fresh processes per library
    scaling_images: int = 5120     # images per rank per epoch of the data-parallel case
    scaling_epochs: int = 3        # timed epochs per run (after one warm-up epoch)
    scaling_rounds: int = 2        # 1-process and 2-rank runs, alternated
    settle: float = SETTLE         # seconds of sleep when switching library (see benchmarks/timing.py)


PRESETS = {
    "default": Settings(),
    "quick": Settings(repeats=3, min_time=0.1, train_images=1280, infer_images=2000, resnet_images=256, gemm_size=1024,
                      gemm_repeats=3, memory_images=2560, memory_epochs=1, scaling_images=1280, scaling_epochs=2,
                      scaling_rounds=1),
}


def import_torch() -> Any | None:
    """torch, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _time(contenders: list[Contender], settings: Settings, min_time: float | None = None) -> dict[str, Samples]:
    min_time = settings.min_time if min_time is None else min_time
    return alternate(contenders, settings.repeats, min_time, settle=settings.settle)


def _throughput(case_id: str, title: str, detail: str, unit: str, work: float,
                samples: dict[str, Samples], settings: Settings) -> dict[str, Any]:
    """A case record for "work units per second" (images/s, updates/s)."""
    sides = {name: summary([work / s for s in smp.seconds]) for name, smp in samples.items()}
    return _record(case_id, title, detail, unit, sides, samples, settings)


def _milliseconds(case_id: str, title: str, detail: str, samples: dict[str, Samples],
                  settings: Settings) -> dict[str, Any]:
    sides = {name: summary([1000 * s for s in smp.seconds]) for name, smp in samples.items()}
    return _record(case_id, title, detail, "ms", sides, samples, settings)


def _record(case_id: str, title: str, detail: str, unit: str, sides: dict[str, Any],
            samples: dict[str, Samples], settings: Settings) -> dict[str, Any]:
    ratio = None
    if "torch" in samples:  # throughput ratio: PyTorch's median time / xpnet's median time
        ratio = round(samples["torch"].median / samples["xpnet"].median, 3)
    return {"id": case_id, "title": title, "detail": detail, "unit": unit,
            "better": "lower" if unit == "ms" else "higher",
            "xpnet": sides["xpnet"], "torch": sides.get("torch"), "ratio": ratio,
            "ratio_meaning": "xpnet/PyTorch throughput (> 1: xpnet faster)", "repeats": settings.repeats,
            "calls_per_repeat": {name: smp.calls for name, smp in samples.items()}}


def run_train(target: Target, settings: Settings, data: dict[str, numpy.ndarray]) -> list[dict[str, Any]]:
    x, y = data["x_train"][:settings.train_images], data["y_train"][:settings.train_images]
    samples = _time(cases.train(target, x, y, settings.train_batch), settings, min_time=0)
    title, detail = f"LeNet-5 training, `fit` batch {settings.train_batch}", f"SGD lr {cases.LR}, {len(x):,} images"
    return [_throughput("train", title, detail + " per repeat", "images/s", len(x), samples, settings)]


def run_resnet(target: Target, settings: Settings, data: dict[str, numpy.ndarray]) -> list[dict[str, Any]]:
    x, y = data["x_train"][:settings.resnet_images], data["y_train"][:settings.resnet_images]
    samples = _time(cases.train_resnet(target, x, y, settings.resnet_batch), settings, min_time=0)
    title = f"Residual CNN training (`models.resnet_mnist`), `fit` batch {settings.resnet_batch}"
    detail = f"SGD lr {cases.LR}, {len(x):,} images per repeat; the same tree in torch.nn"
    return [_throughput("resnet", title, detail, "images/s", len(x), samples, settings)]


def run_infer(target: Target, settings: Settings, data: dict[str, numpy.ndarray]) -> list[dict[str, Any]]:
    x = data["x_test"][:settings.infer_images]
    samples = _time(cases.infer(target, x, settings.infer_batch), settings)
    title, detail = f"LeNet-5 inference, `predict` batch {settings.infer_batch}", f"{len(x):,} images per call"
    return [_throughput("infer", title, detail, "images/s", len(x), samples, settings)]


def _gemm_peak(target: Target, settings: Settings, runs: list[dict[str, float]]) -> None:
    peak = cases.gemm_peak(target, settings.gemm_size, settings.gemm_repeats, settings.settle)
    runs.append({k: round(v, 1) for k, v in peak.items()})
    print("  GEMM peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()), flush=True)


def run_conv(target: Target, settings: Settings, results: dict[str, Any]) -> list[dict[str, Any]]:
    """The convolutions, between two GEMM peak measurements; the best of the two is the peak."""
    runs: list[dict[str, float]] = []
    _gemm_peak(target, settings, runs)
    records = []
    for case in settings.conv_cases:
        samples = _time(cases.conv(target, case, numpy.random.default_rng(0)), settings)
        record = _milliseconds(f"conv_{case.label}", f"conv ({case.label}) {case.describe()}, fwd+bwd", "",
                               samples, settings)
        flop = 3 * case.gemm_flop()
        record.update(flop_per_call=flop, gflops={name: round(flop / smp.median / 1e9, 2)
                                                  for name, smp in samples.items()})
        records.append(record)
    _gemm_peak(target, settings, runs)
    peak = {name: max(run[name] for run in runs) for name in runs[0]}
    results.update(gemm_peak_gflops=peak, gemm_peak_runs=runs)
    reference = next(iter(peak.values()))  # numpy's (cupy's on a GPU)
    for record in records:
        record["peak_share"] = {k: round(v / reference, 3) for k, v in record["gflops"].items()}
    return records


def run_pool(target: Target, settings: Settings) -> list[dict[str, Any]]:
    shape = settings.pool_shape
    samples = _time(cases.max_pool(target, shape, numpy.random.default_rng(0)), settings)
    return [_milliseconds("pool", f"max-pool 2x2 {shape}, fwd+bwd", "", samples, settings)]


def run_adam(target: Target, settings: Settings) -> list[dict[str, Any]]:
    shape = settings.adam_shape
    samples = _time(cases.adam(target, shape, numpy.random.default_rng(0)), settings)
    size = int(numpy.prod(shape))
    return [_throughput("adam", f"Adam update, {size:,} parameters", f"one tensor {shape}", "updates/s", 1,
                        samples, settings)]


def run_memory(target: Target, settings: Settings, threads: int) -> list[dict[str, Any]]:
    names = ["xpnet"] + (["torch"] if target.torch is not None else [])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i in range(settings.memory_runs):
        for name in names if i % 2 == 0 else names[::-1]:
            runs[name].append(memory.measure(name, settings.memory_images, settings.memory_epochs,
                                             settings.train_batch, target.name, threads))
    peak = {name: summary([r["peak_rss_mib"] for r in rs]) for name, rs in runs.items()}
    ratio = round(peak["xpnet"]["median"] / peak["torch"]["median"], 3) if "torch" in peak else None
    batches = runs["xpnet"][0]["batches"]
    record = {"id": "memory", "title": "peak memory, LeNet-5 training process",
              "detail": f"{batches} batches of {settings.train_batch}, fresh process, peak RSS", "unit": "MiB",
              "better": "lower",
              "xpnet": peak["xpnet"], "torch": peak.get("torch"), "ratio": ratio,
              "ratio_meaning": "xpnet/PyTorch peak memory (< 1: xpnet uses less; lower is better)",
              "repeats": settings.memory_runs, "batches": batches,
              "baseline_rss_mib": {name: rs[0]["baseline_rss_mib"] for name, rs in runs.items()}}
    if target.is_gpu:
        record["device_reserved_mib"] = {name: rs[0].get("device_reserved_mib") for name, rs in runs.items()}
    return [record]


def run_scaling(settings: Settings, notes: list[str]) -> list[dict[str, Any]]:
    """LeNet-5 ``fit`` on 2 MPI ranks x 1 thread against 1 process x 1 thread (see benchmarks/scaling.py)."""
    if scaling.mpiexec() is None:
        notes.append('the scaling case was skipped: it needs mpi4py and mpiexec (pip install "xpnet[mpi]")')
        return []
    result = scaling.measure(settings.scaling_images, settings.scaling_epochs, settings.scaling_rounds)
    title = "Data-parallel LeNet-5 `fit`, 2 MPI ranks x 1 thread (global batch 256)"
    detail = (f"against 1 process x 1 thread, batch {result['per_rank_batch']}: "
              f"{report.number(result['single_median'])} images/s; {result['images_per_rank']:,} images per rank "
              "per epoch; each process pinned to one CPU")
    return [{"id": "scaling", "title": title, "detail": detail, "unit": "images/s", "better": "higher",
             "xpnet": summary(result["pair"]), "torch": None, "ratio": None, "baseline": summary(result["single"]),
             "efficiency": result["efficiency"], "repeats": len(result["pair"]), "calls_per_repeat": {"xpnet": 1}}]


def _print_case(record: dict[str, Any], seconds: float) -> None:
    torch = record["torch"]
    line = f"  {record['title']:<52} xpnet {report.number(record['xpnet']['median']):>7} {record['unit']:<9}"
    if torch is not None:
        line += f" torch {report.number(torch['median']):>7}  xpnet/torch {record['ratio']:.2f}"
    if record.get("efficiency") is not None:
        line += f" scaling efficiency {record['efficiency']:.2f}"
    print(f"{line}   [{seconds:.0f} s]", flush=True)


def run(settings: Settings, target: Target, selected: Sequence[str], threads: int,
        notes: list[str] | None = None) -> dict[str, Any]:
    """Run the selected cases; return the results without machine info (skipped cases add to ``notes``)."""
    notes = [] if notes is None else notes
    results: dict[str, Any] = {"cases": []}
    data: dict[str, numpy.ndarray] = {}
    if {"train", "infer", "resnet"} & set(selected):
        (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"]) = xpnet.datasets.load_mnist()
    steps: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "train": lambda: run_train(target, settings, data),
        "infer": lambda: run_infer(target, settings, data),
        "resnet": lambda: run_resnet(target, settings, data),
        "conv": lambda: run_conv(target, settings, results),
        "pool": lambda: run_pool(target, settings),
        "adam": lambda: run_adam(target, settings),
        "memory": lambda: run_memory(target, settings, threads),
        "scaling": lambda: run_scaling(settings, notes),
    }
    for case_id in CASE_IDS:
        if case_id not in selected:
            continue
        start, snapshot = time.perf_counter(), cpu_snapshot()
        records = steps[case_id]()
        load, others = load_average(), other_cpus(snapshot, cpu_snapshot())
        for record in records:
            record["load_average_1min"] = None if load is None else load[0]
            record["other_cpus"] = others
            _print_case(record, (time.perf_counter() - start) / len(records))
        results["cases"].extend(records)
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~30 s run: 3 repeats, smaller workloads")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per side (default 7; quick 3)")
    parser.add_argument("--cases", default=",".join(CASE_IDS),
                        help=f"comma-separated subset of {','.join(CASE_IDS)} (default: all)")
    parser.add_argument("--device", default="cpu",
                        help='"cpu" (default) or "cuda[:N]": xpnet on cupy against PyTorch on CUDA')
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads value (default: the threads numpy's BLAS uses)")
    parser.add_argument("--no-torch", action="store_true", help="run xpnet alone even when PyTorch is installed")
    parser.add_argument("--label", default=None,
                        help="second part of the result file name, <device>-<label>.json/.md (default: the hostname)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"folder for the results (default: {RESULTS})")
    return parser


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "host"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    selected = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(selected) - set(CASE_IDS))
    if unknown or not selected:
        print(f"unknown cases {unknown}; choose from {', '.join(CASE_IDS)}", file=sys.stderr)
        return 2
    settings = PRESETS["quick" if args.quick else "default"]
    if args.repeats is not None:
        if args.repeats < 1:
            print("--repeats must be at least 1", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, repeats=args.repeats)
    notes = []
    torch = None if args.no_torch else import_torch()
    if torch is None and not args.no_torch:
        print(f"PyTorch is not installed: running xpnet alone. To compare with PyTorch, install a CPU build:\n"
              f"    {TORCH_INSTALL}\n", flush=True)
    if torch is not None and args.device != "cpu" and not torch.cuda.is_available():
        print("This PyTorch has no usable CUDA: running xpnet alone.", flush=True)
        notes.append("PyTorch had no usable CUDA; xpnet ran alone")
        torch = None
    try:
        target = Target.create(args.device, torch)
    except (xpnet.DeviceError, ValueError) as error:
        print(f"--device {args.device}: {error}", file=sys.stderr)
        return 2
    threads = args.threads or blas_threads()[0]
    if torch is not None:
        torch.set_num_threads(threads)
    info = machine_info(target.name, torch)
    print(f"xpnet {info['xpnet']} on {target.name}: {info['cpu_model']}, {info['usable_cpus']} usable CPUs; "
          f"numpy {info['numpy']} ({info['blas']}, {info['blas_threads']} threads)", flush=True)
    if torch is not None:
        print(f"torch {torch.__version__}: torch.set_num_threads({threads}) to match numpy's BLAS threads", flush=True)
    started = time.perf_counter()
    results = run(settings, target, selected, threads, notes)
    info["load_average_end"] = load_average()
    info["seconds"] = round(time.perf_counter() - started, 1)
    label = _label(args.label or socket.gethostname())
    command = "python -m benchmarks" + ("" if argv is None and len(sys.argv) <= 1 else
                                        " " + shlex.join(list(argv) if argv is not None else sys.argv[1:]))
    results = {"suite": "xpnet benchmarks", "format_version": 1, "label": label, "command": command,
               "settings": dataclasses.asdict(settings), "machine": info, "notes": notes, **results}
    paths = report.write(results, args.out, f"{target.xpnet_device.type}-{label}")
    print("\n" + report.markdown(results))
    print(f"wrote {paths[0]} and {paths[1]} ({info['seconds']:.0f} s)")
    return 0
