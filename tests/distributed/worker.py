"""Run under ``mpiexec -n 2`` by tests/test_distributed.py (and by hand): one data-parallel fit.

    python tests/distributed/worker.py OUT.npz [--scenario NAME]

Each scenario trains LeNet-5 in float64 on the first 961 built-in MNIST images (the last global
batch of 64 holds one image, so one rank gets none) and every rank writes its weights, history
and predictions to OUT.rank<R>.npz. ``reference(...)`` trains the same run in one process.
"""

from __future__ import annotations

import json
import sys

import numpy

from xpnet import datasets, distributed, models, optim

N_TRAIN, N_TEST, EPOCHS, BATCH = 961, 200, 3, 64


def data():
    (x, y), (x_test, y_test) = datasets.load_mnist(dtype="float64")
    return x[:N_TRAIN], y[:N_TRAIN], x_test[:N_TEST], y_test[:N_TEST]


def build(comm=None, seed=0):
    model = models.lenet5(seed=seed, dtype="float64")
    schedule = optim.StepDecay(0.05, step_size=10, gamma=0.5)
    return model.compile(optim.SGD(lr=schedule, momentum=0.9), "cross_entropy", ["accuracy"], distributed=comm)


def run(comm=None, seed=0):
    """(state_dict, history dict, test predictions) of the reference run, one process or several."""
    x, y, x_test, y_test = data()
    model = build(comm, seed)
    history = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, validation_data=(x_test, y_test), verbose=0)
    logs = {k: v for k, v in history.history.items() if k != "images_per_s"}
    return model.state_dict(), logs, model.predict(x_test)


def main(argv):
    out, scenario = argv[0], (argv[2] if len(argv) > 2 else "equivalence")
    comm = distributed.init("mpi")
    if scenario == "equivalence":
        weights, logs, predictions = run(comm, seed=0 if comm.rank == 0 else 7)  # rank 1's own init is replaced
        numpy.savez(f"{out}.rank{comm.rank}.npz", predictions=predictions, logs=json.dumps(logs),
                    **{f"w/{k}": v for k, v in weights.items()})
    elif scenario == "batchnorm":  # per-rank batch statistics; running statistics averaged every step
        x, y, _, _ = data()
        model = models.resnet_mnist(dtype="float64").compile(optim.SGD(lr=0.05, momentum=0.9), distributed=comm)
        model.fit(x[:161], y[:161], epochs=1, batch_size=BATCH, verbose=0)  # batches of 64, 64, 33
        numpy.savez(f"{out}.rank{comm.rank}.npz", **{f"w/{k}": v for k, v in model.state_dict().items()})
    elif scenario == "raise":
        if comm.rank == 1:
            raise RuntimeError("rank 1 was told to fail")
        comm.barrier()  # rank 0 waits here for a rank that never comes: MPI_Abort must end it
    elif scenario == "short-data":
        x, y, _, _ = data()
        n = len(x) - comm.rank  # rank 1 loaded one image fewer
        build(comm).fit(x[:n], y[:n], epochs=1, batch_size=BATCH, verbose=0)
    elif scenario == "other-model":
        model = models.lenet5(dtype="float64") if comm.rank == 0 else models.mobilenet_mnist(dtype="float64")
        model.compile("sgd", distributed=comm)
    print(f"rank {comm.rank} done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
