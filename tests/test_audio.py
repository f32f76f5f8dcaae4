"""audio.load_audio on real clips and generated files: lengths, windows, mono mix, resampling."""

from __future__ import annotations

import media
import numpy as np
import pytest
import torch

from audio import AudioClip, NoAudioStreamError, load_audio
from vision import load_video


def _peak_hz(waveform: torch.Tensor, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform.numpy()))
    return float(np.argmax(spectrum) * sample_rate / waveform.shape[0])


def test_bigbuckbunny_whole_track(bigbuckbunny):
    clip = load_audio(bigbuckbunny)
    assert isinstance(clip, AudioClip)
    assert clip.source_sample_rate == 48000 and clip.source_channels == 6
    assert clip.waveform.dtype == torch.float32 and clip.waveform.dim() == 1
    # The AAC track lasts 5.312 s (254,976 samples at 48 kHz) -> exactly a third of that at 16 kHz.
    assert clip.waveform.shape[0] == 254976 // 3
    assert clip.duration == pytest.approx(5.312, abs=1e-3)
    assert clip.start == 0.0 and clip.end == pytest.approx(5.312, abs=1e-3)
    assert 0.01 < clip.waveform.abs().max() <= 1.0


def test_mono_is_the_channel_mean(bigbuckbunny):
    multi = load_audio(bigbuckbunny, mono=False, sample_rate=48000)
    mono = load_audio(bigbuckbunny, mono=True, sample_rate=48000)
    assert multi.waveform.shape == (6, mono.waveform.shape[0])
    torch.testing.assert_close(multi.waveform.mean(0), mono.waveform)


def test_window_matches_the_frames_window(bigbuckbunny):
    frames = load_video(bigbuckbunny, num_frames=4, start=1.0, end=3.0)
    clip = load_audio(bigbuckbunny, start=frames.start, end=frames.end)
    assert clip.start == pytest.approx(frames.start, abs=1 / 48000)
    assert clip.end == pytest.approx(frames.end, abs=1 / 48000)
    assert clip.waveform.shape[0] == round((frames.end - frames.start) * 16000)
    whole = load_audio(bigbuckbunny)
    begin = round(frames.start * 16000)
    # The same samples as the whole track over that span (resampling edges aside).
    middle = slice(200, clip.waveform.shape[0] - 200)
    torch.testing.assert_close(clip.waveform[middle], whole.waveform[begin:begin + clip.waveform.shape[0]][middle],
                               atol=2e-3, rtol=0)


def test_video_without_audio_is_a_distinct_error(bikes):
    with pytest.raises(NoAudioStreamError, match="bikes.mp4.*no audio stream"):
        load_audio(bikes)
    assert issubclass(NoAudioStreamError, ValueError)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampling_keeps_pitch_and_length(tmp_path, rate):
    path = media.write_wav(tmp_path / f"tone_{rate}.wav", media.tone(1.5, rate, freq=440.0), rate)
    clip = load_audio(path, sample_rate=16000)
    assert clip.source_sample_rate == rate
    assert clip.waveform.shape[0] == pytest.approx(1.5 * 16000, abs=2)
    assert _peak_hz(clip.waveform, 16000) == pytest.approx(440.0, abs=2.0)


def test_six_channel_wav_is_mixed(tmp_path):
    samples = media.tone(1.0, 44100, freq=300.0, channels=6)
    clip = load_audio(media.write_wav(tmp_path / "surround.wav", samples, 44100))
    assert clip.source_channels == 6 and clip.waveform.dim() == 1
    assert clip.waveform.shape[0] == 16000


def test_audio_track_of_generated_mp4_and_webm(tmp_path):
    for name, codec, audio_codec in [("a.mp4", "libx264", "aac"), ("a.webm", "libvpx-vp9", "libopus")]:
        path = media.write_video(tmp_path / name, seconds=2.0, codec=codec, audio_codec=audio_codec, audio_channels=2)
        clip = load_audio(path)
        assert clip.duration == pytest.approx(2.0, abs=0.05), name
        spectrum = np.abs(np.fft.rfft(clip.waveform.numpy()))
        bin_hz = 16000 / clip.waveform.shape[0]
        top_two = sorted(np.argsort(spectrum)[-2:] * bin_hz)  # the mono mix of a 440 Hz and an 880 Hz channel
        assert top_two == pytest.approx([440.0, 880.0], abs=3 * bin_hz), name


def test_path_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "mes vidéos 音声"
    folder.mkdir()
    path = media.write_wav(folder / "clip été.wav", media.tone(0.5, 16000), 16000)
    assert load_audio(path).waveform.shape[0] == 8000
