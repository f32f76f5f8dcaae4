"""Whisper audio tower: transformers' ``WhisperEncoder`` on log-mel features, with per-sample valid lengths.

Notation:
    b: batch, f: feature frames (10 ms each), m: mel bins, n: output tokens (max_source_positions), d: width (d_model).

Whisper's positional table fixes the input at ``2 * max_source_positions`` frames (3000 = 30 s for the released
models, giving 1500 tokens). Shorter inputs are padded inside with the value Whisper's own front end gives digital
silence, longer ones are cut; the returned lengths count the tokens that cover valid frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from einops import rearrange
from torch import nn

from vision.weights import check_state_dict, read_weights

if TYPE_CHECKING:
    from transformers import WhisperConfig

# Whisper's log-mel: log10 floored at 1e-10 and at (clip max - 8), then (x + 4) / 4. Digital silence therefore
# becomes max(normalised clip max - 2, (-10 + 4) / 4 = -1.5) in the normalised features.
_SILENCE_BELOW_MAX = 2.0
_SILENCE_FLOOR = -1.5
# Checkpoint keys of a full Whisper model that are not the encoder (decoder, output and classification heads).
_OTHER_PARTS = ("model.decoder.", "decoder.", "proj_out.", "projector.", "classifier.")


def silence_value(features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-sample normalised log-mel of digital silence, as Whisper's feature extractor pads a clip.

    Args:
        features: Whisper log-mel [b, f, m].
        valid: bool [b, f], True on real frames.

    Returns:
        [b] pad values: max(max over valid frames - 2, -1.5).
    """
    masked = features.masked_fill(~valid[:, :, None], float("-inf"))
    return (masked.amax(dim=(1, 2)) - _SILENCE_BELOW_MAX).clamp(min=_SILENCE_FLOOR)


class WhisperAudioEncoder(nn.Module):
    """Whisper encoder (conv stem, transformer, final LayerNorm); forward ([b, f, m], [b]) -> ([b, n, d], [b]).

    Build with ``from_config(WhisperConfig)`` (random init), ``from_pretrained(folder)`` (a local Whisper
    checkpoint; encoder weights only, strict) or ``tiny()``. Frozen (no gradients, eval mode) unless ``frozen=False``.
    """

    def __init__(self, config: WhisperConfig, attn_implementation: str = "sdpa", frozen: bool = True) -> None:
        """Build a random-init encoder.

        Args:
            config: transformers ``WhisperConfig`` (the encoder fields are used).
            attn_implementation: transformers attention backend ("sdpa", "eager", ...).
            frozen: disable gradients on every parameter and put the module in eval mode.
        """
        super().__init__()
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if not isinstance(config, WhisperConfig):
            raise TypeError(f"config must be a WhisperConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = WhisperEncoder._from_config(config, attn_implementation=attn_implementation)
        self.output_dim: int = config.d_model
        self.num_mel_bins: int = config.num_mel_bins
        self.max_source_positions: int = config.max_source_positions
        self.num_frames: int = 2 * config.max_source_positions  # conv2 has stride 2
        if frozen:
            self.requires_grad_(False)
            self.eval()

    @classmethod
    def from_config(cls, config: WhisperConfig, **options: Any) -> WhisperAudioEncoder:
        """Random-init encoder from a ``WhisperConfig`` (options as in ``__init__``)."""
        return cls(config, **options)

    @classmethod
    def tiny(cls, **options: Any) -> WhisperAudioEncoder:
        """Random-init test-size encoder: width 32, 2 layers, 80 mel bins, 100 frames -> 50 tokens."""
        from transformers import WhisperConfig

        config = WhisperConfig(
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            max_source_positions=50,
            max_target_positions=16,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            suppress_tokens=None,
            begin_suppress_tokens=None,
        )
        return cls(config, **options)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **options: Any) -> WhisperAudioEncoder:
        """Load the encoder of a local Whisper checkpoint folder (``WhisperForConditionalGeneration``,
        ``WhisperModel`` or a bare encoder), strictly: every encoder key with its shape, nothing left over
        except the decoder and heads.
        """
        from transformers import WhisperConfig
        from transformers.initialization import no_init_weights

        folder = Path(folder)
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{folder}: no config.json; pass a local Whisper checkpoint folder")
        model_type = json.loads(config_path.read_text()).get("model_type")
        if model_type != "whisper":
            raise ValueError(f"{folder}: config model_type is {model_type!r}; WhisperAudioEncoder loads 'whisper'")
        with no_init_weights():  # skip the random init: the strict load below overwrites every tensor
            encoder = cls(WhisperConfig.from_pretrained(folder), **options)
        encoder.load_upstream_state_dict(read_weights(folder), source=str(folder))
        return encoder

    def load_upstream_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state_dict") -> None:
        """Strictly load encoder keys: ``model.encoder.*``, ``encoder.*`` or encoder-relative (``conv1.*``, ...)."""
        for prefix in ("model.encoder.", "encoder."):
            if any(key.startswith(prefix) for key in state_dict):
                state_dict = {
                    key.removeprefix(prefix): value
                    for key, value in state_dict.items()
                    if key.startswith(prefix) or not key.startswith(_OTHER_PARTS)
                }
                break
        expected = {key: value.shape for key, value in self.encoder.state_dict().items()}
        check_state_dict(expected, state_dict, source)
        self.encoder.load_state_dict(state_dict, strict=True)

    def num_tokens(self, num_feature_frames: int) -> int:
        """Tokens per sample for an input of ``num_feature_frames`` frames: always max_source_positions (padded)."""
        if num_feature_frames < 1:
            raise ValueError(f"num_feature_frames must be >= 1, got {num_feature_frames}")
        return self.max_source_positions

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of log-mel features.

        Args:
            features: Whisper-normalised log-mel [b, f, m] (m = num_mel_bins). Frames past ``lengths`` are ignored
                (replaced by silence), so the result does not depend on how the batch was padded.
            lengths: valid frames per sample, LongTensor [b] in [1, f]; None means all f frames are valid.

        Returns:
            tokens [b, n, d] with n = max_source_positions, and lengths [b] = ceil(min(valid, 2n) / 2), the tokens
            computed from valid frames.
        """
        lengths = self._check_inputs(features, lengths)
        valid_frames = lengths.clamp(max=self.num_frames)
        features = features[:, : self.num_frames].to(self.encoder.conv1.weight.dtype)
        frame_index = torch.arange(self.num_frames, device=features.device)
        valid = frame_index[None, :] < valid_frames[:, None]
        padded = nn.functional.pad(features, (0, 0, 0, self.num_frames - features.shape[1]))
        padded = torch.where(valid[:, :, None], padded, silence_value(padded, valid)[:, None, None])
        tokens = self.encoder(input_features=rearrange(padded, "b f m -> b m f")).last_hidden_state
        return tokens, (valid_frames + 1) // 2

    def _check_inputs(self, features: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Validate shapes and return lengths as a LongTensor [b]."""
        if features.ndim != 3 or features.shape[2] != self.num_mel_bins:
            raise ValueError(
                f"features must have shape [b, f, {self.num_mel_bins}] (log-mel, frames first), "
                f"got {list(features.shape)}; transpose Whisper's [b, m, f] layout"
            )
        batch, num_frames = features.shape[:2]
        if lengths is None:
            return torch.full((batch,), num_frames, dtype=torch.long, device=features.device)
        if lengths.shape != (batch,) or lengths.is_floating_point():
            raise ValueError(
                f"lengths must be an integer tensor of shape [{batch}], got {lengths.dtype} {list(lengths.shape)}"
            )
        if bool((lengths < 1).any()) or bool((lengths > num_frames).any()):
            raise ValueError(f"lengths must lie in [1, {num_frames}] (the feature frames), got {lengths.tolist()}")
        return lengths.to(device=features.device, dtype=torch.long)
