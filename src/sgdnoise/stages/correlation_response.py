"""Stage correlation_response: C(t, t_w) and the exact integrated response chi(t, t_w).

The run artifact holds w(0) and the config; the randomness is counter-based, so the
trajectory is REPLAYED exactly (checked against the stored final weights) while forward
tangents measure the response (dynamics.tangents, docs/physics.md A4). The replay is a
run of the shared loop (stages.runner, stop: never): ReplayStepper advances the
trajectory with its tangents and twins, ReplayRecorder records at the steps t_w + s.

    C(t, t_w)   = w(t) . w(t_w) / N             correlation (C(t, t) = 1 on the sphere)
    chi(t, t_w) = zeta . dw(t) / |zeta|^2       integrated response to a field switched on
                                                at t_w along a Gaussian probe zeta,
                                                averaged over probes (then over replicas
                                                by the analyses)

Normalising by |zeta|^2 rather than N keeps the estimator exact (by symmetry
E[zeta_i zeta_j / |zeta|^2] = delta_ij / N, so its mean is Tr(dw/dH) / N) and removes the
fluctuation of |zeta|^2 / N from it.

on a linear grid of time differences s = t - t_w (``lag``) for each waiting time. An
optional finite-field twin (run.response.finite_field = epsilon) trains a copy with the
field epsilon zeta actually applied, with the same randomness:
chi_finite_field = zeta . (w_H(t) - w(t)) / (|zeta|^2 epsilon).
Also stored: the correlation matrix C(t, t') of the recorded snapshots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from sgdnoise.analysis.fdt import lag_grid
from sgdnoise.config import PointConfig
from sgdnoise.data import Dataset
from sgdnoise.dynamics.perceptron import Dynamics, PerceptronState, make_perceptron_dynamics
from sgdnoise.dynamics.random import ReplicaStream
from sgdnoise.dynamics.tangents import step_with_tangents
from sgdnoise.io.artifact import artifact_config, provenance
from sgdnoise.io.metadata import describe
from sgdnoise.observables.perceptron import margin_observables
from sgdnoise.stages.checkpoint import Checkpointer
from sgdnoise.stages.recording import RecordingSchedule, ScheduledRecorder, choose_device
from sgdnoise.stages.runner import Outcome, Runner, StopRules
from sgdnoise.stages.train import build_problems

REPLAY_TOLERANCE = 1e-8


class ReplayError(RuntimeError):
    """The replayed trajectory differs from the recorded one (non-deterministic run)."""


def correlation_matrix(run: xr.Dataset) -> xr.DataArray:
    """C(t, t') = w(t) . w(t') / N from the recorded snapshots, per replica.

    Dims (replica, record, record2) with the recording times as coordinates time, time2;
    N is the length of the weights' last dim (``feature``, or a user model's ``parameter``).
    """
    weights = run["weights"].reset_coords(drop=True)
    second = weights.rename(record="record2")
    times = run["time"].values
    components = weights.dims[-1]
    return (xr.dot(weights, second, dim=components) / run.sizes[components]).assign_coords(
        time=("record", times), time2=("record2", times)
    )


@dataclass(frozen=True)
class ReplayState:
    """The replicas being replayed (a stages.runner state).

    walk: the trajectory (PerceptronState); tangents (R, M, N): dw/dH of the M = W x
    probes tangents; anchors (R, W, N): w(t_w) of every waiting time already reached
    (zeros before); twins (R, W, N): the finite-field twins, or None.
    """

    walk: PerceptronState
    tangents: torch.Tensor
    anchors: torch.Tensor
    twins: torch.Tensor | None

    @property
    def replica_ids(self) -> torch.Tensor:
        return self.walk.replica_ids

    def subset(self, keep: torch.Tensor) -> ReplayState:
        return ReplayState(
            self.walk.subset(keep),
            self.tangents[keep],
            self.anchors[keep],
            None if self.twins is None else self.twins[keep],
        )


@dataclass(frozen=True)
class ReplayStepper:
    """One step of the replay with its tangents and twins (a stages.runner.Stepper).

    The tangent of probe m feels the field zeta_m from its waiting time on; twin j
    trains with the field epsilon zeta (first probe of waiting time j) from t_w on,
    with the same randomness as the trajectory. Anchors are taken after the step that
    reaches a waiting time, so a record at t_w already holds w(t_w).
    """

    dynamics: Dynamics
    zeta: torch.Tensor  # (R, M, N) probes of every replica
    waiting_steps: np.ndarray  # (W,)
    owner: np.ndarray  # (M,) the waiting-time index of each tangent
    probes: int
    finite_field: float | None
    longest_block: int = 1

    def initial_state(self, walk: PerceptronState) -> ReplayState:
        replicas, waits = walk.weights.shape[0], len(self.waiting_steps)
        anchors = walk.weights.new_zeros((replicas, waits, walk.weights.shape[1]))
        anchors[:, self.waiting_steps == 0] = walk.weights.unsqueeze(1)
        twins = walk.weights.unsqueeze(1).repeat(1, waits, 1) if self.finite_field else None
        return ReplayState(walk, torch.zeros_like(self.zeta), anchors, twins)

    def advance(self, state: ReplayState, step: int, stop: int) -> tuple[ReplayState, Outcome]:
        walk, dynamics = state.walk, self.dynamics
        zeta = self.zeta[walk.replica_ids]
        inputs, chain = dynamics.draw(walk)
        switched_on_now = step >= self.waiting_steps[self.owner]
        if switched_on_now.any():
            switched_on = torch.as_tensor(switched_on_now, device=zeta.device)
            field_tangents = zeta * switched_on.view(1, -1, 1).to(zeta.dtype)
            weights, tangents = step_with_tangents(
                dynamics, walk, inputs, state.tangents, field_tangents
            )
        else:  # before the first waiting time every tangent is 0 and stays 0: skip the push
            weights, tangents = dynamics.update(walk.weights, None, inputs, walk)[0], state.tangents
        twins = state.twins
        if twins is not None:
            twins = twins.clone()
            for j, k_w in enumerate(self.waiting_steps):
                if step < k_w:  # no field yet: the twin is the trajectory, bit for bit
                    twins[:, j] = weights
                    continue
                field = self.finite_field * zeta[:, self.probes * j]
                twins[:, j] = dynamics.update(twins[:, j], field, inputs, walk)[0]
        anchors = state.anchors
        reached = self.waiting_steps == step + 1
        if reached.any():
            anchors = anchors.clone()
            anchors[:, reached] = weights.unsqueeze(1)
        walk = PerceptronState(weights, walk.reference, chain, walk.replica_ids, walk.step + 1)
        return ReplayState(walk, tangents, anchors, twins), Outcome()

    def tensors(self, state: ReplayState) -> dict[str, torch.Tensor]:
        tensors = {"weights": state.walk.weights, "tangents": state.tangents}
        tensors["anchors"] = state.anchors
        if state.twins is not None:
            tensors["twins"] = state.twins
        return tensors

    def training_loss(self, state: ReplayState) -> torch.Tensor:
        raise NotImplementedError("a replay runs its whole length (stop: never)")

    def saved(self, state: ReplayState) -> dict:
        return {"walk": vars(state.walk), **self.tensors(state)}

    def restored(self, initial: ReplayState, saved: dict, step: int) -> ReplayState:
        walk = PerceptronState(**{**saved["walk"], "step": step})
        return ReplayState(walk, saved["tangents"], saved["anchors"], saved.get("twins"))


class LagGridRecorder(ScheduledRecorder):
    """A recorder at the steps t_w + s of the lag grid, its records read back on it.

    Each record holds, per replica, the values for every waiting time (the ones whose
    t_w + s is not this step are gathered away by ``on_lag_grid``).
    """

    def on_lag_grid(
        self, name: str, waiting_steps: np.ndarray, lag_steps: np.ndarray
    ) -> np.ndarray:
        """(replica, t_w, lag) values of a record: at step t_w + s for each (t_w, s).

        NaN at steps never reached (the loop ends early when every replica diverged).
        """
        stacked = self.stacked(name)  # (replica, record) or (replica, record, t_w)
        missing = np.full_like(stacked[:, :1], np.nan)
        stacked = np.concatenate([stacked, missing], axis=1)  # record -1: never reached
        index = {step: i for i, step in enumerate(self.schedule.steps)}
        rows = np.array([[index.get(k_w + s, -1) for s in lag_steps] for k_w in waiting_steps])
        if stacked.ndim == 2:
            return stacked[:, rows]
        waits = np.arange(len(waiting_steps))[:, None]
        return stacked[:, rows, waits]


class ReplayRecorder(LagGridRecorder):
    """At every step t_w + s of the lag grid: C, C(t, t), chi, the loss and the twins' chi."""

    def __init__(self, schedule, problem, reference, zeta, owner, probes, finite_field):
        super().__init__(schedule)
        self.problem, self.reference, self.zeta = problem, reference, zeta
        self.owner, self.probes, self.finite_field = owner, probes, finite_field

    def observe(self, current: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights, N = current["weights"], self.problem.N
        all_ids = torch.arange(weights.shape[0], device=weights.device)
        values: dict[str, list[torch.Tensor]] = {"correlation": [], "chi": []}
        if self.finite_field:
            values["chi_finite_field"] = []
        for j in range(current["anchors"].shape[1]):
            mine = torch.as_tensor(self.owner == j, device=weights.device)
            values["correlation"].append((weights * current["anchors"][:, j]).sum(-1) / N)
            probes_now = self.zeta[:, mine]
            overlap_now = (probes_now * current["tangents"][:, mine]).sum(-1)
            values["chi"].append((overlap_now / (probes_now * probes_now).sum(-1)).mean(-1))
            if self.finite_field:
                probe = self.zeta[:, self.probes * j]
                twin = current["twins"][:, j]
                shift = ((twin - weights) * probe).sum(-1) / (probe * probe).sum(-1)
                values["chi_finite_field"].append(shift / self.finite_field)
        observed = {name: torch.stack(per_wait, -1) for name, per_wait in values.items()}
        observables = margin_observables(self.problem, weights, self.reference, all_ids, 0.0)
        observed["lag_train_loss"] = observables["train_loss"]
        observed["self_correlation"] = (weights * weights).sum(-1) / N
        return observed


def measure_two_time(run: xr.Dataset, datasets: list[Dataset]) -> xr.Dataset:
    """Replay a run with response tangents on the shared loop; return the two-time artifact."""
    config = artifact_config(run)
    if config.model.kind == "torch":
        from sgdnoise.stages.user_model_response import measure_user_two_time

        return measure_user_two_time(run, config, datasets)
    run_config, optimizer = config.run, config.optimizer
    response = run_config.response
    lr = optimizer.lr
    device = choose_device(run_config.device)
    dtype = torch.float64 if run_config.dtype == "float64" else torch.float32
    problem, _, _ = build_problems(config, datasets, device, dtype)
    replicas, N = run.sizes["replica"], problem.N
    start = torch.as_tensor(run["initial_weights"].values, dtype=dtype, device=device)
    reference = start.clone() if config.model.alpha is not None else None
    dynamics = make_perceptron_dynamics(problem, optimizer, run_config.seed, device)
    walk = dynamics.init(start.clone(), list(range(replicas)), reference)

    waiting_times = np.asarray(response.waiting_times, dtype=float)
    if waiting_times.size == 0:
        raise ValueError("run.response.waiting_times is empty: no response to measure")
    waiting_steps = np.rint(waiting_times / lr).astype(np.int64)
    probes = response.probes
    lags, lag_steps = lag_grid(run_config, lr, float(waiting_times.max()))
    tangent_count = len(waiting_steps) * probes
    probe_stream = ReplicaStream(
        run_config.seed, "probe", (tangent_count, N), "normal", dtype, device, block_steps=1
    )
    zeta = probe_stream.draw(0, list(range(replicas)))  # (R, M, N), E[zeta zeta^T] = I
    owner = np.repeat(np.arange(len(waiting_steps)), probes)  # waiting-time index of a tangent
    epsilon = response.finite_field
    stepper = ReplayStepper(dynamics, zeta, waiting_steps, owner, probes, epsilon)
    schedule = RecordingSchedule.at_steps(
        k_w + s for k_w in waiting_steps.tolist() for s in lag_steps.tolist()
    )
    recorder = ReplayRecorder(schedule, problem, reference, zeta, owner, probes, epsilon)
    never = StopRules(lr=lr, zero_loss=False, tolerance=0.0, check_every=None)
    ledger = Runner(stepper, recorder, never, Checkpointer(None, config)).run(
        stepper.initial_state(walk)
    )

    check_replay(run, ledger.tensors["weights"], schedule.total_steps, lr)
    diverged = diverged_replicas(run)
    names = ["correlation", "self_correlation", "chi", "lag_train_loss"]
    measured = {
        name: recorder.on_lag_grid(name, waiting_steps, lag_steps)
        for name in names + (["chi_finite_field"] if epsilon else [])
    }
    for values in measured.values():
        values[diverged] = np.nan  # a diverged replica has no response to report
    return assemble_two_time(run, config, waiting_times, lags, measured)


def diverged_replicas(run: xr.Dataset) -> np.ndarray:
    """Boolean mask of the replicas the run recorded as diverged."""
    if "replica_status" not in run:
        return np.zeros(run.sizes["replica"], dtype=bool)
    return np.asarray(run["replica_status"].values).astype(str) == "diverged"


def check_replay(run: xr.Dataset, weights: torch.Tensor, total_steps: int, lr: float) -> None:
    """The replay must reproduce the recorded weights at a recorded step (replicas that
    diverged are left out: the run froze them, the replay does not)."""
    if "weights" not in run:
        return
    recorded_steps = run["step"].values
    candidates = np.flatnonzero(recorded_steps == total_steps)
    kept = ~diverged_replicas(run)
    if candidates.size == 0 or not kept.any():
        return
    recorded = run["weights"].isel(record=int(candidates[0])).values[kept]
    difference = np.abs(weights.cpu().numpy()[kept] - recorded).max()
    if not difference <= REPLAY_TOLERANCE * math.sqrt(recorded.shape[-1]):
        raise ReplayError(
            f"replay differs from the recorded trajectory at t = {total_steps * lr} "
            f"(max |dw| = {difference:.3g}); the run is not reproducible on this device"
        )


def assemble_two_time(
    run: xr.Dataset,
    config: PointConfig,
    waiting_times: np.ndarray,
    lags: np.ndarray,
    measured: dict[str, np.ndarray],
) -> xr.Dataset:
    dims = ("replica", "t_w", "lag")
    dataset = xr.Dataset(
        {name: (dims, values) for name, values in measured.items()},
        coords={"replica": run["replica"].values, "t_w": waiting_times, "lag": lags},
    )
    if "weights" in run:
        dataset["correlation_matrix"] = correlation_matrix(run)
    dataset.attrs.update(provenance("two_time", config))
    dataset.attrs["status"] = run.attrs.get("status", "completed")
    extra = {
        "lag": ("lr x steps", "time difference s = t - t_w"),
        "correlation": ("1", "correlation C(t_w + s, t_w) = w(t) . w(t_w) / N"),
        "self_correlation": ("1", "C(t, t) = |w(t)|^2 / N at t = t_w + s"),
        "chi": (
            "1",
            "integrated response chi(t_w + s, t_w) = zeta . dw(t) / |zeta|^2 (exact tangent)",
        ),
        "chi_finite_field": ("1", "integrated response from a finite-field twin run"),
        "lag_train_loss": ("1", "training loss per sample at t = t_w + s"),
        "correlation_matrix": ("1", "C(t, t') = w(t) . w(t') / N on the recording grid"),
    }
    return describe(dataset, extra)
