"""Audio feature front ends, batched in torch (CPU or GPU).

Notation:
    b: batch, n: samples, f: feature frames, m: mel bins.

- :func:`kaldi_fbank`: Kaldi-compatible log-mel filter banks (``torchaudio.compliance.kaldi.fbank`` with its
  defaults: povey window, pre-emphasis 0.97, DC removal, no dither, snip_edges, 512-point FFT, mel filters
  from 20 Hz to Nyquist, log with a float32-epsilon floor), for a whole batch in one pass.
- :func:`beats_fbank` / :func:`beats_normalize`: the BEATs front end (waveform x 2^15, 128 bins; then
  ``(x - 15.41663) / (2 * 6.55582)``).
- :func:`whisper_log_mel`: the Whisper front end, equal to ``transformers.WhisperFeatureExtractor``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from einops import rearrange

BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582
WHISPER_SAMPLES = 480_000  # 30 s at 16 kHz
_EPSILON = torch.finfo(torch.float32).eps


@lru_cache(maxsize=8)
def _kaldi_mel_banks(num_mel_bins: int, padded_length: int, sample_rate: int) -> torch.Tensor:
    """[m, padded_length // 2 + 1] float64 triangular mel filters of Kaldi (Nyquist column zero)."""
    from torchaudio.compliance.kaldi import get_mel_banks

    banks, _ = get_mel_banks(num_mel_bins, padded_length, float(sample_rate), 20.0, 0.0, 100.0, -500.0, 1.0)
    return torch.nn.functional.pad(banks.double(), (0, 1))


@lru_cache(maxsize=8)
def _frame_transform(length: int) -> torch.Tensor:
    """[length, length] float64 matrix A with ``frame @ A`` = povey window * pre-emphasis(0.97) * (frame - mean).

    Folding Kaldi's per-frame DC removal, pre-emphasis (x[j] - 0.97 x[j-1], with x[-1] := x[0]) and window into
    one matrix turns three passes over the frames into a single matmul.
    """
    identity = torch.eye(length, dtype=torch.float64)
    remove_dc = identity - 1.0 / length
    preemphasis = identity - 0.97 * torch.diag(torch.ones(length - 1, dtype=torch.float64), -1)
    preemphasis[0, 0] = 1 - 0.97
    window = torch.hann_window(length, periodic=False, dtype=torch.float64).pow(0.85)
    return (torch.diag(window) @ preemphasis @ remove_dc).T


def kaldi_fbank(waveform: torch.Tensor, sample_rate: int = 16000, num_mel_bins: int = 128,
                frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0) -> torch.Tensor:
    """Kaldi log-mel filter banks of a batch: [b, n] -> [b, f, m], f = 1 + (n - frame_length) // frame_shift.

    Computed in the input's dtype (float32 or float64), like the reference. Samples are taken as they are
    (BEATs scales by 2^15 first: see :func:`beats_fbank`).
    """
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be [batch, samples], got shape {tuple(waveform.shape)}")
    length = int(sample_rate * frame_length_ms / 1000)
    shift = int(sample_rate * frame_shift_ms / 1000)
    if waveform.shape[1] < length:
        raise ValueError(f"waveform has {waveform.shape[1]} samples, fewer than one {frame_length_ms} ms frame "
                         f"({length} samples at {sample_rate} Hz)")
    dtype = waveform.dtype if waveform.dtype in (torch.float32, torch.float64) else torch.float32
    frames = waveform.to(dtype).unfold(1, length, shift)  # [b, f, length], a view
    frames = frames @ _frame_transform(length).to(frames.device, dtype)
    padded = 1 << (length - 1).bit_length()
    spectrum = torch.fft.rfft(frames, n=padded)
    power = spectrum.real.square() + spectrum.imag.square()
    mel = power @ _kaldi_mel_banks(num_mel_bins, padded, sample_rate).to(frames.device, dtype).T
    return mel.clamp_min(_EPSILON).log()


def beats_fbank(waveform: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """BEATs front end: waveform in [-1, 1], [b, n] at 16 kHz -> Kaldi fbank [b, f, 128] of waveform x 2^15."""
    if sample_rate != 16000:
        raise ValueError(f"BEATs expects 16000 Hz audio, got {sample_rate} Hz; load it with "
                         "audio.load_audio(path, sample_rate=16000)")
    return kaldi_fbank(waveform * 32768, sample_rate=16000, num_mel_bins=128)


def beats_normalize(fbank: torch.Tensor) -> torch.Tensor:
    """BEATs input normalisation (note the 2 x std): (fbank - 15.41663) / (2 * 6.55582)."""
    return (fbank - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD)


@lru_cache(maxsize=8)
def _whisper_mel_filters(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """[n_fft // 2 + 1, m] Slaney-normalised Slaney-scale mel filters, as Whisper (and librosa) use."""
    from torchaudio.functional import melscale_fbanks

    return melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney",
                           mel_scale="slaney")


def whisper_log_mel(waveform: torch.Tensor, sample_rate: int = 16000, n_mels: int = 80,
                    num_samples: int = WHISPER_SAMPLES) -> torch.Tensor:
    """Whisper log-mel: [b, n] at 16 kHz -> [b, m, num_samples // 160], padded with zeros or cut to 30 s.

    Equal to ``WhisperFeatureExtractor(feature_size=m)(..., padding="max_length")`` within 1e-4: 400-point
    periodic Hann STFT every 160 samples (centred, reflect padding), power, mel, log10 with a 1e-10 floor,
    clamped to 8 below each sample's maximum, then (x + 4) / 4.
    """
    if sample_rate != 16000:
        raise ValueError(f"Whisper expects 16000 Hz audio, got {sample_rate} Hz; load it with "
                         "audio.load_audio(path, sample_rate=16000)")
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be [batch, samples], got shape {tuple(waveform.shape)}")
    waveform = waveform[:, :num_samples].float()
    waveform = torch.nn.functional.pad(waveform, (0, num_samples - waveform.shape[1]))
    window = torch.hann_window(400, periodic=True, device=waveform.device)
    spectrum = torch.stft(waveform, 400, 160, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spectrum[..., :-1].abs().pow(2)  # [b, 201, frames]
    mel = rearrange(power, "b k f -> b f k") @ _whisper_mel_filters(n_mels, 400, sample_rate).to(power.device)
    log_mel = rearrange(mel, "b f m -> b m f").clamp_min(1e-10).log10()
    peak = log_mel.amax(dim=(1, 2), keepdim=True)
    return ((torch.maximum(log_mel, peak - 8.0) + 4.0) / 4.0).float()


def num_fbank_frames(num_samples: int, sample_rate: int = 16000) -> int:
    """Frames :func:`kaldi_fbank` gives for ``num_samples`` (25 ms windows every 10 ms, complete frames only)."""
    length, shift = sample_rate * 25 // 1000, sample_rate * 10 // 1000
    return 0 if num_samples < length else 1 + (num_samples - length) // shift


__all__ = ["kaldi_fbank", "beats_fbank", "beats_normalize", "whisper_log_mel", "num_fbank_frames"]
