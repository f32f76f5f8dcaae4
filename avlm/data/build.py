"""Turn a :class:`DataConfig` and the model's text/media interfaces into a validated dataset, sampler and loader."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from avlm.data.annotations import AnnotationReport, Record, load_annotations
from avlm.data.dataset import ConversationDataset, MediaLoader
from avlm.data.sampler import ModalityMixSampler
from avlm.data.settings import DataConfig
from avlm.processing.collator import collate

if TYPE_CHECKING:  # annotations only: importing this module stays free of transformers
    from transformers import PreTrainedTokenizerBase


@dataclass
class TrainingData:
    """What :func:`build_data` returns; ``report`` is the validation summary to print before training."""

    records: list[Record]
    report: AnnotationReport
    dataset: ConversationDataset
    sampler: ModalityMixSampler
    loader: torch.utils.data.DataLoader


def build_data(
    config: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    media_loader: MediaLoader,
    placeholder_token_ids: Mapping[str, int],
    batch_size: int,
    *,
    media_token_counter: Callable[[Record], Mapping[str, int]] | None = None,
    rank: int = 0,
    world_size: int = 1,
    av_fusion: str = "separate",
) -> TrainingData:
    """Validate the annotations, then build the dataset, the rank's sampler and a right-padding DataLoader.

    Args:
        config: the recipe's ``data`` section.
        tokenizer: the model's fast tokenizer (chat template, one placeholder token per modality).
        media_loader: record -> media tensors keyed by modality (the model's processor provides it; picklable).
        placeholder_token_ids: modality -> placeholder token id.
        batch_size: per-process batch size.
        media_token_counter: record -> media tokens per modality; required with ``config.max_length``.
        rank: this process's rank.
        world_size: number of processes.
        av_fusion: the model's ``AVLMConfig.av_fusion`` (``"concat_at_video"``: audio-visual samples get one
            ``<video>`` placeholder, as the official VideoLLaMA2-AV data does).

    Raises:
        AnnotationError: validation problems (all of them), unless ``config.skip_invalid``.
        ValueError: no record left, or invalid mixing ratios.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set one first (VideoLLaMA2 uses the unk token, Qwen2 "
                         "<|endoftext|>): tokenizer.pad_token = ...")
    if not config.sources:
        raise ValueError("data.sources is empty; list annotation files, e.g. sources: [{path: train.jsonl}]")
    records, report = load_annotations(config.sources, config.data_root, skip_invalid=config.skip_invalid,
                                       check_media=config.check_media)
    if not records:
        raise ValueError(f"no valid record left in data.sources:\n{report.summary()}")
    dataset = ConversationDataset(records, tokenizer, media_loader, placeholder_token_ids,
                                  system_prompt=config.system_prompt, max_length=config.max_length,
                                  media_token_counter=media_token_counter,
                                  allow_missing_audio=config.allow_missing_audio, cache_media=config.cache_media,
                                  av_fusion=av_fusion)
    sampler = ModalityMixSampler.from_records(records, batch_size, ratios=config.mix_ratios, anchor=config.mix_anchor,
                                              seed=config.seed, drop_last=config.drop_last, rank=rank,
                                              world_size=world_size, shuffle=config.shuffle)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=config.num_workers,
        collate_fn=functools.partial(collate, pad_token_id=tokenizer.pad_token_id, padding_side="right"),
        persistent_workers=config.num_workers > 0,
    )
    return TrainingData(records, report, dataset, sampler, loader)
