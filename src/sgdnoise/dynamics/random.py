"""Counter-based random numbers, one independent stream per replica.

The numbers replica r sees at step k depend only on (seed, stream name, r, k): not on
which other replicas run beside it, in which order, on how many steps ran before in
this process, or on a checkpoint restart. That is what makes replica r the same
trajectory alone or among 64 others, and a resumed run identical to an uninterrupted
one.

Implementation: steps are grouped in blocks of ``block_steps``; the block b of replica r
is drawn in one call from a torch generator seeded with a hash of (seed, name, r, b).
The loop over replicas therefore runs once per block, not once per step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

DEFAULT_BLOCK_STEPS = 64


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of labels (stable across runs and machines)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class ReplicaStream:
    """Per-replica random draws of a fixed shape, addressed by step number.

    ``draw(step, replica_ids)`` returns a tensor of shape (len(replica_ids), *shape):
    uniform in [0, 1) (``distribution="uniform"``) or standard normal ("normal").
    """

    def __init__(
        self,
        seed: int,
        name: str,
        shape: Sequence[int],
        distribution: str = "uniform",
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        block_steps: int = DEFAULT_BLOCK_STEPS,
    ) -> None:
        if distribution not in ("uniform", "normal"):
            raise ValueError(f"distribution must be uniform or normal, got {distribution!r}")
        self.seed, self.name, self.shape = seed, name, tuple(shape)
        self.distribution, self.dtype = distribution, dtype
        self.device = torch.device(device)
        self.block_steps = block_steps
        self._generator = torch.Generator(device=self.device)
        self._cache: torch.Tensor | None = None  # (replicas, block_steps, *shape)
        self._cache_block = -1
        self._cache_ids: tuple[int, ...] = ()

    def _fresh_block(self, replica: int, block: int) -> torch.Tensor:
        self._generator.manual_seed(derive_seed(self.seed, self.name, replica, block))
        size = (self.block_steps, *self.shape)
        sample = torch.rand if self.distribution == "uniform" else torch.randn
        return sample(size, generator=self._generator, dtype=self.dtype, device=self.device)

    def draw(self, step: int, replica_ids: Sequence[int]) -> torch.Tensor:
        """The numbers of step ``step`` for each replica in ``replica_ids``."""
        block, offset = divmod(step, self.block_steps)
        ids = tuple(int(r) for r in replica_ids)
        if block != self._cache_block or ids != self._cache_ids:
            reusable = block == self._cache_block and self._cache is not None
            row_of = {r: i for i, r in enumerate(self._cache_ids)} if reusable else {}
            rows = [
                self._cache[row_of[r]] if r in row_of else self._fresh_block(r, block) for r in ids
            ]
            self._cache = torch.stack(rows)
            self._cache_block, self._cache_ids = block, ids
        return self._cache[:, offset]

    def draw_range(self, start: int, stop: int, replica_ids: Sequence[int]) -> torch.Tensor:
        """The numbers of steps start .. stop - 1 of each replica: (R, stop - start, *shape).

        The same numbers as ``draw`` step by step, fetched a block at a time (for runners
        that jump over steps).
        """
        first, last = start // self.block_steps, (stop - 1) // self.block_steps
        rows = [
            torch.cat([self._fresh_block(int(r), block) for block in range(first, last + 1)])
            for r in replica_ids
        ]
        offset = first * self.block_steps
        return torch.stack(rows)[:, start - offset : stop - offset]
