"""The GPU acceptance run: ``python -m benchmarks.gpu_acceptance --out DIR``.

For a machine with an NVIDIA GPU and CuPy, PyTorch and pytest already installed, and no network
(no nox, no pip).  It fails, and does not skip, when no GPU is usable, then runs in turn:

1. ``xpnet info`` and the GPU smoke test (copy, elementwise kernel, matmul, reduction, copy back);
2. pytest with ``XPNET_REQUIRE_GPU=1``: every cupy-parametrized test (``-m gpu``), then the files
   that compare the CPU with the GPU (parity, compare, backend, CLI);
3. ``xpnet compare --a cpu:float32 --b cuda:float32`` on LeNet-5 (outputs, gradients, training);
4. ``python -m benchmarks --device cuda --quick``: xpnet on CuPy against PyTorch on CUDA.

Every log and result goes under DIR (at most 8 files): device.txt, pytest.log, compare.log,
compare.json, cuda-<label>.json/.md and summary.md.  The exit code is 0 only when every step
passed.  Each step has a time limit (60 + 240 + 60 + 120 s): the whole run ends within 8 minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import xpnet

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
GPU_FILES = ["tests/test_parity.py", "tests/test_compare.py", "tests/test_backend.py", "tests/test_cli.py"]


def _steps(out: Path, label: str) -> list[tuple[str, list[list[str]], str, int]]:
    """(name, commands, log file, time limit in seconds) of each step after the GPU check."""
    return [
        ("pytest", [[*PYTEST, "-m", "gpu", "tests"], [*PYTEST, *GPU_FILES]], "pytest.log", 240),
        ("compare", [[sys.executable, "-m", "xpnet", "compare", "--a", "cpu:float32", "--b", "cuda:float32",
                      "--json", str(out / "compare.json")]], "compare.log", 60),
        ("benchmarks", [[sys.executable, "-m", "benchmarks", "--device", "cuda", "--quick", "--label", label,
                         "--out", str(out)]], None, 120),
    ]


def _run(commands: list[list[str]], log: Path | None, limit: int) -> tuple[int, str]:
    """Run the commands one after another (all of them, even after a failure) within ``limit`` seconds."""
    env = {**os.environ, "XPNET_REQUIRE_GPU": "1", "PYTHONUNBUFFERED": "1"}
    deadline, code, text = time.monotonic() + limit, 0, ""
    for command in commands:
        left = max(1.0, deadline - time.monotonic())
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=left)
            output, rc = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as exc:
            output, rc = f"{exc.stdout or ''}{exc.stderr or ''}\nTIMED OUT after {limit} s", 124
        text += f"$ {' '.join(command)}\n{output}\n(exit {rc})\n\n"
        code = code or rc
    if log is not None:
        log.write_text(text, encoding="utf-8")
    return code, text


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("(exit")]
    return lines[-1][:160] if lines else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_acceptance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for every log and result")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    code, info = _run([[sys.executable, "-m", "xpnet", "info"]], args.out / "device.txt", 60)
    rows = [("GPU check (xpnet info, smoke test)", xpnet.gpu_available(), round(time.monotonic() - started),
             _last_line(info) if xpnet.gpu_available() else xpnet.gpu_unavailable_reason())]
    if xpnet.gpu_available():
        gpu = xpnet.backend.gpu_devices()[0][1]
        for name, commands, log, limit in _steps(args.out, re.sub(r"[^A-Za-z0-9_.-]+", "-", gpu).strip("-")):
            began = time.monotonic()
            code, text = _run(commands, args.out / log if log else None, limit)
            rows.append((name, code == 0, round(time.monotonic() - began), _last_line(text)))
            print(f"{name}: {'passed' if code == 0 else f'FAILED (exit {code})'}", flush=True)
    else:
        gpu = "none"
        print(f"no usable GPU: {xpnet.gpu_unavailable_reason()}", file=sys.stderr)
    table = "\n".join(f"| {name} | {'passed' if ok else 'FAILED'} | {seconds} | {last} |"
                      for name, ok, seconds, last in rows)
    summary = (f"# GPU acceptance: {gpu}\n\nxpnet {xpnet.__version__}, {round(time.monotonic() - started)} s in all; "
               f"logs beside this file.\n\n| step | result | seconds | last line |\n|---|---|---:|---|\n{table}\n")
    (args.out / "summary.md").write_text(summary, encoding="utf-8")
    print(summary)
    return 0 if all(ok for _, ok, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
