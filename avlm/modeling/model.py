"""``AVLMForCausalLM``: a Hugging Face causal LM fed ``inputs_embeds``, with encoders and connectors keyed by modality.

Notation:
    b: batch rows, b_v / b_a: video / audio items in the batch, t: frames, n: encoder tokens per frame (or per audio
    clip), d: encoder width, D: LLM width, H, W: frame size, f: audio feature frames, m: mel bins,
    L: text length (one token per placeholder), L': length after the placeholders are expanded.

The forward path reads as stages: ``encode`` (all frames of the batch through the vision encoder in one call, audio
clips in one call per distinct length) -> ``connect`` (connectors to LLM tokens) -> ``merge`` (media tokens
written at their placeholders, :mod:`avlm.modeling.splice`) -> ``llm``. Rows of one batch may be video-only, audio-only,
audio-visual or text-only. Media inputs use the collator's layout (:func:`avlm.processing.collate`)::

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
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from avlm.constants import MEDIA_FIELDS
from avlm.modeling.branches import BRANCHES, BranchInputs
from avlm.modeling.configuration import AVLMConfig
from avlm.modeling.loss import causal_lm_loss
from avlm.modeling.packing import pack_sequences
from avlm.modeling.parts import build_parts
from avlm.modeling.serialization import load_model, save_model
from avlm.modeling.splice import MergedInputs, merge_media

MEDIA_INPUT_NAMES = tuple(key for keys in MEDIA_FIELDS.values() for key in keys)


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
        """Load a local avlm folder (``config.json`` + safetensors) strictly; see
        :func:`avlm.modeling.serialization.load_model`. Official VideoLLaMA2 folders: ``avlm.assembly.load_model``.

        Keyword arguments: ``config``, ``dtype`` (``"auto"``: as saved), ``device``, ``attn_implementation``.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes keyword arguments only, got {len(model_args)} "
                            "positional arguments after the path")
        return load_model(cls, pretrained_model_name_or_path, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *, max_shard_size: int | str = "5GB",
                        state_dict: dict[str, torch.Tensor] | None = None, is_main_process: bool = True,
                        safe_serialization: bool = True) -> None:
        """Write the model folder (safetensors only); see :func:`avlm.modeling.serialization.save_model`."""
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
    def media_tokens(self, modality: str, inputs: BranchInputs) -> list[torch.Tensor]:
        """One modality's items through its branch (encode -> connect): one ``[n_i, D]`` block per item."""
        return BRANCHES[modality].tokens(self.encoders[modality], self.connectors[modality], inputs)

    def merge(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor | None,
              media: dict[str, list[torch.Tensor]], sample_index: dict[str, torch.Tensor | None],
              padding_side: str | None = None) -> MergedInputs:
        """Write media tokens at their placeholders: ids [b, L] + media -> embeddings [b, L', D] (see
        :mod:`avlm.modeling.splice`). ``padding_side``: where rows that come out shorter are padded; None: as the
        text is padded ("right" when it is not padded at all). Generation passes "left"."""
        return merge_media(input_ids, attention_mask, labels, media, sample_index, self.config.placeholder_token_ids,
                           self.config.av_fusion, self.get_input_embeddings(), padding_side)

    def embed_multimodal(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        padding_side: str | None = None,
        run_all_branches: bool = False,
        **media: torch.Tensor | None,
    ) -> MergedInputs:
        """encode -> connect (each modality's branch, :mod:`avlm.modeling.branches`) -> merge.

        Args:
            input_ids, attention_mask, labels: the text, [b, L].
            padding_side: as in :meth:`merge`.
            run_all_branches: a modality without items in this batch still runs its branch on a dummy input and
                adds ``0 * sum(tokens)`` to the embeddings (values unchanged): every rank of sharded training then
                touches every parameter in the same order (FSDP / ZeRO-3 gather the same shards; DDP sees no unused
                parameter).
            media: the batch's media fields (module docstring; ``None`` values are absent fields).
        """
        unknown = sorted(set(media) - set(MEDIA_INPUT_NAMES))
        if unknown:
            raise TypeError(f"unknown media inputs {unknown}; the model takes {list(MEDIA_INPUT_NAMES)}")
        tokens: dict[str, list[torch.Tensor]] = {}
        index: dict[str, torch.Tensor | None] = {}
        zero = None
        for modality, branch in BRANCHES.items():
            inputs = branch.inputs(media)
            if inputs is not None and modality not in self.encoders:
                raise ValueError(f"{modality} input given, but this model has no {modality} encoder "
                                 f"(modalities: {sorted(self.encoders)})")
            if inputs is not None:
                tokens[modality] = self.media_tokens(modality, inputs)
                index[modality] = inputs.sample_index
            elif run_all_branches and modality in self.encoders:
                dummy = self.media_tokens(modality, branch.dummy(self.encoders[modality]))
                zero = sum(item.sum() for item in dummy) * 0.0 + (0.0 if zero is None else zero)
        merged = self.merge(input_ids, attention_mask, labels, tokens, index, padding_side)
        if zero is not None:
            merged.inputs_embeds = merged.inputs_embeds + zero.to(merged.inputs_embeds.dtype)
        return merged

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
        :func:`avlm.modeling.loss.causal_lm_loss`: the LM head scores just the labelled positions, in chunks, so the
        ``[b, L', vocab]`` fp32 logits of Hugging Face's loss are never built (same value up to float summation
        order). LLMs whose head is more than a projection (logit soft-capping or scaling) use the LLM's own loss.

        ``pack=True`` runs the LLM on one row of the real tokens only (:func:`avlm.modeling.packing.pack_sequences`:
        positions restart per sample, no padding FLOPs; same loss). Logits, if asked for, are then ``[1, T, vocab]``.
        """
        if inputs_embeds is None:
            merged = self.embed_multimodal(input_ids, attention_mask, labels, video_pixels=video_pixels,
                                           video_frame_counts=video_frame_counts, video_sample_index=video_sample_index,
                                           audio_features=audio_features, audio_lengths=audio_lengths,
                                           audio_sample_index=audio_sample_index)
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
        merged = self.embed_multimodal(input_ids, attention_mask, None, padding_side="left",
                                       video_pixels=video_pixels, video_frame_counts=video_frame_counts,
                                       video_sample_index=video_sample_index, audio_features=audio_features,
                                       audio_lengths=audio_lengths, audio_sample_index=audio_sample_index)
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


# Importing this module registers avlm with the Auto classes: AutoModelForCausalLM.from_pretrained(avlm_folder) works
# once avlm.modeling (or avlm.AVLMForCausalLM, avlm.load) has been imported.
AutoConfig.register(AVLMConfig.model_type, AVLMConfig, exist_ok=True)
AutoModelForCausalLM.register(AVLMConfig, AVLMForCausalLM, exist_ok=True)
