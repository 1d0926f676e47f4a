"""Command line: ``xpnet train``, ``xpnet compare`` and ``xpnet info``.

Exit codes: 0 success; 1 ``compare`` found differences beyond tolerance; 2 a usage error (bad
arguments, unusable data or output paths: one line on stderr); 3 ``train`` stopped on a
non-finite loss (nothing saved); 130 interrupted with Ctrl-C (nothing saved).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy

from . import __version__, backend, datasets, distributed, optim
from .augment import RandomShift
from .compare import compare as run_compare
from .compare import format_table, parse_config, plot_losses
from .errors import XpnetError
from .io import check_writable
from .models import MODELS
from .training import load

EXIT_USAGE, EXIT_NONFINITE, EXIT_INTERRUPTED = 2, 3, 130
DEFAULT_EPOCHS = {"lenet5": 16, "resnet": 8, "mobilenet": 8}
TITLES = {"lenet5": "LeNet-5", "resnet": "ResNet", "mobilenet": "MobileNet"}


def _int_at_least(minimum: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise argparse.ArgumentTypeError(f"expected {kind} integer, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(1, text)


def _non_negative_int(text: str) -> int:
    return _int_at_least(0, text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train LeNet-5, a ResNet or a MobileNet on MNIST (the built-in subset by default)",
                       epilog="exit codes: 0 done; 2 bad arguments, data or output paths; 3 stopped on a "
                              "non-finite loss (nothing saved); 130 interrupted (nothing saved)")
    p.add_argument("--model", choices=sorted(MODELS), default="lenet5",
                   help="lenet5 (default), resnet (xpnet.models.resnet_mnist) or mobilenet (mobilenet_mnist)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"default: {', '.join(f'{k} {v}' for k, v in DEFAULT_EPOCHS.items())}")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per training step (default 64)")
    p.add_argument("--lr", type=_positive_float, default=2e-3,
                   help="peak Adam learning rate, cosine-decayed to 0 over the run (default 2e-3)")
    p.add_argument("--shift", type=_non_negative_int, default=2,
                   help="random translation of training images by up to this many pixels (0: off; default 2)")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seed of the initial weights, shuffling and shifts (default 0)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with the four MNIST IDX files (default: the built-in subset)")
    p.add_argument("--out", type=Path, default=None, help="model file to write (default: MODEL.xpnet)")
    p.add_argument("--plot", type=Path, default=None,
                   help="PNG of the curves (default: next to --out, when matplotlib is installed)")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="0 silent, 1 a progress bar per epoch, 2 one line per epoch (default 1)")
    p.add_argument("--distributed", nargs="?", const="auto", default=None, choices=distributed.BACKENDS,
                   help="data-parallel over the ranks of mpiexec (mpi4py; see docs/distributed.md): "
                        "--batch-size is the global batch; rank 0 prints and saves. auto (the default "
                        "when given without a value) uses NCCL when every rank has a GPU, else MPI")


def _usage_error(exc: Exception) -> int:
    print(f"xpnet train: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


def _check_mnist(source: object, x: numpy.ndarray, y: numpy.ndarray, split: str) -> None:
    """ValueError in one line unless the images are 28x28 and the labels digits 0-9 (what the models take)."""
    if x.shape[1:] != (1, 28, 28):
        raise ValueError(f"{source}: {split} images have shape {x.shape[1:]}; xpnet train needs 28x28 "
                         "MNIST images, (N, 1, 28, 28)")
    bad = (y < 0) | (y > 9)
    if bad.any():
        index = int(numpy.argmax(bad))
        raise ValueError(f"{source}: {split} labels must be digits 0-9; found {int(y[index])} at index {index}")


def _unchanged(path: Path) -> str:
    return f"; {path} is unchanged" if path.exists() else ""


def train(args: argparse.Namespace) -> int:
    """Train, report test accuracy and speed, save the model (and a plot)."""
    if args.distributed is None:
        return _train_here(args, None)
    try:
        comm = distributed.init(args.distributed)
    except (ImportError, XpnetError) as exc:
        return _usage_error(exc)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(sys.stdout if comm.rank == 0 else quiet):
        code = _train_here(args, comm)  # ranks > 0 print nothing to stdout
    if code == EXIT_USAGE and comm.size > 1:
        comm.abort("xpnet train stopped on the error above", code)  # the other ranks may be waiting for this one
    return code


def _train_here(args: argparse.Namespace, comm: distributed.Communicator | None) -> int:
    """The training run of this process (one rank of several, with ``comm``)."""
    source = args.data or "built-in MNIST subset"
    args.out = args.out or Path(f"{args.model}.xpnet")
    try:
        if comm is None or comm.rank == 0:
            for path in (args.out, args.plot or args.out.with_suffix(".png")):
                check_writable(path)  # before training: a bad path must not cost the run
        (x, y), (x_test, y_test) = datasets.load_mnist(args.data)
        _check_mnist(source, x, y, "training")
        _check_mnist(source, x_test, y_test, "test")
        device = comm.device if comm is not None and args.device == "auto" else args.device
        model = MODELS[args.model](seed=args.seed, device=device)
        args.epochs = args.epochs or DEFAULT_EPOCHS[args.model]
    except (OSError, ValueError) as exc:  # a bad --data folder, data, path or --device name: no traceback
        return _usage_error(exc)
    try:
        with numpy.errstate(over="ignore", invalid="ignore"):  # a divergence is reported once, below
            return _train(args, model, source, (x, y), (x_test, y_test), comm)
    except KeyboardInterrupt:
        print(f"\nxpnet train: interrupted; nothing saved{_unchanged(args.out)}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _train(args: argparse.Namespace, model: object, source: object, train_data: tuple, test_data: tuple,
           comm: distributed.Communicator | None = None) -> int:
    (x, y), (x_test, y_test) = train_data, test_data
    steps = args.epochs * math.ceil(len(x) / args.batch_size)
    model.compile(optim.Adam(lr=optim.CosineDecay(args.lr, total_steps=steps)), "cross_entropy", ["accuracy"],
                  distributed=comm)
    ranks = "" if comm is None else f" ({comm.size} ranks over {comm.backend.upper()}, global batch)"
    print(f"Training {TITLES[args.model]} on {len(x):,} images ({source}), testing on {len(x_test):,}; "
          f"device {model.device}, {args.epochs} epochs, batch {args.batch_size}{ranks}")
    started = time.perf_counter()
    history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(x_test, y_test), validation_name="test", verbose=args.verbose,
                        augment=RandomShift(args.shift) if args.shift else None)
    seconds = time.perf_counter() - started
    if history.nonfinite is not None:
        bad = history.nonfinite
        print(f"xpnet train: stopped: the loss became {bad['loss']} at epoch {bad['epoch']}, batch {bad['batch']} "
              f"(try a smaller --lr); nothing saved{_unchanged(args.out)}", file=sys.stderr)
        return EXIT_NONFINITE
    result = model.evaluate(x_test, y_test)
    speed = numpy.mean(history.history["images_per_s"])
    print(f"test accuracy {result['accuracy']:.2%} (loss {result['loss']:.4f}); "
          f"training {speed:,.0f} images/s; {seconds:.1f} s in all")
    model.save(args.out)  # rank 0 only when distributed
    print(f"saved {args.out}")
    if comm is not None and comm.rank > 0:
        return 0
    _plot(history, args.plot or args.out.with_suffix(".png"), f"{TITLES[args.model]} on MNIST", args.plot is not None)
    return 0


def _plot(history: object, path: Path, title: str, explicit: bool) -> None:
    try:
        from .viz import plot_history
        plot_history(history, path, title=title)
        print(f"saved {path}")
    except ImportError:
        if explicit:
            print('--plot needs matplotlib: pip install "xpnet[viz]"', file=sys.stderr)


def _config(text: str) -> str:
    try:
        parse_config(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="run one model on two configurations (CPU vs GPU, or float32 vs float64) "
                                       "and compare outputs, gradients and training")
    p.add_argument("--model", type=Path, default=None, help="a saved model file (default: LeNet-5)")
    p.add_argument("--a", type=_config, default="cpu:float32", help="DEVICE[:DTYPE] (default: cpu:float32)")
    p.add_argument("--b", type=_config, default="auto",
                   help="DEVICE[:DTYPE], the reference; auto = cuda:float32 with a usable GPU, else cpu:float64")
    p.add_argument("--steps", type=_positive_int, default=100, help="SGD steps (default 100)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per SGD step (default 32)")
    p.add_argument("--lr", type=_positive_float, default=0.05, help="SGD learning rate (default 0.05)")
    p.add_argument("--train-images", type=_positive_int, default=2048,
                   help="training images the steps draw from (default 2048)")
    p.add_argument("--test-images", type=_positive_int, default=1000,
                   help="held-out images whose predictions are compared (default 1000)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the weights and batches (default 0)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with the four MNIST IDX files (default: the built-in subset)")
    p.add_argument("--no-resync", dest="resync", action="store_false",
                   help="let the runs drift apart after a tie is broken differently (see xpnet.compare)")
    p.add_argument("--json", type=Path, default=None, help="write the full report as JSON to this file (default: none)")
    p.add_argument("--plot", type=Path, default=None, help="PNG of the loss curves (needs matplotlib; default: none)")


def compare(args: argparse.Namespace) -> int:
    """Print the comparison table; 0 when everything is within tolerance, 1 when not, 2 on bad input."""
    try:
        for path in (args.json, args.plot):
            if path is not None:
                check_writable(path)  # before the runs: a bad path must not cost them
        result = run_compare(args.model, a=args.a, b=args.b, steps=args.steps, batch_size=args.batch_size,
                             lr=args.lr, seed=args.seed, data=args.data, train_images=args.train_images,
                             test_images=args.test_images, resync=args.resync)
    except (OSError, ValueError, XpnetError) as exc:  # bad model file, data or device: no traceback
        print(f"xpnet compare: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json is not None:
        result.to_json(args.json)
        print(f"saved {args.json}")
    if args.plot is not None:
        try:
            plot_losses(result, args.plot)
            print(f"saved {args.plot}")
        except ImportError:
            print('--plot needs matplotlib: pip install "xpnet[viz]"', file=sys.stderr)
    return 0 if result.passed else 1


def _blas() -> str:
    try:
        config = numpy.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.25 has no mode="dicts"
        return "unknown"


def info(_: argparse.Namespace) -> int:
    """Versions, BLAS and devices."""
    print(f"xpnet   {__version__}")
    print(f"python  {platform.python_version()} ({platform.machine()})")
    print(f"numpy   {numpy.__version__} (BLAS: {_blas()})")
    versions = backend.gpu_versions()
    if versions:
        print(f"cupy    {versions['cupy']} (CUDA runtime {versions['cuda_runtime']}, driver {versions['cuda_driver']})")
        for index, name in backend.gpu_devices():
            print(f"device  cuda:{index} {name}")
        print("gpu     smoke test passed (copy, elementwise kernel, matmul, reduction, copy back)")
    else:
        print(f"cupy    not usable: {backend.gpu_unavailable_reason()}")
    print("device  cpu")
    return 0


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W as positive integers, got {text!r}")
    return shape


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a saved model for inference (ONNX: OUT.onnx)")
    p.add_argument("model", type=Path, help="a saved .xpnet model file")
    p.add_argument("out", type=Path, help="the file to write; the format comes from its suffix (.onnx)")
    p.add_argument("--input-shape", type=_shape, default=(1, 28, 28),
                   help="per-sample input shape C,H,W (default 1,28,28); the batch stays dynamic")


def export(args: argparse.Namespace) -> int:
    """Load a model file and export it; 2 with one line on any bad input."""
    try:
        check_writable(args.out)
        model = load(args.model)
        model.export(args.out, args.input_shape)
    except (OSError, ValueError, ImportError, NotImplementedError, XpnetError) as exc:
        print(f"xpnet export: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"saved {args.out} (ONNX opset 17, input (N, {', '.join(map(str, args.input_shape))}))")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xpnet", description="xpnet command line")
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _compare_parser(sub)
    _export_parser(sub)
    sub.add_parser("info", help="versions of xpnet, numpy, cupy, the BLAS, and the devices")
    args = parser.parse_args(argv)
    return {"train": train, "compare": compare, "export": export, "info": info}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
