"""Data-parallel training over several processes: MPI (mpi4py) between CPUs, NCCL between GPUs.

Every process (rank) holds the whole model. Launch them with ``mpiexec -n 2 python train.py``,
and in the script write::

    comm = xpnet.distributed.init()                 # "auto": NCCL if every rank has a GPU, else MPI
    model = models.lenet5(device=comm.device)
    model.compile(optimizer, distributed=comm)      # checks the ranks agree, broadcasts rank 0's weights
    model.fit(x, y, batch_size=128)                 # 128 is the global batch; each rank computes a slice

The training loop (:mod:`xpnet.training`) calls the communicator at a few points only. It
broadcasts rank 0's weights, checks that the ranks agree on the architecture and the data, cuts
each global batch into one contiguous slice per rank, and once per step sums a single flat buffer
over all ranks. That buffer holds each rank's gradients weighted by its share of the batch, its
running statistics and its loss and metric sums. This module imports nothing from layers or ops;
it sees the model only through ``variables()`` and ``get_config()``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy

from .backend import Array, current_stream_ptr, get_xp, gpu_count, nccl_module, to_numpy, use_gpu

__all__ = ["Communicator", "NCCLCommunicator", "RanksDisagree", "init", "BACKENDS", "MPI_HINT"]

BACKENDS = ("auto", "mpi", "nccl")
ABORT_GRACE_S = 0.5  # seconds the launcher gets to forward the last output before MPI_Abort
MPI_HINT = 'pip install "xpnet[mpi]" (mpi4py with the mpich wheel, which brings mpiexec)'


def _import_mpi() -> ModuleType:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"xpnet.distributed needs mpi4py and an MPI library ({exc}); {MPI_HINT}") from None
    return MPI


class RanksDisagree(ValueError):
    """Raised on every rank at once when the ranks did not build the same model, data or settings."""


class Communicator:
    """The ranks that train one model over MPI: this process is ``rank`` of ``size`` and
    ``local_rank`` among the ranks of its host. Arrays on a GPU are staged through host memory
    (the mpich wheels are not GPU-aware); :class:`NCCLCommunicator` keeps them on the GPU."""

    backend = "mpi"

    def __init__(self, mpi: ModuleType, world: Any, local_rank: int) -> None:
        self._mpi, self.world = mpi, world
        self.rank, self.size, self.local_rank = world.Get_rank(), world.Get_size(), local_rank

    @property
    def device(self) -> str:
        """The device this rank trains on: "cpu" over MPI, this rank's GPU with NCCL."""
        return "cpu"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    # --- buffers (the fast path: uppercase mpi4py calls on contiguous arrays) ---------------
    def allreduce_sum(self, buffer: Array) -> None:
        """Replace ``buffer`` (contiguous) by its sum over all ranks, on every rank."""
        host = self._host(buffer)
        self.world.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
        self._back(host, buffer)

    def broadcast(self, buffer: Array, root: int = 0) -> None:
        """Replace ``buffer`` (contiguous) by rank ``root``'s, on every rank."""
        host = self._host(buffer)
        self.world.Bcast(host, root=root)
        self._back(host, buffer)

    @staticmethod
    def _host(buffer: Array) -> numpy.ndarray:
        if not buffer.flags.c_contiguous:
            raise ValueError("a communicator buffer must be C-contiguous")
        return to_numpy(buffer)

    @staticmethod
    def _back(host: numpy.ndarray, buffer: Array) -> None:
        if host is not buffer:  # a GPU array went through the host: copy the result back
            buffer.set(host)

    # --- small Python objects (pickled) ----------------------------------------------
    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self.world.bcast(obj, root=root)

    def allgather_obj(self, obj: Any) -> list[Any]:
        return self.world.allgather(obj)

    def barrier(self) -> None:
        self.world.Barrier()

    def abort(self, message: str, code: int = 1, detail: Callable[[], None] | None = None) -> None:
        """Print ``message`` naming this rank (then ``detail()``, e.g. a traceback) and end every rank
        (MPI_Abort): no rank is left waiting.  The launcher forwards output asynchronously and
        MPI_Abort ends it at once, so the streams are flushed and given ABORT_GRACE_S to get out."""
        print(f"xpnet.distributed: rank {self.rank} of {self.size}: {message}; stopping all {self.size} ranks",
              file=sys.stderr, flush=True)
        if detail is not None:
            detail()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        time.sleep(ABORT_GRACE_S)
        self.world.Abort(code)

    # --- agreement and batches ----------------------------------------------------
    def check_same(self, what: str, value: Any) -> None:
        """Raise :class:`RanksDisagree` on every rank (no rank hangs) unless all ranks passed an equal ``value``."""
        values = self.allgather_obj(value)
        for rank, other in enumerate(values):
            if other != values[0]:
                raise RanksDisagree(f"ranks disagree on {what}: rank 0 has {_short(values[0])}, "
                                 f"rank {rank} has {_short(other)}")

    def part(self, n: int) -> slice:
        """This rank's contiguous slice of ``n`` samples (sizes differ by at most one)."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)


class NCCLCommunicator(Communicator):
    """MPI for setup and small objects; the per-step sum and the weight broadcast go through NCCL
    (``cupy.cuda.nccl``) on this rank's GPU, which is ``local_rank`` (modulo the GPUs it sees)."""

    backend = "nccl"

    def __init__(self, mpi: ModuleType, world: Any, local_rank: int) -> None:
        super().__init__(mpi, world, local_rank)
        self.gpu = local_rank % max(gpu_count(), 1)
        placed = self.allgather_obj((_host_name(), self.gpu))
        if len(set(placed)) < len(placed):
            raise RanksDisagree(f"NCCL needs one GPU per rank, but some ranks share one ((host, GPU) of each rank: "
                                f"{placed}); start at most as many ranks per host as it has GPUs")
        use_gpu(self.gpu)  # NCCL binds its communicator to the current device
        self._nccl = nccl = nccl_module()
        unique_id = self.bcast_obj(nccl.get_unique_id() if self.rank == 0 else None)
        self._comm = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        self._types = {numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32, numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64,
                       numpy.dtype(numpy.int64): nccl.NCCL_INT64}

    @property
    def device(self) -> str:
        return f"cuda:{self.gpu}"

    def _args(self, buffer: Array) -> tuple[int, int, int]:
        if not buffer.flags.c_contiguous:
            raise ValueError("a communicator buffer must be C-contiguous")
        return buffer.data.ptr, buffer.size, self._types[numpy.dtype(buffer.dtype)]

    def allreduce_sum(self, buffer: Array) -> None:
        if isinstance(buffer, numpy.ndarray):
            return super().allreduce_sum(buffer)
        ptr, count, dtype = self._args(buffer)
        self._comm.allReduce(ptr, ptr, count, dtype, self._nccl.NCCL_SUM, current_stream_ptr())

    def broadcast(self, buffer: Array, root: int = 0) -> None:
        if isinstance(buffer, numpy.ndarray):
            return super().broadcast(buffer, root)
        ptr, count, dtype = self._args(buffer)
        self._comm.bcast(ptr, count, dtype, root, current_stream_ptr())


def init(backend: str = "auto") -> Communicator:
    """The communicator of ``MPI.COMM_WORLD``. ``backend``: "mpi" (CPU arrays, or GPU arrays staged
    through the host), "nccl" (each rank takes the GPU of its local rank) or "auto" (NCCL when every
    rank sees a usable GPU for its local rank, else MPI).

    With more than one rank, an uncaught exception on any rank prints its rank and ends all of them
    (MPI_Abort), so a failure never leaves the others waiting in a collective call.
    """
    if backend not in BACKENDS:
        raise ValueError(f"distributed backend must be one of {', '.join(BACKENDS)}; received {backend!r}")
    mpi = _import_mpi()
    world = mpi.COMM_WORLD
    node = world.Split_type(mpi.COMM_TYPE_SHARED, key=world.Get_rank())
    local_rank = node.Get_rank()
    node.Free()
    if backend == "auto":
        backend = "nccl" if all(world.allgather(gpu_count() > 0 and _nccl_usable())) else "mpi"
    comm = Communicator(mpi, world, local_rank)
    if comm.size > 1:
        _abort_on_uncaught(comm)
    return NCCLCommunicator(mpi, world, local_rank) if backend == "nccl" else comm


def _nccl_usable() -> bool:
    try:
        nccl_module()
    except Exception:  # DeviceError, or a broken NCCL library
        return False
    return True


def _host_name() -> str:
    import socket
    return socket.gethostname()


def _abort_on_uncaught(comm: Communicator) -> None:
    """Turn an uncaught exception into a message naming the rank plus MPI_Abort of every rank."""
    previous: Callable = sys.excepthook

    def hook(kind: type, value: BaseException, traceback: Any) -> None:
        comm.abort(f"{kind.__name__}: {value}", detail=lambda: previous(kind, value, traceback))

    sys.excepthook = hook


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


# --- what the training loop needs (the model seen through variables() and get_config()) ---------
def model_fingerprint(model: Any) -> str:
    """A digest of the architecture, names, shapes and dtypes: equal on ranks that built the same model
    (whatever their seeds: rank 0's weights and seed are broadcast)."""
    layout = [(name, tuple(v.shape), str(v.value.dtype)) for name, v in model.variables()]
    config = {k: v for k, v in model.get_config().items() if k not in ("seed", "xpnet_version")}
    text = json.dumps([config, layout], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16] + f" ({len(layout)} arrays)"


def broadcast_model(comm: Communicator, model: Any) -> None:
    """Give every rank rank 0's parameters, buffers, seed (validation split) and data generator (shuffle order)."""
    for _, variable in model.variables():
        comm.broadcast(variable.value)
    model.seed, model.rng.bit_generator.state = comm.bcast_obj((model.seed, model.rng.bit_generator.state))


def broadcast_optimizer(comm: Communicator, optimizer: Any) -> None:
    """Give every rank rank 0's optimizer state (momentum, moments), step count and learning-rate scale."""
    started = bool(optimizer.state)
    comm.check_same("whether the optimizer has state (a checkpoint loaded on some ranks only?)", started)
    for state in optimizer.state:
        for array in state.values():
            comm.broadcast(array)
    optimizer.iterations, optimizer.lr_scale = comm.bcast_obj((optimizer.iterations, optimizer.lr_scale))


class StepReducer:
    """Sums one flat buffer per step over the ranks.

    Each rank writes three kinds of data into the buffer. First its gradients, times
    n_rank / n_global: the sum over ranks is then the gradient of the global batch's mean loss.
    Second its buffers (BatchNorm's running statistics and counter), with the same weights: the
    sum is their average over the ranks, weighted like the samples. The running mean is linear in
    the batch means, so it becomes exactly the global batch's update; the running variance becomes
    the weighted mean of the slices' variances. The result is the same on every rank. Third its
    loss and metric sums, times 1. Afterwards the gradients and buffers are copied back.
    """

    def __init__(self, comm: Communicator, model: Any) -> None:
        self.comm = comm
        variables = [v for _, v in model.variables()]
        self.params = [v for v in variables if v.trainable]
        self.buffers = [v for v in variables if not v.trainable]
        sizes = [v.size for v in self.params + self.buffers]
        self.bounds = numpy.cumsum([0, *sizes]).tolist()
        self.flat = None

    def reduce(self, stats: Array, n_local: int, n_global: int) -> Array:
        """Sum this step's weighted gradients, buffers and ``stats`` (a 1-d array: zeros on a rank
        without samples) over the ranks; returns the summed stats as a new 1-d array."""
        xp = self._buffer(stats)
        flat, b, weight = self.flat, self.bounds, n_local / n_global
        for i, p in enumerate(self.params):
            xp.multiply(p.grad.reshape(-1), weight, out=flat[b[i]:b[i + 1]])  # (size,) view
        for j, v in enumerate(self.buffers, start=len(self.params)):
            flat[b[j]:b[j + 1]] = v.value.reshape(-1) * weight  # (size,) view; int buffers cast exactly
        flat[b[-1]:] = stats
        self.comm.allreduce_sum(flat)
        for i, p in enumerate(self.params):
            p.grad[...] = flat[b[i]:b[i + 1]].reshape(p.grad.shape)  # (size,) -> parameter shape
        for j, v in enumerate(self.buffers, start=len(self.params)):
            part = flat[b[j]:b[j + 1]].reshape(v.value.shape)  # (size,) -> buffer shape
            v.value[...] = part if v.value.dtype.kind == "f" else xp.rint(part)
        return flat[b[-1]:].copy()

    def _buffer(self, stats: Array) -> ModuleType:
        """The flat buffer, made at the first step (and again if the model moved or was cast)."""
        first = self.params[0].value
        xp = get_xp(first)
        size = self.bounds[-1] + len(stats)
        if self.flat is None or self.flat.dtype != first.dtype or get_xp(self.flat) is not xp or len(self.flat) != size:
            self.flat = xp.zeros(size, dtype=first.dtype)
        return xp
