"""Stage correlation_response: C(t, t_w) and the exact integrated response chi(t, t_w).

The run artifact holds w(0) and the config; the randomness is counter-based, so the
trajectory is REPLAYED exactly (checked against the stored final weights) while forward
tangents measure the response (dynamics.tangents, docs/physics.md A4):

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

import numpy as np
import torch
import xarray as xr

from sgdnoise.analysis.fdt import lag_grid
from sgdnoise.data import Dataset
from sgdnoise.dynamics.perceptron import make_perceptron_dynamics
from sgdnoise.dynamics.random import ReplicaStream
from sgdnoise.dynamics.tangents import step_with_tangents
from sgdnoise.io.artifact import artifact_config, provenance
from sgdnoise.io.metadata import describe
from sgdnoise.observables.perceptron import margin_observables
from sgdnoise.stages.recording import choose_device
from sgdnoise.stages.train import build_problems

REPLAY_TOLERANCE = 1e-8


class ReplayError(RuntimeError):
    """The replayed trajectory differs from the recorded one (non-deterministic run)."""


def correlation_matrix(run: xr.Dataset) -> xr.DataArray:
    """C(t, t') = w(t) . w(t') / N from the recorded snapshots, per replica.

    Dims (replica, record, record2) with the recording times as coordinates time, time2.
    """
    weights = run["weights"].reset_coords(drop=True)
    second = weights.rename(record="record2")
    times = run["time"].values
    return (xr.dot(weights, second, dim="feature") / run.sizes["feature"]).assign_coords(
        time=("record", times), time2=("record2", times)
    )


def measure_two_time(run: xr.Dataset, datasets: list[Dataset]) -> xr.Dataset:
    """Replay a run with response tangents; return the two-time artifact."""
    config = artifact_config(run)
    run_config, optimizer = config["run"], config["optimizer"]
    response = run_config["response"]
    lr = optimizer["lr"]
    device = choose_device(run_config["device"])
    dtype = torch.float64 if run_config["dtype"] == "float64" else torch.float32
    problem, _, _ = build_problems(config, datasets, device, dtype)
    replicas, N = run.sizes["replica"], problem.N
    start = torch.as_tensor(run["initial_weights"].values, dtype=dtype, device=device)
    reference = start.clone() if config["model"]["alpha"] is not None else None
    dynamics = make_perceptron_dynamics(problem, optimizer, run_config["seed"], device)
    state = dynamics.init(start.clone(), list(range(replicas)), reference)

    waiting_times = np.asarray(response["waiting_times"], dtype=float)
    if waiting_times.size == 0:
        raise ValueError("run.response.waiting_times is empty: no response to measure")
    waiting_steps = np.rint(waiting_times / lr).astype(np.int64)
    probes = response["probes"]
    lags, lag_steps = lag_grid(run_config, lr, float(waiting_times.max()))
    tangent_count = len(waiting_steps) * probes
    probe_stream = ReplicaStream(
        run_config["seed"], "probe", (tangent_count, N), "normal", dtype, device, block_steps=1
    )
    zeta = probe_stream.draw(0, list(range(replicas)))  # (R, M, N), E[zeta zeta^T] = I
    owner = np.repeat(np.arange(len(waiting_steps)), probes)  # waiting-time index of a tangent
    tangents = torch.zeros_like(zeta)
    epsilon = response["finite_field"]
    twins = start.unsqueeze(1).repeat(1, len(waiting_steps), 1) if epsilon else None

    shape = (replicas, len(waiting_steps), len(lags))
    correlation, self_correlation = np.full(shape, np.nan), np.full(shape, np.nan)
    chi, loss = np.full(shape, np.nan), np.full(shape, np.nan)
    chi_twin = np.full(shape, np.nan) if epsilon else None
    anchors = torch.zeros(replicas, len(waiting_steps), N, dtype=dtype, device=device)
    total_steps = int(waiting_steps.max() + lag_steps[-1])
    all_ids = state.replica_ids

    for step in range(total_steps + 1):
        weights = state.weights
        for j, k_w in enumerate(waiting_steps):
            if step == k_w:
                anchors[:, j] = weights
            hits = np.flatnonzero(lag_steps == step - k_w)
            if hits.size == 0:
                continue
            mine = torch.as_tensor(owner == j, device=device)
            overlap = (weights * anchors[:, j]).sum(-1) / N
            norm = (weights * weights).sum(-1) / N
            probes_now = zeta[:, mine]
            overlap_now = (probes_now * tangents[:, mine]).sum(-1)
            response_now = (overlap_now / (probes_now * probes_now).sum(-1)).mean(-1)
            current_loss = margin_observables(problem, weights, reference, all_ids, 0.0)
            for lag_index in hits:
                correlation[:, j, lag_index] = overlap.cpu().numpy()
                self_correlation[:, j, lag_index] = norm.cpu().numpy()
                chi[:, j, lag_index] = response_now.cpu().numpy()
                loss[:, j, lag_index] = current_loss["train_loss"].cpu().numpy()
                if epsilon:
                    probe = zeta[:, probes * j]
                    shift = ((twins[:, j] - weights) * probe).sum(-1) / (probe * probe).sum(-1)
                    shift = shift / epsilon
                    chi_twin[:, j, lag_index] = shift.cpu().numpy()
        if step == total_steps:
            break
        inputs, chain = dynamics.draw(state)
        switched_on = torch.as_tensor(step >= waiting_steps[owner], device=device)
        field_tangents = zeta * switched_on.view(1, -1, 1).to(dtype)
        new_weights, tangents = step_with_tangents(
            dynamics, state, inputs, tangents, field_tangents
        )
        if epsilon:
            for j, k_w in enumerate(waiting_steps):
                field = epsilon * zeta[:, probes * j] if step >= k_w else None
                twins[:, j] = dynamics.update(twins[:, j], field, inputs, state)[0]
        state = state.__class__(
            new_weights, state.reference, chain, state.replica_ids, state.step + 1
        )

    _check_replay(run, state.weights, total_steps, lr)
    diverged = _diverged_replicas(run)
    for values in (correlation, self_correlation, chi, loss, chi_twin):
        if values is not None:
            values[diverged] = np.nan  # a diverged replica has no response to report
    return _assemble(
        run, config, waiting_times, lags, correlation, self_correlation, chi, loss, chi_twin
    )


def _diverged_replicas(run: xr.Dataset) -> np.ndarray:
    """Boolean mask of the replicas the run recorded as diverged."""
    if "replica_status" not in run:
        return np.zeros(run.sizes["replica"], dtype=bool)
    return np.asarray(run["replica_status"].values).astype(str) == "diverged"


def _check_replay(run: xr.Dataset, weights: torch.Tensor, total_steps: int, lr: float) -> None:
    """The replay must reproduce the recorded weights at a recorded step (replicas that
    diverged are left out: the run froze them, the replay does not)."""
    if "weights" not in run:
        return
    recorded_steps = run["step"].values
    candidates = np.flatnonzero(recorded_steps == total_steps)
    kept = ~_diverged_replicas(run)
    if candidates.size == 0 or not kept.any():
        return
    recorded = run["weights"].isel(record=int(candidates[0])).values[kept]
    difference = np.abs(weights.cpu().numpy()[kept] - recorded).max()
    if not difference <= REPLAY_TOLERANCE * math.sqrt(recorded.shape[-1]):
        raise ReplayError(
            f"replay differs from the recorded trajectory at t = {total_steps * lr} "
            f"(max |dw| = {difference:.3g}); the run is not reproducible on this device"
        )


def _assemble(
    run, config, waiting_times, lags, correlation, self_correlation, chi, loss, chi_twin
) -> xr.Dataset:
    dims = ("replica", "t_w", "lag")
    variables = {
        "correlation": (dims, correlation),
        "self_correlation": (dims, self_correlation),
        "chi": (dims, chi),
        "lag_train_loss": (dims, loss),
    }
    if chi_twin is not None:
        variables["chi_finite_field"] = (dims, chi_twin)
    dataset = xr.Dataset(
        variables,
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
