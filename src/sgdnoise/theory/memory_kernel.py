"""The memory kernel M_R from exact per-path responses (docs/physics.md A8).

A probe field P^l added to the stability of the effective sample changes the later forces
through the memory term; on path p, with D = diag(f'), f' = scale s theta(kappa - h),

    dh^k / dP^l = [(I + lr Delta R D)^{-1}]_{kl},   d f^k / dP^l = f'^k dh^k / dP^l.

Only the active steps A_p = {k : s^k theta(kappa - h^k) = 1} contribute, and there

    D (I + lr Delta R D)^{-1} = scale (I + lr a R[A_p, A_p])^{-1},   a = Delta scale,

a unit lower-triangular inverse. Hence

    M_R[k, l] = Delta (P/N) E[d f^k / dP^l]
              = (P/N) a E_p[ (I + lr a R[A_p, A_p])^{-1} embedded on A_p x A_p ],

whose diagonal is (P/N) a P(active at k). No Gaussian integration by parts: that
estimator is noise-dominated here (docs/physics.md A8).

Exact savings (no approximation):
- paths with the same active set share one inverse (GD: most paths are active on one
  interval of steps, so distinct sets are far fewer than paths);
- the inverse of a lower-triangular matrix restricted to a leading block is the inverse of
  that block: a set that is a prefix of another (in time order) uses the leading block of
  the longer set's inverse. Each maximal set is inverted once, and its inverse enters
  weighted by W[i, j] = number of paths whose set is its prefix of length > max(i, j).
The inverses of sets of the same size are computed together (unit_lower_inverse, in
``precision``), and accumulated in float64.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

BATCH_ELEMENTS = 1 << 22  # matrix entries solved in one batched call (16 MB in float32)
DIRECT_WIDTH = 16  # below it one triangular solve; above it the blocked recursion (GEMMs)


def unit_lower_inverse(strict_lower: torch.Tensor) -> torch.Tensor:
    """Batched (I + X)^{-1} for strictly lower-triangular X of shape (batch, m, m).

    Small blocks: a triangular solve against the identity. Larger ones: the block formula
    [[A, 0], [B, D]]^{-1} = [[A^{-1}, 0], [-D^{-1} B A^{-1}, D^{-1}]], whose products are
    batched GEMMs, faster than one triangular solve for blocks wider than DIRECT_WIDTH.
    """
    width = strict_lower.shape[-1]
    if width <= DIRECT_WIDTH:
        identity = torch.eye(width, dtype=strict_lower.dtype, device=strict_lower.device)
        return torch.linalg.solve_triangular(
            strict_lower, identity.expand_as(strict_lower), upper=False, unitriangular=True
        )
    half = width // 2
    leading = unit_lower_inverse(strict_lower[:, :half, :half])
    trailing = unit_lower_inverse(strict_lower[:, half:, half:])
    inverse = torch.zeros_like(strict_lower)
    inverse[:, :half, :half] = leading
    inverse[:, half:, half:] = trailing
    inverse[:, half:, :half] = -torch.bmm(
        trailing, torch.bmm(strict_lower[:, half:, :half], leading)
    )
    return inverse


def _maximal_sets(active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The maximal active sets and, for each, how many paths have each of its prefixes.

    Returns (steps_of_set, sizes, paths_by_length): ``steps_of_set`` (sets, longest) holds
    each maximal set's steps in increasing order (padded with -1), ``sizes`` its size, and
    ``paths_by_length[g, j]`` the number of paths whose active set is the prefix of length
    j + 1 of set g. Paths with an empty set are dropped.
    """
    steps = active.shape[0]
    packed = np.ascontiguousarray(np.packbits(active, axis=0).T)
    distinct, counts = np.unique(packed, axis=0, return_counts=True)
    members = np.unpackbits(distinct, axis=1, count=steps).astype(bool)
    sizes = members.sum(axis=1)
    members, counts, sizes = members[sizes > 0], counts[sizes > 0], sizes[sizes > 0]
    longest = int(sizes.max())
    rows, columns = np.nonzero(members)  # row-major: each row's steps in increasing order
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    padded = np.full((members.shape[0], longest), -1, dtype=np.int64)
    padded[rows, np.arange(rows.size) - starts[rows]] = columns
    order = np.lexsort(padded.T[::-1])  # a prefix sorts just before its extensions
    padded, counts, sizes = padded[order], counts[order], sizes[order]
    # row i is a prefix of row i + 1 when they agree wherever row i has a step
    prefix = np.all((padded[:-1] == padded[1:]) | (padded[:-1] < 0), axis=1)
    is_owner = np.append(~prefix, True)
    owner_rows = np.flatnonzero(is_owner)
    owner_of = owner_rows[np.searchsorted(owner_rows, np.arange(len(sizes)))]
    rank = np.searchsorted(owner_rows, owner_of)
    paths_by_length = np.zeros((owner_rows.size, longest), dtype=np.int64)
    np.add.at(paths_by_length, (rank, sizes - 1), counts)
    return padded[owner_rows], sizes[owner_rows], paths_by_length


def padded_width(width: int) -> int:
    """The batch width a set of ``width`` steps is padded to (at most 1/8 more).

    Sets of nearby sizes share one batched call: fewer calls (their fixed cost matters for
    SGD's many small sets) for at most ~40% more flops.
    """
    quantum = 1 << max(0, width.bit_length() - 4)
    return -(-width // quantum) * quantum


def _accumulate(
    tasks: list[tuple[int, np.ndarray]],
    set_steps: np.ndarray,
    paths_by_length: np.ndarray,
    flat_scaled: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Sum over the (width, maximal sets) batches of the weighted embedded inverses.

    ``size`` is T + 2: the extra last index is the padding step (zero row and column of
    the scaled response; what lands there is dropped).
    """
    device = flat_scaled.device
    total = torch.zeros(size * size, dtype=torch.float64, device=device)
    for width, chunk in tasks:
        index = torch.as_tensor(set_steps[chunk, :width], device=device)
        # row i of a lower-triangular inverse enters for the paths with prefix > i
        beyond = np.cumsum(paths_by_length[chunk, :width][:, ::-1], axis=1)[:, ::-1]
        # transposed positions: entry [g, a, b] addresses (index[g, b], index[g, a]); the
        # gathered matrices and the solver's inverses are then column-major views
        flat = (index * size)[:, None, :] + index[:, :, None]
        matrices = flat_scaled[flat].mT
        inverses = unit_lower_inverse(matrices).to(torch.float64)
        real = index != size - 1  # padding rows only reach the dropped padding column
        if not np.all(beyond[real.cpu().numpy()] == 1):  # else every weight that counts is 1
            inverses *= torch.as_tensor(beyond[:, :, None].astype(np.float64), device=device)
        total.index_add_(0, flat.reshape(-1), inverses.mT.reshape(-1))
    return total


def memory_kernel(
    response: np.ndarray,
    active: np.ndarray,
    lr: float,
    coupling: float,
    sample_ratio: float,
    precision: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    workers: int = 1,
) -> np.ndarray:
    """M_R (T+1, T+1) from R (T+1, T+1) and the active steps (T+1, paths) of every path.

    ``coupling`` is a = Delta x scale; ``sample_ratio`` is P/N. M_R is a rate per step of
    the force (no lr inside), as in the discrete equations. ``workers`` > 1 splits the
    batches between that many threads, each running torch single-threaded: coarse-grained
    parallelism that stays efficient on a machine whose cores are shared (fine-grained
    intra-op threads then wait for each other).
    """
    steps, paths = active.shape
    if not active.any():
        return np.zeros((steps, steps))
    size = steps + 1  # with the padding step
    scaled = np.zeros((size, size))
    scaled[:steps, :steps] = np.tril(response, -1) * (lr * coupling)
    flat_scaled = torch.as_tensor(scaled, device=device).to(precision).reshape(-1)
    set_steps, sizes, paths_by_length = _maximal_sets(active)
    widths = np.array([padded_width(int(w)) for w in sizes])
    extra = int(widths.max()) - set_steps.shape[1]
    set_steps = np.pad(set_steps, ((0, 0), (0, extra)), constant_values=-1)
    set_steps[set_steps < 0] = steps  # the padding step
    paths_by_length = np.pad(paths_by_length, ((0, 0), (0, extra)))
    tasks = []
    for width in np.unique(widths):
        rows = np.flatnonzero(widths == width)
        per_call = max(1, BATCH_ELEMENTS // int(width * width))
        tasks += [(int(width), rows[i : i + per_call]) for i in range(0, rows.size, per_call)]
    if workers <= 1 or len(tasks) < 2:
        total = _accumulate(tasks, set_steps, paths_by_length, flat_scaled, size)
    else:
        tasks.sort(key=lambda task: -(task[0] ** 3) * task[1].size)  # largest work first
        shares = [tasks[i::workers] for i in range(workers)]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = pool.map(
                    lambda share: _accumulate(share, set_steps, paths_by_length, flat_scaled, size),
                    shares,
                )
                total = sum(parts)
        finally:
            torch.set_num_threads(threads)
    kernel = total.reshape(size, size)[:steps, :steps].cpu().numpy()
    return kernel * (sample_ratio * coupling / paths)
