"""``AVLMForCausalLM``: a Hugging Face causal LM fed ``inputs_embeds``, with encoders and connectors keyed by modality.

Notation:
    b: batch rows, b_v / b_a: video / audio items in the batch, t: frames, n: encoder tokens per frame (or per audio
    clip), d: encoder width, D: LLM width, H, W: frame size, f: audio feature frames, m: mel bins,
    L: text length (one token per placeholder), L': length after the placeholders are expanded.

The forward path reads as stages: ``encode`` (all frames of the batch through the vision encoder in one call, audio
clips in one call per distinct length) -> ``connect`` (connectors to LLM tokens) -> ``merge`` (media tokens
written at their placeholders, :mod:`avlm.splice`) -> ``llm``. Rows of one batch may be video-only, audio-only,
audio-visual or text-only. Media inputs use the collator's layout (:func:`avlm.data.collate`)::

    video_pixels        [b_v, t_max, 3, H, W]  frames, zero-padded after each video's frame count
    video_frame_counts  [b_v]                  real frames per video (None: all t_max)
    video_sample_index  [b_v]                  batch row of each video (None: rows of the placeholders, in order)
    audio_features      [b_a, f_max, m]        fbank / log-mel frames, zero-padded
    audio_lengths       [b_a]                  real feature frames per clip (None: all f_max)
    audio_sample_index  [b_a]                  batch row of each clip (None: as for video)

State-dict layout (what the official-checkpoint converter maps onto): ``llm.*`` (the LLM's own names, e.g.
``llm.model.layers.0...``, ``llm.lm_head.weight``), ``encoders.video.*``, ``encoders.audio.*``,
``connectors.video.*``, ``connectors.audio.*`` (each module's own key names).
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Any

import torch
from einops import rearrange
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from avlm.config import AVLMConfig
from avlm.loss import causal_lm_loss
from avlm.packing import pack_sequences
from avlm.splice import MergedInputs, item_counts, merge_media

# Keys of an avlm.data.collate batch (or a Processor output) that forward / generate take; the rest (ids,
# modality_mask, media_errors) is bookkeeping for the training loop.
MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "labels", "video_pixels", "video_frame_counts",
                     "video_sample_index", "audio_features", "audio_lengths", "audio_sample_index")


class AVLMForCausalLM(PreTrainedModel, GenerationMixin):
    """Audio-visual LLM by composition: ``self.llm`` (``AutoModelForCausalLM``), ``self.encoders`` and
    ``self.connectors`` (``nn.ModuleDict`` keyed by modality).

    Build random-init from a config (``AVLMForCausalLM(config)``, modules from the registries), pass modules in
    (tests, ``avlm build`` from parts), or load with :meth:`from_pretrained`.
    """

    config_class = AVLMConfig
    config: AVLMConfig
    base_model_prefix = "avlm"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules: list[str] = []

    def __init__(self, config: AVLMConfig, llm: nn.Module | None = None, encoders: dict[str, nn.Module] | None = None,
                 connectors: dict[str, nn.Module] | None = None) -> None:
        super().__init__(config)
        if llm is None or encoders is None or connectors is None:
            from avlm.builders import build_parts

            built = build_parts(config)
            llm, encoders, connectors = (given if given is not None else default
                                         for given, default in zip((llm, encoders, connectors), built, strict=True))
        self.llm = llm
        if self.llm.config._attn_implementation is None:  # an LLM built before this config: give it this model's kernel
            self.llm.set_attn_implementation(self.config._attn_implementation)
        self.encoders = nn.ModuleDict(encoders)
        self.connectors = nn.ModuleDict(connectors)
        if set(self.encoders) != set(self.connectors) or not set(self.encoders) <= set(config.placeholder_token_ids):
            raise ValueError(f"encoders {sorted(self.encoders)} and connectors {sorted(self.connectors)} must cover "
                             f"the same modalities, each with a placeholder in {config.placeholder_token_ids}")
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any,
                        **kwargs: Any) -> AVLMForCausalLM:
        """Load a local avlm folder (``config.json`` + safetensors) strictly; see :func:`avlm.checkpoint.load_model`.

        Keyword arguments: ``config``, ``dtype`` (``"auto"``: as saved), ``device``, ``attn_implementation``.
        """
        from avlm.checkpoint import load_model

        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes keyword arguments only, got {len(model_args)} "
                            "positional arguments after the path")
        return load_model(cls, pretrained_model_name_or_path, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *, max_shard_size: int | str = "5GB",
                        state_dict: dict[str, torch.Tensor] | None = None, is_main_process: bool = True,
                        safe_serialization: bool = True) -> None:
        """Write the model folder (safetensors only); see :func:`avlm.checkpoint.save_model`."""
        from avlm.checkpoint import save_model

        if not safe_serialization:
            raise ValueError("avlm saves safetensors only (safe_serialization=False would write a pickle)")
        if is_main_process:
            save_model(self, save_directory, max_shard_size, state_dict)

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing: every part initialises itself when built, and pretrained parts passed in must stay as they are."""

    def train(self, mode: bool = True) -> AVLMForCausalLM:
        """Train/eval mode; encoders without a trainable parameter stay in eval mode (no dropout or layer drop in
        frozen towers)."""
        super().train(mode)
        for encoder in self.encoders.values():
            if not any(parameter.requires_grad for parameter in encoder.parameters()):
                encoder.eval()
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.llm.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.llm.get_output_embeddings()

    # ----------------------------------------------------------------------------------------------- stages
    def encode_video(self, pixels: torch.Tensor, frame_counts: torch.Tensor | None) -> list[torch.Tensor]:
        """Frames of every video through the vision encoder in one call: [b_v, t, 3, H, W] -> b_v x [t_i, n, d]."""
        counts = item_counts(frame_counts, pixels.shape[0], pixels.shape[1], "video_frame_counts")
        valid = torch.arange(pixels.shape[1], device=pixels.device)[None] < counts.to(pixels.device)[:, None]
        frames = pixels[valid].to(_dtype(self.encoders["video"]))
        tokens = self.encoders["video"](rearrange(frames, "t c h w -> 1 t c h w"))
        return list(rearrange(tokens, "1 t n d -> t n d").split(counts.tolist()))

    def connect_video(self, videos: list[torch.Tensor]) -> list[torch.Tensor]:
        """Video connector per group of equal frame count: b_v x [t_i, n, d] -> b_v x [n_i', D]."""
        out: list[torch.Tensor | None] = [None] * len(videos)
        for frames in sorted({len(video) for video in videos}):
            members = [i for i, video in enumerate(videos) if len(video) == frames]
            tokens = self.connectors["video"](torch.stack([videos[i] for i in members]))
            for i, item in zip(members, tokens, strict=True):
                out[i] = item
        return out

    def encode_audio(self, features: torch.Tensor, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        """Audio encoder, one call per group of equal-length clips: [b_a, f, m], [b_a] -> b_a x [n_i, d].

        Clips of one call are never padded, so a clip's tokens do not depend on what it is batched with (BEATs'
        reference padding rule would let padded frames reach valid tokens). Official VideoLLaMA2 audio is always
        30 s long: one call.
        """
        lengths = item_counts(lengths, features.shape[0], features.shape[1], "audio_lengths")
        features = features.to(_dtype(self.encoders["audio"]))
        out: list[torch.Tensor | None] = [None] * len(features)
        for length in sorted(set(lengths.tolist())):
            members = [i for i, value in enumerate(lengths.tolist()) if value == length]
            full = torch.full((len(members),), length, dtype=torch.long, device=features.device)
            tokens, counts = self.encoders["audio"](features[members, :length], full)
            for i, item, count in zip(members, tokens, counts.tolist(), strict=True):
                out[i] = item[:count]
        return out

    def connect_audio(self, clips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Token-wise audio projector over every clip at once: b_a x [n_i, d] -> b_a x [n_i, D]."""
        projected = self.connectors["audio"](rearrange(torch.cat(clips), "n d -> 1 n d"))
        return list(rearrange(projected, "1 n d -> n d").split([len(clip) for clip in clips]))

    def merge(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor | None,
              media: dict[str, list[torch.Tensor]], sample_index: dict[str, torch.Tensor | None],
              padding_side: str | None = None) -> MergedInputs:
        """Write media tokens at their placeholders: ids [b, L] + media -> embeddings [b, L', D] (see avlm.splice).

        ``padding_side``: where rows that come out shorter are padded; None: as the text is padded ("right" when it
        is not padded at all). Generation passes "left".
        """
        return merge_media(input_ids, attention_mask, labels, media, sample_index, self.config.placeholder_token_ids,
                           self.config.av_fusion, self.get_input_embeddings(), padding_side)

    def embed_multimodal(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        video_pixels: torch.Tensor | None = None,
        video_frame_counts: torch.Tensor | None = None,
        video_sample_index: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
        audio_sample_index: torch.Tensor | None = None,
        padding_side: str | None = None,
    ) -> MergedInputs:
        """encode -> connect -> merge (inputs as in the module docstring; ``padding_side`` as in :meth:`merge`)."""
        media: dict[str, list[torch.Tensor]] = {}
        for modality, given in (("video", video_pixels), ("audio", audio_features)):
            if given is not None and modality not in self.encoders:
                raise ValueError(f"{modality} input given, but this model has no {modality} encoder "
                                 f"(modalities: {sorted(self.encoders)})")
        if video_pixels is not None:
            media["video"] = self.connect_video(self.encode_video(video_pixels, video_frame_counts))
        if audio_features is not None:
            media["audio"] = self.connect_audio(self.encode_audio(audio_features, audio_lengths))
        index = {"video": video_sample_index, "audio": audio_sample_index}
        return self.merge(input_ids, attention_mask, labels, media, index, padding_side)

    # ---------------------------------------------------------------------------------------- forward / generate
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        video_pixels: torch.Tensor | None = None,
        video_frame_counts: torch.Tensor | None = None,
        video_sample_index: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
        audio_sample_index: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_logits: bool | None = None,
        pack: bool = False,
        **llm_kwargs: Any,
    ) -> Any:
        """Logits and/or the loss of the spliced sequence: logits [b, L', vocab], loss a scalar.

        Either ``input_ids`` (+ media) or ready ``inputs_embeds`` (e.g. from :meth:`embed_multimodal`); other
        keyword arguments (``past_key_values``, ``use_cache``, ``logits_to_keep``, ``num_items_in_batch``, ...) go
        to the LLM.

        With ``labels`` [b, L] and ``return_logits`` not True (the default then), only the loss is computed, by
        :func:`avlm.loss.causal_lm_loss`: the LM head scores just the labelled positions, in chunks, so the
        ``[b, L', vocab]`` fp32 logits of Hugging Face's loss are never built (same value up to float summation
        order). LLMs whose head is more than a projection (logit soft-capping or scaling) use the LLM's own loss.

        ``pack=True`` runs the LLM on one row of the real tokens only (:func:`avlm.packing.pack_sequences`: positions
        restart per sample, no padding FLOPs; same loss). Logits, if asked for, are then ``[1, T, vocab]``.
        """
        if inputs_embeds is None:
            merged = self.embed_multimodal(input_ids, attention_mask, labels, video_pixels, video_frame_counts,
                                           video_sample_index, audio_features, audio_lengths, audio_sample_index)
            inputs_embeds, attention_mask, position_ids, labels = (
                merged.inputs_embeds, merged.attention_mask, merged.position_ids, merged.labels)
        if pack:
            packed = pack_sequences(inputs_embeds, attention_mask, labels)
            inputs_embeds, position_ids, labels = packed.inputs_embeds, packed.position_ids, packed.labels
            attention_mask = None
            llm_kwargs["use_cache"] = False  # transformers applies the per-sample mask only without a cache
        if labels is not None and not return_logits and _plain_head(self.config.text_config):
            return self._loss_only(inputs_embeds, attention_mask, position_ids, labels, llm_kwargs)
        return self.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                        labels=labels, **llm_kwargs)

    def _loss_only(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                   position_ids: torch.Tensor | None, labels: torch.Tensor,
                   llm_kwargs: dict[str, Any]) -> CausalLMOutputWithPast:
        """The LLM's decoder, then the loss on the labelled positions only (no logits)."""
        num_items = llm_kwargs.pop("num_items_in_batch", None)
        llm_kwargs.pop("logits_to_keep", None)
        llm_kwargs.setdefault("use_cache", False)
        out = self.llm.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                     position_ids=position_ids, **llm_kwargs)
        loss = causal_lm_loss(out.last_hidden_state, labels, self.get_output_embeddings(), num_items)
        return CausalLMOutputWithPast(loss=loss, past_key_values=out.past_key_values,
                                      hidden_states=out.hidden_states, attentions=out.attentions)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        video_pixels: torch.Tensor | None = None,
        video_frame_counts: torch.Tensor | None = None,
        video_sample_index: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
        audio_sample_index: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> Any:
        """Generate from left-padded prompts with media: returns the NEW tokens only, [b, new].

        The prompt is spliced once into ``inputs_embeds`` and handed to the LLM's ``generate`` with this model's
        ``generation_config`` (KV cache, positions from the attention mask). Keyword arguments are passed on
        (``max_new_tokens``, ``do_sample``, ``streamer``, ...). Penalties such as ``repetition_penalty`` see only the
        generated tokens, as in VideoLLaMA2.
        """
        merged = self.embed_multimodal(input_ids, attention_mask, None, video_pixels, video_frame_counts,
                                       video_sample_index, audio_features, audio_lengths, audio_sample_index,
                                       padding_side="left")
        config = copy.deepcopy(generate_kwargs.pop("generation_config", self.generation_config))
        other_kwargs = config.update(**generate_kwargs)  # what is not a generation setting: streamer, stopping, ...
        with warnings.catch_warnings():  # that the penalty skips the prompt is intended (see above)
            warnings.filterwarnings("ignore", message="Passing `repetition_penalty` with `inputs_embeds`")
            return self.llm.generate(inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask,
                                     generation_config=config, **other_kwargs)

    def num_media_tokens(self, num_frames: int | None = None, num_audio_frames: int | None = None) -> dict[str, int]:
        """LLM tokens per placeholder: ``{"video": ..., "audio": ...}`` for a video of ``num_frames`` frames and audio
        of ``num_audio_frames`` feature frames (with ``concat_at_video`` the audio tokens count under video)."""
        counts = {}
        if num_frames is not None:
            encoder = self.encoders["video"]
            counts["video"] = self.connectors["video"].num_output_tokens(num_frames, encoder.num_patches)
        if num_audio_frames is not None:
            counts["audio"] = self.encoders["audio"].num_tokens(num_audio_frames)
        if self.config.av_fusion == "concat_at_video" and len(counts) == 2:
            counts = {"video": counts["video"] + counts.pop("audio")}
        return counts


def _plain_head(text_config: Any) -> bool:
    """True when the LLM's logits are ``lm_head(hidden)`` and nothing more (no soft-capping or scaling)."""
    extras = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")
    return not any(getattr(text_config, name, None) not in (None, 1.0) for name in extras)


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def register_auto_classes() -> None:
    """Register ``avlm`` with ``AutoConfig`` and ``AutoModelForCausalLM`` (``avlm/__init__.py`` calls this as soon as
    transformers is imported)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    AutoConfig.register(AVLMConfig.model_type, AVLMConfig, exist_ok=True)
    AutoModelForCausalLM.register(AVLMConfig, AVLMForCausalLM, exist_ok=True)


register_auto_classes()
