"""Deterministic, resumable, rank-sharded sampling with optional modality-mix ratios.

Order. Every epoch has one global order of sample indices, a pure function of ``(seed, epoch)`` and the group sizes:
it does not depend on the number of processes or DataLoader workers (the sampler runs in the main process).

Mixing (VideoLLaMA2-AV ``MixSampler``, generalised). With ``ratios={"av": 2, "video": 1, "audio": 1}`` the global order
is a sequence of units, each made of 2 AV samples, then 1 video, then 1 audio sample, so any batch whose size is a
multiple of the unit size (4 here) holds exactly that mix. Each group is read from its own endless stream: shuffled
passes over the group's samples, each pass with a fresh permutation. One epoch is as many units as it takes to go once
through the ``anchor`` group (by default the one with the largest ratio, AV here); smaller groups repeat, larger ones
are only partly visited, and their stream continues in the next epoch instead of restarting (VideoLLaMA2 restarts and
so trains on the same prefix of a large group every epoch).

Sharding. The global order is cut into global batches of ``batch_size * world_size`` samples; rank r takes the r-th
slice of ``batch_size`` of each, so the ranks' batches are disjoint and together form the global batch a single
process with ``batch_size * world_size`` would see. Without ``drop_last`` and with several ranks, the order is
padded by wrapping around so every rank runs the same number of steps.

Resume. ``state_dict(batches_done)`` records the position in global batches; after ``load_state_dict`` the next
iteration skips those batches of the same global order, also under another world size with the same global batch.

Notation: ``b`` per-rank batch size, ``G = b * world_size`` the global batch size.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch


class ModalityMixSampler(torch.utils.data.Sampler[int]):
    """Yield this rank's sample indices for the current epoch; use with ``DataLoader(sampler=..., batch_size=b)``.

    Args:
        groups: the group of every sample (``Record.group``: av, video, audio, image, text, or any label).
        batch_size: per-rank batch size ``b``.
        ratios: group -> positive integer share of each mixing unit; None samples uniformly from all records.
        anchor: the group whose one pass defines an epoch; None: the group with the largest ratio (first on ties).
        seed: base seed of every permutation.
        drop_last: drop the last global batch when incomplete.
        rank: this process's rank.
        world_size: number of processes.
        shuffle: permute (False keeps file order, and stream order within groups).
    """

    def __init__(self, groups: Sequence[str], batch_size: int, *, ratios: Mapping[str, int] | None = None,
                 anchor: str | None = None, seed: int = 0, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size >= 1, world_size >= 1 and 0 <= rank < world_size; got batch_size="
                             f"{batch_size}, rank={rank}, world_size={world_size}")
        if not groups:
            raise ValueError("ModalityMixSampler got no samples; check the annotation files")
        self.groups, self.batch_size, self.seed, self.drop_last = list(groups), batch_size, seed, drop_last
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.ratios = None if ratios is None else dict(ratios)
        names = sorted(set(self.groups))
        self.members = {name: np.flatnonzero(np.array(self.groups) == name) for name in names}
        self.anchor = anchor
        if self.ratios is not None:
            self._check_ratios(names)
            self.anchor = anchor or max(self.ratios, key=self.ratios.__getitem__)
        self.epoch, self.skip_batches = 0, 0

    @classmethod
    def from_records(cls, records: Sequence[Any], batch_size: int, **options: Any) -> ModalityMixSampler:
        """Sampler over ``records`` grouped by ``record.group``; options as in the constructor."""
        return cls([record.group for record in records], batch_size, **options)

    def _check_ratios(self, names: list[str]) -> None:
        problems = [f"ratio of {g!r} must be a positive integer, got {r!r}" for g, r in self.ratios.items()
                    if isinstance(r, bool) or not isinstance(r, int) or r < 1]
        problems += [f"group {g!r} has a ratio but no samples" for g in self.ratios if g not in self.members]
        problems += [f"{len(self.members[g])} samples of group {g!r} have no ratio" for g in names
                     if g not in self.ratios]
        if self.anchor is not None and self.anchor not in self.ratios:
            problems.append(f"anchor {self.anchor!r} is not one of the ratio groups {sorted(self.ratios)}")
        if problems:
            raise ValueError("invalid mixing ratios " + str(self.ratios) + ": " + "; ".join(problems)
                             + " (give every group present in the data a ratio, e.g. {av: 2, video: 1, audio: 1})")

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = epoch

    def global_order(self, epoch: int) -> np.ndarray:
        """All sample indices of ``epoch`` in global order, before sharding (length: the epoch size)."""
        if self.ratios is None:
            return self._permutation(len(self.groups), [self.seed, epoch])
        units = self._units()
        columns = [self._stream(group, epoch * units * ratio, units * ratio).reshape(units, ratio)
                   for group, ratio in self.ratios.items()]
        return np.concatenate(columns, axis=1).reshape(-1)

    def _stream(self, group: str, start: int, count: int) -> np.ndarray:
        """Positions ``start .. start + count`` of the group's endless stream of shuffled passes."""
        members = self.members[group]
        positions = np.arange(start, start + count)
        passes = positions // len(members)
        picked = np.empty(count, dtype=np.int64)
        for number in np.unique(passes):
            chosen = passes == number
            order = self._permutation(len(members), [self.seed, zlib.crc32(group.encode()), int(number)])
            picked[chosen] = members[order[positions[chosen] % len(members)]]
        return picked

    def _permutation(self, size: int, entropy: list[int]) -> np.ndarray:
        return np.random.default_rng(entropy).permutation(size) if self.shuffle else np.arange(size)

    @property
    def epoch_size(self) -> int:
        """Samples in one epoch's global order (before padding or dropping the last global batch)."""
        return len(self.groups) if self.ratios is None else self._units() * sum(self.ratios.values())

    def _units(self) -> int:
        return math.ceil(len(self.members[self.anchor]) / self.ratios[self.anchor])

    def _epoch_batches(self) -> int:
        full, partial = divmod(self.epoch_size, self.global_batch_size)
        return full if self.drop_last or partial == 0 else full + 1

    def __iter__(self) -> Iterator[int]:
        order = self.global_order(self.epoch)
        batches, size = self._epoch_batches(), self.global_batch_size
        if len(order) < batches * size and self.world_size > 1:  # wrap around so every rank gets full batches
            order = np.resize(order, batches * size)
        start, self.skip_batches = self.skip_batches, 0
        for batch in range(start, batches):
            first = batch * size + self.rank * self.batch_size
            yield from order[first:first + self.batch_size].tolist()

    def __len__(self) -> int:
        """Indices the next iteration yields on this rank (after a resume: what is left of the epoch)."""
        batches = self._epoch_batches() - self.skip_batches
        if self.world_size > 1 or self.drop_last:
            return batches * self.batch_size
        return max(0, self.epoch_size - self.skip_batches * self.batch_size)

    def state_dict(self, batches_done: int) -> dict[str, Any]:
        """Position after ``batches_done`` batches of the current epoch (steps, not prefetched batches)."""
        return {"epoch": self.epoch, "batches_done": batches_done, **self._fingerprint()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration continues ``state['epoch']`` after ``state['batches_done']`` global batches."""
        expected = self._fingerprint()
        different = {key: (state.get(key), value) for key, value in expected.items() if state.get(key) != value}
        if different:
            raise ValueError("cannot resume the data order: the sampler differs from the saved one in "
                             + ", ".join(f"{k} (saved {s!r}, now {n!r})" for k, (s, n) in different.items())
                             + "; resume with the same data, seed, ratios and global batch size")
        self.epoch, self.skip_batches = int(state["epoch"]), int(state["batches_done"])

    def _fingerprint(self) -> dict[str, Any]:
        return {"seed": self.seed, "global_batch_size": self.global_batch_size, "drop_last": self.drop_last,
                "shuffle": self.shuffle, "ratios": self.ratios, "anchor": self.anchor,
                "group_sizes": {g: len(m) for g, m in self.members.items()}}
