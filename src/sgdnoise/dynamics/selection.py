"""Which samples enter each step: the selection processes of docs/physics.md A3 and B1.

Every sample mu carries s_mu(t) in {0, 1}; a process yields, at step k, the selection
used by that step:

- ``FullBatch`` (gd, langevin): s = 1.
- ``BernoulliSelection`` (sgd): s_mu^k i.i.d. Bernoulli(b) at every step.
- ``MarkovSelection`` (persistent_sgd): s_mu is a two-state Markov chain with
  P(0 -> 1) = lr / tau and P(1 -> 0) = (1 - b) lr / (b tau), started stationary,
  s^0 ~ Bernoulli(b). With u^k uniform, s^k = [u^k < b] at k = 0 and
  s^k = [u^k < (1 - P(1 -> 0) if s^(k-1) else P(0 -> 1))] after: at tau = lr / b both
  thresholds equal b and the chain is sgd draw for draw.
- ``MinibatchSelection`` (minibatch_sgd): B distinct samples, uniformly among all
  B-subsets, by Floyd's algorithm from B uniforms: O(B) per step whatever P.

All randomness comes from per-replica counter-based streams (dynamics.random), so a
replica's selections do not depend on the other replicas or on restarts. The
selection state (the Markov chain's s^(k-1)) is part of the training state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sgdnoise.config.point import OptimizerConfig
from sgdnoise.dynamics.random import ReplicaStream


@dataclass(frozen=True)
class Selection:
    """The samples one step uses, for each replica.

    Exactly one representation is set: ``mask`` (replicas, P) with entries s_mu in
    {0, 1} (dense), ``indices`` (replicas, B) of distinct samples (sparse), or neither
    (full batch). ``scale`` multiplies the summed gradient (1, 1/b or 1/B).
    """

    mask: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    scale: float = 1.0


class FullBatch:
    """Every sample at every step (gd and langevin)."""

    def initial_state(self, replica_ids: list[int]) -> torch.Tensor | None:
        return None

    def draw(self, step: int, replica_ids: list[int], previous: torch.Tensor | None):
        return Selection(), None


class BernoulliSelection:
    """Vanilla SGD: each sample in the batch independently with probability b."""

    def __init__(self, b: float, P: int, seed: int, device, scale: float) -> None:
        self.b, self.scale = b, scale
        self.stream = ReplicaStream(seed, "selection", (P,), "uniform", torch.float32, device)

    def initial_state(self, replica_ids: list[int]) -> torch.Tensor | None:
        return None

    def draw(self, step: int, replica_ids: list[int], previous: torch.Tensor | None):
        uniform = self.stream.draw(step, replica_ids)
        return Selection(mask=uniform < self.b, scale=self.scale), None


class MarkovSelection:
    """Persistent SGD: a stationary two-state Markov chain per sample (persistence tau)."""

    def __init__(self, b: float, lr: float, tau: float, P: int, seed: int, device, scale: float):
        self.b, self.scale = b, scale
        self.switch_on = lr / tau
        self.stay_on = 1.0 - (1.0 - b) * lr / (b * tau)
        self.stream = ReplicaStream(seed, "selection", (P,), "uniform", torch.float32, device)

    def initial_state(self, replica_ids: list[int]) -> torch.Tensor | None:
        return None  # step 0 draws s^0 ~ Bernoulli(b) from its own uniforms

    def draw(self, step: int, replica_ids: list[int], previous: torch.Tensor | None):
        uniform = self.stream.draw(step, replica_ids)
        if previous is None:
            selected = uniform < self.b
        else:
            threshold = torch.where(previous, self.stay_on, self.switch_on).to(uniform.dtype)
            selected = uniform < threshold
        return Selection(mask=selected, scale=self.scale), selected


class MinibatchSelection:
    """B distinct samples per step, uniformly among the B-subsets (Floyd's algorithm)."""

    def __init__(self, batch_size: int, P: int, seed: int, device) -> None:
        self.batch_size, self.P = batch_size, P
        self.stream = ReplicaStream(
            seed, "minibatch", (batch_size,), "uniform", torch.float64, device
        )

    def initial_state(self, replica_ids: list[int]) -> torch.Tensor | None:
        return None

    def draw(self, step: int, replica_ids: list[int], previous: torch.Tensor | None):
        chosen = floyd_subsets(self.stream.draw(step, replica_ids), self.P)
        return Selection(indices=chosen, scale=1.0 / self.batch_size), None

    def draw_range(self, start: int, stop: int, replica_ids: list[int]) -> torch.Tensor:
        """Indices of the batches of steps start .. stop - 1: (R, stop - start, B)."""
        return floyd_subsets(self.stream.draw_range(start, stop, replica_ids), self.P)


def floyd_subsets(uniform: torch.Tensor, P: int) -> torch.Tensor:
    """B distinct indices in [0, P) from B uniforms (last axis), by Floyd's algorithm."""
    batch_size = uniform.shape[-1]
    chosen = torch.empty(uniform.shape, dtype=torch.long, device=uniform.device)
    for j in range(batch_size):
        top = P - batch_size + j  # Floyd: pick in [0, top], else take top
        candidate = torch.clamp((uniform[..., j] * (top + 1)).long(), max=top)
        taken = (chosen[..., :j] == candidate[..., None]).any(dim=-1)
        chosen[..., j] = torch.where(taken, torch.full_like(candidate, top), candidate)
    return chosen


def make_selection(optimizer: OptimizerConfig, P: int, seed: int, device):
    """The selection process of a resolved ``optimizer:`` section."""
    kind, b = optimizer.kind, optimizer.b
    scale = 1.0 / b if optimizer.batch_normalization == "mean" else 1.0
    if kind in ("gd", "langevin"):
        return FullBatch()
    if kind == "sgd":
        return BernoulliSelection(b, P, seed, device, scale)
    if kind == "persistent_sgd":
        return MarkovSelection(b, optimizer.lr, optimizer.tau, P, seed, device, scale)
    if kind == "minibatch_sgd":
        return MinibatchSelection(optimizer.batch_size, P, seed, device)
    raise ValueError(f"optimizer.kind {kind!r} has no selection process")
