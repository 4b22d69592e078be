"""Grouped (P×K) batches: exact batch composition, every group once per epoch, disjoint ranks, determinism."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from vlzoo.core import ConfigError
from vlzoo.core.data import GroupedBatchSampler, write_toyworld
from vlzoo.core.train import ImageTextDataModule

# 12 groups of uneven sizes (3 to 6 members), interleaved in the dataset
GROUPS = [g for i in range(6) for g in range(12) if i < 3 + g % 4]


def _groups_of(batch: list[int]) -> list[int]:
    return [GROUPS[i] for i in batch]


def test_every_batch_holds_p_distinct_groups_of_k_distinct_members():
    sampler = GroupedBatchSampler(GROUPS, groups_per_batch=4, per_group=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    for batch in batches:
        assert len(batch) == 12 and len(set(batch)) == 12
        counts = Counter(_groups_of(batch))
        assert len(counts) == 4 and set(counts.values()) == {3}
        # each group's members are consecutive: the K of a group sit together
        assert [GROUPS[i] for i in batch[::3]] == list(counts)


def test_each_epoch_visits_every_group_once_in_its_own_order():
    sampler = GroupedBatchSampler(GROUPS, groups_per_batch=4, per_group=2, seed=0)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        first, again = list(sampler), list(sampler)
        assert first == again  # deterministic for (seed, epoch)
        seen = [g for batch in first for g in _groups_of(batch)[::2]]
        assert sorted(seen) == list(range(12))
        epochs.append(first)
    assert epochs[0] != epochs[1] != epochs[2]


def test_ranks_split_the_epoch_disjointly_with_equal_batch_counts():
    ranks = [GroupedBatchSampler(GROUPS, 3, 2, num_replicas=2, rank=r, seed=5) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    per_rank = [[g for b in s for g in _groups_of(b)[::2]] for s in ranks]
    assert len(ranks[0]) == len(ranks[1]) == 2
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == list(range(12))


def test_uneven_groups_wrap_around_so_every_group_is_seen_and_ranks_stay_equal():
    sampler_args = {"groups_per_batch": 5, "per_group": 2, "seed": 2}
    ranks = [GroupedBatchSampler(GROUPS, num_replicas=2, rank=r, **sampler_args) for r in range(2)]
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == 2  # 12 groups in rounds of 10: two rounds
    seen = Counter(g for rank in batches for b in rank for g in _groups_of(b)[::2])
    assert set(seen) == set(range(12)) and sum(seen.values()) == 20
    for rank in batches:
        assert all(len(set(_groups_of(b))) == 5 for b in rank)  # no group twice in a batch


def test_a_group_smaller_than_k_repeats_its_members():
    sampler = GroupedBatchSampler([0, 0, 1, 1, 1, 1, 2, 3], groups_per_batch=4, per_group=3, seed=0)
    (batch,) = list(sampler)
    counts = Counter(batch)
    assert {6, 7} <= set(batch) and counts[6] == counts[7] == 3  # one-member groups: that member thrice
    assert len({i for i in batch if i in (2, 3, 4, 5)}) == 3  # a large group: distinct members


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groups_per_batch": 0, "per_group": 2}, "groups_per_batch"),
        ({"groups_per_batch": 2, "per_group": 2, "num_replicas": 2, "rank": 2}, "rank 2"),
        ({"groups_per_batch": 13, "per_group": 2}, "13 groups per batch but the data has 12"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GroupedBatchSampler(GROUPS, **kwargs)


def test_toyworld_hard_negative_batches_put_each_image_beside_its_distractor(tmp_path):
    data = write_toyworld(tmp_path / "tw", n_train=16, n_val=4, n_test=4, seed=3)
    module = ImageTextDataModule(
        str(data), batch_size=8, num_workers=0, group_batches={"key": "pair", "per_group": 2}
    )
    module.setup("fit")
    loader = module.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 2  # 8 pairs, 4 per batch
    assert all(b["image"].shape[0] == 8 for b in batches)
    pairs = [p for b in batches for p in b["pair"].tolist()]
    assert sorted(pairs) == sorted(list(range(8)) * 2)  # both images of every pair, each pair once
    for batch in batches:
        assert torch.equal(batch["pair"][::2], batch["pair"][1::2])  # an image beside its distractor
        ids = [int(i.split("/")[1]) for i in batch["id"]]
        assert [a // 2 for a in ids[::2]] == [b // 2 for b in ids[1::2]] and ids[::2] != ids[1::2]


def test_group_batches_settings_are_checked_before_data_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"must divide data\.batch_size 8"):
        ImageTextDataModule("toyworld", batch_size=8, group_batches={"key": "pair", "per_group": 3})
    with pytest.raises(ConfigError, match="takes key"):
        ImageTextDataModule("toyworld", batch_size=8, group_batches={"per_grup": 2})
    data = write_toyworld(tmp_path / "tw", n_train=4, n_val=2, n_test=2, seed=3)
    module = ImageTextDataModule(str(data), batch_size=4, num_workers=0, group_batches={"key": "pid"})
    module.setup("fit")
    with pytest.raises(ValueError, match="has no field 'pid'"):
        module.train_dataloader()
