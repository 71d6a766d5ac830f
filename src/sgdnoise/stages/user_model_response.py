"""Stage correlation_response for model.kind torch: C(t, t_w) and the exact response chi.

The perceptron's measurement (stages.correlation_response) for a user's module: the
run is replayed from its stored w(0) with the same counter-based randomness, by the
training update itself (so the replay reproduces the recorded weights, which is checked
when they are recorded), while M = probes x waiting times tangents follow the
linearised dynamics (dynamics.user_model.push_tangents: Hessian-vector products by
forward-over-reverse differentiation). Over the n trainable parameters:

    C(t, t_w)   = w(t) . w(t_w) / n
    chi(t, t_w) = zeta . dw(t) / |zeta|^2       field switched on at t_w along zeta ~ N(0, I_n)

on the lag grid of run.response, per replica and waiting time, with C(t, t) and the
training loss per sample: the artifact of the perceptron's, read by the same analyses.
Before the first waiting time no tangent is on and the replay costs a training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from sgdnoise.analysis.fdt import lag_grid
from sgdnoise.config.point import PointConfig
from sgdnoise.data import Dataset
from sgdnoise.dynamics.random import ReplicaStream
from sgdnoise.dynamics.user_model import UserModelDynamics, UserModelState
from sgdnoise.models.user import initial_user_parameters
from sgdnoise.stages.checkpoint import Checkpointer
from sgdnoise.stages.correlation_response import (
    LagGridRecorder,
    assemble_two_time,
    check_replay,
    diverged_replicas,
)
from sgdnoise.stages.recording import RecordingSchedule
from sgdnoise.stages.runner import Outcome, Runner, StopRules
from sgdnoise.stages.train_user_model import flat, mean_loss_and_error, user_model_setup


@dataclass(frozen=True)
class UserReplayState:
    """The replayed replicas: the walk, tangents (R, M, n) and anchors w(t_w) (R, W, n)."""

    walk: UserModelState
    tangents: Tensor
    anchors: Tensor

    @property
    def replica_ids(self) -> Tensor:
        return self.walk.replica_ids

    def subset(self, keep: Tensor) -> UserReplayState:
        return UserReplayState(self.walk.subset(keep), self.tangents[keep], self.anchors[keep])


@dataclass(frozen=True)
class UserReplayStepper:
    """One replayed step with its tangents (a stages.runner.Stepper of one-step blocks).

    Tangent m feels its field zeta_m from its waiting time on; anchors are taken after
    the step that reaches a waiting time, so a record at t_w already holds w(t_w).
    """

    dynamics: UserModelDynamics
    zeta: Tensor  # (R, M, n) probes of every replica
    waiting_steps: np.ndarray  # (W,)
    owner: np.ndarray  # (M,) the waiting-time index of each tangent
    longest_block: int = 1

    def advance(
        self, state: UserReplayState, step: int, stop: int
    ) -> tuple[UserReplayState, Outcome]:
        walk = state.walk
        inputs, chain = self.dynamics.draw(walk)
        switched_on = step >= self.waiting_steps[self.owner]
        tangents = state.tangents
        if switched_on.any():  # before the first waiting time every tangent stays 0
            on = torch.as_tensor(switched_on, device=tangents.device).view(1, -1, 1)
            fields = self.zeta[walk.replica_ids] * on.to(tangents.dtype)
            tangents = self.dynamics.push_tangents(walk, inputs, tangents, fields)
        parameters, report = self.dynamics.update(walk, inputs)
        anchors = state.anchors
        reached = self.waiting_steps == step + 1
        if reached.any():
            anchors = anchors.clone()
            anchors[:, reached] = flat(parameters).unsqueeze(1)
        walk = UserModelState(parameters, chain, walk.replica_ids, walk.step + 1)
        outcome = Outcome(nonfinite_after=torch.where(report.finite, -1, step))
        return UserReplayState(walk, tangents, anchors), outcome

    def tensors(self, state: UserReplayState) -> dict[str, Tensor]:
        return {
            "weights": flat(state.walk.parameters),
            "tangents": state.tangents,
            "anchors": state.anchors,
        }

    def training_loss(self, state: UserReplayState) -> Tensor:
        raise NotImplementedError("a replay runs its whole length (stop: never)")

    def saved(self, state: UserReplayState) -> dict:
        raise NotImplementedError("a replay is not checkpointed")

    def restored(self, initial: UserReplayState, saved: dict, step: int) -> UserReplayState:
        raise NotImplementedError("a replay is not checkpointed")


class UserReplayRecorder(LagGridRecorder):
    """At every step t_w + s of the lag grid: C, C(t, t), chi and the training loss."""

    def __init__(
        self,
        schedule: RecordingSchedule,
        dynamics: UserModelDynamics,
        zeta: Tensor,
        owner: np.ndarray,
    ) -> None:
        super().__init__(schedule)
        self.dynamics, self.zeta, self.owner = dynamics, zeta, owner

    def observe(self, current: dict[str, Tensor]) -> dict[str, Tensor]:
        weights, size = current["weights"], current["weights"].shape[-1]
        values: dict[str, list[Tensor]] = {"correlation": [], "chi": []}
        for j in range(current["anchors"].shape[1]):
            mine = torch.as_tensor(self.owner == j, device=weights.device)
            values["correlation"].append((weights * current["anchors"][:, j]).sum(-1) / size)
            probes = self.zeta[:, mine]
            overlap = (probes * current["tangents"][:, mine]).sum(-1)
            values["chi"].append((overlap / (probes * probes).sum(-1)).mean(-1))
        observed = {name: torch.stack(per_wait, -1) for name, per_wait in values.items()}
        ids = torch.arange(weights.shape[0], device=weights.device)
        parameters = self.dynamics.unflatten(weights)
        dynamics = self.dynamics
        observed["lag_train_loss"] = mean_loss_and_error(
            dynamics.function, dynamics.loss, parameters, dynamics.train, ids
        )[0]
        observed["self_correlation"] = (weights * weights).sum(-1) / size
        return observed


def measure_user_two_time(
    run: xr.Dataset, config: PointConfig, datasets: list[Dataset]
) -> xr.Dataset:
    """Replay a model.kind torch run with response tangents; return the two-time artifact."""
    run_config, lr = config.run, config.optimizer.lr
    response = run_config.response
    device, dtype, _, _, _, _, _, dynamics = user_model_setup(config, datasets)
    initial = initial_user_parameters(config.model, run_config, device, dtype)
    replicas = run_config.replicas
    stored = torch.as_tensor(run["initial_weights"].values, dtype=dtype, device=device)
    if not torch.equal(flat(initial), stored):
        raise ValueError(
            "the factory's initial parameters differ from the run's stored w(0): the model "
            "code changed since the run (rerun the point)"
        )
    waiting_times = np.asarray(response.waiting_times, dtype=float)
    if waiting_times.size == 0:
        raise ValueError("run.response.waiting_times is empty: no response to measure")
    waiting_steps = np.rint(waiting_times / lr).astype(np.int64)
    lags, lag_steps = lag_grid(run_config, lr, float(waiting_times.max()))
    tangent_count, size = len(waiting_steps) * response.probes, stored.shape[-1]
    probe_stream = ReplicaStream(
        run_config.seed, "probe", (tangent_count, size), "normal", dtype, device, block_steps=1
    )
    zeta = probe_stream.draw(0, list(range(replicas)))  # (R, M, n), E[zeta zeta^T] = I
    owner = np.repeat(np.arange(len(waiting_steps)), response.probes)
    schedule = RecordingSchedule.at_steps(
        k_w + s for k_w in waiting_steps.tolist() for s in lag_steps.tolist()
    )
    recorder = UserReplayRecorder(schedule, dynamics, zeta, owner)
    walk = dynamics.initial_state(initial, list(range(replicas)))
    anchors = stored.new_zeros((replicas, len(waiting_steps), size))
    anchors[:, waiting_steps == 0] = stored.unsqueeze(1)
    state = UserReplayState(walk, torch.zeros_like(zeta), anchors)
    never = StopRules(lr=lr, zero_loss=False, tolerance=0.0, check_every=None)
    stepper = UserReplayStepper(dynamics, zeta, waiting_steps, owner)
    ledger = Runner(stepper, recorder, never, Checkpointer(None, config)).run(state)

    check_replay(run, ledger.tensors["weights"], schedule.total_steps, lr)
    diverged = diverged_replicas(run)
    measured = {
        name: recorder.on_lag_grid(name, waiting_steps, lag_steps)
        for name in ("correlation", "self_correlation", "chi", "lag_train_loss")
    }
    for values in measured.values():
        values[diverged] = np.nan  # a diverged replica has no response to report
    return assemble_two_time(run, config, waiting_times, lags, measured)
