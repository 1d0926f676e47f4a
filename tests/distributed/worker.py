"""Run under ``mpiexec -n 2`` by tests/test_distributed.py (and by hand): one data-parallel fit.

    python tests/distributed/worker.py OUT.npz [--scenario NAME]

Each scenario trains LeNet-5 in float64 on the first 961 built-in MNIST images (the last global
batch of 64 holds one image, so one rank gets none) and every rank writes its weights, history
and predictions to OUT.rank<R>.npz. ``reference(...)`` trains the same run in one process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy

from xpnet import augment, callbacks, datasets, distributed, models, optim

N_TRAIN, N_TEST, EPOCHS, BATCH = 961, 200, 3, 64


def data():
    (x, y), (x_test, y_test) = datasets.load_mnist(dtype="float64")
    return x[:N_TRAIN], y[:N_TRAIN], x_test[:N_TEST], y_test[:N_TEST]


def build(comm=None, seed=0):
    model = models.lenet5(seed=seed, dtype="float64")
    schedule = optim.StepDecay(0.05, step_size=10, gamma=0.5)
    metrics = ["accuracy", "macro_f1", "top3_accuracy"]
    return model.compile(optim.SGD(lr=schedule, momentum=0.9), "cross_entropy", metrics, distributed=comm)


def run(comm=None, seed=0):
    """(state_dict, history dict, test predictions) of the reference run, one process or several."""
    x, y, x_test, y_test = data()
    model = build(comm, seed)
    history = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, validation_data=(x_test, y_test), verbose=0)
    logs = {k: v for k, v in history.history.items() if k != "images_per_s"}
    return model.state_dict(), logs, model.predict(x_test)


def disagree(comm, scenario):
    """Rank 1 loads one image fewer, or builds another model."""
    if scenario == "short-data":
        x, y, _, _ = data()
        n = len(x) - comm.rank
        build(comm).fit(x[:n], y[:n], epochs=1, batch_size=BATCH, verbose=0)
    else:
        model = models.lenet5(dtype="float64") if comm.rank == 0 else models.mobilenet_mnist(dtype="float64")
        model.compile("sgd", distributed=comm)


class EvaluateEachEpoch(callbacks.Callback):
    """Calls evaluate and predict from a callback (on rank 0 alone when distributed)."""

    def __init__(self, x, y):
        self.x, self.y, self.seen = x, y, []

    def on_epoch_end(self, epoch, logs):
        result = self.model.evaluate(self.x, self.y)
        self.seen.append((result["accuracy"], self.model.predict(self.x).shape))


def run_with_callbacks(comm=None, folder="."):
    """A fit with validation_split, augmentation, early stopping that restores the best weights, a
    checkpoint per epoch and a callback that evaluates: weights and history (images/s included)."""
    x, y, x_test, y_test = data()
    model = build(comm)
    calls = [EvaluateEachEpoch(x_test, y_test), callbacks.ModelCheckpoint(f"{folder}/ckpt-{{epoch}}.xpnet",
             monitor="val_loss"), callbacks.EarlyStopping(monitor="val_accuracy", patience=1,
                                                         restore_best_weights=True)]
    history = model.fit(x, y, epochs=4, batch_size=BATCH, validation_split=0.2, augment=augment.RandomShift(1),
                        callbacks=calls, verbose=0)
    return model.state_dict(), history.history, calls[0].seen


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
    elif scenario == "callbacks":
        weights, logs, seen = run_with_callbacks(comm, folder=str(Path(out).parent))
        numpy.savez(f"{out}.rank{comm.rank}.npz", logs=json.dumps(logs), seen=json.dumps(seen),
                    **{f"w/{k}": v for k, v in weights.items()})
    elif scenario == "exit-in-fit":  # rank 1 alone leaves in the middle of an epoch
        x, y, _, _ = data()
        steps = []

        def leave(images, rng):
            steps.append(1)
            if comm.rank == 1 and len(steps) == 3:
                sys.exit(3)
            return images
        build(comm).fit(x, y, epochs=1, batch_size=BATCH, augment=leave, verbose=0)
    elif scenario == "raise":
        if comm.rank == 1:
            raise RuntimeError("rank 1 was told to fail")
        comm.barrier()  # rank 0 waits here for a rank that never comes: MPI_Abort must end it
    elif scenario in ("short-data", "other-model"):
        try:
            disagree(comm, scenario)
        except distributed.RanksDisagree as exc:  # raised on every rank: each writes what it says
            with open(f"{out}.rank{comm.rank}.txt", "w") as file:
                file.write(str(exc))
            raise
    print(f"rank {comm.rank} done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
