"""Peak memory of a LeNet-5 training process, each library in a fresh Python process.

The parent runs ``python -m benchmarks.memory --framework xpnet|torch ...``; the child
imports its library, prepares the data, trains ``epochs`` epochs (batch 128) with SGD
and prints one JSON line: its peak resident set size (``VmHWM`` in /proc/self/status, or
``ru_maxrss`` where there is no /proc), its resident size before the model was built
(imports and data), and, on a GPU, the device memory its allocator reserved.

Both children read the images as uint8 and convert only the slice they train on to
float32, so no float64 copy of the whole dataset inflates the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MIB = 2 ** 20


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    import resource  # not on Windows
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / MIB if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB elsewhere


def current_rss_mib() -> float:
    """This process's resident set size now, in MiB (the peak where there is no /proc)."""
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else peak_rss_mib()


def _data(images: int) -> tuple[Any, Any]:
    import numpy

    import xpnet
    (x, y), _ = xpnet.datasets.load_mnist(dtype="uint8")
    x = x[:images].astype(numpy.float32)
    x /= 255
    return x, y[:images].copy()


def _train_xpnet(x: Any, y: Any, epochs: int, batch_size: int, device: str) -> float | None:
    import xpnet
    from benchmarks.cases import LR
    model = xpnet.models.lenet5(seed=0, device=device)
    model.compile(optimizer=xpnet.optim.SGD(lr=LR), loss="cross_entropy")
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    if model.device.type == "cpu":
        return None
    return model.device.xp.get_default_memory_pool().total_bytes() / MIB


def _train_torch(x: Any, y: Any, epochs: int, batch_size: int, device: str) -> float | None:
    import torch

    from benchmarks.cases import Target, torch_trainer
    target = Target.create(device, torch)
    epoch = torch_trainer(target, x, y, batch_size)
    for _ in range(epochs):
        epoch()
    return torch.cuda.max_memory_reserved(target.torch_device) / MIB if target.is_gpu else None


def child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one LeNet-5 training run; prints its peak memory as JSON")
    parser.add_argument("--framework", choices=("xpnet", "torch"), required=True)
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave the default)")
    args = parser.parse_args(argv)
    if args.framework == "torch":
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
    x, y = _data(args.images)
    baseline = current_rss_mib()
    train = _train_xpnet if args.framework == "xpnet" else _train_torch
    device_peak = train(x, y, args.epochs, args.batch_size, args.device)
    result = {"peak_rss_mib": round(peak_rss_mib(), 1), "baseline_rss_mib": round(baseline, 1),
              "batches": args.epochs * -(-len(x) // args.batch_size), "batch_size": args.batch_size}
    if device_peak is not None:
        result["device_reserved_mib"] = round(device_peak, 1)
    print(json.dumps(result))
    return 0


def measure(framework: str, images: int, epochs: int, batch_size: int, device: str, threads: int) -> dict[str, Any]:
    """Run one child process and return its JSON report."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "benchmarks.memory", "--framework", framework, "--images", str(images),
               "--epochs", str(epochs), "--batch-size", str(batch_size), "--device", device, "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(child())
