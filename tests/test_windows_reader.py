"""One-pass window readers: frames equal ``load_video``'s per window, times are the frame table's, each window's audio
is the same span of the soundtrack (its tone says so), and damaged stretches fail only their own windows."""

from __future__ import annotations

import pytest
import torch
from windows_support import (
    SCENES,
    damage_packets,
    dominant_frequency,
    mean_colour,
    scene_at,
    truncate,
    variable_frame_times,
    write_scene_clip,
)

from audio import load_audio
from audio.windows import AudioWindowReader
from avlm.inference.windows import plan_video
from vision import MediaError, load_video
from vision.frame_table import read_frame_table
from vision.windows import WindowReader, load_windows


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("window-clips")
    return {"cfr": write_scene_clip(folder / "cfr.mp4"),
            "vfr": write_scene_clip(folder / "vfr.mp4", frame_times=variable_frame_times()),
            "pcm": write_scene_clip(folder / "pcm.mkv", audio_codec="pcm_s16le"),
            "short_audio": write_scene_clip(folder / "short_audio.mp4", audio_seconds=6.5),
            "damaged": damage_packets(folder / "damaged.mkv", 4.0, 6.0)}


@pytest.mark.parametrize("name", ["cfr", "vfr"])
def test_windows_cover_the_video_with_frame_times_and_equal_load_video(clips, name: str) -> None:
    path = clips[name]
    table = read_frame_table(path)
    windows = plan_video(path, 2.0)
    assert windows[0].start == table.timestamps[0] and windows[-1].end == table.duration == 12.0
    assert all(a.end == b.start for a, b in zip(windows, windows[1:], strict=False))  # contiguous, monotonic
    assert all(window.start in table.timestamps and window.end > window.start for window in windows)
    read = list(load_windows(path, [(w.start, w.end) for w in windows], num_frames=4))
    for window, clip in zip(windows, read, strict=True):
        assert (clip.start, clip.end) == (window.start, window.end)
        assert all(window.start <= t < window.end for t in clip.timestamps.tolist())
        assert clip.timestamps.tolist() == [table.timestamps[i] for i in clip.indices.tolist()]
        for backend in ("pyav", "decord"):  # the same frames load_video decodes, window by window
            expected = load_video(path, num_frames=4, start=window.start, end=window.end, backend=backend)
            assert torch.equal(clip.frames, expected.frames) and torch.equal(clip.indices, expected.indices)
        colour = SCENES[scene_at(clip.timestamps[0].item())][1]
        assert mean_colour(clip.frames[:1]) == pytest.approx(colour, abs=6)
    if name == "vfr":  # the still from 7.0 s stays in the window it starts in
        assert [(w.start, w.end) for w in windows][3] == (6.2, 9.5)


def test_reading_out_of_order_and_rate_sampling(clips) -> None:
    path = clips["cfr"]
    with WindowReader(path, fps=2.0, max_frames=3) as reader:
        late, early = reader.read(8.0, 10.0), reader.read(0.0, 2.0)
    assert late.timestamps.tolist() == load_video(path, fps=2.0, max_frames=3, start=8.0, end=10.0).timestamps.tolist()
    assert torch.equal(early.frames, load_video(path, fps=2.0, max_frames=3, start=0.0, end=2.0).frames)


def test_window_audio_is_the_same_span_of_the_soundtrack(clips) -> None:
    for name in ("cfr", "vfr", "pcm"):
        whole = load_audio(clips[name], sample_rate=16000).waveform
        with AudioWindowReader(clips[name], sample_rate=16000, chunk_seconds=5.0) as reader:  # several stretches
            for window in plan_video(clips[name], 2.0):
                sound = reader.read(window.start, window.end)
                assert (sound.start, sound.end) == pytest.approx((window.start, window.end), abs=1 / 16000)
                first = round(window.start * 16000)
                assert torch.equal(sound.waveform, whole[first:first + len(sound.waveform)])
                assert len(sound.waveform) == round(window.end * 16000) - first
                middle = sound.waveform[len(sound.waveform) // 4: len(sound.waveform) // 4 + 4000]
                expected = SCENES[scene_at(window.start + len(sound.waveform) / 4 / 16000)][2]
                assert dominant_frequency(middle, 16000) == pytest.approx(expected, abs=10)


def test_audio_shorter_than_the_video_fails_only_the_windows_after_it(clips) -> None:
    reader = AudioWindowReader(clips["short_audio"])
    assert reader.read(4.0, 6.0).end == pytest.approx(6.0)
    partial = reader.read(6.0, 8.0)  # the track ends inside this window: the part there is
    assert 6.4 < partial.end < 6.6 and dominant_frequency(partial.waveform, 16000) == pytest.approx(800, abs=10)
    with pytest.raises(MediaError, match=r"no audio in 8.000-10.000 s: the audio track ends at 6.5\d+ s"):
        reader.read(8.0, 10.0)
    assert reader.read(0.0, 2.0).duration == pytest.approx(2.0)  # earlier windows still read


def test_undecodable_window_fails_alone_and_a_truncated_file_ends_early(clips, tmp_path) -> None:
    path = clips["damaged"]
    spans = [(w.start, w.end) for w in plan_video(path, 2.0)]
    read = list(load_windows(path, spans, num_frames=4))
    assert [isinstance(clip, MediaError) for clip in read] == [False, False, True, False, False, False]
    assert str(read[2]).startswith(f"{path}: frames in 4.000-6.000 s cannot be decoded")
    truncated = truncate(clips["pcm"], tmp_path / "truncated.mkv", 0.6)
    windows = plan_video(truncated, 2.0)
    assert windows[-1].error.startswith(f"{truncated}: no video frames after 7.200 s although the file states a "
                                        "duration of 12.000 s")
    assert (windows[-1].start, windows[-1].end) == pytest.approx((7.2, 12.0))
    assert all(window.error is None for window in windows[:-1]) and windows[-2].end == pytest.approx(7.2)
    with WindowReader(truncated, num_frames=2) as reader:
        assert reader.read(windows[-2].start, windows[-2].end).frames.shape[0] == 2


def test_official_preprocessing_reads_a_windows_soundtrack_as_audio_from_video(clips) -> None:
    # VideoLLaMA2-AV takes a video's soundtrack through its audio-from-video front end (8 clips of 2 s over the span),
    # an audio file through another (its first 30 s); a window's audio is the video's soundtrack
    from audio.videollama2_preset import audio_file_fbank, audio_from_video_fbank
    from avlm.constants import AUTO_AUDIO
    from avlm.inference.window_media import WindowSources
    from avlm.processing.media import MediaConfig
    from avlm.processing.sample import load_media

    config = MediaConfig.from_preset("videollama2.1-7b-av", num_frames=4, preprocessing="videollama2")
    sources = WindowSources(config)
    clip, sound = sources.read(clips["cfr"], AUTO_AUDIO, 4.0, 8.0)
    sources.close()
    media = load_media(config, clip, sound)
    assert torch.equal(media.audio, audio_from_video_fbank(sound.waveform)[0].float())
    assert not torch.equal(media.audio, audio_file_fbank(sound.waveform)[0].float())


def test_load_audio_with_a_start_equals_a_slice_of_the_whole_track(clips) -> None:
    # PCM in Matroska: the seek for 4.0 s lands on a packet 32 ms later; the samples must still start at 4.0 s
    whole = load_audio(clips["pcm"]).waveform
    for start, end in ((4.0, 6.0), (7.3, 9.1)):
        clip = load_audio(clips["pcm"], start=start, end=end)
        assert clip.start == start and clip.end == end
        assert torch.equal(clip.waveform, whole[round(start * 16000):round(end * 16000)])
