"""Data-parallel scaling: LeNet-5 ``fit`` on 2 ranks x 1 thread against 1 process x 1 thread.

Both runs take the same batch per process (128), so a step does the same work on each
process. One process trains on N images per epoch; the two ranks train on 2N images per epoch
with a global batch of 256. Each process is pinned to one CPU and uses one BLAS thread.

    efficiency = (2-rank images/s) / (2 x 1-process images/s)

Run it alone with ``python -m benchmarks.scaling``. In the suite it is the ``scaling`` case. The
workers are this module, started as ``python -m benchmarks.scaling --worker``, alone or under
``mpiexec -n 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy

ROOT = Path(__file__).resolve().parents[1]
PER_RANK_BATCH = 128


def mpiexec() -> str | None:
    """The mpiexec next to this Python (the mpich wheel puts it there) or on PATH; None without mpi4py."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def _worker(images: int, epochs: int, ranks: int) -> None:
    """Pin this process to one CPU, train, and (rank 0) print the images/s of each timed epoch as JSON."""
    from xpnet import datasets, distributed, models, optim
    comm = distributed.init("mpi") if ranks > 1 else None
    rank = 0 if comm is None else comm.rank
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[rank % len(cpus)]})
    (x, y), _ = datasets.load_mnist()
    n = images * ranks
    x, y = numpy.resize(x, (n, *x.shape[1:])), numpy.resize(y, n)  # repeats the subset if needed
    model = models.lenet5(seed=0).compile(optim.SGD(lr=0.01), "cross_entropy", distributed=comm)
    model.fit(x, y, epochs=1, batch_size=PER_RANK_BATCH * ranks, verbose=0)  # warm-up
    speeds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=PER_RANK_BATCH * ranks, verbose=0)
        speeds.append(n / (time.perf_counter() - started))
    if rank == 0:
        print(json.dumps({"ranks": ranks, "images_per_s": speeds}), flush=True)


def _launch(ranks: int, images: int, epochs: int, launcher: str | None) -> list[float]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "benchmarks.scaling", "--worker", "--images", str(images),
               "--epochs", str(epochs), "--ranks", str(ranks)]
    if ranks > 1:
        command = [launcher, "-n", str(ranks), *command]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["images_per_s"]


def measure(images: int = 5120, epochs: int = 3, rounds: int = 2) -> dict[str, Any]:
    """Alternate 1-process and 2-rank runs ``rounds`` times; medians of all timed epochs, and the efficiency."""
    launcher = mpiexec()
    if launcher is None:
        raise RuntimeError('the scaling case needs mpi4py and mpiexec: pip install "xpnet[mpi]"')
    single, pair = [], []
    for _ in range(rounds):
        single += _launch(1, images, epochs, launcher)
        pair += _launch(2, images, epochs, launcher)
    one, two = float(numpy.median(single)), float(numpy.median(pair))
    return {"single": single, "pair": pair, "single_median": one, "pair_median": two,
            "efficiency": round(two / (2 * one), 3), "images_per_rank": images, "per_rank_batch": PER_RANK_BATCH}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=5120, help="images per rank per epoch (default 5120)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run (default 3)")
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.images, args.epochs, args.ranks)
        return 0
    result = measure(args.images, args.epochs)
    print(f"1 process x 1 thread: {result['single_median']:,.0f} images/s; 2 ranks x 1 thread: "
          f"{result['pair_median']:,.0f} images/s; efficiency {result['efficiency']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
