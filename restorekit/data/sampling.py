"""Deterministic, resumable sampling.

The training stream is a function of ``(seed, position)`` alone: the sampler yields
:class:`SampleKey`\\ s — epoch, index and seed — and a dataset derives each sample's random crop and
augmentation from its key. So a resumed run (or one with another number of data-loader workers or
processes) sees exactly the same samples as an uninterrupted one, with no worker RNG state to save.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch.utils.data import Sampler


class SampleKey(NamedTuple):
    seed: int
    epoch: int
    index: int


def sample_generator(key: SampleKey | int) -> torch.Generator:
    """A CPU generator seeded from a sample key (a plain index means epoch 0, seed 0)."""
    if not isinstance(key, SampleKey):
        key = SampleKey(0, 0, int(key))
    # Mix with large odd constants so neighbouring keys give unrelated streams.
    mixed = (key.seed * 0x9E3779B97F4A7C15 + key.epoch * 0xBF58476D1CE4E5B9 + key.index * 0x94D049BB133111EB) % (2**63)
    return torch.Generator().manual_seed(mixed)


def key_index(key: SampleKey | int) -> int:
    return key.index if isinstance(key, SampleKey) else int(key)


class ResumableSampler(Sampler[SampleKey]):
    """An endless shuffled stream that can start at any position.

    Position *p* of the global stream is item ``p % n`` of epoch ``p // n``'s permutation. With
    ``world_size`` processes, global batch *b* covers positions ``[b·B, (b+1)·B)`` and rank *r* takes
    the *r*-th contiguous slice of it, so a run on several processes sees the same global batches as
    a run on one.

    Args:
        length: dataset size.
        seed: the run's seed.
        batch_size: per-process batch size.
        start_batch: global batch to start from (the resumed step times accumulation).
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(
        self, length: int, *, seed: int, batch_size: int, start_batch: int = 0, rank: int = 0, world_size: int = 1
    ):
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.length, self.seed, self.batch_size = length, seed, batch_size
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size
        self._perm_epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.length, generator=gen).tolist()
            self._perm_epoch = epoch
        return self._perm

    def key_at(self, position: int) -> SampleKey:
        epoch, offset = divmod(position, self.length)
        return SampleKey(self.seed, epoch, self._permutation(epoch)[offset])

    def __iter__(self) -> Iterator[SampleKey]:
        global_batch = self.batch_size * self.world_size
        batch = self.start_batch
        while True:
            first = batch * global_batch + self.rank * self.batch_size
            for position in range(first, first + self.batch_size):
                yield self.key_at(position)
            batch += 1
