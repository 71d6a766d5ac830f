"""The selection processes follow their stated laws (docs/physics.md A3, B1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sgdnoise.dynamics.random import ReplicaStream
from sgdnoise.dynamics.selection import MarkovSelection, MinibatchSelection


def _chain(process, steps: int, replicas: list[int]) -> np.ndarray:
    """Selections (steps, replicas, P) of a process."""
    previous, history = None, []
    for step in range(steps):
        selection, previous = process.draw(step, replicas, previous)
        history.append(selection.mask.numpy())
    return np.array(history)


def _run_lengths(series: np.ndarray, value: bool) -> np.ndarray:
    """Lengths of the complete runs of ``value`` in each column (first/last runs dropped)."""
    lengths = []
    for column in series.T:
        changes = np.flatnonzero(np.diff(column.astype(np.int8))) + 1
        runs = np.split(column, changes)[1:-1]
        lengths.extend(len(run) for run in runs if run[0] == value)
    return np.array(lengths)


def test_markov_selection_has_fraction_b_and_the_stated_dwell_times():
    b, lr, tau = 0.2, 0.05, 1.0
    process = MarkovSelection(b, lr, tau, P=2000, seed=5, device="cpu", scale=1.0)
    series = _chain(process, steps=3000, replicas=[0])[:, 0, :]
    assert series.mean() == pytest.approx(b, rel=0.03)
    assert series[0].mean() == pytest.approx(b, abs=0.03)  # started stationary
    out_time = lr * _run_lengths(series, False).mean()
    in_time = lr * _run_lengths(series, True).mean()
    assert out_time == pytest.approx(tau, rel=0.03)  # mean time out of the batch: tau
    assert in_time == pytest.approx(b * tau / (1 - b), rel=0.03)  # in it: b tau / (1 - b)


def test_markov_selection_at_tau_lr_over_b_is_memoryless():
    b, lr = 0.3, 0.05
    process = MarkovSelection(b, lr, lr / b, P=3000, seed=2, device="cpu", scale=1.0)
    series = _chain(process, steps=400, replicas=[1])[:, 0, :]
    after_in = series[1:][series[:-1]].mean()
    after_out = series[1:][~series[:-1]].mean()
    assert after_in == pytest.approx(b, abs=0.01)
    assert after_out == pytest.approx(b, abs=0.01)


def test_minibatch_draws_distinct_samples_uniformly():
    P, batch = 12, 4
    process = MinibatchSelection(batch, P, seed=1, device="cpu")
    counts = np.zeros(P)
    for step in range(3000):
        selection, _ = process.draw(step, [0, 1], None)
        indices = selection.indices.numpy()
        for row in indices:
            assert len(set(row.tolist())) == batch
            counts[row] += 1
    expected = np.full(P, counts.sum() / P)
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_streams_are_counter_based():
    stream = ReplicaStream(seed=9, name="x", shape=(3,), block_steps=4)
    late_first = stream.draw(10, [2, 5])
    early = ReplicaStream(seed=9, name="x", shape=(3,), block_steps=4)
    for step in range(11):
        together = early.draw(step, [5, 2, 7])
    torch.testing.assert_close(together[[1, 0]], late_first, rtol=0, atol=0)
