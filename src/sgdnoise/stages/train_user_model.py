"""Stage train_replicas for model.kind torch: a user's module in the shared training loop.

What is the user model's in the loop (stages.runner): its dynamics
(dynamics.user_model), its observables and its run artifact, with the conventions of the
perceptron's (dims ``replica`` and ``record``, coordinates ``step`` and ``time``,
observables on the parameters BEFORE that step's update, stopped replicas frozen).

Recorded per replica: train_loss (mean loss per sample on the training set), train_error,
test_loss and test_error (with a test set), weight_change |w - w0| / |w0| and
weight_norm |w|^2 / n (n the number of trainable parameters), and with run.record.weights
the flattened parameters (dim ``parameter``; C(t, t') = w(t) . w(t') / n). At the end:
final_weights and initial_weights (replica, parameter), so same-init pairs give the
replica distance |w_a - w_b|^2 / n (analysis.replica_distance).

Stopping: steps that see every sample (gd, langevin, sgd, persistent_sgd) report the
training loss before them, so stop: zero_loss costs nothing more; minibatch_sgd checks
every run.check_every steps, and with the hinge t* = lr (last moving step + 1) is exact.
"""

from __future__ import annotations

import time as clock
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import xarray as xr
from torch import Tensor, nn
from torch.func import vmap

from sgdnoise.config.point import PointConfig
from sgdnoise.data import Dataset
from sgdnoise.dynamics.networks import Samples
from sgdnoise.dynamics.user_model import UserModelDynamics, UserModelState
from sgdnoise.models.losses import OutputLoss
from sgdnoise.models.user import build_module, initial_user_parameters, module_function
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
from sgdnoise.stages.train_network import samples_of

EVALUATION_BATCH = 4096
"""Replica-samples per forward call of a full-set evaluation (bounds its memory)."""


def flat(parameters: Mapping[str, Tensor]) -> Tensor:
    """Every parameter of each replica as one vector, (R, n)."""
    return torch.cat([value.flatten(1) for value in parameters.values()], dim=1)


def mean_loss_and_error(
    function: Callable[[Mapping[str, Tensor], Tensor], Tensor],
    loss: OutputLoss,
    parameters: Mapping[str, Tensor],
    samples: Samples,
    ids: Tensor,
) -> tuple[Tensor, Tensor]:
    """Mean loss per sample and fraction misclassified on ``samples``, each (R,), of the
    replicas ``ids`` (stacked ``parameters``, evaluated in chunks of EVALUATION_BATCH)."""
    chunk = max(1, EVALUATION_BATCH // len(ids))
    loss_sum = torch.zeros(len(ids), dtype=samples.x.dtype, device=samples.x.device)
    error_sum = torch.zeros_like(loss_sum)
    with torch.no_grad():
        for start in range(0, samples.count, chunk):
            stop = min(start + chunk, samples.count)
            if samples.per_replica:
                x, y = samples.x[ids, start:stop], samples.y[ids, start:stop]
                outputs = vmap(function)(dict(parameters), x)
            else:
                x, y = samples.x[start:stop], samples.y[start:stop]
                outputs = vmap(function, in_dims=(0, None))(dict(parameters), x)
                y = y.expand(len(ids), -1)
            loss_sum += loss.value(outputs, y).sum(-1)
            error_sum += loss.errors(outputs, y).sum(-1)
    return loss_sum / samples.count, error_sum / samples.count


class UserModelRecorder(ScheduledRecorder):
    """The observables of every replica at the recording steps (module docstring)."""

    def __init__(
        self,
        module: nn.Module,
        loss: OutputLoss,
        train: Samples,
        test: Samples | None,
        initial: Mapping[str, Tensor],
        schedule: RecordingSchedule,
        weights: bool,
    ) -> None:
        super().__init__(schedule)
        self.loss, self.train, self.test = loss, train, test
        self.function = module_function(module)
        self.initial = flat(initial)
        self.weights = weights
        self.record_dims = {"weights": ("parameter",)} if weights else {}

    def mean_loss_and_error(
        self, parameters: Mapping[str, Tensor], samples: Samples, ids: Tensor
    ) -> tuple[Tensor, Tensor]:
        return mean_loss_and_error(self.function, self.loss, parameters, samples, ids)

    def training_loss(self, parameters: Mapping[str, Tensor], ids: Tensor) -> Tensor:
        return self.mean_loss_and_error(parameters, self.train, ids)[0]

    def observe(self, current: Mapping[str, Tensor]) -> dict[str, Tensor]:
        vector = flat(current)
        ids = torch.arange(vector.shape[0], device=vector.device)
        train_loss, train_error = self.mean_loss_and_error(current, self.train, ids)
        values = {"train_loss": train_loss, "train_error": train_error}
        if self.test is not None:
            values["test_loss"], values["test_error"] = self.mean_loss_and_error(
                current, self.test, ids
            )
        difference = vector - self.initial
        values["weight_change"] = (difference.pow(2).sum(-1) / self.initial.pow(2).sum(-1)).sqrt()
        values["weight_norm"] = vector.pow(2).sum(-1) / vector.shape[-1]
        if self.weights:
            values["weights"] = vector
        return values


@dataclass(frozen=True)
class UserModelStepper:
    """The user's module in the shared loop (a stages.runner.Stepper): one-step blocks."""

    dynamics: UserModelDynamics
    recorder: UserModelRecorder
    longest_block: int = 1

    def advance(
        self, state: UserModelState, step: int, stop: int
    ) -> tuple[UserModelState, Outcome]:
        advanced, report = self.dynamics.step(state)
        outcome = Outcome(
            last_moved=torch.where(report.moved, step, -1),
            nonfinite_after=torch.where(report.finite, -1, step),
            loss_before=report.full_loss,
            tensors_before=None if report.full_loss is None else state.parameters,
        )
        return advanced, outcome

    def tensors(self, state: UserModelState) -> dict[str, Tensor]:
        return state.parameters

    def training_loss(self, state: UserModelState) -> Tensor:
        return self.recorder.training_loss(state.parameters, state.replica_ids)

    def saved(self, state: UserModelState) -> dict:
        return {
            "parameters": state.parameters,
            "selection": state.selection,
            "ids": state.replica_ids,
        }

    def restored(self, initial: UserModelState, saved: dict, step: int) -> UserModelState:
        return UserModelState(saved["parameters"], saved["selection"], saved["ids"], step)


def user_model_setup(config: PointConfig, datasets: list[Dataset] | None):
    """Device, dtype, data, module, loss, training samples, test samples and dynamics."""
    device, dtype, datasets = run_setup(config, datasets)
    module = build_module(config.model).to(device=device, dtype=dtype)
    loss = OutputLoss(config.loss.kind, config.loss.kappa)
    train = samples_of(datasets, False, device, dtype)
    test = samples_of(datasets, True, device, dtype) if datasets[0].has_test else None
    ridge = config.model.ridge if config.model.constraint == "ridge" else 0.0
    dynamics = UserModelDynamics(
        module, train, loss, config.optimizer, ridge, config.run.seed, device
    )
    return device, dtype, datasets, module, loss, train, test, dynamics


def train_user_model_point(
    config: PointConfig,
    datasets: list[Dataset] | None = None,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> xr.Dataset:
    """Train the replicas of a resolved model.kind torch point; return the run artifact."""
    started = clock.perf_counter()
    run, optimizer = config.run, config.optimizer
    device, dtype, datasets, module, loss, train, test, dynamics = user_model_setup(
        config, datasets
    )
    initial = initial_user_parameters(config.model, run, device, dtype)
    schedule = RecordingSchedule(run, optimizer.lr)
    recorder = UserModelRecorder(module, loss, train, test, initial, schedule, run.record.weights)
    state = dynamics.initial_state(initial, list(range(run.replicas)))
    checked = run.stop == "zero_loss" and optimizer.kind == "minibatch_sgd"
    rules = StopRules(
        lr=optimizer.lr,
        zero_loss=run.stop == "zero_loss",
        tolerance=run.tolerance,
        check_every=run.check_every if checked else None,
    )
    checkpointer = Checkpointer(checkpoint, config, started)
    runner = Runner(UserModelStepper(dynamics, recorder), recorder, rules, checkpointer)
    ledger = runner.run(state, checkpointer.resume(), progress)
    variables = {
        "final_weights": (("replica", "parameter"), flat(ledger.tensors).cpu().numpy()),
        "initial_weights": (("replica", "parameter"), flat(initial).cpu().numpy()),
        **ledger_variables(ledger, optimizer.lr),
    }
    wall_seconds = checkpointer.wall_seconds()
    attributes = run_attributes(config, ledger, datasets, device, wall_seconds)
    attributes["parameter_count"] = flat(initial).shape[1]
    return run_artifact(config, recorder, variables, attributes, USER_MODEL_VARIABLES)


USER_MODEL_VARIABLES = {
    "train_loss": ("1", "mean loss per training sample (the loss of loss.kind)"),
    "test_loss": ("1", "mean loss per test sample"),
    "weight_norm": ("1", "|w|^2 / n over the n trainable parameters"),
    "final_weights": ("1", "every trainable parameter of the replica at the end, flattened"),
    "initial_weights": ("1", "every trainable parameter of the replica at t = 0, flattened"),
}
"""Where the user model's artifact differs from the shared metadata table."""
