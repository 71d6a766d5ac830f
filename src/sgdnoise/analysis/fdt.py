"""Effective temperature from the fluctuation-dissipation relation (docs/physics.md A5, A7b).

At equilibrium at temperature T, chi(t, t_w) = [C(t, t) - C(t, t_w)] / T. In a stationary
state the parametric plot of chi against Delta C(s) = C(t, t) - C(t, t_w), s = t - t_w,
defines T_eff = 1 / slope, fitted through the origin over a window of s on the
replica- and t_w-averaged curves:

    T_eff = sum_s <Delta C> <chi> / sum_s <chi>^2     (least squares of Delta C = T chi)

Delta C is regressed on chi, not the reverse: chi is the exact tangent response and
nearly noise-free once averaged, while the noise of Delta C would bias a fit of chi on
Delta C upwards (errors in variables; measured +4% on an Ornstein-Uhlenbeck check whose
answer is exact). Averaging before fitting removes the remaining quadratic noise bias.

SGD's curve is not a straight line (noise in the stiff directions of violated patterns),
so T_eff depends on the window: it is reported for windows fixed in units of 1/b
(s <= 1, 3/b, 10/b) and of tau (s <= tau, 3 tau; persistent SGD only), together with the
local slopes and the whole curve. A window longer than the measured lags is left NaN
(never fitted on a shorter range under its name). Confidence intervals: percentile bootstrap over
replicas (each replica its own noise, and its own data draw with data.per_replica), drawing
the two replicas of a same-init pair together (they share w(0) and data:
analysis.statistics).

Units of comparison (temperature_ratios, per point): T_eff / b under the sum normalisation
(the temperature per unit mean drift, comparable across b) and T_eff / T for an imposed
temperature T. Across a study's lr axis, T_eff / T is extrapolated to lr -> 0
(zero_step_extrapolation, a study-level fit: discrete steps alone violate the FDT).

Stationarity (no T_eff is reported without it): with at least two waiting times, the
replica-mean Delta C(s; t_w) and chi(s; t_w) of every t_w agree with those of the last
t_w within ``tolerance`` x their scale + 3 standard errors at every lag of the fit
windows, and the training loss at the first and last t_w agrees likewise.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from sgdnoise.analysis.statistics import percentile_bootstrap, standard_error, unit_means
from sgdnoise.config.point import OptimizerConfig, RunConfig

WINDOWS = ("s<=1", "s<=3/b", "s<=10/b", "s<=tau", "s<=3tau")
DEFAULT_TOLERANCE = 0.1


def window_lengths(optimizer: OptimizerConfig) -> dict[str, float]:
    """Upper end of each fit window (lr x steps); NaN where the window does not apply."""
    b = optimizer.b if optimizer.kind in ("sgd", "persistent_sgd") else 1.0
    tau = optimizer.tau if optimizer.kind == "persistent_sgd" else math.nan
    return {
        "s<=1": 1.0,
        "s<=3/b": 3.0 / b,
        "s<=10/b": 10.0 / b,
        "s<=tau": tau,
        "s<=3tau": 3.0 * tau,
    }


def lag_grid(
    run_config: RunConfig, lr: float, waiting_time: float
) -> tuple[np.ndarray, np.ndarray]:
    """Time differences s (lr x steps) and their step counts for a waiting time.

    The grid on which the simulation (stages.correlation_response) and the DMFT
    (analysis.dmft_fits) measure C(t_w + s, t_w) and chi(t_w + s, t_w): run.response.lag_count
    points from 0 to min(run.response.max_lag, run.max_time - t_w).
    """
    response = run_config.response
    longest = run_config.max_time - waiting_time
    if response.max_lag is not None:
        longest = min(longest, response.max_lag)
    lags = np.linspace(0.0, longest, response.lag_count)
    return lags, np.rint(lags / lr).astype(np.int64)


def fdt_arrays(two_time: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Delta C = C(t, t) - C(t, t_w) and chi, both (replica, t_w, lag)."""
    delta_c = (two_time["self_correlation"] - two_time["correlation"]).values
    return delta_c, two_time["chi"].values


def temperature_through_origin(delta_c: np.ndarray, chi: np.ndarray) -> float:
    """Slope T of Delta C = T chi through the origin, on curves averaged over all but lag."""
    mean_delta_c = np.nanmean(delta_c.reshape(-1, delta_c.shape[-1]), axis=0)
    mean_chi = np.nanmean(chi.reshape(-1, chi.shape[-1]), axis=0)
    denominator = float(np.nansum(mean_chi**2))
    return float(np.nansum(mean_delta_c * mean_chi)) / denominator if denominator > 0 else math.inf


def bootstrap_temperature(
    delta_c: np.ndarray,
    chi: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
    per_unit: int = 1,
) -> tuple[float, float, float]:
    """T_eff and its 95% percentile-bootstrap interval over replicas (axis 0), resampling
    whole units of ``per_unit`` replicas (2: same-init pairs)."""
    return percentile_bootstrap(
        lambda replicas: temperature_through_origin(delta_c[replicas], chi[replicas]),
        delta_c.shape[0],
        resamples,
        rng,
        per_unit,
    )


def stationarity_deviation(
    two_time: xr.Dataset,
    longest_lag: float,
    tolerance: float = DEFAULT_TOLERANCE,
    per_unit: int = 1,
) -> tuple[bool, float]:
    """Whether the point is stationary, and the largest deviation in units of the allowance.

    The deviation is max |X(s; t_w) - X(s; t_w,last)| / (tolerance x scale + 3 s.e.) over
    X in (Delta C, chi, loss) and lags s <= longest_lag; stationary iff it is <= 1. The
    means and standard errors are over units of ``per_unit`` replicas (analysis.statistics).
    """
    if two_time.sizes["t_w"] < 2:
        return False, math.inf
    window = two_time.sel(lag=two_time.lag <= longest_lag + 1e-12)
    delta_c, chi = fdt_arrays(window)
    loss = window["lag_train_loss"].values[:, :, :1]
    if not all(np.isfinite(values).any(axis=0).all() for values in (delta_c, chi, loss)):
        return False, math.inf  # a waiting time or lag without any finite value (diverged)
    worst = 0.0
    for values in (delta_c, chi, loss):
        mean = np.nanmean(unit_means(values, per_unit), axis=0)
        error = standard_error(values, per_unit)
        difference = np.abs(mean - mean[-1])
        allowance = tolerance * np.nanmax(np.abs(mean[-1])) + 3 * np.hypot(error, error[-1])
        ratio = np.where(allowance > 0, difference / np.maximum(allowance, 1e-300), 0.0)
        worst = max(worst, float(np.nanmax(ratio)))
    return worst <= 1.0, worst


def local_temperature(curve_delta_c: np.ndarray, curve_chi: np.ndarray) -> np.ndarray:
    """d Delta C / d chi along the curve (the inverse local slope), per lag."""
    return np.gradient(curve_delta_c) / np.gradient(curve_chi)


def fit_effective_temperature(
    two_time: xr.Dataset,
    optimizer: OptimizerConfig,
    tolerance: float = DEFAULT_TOLERANCE,
    resamples: int = 1000,
    seed: int = 0,
    per_unit: int = 1,
) -> xr.Dataset:
    """T_eff per window with 95% CI, the stationarity check, curve and local slopes;
    ``per_unit`` consecutive replicas are one independent unit (2: same-init pairs)."""
    rng = np.random.default_rng(seed)
    lengths = window_lengths(optimizer)
    lags = two_time["lag"].values
    available = [length for length in lengths.values() if np.isfinite(length)]
    stationary, deviation = stationarity_deviation(two_time, max(available), tolerance, per_unit)
    delta_c, chi = fdt_arrays(two_time)
    estimates = np.full((len(WINDOWS), 3), np.nan)
    for index, window in enumerate(WINDOWS):
        length = lengths[window]
        inside = lags <= length + 1e-12
        reached = np.isfinite(length) and lags[-1] >= length - 1e-9
        if not reached or inside.sum() < 2 or not stationary:
            continue
        estimates[index] = bootstrap_temperature(
            delta_c[..., inside], chi[..., inside], resamples, rng, per_unit
        )
    curve_delta_c = np.nanmean(delta_c, axis=(0, 1))
    curve_chi = np.nanmean(chi, axis=(0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        local = local_temperature(curve_delta_c, curve_chi)
    fits = xr.Dataset(
        {
            "T_eff": (("window",), estimates[:, 0]),
            "T_eff_low": (("window",), estimates[:, 1]),
            "T_eff_high": (("window",), estimates[:, 2]),
            "window_length": (("window",), [lengths[w] for w in WINDOWS]),
            "stationary": ((), np.int8(stationary)),
            "stationarity_deviation": ((), deviation),
            "fdt_delta_c": (("lag",), curve_delta_c),
            "fdt_chi": (("lag",), curve_chi),
            "local_temperature": (("lag",), local),
        },
        coords={"window": list(WINDOWS), "lag": lags},
    )
    fits.attrs.update(
        teff_method="least squares of <Delta C> = T <chi> through the origin, 95% percentile "
        f"bootstrap over replicas ({resamples} resamples)",
        stationarity_tolerance=tolerance,
    )
    return fits


def zero_step_fit(learning_rates: np.ndarray, temperatures: np.ndarray) -> tuple[float, float]:
    """T_eff extrapolated to lr -> 0, linearly in 1 / T_eff (least squares over the points),
    and the slope d(1 / T_eff) / d lr: T_eff(lr) = 1 / (1 / T_0 + slope lr).

    At finite lr a discrete Langevin dynamics violates the FDT by itself: one mode of
    curvature k, x' = (1 - lr k) x + sqrt(2 T lr) xi, has Delta C / chi = T / (1 - lr k / 2),
    so 1 / T_eff is linear in lr (exactly for one mode, to first order for many). NaNs
    with fewer than two finite points.
    """
    learning_rates = np.asarray(learning_rates, dtype=float)
    temperatures = np.asarray(temperatures, dtype=float)
    keep = np.isfinite(temperatures) & (temperatures > 0)
    if keep.sum() < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(learning_rates[keep], 1.0 / temperatures[keep], 1)
    return (1.0 / intercept if intercept > 0 else math.nan), float(slope)


def temperature_ratios(fits: xr.Dataset, optimizer: OptimizerConfig) -> xr.Dataset:
    """A point's T_eff in the units the figures compare, for every ``<prefix>T_eff`` of its
    fits (the simulation's, and the DMFT's with the prefix dmft_):

    - ``T_eff_per_drift`` = T_eff / b with the sum normalisation (optimizer.
      batch_normalization sum: the mean drift of SGD is b grad L, so the temperature per
      unit drift, comparable across b, is T_eff / b; docs/physics.md A7b);
    - ``T_eff_over_T`` (and _low, _high) = T_eff / T for an imposed temperature T
      (optimizer.temperature; 1 where the FDT holds).

    Without a T_eff, or where neither applies, an empty Dataset.
    """
    names = [name for name in fits.data_vars if str(name).endswith("T_eff")]
    ratios = xr.Dataset()
    for name in names:
        prefix = str(name)[: -len("T_eff")]
        if optimizer.batch_normalization == "sum":
            ratios[f"{prefix}T_eff_per_drift"] = fits[name] / optimizer.b
        if optimizer.temperature is not None:
            for suffix in ("", "_low", "_high"):
                ratio = fits[f"{name}{suffix}"] / optimizer.temperature
                ratios[f"{prefix}T_eff_over_T{suffix}"] = ratio
    return ratios


def zero_step_extrapolation(summary: xr.Dataset) -> xr.Dataset:
    """T_eff / T extrapolated to lr -> 0 along the grid axis ``lr`` (zero_step_fit), at
    every other grid coordinate and fit window: ``zero_step_T_eff_over_T`` and
    ``zero_step_slope`` = d(T / T_eff) / d lr, so that T_eff / T = 1 / (1 / limit +
    slope lr); the same with the prefix dmft_ where the summary has the DMFT's.

    ValueError without an lr axis or without T_eff_over_T (temperature_ratios, written
    by the fit stage for points with an imposed optimizer.temperature).
    """
    if "lr" not in summary.dims:
        raise ValueError(
            "the extrapolation to lr -> 0 needs optimizer.lr as a grid axis; the summary has "
            f"dims {sorted(map(str, summary.dims))}"
        )
    names = [name for name in summary.data_vars if str(name).endswith("T_eff_over_T")]
    if not names:
        raise ValueError(
            "the extrapolation to lr -> 0 needs T_eff_over_T in the summary (the fit stage "
            "writes it for points with a response measurement and an optimizer.temperature)"
        )
    result = xr.Dataset()
    for name in names:
        prefix = str(name)[: -len("T_eff_over_T")]
        limit, slope = xr.apply_ufunc(
            zero_step_fit,
            summary["lr"],
            summary[name],
            input_core_dims=[["lr"], ["lr"]],
            output_core_dims=[[], []],
            vectorize=True,
        )
        result[f"{prefix}zero_step_T_eff_over_T"] = limit
        result[f"{prefix}zero_step_slope"] = slope
    return result


UNITS = {
    "T_eff": ("1", "effective temperature: slope of C(t,t) - C(t,t_w) against chi in the window"),
    "T_eff_low": ("1", "lower end of the 95% bootstrap interval of T_eff"),
    "T_eff_high": ("1", "upper end of the 95% bootstrap interval of T_eff"),
    "window_length": ("lr x steps", "upper end s_max of the FDT fit window"),
    "stationary": ("1", "1 if the two-time functions do not depend on t_w (see attrs)"),
    "stationarity_deviation": ("1", "largest t_w dependence in units of its allowance (<= 1)"),
    "fdt_delta_c": ("1", "C(t, t) - C(t, t_w), mean over replicas and t_w"),
    "fdt_chi": ("1", "integrated response chi(t, t_w), mean over replicas and t_w"),
    "local_temperature": ("1", "inverse local slope d Delta C / d chi along the FDT curve"),
    "window": ("1", "FDT fit window, s = t - t_w"),
    "T_eff_per_drift": ("1", "T_eff / b: the effective temperature per unit mean drift b grad L"),
    "T_eff_over_T": ("1", "T_eff / T, T the imposed temperature (1 where the FDT holds)"),
    "T_eff_over_T_low": ("1", "lower end of the 95% bootstrap interval of T_eff / T"),
    "T_eff_over_T_high": ("1", "upper end of the 95% bootstrap interval of T_eff / T"),
}

ZERO_STEP_UNITS = {
    "window": UNITS["window"],
    "zero_step_T_eff_over_T": ("1", "T_eff / T extrapolated to lr -> 0, linearly in 1 / T_eff"),
    "zero_step_slope": ("1 / lr", "slope d(T / T_eff) / d lr of the extrapolation to lr -> 0"),
    "dmft_zero_step_T_eff_over_T": ("1", "DMFT: T_eff / T extrapolated to lr -> 0"),
    "dmft_zero_step_slope": ("1 / lr", "DMFT: slope d(T / T_eff) / d lr of the extrapolation"),
}
