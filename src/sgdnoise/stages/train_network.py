"""Stage train_replicas for model.kind fcn | cnn: alpha-trick networks on images (paper B).

This module supplies what is the networks' in the shared training loop (stages.runner):
minibatch SGD (dynamics.networks) of the R replicas of one grid point at once, the
observables recorded (observables.networks) and the run artifact, with the conventions
of the perceptron's (stages.train, stages.recording): dims ``replica`` and ``record``
(coordinates ``step`` and ``time``), observables measured on the parameters BEFORE
that step's update, stopped replicas frozen at their final parameters.

Stopping at zero training loss, exactly and cheaply. With the hinge the batch gradient
is zero unless a batch sample violates the margin (h < 1/alpha), so the parameters of a
replica last changed after its last "moving" step; that step is tracked on the device
every step, without synchronising. Every run.check_every steps the replicas that did not
move since the previous check (the only ones that can be at zero loss) get their loss
on the full training set; a replica with loss <= run.tolerance stops, with
t* = lr (last moving step + 1) when the tolerance is 0 (stages.recording.stopping_time).
The check therefore costs a full-set evaluation only for replicas near convergence,
and delays the stop (never t*) by at most 2 check_every steps. Replicas whose batch
stabilities or parameters turn non-finite are marked ``diverged`` at the next check,
and a last check at the budget examines every replica still training (the loop's lazy
rules, stages.runner.StopRules).

f0 = f(w0, x) is computed once for the training and test sets with the same chunking
as every later evaluation, so F = alpha (f - f0) is exactly 0 at initialisation: the
first record has train_error = test_error = 1 (F = 0 counts as an error) and
train_loss = 1/alpha.

Checkpoints (stages.checkpoint): every run.checkpoint_seconds of wall time the loop
saves, before a step, the parameters and ids of the replicas still training, the
ledger (with the stop bookkeeping) and the records so far. The batches are counter-based
(dynamics.networks: a function of seed, replica and step), and w0, f0 follow from the
seed, so the resumed run is the uninterrupted one, bit for bit.
"""

from __future__ import annotations

import math
import time as clock
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from sgdnoise.config.point import PointConfig, RunConfig
from sgdnoise.data import Dataset
from sgdnoise.dynamics.networks import (
    NetworkDynamics,
    NetworkProblem,
    NetworkState,
    Parameters,
    Samples,
    make_network_dynamics,
)
from sgdnoise.dynamics.random import derive_seed
from sgdnoise.models.losses import MarginLoss
from sgdnoise.models.networks import initial_parameters, make_network
from sgdnoise.observables.networks import (
    classification_error,
    kernel_change,
    labelled_stabilities,
    training_observables,
    weight_change,
)
from sgdnoise.stages.checkpoint import Checkpointer
from sgdnoise.stages.recording import RecordingSchedule, ScheduledRecorder, run_setup
from sgdnoise.stages.runner import (
    Outcome,
    Runner,
    StopRules,
    ledger_variables,
    run_artifact,
    run_attributes,
)

EVALUATION_BATCH = 2048
"""Replica-samples per forward call of a full-set evaluation (bounds its memory)."""
KERNEL_SAMPLES = 32
"""Training samples (the first of each replica's set) on which the tangent kernel is compared."""


def samples_of(datasets: list[Dataset], test: bool, device: torch.device, dtype) -> Samples:
    """Training samples (shared, or one draw per replica) or the fixed test set as tensors."""
    if test:
        dataset = datasets[0]  # the test set is fixed: the same for every draw
        x, y = dataset.x_test[None], dataset.y_test[None]
    else:
        x = np.stack([d.x_train for d in datasets])
        y = np.stack([d.y_train for d in datasets])
    per_replica = len(datasets) > 1 and not test
    if not per_replica:
        x, y = x[0], y[0]
    return Samples(
        torch.as_tensor(x, dtype=dtype, device=device),
        torch.as_tensor(y, dtype=dtype, device=device),
        per_replica,
    )


def initial_network_parameters(
    network: nn.Module, run: RunConfig, device: torch.device, dtype: torch.dtype
) -> Parameters:
    """w0 of every replica, stacked (R, *shape): N(0, 1) from a generator per replica.

    Replica r draws from a generator seeded by (run.seed, 'network_init', r) alone, on
    the CPU, so its w0 is the same among any replicas and on any device. With pairing
    same_init, replicas come in pairs (2k, 2k + 1) sharing the draw of init k
    (RunConfig.draw_owners, as the perceptron's stages.train.initial_weights).
    """
    generators = [
        torch.Generator().manual_seed(derive_seed(run.seed, "network_init", owner))
        for owner in run.draw_owners()
    ]
    return initial_parameters(network, generators, dtype, device)


class NetworkRecorder(ScheduledRecorder):
    """Evaluates the observables of every replica at the recording steps."""

    def __init__(
        self,
        network: nn.Module,
        problem: NetworkProblem,
        test: Samples | None,
        initial: Parameters,
        chunk_size: int,
        schedule: RecordingSchedule,
    ) -> None:
        super().__init__(schedule)
        self.network, self.problem, self.test = network, problem, test
        self.initial, self.chunk_size = initial, chunk_size
        self.all_ids = torch.arange(next(iter(initial.values())).shape[0], device=self.device)
        self.initial_train = self.outputs(initial, problem.train, self.all_ids)
        self.initial_test = None if test is None else self.outputs(initial, test, self.all_ids)

    @property
    def device(self) -> torch.device:
        return next(iter(self.initial.values())).device

    def outputs(self, parameters: Mapping[str, Tensor], samples: Samples, ids: Tensor) -> Tensor:
        return samples.outputs(self.network, parameters, ids, self.chunk_size)

    def training_loss(self, parameters: Mapping[str, Tensor], ids: Tensor) -> Tensor:
        """Hinge loss per sample on the full training set of the replicas ``ids``, (R,)."""
        train = self.problem.train
        stability = labelled_stabilities(
            self.outputs(parameters, train, ids), self.initial_train[ids], train, ids
        )
        return self.problem.loss.value(stability).mean(-1)

    def training_stabilities(self, parameters: Mapping[str, Tensor]) -> Tensor:
        """h = y (f(w, x) - f(w0, x)) on every replica's training set, (R, P)."""
        ids, train = self.all_ids, self.problem.train
        return labelled_stabilities(
            self.outputs(parameters, train, ids), self.initial_train, train, ids
        )

    def observe(self, parameters: Parameters) -> dict[str, Tensor]:
        """The observables of every replica (stacked parameters of all of them)."""
        ids = self.all_ids
        values = training_observables(self.training_stabilities(parameters), self.problem.loss)
        if self.test is not None:
            test_stability = labelled_stabilities(
                self.outputs(parameters, self.test, ids), self.initial_test, self.test, ids
            )
            values["test_error"] = classification_error(test_stability)
        values["weight_change"] = weight_change(parameters, self.initial)
        return values


@dataclass(frozen=True)
class NetworkStepper:
    """The network replicas in the shared loop (a stages.runner.Stepper).

    The state is a NetworkState, its per-replica tensors the parameter dict; a block is
    one minibatch SGD step (dynamics.networks), which reports on the device, without
    synchronising, whether it moved each replica and whether its batch stabilities
    were finite.
    """

    dynamics: NetworkDynamics
    recorder: NetworkRecorder
    longest_block: int = 1

    def advance(self, state: NetworkState, step: int, stop: int) -> tuple[NetworkState, Outcome]:
        advanced, info = self.dynamics.step(state)
        outcome = Outcome(
            last_moved=torch.where(info.moved, step, -1),
            nonfinite_after=torch.where(info.finite, -1, step),
        )
        return advanced, outcome

    def tensors(self, state: NetworkState) -> Parameters:
        return state.parameters

    def training_loss(self, state: NetworkState) -> Tensor:
        return self.recorder.training_loss(state.parameters, state.replica_ids)

    def saved(self, state: NetworkState) -> dict:
        return {"parameters": state.parameters, "replica_ids": state.replica_ids}

    def restored(self, initial: NetworkState, saved: dict, step: int) -> NetworkState:
        """The saved state, from the initial state of every replica.

        The run's state only ever loses replicas (``subset`` keeps their order), so its
        w0 and f0 are the rows of the initial state's: only the current parameters and
        the step are read from the checkpoint.
        """
        ids = saved["replica_ids"].to(initial.replica_ids.device)
        state = initial.subset(torch.isin(initial.replica_ids, ids))
        if not torch.equal(state.replica_ids, ids):
            raise ValueError("checkpoint replica ids are not an ordered subset of the run's")
        return replace(state, parameters=saved["parameters"], step=step)


def train_network_point(
    config: PointConfig,
    datasets: list[Dataset] | None = None,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> xr.Dataset:
    """Train the replicas of a resolved fcn / cnn grid point; return the run artifact.

    ``datasets``: one shared Dataset, or one per replica (data.per_replica); built from
    the config when None. Time is t = lr x steps with lr = T h B. ``checkpoint``: a file
    to save the run to every run.checkpoint_seconds of wall time and to resume from (a
    resumed run is identical to an uninterrupted one); removed once training is done.
    """
    started = clock.perf_counter()
    run, optimizer, model = config.run, config.optimizer, config.model
    if model.alpha is None:
        raise ValueError("networks train with the alpha-trick: set model.alpha")
    device, dtype, datasets = run_setup(config, datasets)
    lr, replicas = optimizer.lr, run.replicas
    network = make_network(model, datasets[0].input_shape).to(device=device, dtype=dtype)
    loss = MarginLoss(config.loss.kind, config.loss.kappa)
    problem = NetworkProblem(samples_of(datasets, False, device, dtype), loss)
    test = samples_of(datasets, True, device, dtype) if datasets[0].has_test else None
    initial = initial_network_parameters(network, run, device, dtype)
    chunk_size = max(1, EVALUATION_BATCH // replicas)
    schedule = RecordingSchedule(run, lr)
    recorder = NetworkRecorder(network, problem, test, initial, chunk_size, schedule)
    dynamics = make_network_dynamics(network, problem, optimizer, run.seed, device, chunk_size)
    state = dynamics.init(initial, list(range(replicas)))
    rules = StopRules(
        lr=lr,
        zero_loss=run.stop == "zero_loss",
        tolerance=run.tolerance,
        check_every=run.check_every,
        lazy=True,
    )
    checkpointer = Checkpointer(checkpoint, config, started)
    runner = Runner(NetworkStepper(dynamics, recorder), recorder, rules, checkpointer)
    ledger = runner.run(state, checkpointer.resume(), progress)

    final = ledger.tensors
    kernel = kernel_change(network, final, initial, _kernel_samples(problem, replicas))
    variables = {
        **ledger_variables(ledger, lr),
        "kernel_change": (("replica",), kernel.detach().cpu().numpy()),
        "final_stabilities": (
            ("replica", "sample"),
            recorder.training_stabilities(final).cpu().numpy(),
        ),
    }
    wall_seconds = checkpointer.wall_seconds()
    attributes = run_attributes(config, ledger, datasets, device, wall_seconds)
    attributes["temperature"] = optimizer.temperature
    attributes["parameter_count"] = sum(math.prod(p.shape) for p in network.parameters())
    attributes["step_engine"] = dynamics.engine
    return run_artifact(config, recorder, variables, attributes, NETWORK_VARIABLES)


def _kernel_samples(problem: NetworkProblem, replicas: int) -> Tensor:
    """The first KERNEL_SAMPLES training inputs of every replica, (R, n, *input_shape)."""
    x = problem.train.x
    if problem.train.per_replica:
        return x[:, :KERNEL_SAMPLES]
    return x[:KERNEL_SAMPLES].expand(replicas, *x[:KERNEL_SAMPLES].shape)


NETWORK_VARIABLES = {
    "train_error": ("1", "fraction of training samples with y F <= 0 (F = 0 is an error)"),
    "final_stabilities": (
        "1",
        "h_mu = y_mu (f(w, x_mu) - f(w0, x_mu)) = y_mu F / alpha at the end",
    ),
}
"""Where the network artifact's convention differs from the shared metadata table."""
