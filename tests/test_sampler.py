"""ModalityMixSampler: seeded order, mixing ratios, rank sharding equal to one process, exact mid-epoch resume."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from avlm.data.sampler import ModalityMixSampler

GROUPS = ["av"] * 8 + ["video"] * 3 + ["audio"] * 10  # indices 0-7 av, 8-10 video, 11-20 audio
RATIOS = {"av": 2, "video": 1, "audio": 1}


def batches(sampler: ModalityMixSampler) -> list[list[int]]:
    indices = list(sampler)
    assert len(indices) == len(sampler)
    return [indices[i:i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


def test_order_is_a_function_of_seed_and_epoch() -> None:
    sampler = ModalityMixSampler(GROUPS, 4, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(len(GROUPS)))
    assert list(ModalityMixSampler(GROUPS, 4, seed=3)) == first
    assert list(ModalityMixSampler(GROUPS, 4, seed=4)) != first
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(len(GROUPS)))
    assert list(ModalityMixSampler(GROUPS, 4, shuffle=False)) == list(range(len(GROUPS)))


def test_mixing_ratios_units_and_streams() -> None:
    sampler = ModalityMixSampler(GROUPS, 4, ratios=RATIOS, seed=0)
    assert sampler.anchor == "av" and sampler.epoch_size == 16  # 8 av / 2 per unit = 4 units of 4
    order = sampler.global_order(0)
    kinds = [GROUPS[i] for i in order]
    assert kinds == ["av", "av", "video", "audio"] * 4  # every batch of 4 holds exactly the 2:1:1 mix
    assert sorted(order[[i for i, k in enumerate(kinds) if k == "av"]]) == list(range(8))  # one pass over AV
    assert set(order[2::4]) == {8, 9, 10}  # the 3 videos repeat to fill 4 slots
    audio = [sampler.global_order(epoch)[3::4] for epoch in range(3)]
    seen = [int(i) for part in audio[:2] for i in part]
    assert len(set(seen)) == 8  # the audio stream continues across epochs instead of restarting
    assert set(int(i) for part in audio for i in part) == set(range(11, 21))  # 12 draws from 10 cover all
    assert list(ModalityMixSampler(GROUPS, 4, ratios=RATIOS, seed=0).global_order(2)) == list(sampler.global_order(2))


def test_two_ranks_see_the_global_batches_of_one_process() -> None:
    for ratios in (None, RATIOS):
        single = batches(ModalityMixSampler(GROUPS, 4, ratios=ratios, seed=1, drop_last=True))
        ranks = [batches(ModalityMixSampler(GROUPS, 2, ratios=ratios, seed=1, drop_last=True, rank=r, world_size=2))
                 for r in range(2)]
        assert len(ranks[0]) == len(ranks[1]) == len(single)
        assert [a + b for a, b in zip(ranks[0], ranks[1], strict=True)] == single
        flat = [i for rank in ranks for batch in rank for i in batch]
        if ratios is None:
            assert len(set(flat)) == len(flat)  # disjoint


def test_padding_gives_every_rank_the_same_number_of_full_batches() -> None:
    shards = [ModalityMixSampler(GROUPS, 4, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in shards] == [12, 12]  # 21 samples -> 3 global batches of 8 (3 wrapped)
    counts = Counter(i for s in shards for i in s)
    assert set(counts) == set(range(21)) and sum(counts.values()) == 24
    assert len(ModalityMixSampler(GROUPS, 4)) == 21 and batches(ModalityMixSampler(GROUPS, 4))[-1].__len__() == 1


class IndexDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return len(GROUPS)

    def __getitem__(self, index: int) -> int:
        return index


def test_order_does_not_depend_on_dataloader_workers() -> None:
    orders = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(IndexDataset(), batch_size=4, num_workers=workers,
                                             sampler=ModalityMixSampler(GROUPS, 4, ratios=RATIOS, seed=5))
        orders.append([batch.tolist() for batch in loader])
    assert orders[0] == orders[1]


def test_resume_mid_epoch_continues_the_same_order() -> None:
    sampler = ModalityMixSampler(GROUPS, 2, ratios=RATIOS, seed=7)
    sampler.set_epoch(3)
    loader = torch.utils.data.DataLoader(IndexDataset(), batch_size=2, sampler=sampler)
    full = [batch.tolist() for batch in loader]
    state = sampler.state_dict(batches_done=5)
    resumed = ModalityMixSampler(GROUPS, 2, ratios=RATIOS, seed=7)
    resumed.load_state_dict(state)
    assert resumed.epoch == 3 and len(resumed) == len(sampler) - 10
    assert [b.tolist() for b in torch.utils.data.DataLoader(IndexDataset(), batch_size=2, sampler=resumed)] == full[5:]
    assert len(resumed) == len(sampler)  # the skip applies to one iteration only
    # resume on 2 ranks with the same global batch: rank slices of the remaining global batches
    shards = [ModalityMixSampler(GROUPS, 1, ratios=RATIOS, seed=7, rank=r, world_size=2) for r in range(2)]
    for shard in shards:
        shard.load_state_dict(state)
    assert [[a, b] for a, b in zip(*shards, strict=True)] == full[5:]


def test_errors() -> None:
    with pytest.raises(ValueError, match="10 samples of group 'audio' have no ratio"):
        ModalityMixSampler(GROUPS, 4, ratios={"av": 2, "video": 1})
    with pytest.raises(ValueError, match="group 'text' has a ratio but no samples"):
        ModalityMixSampler(GROUPS, 4, ratios={**RATIOS, "text": 1})
    with pytest.raises(ValueError, match="ratio of 'av' must be a positive integer, got 1.5"):
        ModalityMixSampler(GROUPS, 4, ratios={**RATIOS, "av": 1.5})
    with pytest.raises(ValueError, match="rank < world_size"):
        ModalityMixSampler(GROUPS, 4, rank=2, world_size=2)
    state = ModalityMixSampler(GROUPS, 4, seed=1).state_dict(2)
    with pytest.raises(ValueError, match=r"seed \(saved 1, now 2\)"):
        ModalityMixSampler(GROUPS, 4, seed=2).load_state_dict(state)
