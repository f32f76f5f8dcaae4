"""An endless, resumable stream of this process's micro-batches over consecutive epochs."""

from __future__ import annotations

from typing import Any

import torch

from avlm.data.sampler import ModalityMixSampler


class DataStream:
    """Micro-batches epoch after epoch; ``epoch`` / ``batches_done`` say where the next one comes from.

    Starting an epoch's DataLoader iterator draws worker seeds from torch's global RNG; that draw is undone, so the
    training RNG (dropout) does not depend on where epochs start, and a resumed run draws the same numbers as an
    uninterrupted one.

    Args:
        sampler: the loader's sampler (already positioned by ``load_state_dict`` when resuming).
        loader: the DataLoader.
    """

    def __init__(self, sampler: ModalityMixSampler, loader: torch.utils.data.DataLoader) -> None:
        self.sampler, self.loader = sampler, loader
        self.epoch, self.batches_done = sampler.epoch, sampler.skip_batches
        self._iterator: Any = None

    def next(self) -> dict[str, Any]:
        while True:
            if self._iterator is None:
                self.sampler.set_epoch(self.epoch)
                state = torch.get_rng_state()
                self._iterator = iter(self.loader)
                torch.set_rng_state(state)
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator, self.epoch, self.batches_done = None, self.epoch + 1, 0
                continue
            self.batches_done += 1
            return batch

    def state_dict(self) -> dict[str, Any]:
        """The sampler position after the batches handed out so far (for the checkpoint)."""
        return {**self.sampler.state_dict(self.batches_done), "epoch": self.epoch}
