"""Stage train_replicas: train the R replicas of one grid point and record them.

The runner drives the dynamics (dynamics.perceptron), evaluates the observables
(observables.perceptron) on the recording grid and returns one xarray Dataset. It owns
what the pure step does not: initialisation, the recording grid, stopping rules,
divergence detection, masking out finished replicas, checkpoints.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sgdnoise.config import draw_owners
from sgdnoise.data import Dataset
from sgdnoise.dynamics.perceptron import (
    PerceptronProblem,
    PerceptronState,
    make_perceptron_dynamics,
)
from sgdnoise.dynamics.random import ReplicaStream
from sgdnoise.models.losses import MarginLoss
from sgdnoise.observables.perceptron import (
    margin_observables,
    teacher_decomposition,
    test_error,
    weight_change,
)
from sgdnoise.stages import idle_skipping
from sgdnoise.stages.checkpoint import Checkpointer
from sgdnoise.stages.generate_data import data_draws
from sgdnoise.stages.recording import (
    RecordingSchedule,
    ScheduledRecorder,
    data_fingerprint,
    overall_status,
    progress_bar,
    run_setup,
    stopping_time,
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


def build_problems(config: dict, datasets: list[Dataset], device, dtype):
    """Training problem, test problem (or None) and teacher (or None) as device tensors."""
    model, loss_config = config["model"], config["loss"]
    loss = MarginLoss(loss_config["kind"], loss_config["kappa"])
    per_replica = len(datasets) > 1

    def problem(test: bool) -> PerceptronProblem:
        return PerceptronProblem(
            patterns=_patterns(datasets, test, device, dtype),
            per_replica=per_replica,
            loss=loss,
            constraint=model["constraint"],
            ridge=model["ridge"] if model["constraint"] == "ridge" else 0.0,
            sphere_update=model["sphere_update"],
        )

    test = problem(test=True) if datasets[0].has_test else None
    teacher = datasets[0].teacher
    teacher = None if teacher is None else torch.as_tensor(teacher, dtype=dtype, device=device)
    return problem(test=False), test, teacher


def initial_weights(config: dict, N: int, device, dtype) -> torch.Tensor:
    """w(0) per replica: N(0, I_N), rescaled to |w|^2 = N on the sphere.

    Counter-based per replica (stream 'init'). With pairing same_init, replicas come in
    pairs (2k, 2k + 1) that share the draw of init k (config.draw_owners, docs/physics.md A6).
    """
    run = config["run"]
    stream = ReplicaStream(run["seed"], "init", (N,), "normal", dtype, device, block_steps=1)
    weights = stream.draw(0, draw_owners(run))
    if config["model"]["constraint"] == "sphere":
        weights = math.sqrt(N) * weights / weights.norm(dim=-1, keepdim=True)
    return weights


def gd_minimum(
    config: dict, problem: PerceptronProblem, start: torch.Tensor, replica_ids: list[int], device
) -> torch.Tensor:
    """Weights after full-batch GD for run.gd_init_time (same lr and loss).

    ``start``: the w(0) of the replicas ``replica_ids`` (rows in that order), each
    descending on its own training set.
    """
    optimizer = dict(config["optimizer"], kind="gd", b=1.0, batch_normalization="sum")
    dynamics = make_perceptron_dynamics(problem, optimizer, config["run"]["seed"], device)
    state = dynamics.init(start, replica_ids)
    for _ in range(round(config["run"]["gd_init_time"] / optimizer["lr"])):
        state, _ = dynamics.step(state)
    return state.weights


def gd_minimum_starts(
    config: dict, problem: PerceptronProblem, start: torch.Tensor, device
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


@dataclass
class ReplicaBook:
    """Per-replica bookkeeping of a run: frozen weights, stop times, statuses."""

    weights: torch.Tensor  # latest known weights of every replica (R_total, N)
    t_star: np.ndarray
    steps_taken: np.ndarray
    status: list[str]
    last_moved: np.ndarray

    def freeze(self, ids: torch.Tensor, weights: torch.Tensor, status: str, steps: int, lr, t_star):
        """Stop the replicas ``ids`` at ``weights``; a diverged replica's weights are NaN
        (its errors, losses and stabilities then read NaN, never a count of 0)."""
        if status == "diverged":
            weights = torch.full_like(weights, torch.nan)
        for row, replica in enumerate(ids.tolist()):
            self.weights[replica] = weights[row]
            self.status[replica] = status
            self.steps_taken[replica] = steps
            if t_star is not None:
                self.t_star[replica] = t_star[row] if np.ndim(t_star) else t_star

    def with_active(self, state: PerceptronState) -> torch.Tensor:
        """Weights of every replica: the frozen ones, and the active ones of ``state``."""
        weights = self.weights.clone()
        weights[state.replica_ids] = state.weights
        return weights

    def stop_at_zero_loss(
        self, problem: PerceptronProblem, state: PerceptronState, step: int, lr, tolerance
    ) -> PerceptronState:
        """Freeze as completed the replicas with training loss <= tolerance; return the rest.

        Checked on the weights before ``step``; t* as stages.recording.stopping_time.
        """
        observables = margin_observables(
            problem, state.weights, state.reference, state.replica_ids, 0.0
        )
        done = observables["train_loss"] <= tolerance
        if not bool(done.any()):
            return state
        ids = state.replica_ids[done]
        t_star = stopping_time(lr, self.last_moved[ids.cpu().numpy()], step, tolerance)
        self.freeze(ids, state.weights[done], "completed", step, lr, t_star)
        return state.subset(~done)


class Recorder(ScheduledRecorder):
    """Evaluates the observables of every replica at the recording steps."""

    def __init__(self, config, problem, test_problem, teacher, initial, reference, schedule):
        super().__init__(schedule)
        self.config, self.problem, self.test_problem = config, problem, test_problem
        self.teacher, self.initial, self.reference = teacher, initial, reference
        self.all_ids = torch.arange(initial.shape[0], device=initial.device)

    def record(self, weights: torch.Tensor) -> None:
        run = self.config["run"]
        values = margin_observables(
            self.problem, weights, self.reference, self.all_ids, run["error_tolerance"]
        )
        if self.test_problem is not None:
            values["test_error"] = test_error(
                self.test_problem, weights, self.reference, self.all_ids
            )
        values["weight_change"] = weight_change(weights, self.initial)
        if self.teacher is not None:
            values.update(teacher_decomposition(weights, self.initial, self.teacher))
        if run["record"]["weights"]:
            values["weights"] = weights
        for name, value in values.items():
            self.records.setdefault(name, []).append(value.detach().cpu())


def train_point(
    config: dict,
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
    run, optimizer = config["run"], config["optimizer"]
    device, dtype, datasets = run_setup(config, datasets)
    replicas, lr = run["replicas"], optimizer["lr"]
    problem, test_problem, teacher = build_problems(config, datasets, device, dtype)
    N = problem.N

    checkpointer = Checkpointer(checkpoint, config)
    resumed = checkpointer.resume()
    start = initial_weights(config, N, device, dtype)
    gd_init_loss = math.nan
    if resumed is not None:
        start, gd_init_loss = resumed["start"], resumed["gd_init_loss"]
    elif run["init"] == "gd_minimum":
        start = gd_minimum_starts(config, problem, start, device)
        if not problem.per_replica:  # the training loss at the one shared minimum
            gd_init_loss = float(problem.loss.value(start[:1] @ problem.patterns.T).mean())
    reference = start.clone() if config["model"]["alpha"] is not None else None

    dynamics = make_perceptron_dynamics(problem, optimizer, run["seed"], device)
    state = dynamics.init(start.clone(), list(range(replicas)), reference)
    schedule = RecordingSchedule(run, lr)
    total_steps = schedule.total_steps
    recorder = Recorder(config, problem, test_problem, teacher, start, reference, schedule)
    book = ReplicaBook(
        weights=start.clone(),
        t_star=np.full(replicas, np.nan),
        steps_taken=np.zeros(replicas, dtype=np.int64),
        status=["completed"] * replicas,
        last_moved=np.full(replicas, -1, dtype=np.int64),
    )
    stop_on_zero = run["stop"] == "zero_loss"
    tolerance = run["tolerance"]
    sparse = optimizer["kind"] == "minibatch_sgd"
    check_every = run["check_every"] if sparse else 1
    first_step = 0
    if resumed is not None:
        weights, saved_reference, selection, replica_ids = resumed["state"]
        state = PerceptronState(weights, saved_reference, selection, replica_ids, resumed["step"])
        book, first_step = resumed["book"], resumed["step"]
        recorder.records = resumed["records"]
        schedule.restore(resumed["schedule"])
    bar = progress_bar(total_steps, first_step, progress)

    def save(step: int, state: PerceptronState) -> None:
        """Checkpoint before ``step`` when run.checkpoint_seconds have passed since the last."""
        checkpointer.offer(
            lambda: {
                "step": step,
                "state": (state.weights, state.reference, state.selection, state.replica_ids),
                "book": book,
                "records": recorder.records,
                "schedule": schedule.state(),
                "start": start,
                "gd_init_loss": gd_init_loss,
            }
        )

    if idle_skipping.applies(config):
        state = idle_skipping.train_skipping_idle_steps(
            config, problem, state, recorder, book, total_steps, bar, first_step, save
        )
    else:
        for step in range(first_step, total_steps + 1):
            save(step, state)
            recorder.record_if_due(step, lambda: book.with_active(state))  # noqa: B023
            if state.weights.shape[0] == 0 or step == total_steps:
                break
            if stop_on_zero and sparse and step % check_every == 0:
                state = book.stop_at_zero_loss(problem, state, step, lr, tolerance)
                if state.weights.shape[0] == 0:
                    continue
            new_state, info = dynamics.step(state)
            if sparse:
                moved_ids = state.replica_ids[info.moved].cpu().numpy()
                book.last_moved[moved_ids] = step
            finished = torch.zeros(state.weights.shape[0], dtype=torch.bool, device=device)
            if stop_on_zero and info.loss is not None:
                reached = info.loss <= tolerance
                if bool(reached.any()):
                    book.freeze(
                        state.replica_ids[reached],
                        state.weights[reached],
                        "completed",
                        step,
                        lr,
                        lr * step,
                    )
                    finished |= reached
            bad = ~torch.isfinite(new_state.weights).all(-1)
            if info.loss is not None:
                bad |= ~torch.isfinite(info.loss)
            bad &= ~finished
            if bool(bad.any()):
                book.freeze(
                    state.replica_ids[bad], new_state.weights[bad], "diverged", step + 1, lr, None
                )
                finished |= bad
            state = new_state.subset(~finished) if bool(finished.any()) else new_state
            bar.update(1)
    bar.close()
    checkpointer.remove()

    final_status = "budget_exhausted" if stop_on_zero else "completed"
    book.freeze(state.replica_ids, state.weights, final_status, total_steps, lr, None)
    recorder.record_end(book.weights, int(book.steps_taken.max()))
    wall_seconds = clock.perf_counter() - started
    return _assemble(config, recorder, book, problem, datasets, device, gd_init_loss, wall_seconds)


def _assemble(
    config: dict,
    recorder: Recorder,
    book: ReplicaBook,
    problem: PerceptronProblem,
    datasets: list[Dataset],
    device: torch.device,
    gd_init_loss: float,
    wall_seconds: float,
) -> xr.Dataset:
    """The run artifact: the records on the schedule's steps and the book's final state."""
    from sgdnoise.io.artifact import provenance
    from sgdnoise.io.metadata import describe

    replicas = config["run"]["replicas"]
    all_ids = torch.arange(replicas, device=book.weights.device)
    final_h = _final_stabilities(problem, book.weights, recorder.reference, all_ids)
    variables = {
        name: (
            ("replica", "record", "feature") if name == "weights" else ("replica", "record"),
            recorder.stacked(name),
        )
        for name in recorder.records
    }
    lr = config["optimizer"]["lr"]
    variables.update(
        final_weights=(("replica", "feature"), book.weights.cpu().numpy()),
        initial_weights=(("replica", "feature"), recorder.initial.cpu().numpy()),
        final_stabilities=(("replica", "sample"), final_h),
        t_star=(("replica",), book.t_star),
        steps_to_zero_loss=(("replica",), np.rint(book.t_star / lr)),
        steps_taken=(("replica",), book.steps_taken),
        replica_status=(("replica",), np.array(book.status, dtype=object)),
    )
    dataset = xr.Dataset(
        variables,
        coords={"replica": np.arange(replicas), **recorder.schedule.coordinates(lr)},
    )
    overall = overall_status(book.status)
    dataset.attrs.update(provenance("run", config))
    dataset.attrs.update(
        status=overall,
        device=str(device),
        wall_seconds=wall_seconds,
        data_sha256=data_fingerprint(datasets),
        learning_rate=config["optimizer"]["lr"],
        gd_init_loss=gd_init_loss,
    )
    return describe(dataset)


def _final_stabilities(problem, weights, reference, ids) -> np.ndarray:
    from sgdnoise.dynamics.perceptron import stabilities_of

    return stabilities_of(problem, weights, reference, ids).cpu().numpy()
