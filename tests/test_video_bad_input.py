"""vision.load_video on broken, odd and extreme files, all written at test time.

Every failure is a MediaError (a ValueError) or FileNotFoundError whose message names the file and the problem;
none may crash the interpreter (decord aborts on some damaged files, so they must never reach it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import media
import numpy as np
import pytest
import torch

from vision import MediaError, load_video
from vision.sampling import uniform_indices


def expect_media_error(path: Path, problem: str, **options) -> None:
    with pytest.raises(MediaError, match=problem) as caught:
        load_video(path, **options)
    assert str(path) in str(caught.value)


def faststart_copy(source: Path, target: Path) -> Path:
    """Remux the video stream with the index (moov) at the front, as web-optimised mp4s have it."""
    with av.open(str(source)) as reader, av.open(str(target), "w", options={"movflags": "faststart"}) as writer:
        stream = writer.add_stream_from_template(reader.streams.video[0])
        for packet in reader.demux(reader.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                writer.mux(packet)
    return target


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing here.mp4"
    with pytest.raises(FileNotFoundError, match="no such file") as caught:
        load_video(path)
    assert str(path) in str(caught.value)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    expect_media_error(path, "empty")


def test_directory(tmp_path: Path) -> None:
    expect_media_error(tmp_path, "directory")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    expect_media_error(path, "not a readable media file")


def test_unknown_container(tmp_path: Path) -> None:
    path = tmp_path / "noise.xyz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    expect_media_error(path, "not a readable media file")


def test_truncated_mp4(tmp_path: Path, bikes: Path) -> None:
    data = bikes.read_bytes()
    path = tmp_path / "first_half.mp4"
    path.write_bytes(data[: len(data) // 2])  # index at the end: the header is gone
    expect_media_error(path, "not a readable media file")


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_truncated_faststart_mp4_never_reaches_decord(tmp_path: Path, bikes: Path, backend: str) -> None:
    data = faststart_copy(bikes, tmp_path / "faststart.mp4").read_bytes()
    path = tmp_path / "faststart_half.mp4"
    path.write_bytes(data[: len(data) // 2])  # header intact, half the frames missing
    expect_media_error(path, "truncated or damaged: the header lists 250 video frames", backend=backend)


def test_audio_only_file(tmp_path: Path) -> None:
    path = media.write_wav(tmp_path / "tone.wav", media.tone(1.0, 16000), 16000)
    expect_media_error(path, r"has no video stream \(audio only\?")


def test_decord_cannot_read_falls_back_to_pyav(tmp_path: Path) -> None:
    path = media.write_video(tmp_path / "av1.mkv", seconds=1, fps=10, codec="libsvtav1", audio_rate=None)
    clip = load_video(path, num_frames=4)
    assert clip.backend == "pyav" and tuple(clip.frames.shape) == (4, 48, 64, 3)
    expect_media_error(path, "decord cannot read its .* video", backend="decord")


CORRUPT_PROBE = """
import json, sys
from vision import MediaError, load_video
results = []
for path in sys.argv[1:]:
    for backend in ("decord", "pyav"):
        try:
            clip = load_video(path, num_frames=4, backend=backend)
            results.append([path, "frames", list(clip.frames.shape)])
        except MediaError as error:
            results.append([path, "MediaError", str(error)])
print(json.dumps(results))
"""


def test_corrupted_bytes_never_crash(tmp_path: Path, bikes: Path) -> None:
    data, paths = bikes.read_bytes(), []
    for seed in (2, 3, 4, 6):  # 200 random bytes overwritten; odd seeds may hit the header too
        rng = np.random.default_rng(seed)
        damaged = bytearray(data)
        for position in rng.integers(0 if seed % 2 else 5000, len(data), 200):
            damaged[position] = rng.integers(0, 256)
        paths.append(tmp_path / f"bytes overwritten {seed}.mp4")
        paths[-1].write_bytes(bytes(damaged))
    # A separate interpreter: a decoder abort would kill it, not pytest, and show up as a return code.
    result = subprocess.run([sys.executable, "-c", CORRUPT_PROBE, *map(str, paths)], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, f"crashed or raised a raw error:\n{result.stderr[-2000:]}"
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 8
    for path, kind, detail in outcomes:  # frames, or an error that names the file and says what is wrong
        if kind == "frames":
            assert detail == [4, 272, 640, 3]
        else:
            assert detail.startswith(f"{path}: ") and len(detail) > len(path) + 12, detail
    assert {kind for _, kind, _ in outcomes} == {"frames", "MediaError"}


@pytest.fixture(scope="module")
def hour_long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return media.write_video(folder / "one_hour.mp4", seconds=3600, fps=1, width=32, height=32, audio_rate=None)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_one_hour_file_samples_quickly(hour_long_video: Path, backend: str) -> None:
    began = time.perf_counter()
    clip = load_video(hour_long_video, num_frames=16, backend=backend)
    elapsed = time.perf_counter() - began
    assert clip.duration == pytest.approx(3600) and clip.num_source_frames == 3600
    assert clip.indices.tolist() == uniform_indices(3600, 16)
    torch.testing.assert_close(clip.timestamps, clip.indices.double(), rtol=0, atol=1e-6)
    # moving_square_frames paints frame i with grey level 7 i mod 256: the right frames were decoded.
    background = clip.frames[:, -1, -1].float().mean(-1)
    assert (background - (clip.indices * 7 % 256).float()).abs().max() < 8
    assert elapsed < 5, f"16 frames of a 1-hour file took {elapsed:.2f}s"


def test_huge_resolution(tmp_path: Path) -> None:
    path = media.write_video(tmp_path / "huge.mp4", seconds=0.2, fps=10, width=4000, height=3000, audio_rate=None)
    assert tuple(load_video(path, num_frames=2).frames.shape) == (2, 3000, 4000, 3)
    for backend in ("decord", "pyav"):
        scaled = load_video(path, num_frames=2, backend=backend, max_resolution=400)
        assert tuple(scaled.frames.shape) == (2, 300, 400, 3)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_variable_frame_rate_reports_real_times(tmp_path: Path, backend: str) -> None:
    path = media.write_video(tmp_path / "vfr.mp4", seconds=3, fps=10, vfr=True, audio_rate=None)
    # media.write_video(vfr=True) doubles every third gap: frame i is shown at these times.
    shown = np.cumsum([0.0] + [0.2 if i % 3 == 2 else 0.1 for i in range(29)])
    clip = load_video(path, num_frames=8, backend=backend)
    assert clip.backend == backend
    torch.testing.assert_close(clip.timestamps, torch.from_numpy(shown)[clip.indices], rtol=0, atol=1e-6)
    background = clip.frames[:, -1, -1].float().mean(-1)
    assert (background - (clip.indices * 7 % 256).float()).abs().max() < 8
    every = load_video(path, fps=100, max_frames=100, backend=backend)
    assert every.indices.tolist() == list(range(30))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_path_with_spaces_and_non_ascii(tmp_path: Path, carphone: Path, backend: str) -> None:
    folder = tmp_path / "my videos ünïcödé"
    folder.mkdir()
    path = Path(shutil.copy(carphone, folder / "clip 日本語 é.mp4"))
    clip = load_video(path, num_frames=4, backend=backend)
    assert clip.path == str(path) and tuple(clip.frames.shape) == (4, 144, 176, 3)


@pytest.mark.parametrize(("options", "message"), [
    ({"num_frames": 0}, "num_frames=0"),
    ({"fps": -1.0}, "fps=-1.0"),
    ({"max_frames": 8}, "max_frames=8: .* only with fps="),
    ({"backend": "opencv"}, "backend='opencv'"),
    ({"max_resolution": 1}, "max_resolution=1"),
    ({"start": -1.0}, "start=-1.0"),
    ({"start": 50.0}, "start=50.0: .* lasts only 4.004s"),
    ({"start": 2.0, "end": 1.0}, "end=1.0: must be after start=2.0"),
])
def test_bad_arguments(carphone: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_video(carphone, **options)
