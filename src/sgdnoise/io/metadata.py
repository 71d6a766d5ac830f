"""Units and long names of every variable sgdnoise writes (the declarative layer).

Computation returns bare arrays; `describe` stamps ``units`` and ``long_name`` from
this table. A variable missing from the table raises: nothing is written undocumented.
Time is in units of lr x steps ("lr steps"); losses and stabilities are dimensionless.
"""

from __future__ import annotations

import xarray as xr

TIME_UNITS = "lr x steps"
PER_TIME_UNITS = f"1 / ({TIME_UNITS})"  # rates, multipliers and kernels per unit time

VARIABLES: dict[str, tuple[str, str]] = {
    # coordinates
    "record": ("1", "record index on the recording grid (coordinates time and step)"),
    "record2": ("1", "record index of the second time t' of a two-time function"),
    "time": (TIME_UNITS, "recording time t = lr x step"),
    "time2": (TIME_UNITS, "second time t' of a two-time function"),
    "replica": ("1", "replica index"),
    "sample": ("1", "training sample index mu"),
    "feature": ("1", "weight component index i"),
    "t_w": (TIME_UNITS, "waiting time at which the probe field is switched on"),
    "window": (TIME_UNITS, "upper end of the FDT fit window in the time difference s"),
    # training records
    "step": ("1", "step index of each record (observables before that step's update)"),
    "train_loss": ("1", "training loss per sample, mean over mu of v(h_mu)"),
    "train_error": ("1", "fraction of training samples misclassified, h < -error_tolerance"),
    "violated_fraction": ("1", "fraction of training samples with h < kappa - error_tolerance"),
    "test_error": ("1", "fraction of test samples with y F <= 0"),
    "weight_change": ("1", "relative weight change |w - w(0)| / |w(0)|"),
    "signal": ("1", "signal u . e of u = w - w(0) along the unit teacher e"),
    "noise": ("1", "noise |u_perp|^2 / (N - 1) of u = w - w(0)"),
    "weights": ("1", "weight vector w on the recording grid"),
    "final_weights": ("1", "weights at the end of training (at the stop for stopped replicas)"),
    "initial_weights": ("1", "weights w(0) at the start of training"),
    "final_stabilities": ("1", "stabilities h_mu = y_mu (w - w0) . x_mu / sqrt(N) at the end"),
    "t_star": (TIME_UNITS, "training time t* at which the stopping criterion was met"),
    "steps_taken": (
        "1",
        "step at which the runner stopped the replica: zero loss seen, divergence, or budget",
    ),
    "steps_to_zero_loss": (
        "1",
        "t* / lr: steps to the stopping criterion (exact last move + 1 at tolerance 0); "
        "NaN if not reached",
    ),
    "replica_status": ("1", "completed | budget_exhausted | diverged, per replica"),
    "kernel_change": (
        "1",
        "relative tangent-kernel change ||K(w*) - K(w0)||_F / ||K(w0)||_F on 32 training samples",
    ),
    # data
    "x_train": ("1", "training inputs"),
    "y_train": ("1", "training labels +-1"),
    "x_test": ("1", "test inputs"),
    "y_test": ("1", "test labels +-1"),
    "teacher": ("1", "direction generating the labels"),
}


# The dmft artifact (stages.dmft): the means over solver seeds, their standard errors, the
# per-seed copies the fits resample, the iteration diagnostics and its coordinates.
_DMFT_SEED_MEANS: dict[str, tuple[str, str]] = {
    "loss": ("1", "training loss per sample E[v(h)], v(h) = (kappa - h)^2 theta(kappa - h) / 2"),
    "violated_fraction": ("1", "fraction of samples with h < kappa - error_tolerance"),
    "C": ("1", "correlation C(t, t') = w(t) . w(t') / N"),
    "R": (PER_TIME_UNITS, "response R[k, l] = (1/lr) dE[w^k] / dH^l (field entering as + lr H^l)"),
    "chi": ("1", "integrated response chi(t, t_w) = lr sum_{l = k_w}^{k - 1} R[k, l]"),
    "nu": (PER_TIME_UNITS, "spherical multiplier nu = (1 - c) / lr of the step from t"),
    "m": ("1", "magnetisation m(t) = w(t) . v / N along the mixture centre v"),
    "M_C": (
        PER_TIME_UNITS,
        "noise kernel M_C[k, l] = Delta (P/N) E[f^k f^l], f = scale s v'(h) (+ 2 T / lr on the "
        "diagonal for langevin)",
    ),
    "M_R": (
        PER_TIME_UNITS,
        "memory kernel M_R[k, l] = Delta (P/N) E[d f^k / dP^l] (exact per path)",
    ),
    "replica_distance": (
        "1",
        "replica distance d(t) = |w_a - w_b|^2 / N of two replicas with the same data and w(0) "
        "and independent selection (and Langevin) noise",
    ),
}
DMFT_VARIABLES: dict[str, tuple[str, str]] = {
    # coordinates
    "record": ("1", "record index: the DMFT records every step, record k is step k"),
    "step": ("1", "step index k"),
    "time": (TIME_UNITS, "time t = lr k"),
    "record2": ("1", "record index of the second time (record l is step l)"),
    "step2": ("1", "second step index l"),
    "time2": (TIME_UNITS, "second time lr l"),
    "t_w": (TIME_UNITS, "waiting time t_w"),
    "waiting_step": ("1", "waiting step k_w = round(t_w / lr)"),
    "solver_seed": ("1", "index of the independent solver seed"),
    # means over solver seeds and their standard errors
    **_DMFT_SEED_MEANS,
    **{
        f"{name}_stderr": (units, f"standard error over solver seeds of {name}")
        for name, (units, _) in _DMFT_SEED_MEANS.items()
    },
    # per solver seed
    "seed_loss": ("1", "loss of each solver seed (for fits that resample seeds)"),
    "seed_C_diagonal": ("1", "C(t, t) of each solver seed"),
    "seed_C_waiting": ("1", "C(t, t_w) of each solver seed"),
    "seed_chi": ("1", "chi(t, t_w) of each solver seed"),
    "seed_replica_distance": ("1", "replica distance d(t) of each solver seed"),
    "seed_final_stability": (
        "1",
        "stability h of each path of the effective sample at the last step (its gap "
        "statistics are the final margins; analysis.margins)",
    ),
    "change": ("1", "change per iteration (largest of C, R, m, relative)"),
    "iterations": ("1", "fixed-point iterations done"),
}


def describe(dataset: xr.Dataset, extra: dict[str, tuple[str, str]] | None = None) -> xr.Dataset:
    """Stamp units and long_name on every variable and coordinate (KeyError if unknown)."""
    table = {**VARIABLES, **(extra or {})}
    unknown = [name for name in dataset.variables if name not in table]
    if unknown:
        raise KeyError(f"no units/long_name declared for: {', '.join(map(str, unknown))}")
    for name in dataset.variables:
        units, long_name = table[name]
        dataset[name].attrs.update(units=units, long_name=long_name)
    return dataset
