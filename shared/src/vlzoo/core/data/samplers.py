"""Grouped batches: P groups × K members per batch (PK sampling).

Identity-aware training (person search: P identities × K images of each) and hard-negative contrastive
batches (an image beside its distractor, NegCLIP-style) both need batches built from groups rather than from
independent samples. `GroupedBatchSampler` gives every batch exactly `groups_per_batch` distinct groups with
`per_group` members each, visits every group once per epoch, is deterministic for a seed and an epoch, and
splits the batches of an epoch disjointly across ranks (it does its own distribution: with Lightning's DDP set
`trainer.use_distributed_sampler: false`, as `ImageTextDataModule` checks).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Sampler

from vlzoo.core.errors import ConfigError, DataError

__all__ = ["GroupedBatchSampler"]


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of `groups_per_batch` groups × `per_group` members, as dataset indices.

    Args:
        groups: the group of each dataset index (an identity, a pair id, ...).
        groups_per_batch, per_group: P and K; a batch holds P·K indices, group by group.
        num_replicas, rank: the distributed world this sampler's rank reads (default: one process).
        seed: with the epoch (`set_epoch`), what the shuffles draw from; every rank must use the same.

    Per epoch the groups are shuffled; a group with at least K members gives K of them drawn without
    replacement, a smaller one repeats members (drawn with replacement), as person re-identification's PK
    sampler does. When the groups don't fill the last batches of every rank, the epoch wraps around to the
    first groups of its own order, so every group is visited at least once and each rank gets as many batches.
    Batch b of the epoch goes to rank `b % num_replicas`: ranks see disjoint groups whenever the number of
    groups divides evenly.
    """

    def __init__(
        self,
        groups: Sequence[Hashable],
        groups_per_batch: int,
        per_group: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ):
        for name, value in (("groups_per_batch", groups_per_batch), ("per_group", per_group)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"grouped batches: {name} must be a positive int, got {value!r}")
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"grouped batches: rank {rank} is not in a world of {num_replicas}")
        members: dict[Hashable, list[int]] = {}
        for index, group in enumerate(groups):
            members.setdefault(group, []).append(index)
        if len(members) < groups_per_batch:
            raise DataError(
                f"grouped batches need {groups_per_batch} groups per batch but the data has {len(members)}"
            )
        self.members = [torch.tensor(m) for m in members.values()]
        self.groups_per_batch, self.per_group = groups_per_batch, per_group
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls it at each epoch start: every epoch draws another order, the same on every rank."""
        self.epoch = epoch

    def __len__(self) -> int:
        per_round = self.groups_per_batch * self.num_replicas
        return -(-len(self.members) // per_round)  # ceil: the last round wraps around

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.members), generator=generator)
        total = len(self) * self.num_replicas * self.groups_per_batch
        order = order.repeat(-(-total // len(order)))[:total]  # wrap around to fill the last round
        batches = order.view(-1, self.groups_per_batch)
        for batch in batches[self.rank :: self.num_replicas]:
            yield [i for g in batch.tolist() for i in self._draw(g, generator)]

    def _draw(self, group: int, generator: torch.Generator) -> list[int]:
        members = self.members[group]
        if len(members) >= self.per_group:
            picks = torch.randperm(len(members), generator=generator)[: self.per_group]
        else:
            picks = torch.randint(len(members), (self.per_group,), generator=generator)
        return members[picks].tolist()
