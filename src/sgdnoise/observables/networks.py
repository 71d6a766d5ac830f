"""Observables of the alpha-trick networks: pure functions of parameters and data, per replica.

Conventions (docs/physics.md B1, B4), with h = y (f(w, x) - f(w0, x)) = y F / alpha:
- train_loss: (1/P) sum_mu v(h_mu), v the hinge at margin 1/alpha, i.e. the paper's
  (1/alpha) max(0, 1 - y F) averaged over the training set (dimensionless).
- train_error, test_error: fraction of samples with y F <= 0 (F = 0 counts as an error,
  so both are exactly 1 at initialisation, where F = 0).
- weight_change: |w - w0| / |w0| with the norms taken over all parameters together.
- kernel_change: ||K(w) - K(w0)||_F / ||K(w0)||_F of the tangent kernel
  K(x, x') = grad_w f(w, x) . grad_w f(w, x') on a few training samples (alpha cancels).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import jacrev

from sgdnoise.dynamics.networks import Samples
from sgdnoise.models.losses import MarginLoss
from sgdnoise.models.networks import network_function


def labelled_stabilities(
    outputs: Tensor, initial_outputs: Tensor, samples: Samples, replica_ids: Tensor
) -> Tensor:
    """h = y (f(w, x) - f(w0, x)), shape (R, n), from outputs at w and at w0."""
    labels = samples.y[replica_ids] if samples.per_replica else samples.y
    return labels * (outputs - initial_outputs)


def training_observables(stability: Tensor, loss: MarginLoss) -> dict[str, Tensor]:
    """train_loss (mean v(h)) and train_error (fraction with h <= 0), each shape (R,)."""
    return {
        "train_loss": loss.value(stability).mean(-1),
        "train_error": classification_error(stability),
    }


def classification_error(stability: Tensor) -> Tensor:
    """Fraction of samples with y F <= 0 (h <= 0), shape (R,); NaN if any h is not finite."""
    error = (stability <= 0).double().mean(-1)
    return torch.where(torch.isfinite(stability).all(-1), error, torch.nan)


def _squared_norms(parameters: Mapping[str, Tensor]) -> Tensor:
    return sum(value.flatten(1).pow(2).sum(-1) for value in parameters.values())


def weight_change(parameters: Mapping[str, Tensor], initial: Mapping[str, Tensor]) -> Tensor:
    """Relative weight change |w - w0| / |w0| over all parameters, shape (R,)."""
    difference = {name: parameters[name] - initial[name] for name in initial}
    return (_squared_norms(difference) / _squared_norms(initial)).sqrt()


def finite_parameters(parameters: Mapping[str, Tensor]) -> Tensor:
    """Whether every parameter of each replica is finite, shape (R,)."""
    finite = [torch.isfinite(value.flatten(1)).all(-1) for value in parameters.values()]
    return torch.stack(finite).all(0)


def tangent_kernel(network: nn.Module, parameters: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """K_ij = grad_w f(w, x_i) . grad_w f(w, x_j) of ONE replica, shape (n, n)."""
    jacobian = jacrev(network_function(network))(dict(parameters), x)
    rows = torch.cat([value.reshape(x.shape[0], -1) for value in jacobian.values()], dim=1)
    return rows @ rows.T


def kernel_change(
    network: nn.Module,
    parameters: Mapping[str, Tensor],
    initial: Mapping[str, Tensor],
    x: Tensor,
) -> Tensor:
    """||K(w) - K(w0)||_F / ||K(w0)||_F per replica, shape (R,).

    x: the kernel samples of each replica, (R, n, *input_shape), in the order of the
    stacked parameters. One replica at a time (the Jacobian is n x parameter count).
    """
    changes = []
    for row in range(x.shape[0]):
        final = tangent_kernel(network, {k: v[row] for k, v in parameters.items()}, x[row])
        start = tangent_kernel(network, {k: v[row] for k, v in initial.items()}, x[row])
        changes.append((final - start).norm() / start.norm())
    return torch.stack(changes)
