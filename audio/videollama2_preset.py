"""VideoLLaMA2-AV's audio preprocessing, reproduced exactly so official checkpoints see what they were trained on.

Two paths (``videollama2/mm_utils.py`` on the ``audio_visual`` branch):

- audio of a video (``process_audio_from_video``): 8 clips of 2 s at ``start_k = k * Fraction(D - 2) / 8``
  seconds (D = the soundtrack's float duration; exact rational arithmetic, then ``int()`` truncation), concatenated,
  zero-padded to 30 s, x 2^15, Kaldi fbank in float32, cast to bfloat16;
- an audio file (``process_audio_file``): first channel, zero-padded (or cut) to 30 s, x 2^15, Kaldi fbank in
  float64, cast to bfloat16. The reference cuts a random 30 s window from longer files; here the first 30 s.

avlm's own default differs: audio over the same span as the sampled frames, no clip sampling, no padding tokens.

Notation: n samples, f fbank frames (2998 for 30 s).
"""

from __future__ import annotations

from fractions import Fraction

import torch

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
CLIP_SECONDS = 2
NUM_CLIPS = 8


def clip_sample_ranges(num_samples: int, sample_rate: int = SAMPLE_RATE, clip_seconds: int = CLIP_SECONDS,
                       num_clips: int = NUM_CLIPS) -> torch.Tensor:
    """[num_clips, 2] int64 sample ranges [begin, end) of the clips ``process_audio_from_video`` cuts."""
    duration = num_samples / sample_rate
    step = Fraction(max(duration - clip_seconds, 0)) / num_clips
    ranges = [(int(k * step * sample_rate), min(int((k * step + clip_seconds) * sample_rate), num_samples))
              for k in range(num_clips)]
    return torch.tensor(ranges, dtype=torch.int64)


def _fbank_30s(waveform: torch.Tensor) -> torch.Tensor:
    """[n] float -> [1, f, 128] bfloat16 Kaldi fbank of the waveform cut or zero-padded to 30 s."""
    from torchaudio.compliance.kaldi import fbank

    waveform = torch.nn.functional.pad(waveform[:WINDOW_SAMPLES], (0, max(WINDOW_SAMPLES - waveform.shape[0], 0)))
    features = fbank(waveform[None] * 32768, num_mel_bins=128, sample_frequency=SAMPLE_RATE, frame_length=25,
                     frame_shift=10)
    return features[None].to(torch.bfloat16)


def audio_from_video_fbank(waveform: torch.Tensor) -> torch.Tensor:
    """Soundtrack of a video, mono float [n] at 16 kHz -> [1, 2998, 128] bfloat16 (8 clips of 2 s, float32 fbank)."""
    waveform = waveform.float()
    ranges = clip_sample_ranges(waveform.shape[0])
    clips = torch.cat([waveform[begin:end] for begin, end in ranges.tolist()])
    return _fbank_30s(clips)


def audio_file_fbank(waveform: torch.Tensor) -> torch.Tensor:
    """Audio file, [n] or [c, n] float at 16 kHz -> [1, 2998, 128] bfloat16 (first channel, float64 fbank)."""
    if waveform.dim() == 2:
        waveform = waveform[0]
    return _fbank_30s(waveform.double())
