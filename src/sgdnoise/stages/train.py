"""Stage train_replicas: train the R replicas of one perceptron grid point and record them.

This module supplies what is the perceptron's in the shared training loop
(stages.runner): the problem and the initial weights (random, or GD minima), the
observables recorded (observables.perceptron), the way a block of steps advances (the
engine of dynamics.perceptron step by step, stages.idle_skipping on the same trajectory,
or the event-driven stages.event_driven with run.engine events) and the run artifact.
The loop owns the rest: recording grid, stopping rules, divergence detection, masking
out finished replicas, checkpoints.

Recording grid (stages.recording.RecordingSchedule): records are indexed by the
dimension ``record`` with coordinates ``step`` and ``time`` = lr x step; observables at a
step are measured on the weights BEFORE that step's update (the DMFT convention). A
replica that stopped keeps its final weights, so its later records repeat them; the last
record is where the last replica stopped.

Statuses per replica: ``completed`` (reached zero loss, or ran its budget with
stop: never), ``budget_exhausted`` (stop: zero_loss not reached), ``diverged``
(non-finite weights or loss; recorded, never raised).
"""

from __future__ import annotations

import math
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sgdnoise.config.point import PointConfig
from sgdnoise.data import Dataset
from sgdnoise.dynamics.perceptron import (
    Dynamics,
    PerceptronProblem,
    PerceptronState,
    make_perceptron_dynamics,
    stabilities_of,
)
from sgdnoise.dynamics.random import ReplicaStream
from sgdnoise.models.losses import MarginLoss
from sgdnoise.observables.perceptron import (
    margin_observables,
    teacher_decomposition,
    test_error,
    weight_change,
)
from sgdnoise.stages import event_driven, idle_skipping
from sgdnoise.stages.checkpoint import Checkpointer
from sgdnoise.stages.generate_data import data_draws
from sgdnoise.stages.recording import RecordingSchedule, ScheduledRecorder, run_setup
from sgdnoise.stages.runner import (
    Outcome,
    Runner,
    StopRules,
    ledger_variables,
    run_artifact,
    run_attributes,
)


def _patterns(datasets: list[Dataset], test: bool, device, dtype) -> torch.Tensor:
    """y x / sqrt(N) of the training (or test) samples: (P, N) shared or (R, P, N)."""
    arrays = []
    for dataset in datasets:
        x = dataset.x_test if test else dataset.x_train
        y = dataset.y_test if test else dataset.y_train
        x = x.reshape(x.shape[0], -1)
        arrays.append(y[:, None] * x / math.sqrt(x.shape[1]))
    stacked = arrays[0] if len(arrays) == 1 else np.stack(arrays)
    return torch.as_tensor(stacked, dtype=dtype, device=device)


def build_problems(config: PointConfig, datasets: list[Dataset], device, dtype):
    """Training problem, test problem (or None) and teacher (or None) as device tensors."""
    model, loss_config = config.model, config.loss
    loss = MarginLoss(loss_config.kind, loss_config.kappa)
    per_replica = len(datasets) > 1

    def problem(test: bool) -> PerceptronProblem:
        return PerceptronProblem(
            patterns=_patterns(datasets, test, device, dtype),
            per_replica=per_replica,
            loss=loss,
            constraint=model.constraint,
            ridge=model.ridge if model.constraint == "ridge" else 0.0,
            sphere_update=model.sphere_update,
        )

    test = problem(test=True) if datasets[0].has_test else None
    teacher = datasets[0].teacher
    teacher = None if teacher is None else torch.as_tensor(teacher, dtype=dtype, device=device)
    return problem(test=False), test, teacher


def initial_weights(config: PointConfig, N: int, device, dtype) -> torch.Tensor:
    """w(0) per replica: N(0, I_N), rescaled to |w|^2 = N on the sphere.

    Counter-based per replica (stream 'init'). With pairing same_init, replicas come in
    pairs (2k, 2k + 1) that share the draw of init k (RunConfig.draw_owners, docs/physics.md A6).
    """
    run = config.run
    stream = ReplicaStream(run.seed, "init", (N,), "normal", dtype, device, block_steps=1)
    weights = stream.draw(0, run.draw_owners())
    if config.model.constraint == "sphere":
        weights = math.sqrt(N) * weights / weights.norm(dim=-1, keepdim=True)
    return weights


def gd_minimum(
    config: PointConfig,
    problem: PerceptronProblem,
    start: torch.Tensor,
    replica_ids: list[int],
    device,
) -> torch.Tensor:
    """Weights after full-batch GD for run.gd_init_time (same lr and loss).

    ``start``: the w(0) of the replicas ``replica_ids`` (rows in that order), each
    descending on its own training set.
    """
    optimizer = config.optimizer.replace(kind="gd", b=1.0, batch_normalization="sum")
    dynamics = make_perceptron_dynamics(problem, optimizer, config.run.seed, device)
    state = dynamics.init(start, replica_ids)
    for _ in range(round(config.run.gd_init_time / optimizer.lr)):
        state, _ = dynamics.step(state)
    return state.weights


def gd_minimum_starts(
    config: PointConfig, problem: PerceptronProblem, start: torch.Tensor, device
) -> torch.Tensor:
    """w(0) of every replica with run.init gd_minimum: one GD minimum per data draw.

    The first replica of each draw (stages.generate_data.data_draws) descends from its
    random w(0); every replica of the draw starts where it ends: all replicas on shared
    data, each replica alone on its own data, and with pairing same_init both replicas of
    a pair (same data and w(0), so one minimum, exactly: docs/physics.md A6).
    """
    draws = data_draws(config)
    leaders = [draws.index(draw) for draw in range(max(draws) + 1)]
    minima = gd_minimum(config, problem, start[leaders], leaders, device)
    return minima[draws]


@dataclass(frozen=True)
class PerceptronStepper:
    """The perceptron's replicas in the shared loop (a stages.runner.Stepper).

    The state is a PerceptronState, its one per-replica tensor ``weights``; ``advance``
    takes a block of steps: the engine step by step (``engine_steps``, blocks of one
    step) or idle-step skipping (stages.idle_skipping, windows).
    """

    problem: PerceptronProblem
    advance: Callable[[PerceptronState, int, int], tuple[PerceptronState, Outcome]]
    longest_block: int

    def tensors(self, state: PerceptronState) -> dict[str, torch.Tensor]:
        return {"weights": state.weights}

    def training_loss(self, state: PerceptronState) -> torch.Tensor:
        """Mean loss over every training sample of each replica, (R,)."""
        h = stabilities_of(self.problem, state.weights, state.reference, state.replica_ids)
        return self.problem.loss.value(h).mean(-1)

    def saved(self, state: PerceptronState) -> dict:
        return {
            "weights": state.weights,
            "reference": state.reference,
            "selection": state.selection,
            "replica_ids": state.replica_ids,
        }

    def restored(self, initial: PerceptronState, saved: dict, step: int) -> PerceptronState:
        return PerceptronState(
            saved["weights"], saved["reference"], saved["selection"], saved["replica_ids"], step
        )


def engine_steps(
    dynamics: Dynamics,
) -> Callable[[PerceptronState, int, int], tuple[PerceptronState, Outcome]]:
    """Advance by one step of the engine (every optimizer and constraint).

    A full-batch or Bernoulli/Markov step evaluates every sample's loss: it reports the
    loss before the step (the zero-loss check, free). A minibatch step sees its batch
    only: it reports whether it moved the weights (the checks' exact t*).
    """

    def advance(state: PerceptronState, step: int, stop: int) -> tuple[PerceptronState, Outcome]:
        advanced, info = dynamics.step(state)
        moved = torch.where(info.moved, step, -1) if info.loss is None else None
        before = {"weights": state.weights}
        return advanced, Outcome(last_moved=moved, loss_before=info.loss, tensors_before=before)

    return advance


class Recorder(ScheduledRecorder):
    """Evaluates the observables of every replica at the recording steps."""

    record_dims = {"weights": ("feature",)}

    def __init__(self, config, problem, test_problem, teacher, initial, reference, schedule):
        super().__init__(schedule)
        self.config, self.problem, self.test_problem = config, problem, test_problem
        self.teacher, self.initial, self.reference = teacher, initial, reference
        self.all_ids = torch.arange(initial.shape[0], device=initial.device)

    def observe(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        run, weights = self.config.run, tensors["weights"]
        values = margin_observables(
            self.problem, weights, self.reference, self.all_ids, run.error_tolerance
        )
        if self.test_problem is not None:
            values["test_error"] = test_error(
                self.test_problem, weights, self.reference, self.all_ids
            )
        values["weight_change"] = weight_change(weights, self.initial)
        if self.teacher is not None:
            values.update(teacher_decomposition(weights, self.initial, self.teacher))
        if run.record.weights:
            values["weights"] = weights
        return values


def train_point(
    config: PointConfig,
    datasets: list[Dataset] | None = None,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> xr.Dataset:
    """Train the replicas of a resolved perceptron grid point; return the run artifact.

    ``datasets``: the training data (one shared Dataset, or one per replica when
    data.per_replica); built from the config when None. ``checkpoint``: a file to save
    the run to every run.checkpoint_seconds of wall time and to resume from (a resumed
    run is identical to an uninterrupted one); removed once training is done.
    """
    started = clock.perf_counter()
    run, optimizer = config.run, config.optimizer
    device, dtype, datasets = run_setup(config, datasets)
    problem, test_problem, teacher = build_problems(config, datasets, device, dtype)

    checkpointer = Checkpointer(checkpoint, config, started)
    resumed = checkpointer.resume()
    start = initial_weights(config, problem.N, device, dtype)
    gd_init_loss = math.nan
    if resumed is not None:
        start, gd_init_loss = resumed["start"], resumed["gd_init_loss"]
    elif run.init == "gd_minimum":
        start = gd_minimum_starts(config, problem, start, device)
        if not problem.per_replica:  # the training loss at the one shared minimum
            gd_init_loss = float(problem.loss.value(start[:1] @ problem.patterns.T).mean())
    reference = start.clone() if config.model.alpha is not None else None

    dynamics = make_perceptron_dynamics(problem, optimizer, run.seed, device)
    state = dynamics.init(start.clone(), list(range(run.replicas)), reference)
    schedule = RecordingSchedule(run, optimizer.lr)
    recorder = Recorder(config, problem, test_problem, teacher, start, reference, schedule)
    exact_stop = run.events and run.tolerance == 0  # the engine sees zero loss itself
    if run.events:
        advance = event_driven.JumpingToMoves(
            problem, optimizer.batch_size, optimizer.lr, run.seed, device, exact_stop=exact_stop
        )
        stepper = PerceptronStepper(problem, advance, event_driven.LONGEST_WINDOW)
    elif idle_skipping.applies(config):
        advance = idle_skipping.skipping_idle_steps(config, problem, device)
        stepper = PerceptronStepper(problem, advance, idle_skipping.LONGEST_WINDOW)
    else:
        stepper = PerceptronStepper(problem, engine_steps(dynamics), longest_block=1)
    zero_loss = run.stop == "zero_loss"
    # a minibatch step sees its batch only: checks find zero loss (other steps report it)
    checked = zero_loss and optimizer.kind == "minibatch_sgd" and not exact_stop
    rules = StopRules(
        lr=optimizer.lr,
        zero_loss=zero_loss,
        tolerance=run.tolerance,
        check_every=run.check_every if checked else None,
    )
    kept = {"start": start, "gd_init_loss": gd_init_loss}
    runner = Runner(stepper, recorder, rules, checkpointer, kept)
    ledger = runner.run(state, resumed, progress)
    final_weights = ledger.tensors["weights"]
    all_ids = torch.arange(run.replicas, device=device)
    final_stabilities = stabilities_of(problem, final_weights, reference, all_ids)
    variables = {
        "final_weights": (("replica", "feature"), final_weights.cpu().numpy()),
        "initial_weights": (("replica", "feature"), start.cpu().numpy()),
        "final_stabilities": (("replica", "sample"), final_stabilities.cpu().numpy()),
        **ledger_variables(ledger, optimizer.lr),
    }
    wall_seconds = checkpointer.wall_seconds()
    attributes = run_attributes(config, ledger, datasets, device, wall_seconds)
    attributes["gd_init_loss"] = gd_init_loss
    return run_artifact(config, recorder, variables, attributes)
