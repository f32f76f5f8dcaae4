"""Every unusable audio input gives a ValueError (or FileNotFoundError) naming the file and the problem."""

from __future__ import annotations

import media
import pytest

from audio import load_audio
from vision import MediaError


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.wav"):
        load_audio(tmp_path / "nothing.wav")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="empty.wav.*empty"):
        load_audio(path)


@pytest.mark.parametrize("name", ["notes.mp4", "notes.wav", "blob.xyz"])
def test_text_or_unknown_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not audio, just some text\n" * 20)
    with pytest.raises(MediaError, match=f"{name}.*not a readable media file"):
        load_audio(path)


def test_truncated_mp4(tmp_path, bigbuckbunny):
    data = bigbuckbunny.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated.mp4"):
        load_audio(path)


def test_window_outside_the_audio(tmp_path):
    path = media.write_wav(tmp_path / "short.wav", media.tone(1.0, 16000), 16000)
    with pytest.raises(MediaError, match="short.wav.*no audio samples between 5.000 s"):
        load_audio(path, start=5.0, end=6.0)


def test_bad_arguments(tmp_path):
    path = media.write_wav(tmp_path / "ok.wav", media.tone(1.0, 16000), 16000)
    with pytest.raises(ValueError, match="end"):
        load_audio(path, start=0.5, end=0.2)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(path, sample_rate=0)
