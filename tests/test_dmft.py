"""The discrete-time DMFT of the perceptron (docs/physics.md A8) against exact references.

Exact references: closed-form Gaussian integrals at the first step (Gardner's integral,
Phi(kappa)), exact identities of the dynamics (causality, R[l+1, l] = 1, C[k, k] = 1 on
the sphere, v'^2 = 2 v of the square hinge, persistent SGD at tau = lr / b is SGD draw for
draw, the Markov statistics of the selection), a brute-force per-path inverse and finite
differences of an independent implementation of the effective sample, and the finite-N
simulator at the same parameters (sgdnoise.stages.train and the exact response of
sgdnoise.stages.correlation_response).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from sgdnoise.config import PointConfig, resolve_point
from sgdnoise.io.metadata import PER_TIME_UNITS, TIME_UNITS
from sgdnoise.stages.dmft import solve_dmft
from sgdnoise.theory import UnsupportedPointError, gardner_capacity
from sgdnoise.theory.fixed_point import solve_seed
from sgdnoise.theory.memory_kernel import memory_kernel
from sgdnoise.theory.problem import problem_from_point
from sgdnoise.theory.selection_paths import draw_selection_paths


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The solver on one core (the machine is shared); restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_point(
    kind: str = "sgd",
    constraint: str = "sphere",
    kappa: float = 0.0,
    max_time: float = 5.0,
    lr: float = 0.1,
    b: float = 0.3,
    tau: float | None = None,
    P_over_N: float = 3.0,
    N: int = 1000,
    ridge: float = 0.1,
    data: dict | None = None,
    run: dict | None = None,
    normalization: str = "sum",
) -> PointConfig:
    optimizer = {
        "kind": kind,
        "lr": lr,
        "b": 1.0 if kind == "gd" else b,
        "batch_normalization": normalization,
    }
    if tau is not None:
        optimizer["tau"] = tau
    raw = {
        "optimizer": optimizer,
        "model": {"constraint": constraint, "ridge": ridge},
        "loss": {"kappa": kappa},
        "data": {"P_over_N": P_over_N, "N": N, **(data or {})},
        "run": {"max_time": max_time, **(run or {})},
    }
    return resolve_point(raw)


def quiet_solve(point: dict, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a non-converged solve fails the test
        return solve_dmft(point, **kwargs)


# ----------------------------------------------------------------- exact structure


@pytest.mark.parametrize(
    "kind, constraint, kappa, tau",
    [
        ("sgd", "sphere", 0.0, None),
        ("gd", "ridge", 0.5, None),
        ("persistent_sgd", "sphere", 0.0, 1.0),
    ],
)
def test_response_is_causal_and_a_field_moves_w_by_lr_after_one_step(kind, constraint, kappa, tau):
    ds = quiet_solve(
        make_point(
            kind, constraint, kappa, tau=tau, run={"response": {"waiting_times": [1.0, 3.0]}}
        ),
        paths=1500,
    )
    R = ds.R.values
    steps = R.shape[0]
    assert np.all(R[np.triu_indices(steps)] == 0.0)  # R[k, l] = 0 for k <= l
    np.testing.assert_allclose(np.diag(R, -1), 1.0, rtol=0, atol=1e-12)  # R[l+1, l] = 1
    for t_w, k_w in zip(ds.t_w.values, ds.waiting_step.values, strict=True):
        chi = ds.chi.sel(t_w=t_w).values
        assert np.all(chi[: k_w + 1] == 0.0)  # no response before the field is on
        assert chi[k_w + 1] == pytest.approx(0.1, abs=1e-12)  # chi = lr R[k_w + 1, k_w] = lr


@pytest.mark.parametrize("constraint, kappa", [("sphere", 0.0), ("ridge", 0.5)])
def test_correlation_is_symmetric_positive_semidefinite_and_unit_on_the_sphere(constraint, kappa):
    ds = quiet_solve(make_point("sgd", constraint, kappa, max_time=8.0), paths=2000)
    C = ds.C.values
    np.testing.assert_array_equal(C, C.T)
    assert np.linalg.eigvalsh(C).min() > -1e-10 * np.abs(C).max()
    diagonal = np.diag(C)
    bound = np.sqrt(diagonal[:, None] * diagonal[None, :])
    assert np.all(np.abs(C) <= bound * (1 + 1e-9))  # Cauchy-Schwarz
    if constraint == "sphere":
        np.testing.assert_allclose(diagonal, 1.0, rtol=0, atol=1e-12)
        assert np.all(np.isfinite(ds.nu.values))
    else:
        assert "nu" not in ds
        assert diagonal[0] == 1.0 and not np.allclose(diagonal[1:], 1.0)


@pytest.mark.parametrize("constraint", ["sphere", "ridge"])
def test_dropping_the_equal_time_noise_term_breaks_positive_definiteness(constraint):
    problem = problem_from_point(
        make_point("sgd", constraint, 0.5 * (constraint == "ridge"), max_time=10.0)
    )
    seed = np.random.SeedSequence(7)
    right = solve_seed(problem, 2000, seed, 40, 1e-6)
    wrong = solve_seed(problem, 2000, seed, 40, 1e-6, include_equal_time_noise=False)
    assert right.status == "converged"
    assert np.linalg.eigvalsh(right.trajectory.correlation).min() > -1e-10
    assert (
        wrong.status == "diverged" or np.linalg.eigvalsh(wrong.trajectory.correlation).min() < -1e-3
    )


# ----------------------------------------------------------------- exact first step


@pytest.mark.parametrize("constraint, kappa", [("ridge", 0.5), ("sphere", 0.0), ("sphere", 1.0)])
def test_first_step_matches_gaussian_integrals(constraint, kappa):
    """At k = 0, h = u ~ N(0, 1): every kernel entry is a closed-form Gaussian integral."""
    lr, ratio, ridge = 0.1, 3.0, 0.1
    ds = quiet_solve(
        make_point("gd", constraint, kappa, max_time=2 * lr, ridge=ridge), paths=200_000
    )
    second_moment = 1.0 / gardner_capacity(kappa)  # E[(kappa - u)^2 theta(kappa - u)]
    violated = stats.norm.cdf(kappa)
    assert ds.loss.values[0] == pytest.approx(0.5 * second_moment, rel=0.01)
    assert ds.violated_fraction.values[0] == pytest.approx(violated, rel=0.01)
    noise, memory = ratio * second_moment, ratio * violated
    assert ds.M_C.values[0, 0] == pytest.approx(noise, rel=0.01)
    assert ds.M_R.values[0, 0] == pytest.approx(memory, rel=0.01)
    if constraint == "sphere":
        # |w^1|^2 / N = (c - lr M_R)^2 + lr^2 M_C = 1, the root near 1
        c = lr * memory + math.sqrt(1 - lr * lr * noise)
        assert ds.nu.values[0] == pytest.approx((1 - c) / lr, rel=0.01)
        assert ds.C.values[1, 1] == pytest.approx(1.0, abs=1e-12)
    else:
        c = 1 - lr * ridge
        assert ds.C.values[1, 1] == pytest.approx(
            (c - lr * memory) ** 2 + lr * lr * noise, rel=1e-3
        )
    assert ds.C.values[1, 0] == pytest.approx(c - lr * memory, rel=2e-3)


def test_first_step_of_the_mixture_magnetisation_is_the_mean_force():
    """m(lr) = lr (P/N) E[(kappa - h)_+], h = sqrt(Delta) u at the random start (m(0) = 0)."""
    lr, ratio, kappa, delta = 0.1, 2.0, 0.5, 0.5
    point = make_point(
        "gd",
        "sphere",
        kappa,
        max_time=2 * lr,
        P_over_N=ratio,
        data={"kind": "gaussian_mixture", "delta": delta},
    )
    ds = quiet_solve(point, paths=200_000)
    scale = math.sqrt(delta)
    mean_gap = kappa * stats.norm.cdf(kappa / scale) + scale * stats.norm.pdf(kappa / scale)
    assert ds.m.values[0] == 0.0
    assert ds.m.values[1] == pytest.approx(lr * ratio * mean_gap, rel=0.01)


# ----------------------------------------------------------------- selection noise


def test_gd_noise_kernel_has_no_selection_noise():
    """GD: M_C[k, k] = (P/N) E[v'^2] = 2 (P/N) E[v] exactly, path by path (v'^2 = 2 v)."""
    ds = quiet_solve(make_point("gd", "sphere", 0.0, max_time=5.0), paths=3000)
    np.testing.assert_allclose(np.diag(ds.M_C.values), 2 * 3.0 * ds.loss.values, rtol=1e-4)


@pytest.mark.parametrize("normalization, factor", [("sum", 0.3), ("mean", 1 / 0.3)])
def test_sgd_noise_kernel_diagonal_carries_the_batch_fraction(normalization, factor):
    """SGD: s^k is independent of h^k, so M_C[k, k] = (P/N) scale^2 b E[v'^2].

    With v'^2 = 2 v that is 2 (P/N) b scale^2 E[v]: factor b (sum) or 1/b (mean)."""
    paths = 20_000
    ds = quiet_solve(
        make_point("sgd", "sphere", 0.0, max_time=3.0, normalization=normalization), paths=paths
    )
    predicted = 2 * 3.0 * factor * ds.loss.values
    measured = np.diag(ds.M_C.values)
    # relative Monte Carlo error of the selection average: sqrt((1 - b) / (b paths)) per step
    assert np.abs(measured / predicted - 1).max() < 5 * math.sqrt(0.7 / (0.3 * paths)) * 2


def test_persistent_sgd_at_tau_lr_over_b_is_sgd():
    lr, b = 0.1, 0.3
    sgd = quiet_solve(make_point("sgd", b=b, lr=lr), paths=2000, seed=3)
    persistent = quiet_solve(
        make_point("persistent_sgd", b=b, lr=lr, tau=lr / b), paths=2000, seed=3
    )
    for name in ["loss", "violated_fraction", "C", "R", "M_C", "M_R"]:
        np.testing.assert_allclose(
            persistent[name].values, sgd[name].values, rtol=1e-12, atol=1e-14
        )


def test_persistent_selection_is_the_stationary_markov_chain():
    lr, b, tau, paths = 0.1, 0.3, 1.0, 200_000
    problem = problem_from_point(make_point("persistent_sgd", b=b, lr=lr, tau=tau, max_time=1.0))
    s = draw_selection_paths(problem, paths, np.random.default_rng(0))
    tolerance = 5 / math.sqrt(paths)
    assert np.abs(s.mean(axis=1) - b).max() < tolerance  # stationary at every step
    on_to_off = (s[:-1] & ~s[1:]).sum() / s[:-1].sum()
    off_to_on = (~s[:-1] & s[1:]).sum() / (~s[:-1]).sum()
    assert on_to_off == pytest.approx((1 - b) * lr / (b * tau), abs=tolerance)
    assert off_to_on == pytest.approx(lr / tau, abs=tolerance)


# ----------------------------------------------------------------- exact memory kernel


def brute_force_memory_kernel(R, active, lr, coupling, ratio):
    total = np.zeros_like(R)
    for p in range(active.shape[1]):
        steps = np.flatnonzero(active[:, p])
        if steps.size:
            block = np.eye(steps.size) + lr * coupling * np.tril(R, -1)[np.ix_(steps, steps)]
            total[np.ix_(steps, steps)] += np.linalg.inv(block)
    return total * ratio * coupling / active.shape[1]


@pytest.mark.parametrize("steps", [30, 230])  # 230: the blocked recursion (widths > 96)
def test_memory_kernel_equals_per_path_inverses_with_shared_and_prefix_sets(steps):
    rng = np.random.default_rng(2)
    paths = 400
    R = np.tril(rng.uniform(0, 1, (steps, steps)), -1)
    active = rng.random((steps, paths)) < 0.3
    for p in range(150):  # GD-like: intervals, many of them prefixes of one another
        first = rng.integers(0, steps)
        active[:, p] = False
        active[first : rng.integers(first, steps + 1), p] = True
    active[:, 150:200] = active[:, :50]  # duplicated sets
    active[:, 200:210] = False  # never active
    expected = brute_force_memory_kernel(R, active, 0.1, 1.7, 3.0)
    for precision, tolerance in [(torch.float64, 1e-13), (torch.float32, 1e-6)]:
        got = memory_kernel(R, active, 0.1, 1.7, 3.0, precision=precision)
        np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)


def reference_forces(R, normals_u, selection, probe, lr, kappa, ratio):
    """(P/N) f^k on every path of a plain loop over steps: h^k = u^k + P^k - lr sum R f."""
    steps, paths = normals_u.shape
    force = np.zeros((steps, paths))
    for k in range(steps):
        h = normals_u[k] + probe[k] - lr * (R[k, :k] @ force[:k])
        force[k] = selection[k] * np.minimum(h - kappa, 0.0)
    return ratio * force


def test_memory_kernel_is_the_derivative_of_the_mean_force():
    """M_R[k, l] = (P/N) d E[f^k] / dP^l: central finite differences of a plain implementation."""
    lr, kappa, ratio = 0.1, 0.3, 2.0
    problem = problem_from_point(make_point("sgd", "sphere", kappa, max_time=1.5, P_over_N=ratio))
    solution = solve_seed(problem, 2000, np.random.SeedSequence(5), 30, 1e-8)
    R, C = solution.trajectory.response, solution.trajectory.correlation
    steps, paths = R.shape[0], 3000
    rng = np.random.default_rng(11)
    u = np.linalg.cholesky(C) @ rng.standard_normal((steps, paths))
    selection = rng.random((steps, paths)) < 0.3
    force = reference_forces(R, u, selection, np.zeros(steps), lr, kappa, ratio)
    h = np.array([u[k] - lr * (R[k, :k] @ (force[:k] / ratio)) for k in range(steps)])
    active = selection & (h < kappa)
    kernel = memory_kernel(R, active, lr, 1.0, ratio)
    epsilon = 1e-6
    for l in range(steps):
        probe = np.zeros(steps)
        probe[l] = epsilon
        plus = reference_forces(R, u, selection, probe, lr, kappa, ratio).mean(axis=1)
        minus = reference_forces(R, u, selection, -probe, lr, kappa, ratio).mean(axis=1)
        np.testing.assert_allclose(kernel[:, l], (plus - minus) / (2 * epsilon), rtol=0, atol=1e-6)


# ----------------------------------------------------------------- solver contract


def test_dataset_vocabulary_units_and_seed_errors():
    point = make_point("sgd", run={"response": {"waiting_times": [1.0]}})
    ds = quiet_solve(point, paths=1000, solver_seeds=3)
    steps = round(5.0 / 0.1) + 1
    assert ds.sizes["record"] == steps and ds.sizes["record2"] == steps and ds.sizes["t_w"] == 1
    np.testing.assert_allclose(ds.time.values, 0.1 * np.arange(steps))
    assert ds.C.dims == ("record", "record2") and ds.chi.dims == ("record", "t_w")
    np.testing.assert_array_equal(ds.step.values, ds.record.values)  # every step a record
    for name, variable in ds.variables.items():
        assert variable.attrs.get("units") and variable.attrs.get("long_name"), name
    assert ds.time.attrs["units"] == ds.t_w.attrs["units"] == TIME_UNITS  # the simulator's
    for name in ("R", "nu", "M_C", "M_R_stderr"):
        assert ds[name].attrs["units"] == PER_TIME_UNITS, name
    assert ds.attrs["status"] == "converged" and ds.attrs["seeds"] == 3
    assert ds.attrs["paths"] == 1000 and ds.attrs["final_change"] < ds.attrs["tolerance"]
    # the standard error is the scatter of independent seeds: a loss at t = 5 from
    # 1000 paths has a relative error of a few percent
    relative = ds.loss_stderr.values[-1] / ds.loss.values[-1]
    assert 1e-3 < relative < 0.1
    assert ds.C_stderr.values[0, 0] == 0.0 and ds.chi_stderr.values[-1, 0] > 0
    # the per-seed copies the FDT fit resamples average to the means
    np.testing.assert_allclose(ds.seed_chi.mean("solver_seed"), ds.chi, rtol=1e-12)
    np.testing.assert_allclose(ds.seed_C_waiting[:, :, 0].mean("solver_seed"), ds.C[:, 10])
    # `sgdnoise show` reads the last step of a solve
    from sgdnoise.cli import summarize

    shown = summarize(ds)
    assert shown["loss"] == pytest.approx(float(ds.loss[-1]))
    assert shown["replica_distance"] == pytest.approx(float(ds.replica_distance[-1]))
    assert shown["status"] == "converged"


def test_gd_solve_converges_to_the_stated_tolerance():
    ds = quiet_solve(make_point("gd", max_time=10.0), paths=2000, tolerance=1e-6)
    changes = ds.change.values[0]
    assert ds.attrs["status"] == "converged" and changes[np.isfinite(changes)][-1] < 1e-6


def test_a_run_that_does_not_converge_says_so():
    from sgdnoise.analysis.dmft_fits import dmft_end_of_training

    with pytest.warns(RuntimeWarning, match="not_converged") as caught:
        ds = solve_dmft(make_point("sgd"), paths=500, max_iterations=2)
    assert ds.attrs["status"] == "not_converged" and ds.attrs["iterations"] == 2
    assert ds.attrs["final_change"] > ds.attrs["tolerance"]
    # the replica pair too: said, and its distance is not reported as a number
    assert any("replica pair not_converged" in str(w.message) for w in caught)
    assert ds.attrs["replica_pair_status"] == "not_converged"
    assert np.isnan(float(dmft_end_of_training(ds, 0.0)["replica_distance"]))


def test_a_step_too_large_for_the_sphere_is_a_divergence():
    with pytest.warns(RuntimeWarning, match="diverged"):
        ds = solve_dmft(make_point("gd", lr=2.0, max_time=20.0), paths=500)
    assert ds.attrs["status"] == "diverged"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"optimizer": {"kind": "minibatch_sgd", "batch_size": 4, "lr": 0.1}}, "optimizer.kind"),
        ({"loss": {"kind": "hinge"}}, "loss.kind"),
        (
            {"run": {"init": "gd_minimum"}, "optimizer": {"kind": "langevin", "temperature": 0.1}},
            "gd_minimum",
        ),
        ({"model": {"sphere_update": "projection"}}, "projection"),
    ],
)
def test_points_outside_the_theory_are_refused(override, message):
    raw = {"data": {"P_over_N": 3.0}, **override}
    with pytest.raises(UnsupportedPointError, match=message):
        solve_dmft(resolve_point(raw), paths=100)


# ----------------------------------------------------------------- DMFT vs simulation
#
# The simulator (sgdnoise.stages.train.train_point, then the exact response of the stage
# correlation_response, which replays the runs with forward tangents) at N = 500, with
# replicas on their own data draw (data.per_replica), against the DMFT with independent
# solver seeds. Every compared value must agree within Z_MAX combined standard errors
# (simulation: scatter of replicas; DMFT: scatter of solver seeds).

Z_MAX = 4.5  # seeds are fixed, so the test is deterministic; a wrong term gives z of 10-100
SIMULATION_N = 500
REPLICAS = 8
WAITING_TIME = 3.0


def assert_agree(name, simulated, theory, theory_stderr):
    mean = simulated.mean(axis=0)
    stderr = simulated.std(axis=0, ddof=1) / math.sqrt(simulated.shape[0])
    z = np.abs(mean - theory) / np.sqrt(stderr**2 + theory_stderr**2)
    assert np.all(z < Z_MAX), f"{name}: simulation {mean}, DMFT {theory}, z {z.round(1)}"


def assert_one_time_observables_agree(simulation, at) -> None:
    """Loss, violated fraction and C(t, 0) for t > 0 of the simulation against the DMFT
    read at the simulation's recorded steps (``at``)."""
    assert_agree("loss", simulation.train_loss.values, at.loss.values, at.loss_stderr.values)
    assert_agree(
        "violated fraction",
        simulation.violated_fraction.values,
        at.violated_fraction.values,
        at.violated_fraction_stderr.values,
    )
    weights = simulation.weights.values
    overlap = np.einsum("rtf,rf->rt", weights, weights[:, 0])[:, 1:] / SIMULATION_N
    assert_agree("C(t, 0)", overlap, at.C.values[1:, 0], at.C_stderr.values[1:, 0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, constraint, kappa, tau",
    [
        ("gd", "sphere", 0.0, None),
        ("sgd", "sphere", 0.0, None),
        ("persistent_sgd", "sphere", 0.0, 1.0),
        ("sgd", "ridge", 0.5, None),
    ],
)
def test_dmft_agrees_with_the_finite_n_simulation(kind, constraint, kappa, tau):
    from sgdnoise.data import make_dataset
    from sgdnoise.stages.correlation_response import measure_two_time
    from sgdnoise.stages.train import train_point

    max_time, lr = 10.0, 0.1
    point = make_point(
        kind,
        constraint,
        kappa,
        max_time=max_time,
        lr=lr,
        tau=tau,
        N=SIMULATION_N,
        data={"per_replica": True},
        run={
            "replicas": REPLICAS,
            "record": {"times": "linear", "count": 6},
            "response": {"waiting_times": [WAITING_TIME], "lag_count": 8},
        },
    )
    theory = quiet_solve(point, paths=4000, solver_seeds=3, seed=1)
    simulation = train_point(point)
    steps = simulation.step.values
    at = theory.isel(record=steps)

    assert_one_time_observables_agree(simulation, at)
    weights = simulation.weights.values
    norm = np.einsum("rtf,rtf->rt", weights, weights) / SIMULATION_N
    if constraint == "sphere":
        np.testing.assert_allclose(norm, 1.0, atol=1e-10)
        np.testing.assert_allclose(np.diag(theory.C.values), 1.0, atol=1e-12)
    else:
        diagonal = np.diag(theory.C.values)[steps][1:]
        diagonal_stderr = np.diag(theory.C_stderr.values)[steps][1:]
        assert_agree("C(t, t)", norm[:, 1:], diagonal, diagonal_stderr)

    datasets = [make_dataset(point.data, r) for r in range(REPLICAS)]
    two_time = measure_two_time(simulation, datasets).sel(t_w=WAITING_TIME)
    k_w = round(WAITING_TIME / lr)
    later = k_w + np.rint(two_time.lag.values / lr).astype(int)
    later, lag_index = later[1:], np.arange(1, later.size)  # chi = 0 at s = 0 on both sides
    chi_theory = theory.chi.sel(t_w=WAITING_TIME)
    chi_stderr = theory.chi_stderr.sel(t_w=WAITING_TIME)
    assert_agree(
        "chi", two_time.chi.values[:, lag_index], chi_theory.values[later], chi_stderr.values[later]
    )
    assert_agree(
        "C(t, t_w)",
        two_time.correlation.values[:, lag_index],
        theory.C.values[later, k_w],
        theory.C_stderr.values[later, k_w],
    )


@pytest.mark.slow
def test_dmft_agrees_with_the_simulation_on_the_gaussian_mixture():
    """Magnetisation m(t) = w . v / N, loss, violated fraction and C(t, 0) of the mixture."""
    from sgdnoise.data import make_dataset
    from sgdnoise.stages.train import train_point

    point = make_point(
        "sgd",
        "sphere",
        0.5,
        max_time=10.0,
        P_over_N=2.0,
        N=SIMULATION_N,
        data={"per_replica": True, "kind": "gaussian_mixture", "delta": 0.5},
        run={"replicas": REPLICAS, "record": {"times": "linear", "count": 6}},
    )
    theory = quiet_solve(point, paths=4000, solver_seeds=3, seed=1)
    simulation = train_point(point)
    at = theory.isel(record=simulation.step.values)
    centres = np.stack([make_dataset(point.data, r).teacher for r in range(REPLICAS)])
    weights = simulation.weights.values
    magnetisation = np.einsum("rtf,rf->rt", weights, centres)[:, 1:] / SIMULATION_N
    assert np.all(magnetisation.mean(axis=0) > 0.3)  # the centre is learnt
    assert_agree("m", magnetisation, at.m.values[1:], at.m_stderr.values[1:])
    assert_one_time_observables_agree(simulation, at)


@pytest.mark.slow
@pytest.mark.parametrize("kind, tau", [("sgd", None), ("persistent_sgd", 1.0)])
def test_dmft_effective_temperature_by_the_simulation_fit_agrees_with_the_simulation(kind, tau):
    """The theory's T_eff, fitted by the simulation's own FDT code with solver seeds in the
    place of replicas (analysis.dmft_fits), is the simulation's within their combined 95%
    intervals; both are stationary (ridge, kappa = 1 relaxes in a few time units), the
    FDT curves agree lag by lag, and a DMFT solved for another config is refused."""
    from sgdnoise.data import make_dataset
    from sgdnoise.io.artifact import ArtifactError
    from sgdnoise.stages.correlation_response import measure_two_time
    from sgdnoise.stages.fit import fit_point
    from sgdnoise.stages.train import train_point

    point = make_point(
        kind,
        "ridge",
        1.0,
        max_time=7.0,
        b=0.5,
        tau=tau,
        ridge=1.0,
        N=SIMULATION_N,
        data={"per_replica": True},
        run={
            "replicas": REPLICAS,
            "dtype": "float64",
            "record": {"times": "linear", "count": 8},
            "response": {"waiting_times": [3.0, 4.0, 5.0], "max_lag": 2.0, "lag_count": 11},
        },
    )
    theory = quiet_solve(point, paths=2000, solver_seeds=4, seed=2)
    simulation = train_point(point)
    datasets = [make_dataset(point.data, r) for r in range(REPLICAS)]
    two_time = measure_two_time(simulation, datasets)
    fits = fit_point(simulation, two_time, theory).sel(window="s<=1")

    assert int(fits.stationary) == 1 and int(fits.dmft_stationary) == 1
    simulated, theoretical = float(fits.T_eff), float(fits.dmft_T_eff)
    assert theoretical > 0.01  # a real temperature, not the trivial 0 of GD
    half_widths = [
        (float(fits[f"{p}T_eff_high"]) - float(fits[f"{p}T_eff_low"])) / 2 for p in ("", "dmft_")
    ]
    assert abs(simulated - theoretical) < math.hypot(*half_widths), (simulated, theoretical)

    later = two_time.isel(lag=slice(1, None))  # both vanish at s = 0
    for name, values, theory_name in (
        ("chi", later.chi.values, "dmft_fdt_chi"),
        ("Delta C", (later.self_correlation - later.correlation).values, "dmft_fdt_delta_c"),
    ):
        per_replica = values.mean(axis=1)  # mean over t_w: (replica, lag)
        curve = fits[theory_name].isel(lag=slice(1, None)).values
        stderr = fits[f"{theory_name}_stderr"].isel(lag=slice(1, None)).values
        assert_agree(name, per_replica, curve, stderr)

    theory.attrs["config"] = theory.attrs["config"].replace('"lr":0.1', '"lr":0.2')
    with pytest.raises(ArtifactError, match="another config"):
        fit_point(simulation, two_time, theory)


@pytest.mark.slow
def test_langevin_dmft_extrapolates_to_the_imposed_temperature_and_matches_the_simulation():
    """Exact reference: Langevin at temperature T obeys the FDT with T_eff = T as lr -> 0.

    At finite lr the discrete dynamics does not: for one mode of curvature k,
    x' = (1 - lr k) x + sqrt(2 T lr) xi gives Delta C / chi = T / (1 - lr k / 2), so
    1 / T_eff is linear in lr to first order. The DMFT (2 T / lr on the diagonal of M_C)
    at lr and lr / 2, extrapolated linearly in 1 / T_eff, must give T; at lr the
    simulation must agree with the theory (the bias is the dynamics', not the method's).
    """
    from sgdnoise.analysis.dmft_fits import dmft_two_time
    from sgdnoise.analysis.fdt import fit_effective_temperature
    from sgdnoise.data import make_dataset
    from sgdnoise.stages.correlation_response import measure_two_time
    from sgdnoise.stages.train import train_point

    temperature, window = 0.2, "s<=1"

    def langevin_point(lr: float) -> dict:
        return resolve_point(
            {
                "model": {"constraint": "ridge", "ridge": 1.0},
                "loss": {"kappa": 1.0},
                "data": {"P_over_N": 3.0, "N": SIMULATION_N, "per_replica": True},
                "optimizer": {"kind": "langevin", "temperature": temperature, "lr": lr},
                "run": {
                    "replicas": REPLICAS,
                    "max_time": 8.0,
                    "dtype": "float64",
                    "record": {"times": "linear", "count": 5},
                    "response": {"waiting_times": [4.0, 5.0, 6.0], "max_lag": 2.0},
                },
            }
        )

    fits = {}
    for lr in (0.1, 0.05):
        point = langevin_point(lr)
        theory = quiet_solve(point, paths=2000, solver_seeds=4, seed=3)
        fits[lr] = fit_effective_temperature(dmft_two_time(theory, point), point.optimizer)
        assert int(fits[lr].stationary) == 1
    ratio = {lr: float(fit.T_eff.sel(window=window)) / temperature for lr, fit in fits.items()}
    assert ratio[0.1] > 1.1 and ratio[0.05] > 1.05  # the finite-lr bias is real and large here
    extrapolated = 1.0 / (2.0 / ratio[0.05] - 1.0 / ratio[0.1])
    assert extrapolated == pytest.approx(1.0, abs=0.02), ratio

    point = langevin_point(0.1)
    simulation = train_point(point)
    datasets = [make_dataset(point.data, r) for r in range(REPLICAS)]
    measured = fit_effective_temperature(measure_two_time(simulation, datasets), point.optimizer)
    low, high = (float(measured[name].sel(window=window)) for name in ("T_eff_low", "T_eff_high"))
    theory_low, theory_high = (
        float(fits[0.1][name].sel(window=window)) for name in ("T_eff_low", "T_eff_high")
    )
    assert low < theory_high and theory_low < high  # the two 95% intervals overlap


def ridge_minimum(kappa: float, ridge: float, sample_ratio: float) -> tuple[float, float]:
    """Exact loss per sample and q = |w|^2 / N at the minimum of the ridge square hinge.

    Strongly convex, so the replica-symmetric (cavity) answer is exact: with u ~ N(0, q),
    h = prox(u) = u for u >= kappa, (u + chi kappa) / (1 + chi) below, and
    chi = 1 / (ridge + alpha P(u < kappa) / (1 + chi)),
    q = chi^2 alpha E[(kappa - u)^2 theta(kappa - u)] / (1 + chi)^2,
    loss = E[(kappa - u)^2 theta(kappa - u)] / (2 (1 + chi)^2).
    """
    from scipy import optimize

    def second_moment(q: float) -> tuple[float, float]:
        scale = math.sqrt(q)
        below = stats.norm.cdf(kappa / scale)
        moment = (kappa**2 + q) * below + kappa * scale * stats.norm.pdf(kappa / scale)
        return below, moment

    def residual(x):
        q, chi = x
        below, moment = second_moment(q)
        return [
            q - chi**2 * sample_ratio * moment / (1 + chi) ** 2,
            chi - 1 / (ridge + sample_ratio * below / (1 + chi)),
        ]

    q, chi = optimize.fsolve(residual, [0.2, 0.5], xtol=1e-13)
    return 0.5 * second_moment(q)[1] / (1 + chi) ** 2, q


@pytest.mark.slow
def test_gd_dmft_reaches_the_exact_static_minimum_of_the_ridge():
    """Exact reference: GD's fixed point is the minimum, lr-independent, and for the
    strongly convex ridge square hinge its loss and norm are the replica-symmetric ones."""
    point = make_point("gd", "ridge", 1.0, max_time=10.0, ridge=1.0)
    theory = quiet_solve(point, paths=10000, solver_seeds=4, seed=7)
    loss, q = ridge_minimum(kappa=1.0, ridge=1.0, sample_ratio=3.0)
    last = theory.sizes["record"] - 1
    assert abs(theory.loss.values[last] - loss) < 3 * theory.loss_stderr.values[last] + 1e-4
    assert abs(theory.C.values[last, last] - q) < 3 * theory.C_stderr.values[last, last] + 1e-4
    assert abs(theory.C.values[last, 0]) < 0.01  # the memory of w(0) is gone: converged


# ----------------------------------------------------------------- sampling through the response


@pytest.mark.parametrize(
    "kind, constraint, kappa, data",
    [
        ("gd", "sphere", 0.0, None),
        ("sgd", "sphere", 0.0, None),
        ("gd", "ridge", 0.5, None),
        ("sgd", "ridge", 0.5, None),
        ("sgd", "ridge", 0.5, {"kind": "gaussian_mixture", "delta": 0.5}),
    ],
)
def test_correlation_is_the_response_image_of_the_initial_weight_and_the_noise(
    kind, constraint, kappa, data
):
    """Exact identity of the discrete equations (the weight is linear in w^0 and zeta):
    C = C00 Phi Phi^T + lr^2 R M_C R^T + m m^T, Phi = C[:, 0] / C00 (c_k in Phi and R alike);
    the response sampling of the field relies on it."""
    problem = problem_from_point(make_point(kind, constraint, kappa, max_time=6.0, data=data))
    solution = solve_seed(problem, 1000, np.random.SeedSequence(3), 60, 1e-8)
    assert solution.status == "converged"
    C, R = solution.trajectory.correlation, solution.trajectory.response
    m = solution.trajectory.magnetisation
    phi = C[:, 0] / C[0, 0]
    image = C[0, 0] * np.outer(phi, phi) + problem.lr**2 * R @ solution.noise @ R.T + np.outer(m, m)
    np.testing.assert_allclose(image, C, rtol=0, atol=1e-12)


def test_response_field_has_covariance_c_and_is_causal():
    from sgdnoise.theory.gaussian_sampling import draw_field_normals, response_field

    problem = problem_from_point(make_point("gd", "sphere", 0.0, max_time=3.0))
    solution = solve_seed(problem, 1000, np.random.SeedSequence(4), 60, 1e-8)
    assert solution.status == "converged"
    C, R = solution.trajectory.correlation, solution.trajectory.response
    force = solution.paths.force
    ratio = problem.sample_ratio
    paths = 40000
    normals = draw_field_normals(np.random.default_rng(0), problem.steps, paths, 1000, False)
    u = response_field(C, R, problem.lr, ratio, force, normals, paths)
    # standard error of a sample covariance entry: sqrt((C_kk C_ll + C_kl^2) / paths) <~ 0.01
    np.testing.assert_allclose(u @ u.T / paths, C, rtol=0, atol=0.035)
    # causal: changing the forces of steps >= k or R's rows > k leaves u up to step k alone
    k = problem.steps // 2
    force2, R2 = force.copy(), R.copy()
    force2[k:] += 1.0
    R2[k + 1 :] += 1.0
    u2 = response_field(C, R2, problem.lr, ratio, force2, normals, paths)
    np.testing.assert_array_equal(u2[: k + 1], u[: k + 1])


def test_causal_cholesky_of_singular_and_indefinite_covariances():
    """A singular covariance (a random walk observed twice per step) is factored exactly;
    an indefinite one (a Monte Carlo C - D / 4 whose D is too large at one step) gives
    every u^k its variance C[k, k], never more, and rows stay causal."""
    from sgdnoise.theory.gaussian_sampling import causal_cholesky

    rng = np.random.default_rng(0)
    walk = np.tril(np.ones((20, 20)))[np.repeat(np.arange(20), 2)]  # rank 20 of 40
    singular = walk @ walk.T
    factor = causal_cholesky(singular)
    np.testing.assert_allclose(factor @ factor.T, singular, atol=1e-9)
    indefinite = walk[:20:2] @ walk[:20:2].T
    indefinite[5:, 5:] -= 1.5  # C - D / 4 with D / 4 above the innovation variance 1 at step 5
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(indefinite)
    factor = causal_cholesky(indefinite)
    np.testing.assert_allclose(np.sum(factor**2, axis=1), np.diag(indefinite), rtol=1e-12)
    later = indefinite.copy()
    later[7:, :] = later[:, 7:] = rng.standard_normal()  # rows > 6 only
    np.testing.assert_array_equal(causal_cholesky(later)[:7], factor[:7])


def test_gd_converges_tightly_where_the_cholesky_sampling_stalls():
    """GD's C is numerically singular: u = chol(C) z is then hypersensitive to rounding of
    C and the iteration stalls above 1e-8 (it did here: ~1e-7 after 60 iterations), while
    the field sampled through the response is a smooth function of the iterate."""
    problem = problem_from_point(make_point("gd", "ridge", 0.5, max_time=10.0))
    solution = solve_seed(problem, 2000, np.random.SeedSequence(1), 60, 1e-8)
    assert solution.status == "converged" and solution.changes[-1] < 1e-8


@pytest.mark.slow
def test_dmft_from_the_gd_minimum_agrees_with_the_simulation():
    """run.init gd_minimum: the DMFT solves the simulator's GD prefix and the SGD run as one
    trajectory and reports the run's steps; loss, C(t, 0) (0 = the GD minimum), C(t, t)
    and chi agree with the simulation started from its own GD minimum."""
    from sgdnoise.data import make_dataset
    from sgdnoise.stages.correlation_response import measure_two_time
    from sgdnoise.stages.train import train_point

    lr = 0.1
    point = make_point(
        "sgd",
        "ridge",
        1.0,
        max_time=6.0,
        b=0.5,
        ridge=1.0,
        N=SIMULATION_N,
        data={"per_replica": True},
        run={
            "init": "gd_minimum",
            "gd_init_time": 3.0,
            "replicas": REPLICAS,
            "dtype": "float64",
            "record": {"times": "linear", "count": 7},
            "response": {"waiting_times": [2.0], "lag_count": 9},
        },
    )
    theory = quiet_solve(point, paths=3000, solver_seeds=3, seed=1)
    assert theory.sizes["record"] == 61 and theory.attrs["gd_prefix_steps"] == 30
    simulation = train_point(point)
    at = theory.isel(record=simulation.step.values)
    assert_agree("loss", simulation.train_loss.values, at.loss.values, at.loss_stderr.values)
    weights = simulation.weights.values
    overlap = np.einsum("rtf,rf->rt", weights, weights[:, 0]) / SIMULATION_N
    assert_agree("C(t, 0)", overlap, at.C.values[:, 0], at.C_stderr.values[:, 0])
    norm = np.einsum("rtf,rtf->rt", weights, weights) / SIMULATION_N
    steps = simulation.step.values
    diagonal, diagonal_stderr = np.diag(theory.C.values)[steps], np.diag(theory.C_stderr.values)
    assert_agree("C(t, t)", norm, diagonal, diagonal_stderr[steps])

    datasets = [make_dataset(point.data, r) for r in range(REPLICAS)]
    two_time = measure_two_time(simulation, datasets).sel(t_w=2.0)
    later = round(2.0 / lr) + np.rint(two_time.lag.values / lr).astype(int)
    assert_agree(
        "chi",
        two_time.chi.values[:, 1:],
        theory.chi.sel(t_w=2.0).values[later[1:]],
        theory.chi_stderr.sel(t_w=2.0).values[later[1:]],
    )


# ----------------------------------------------------------------- same-init replica pairs


@pytest.mark.parametrize("constraint, kappa", [("sphere", 0.0), ("ridge", 1.0)])
def test_gd_replicas_from_one_init_never_separate(constraint, kappa):
    """GD has no selection noise: the two replicas of a pair are one trajectory, d = 0
    exactly at every step (docs/physics.md A6), while SGD's pair separates."""
    gd = quiet_solve(make_point("gd", constraint, kappa), paths=500, solver_seeds=2)
    assert np.all(gd.replica_distance.values == 0.0)
    assert gd.attrs["replica_pair_status"] == "converged"
    sgd = quiet_solve(make_point("sgd", constraint, kappa), paths=500, solver_seeds=2)
    assert sgd.replica_distance.values[0] == 0.0 and np.all(sgd.replica_distance.values[1:] > 0)


@pytest.mark.parametrize("sampling", ["response", "cholesky"])
def test_pair_fields_have_covariance_c_and_difference_covariance_d(sampling):
    """Each replica's field has the single-replica covariance C exactly (not the pair's
    estimate) and u_a - u_b has covariance D = lr^2 R M_d R^T of the force differences:
    the cross-covariance is C - D / 2 (theory.replica_pair), with the difference drawn
    through the response (mixing the force differences) or by Cholesky of D."""
    from sgdnoise.theory.replica_pair import difference_kernel_image, pair_fields

    problem = problem_from_point(make_point("sgd", "ridge", 1.0, max_time=1.0, ridge=1.0))
    solution = solve_seed(problem, 2000, np.random.SeedSequence(0), 50, 1e-10)
    trajectory, force = solution.trajectory, solution.paths.force
    difference = force[:, :500] - force[:, 500:1000]
    image = difference_kernel_image(problem, trajectory.response, difference)
    rng = np.random.default_rng(1)
    paths = 200_000
    normals = {"sum": rng.standard_normal((problem.steps + 1, paths))}
    if sampling == "cholesky":
        normals["difference"] = rng.standard_normal((problem.steps + 1, paths))
    else:
        normals["mixing"] = rng.standard_normal((100, paths), dtype=np.float32)
    u_a, u_b = pair_fields(problem, trajectory, normals, difference, image)
    correlation = trajectory.correlation
    sampling_error = np.sqrt(2.0 / paths) * np.max(np.diag(correlation))
    np.testing.assert_allclose(u_a @ u_a.T / paths, correlation, atol=5 * sampling_error)
    np.testing.assert_allclose(u_b @ u_b.T / paths, correlation, atol=5 * sampling_error)
    delta = u_a - u_b
    assert np.all(np.diag(image)[1:] > 1e-3)  # a real difference to measure
    np.testing.assert_allclose(delta @ delta.T / paths, image, rtol=0.03, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, constraint, kappa, tau",
    [("sgd", "ridge", 1.0, None), ("persistent_sgd", "sphere", 0.0, 1.0)],
)
def test_dmft_replica_distance_and_final_gaps_agree_with_the_simulation(
    kind, constraint, kappa, tau
):
    """d(t) = |w_a - w_b|^2 / N of same-init pairs (shared data, independent selection)
    and the distribution of the final gaps h - kappa (its CDF at the DMFT's deciles)."""
    from sgdnoise.stages.train import train_point

    pairs = 8
    point = make_point(
        kind,
        constraint,
        kappa,
        max_time=10.0,
        tau=tau,
        b=0.25,
        ridge=1.0,
        N=SIMULATION_N,
        data={"per_replica": True},
        run={
            "replicas": 2 * pairs,
            "pairing": "same_init",
            "dtype": "float64",
            "record": {"times": "linear", "count": 6},
        },
    )
    theory = quiet_solve(point, paths=4000, solver_seeds=3, seed=2)
    simulation = train_point(point)
    weights = simulation.weights.values
    distance = np.sum((weights[0::2] - weights[1::2]) ** 2, axis=-1) / SIMULATION_N
    at = theory.isel(record=simulation.step.values)
    assert_agree(
        "d(t)",
        distance[:, 1:],
        at.replica_distance.values[1:],
        at.replica_distance_stderr.values[1:],
    )
    gaps = simulation.final_stabilities.values - kappa
    theory_gaps = theory.seed_final_stability.values - kappa
    thresholds = np.quantile(theory_gaps, np.linspace(0.1, 0.9, 9))
    cdf = (gaps[:, :, None] < thresholds).mean(axis=1)
    theory_cdf = (theory_gaps[:, :, None] < thresholds).mean(axis=1)
    assert_agree(
        "P(gap < x)", cdf, theory_cdf.mean(axis=0), theory_cdf.std(axis=0, ddof=1) / math.sqrt(3)
    )
    # the fit stage puts them beside the simulation's (a run without a response measurement)
    from sgdnoise.stages.fit import fit_point

    fits = fit_point(simulation, dmft=theory)
    assert float(fits.dmft_replica_distance) == pytest.approx(float(theory.replica_distance[-1]))
    assert fits.dmft_gap_density.dims == fits.gap_density.dims == ("gap",)
    assert "dmft_T_eff" not in fits and float(fits.replica_distance) > 0
