"""BT-Adapter: a trainable temporal branch alongside a frozen HF CLIP vision model.

Notation:
    b: batch
    t: frames (at most ``max_frames``)
    n: patch tokens per frame (``grid_size ** 2``); ``n'`` kept patches when tube-masked
    d: CLIP width
    L: CLIP layers; ``K = L - depth`` is the first tapped layer (0-based)

The frozen CLIP runs unchanged on every frame. Branch layer ``j`` consumes the output of CLIP layer ``K + j``:
at ``j = 0`` the patch tokens get CLIP's own position embedding plus a learned temporal embedding, and the branch
CLS is ``(mean_t CLS_K + cls_token + E_pos[0]) / 2``; for ``j > 0`` the branch input is the gated mix
``(1 - w2) * branch + w2 * [mean_t CLS ; patches]`` with ``w2 = sigmoid(middle_scale * middle_gate)``. Each branch
layer is temporal attention per patch (zero-initialised output projection, so the identity at init) followed by
CLIP-style spatial attention per frame (initialised as a copy of CLIP layer ``K + j``). Branch tokens are ordered
``(n t)``: index ``p * t + frame``. Readout per frame: ``LN_post((1 - w1) * branch_CLS + w1 * CLS_L)`` with
``w1 = sigmoid(output_scale * output_gate)``. Spec: seed_systems.md §3.12 (farewellthree/BT-Adapter, mmaction
``VITCLIPPretrained_BTAdapter``); tube masking here drops the same patches in every frame (the reference's mask
layout does not, its quirk 2).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from fusion._bt_layers import SpatialLayer, TemporalLayer, avlm_to_reference_key, reference_to_avlm_key


@dataclass
class BTAdapterOutput:
    backbone_hidden: tuple[Tensor, ...]  # CLIP hidden states, each [b, t, 1 + n, d], exactly as CLIP computes them
    branch_tokens: Tensor  # [b, 1 + n' t, d], ordered (n t)
    frame_cls: Tensor  # [b, t, d] after CLIP's post LayerNorm
    video_embed: Tensor  # [b, d_proj]: mean over t of visual_projection(frame_cls) (identity without projection)
    frame_tokens: Tensor | None  # [b, t, n, d] gated backbone/branch patch tokens; None when masked
    patch_mask: Tensor | None  # bool [b, n], True where a patch was dropped from the branch (every frame)


class BTAdapter(nn.Module):
    """Frozen CLIP vision model plus the BT-Adapter branch: ``[b, t, 3, H, W] -> [b, t, n, d]`` frame tokens.

    Args:
        clip_vision: a transformers ``CLIPVisionModel`` (or ``CLIPVisionModelWithProjection``); it is frozen.
        depth: number of branch layers (taps the last ``depth`` CLIP layers), 1..L.
        max_frames: size of the temporal embedding table (64 in the reference).
        drop_path_max: stochastic depth of the last branch layer (linearly from 0).
        output_scale: scale of the readout gate (``out_norm``, 1e4).
        middle_scale: scale of the branch-input gate (``middle_norm``, 1e2).
        use_gates: False replaces both gates by plain sums (the reference's ``use_norm=False``).
    """

    def __init__(self, clip_vision: nn.Module, depth: int = 4, max_frames: int = 64, drop_path_max: float = 0.1,
                 output_scale: float = 1e4, middle_scale: float = 1e2, use_gates: bool = True) -> None:
        super().__init__()
        from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

        projection = nn.Identity()
        if isinstance(clip_vision, CLIPVisionModelWithProjection):
            clip_vision, projection = clip_vision.vision_model, clip_vision.visual_projection
        if not isinstance(clip_vision, CLIPVisionModel):
            raise TypeError(f"clip_vision must be a transformers CLIPVisionModel or CLIPVisionModelWithProjection; "
                            f"got {type(clip_vision).__name__}")
        config = clip_vision.config
        if not 1 <= depth <= config.num_hidden_layers:
            raise ValueError(f"depth must be in 1..{config.num_hidden_layers} (CLIP layers); got {depth}")
        self.clip_vision = clip_vision.requires_grad_(False)
        self.visual_projection = projection.requires_grad_(False)
        self.depth, self.max_frames, self.use_gates = depth, max_frames, use_gates
        self.output_scale, self.middle_scale = output_scale, middle_scale
        self.output_dim, self.image_size = config.hidden_size, config.image_size
        self.grid_size = config.image_size // config.patch_size
        self.num_patches = self.grid_size**2
        first = config.num_hidden_layers - depth
        rates = [drop_path_max * j / max(depth - 1, 1) for j in range(depth)]  # linspace(0, max, depth)
        clip_layers = clip_vision.encoder.layers
        self.temporal_layers = nn.ModuleList(TemporalLayer(config, rate) for rate in rates)
        self.spatial_layers = nn.ModuleList(SpatialLayer(clip_layers[first + j], rate) for j, rate in enumerate(rates))
        self.spatial_layers.requires_grad_(True)
        self.time_embedding = nn.Embedding(max_frames, config.hidden_size)  # N(0, 1) as in the reference
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.output_gate = nn.Parameter(torch.zeros(config.hidden_size)) if use_gates else None
        self.middle_gate = nn.Parameter(torch.zeros(config.hidden_size)) if use_gates else None

    @classmethod
    def from_config(cls, vision_config, **options) -> BTAdapter:
        """Random-init CLIP (a ``CLIPVisionConfig``) with a fresh branch."""
        from transformers import CLIPVisionModel

        return cls(CLIPVisionModel(vision_config), **options)

    @classmethod
    def tiny(cls, **options) -> BTAdapter:
        """Test size: width 32, 3 layers, 32 px images, 8 px patches (16 patches), depth 2."""
        from transformers import CLIPVisionConfig

        config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                  image_size=32, patch_size=8)
        return cls.from_config(config, **({"depth": 2} | options))

    def reference_state_dict(self) -> dict[str, Tensor]:
        """This module's weights under the reference's names (mmaction ``VITCLIPPretrained_BTAdapter``, unprefixed)."""
        return {avlm_to_reference_key(key): value for key, value in self.state_dict().items()}

    def load_reference_state_dict(self, state_dict: dict[str, Tensor], prefix: str = "", branch_only: bool = False,
                                  source: str = "state_dict") -> None:
        """Load weights saved by the reference BT-Adapter (seed_systems.md §3.8 key names), strictly.

        Args:
            state_dict: reference tensors; only keys starting with ``prefix`` are read (a full recognizer checkpoint
                also holds the text tower and heads). Legacy ``timesFPN`` keys are read as ``btadapter``.
            prefix: ``"backbone."`` for mmaction checkpoints, ``""`` for a module-relative dict.
            branch_only: True reads only the branch (``btadapter_*``, ``balance*``) and keeps this CLIP's weights;
                False also requires every CLIP key (``layers.*``, ``pre_layrnorm.*``, ...).
            source: name of the origin for error messages.

        Raises:
            ValueError: listing every missing, unexpected and mis-shaped key (reference names) in one message.
        """
        expected = {key: value.shape for key, value in self.state_dict().items()
                    if not (branch_only and key.startswith(("clip_vision.", "visual_projection.")))}
        mapped, unexpected = {}, []
        for key, value in state_dict.items():
            if key.startswith(prefix):
                name = reference_to_avlm_key(key[len(prefix):])
                if name in expected:
                    mapped[name] = value
                else:
                    unexpected.append(key)
        missing = [prefix + avlm_to_reference_key(key) for key in expected if key not in mapped]
        misshaped = [f"{prefix}{avlm_to_reference_key(key)} {tuple(value.shape)} (expected {tuple(expected[key])})"
                     for key, value in mapped.items() if value.shape != expected[key]]
        if missing or unexpected or misshaped:
            def listed(keys: list[str]) -> str:
                return f"{len(keys)} {keys[:12]}{' ...' if len(keys) > 12 else ''}"

            hint = " (this adapter has no visual_projection: build it from CLIPVisionModelWithProjection)" if any(
                key.endswith("visual_projection.weight") for key in unexpected) else ""
            raise ValueError(f"{source}: cannot load BT-Adapter weights (prefix {prefix!r}, branch_only={branch_only})"
                             f": missing {listed(missing)}; unexpected {listed(unexpected)}; mis-shaped "
                             f"{listed(misshaped)}{hint}")
        self.load_state_dict(self.state_dict() | mapped, strict=True)

    def load_reference_checkpoint(self, path: str | Path, prefix: str = "backbone.", branch_only: bool = False
                                  ) -> None:
        """Read a reference checkpoint file (``.safetensors``, or ``.pth``/``.pt``/``.bin`` with ``weights_only``;
        an mmengine ``{"state_dict": ...}`` wrapper is unwrapped) and :meth:`load_reference_state_dict` it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such BT-Adapter checkpoint file")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint = load_file(str(path))
        else:
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as error:
                raise ValueError(
                    f"{path}: refused to load: it holds Python objects other than tensors (unpickling them could run "
                    "arbitrary code). Convert it once where you trust it: torch.save(torch.load(path, "
                    "weights_only=False)['state_dict'], 'state_dict.pt'), then load state_dict.pt") from error
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
            checkpoint = checkpoint["state_dict"]
        self.load_reference_state_dict(checkpoint, prefix=prefix, branch_only=branch_only, source=str(path))

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Frame tokens ``[b, t, n, d]``: ``(1 - w1) * branch + w1 * CLIP last layer`` per frame and patch."""
        return self.encode(pixel_values).frame_tokens

    def encode(self, pixel_values: Tensor, mask_ratio: float = 0.0, generator: torch.Generator | None = None
               ) -> BTAdapterOutput:
        """Run CLIP and the branch.

        Args:
            pixel_values: ``[b, t, 3, H, W]``, ``1 <= t <= max_frames``.
            mask_ratio: fraction of patches (``int(ratio * n)``) dropped from the branch, the same in every frame
                (tube masking for pretraining); CLIP always sees every patch.
            generator: random generator for the mask.
        """
        if pixel_values.dim() != 5 or not 1 <= pixel_values.shape[1] <= self.max_frames:
            raise ValueError(f"pixel_values must be [b, t, 3, H, W] with 1 <= t <= {self.max_frames} (max_frames); "
                             f"got shape {tuple(pixel_values.shape)}; sample fewer frames or pool frame pairs first")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio}")
        batch, frames = pixel_values.shape[:2]
        outputs = self.clip_vision(pixel_values=pixel_values.flatten(0, 1), output_hidden_states=True)
        hidden = tuple(rearrange(state, "(b t) m d -> b t m d", b=batch) for state in outputs.hidden_states)
        keep, patch_mask = self._kept_patches(batch, mask_ratio, pixel_values.device, generator)
        first = len(hidden) - 1 - self.depth
        branch = None
        for j, (temporal, spatial) in enumerate(zip(self.temporal_layers, self.spatial_layers, strict=True)):
            tapped = hidden[first + j + 1]
            branch = self._branch_input(tapped, keep) if branch is None else self._mix(branch, tapped, keep)
            branch = spatial(temporal(branch, frames), frames)
        last = hidden[-1]
        w1 = self._gate(self.output_gate, self.output_scale)
        # .to(last.dtype): a trained branch may stay float32 while the frozen CLIP is stored in bfloat16.
        frame_cls = self.clip_vision.post_layernorm(self._blend(branch[:, :1], last[:, :, 0], w1).to(last.dtype))
        frame_tokens = None
        if patch_mask is None:
            branch_patches = rearrange(branch[:, 1:], "b (n t) d -> b t n d", t=frames)
            frame_tokens = self._blend(branch_patches, last[:, :, 1:], w1)
        video_embed = self.visual_projection(frame_cls).mean(1)
        return BTAdapterOutput(hidden, branch, frame_cls, video_embed, frame_tokens, patch_mask)

    def train(self, mode: bool = True) -> BTAdapter:
        """Train the branch; the frozen CLIP always stays in eval mode."""
        super().train(mode)
        self.clip_vision.eval()
        return self

    @staticmethod
    def _gate(gate: Tensor | None, scale: float) -> Tensor | None:
        return None if gate is None else torch.sigmoid(scale * gate)

    @staticmethod
    def _blend(branch: Tensor, backbone: Tensor, weight: Tensor | None) -> Tensor:
        return branch + backbone if weight is None else (1 - weight) * branch + weight * backbone

    def _kept_patches(self, batch: int, mask_ratio: float, device: torch.device,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """Indices of the branch's patches ``[b, n']`` (sorted) and the dropped-patch mask (None when unmasked)."""
        dropped = int(mask_ratio * self.num_patches)
        if dropped == 0:
            return repeat(torch.arange(self.num_patches, device=device), "n -> b n", b=batch), None
        scores = torch.rand(batch, self.num_patches, generator=generator).to(device)
        keep = scores.argsort(dim=1)[:, dropped:].sort(dim=1).values
        patch_mask = torch.ones(batch, self.num_patches, dtype=torch.bool, device=device)
        return keep, patch_mask.scatter(1, keep, False)

    def _patches(self, tapped: Tensor, keep: Tensor) -> Tensor:
        """Kept patch tokens of a tapped layer in branch order: ``[b, t, 1 + n, d] -> [b, n' t, d]``."""
        patches = tapped[:, :, 1:].gather(2, repeat(keep, "b n -> b t n d", t=tapped.shape[1], d=tapped.shape[-1]))
        return rearrange(patches, "b t n d -> b (n t) d")

    def _branch_input(self, tapped: Tensor, keep: Tensor) -> Tensor:
        """First branch input: positions from CLIP's table plus the temporal embedding; the video CLS."""
        frames = tapped.shape[1]
        positions = self.clip_vision.embeddings.position_embedding.weight
        time = self.time_embedding.weight[:frames]
        patches = tapped[:, :, 1:] + positions[None, None, 1:] + time[None, :, None]
        cls = (tapped[:, :, :1].mean(1) + self.cls_token[0] + positions[None, :1]) / 2
        return torch.cat([cls, self._patches(torch.cat([tapped[:, :, :1], patches], dim=2), keep)], dim=1)

    def _mix(self, branch: Tensor, tapped: Tensor, keep: Tensor) -> Tensor:
        backbone = torch.cat([tapped[:, :, :1].mean(1), self._patches(tapped, keep)], dim=1)
        return self._blend(branch, backbone, self._gate(self.middle_gate, self.middle_scale))
