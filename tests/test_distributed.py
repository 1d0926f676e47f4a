"""Data-parallel training: ``mpiexec -n 2`` against one process in float64, the CLI under mpiexec,
faults (a rank that raises, ranks that disagree), and the communicator's checks without MPI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet
from tests.distributed import worker
from tests.distributed.worker import N_TEST
from tests.test_cli import small_mnist  # noqa: F401 (a fixture)
from xpnet import distributed, models

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed" / "worker.py"


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason='needs mpi4py and mpiexec: pip install "xpnet[mpi]"')


def launch(*args, ranks=2, timeout=240, cwd=None):
    """Run ``mpiexec -n ranks python args...`` with one BLAS thread per rank; the CompletedProcess."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """What each of two ranks wrote after the worker's reference fit (global batch 64)."""
    out = tmp_path_factory.mktemp("ranks") / "run"
    result = launch(WORKER, out)
    assert result.returncode == 0, result.stderr[-3000:]
    return [numpy.load(f"{out}.rank{r}.npz") for r in range(2)], result


@pytest.fixture(scope="module")
def one_process():
    return worker.run()


@needs_mpi
def test_two_ranks_train_the_same_weights_as_one_process(two_ranks, one_process):
    weights, _, _ = one_process
    for rank_file in two_ranks[0]:
        for name, want in weights.items():
            got = rank_file[f"w/{name}"]
            # the same sums in another order (each rank sums half the batch): float64 rounding only
            numpy.testing.assert_allclose(got, want, rtol=0, atol=1e-11 * max(1.0, abs(want).max()), err_msg=name)
    first, second = two_ranks[0]
    for name in weights:
        numpy.testing.assert_array_equal(first[f"w/{name}"], second[f"w/{name}"])  # one allreduce: the same sum


@needs_mpi
def test_two_ranks_report_the_history_of_one_process(two_ranks, one_process):
    _, logs, predictions = one_process
    for rank_file in two_ranks[0]:
        got = json.loads(str(rank_file["logs"]))
        assert sorted(got) == sorted(logs)
        for key, values in logs.items():
            numpy.testing.assert_allclose(got[key], values, rtol=1e-12, atol=1e-12, err_msg=key)
        numpy.testing.assert_allclose(rank_file["predictions"], predictions, rtol=0, atol=1e-10)
    assert logs["lr"][0] > logs["lr"][-1]  # the schedule ran
    assert logs["accuracy"][-1] > 0.6  # it learned


@needs_mpi
def test_callbacks_run_on_rank_0_alone_and_the_run_equals_one_process(tmp_path):
    """validation_split, augmentation, EarlyStopping(restore_best_weights), ModelCheckpoint and a
    callback that calls evaluate and predict: no rank waits, and the result is one process's."""
    result = launch(WORKER, tmp_path / "cb", "--scenario", "callbacks", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "alone").mkdir()
    weights, logs, seen = worker.run_with_callbacks(folder=tmp_path / "alone")
    first, second = (numpy.load(tmp_path / f"cb.rank{r}.npz") for r in range(2))
    for name, want in weights.items():
        numpy.testing.assert_allclose(first[f"w/{name}"], want, rtol=0, atol=1e-11 * max(1.0, abs(want).max()))
        numpy.testing.assert_array_equal(first[f"w/{name}"], second[f"w/{name}"])
    got = [json.loads(str(f["logs"])) for f in (first, second)]
    assert got[0] == got[1]  # the same History on every rank, images/s included
    for key, values in logs.items():
        if key != "images_per_s":
            numpy.testing.assert_allclose(got[0][key], values, rtol=1e-12, atol=1e-12, err_msg=key)
    seen_0, seen_1 = (json.loads(str(f["seen"])) for f in (first, second))
    assert len(seen_0) == len(logs["loss"]) and seen_1 == []  # callbacks ran on rank 0 alone
    assert all(shape == [N_TEST, 10] for _, shape in seen_0)
    assert [a for a, _ in seen_0] == pytest.approx([a for a, _ in seen], abs=1.01 / N_TEST)
    checkpoints = sorted(p.name for p in tmp_path.glob("ckpt-*.xpnet"))
    assert checkpoints == [f"ckpt-{e}.xpnet" for e in range(1, len(logs["loss"]) + 1)]


@needs_mpi
def test_a_rank_that_exits_inside_fit_ends_every_rank(tmp_path):
    result = launch(WORKER, tmp_path / "x", "--scenario", "exit-in-fit", timeout=60)
    assert result.returncode != 0
    assert "xpnet.distributed: rank 1 of 2: SystemExit: 3" in result.stderr


@needs_mpi
def test_batchnorm_running_statistics_stay_identical_on_every_rank(tmp_path):
    result = launch(WORKER, tmp_path / "bn", "--scenario", "batchnorm")
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (numpy.load(tmp_path / f"bn.rank{r}.npz") for r in range(2))
    names = [k for k in first.files if "running" in k or "num_batches" in k]
    assert names and sorted(first.files) == sorted(second.files)
    for name in first.files:
        numpy.testing.assert_array_equal(first[name], second[name], err_msg=name)
    assert all(int(first[k]) == 3 for k in names if k.endswith("num_batches_tracked"))  # three steps
    fresh = models.resnet_mnist(dtype="float64").state_dict()
    assert any(not numpy.allclose(first[k], fresh[k[2:]]) for k in names if "running_mean" in k)


@needs_mpi
def test_a_rank_that_raises_ends_every_rank_naming_itself(tmp_path):
    result = launch(WORKER, tmp_path / "x", "--scenario", "raise", timeout=60)  # a hang fails by timeout
    assert result.returncode != 0
    assert "xpnet.distributed: rank 1 of 2: RuntimeError: rank 1 was told to fail" in result.stderr
    assert "rank 0 done" not in result.stdout


@needs_mpi
@pytest.mark.parametrize("scenario, message", [
    ("short-data", "ranks disagree on the training data"),
    ("other-model", "ranks disagree on the model architecture"),
])
def test_ranks_that_disagree_fail_before_training(tmp_path, scenario, message):
    result = launch(WORKER, tmp_path / "x", "--scenario", scenario, timeout=60)
    assert result.returncode != 0
    for rank in range(2):  # every rank raised the same error, naming both ranks' values
        said = (tmp_path / f"x.rank{rank}.txt").read_text()
        assert said.startswith(message) and "rank 0 has" in said and "rank 1 has" in said
    assert "done" not in result.stdout


@needs_mpi
def test_cli_under_mpiexec_prints_once_and_writes_one_model(tmp_path, small_mnist):  # noqa: F811
    out = tmp_path / "m.xpnet"
    result = launch("-m", "xpnet", "train", "--distributed", "--epochs", "2", "--data", small_mnist,
                    "--out", out, "--verbose", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test accuracy") == 1 and result.stdout.count(f"saved {out}") == 1
    assert "(2 ranks over MPI, global batch)" in result.stdout
    assert "test_accuracy" in result.stdout and "val_" not in result.stdout  # the test set is named so
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".xpnet") == ["m.xpnet"]
    model = xpnet.load(out)
    assert model.predict(numpy.zeros((2, 1, 28, 28), numpy.float32)).shape == (2, 10)


# --- without mpiexec: the parts that need no second rank ------------------------------------
class LoopbackWorld:
    """One rank talking to itself (size 1), shaped like mpi4py's COMM_WORLD."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Allreduce(self, _, buffer, op=None):
        pass

    def Bcast(self, buffer, root=0):
        pass

    def bcast(self, obj, root=0):
        return obj

    def allgather(self, obj):
        return [obj]


class FakeMPI:
    IN_PLACE, SUM = object(), object()


def test_one_rank_communicator_trains_as_without_one():
    comm = distributed.Communicator(FakeMPI, LoopbackWorld(), 0)
    x, y, x_test, y_test = worker.data()
    plain, model = worker.build(), worker.build(comm)
    expected = plain.fit(x[:200], y[:200], epochs=1, batch_size=64, verbose=0)
    history = model.fit(x[:200], y[:200], epochs=1, batch_size=64, verbose=0)
    assert history.history["loss"] == pytest.approx(expected.history["loss"], rel=1e-12)
    assert model.evaluate(x_test, y_test) == pytest.approx(plain.evaluate(x_test, y_test), rel=1e-12)


def test_compile_refuses_what_is_not_a_communicator():
    with pytest.raises(TypeError, match="distributed must be a communicator from xpnet.distributed.init"):
        models.lenet5().compile("sgd", distributed="mpi")


def test_init_refuses_an_unknown_backend():
    with pytest.raises(ValueError, match="must be one of auto, mpi, nccl; received 'gloo'"):
        distributed.init("gloo")


def test_init_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install "xpnet\[mpi\]"'):
        distributed.init("mpi")


def test_check_same_names_the_rank_that_differs():
    comm = distributed.Communicator(FakeMPI, LoopbackWorld(), 0)
    comm.allgather_obj = lambda value: [value, (value[0] + 1,)]
    with pytest.raises(ValueError, match=r"ranks disagree on the data: rank 0 has \(5,\), rank 1 has \(6,\)"):
        comm.check_same("the data", (5,))


@pytest.mark.parametrize("n", [0, 1, 5, 64])
def test_parts_are_contiguous_and_cover_the_batch(n):
    parts = []
    for rank in range(3):
        comm = distributed.Communicator(FakeMPI, LoopbackWorld(), 0)
        comm.rank, comm.size = rank, 3
        parts.append(comm.part(n))
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


def test_reducer_weights_gradients_by_share_and_averages_buffers():
    """Two ranks simulated: rank 0 saw 3 samples, rank 1 one; the sum is the global mean gradient and
    the buffers' average weighted like the samples."""
    model = models.resnet_mnist(dtype="float64")  # has BatchNorm running statistics and counters
    comm = distributed.Communicator(FakeMPI, LoopbackWorld(), 0)
    comm.size = 2
    other = {}

    def allreduce(flat):  # add what "rank 1" contributes: gradient 1 and buffers 6 or 7, each times 1/4
        flat += other["flat"]

    comm.allreduce_sum = allreduce
    reducer = distributed.StepReducer(comm, model)
    for p in reducer.params:
        p.grad[...] = 2.0
    running = [v for v in reducer.buffers if v.value.dtype.kind == "f"]
    counters = [v for v in reducer.buffers if v.value.dtype.kind == "i"]
    for v in running:
        v.value[...] = 4.0
    for v in counters:
        v.value[...] = 7
    size = reducer.bounds[-1]
    other["flat"] = numpy.concatenate([numpy.full(reducer.bounds[len(reducer.params)], 0.25),
                                       numpy.full(size - reducer.bounds[len(reducer.params)], 0.0), [1.0, 2.0]])
    for j, v in enumerate(reducer.buffers, start=len(reducer.params)):
        other["flat"][reducer.bounds[j]:reducer.bounds[j + 1]] = (6.0 if v.value.dtype.kind == "f" else 7) * 0.25
    stats = reducer.reduce(numpy.array([3.0, 1.0]), n_local=3, n_global=4)
    assert all((p.grad == 2.0 * 3 / 4 + 0.25).all() for p in reducer.params)
    assert all((v.value == 4.5).all() for v in running)  # 4 * 3/4 + 6 * 1/4
    assert all((v.value == 7).all() and v.value.dtype == numpy.int64 for v in counters)
    numpy.testing.assert_array_equal(stats, [4.0, 3.0])


class FakeDeviceArray:
    """What NCCLCommunicator reads of a cupy array: flags, data.ptr, size, dtype."""

    def __init__(self, size, dtype):
        self.flags = type("Flags", (), {"c_contiguous": True})()
        self.data = type("Memory", (), {"ptr": 4096})()
        self.size, self.dtype = size, numpy.dtype(dtype)


def test_nccl_communicator_shares_the_unique_id_uses_the_local_gpu_and_calls_nccl(monkeypatch):
    made, calls = {}, []

    class FakeNcclComm:
        def __init__(self, size, unique_id, rank):
            made.update(size=size, unique_id=unique_id, rank=rank)

        def allReduce(self, *args):  # noqa: N802 (NCCL's name)
            calls.append(("allReduce", *args))

        def bcast(self, *args):
            calls.append(("bcast", *args))

    class FakeNccl:
        NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT64, NCCL_SUM = 7, 8, 4, 0
        NcclCommunicator = FakeNcclComm

        @staticmethod
        def get_unique_id():
            return (1, 2, 3)

    used = []
    monkeypatch.setattr(distributed, "nccl_module", lambda: FakeNccl)
    monkeypatch.setattr(distributed, "use_gpu", used.append)
    monkeypatch.setattr(distributed, "gpu_count", lambda: 2)
    monkeypatch.setattr(distributed, "current_stream_ptr", lambda: 99)
    comm = distributed.NCCLCommunicator(FakeMPI, LoopbackWorld(), local_rank=3)
    assert made == {"size": 1, "unique_id": (1, 2, 3), "rank": 0}
    assert used == [1] and comm.device == "cuda:1" and comm.backend == "nccl"
    comm.allreduce_sum(FakeDeviceArray(10, numpy.float32))
    comm.broadcast(FakeDeviceArray(6, numpy.float64), root=0)
    comm.broadcast(FakeDeviceArray(1, numpy.int64))
    # (send, recv, count, dtype, op, stream) in place; (buffer, count, dtype, root, stream)
    assert calls == [("allReduce", 4096, 4096, 10, 7, 0, 99), ("bcast", 4096, 6, 8, 0, 99),
                     ("bcast", 4096, 1, 4, 0, 99)]
    host = numpy.arange(3.0)
    comm.allreduce_sum(host)  # host arrays go over MPI
    assert len(calls) == 3


def test_nccl_refuses_two_ranks_on_one_gpu(monkeypatch):
    monkeypatch.setattr(distributed, "gpu_count", lambda: 1)
    world = LoopbackWorld()
    world.allgather = lambda obj: [obj, obj]  # two ranks on one host, both on GPU 0
    with pytest.raises(distributed.RanksDisagree, match="NCCL needs one GPU per rank"):
        distributed.NCCLCommunicator(FakeMPI, world, local_rank=0)


def test_compiling_again_with_the_same_optimizer_keeps_its_state(tmp_path):
    """What a resumed distributed run does: load a checkpoint, then compile(model.optimizer, distributed=comm)."""
    x, y, _, _ = worker.data()
    model = worker.build()
    model.fit(x[:128], y[:128], epochs=1, batch_size=64, verbose=0)
    model.save(tmp_path / "ckpt.xpnet", include_optimizer=True)
    resumed = xpnet.load(tmp_path / "ckpt.xpnet")
    momentum = [host.copy() for state in resumed.optimizer.state for host in state.values()]
    assert momentum and any(abs(m).max() > 0 for m in momentum)
    comm = distributed.Communicator(FakeMPI, LoopbackWorld(), 0)
    resumed.compile(resumed.optimizer, resumed.loss_name, resumed.metric_names, distributed=comm)
    after = [a for state in resumed.optimizer.state for a in state.values()]
    assert len(after) == len(momentum) and all((a == m).all() for a, m in zip(after, momentum))
    assert resumed.optimizer.iterations == 2
    model.compile(worker.optim.SGD(lr=0.1), "cross_entropy")  # a new optimizer starts afresh
    assert model.optimizer.state == []
