"""Write the snapshot of CuPy's API that the strict test backend enforces (tests/cupy_api/cupy-14.json).

The strict backend (tests/strict_backend.py) offers exactly the names recorded here, so an op that
reaches for a NumPy-only name (``xp.nditer``, ``a.resize``, ``numpy.insert`` on a device array)
fails the CPU test suite instead of the first GPU run.  CuPy imports without a GPU, so any machine
can refresh the snapshot::

    python -m venv /tmp/cupy-api && /tmp/cupy-api/bin/pip install "cupy-cuda12x==14.*"
    /tmp/cupy-api/bin/python tests/cupy_api/snapshot.py tests/cupy_api/cupy-14.json

What is recorded: the public names of ``cupy`` and of the submodules xpnet could reach for
(``linalg``, ``random``, ``fft``, ``lib.stride_tricks``); every attribute of ``cupy.ndarray``
(dunders included: CuPy has no ``__imatmul__``); the methods of a CuPy ufunc and of
``cupy.random.Generator``/``RandomState``; and, for each function whose signature Python can read,
its parameters (name, kind, whether it has a default), so a keyword CuPy does not take is refused.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys

SUBMODULES = ("", "linalg", "random", "fft", "lib.stride_tricks")


def _public(obj: object) -> list[str]:
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def _parameters(func: object) -> list[list] | None:
    """[[name, kind, has_default], ...], or None where the signature cannot be read (ufuncs, Cython)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    return [[p.name, int(p.kind), p.default is not inspect.Parameter.empty]
            for p in signature.parameters.values()]


def snapshot(cupy) -> dict:
    """The API description of an imported ``cupy`` module."""
    modules, signatures = {}, {}
    for sub in SUBMODULES:
        module = importlib.import_module(f"cupy.{sub}") if sub else cupy
        modules[sub] = _public(module)
        for name in modules[sub]:
            member = getattr(module, name)
            if inspect.isfunction(member) or type(member).__name__ == "_GUFunc":
                params = _parameters(member)
                if params is not None:
                    signatures[f"{sub}.{name}" if sub else name] = params
    return {
        "cupy_version": cupy.__version__,
        "modules": modules,
        "signatures": signatures,
        "ndarray": sorted(dir(cupy.ndarray)),
        "ufunc_methods": _public(cupy.add),
        "random.Generator": _public(cupy.random.Generator),
        "random.RandomState": _public(cupy.random.RandomState),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import cupy  # imports without a GPU: only the names are read

    with open(argv[0], "w", encoding="utf-8") as file:
        json.dump(snapshot(cupy), file, indent=1, sort_keys=True)
        file.write("\n")
    print(f"wrote {argv[0]} from cupy {cupy.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
