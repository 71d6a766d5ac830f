"""The memory kernel M_R from exact per-path responses (PHYSICS.md A8).

A probe field P^l added to the stability of the effective sample changes the later forces
through the memory term; on path p, with D = diag(f'), f' = scale s theta(kappa - h),

    dh^k / dP^l = [(I + lr Delta R D)^{-1}]_{kl},   d f^k / dP^l = f'^k dh^k / dP^l.

Only the active steps A_p = {k : s^k theta(kappa - h^k) = 1} contribute, and there

    D (I + lr Delta R D)^{-1} = scale (I + lr a R[A_p, A_p])^{-1},   a = Delta scale,

a unit lower-triangular inverse. Hence

    M_R[k, l] = Delta (P/N) E[d f^k / dP^l]
              = (P/N) a E_p[ (I + lr a R[A_p, A_p])^{-1} embedded on A_p x A_p ],

whose diagonal is (P/N) a P(active at k). The inverses are computed in batches of paths
with similar |A_p|, padded with identity rows (the padding index points at an extra zero
row and column of R that is dropped at the end), by torch's batched triangular solve.
No Gaussian integration by parts: that estimator is noise-dominated here (PHYSICS.md A8).
"""

from __future__ import annotations

import numpy as np
import torch

BATCH_ELEMENTS = 1 << 22  # entries of the padded matrices solved together (32 MB in float64)


def memory_kernel(
    response: np.ndarray,
    active: np.ndarray,
    lr: float,
    coupling: float,
    sample_ratio: float,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """M_R (T+1, T+1) from R (T+1, T+1) and the active steps (T+1, paths) of every path.

    ``coupling`` is a = Delta x scale; ``sample_ratio`` is P/N. Units: M_R is a rate per
    step of the force (no lr inside), as in the discrete equations.
    """
    steps, paths = active.shape
    padding = steps  # index of the extra zero row / column
    scaled = torch.zeros((steps + 1, steps + 1), dtype=torch.float64, device=device)
    scaled[:steps, :steps] = torch.as_tensor(np.tril(response, -1), device=device)
    scaled *= lr * coupling
    total = torch.zeros((steps + 1) * (steps + 1), dtype=torch.float64, device=device)

    counts = active.sum(axis=0)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    keys = np.arange(steps)[:, None] + steps * (~active)  # active steps sort first, in order
    start = 0
    while start < order.size:
        width = int(counts[order[start]])
        group = order[start : start + max(1, BATCH_ELEMENTS // (width * width))]
        start += group.size
        indices = np.sort(keys[:, group], axis=0)[:width].T  # (group, width), ascending
        indices[indices >= steps] = padding
        index = torch.as_tensor(indices, device=device)
        matrices = scaled[index[:, :, None], index[:, None, :]]
        identity = torch.eye(width, dtype=torch.float64, device=device).expand_as(matrices)
        inverses = torch.linalg.solve_triangular(
            matrices, identity, upper=False, unitriangular=True
        )
        flat = (index[:, :, None] * (steps + 1) + index[:, None, :]).reshape(-1)
        total.index_add_(0, flat, inverses.reshape(-1))

    kernel = total.reshape(steps + 1, steps + 1)[:steps, :steps].cpu().numpy()
    return kernel * (sample_ratio * coupling / paths)
