"""The parameters of one DMFT solve, read from a resolved grid point.

The discrete-time DMFT (docs/physics.md A8) of the perceptron depends on the grid point only
through the numbers collected here. Conventions are the simulator's:

- steps k = 0..T with T = round(run.max_time / lr) (capped by run.max_steps); time t = lr k;
- the force of a sample is f = scale s v'(h), scale = 1 (batch_normalization: sum) or 1/b
  (mean), v'(h) = -(kappa - h) theta(kappa - h) the square-hinge derivative;
- random patterns: h = u - lr sum R f; Gaussian mixture of noise variance Delta:
  h = m + sqrt(Delta) u - lr Delta sum R f (m the magnetisation w . v / N); the kernels
  carry the factor Delta, the "coupling" Delta x scale;
- sphere (multiplier form, C[k, k] = 1) or ridge / none (c = 1 - lr lambda, w(0) ~ N(0, I));
- langevin: gd plus sqrt(2 T lr) xi per component and step, i.e. 2 T / lr added to the
  diagonal of M_C (the equations carry lr^2 M_C);
- run.init gd_minimum: the simulator's GD of round(gd_init_time / lr) steps (sum
  normalisation, same lr) precedes the run; the DMFT solves the GD prefix and the run as
  one trajectory (every sample selected in the prefix) and reports the run's steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from sgdnoise.config.point import PointConfig

SELECTION_KINDS = ("gd", "sgd", "persistent_sgd", "langevin")
FULL_BATCH_KINDS = ("gd", "langevin")


class UnsupportedPointError(ValueError):
    """A grid point outside what the DMFT solver covers; the message says what is allowed."""


@dataclass(frozen=True)
class DmftProblem:
    """Everything the discrete DMFT needs, in the simulator's units.

    lr: step eta (time per step); steps: T (the solve covers steps 0..T);
    sample_ratio: P/N; kappa: margin; selection: gd | sgd | persistent_sgd;
    batch_fraction: b; persistence: tau (time units; persistent_sgd only);
    force_scale: 1 (sum) or 1/b (mean); constraint: sphere | ridge (none = ridge 0);
    ridge: lambda (constraint ridge only, as the simulator); mixture: Gaussian mixture
    (True) or random patterns;
    noise_variance: Delta (1 for random patterns); waiting_steps: k_w = round(t_w / lr);
    waiting_times: the t_w of the point; error_tolerance: h < kappa - tolerance counts as
    violated (run.error_tolerance, as the simulator counts errors); temperature: T of
    langevin (0 otherwise); prefix_steps: K0 GD steps before the run (run.init
    gd_minimum, else 0). ``steps`` and ``waiting_steps`` count from the start of the
    prefix: the run's step k is the solve's K0 + k.
    """

    lr: float
    steps: int
    sample_ratio: float
    kappa: float
    selection: str
    batch_fraction: float
    persistence: float | None
    force_scale: float
    constraint: str
    ridge: float
    mixture: bool
    noise_variance: float
    waiting_times: tuple[float, ...]
    waiting_steps: tuple[int, ...]
    error_tolerance: float
    temperature: float = 0.0
    prefix_steps: int = 0

    @property
    def run_steps(self) -> int:
        """Steps of the run proper (after the gd_minimum prefix): the reported grid 0..T."""
        return self.steps - self.prefix_steps

    @property
    def coupling(self) -> float:
        """Delta x scale: the factor between lr R and the per-path response matrix."""
        return self.noise_variance * self.force_scale

    @property
    def contraction(self) -> float:
        """c = 1 - lr lambda of the ridge (and of constraint none, lambda = 0)."""
        return 1.0 - self.lr * self.ridge


def problem_from_point(point: PointConfig) -> DmftProblem:
    """Read a resolved grid point (sgdnoise.config.resolve_point) into a DmftProblem.

    Raises UnsupportedPointError for what the solver does not cover: other models,
    losses, data, optimizers, the sphere by projection, gd_minimum with langevin or the
    mean normalisation.
    """
    model, loss, data = point.model, point.loss, point.data
    optimizer, run = point.optimizer, point.run

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise UnsupportedPointError(f"DMFT solver: {message}")

    require(model.kind == "perceptron", f"model.kind {model.kind!r}; allowed: perceptron")
    require(model.alpha is None, "model.alpha must be null (the plain perceptron)")
    require(loss.kind == "square_hinge", f"loss.kind {loss.kind!r}; allowed: square_hinge")
    require(
        data.kind in ("random_patterns", "gaussian_mixture"),
        f"data.kind {data.kind!r}; allowed: random_patterns, gaussian_mixture",
    )
    require(
        optimizer.kind in SELECTION_KINDS,
        f"optimizer.kind {optimizer.kind!r}; allowed: {', '.join(SELECTION_KINDS)}",
    )
    gd_prefix = run.init == "gd_minimum"
    if gd_prefix:
        require(
            optimizer.kind != "langevin",
            "run.init gd_minimum with langevin (its noise would start mid-solve); "
            "allowed: gd, sgd, persistent_sgd",
        )
        require(
            optimizer.kind == "gd" or optimizer.batch_normalization == "sum",
            "run.init gd_minimum with optimizer.batch_normalization mean; allowed: sum",
        )
    if model.constraint == "sphere":
        require(
            model.sphere_update == "multiplier",
            "model.sphere_update projection has no exact discrete DMFT; allowed: multiplier",
        )
    lr = float(optimizer.lr)
    steps = run.step_budget(lr)
    require(steps >= 1, f"run.max_time / lr = {run.max_time / lr} gives no step")
    prefix = round(run.gd_init_time / lr) if gd_prefix else 0
    if data.P_over_N is not None:
        sample_ratio = float(data.P_over_N)
    else:
        sample_ratio = data.P / data.N
    kind = optimizer.kind
    b = 1.0 if kind in FULL_BATCH_KINDS else float(optimizer.b)
    scale = 1.0 / b if optimizer.batch_normalization == "mean" else 1.0
    mixture = data.kind == "gaussian_mixture"
    waiting_times = tuple(float(t) for t in run.response.waiting_times)
    waiting_steps = tuple(prefix + min(round(t / lr), steps) for t in waiting_times)
    return DmftProblem(
        lr=lr,
        steps=prefix + steps,
        sample_ratio=sample_ratio,
        kappa=float(loss.kappa),
        selection=kind,
        batch_fraction=b,
        persistence=None if kind != "persistent_sgd" else float(optimizer.tau),
        force_scale=scale,
        constraint="sphere" if model.constraint == "sphere" else "ridge",
        ridge=float(model.ridge) if model.constraint == "ridge" else 0.0,
        mixture=mixture,
        noise_variance=float(data.delta) if mixture else 1.0,
        waiting_times=waiting_times,
        waiting_steps=waiting_steps,
        error_tolerance=float(run.error_tolerance),
        temperature=float(optimizer.temperature) if kind == "langevin" else 0.0,
        prefix_steps=prefix,
    )
