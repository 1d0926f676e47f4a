"""Developer sessions: `nox -s tests` (what CI runs), `nox -s tests_gpu`, `nox -s lint`, `nox -s bench`."""

import nox

nox.options.sessions = ["tests", "lint"]


@nox.session
def tests(session: nox.Session) -> None:
    """The full test suite on the CPU backends (numpy and the strict test backend)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def tests_gpu(session: nox.Session) -> None:
    """The suite with CuPy installed; needs an NVIDIA GPU (pass `-- --cuda13` for CUDA 13 wheels).

    With a usable GPU the `xp` fixture adds its cupy parameter (marked `gpu`), and the parity
    tests (tests/test_parity.py) and `xpnet compare` compare the CPU with the GPU instead of
    with the strict test backend, so the whole suite runs, not only `-m gpu`.  XPNET_REQUIRE_GPU=1
    makes a missing GPU fail the run.  On a GPU machine without network (no nox, no pip), run
    `python -m benchmarks.gpu_acceptance --out DIR` instead.
    """
    extra = "cuda13" if "--cuda13" in session.posargs else "cuda12"
    session.install("-e", f".[test,{extra}]")
    session.run("pytest", *[a for a in session.posargs if a != "--cuda13"], env={"XPNET_REQUIRE_GPU": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the package, tests, examples and benchmarks."""
    session.install("ruff")
    session.run("ruff", "check", "xpnet", "tests", "examples", "benchmarks", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """xpnet against PyTorch (CPU build) side by side; results in benchmarks/results/.

    `nox -s bench -- --quick` for a ~30 s run; `-- --no-torch` skips installing PyTorch and runs xpnet alone;
    other arguments go to `python -m benchmarks` (see benchmarks/README.md).
    """
    session.install("-e", ".")
    if "--no-torch" not in session.posargs:
        session.install("torch==2.13.0", "--extra-index-url", "https://download.pytorch.org/whl/cpu")
    session.run("python", "-m", "benchmarks", *session.posargs)
