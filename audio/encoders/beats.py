"""BEATs audio tower (the one VideoLLaMA2-AV uses), written from the parity-fixture description, with the reference's
state_dict key names so that original BEATs ``.pt`` files and ``model.audio_tower.*`` weights load strictly.

Notation:
    b: batch, f: fbank frames (10 ms each), m: mel bins (128), p: patch side (16), t: time patches (f // p),
    n: tokens (t * m / p, time-major: token = time_patch * (m / p) + mel_patch), e: patch width (embed_dim),
    d: width (encoder_embed_dim).

Input is the raw Kaldi fbank (``audio.features.beats_fbank``); the encoder normalises it itself with
``(fbank - 15.41663) / (2 * 6.55582)`` (note 2 x std), as the reference does.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from audio.encoders._beats_config import NUM_MEL_BINS, BEATsConfig
from audio.encoders._beats_layers import LAYER_NORM_EPS, BEATsTransformer

FBANK_MEAN = 15.41663
FBANK_STD = 6.55582

__all__ = ["BEATsConfig", "BEATsEncoder", "reduce_padding_mask"]


def reduce_padding_mask(padding_mask: torch.Tensor, length: int) -> torch.Tensor:
    """The reference's padding-mask reduction to ``length`` positions: bool [b, L, ...] -> [b, length].

    The last ``L % length`` columns are dropped, the rest is grouped into ``length`` runs of consecutive columns
    (and any trailing axes), and a position is padded iff its whole run is. For tokens this groups consecutive fbank
    frames onto consecutive time-major tokens, not the frames a patch covers; it is kept as is for parity.
    """
    extra = padding_mask.shape[1] % length
    if extra:
        padding_mask = padding_mask[:, :-extra]
    return padding_mask.reshape(padding_mask.shape[0], length, -1).all(dim=-1)


class BEATsEncoder(nn.Module):
    """BEATs: 16x16 patch embedding of the normalised fbank, LayerNorm, optional projection, deep-norm transformer.

    ``forward(fbank [b, f, 128], lengths [b] | None) -> (tokens [b, n, d], lengths [b])``. Build with
    ``BEATsEncoder(config)`` / ``from_config`` (random init), ``from_pretrained(path)`` (an original BEATs ``.pt``),
    ``from_state_dict(cfg, state_dict)`` or ``tiny()``. Frozen (no gradients, eval mode) unless ``frozen=False``.
    """

    num_mel_bins: int = NUM_MEL_BINS

    def __init__(self, config: BEATsConfig, frozen: bool = True) -> None:
        super().__init__()
        if not isinstance(config, BEATsConfig):
            raise TypeError(f"config must be a BEATsConfig, got {type(config).__name__}; use BEATsConfig.from_dict")
        self.config = config
        patch, width = config.input_patch_size, config.encoder_embed_dim
        self.output_dim: int = width
        self.patch_embedding = nn.Conv2d(1, config.embed_dim, patch, stride=patch, bias=config.conv_bias)
        self.layer_norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self.post_extract_proj = nn.Linear(config.embed_dim, width) if config.embed_dim != width else None
        self.encoder = BEATsTransformer(config)
        self.predictor = nn.Linear(width, config.predictor_class) if config.finetuned_model else None
        self._reset_parameters()
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def _reset_parameters(self) -> None:
        """BERT-style normal(0.02) linears and table, then DeepNet gains on each layer's projections."""
        if self.patch_embedding.weight.is_meta:  # built on the meta device to be loaded: no init
            return
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        beta = (8.0 * self.config.encoder_layers) ** -0.25 if self.config.deep_norm else 1.0
        for layer in self.encoder.layers:
            attention = layer.self_attn
            for linear, gain in ((attention.q_proj, 1.0), (attention.k_proj, 1.0), (attention.v_proj, beta),
                                 (attention.out_proj, beta), (layer.fc1, beta), (layer.fc2, beta)):
                nn.init.xavier_normal_(linear.weight, gain=gain)

    @classmethod
    def from_config(cls, config: BEATsConfig, **options: Any) -> BEATsEncoder:
        """Random-init encoder (options as in ``__init__``)."""
        return cls(config, **options)

    @classmethod
    def tiny(cls, **options: Any) -> BEATsEncoder:
        """Random-init test-size encoder: width 32 (patches 16, projected), 2 layers, 4 heads, 32 buckets."""
        config = BEATsConfig(embed_dim=16, encoder_embed_dim=32, encoder_layers=2, encoder_ffn_embed_dim=64,
                             encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4, num_buckets=32,
                             max_distance=40, predictor_class=5, hidden_size=32)
        return cls(config, **options)

    @classmethod
    def from_state_dict(cls, config: BEATsConfig | dict[str, Any], state_dict: dict[str, torch.Tensor],
                        source: str = "state_dict", **options: Any) -> BEATsEncoder:
        """Encoder from a config (or a checkpoint ``cfg`` dict over the defaults) and reference-named weights."""
        if not isinstance(config, BEATsConfig | dict):
            raise TypeError(f"{source}: config must be a BEATsConfig or a cfg dict, got {type(config).__name__}")
        config = config if isinstance(config, BEATsConfig) else BEATsConfig.from_dict(config)
        with torch.device("meta"):  # no random init: the strict load below assigns every tensor
            encoder = cls(config, **options)
        encoder.load_reference_state_dict(state_dict, source=source, assign=True)
        return encoder

    @classmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> BEATsEncoder:
        """Load an original BEATs checkpoint (``{'cfg': dict, 'model': state_dict}``) with ``weights_only=True``.

        Raises:
            ValueError: the file needs arbitrary unpickling (refused, with how to convert it), or lacks ``model``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such BEATs checkpoint file")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            reason = str(error).partition("WeightsUnpickler error:")[2].strip().split("\n")[0] or str(error)[:200]
            raise ValueError(
                f"{path}: refused to load: it holds Python objects other than tensors and plain containers "
                f"({reason}), and unpickling them could run arbitrary code. Convert it once in an environment you "
                f"trust: ckpt = torch.load(path, weights_only=False); cfg = ckpt['cfg']; torch.save({{'cfg': "
                f"dict(cfg if isinstance(cfg, dict) else vars(cfg)), 'model': dict(ckpt['model'])}}, 'converted.pt'), "
                f"then load converted.pt"
            ) from error
        if not isinstance(checkpoint, dict) or "model" not in checkpoint:
            found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise ValueError(f"{path}: expected a BEATs checkpoint dict with 'cfg' and 'model' entries, found {found}")
        config = checkpoint["cfg"] if "cfg" in checkpoint else {}  # the reference: defaults when there is no cfg
        return cls.from_state_dict(config, checkpoint["model"], source=str(path), **options)

    def load_reference_state_dict(
        self, state_dict: dict[str, torch.Tensor], source: str = "state_dict", assign: bool = False
    ) -> None:
        """Strictly load reference-named weights, cast to this module's dtypes (``assign``: take the tensors instead
        of copying into the current ones). One ValueError lists missing, unexpected and mis-shaped keys.
        """
        expected = self.state_dict()
        not_tensors = sorted(key for key, value in state_dict.items() if not isinstance(value, torch.Tensor))
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        mis_shaped = [f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
                      for key in sorted(set(expected) & set(state_dict) - set(not_tensors))
                      if state_dict[key].shape != expected[key].shape]
        if missing or unexpected or mis_shaped or not_tensors:
            raise ValueError(f"{source}: weights do not match the BEATs config; missing keys {missing}, "
                             f"unexpected keys {unexpected}, mis-shaped keys {mis_shaped}, non-tensor values "
                             f"{not_tensors}")
        state_dict = {key: value.to(expected[key].dtype) for key, value in state_dict.items()}
        self.load_state_dict(state_dict, strict=True, assign=assign)

    def num_tokens(self, num_feature_frames: int) -> int:
        """Tokens for ``num_feature_frames`` fbank frames: (f // p) * (128 // p), i.e. floor(f / 16) * 8."""
        patch = self.config.input_patch_size
        return (num_feature_frames // patch) * (NUM_MEL_BINS // patch)

    def normalize_fbank(self, fbank: torch.Tensor) -> torch.Tensor:
        """The reference ``preprocess``: (fbank - 15.41663) / (2 * 6.55582)."""
        return (fbank - FBANK_MEAN) / (2 * FBANK_STD)

    def extract_features(
        self, fbank: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reference-style call: raw fbank [b, f, 128] and bool padding_mask [b, f] or [b, f, 128] (True = padded).

        Returns:
            features [b, n, d] and the token padding mask [b, n] (None without a mask). Padded tokens are zeroed
            before the positional conv and never attended to; their own outputs are still computed.
        """
        self._check_fbank(fbank)
        fbank = self.normalize_fbank(fbank.to(self.patch_embedding.weight.dtype))
        if padding_mask is not None:
            if padding_mask.dtype != torch.bool or padding_mask.shape[:2] != fbank.shape[:2]:
                raise ValueError(f"padding_mask must be bool [b, f] or [b, f, m] matching fbank {list(fbank.shape)}, "
                                 f"got {padding_mask.dtype} {list(padding_mask.shape)}")
            padding_mask = reduce_padding_mask(padding_mask, fbank.shape[1])
        patches = self.patch_embedding(rearrange(fbank, "b f m -> b 1 f m"))
        tokens = self.layer_norm(rearrange(patches, "b e t m -> b (t m) e"))
        token_mask = None if padding_mask is None else reduce_padding_mask(padding_mask, tokens.shape[1])
        if self.post_extract_proj is not None:
            tokens = self.post_extract_proj(tokens)
        tokens = F.dropout(tokens, self.config.dropout_input, self.training)
        return self.encoder(tokens, token_mask), token_mask

    def predict(self, fbank: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Audio-tagging probabilities [b, predictor_class]: sigmoid of the predictor logits averaged over the
        non-padded tokens (the reference's ``feature_only=False``; VideoLLaMA2 never uses it)."""
        if self.predictor is None:
            raise ValueError("this BEATs has no predictor (finetuned_model=False); use extract_features")
        features, token_mask = self.extract_features(fbank, padding_mask)
        logits = self.predictor(F.dropout(features, self.config.predictor_dropout, self.training))
        if token_mask is None:
            return logits.mean(dim=1).sigmoid()
        valid = (~token_mask)[:, :, None]
        return ((logits * valid).sum(dim=1) / valid.sum(dim=1)).sigmoid()

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode raw fbank features [b, f, 128]; ``lengths`` [b] (valid frames, in [1, f]) masks the frames past
        them with the reference padding rule (``reduce_padding_mask``). ``lengths=None`` is the reference with an
        all-False mask, VideoLLaMA2-AV's call: use it to reproduce VideoLLaMA2, which encodes the zero padding.

        Returns:
            tokens [b, n, d] with n = num_tokens(f), and lengths [b]: tokens not padded (a prefix of n).
        """
        batch, num_frames = features.shape[:2]
        if lengths is None:
            tokens, _ = self.extract_features(features)
            return tokens, torch.full((batch,), tokens.shape[1], dtype=torch.long, device=features.device)
        if lengths.shape != (batch,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must be an integer tensor of shape [{batch}], got "
                             f"{lengths.dtype} {list(lengths.shape)}")
        if bool((lengths < 1).any()) or bool((lengths > num_frames).any()):
            raise ValueError(f"lengths must lie in [1, {num_frames}] (the fbank frames), got {lengths.tolist()}")
        frame_index = torch.arange(num_frames, device=features.device)
        padding_mask = frame_index[None, :] >= lengths.to(features.device)[:, None]
        tokens, token_mask = self.extract_features(features, padding_mask)
        return tokens, (~token_mask).sum(dim=1)

    def _check_fbank(self, fbank: torch.Tensor) -> None:
        patch = self.config.input_patch_size
        if fbank.ndim != 3 or fbank.shape[2] != NUM_MEL_BINS or fbank.shape[1] < patch:
            raise ValueError(f"fbank must have shape [b, f >= {patch}, {NUM_MEL_BINS}] (Kaldi fbank, frames first), "
                             f"got {list(fbank.shape)}")
