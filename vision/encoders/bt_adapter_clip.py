"""BT-Adapter video encoder: a frozen CLIP vision model plus BT-Adapter's trainable temporal branch.

Notation:
    b: batch (videos), t: frames per video (1..``max_frames``), n: patch tokens per frame (``grid_size ** 2``),
    d: CLIP width.

forward ``[b, t, 3, H, W] -> [b, t, n, d]``: per frame and patch, ``(1 - w1) * branch + w1 * CLIP last layer``
(:meth:`fusion.BTAdapter.forward`; seed_systems.md §3.3-3.6). Unlike the SigLIP / CLIP towers this encoder mixes the
frames of a video (temporal attention per patch, a video CLS shared by all frames, a temporal embedding), so
``mixes_frames`` is True: the model's video branch gives it one video per row, never the frames of several videos
in one row.

What trains (the paper, §3.7): CLIP never does; the branch (``temporal_layers``, ``spatial_layers``,
``time_embedding``, ``cls_token`` and the two gates) does, in both the branch pretraining and the LLM stage. That is
the trainable policy's ``"adapter"`` mode for this encoder (:data:`adapter_modules`); ``"full"`` would also train
CLIP, ``"frozen"`` keeps the branch as loaded. Built frozen (eval mode, no gradients), like every tower.

Layering: the branch lives in ``fusion`` (with the other seed modules); ``vision`` imports it here, and ``fusion``
never imports ``vision``, so the registry entry sits with the other vision encoders.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from fusion.bt_adapter import BTAdapter
from vision.preprocess import CLIP, ImageProcessorConfig
from vision.weights import check_state_dict, read_weights


class BTAdapterVisionEncoder(BTAdapter):
    """Frozen CLIP + BT-Adapter branch as a vision encoder: ``[b, t, 3, H, W] -> [b, t, n, d]``.

    Args:
        clip_vision: a transformers ``CLIPVisionModel`` (its last ``depth`` layers seed the branch's spatial layers).
        frozen: build with no gradients and in eval mode (the trainable policy unfreezes the branch).
        image_processor: how frames are resized and normalised; default CLIP's at ``image_size``.
        **adapter_options: :class:`fusion.BTAdapter` options: ``depth``, ``max_frames``, ``drop_path_max``,
            ``output_scale``, ``middle_scale``, ``use_gates``.
    """

    model_types = ("clip", "clip_vision_model")
    """config.json model types that :meth:`from_pretrained` reads (``avlm build --vision`` picks the plain ``clip``
    tower for them unless the preset's video encoder is this one)."""
    mixes_frames = True
    """The tokens of a frame depend on the other frames of its video: encode one video per row."""
    adapter_modules = ("temporal_layers", "spatial_layers", "time_embedding", "cls_token", "output_gate",
                       "middle_gate")
    """Top-level submodules and parameters that the trainable policy's ``"adapter"`` mode trains (CLIP stays frozen)."""

    def __init__(self, clip_vision: nn.Module, frozen: bool = True, image_processor: ImageProcessorConfig | None = None,
                 **adapter_options: Any) -> None:
        super().__init__(clip_vision, **adapter_options)
        self.config = self.clip_vision.config
        self.image_processor = image_processor or dataclasses.replace(CLIP, size=self.image_size)
        if self.image_processor.size != self.image_size:
            raise ValueError(f"image_processor.size={self.image_processor.size} differs from the model's image_size="
                             f"{self.image_size}; frames must be preprocessed to the size the position embeddings "
                             "expect")
        if frozen:
            self.requires_grad_(False)
            self.eval()

    @classmethod
    def from_config(cls, config: Any, **options: Any) -> BTAdapterVisionEncoder:
        """Random-init CLIP (a ``CLIPVisionConfig``, or a ``CLIPConfig``'s vision half) with a fresh branch."""
        from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModel

        if isinstance(config, CLIPConfig):
            config = config.vision_config
        if not isinstance(config, CLIPVisionConfig):
            raise TypeError(f"config must be a CLIPVisionConfig (or CLIPConfig), got {type(config).__name__}")
        return cls(CLIPVisionModel(config), **options)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **options: Any) -> BTAdapterVisionEncoder:
        """A local CLIP folder (a full ``CLIPModel`` or a vision-only model), strictly loaded, and a fresh branch whose
        spatial layers copy its last ``depth`` layers (the paper's init). Released BT-Adapter branch weights load
        afterwards with :meth:`fusion.BTAdapter.load_reference_checkpoint` (``branch_only=True``)."""
        from transformers import CLIPVisionConfig, CLIPVisionModel

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no config.json; pass a local CLIPModel or CLIPVisionModel folder")
        clip_vision = CLIPVisionModel(CLIPVisionConfig.from_pretrained(folder))
        state = read_weights(folder)
        if any(key.startswith("vision_model.") for key in state):  # a full CLIPModel: its vision half only
            state = {key.removeprefix("vision_model."): value for key, value in state.items()
                     if key.startswith("vision_model.")}
        check_state_dict({key: value.shape for key, value in clip_vision.state_dict().items()}, state, str(folder))
        clip_vision.load_state_dict(state, strict=True)
        if (folder / "preprocessor_config.json").is_file():
            options.setdefault("image_processor", ImageProcessorConfig.from_pretrained(folder))
        return cls(clip_vision, **options)
