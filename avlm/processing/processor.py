"""``avlm.Processor``: (video, audio, text) -> padded model inputs, through the chat template and the media loaders.

Notation: b samples, t frames, S frame side, f audio feature frames, m mel bins, L tokens.

Video: a path (video file, or an image file by its suffix), a ``vision.VideoClip`` or uint8 frames ``[t, h, w, 3]``;
``num_frames`` frames uniformly over the clip (or at ``fps``), preprocessed to ``[t, 3, S, S]``. An image (one frame)
is repeated ``image_frames`` times so temporal connectors see a short still video.
Audio: a path, an ``audio.AudioClip`` or a mono waveform ``[n]`` at ``sample_rate``. The audio of a video file is read
over the same time span as its frames; features are the Kaldi fbank of BEATs (``[f, 128]``) or Whisper's log-mel
(``[f, m]``), one row per 10 ms.
Text: the user's question. The prompt is the tokenizer's chat template with the placeholders leading the user turn
(``"<video><audio>\\nquestion"``, the data side's layout; with ``av_fusion="concat_at_video"`` only ``<video>``).
The batch has the collator's layout (:func:`avlm.processing.collate`), left-padded for generation by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from avlm.constants import MODALITIES
from avlm.processing.collator import collate
from avlm.processing.media import MediaConfig
from avlm.processing.prompt import encode_with_placeholders, placeholder_modalities, prompt_prefix
from avlm.processing.sample import MediaRecord, load_media, make_sample

CONFIG_FILE = "processor_config.json"


class Processor:
    """Prompt building, tokenisation and media loading for one model.

    Args:
        tokenizer: the model's Hugging Face tokenizer (with a chat template).
        config: media settings (:class:`avlm.processing.media.MediaConfig`).
        placeholder_token_ids: ``AVLMConfig.placeholder_token_ids`` (ids may be negative: never tokenized).
        av_fusion: ``AVLMConfig.av_fusion``; ``"concat_at_video"`` prompts audio-visual samples with ``<video>`` only.
        system_prompt: a system message for every prompt; None leaves it to the chat template.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: MediaConfig, placeholder_token_ids: dict[str, int],
                 av_fusion: str = "separate", system_prompt: str | None = None) -> None:
        missing = sorted({"video", "audio"} - set(placeholder_token_ids))
        if missing:
            raise ValueError(f"placeholder_token_ids {placeholder_token_ids} lacks {missing}")
        self.tokenizer = tokenizer
        self.config = config
        self.placeholder_token_ids = dict(placeholder_token_ids)
        self.av_fusion = av_fusion
        self.system_prompt = system_prompt

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> Processor:
        """Tokenizer files + ``processor_config.json`` (media settings) + ``config.json`` (placeholders, fusion) of an
        avlm folder. Official VideoLLaMA2 folders have no ``processor_config.json``: load them with ``avlm.load`` or
        ``avlm.assembly.load_pretrained``, which convert them."""
        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}, so this is not an avlm model folder; official "
                                    "VideoLLaMA2 folders load with avlm.load(path) or "
                                    "avlm.assembly.load_pretrained(path) (model and processor together)")
        saved = json.loads((folder / CONFIG_FILE).read_text())
        model = json.loads((folder / "config.json").read_text())
        return cls(AutoTokenizer.from_pretrained(folder), MediaConfig.from_dict(saved["media"]),
                   model["placeholder_token_ids"], model["av_fusion"], saved["system_prompt"])

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write the tokenizer and ``processor_config.json`` (the model's ``config.json`` holds the placeholders)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        saved = {"media": self.config.to_dict(), "system_prompt": self.system_prompt}
        (folder / CONFIG_FILE).write_text(json.dumps(saved, indent=2) + "\n")

    def __call__(self, text: str | Sequence[str], videos: Sequence[Any] | Any | None = None,
                 audios: Sequence[Any] | Any | None = None, padding_side: str = "left") -> dict[str, Any]:
        """Model inputs for ``b`` prompts (a single prompt may come with single media items).

        Args:
            text: question(s), one per sample.
            videos: per sample a video (see the module docstring) or None.
            audios: per sample an audio (see the module docstring) or None.
            padding_side: ``"left"`` for generation, ``"right"`` for training or scoring.

        Returns:
            ``input_ids`` [b, L], ``attention_mask`` [b, L] and, when present, ``video_pixels`` [b_v, t, 3, S, S],
            ``video_frame_counts``, ``video_sample_index``, ``audio_features`` [b_a, f, m], ``audio_lengths``,
            ``audio_sample_index``: keyword arguments of ``AVLMForCausalLM.forward`` / ``generate``.
        """
        texts = [text] if isinstance(text, str) else list(text)
        videos = _per_sample(videos, len(texts), "videos", isinstance(text, str))
        audios = _per_sample(audios, len(texts), "audios", isinstance(text, str))
        samples = [self.sample(question, video, sound) for question, video, sound in zip(texts, videos, audios,
                                                                                          strict=True)]
        return collate(samples, self.tokenizer.pad_token_id, padding_side).model_inputs(labels=False)

    def sample(self, question: str, video: Any | None = None, audio: Any | None = None) -> dict[str, Any]:
        """One unpadded sample ``{"input_ids" [L], "labels" [L] (all ignored), "video"?, "audio"?}``
        (:mod:`avlm.processing.sample`; ``audio="auto"``: the video file's own soundtrack when it has one)."""
        media = load_media(self.config, video, audio)
        return make_sample(self.encode_prompt(question, media.modalities), media, question[:40])

    def prompt(self, question: str, modalities: Sequence[str]) -> str:
        """The chat-templated prompt text with the placeholders leading the user turn."""
        marked = placeholder_modalities([m for m in MODALITIES if m in modalities], self.av_fusion)
        prefix = prompt_prefix(self.tokenizer, marked, self.placeholder_token_ids)
        content = f"{prefix}\n{question}" if prefix else question
        messages = [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]
        messages.append({"role": "user", "content": content})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompt(self, question: str, modalities: Sequence[str]) -> torch.Tensor:
        """Prompt ids [L]: the text between placeholders tokenized without special-token insertion, joined by the
        placeholder ids (VideoLLaMA2's rule; equal to plain tokenisation when placeholders are special tokens)."""
        ids, _ = encode_with_placeholders(self.tokenizer, self.prompt(question, modalities), self.placeholder_token_ids)
        return torch.tensor(ids, dtype=torch.long)

    def load_media(self, record: MediaRecord) -> dict[str, torch.Tensor]:
        """Media of a training record (``avlm.data.Record``): ``{"video": [t, 3, S, S], "audio": [f, m]}`` with exactly
        the record's modalities (the ``media_loader`` of ``avlm.data.ConversationDataset``)."""
        visual = record.video if record.video is not None else record.image
        media = load_media(self.config, visual, record.audio_path)
        return {name: getattr(media, name) for name in media.modalities}


def _per_sample(values: Any, count: int, name: str, single: bool) -> list[Any]:
    if values is None:
        return [None] * count
    if single:
        return [values]
    if isinstance(values, (str, os.PathLike, torch.Tensor)) or len(values) != count:
        raise ValueError(f"{name} must be a list with one entry (or None) per prompt: {count} prompts")
    return list(values)
