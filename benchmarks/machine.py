"""What the numbers were measured on: CPU, cores, BLAS and its threads, versions, date, load."""

from __future__ import annotations

import ctypes
import datetime
import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy

import xpnet

REPO = Path(__file__).resolve().parent.parent
_THREAD_GETTERS = ("openblas_get_num_threads", "openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                   "scipy_openblas_get_num_threads64_", "MKL_Get_Max_Threads", "bli_thread_get_num_threads")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_kind() -> dict[str, Any]:
    """Vendor, family/model numbers and the widest vector instruction set, from /proc/cpuinfo."""
    fields = _cpuinfo()
    flags = set(fields.get("flags", "").split())
    isa = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"),
                                        ("sse4_2", "SSE4.2")) if flag in flags), platform.machine())
    extras = [f for f in ("fma", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
    return {"vendor": fields.get("vendor_id", "?"), "family": fields.get("cpu family", "?"),
            "model": fields.get("model", "?"), "isa": isa + (f" (+{', '.join(extras)})" if extras else "")}


def blas_kernel() -> dict[str, Any]:
    """The kernel OpenBLAS chose for this CPU (threadpoolctl's "architecture", else openblas_get_corename())
    and the OPENBLAS_CORETYPE override, if any."""
    kernel, source = None, None
    try:
        import threadpoolctl
        for pool in threadpoolctl.threadpool_info():
            if pool.get("internal_api") == "openblas" and pool.get("architecture"):
                kernel, source = pool["architecture"], f"threadpoolctl {threadpoolctl.__version__}"
                break
    except ImportError:
        pass
    if kernel is None:
        kernel, source = _corename_by_ctypes()
    return {"blas_kernel": kernel, "blas_kernel_source": source,
            "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE")}


def _corename_by_ctypes() -> tuple[str | None, str | None]:
    for path in _loaded_blas_libraries():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("openblas_get_corename", "openblas_get_corename64_", "scipy_openblas_get_corename64_",
                       "scipy_openblas_get_corename"):
            getter = getattr(library, symbol, None)
            if getter is not None:
                getter.restype = ctypes.c_char_p
                return getter().decode(), f"{symbol}()"
    return None, None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def blas_name() -> str:
    """numpy's BLAS library and version, e.g. "scipy-openblas 0.3.31"."""
    try:
        blas = numpy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.25 has no mode="dicts"
        return "unknown"


def _loaded_blas_libraries() -> list[str]:
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = {line.split()[-1] for line in lines if line.split()[-1].startswith("/")}
    return sorted(p for p in paths if any(k in Path(p).name.lower() for k in ("blas", "mkl", "blis")))


def blas_threads() -> tuple[int, str]:
    """(threads numpy's BLAS uses, how that was found): asked from the library, else the environment."""
    for path in _loaded_blas_libraries():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _THREAD_GETTERS:
            getter = getattr(library, symbol, None)
            if getter is not None:
                return int(getter()), f"{symbol}()"
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value), f"${variable}"
    return usable_cpus(), "usable CPUs (BLAS default)"


def git_revision() -> str:
    """Short commit of the xpnet checkout, "+dirty" when xpnet/ differs from it; "" outside git."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(REPO), *args],
                              capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return ""
        dirty = git("diff", "--quiet", "HEAD", "--", "xpnet").returncode != 0
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() + ("+dirty" if dirty else "")


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _machine_busy_seconds() -> float | None:
    """CPU seconds the CPUs this process may run on have been busy since boot (Linux), else None."""
    try:
        allowed = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        lines = Path("/proc/stat").read_text().splitlines()
    except (OSError, AttributeError):
        return None
    busy = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in allowed:
            ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]  # steal (a busy neighbour VM) counts as busy
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_snapshot() -> tuple[float | None, float, float]:
    """(machine busy CPU s, this process's and its finished children's CPU s, wall s), to diff later."""
    t = os.times()
    return _machine_busy_seconds(), t.user + t.system + t.children_user + t.children_system, time.perf_counter()


def other_cpus(start: tuple[float | None, float, float], end: tuple[float | None, float, float]) -> float | None:
    """How many CPUs other processes kept busy on average between two snapshots (None off Linux).

    Unlike the load average, this leaves out the benchmark's own threads, so a run that
    uses every core on its own is not reported as disturbed.
    """
    if start[0] is None or end[0] is None or end[2] <= start[2]:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return round(max(others, 0.0) / (end[2] - start[2]), 2)


def machine_info(device: str, torch: Any | None) -> dict[str, Any]:
    """Everything the report records about the machine and the software."""
    threads, threads_source = blas_threads()
    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "numpy": numpy.__version__,
        "blas": blas_name(),
        "blas_threads": threads,
        "blas_threads_source": threads_source,
        **blas_kernel(),
        "cpu_kind": cpu_kind(),
        "xpnet": xpnet.__version__,
        "xpnet_git": git_revision(),
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "device": device,
        "load_average_start": load_average(),
    }
    if device != "cpu":
        names = dict(xpnet.backend.gpu_devices())
        info["gpu"] = names.get(xpnet.get_device(device).index, "unknown")
        info.update({f"gpu_{k}": v for k, v in xpnet.backend.gpu_versions().items()})
        if torch is not None:
            info["torch_cuda"] = torch.version.cuda
    return info
