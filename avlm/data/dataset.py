"""A torch Dataset of validated records: tokenised conversations plus decoded media, built in DataLoader workers.

The media loader is injected (the model's processor provides it): ``media_loader(record) -> {"video": FloatTensor
[t, 3, H, W], "audio": FloatTensor [f, m]}`` with exactly the keys of ``record.modalities`` (an image record gives a
one-frame ``video``). It must be picklable (a module-level function or an object of a module-level class) so the
dataset can be sent to worker processes.

Missing audio. When ``allow_missing_audio`` is set and loading a record that has video and audio raises
``ValueError`` (``vision.MediaError``, ``audio.NoAudioStreamError``, ...), the record is loaded again without audio:
the sample keeps its video, its ``<audio>`` placeholder is left out, the collator's ``modality_mask["audio"]`` says
False for it, and ``sample["media_error"]`` holds the reason (summed per batch as ``media_errors``). Audio-only
records are never turned into text-only ones. Any other failure is re-raised naming the record id and its files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from avlm.data.annotations import Record
from avlm.data.conversation import tokenize_conversation

if TYPE_CHECKING:  # annotations only: importing this module stays free of transformers
    from transformers import PreTrainedTokenizerBase

MediaLoader = Callable[[Record], Mapping[str, torch.Tensor]]


class ConversationDataset(torch.utils.data.Dataset):
    """Samples ``{"input_ids", "labels", "id", "media_error", "video"?, "audio"?}`` for :func:`avlm.processing.collate`.

    Args:
        records: validated records (``load_annotations``).
        tokenizer: fast HF tokenizer with a chat template and one placeholder token per modality.
        media_loader: record -> media tensors keyed by modality (see the module docstring).
        placeholder_token_ids: modality -> placeholder token id.
        system_prompt: system message for every sample; None leaves it to the chat template.
        max_length: longest sequence after media expansion; None: no truncation.
        media_token_counter: record -> tokens per modality, needed with ``max_length`` to count media tokens.
        allow_missing_audio: keep the video of an audio-visual sample whose audio cannot be loaded.
        cache_media: keep each record's decoded media in memory after its first load (see ``DataConfig``).
        av_fusion: the model's layout; ``"concat_at_video"`` gives audio-visual samples one ``<video>`` placeholder.
    """

    def __init__(
        self,
        records: Sequence[Record],
        tokenizer: PreTrainedTokenizerBase,
        media_loader: MediaLoader,
        placeholder_token_ids: Mapping[str, int],
        *,
        system_prompt: str | None = None,
        max_length: int | None = None,
        media_token_counter: Callable[[Record], Mapping[str, int]] | None = None,
        allow_missing_audio: bool = False,
        cache_media: bool = False,
        av_fusion: str = "separate",
    ):
        if max_length is not None and media_token_counter is None:
            raise ValueError("max_length needs media_token_counter (record -> media tokens per modality) so media "
                             "tokens count against it; pass the model's counter or max_length=None")
        missing = {m for record in records for m in record.modalities} - set(placeholder_token_ids)
        if missing:
            raise ValueError(f"records use modalities {sorted(missing)} without a placeholder token; "
                             f"placeholder_token_ids has {sorted(placeholder_token_ids)}")
        self.records = list(records)
        self.tokenizer = tokenizer
        self.media_loader = media_loader
        self.placeholder_token_ids = dict(placeholder_token_ids)
        self.system_prompt = system_prompt
        self.max_length = max_length
        self.media_token_counter = media_token_counter
        self.allow_missing_audio = allow_missing_audio
        self.av_fusion = av_fusion
        self.cache: dict[tuple, tuple[dict[str, torch.Tensor], str | None]] | None = {} if cache_media else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        media, media_error = self._load_media(record)
        if media_error is not None:
            record = record.without_audio()
        if set(media) != set(record.modalities):
            raise ValueError(f"media_loader returned {sorted(media)} for record {record.id!r} ({record.location}), "
                             f"expected exactly {list(record.modalities)}")
        counts = None
        if self.media_token_counter is not None:
            counts = {m: n for m, n in self.media_token_counter(record).items() if m in record.modalities}
        try:
            sample = tokenize_conversation(self.tokenizer, record.conversations, self.placeholder_token_ids,
                                           record.modalities, self.system_prompt, self.max_length, counts,
                                           av_fusion=self.av_fusion)
        except ValueError as error:
            raise ValueError(f"record {record.id!r} ({record.location}): {error}") from error
        return {**sample, **media, "id": record.id, "media_error": media_error}

    def _load_media(self, record: Record) -> tuple[dict[str, torch.Tensor], str | None]:
        if not record.modalities:
            return {}, None
        if self.cache is None:
            return self._decode_media(record)
        key = (record.video, record.image, record.audio_path, record.audio is None, record.modalities)
        if key not in self.cache:
            self.cache[key] = self._decode_media(record)
        return self.cache[key]

    def _decode_media(self, record: Record) -> tuple[dict[str, torch.Tensor], str | None]:
        try:
            return dict(self.media_loader(record)), None
        except ValueError as error:
            if not (self.allow_missing_audio and record.modalities == ("video", "audio")):
                raise ValueError(f"record {record.id!r} ({record.location}, {_files(record)}): {error}") from error
            first = error
        try:
            return dict(self.media_loader(record.without_audio())), f"{record.audio_path}: {first}"
        except ValueError as error:
            raise ValueError(f"record {record.id!r} ({record.location}, {_files(record)}): {error} "
                             f"(also without audio; the audio error was: {first})") from error


def _files(record: Record) -> str:
    named = [("image", record.image), ("video", record.video), ("audio", record.audio_path)]
    return ", ".join(f"{kind} {path}" for kind, path in named if path is not None)
