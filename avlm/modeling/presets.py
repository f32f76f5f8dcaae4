"""Named model presets: ``avlm-tiny`` (CPU tests and smoke runs; ``-mbank`` and ``-btadapter`` variants with the seeds'
temporal modules) and the shape of VideoLLaMA2.1-7B-AV.

Plain data (no model code): ``AVLMConfig.from_preset(name, **overrides)`` gives the model config,
``avlm.processing.MediaConfig.from_preset(name)`` the processor's media settings. ``avlm build OUT --preset NAME``
turns them into a random-init model folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from avlm.constants import PLACEHOLDER_TOKENS, TINY_SPECIAL_TOKENS
from vision.preprocess import SIGLIP, ImageProcessorConfig


@dataclass(frozen=True)
class Preset:
    """A named architecture: the model config fields, the media settings and where the tokenizer comes from."""

    model: dict[str, Any]
    """``AVLMConfig`` fields (read by ``AVLMConfig.from_preset``)."""
    media: dict[str, Any]
    """``avlm.processing.MediaConfig`` fields (read by ``MediaConfig.from_preset``)."""
    tokenizer: Literal["tiny", "tiny-avsynth", "llm"]
    """``"tiny"``: train :func:`avlm.processing.tokenizer.train_tiny_tokenizer`; ``"tiny-avsynth"``: the same with
    AV-Synth's words as single tokens (vocabulary of the preset's LLM; ``avlm.synth.tokenizer.tokenizer_for_preset``);
    ``"llm"``: the LLM checkpoint's own tokenizer."""
    description: str


# The tiny tokenizer's special tokens come first, so their ids are their positions.
_TINY_IDS = {name: TINY_SPECIAL_TOKENS.index(token) for name, token in PLACEHOLDER_TOKENS.items()}

_TINY_LLM = {
    "model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 4096,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
    "bos_token_id": None, "eos_token_id": TINY_SPECIAL_TOKENS.index("<|im_end|>"),
    "pad_token_id": TINY_SPECIAL_TOKENS.index("<|endoftext|>"),
}
_TINY_SIGLIP = {
    "model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "image_size": 16, "patch_size": 4,
}
_TINY_BEATS = {
    "embed_dim": 16, "encoder_embed_dim": 32, "encoder_layers": 2, "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 4, "conv_pos": 8, "conv_pos_groups": 4, "num_buckets": 32, "max_distance": 40,
    "predictor_class": 5, "hidden_size": 32,
}
_QWEN2_7B_INSTRUCT = {
    "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "sliding_window": 131072,
    "use_sliding_window": False, "max_window_layers": 28, "bos_token_id": 151643, "eos_token_id": 151645,
    "hidden_act": "silu",
}
_SIGLIP_SO400M_384 = {
    "model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
    "num_attention_heads": 16, "image_size": 384, "patch_size": 14, "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
}

PRESETS: dict[str, Preset] = {
    "avlm-tiny": Preset(
        model={
            "text_config": _TINY_LLM,
            "encoders": {"video": {"name": "siglip", "config": _TINY_SIGLIP, "options": {"select_layer": -2}},
                         "audio": {"name": "beats", "config": _TINY_BEATS, "options": {}}},
            "connectors": {"video": {"name": "stc_connector_v35", "options": {}},
                           "audio": {"name": "mlp2x_gelu", "options": {}}},
            "placeholder_token_ids": _TINY_IDS,
            "av_fusion": "separate",
        },
        media={"num_frames": 4, "image_frames": 2, "image_processor": ImageProcessorConfig(size=16),
               "audio_features": "fbank", "n_mels": 128, "max_audio_seconds": 10.0},
        tokenizer="tiny",
        description="random-init test model: Qwen2 d=32 x 2 layers, SigLIP d=32 on 16 px frames (4x4 patches), "
                    "BEATs d=32 x 2 layers, STC v35 + mlp2x_gelu, 4 frames, the tiny trained tokenizer",
    ),
    "videollama2.1-7b-av": Preset(
        model={
            "text_config": _QWEN2_7B_INSTRUCT,
            "encoders": {"video": {"name": "siglip", "config": _SIGLIP_SO400M_384, "options": {"select_layer": -2}},
                         "audio": {"name": "beats", "config": {}, "options": {}}},
            "connectors": {"video": {"name": "stc_connector_v35", "options": {}},
                           "audio": {"name": "mlp2x_gelu", "options": {}}},
            "placeholder_token_ids": {"video": -201, "audio": -202, "image": -200},
            "av_fusion": "concat_at_video",
        },
        media={"num_frames": 16, "image_frames": 16, "image_processor": SIGLIP, "audio_features": "fbank",
               "n_mels": 128, "max_audio_seconds": 30.0},
        tokenizer="llm",
        description="the architecture of DAMO-NLP-SG/VideoLLaMA2.1-7B-AV: Qwen2-7B-Instruct, SigLIP so400m-384 "
                    "(layer -2), default BEATs, STC v35 (16 frames -> 1352 tokens), mlp2x_gelu, audio appended "
                    "to the video tokens at one <video> placeholder (ids -201/-202/-200 as in the official code)",
    ),
}


PRESETS["avlm-demo"] = Preset(
    model={**PRESETS["avlm-tiny"].model,
           "text_config": {**_TINY_LLM, "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128},
           "connectors": {"video": {"name": "spatial_pool", "options": {"grid": 2}},
                          "audio": {"name": "mlp2x_gelu", "options": {}}}},
    media=PRESETS["avlm-tiny"].media,
    tokenizer="tiny-avsynth",
    description="avlm-tiny for the CPU demo (docs/avsynth.md, learnability studies): the LLM at d=64 (d=32 cannot "
                "learn motion direction; d=64 beat it on held-out video, AV and caption scores for +16 s), "
                "spatial_pool 2x2 per frame (16 video tokens for 4 frames; the tiny STC keeps less of its random "
                "features), and the tiny "
                "tokenizer with AV-Synth's words as single tokens (vocabulary 1024)",
)

PRESETS["avlm-demo-full"] = Preset(
    model={**PRESETS["avlm-demo"].model,
           "text_config": {**PRESETS["avlm-demo"].model["text_config"], "hidden_size": 128, "intermediate_size": 256},
           "encoders": {**PRESETS["avlm-demo"].model["encoders"],
                        "video": {"name": "siglip", "config": {**_TINY_SIGLIP, "image_size": 32, "patch_size": 8},
                                  "options": {"select_layer": -2}}},
           "connectors": {"video": {"name": "spatial_pool", "options": {"grid": 4}},
                          "audio": {"name": "mlp2x_gelu", "options": {}}}},
    media={**PRESETS["avlm-demo"].media, "image_processor": ImageProcessorConfig(size=32)},
    tokenizer="tiny-avsynth",
    description="avlm-demo for `avlm demo --full` (docs/avsynth.md): the LLM at d=128 (d=128 x 2 learned motion "
                "direction from the video where d=32 did not), 32 px frames in 8 px patches and every patch kept "
                "(spatial_pool 4x4: 64 video tokens for 4 frames; at 16 px pooled to 2x2, audio-visual sync stayed "
                "at 67% held-out, at 32 px it reached 98%)",
)

PRESETS["avsynth-100m"] = Preset(
    model={
        "text_config": {**_TINY_LLM, "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12,
                        "num_attention_heads": 12, "num_key_value_heads": 4, "vocab_size": 1024,
                        "rope_theta": 10000.0},
        "encoders": {"video": {"name": "siglip", "options": {"select_layer": -2}, "config": {
                         **_TINY_SIGLIP, "hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6,
                         "num_attention_heads": 6, "image_size": 64, "patch_size": 8}},
                     "audio": {"name": "beats", "options": {}, "config": {
                         **_TINY_BEATS, "embed_dim": 128, "encoder_embed_dim": 384, "encoder_layers": 4,
                         "encoder_ffn_embed_dim": 1536, "encoder_attention_heads": 6, "conv_pos": 32,
                         "conv_pos_groups": 8, "hidden_size": 384}}},
        "connectors": {"video": {"name": "ccam", "options": {"num_queries": 64}},
                       "audio": {"name": "mlp2x_gelu", "options": {}}},
        "placeholder_token_ids": _TINY_IDS,
        "av_fusion": "separate",
    },
    media={**PRESETS["avlm-tiny"].media, "num_frames": 8, "image_processor": ImageProcessorConfig(size=64)},
    tokenizer="tiny-avsynth",
    description="~100M parameters for AV-Synth on one GPU (scripts/recipes/avsynth_gpu.yaml): Qwen2 d=768 x 12, "
                "SigLIP d=384 x 6 on 64 px frames (8 px patches), BEATs d=384 x 4, CCAM with 64 queries, 8 frames, "
                "the AV-Synth tokenizer. Compare video connectors at 64 tokens with `avlm build --connector`.",
)

_TINY_CLIP = {
    "model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
    "num_attention_heads": 2, "image_size": 16, "patch_size": 4,
}

PRESETS["avlm-tiny-mbank"] = Preset(
    model={**PRESETS["avlm-tiny"].model,
           "connectors": {"video": {"name": "memory_bank", "options": {
                              "num_queries": 8, "num_layers": 2, "memory_length": 2, "chunk_frames": 2}},
                          "audio": {"name": "mlp2x_gelu", "options": {}}}},
    media=PRESETS["avlm-tiny"].media,
    tokenizer="tiny",
    description="avlm-tiny with MA-LMM's memory bank as the video connector: frames stream through a 2-layer "
                "Q-Former 2 at a time, the banks keep 2 time steps (MBC merges the rest), 8 video tokens whatever "
                "the frame count",
)

PRESETS["avlm-tiny-btadapter"] = Preset(
    model={**PRESETS["avlm-tiny"].model,
           "encoders": {"video": {"name": "bt_adapter_clip", "config": _TINY_CLIP, "options": {"depth": 2}},
                        "audio": PRESETS["avlm-tiny"].model["encoders"]["audio"]}},
    media=PRESETS["avlm-tiny"].media,
    tokenizer="tiny",
    description="avlm-tiny with a BT-Adapter video encoder: CLIP d=32 x 3 layers on 16 px frames (4x4 patches), "
                "a depth-2 temporal branch on its last 2 layers (train it with trainable.encoders.video=adapter), "
                "STC v35 + mlp2x_gelu",
)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is an error listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
