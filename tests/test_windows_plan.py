"""Window planning on a decoded timeline, subtitle files read back by subtitle libraries, and summary prompts."""

from __future__ import annotations

import html

import pytest

from avlm.inference.subtitles import Cue, cues_from_records, format_time, write_subtitles
from avlm.inference.summary import summary_work
from avlm.inference.window_job import WINDOW_KEY, check_subtitle_names, subtitle_path
from avlm.inference.windows import Window, plan_windows

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")


def spans(windows: list[Window]) -> list[tuple[float, float]]:
    return [(round(window.start, 6), round(window.end, 6)) for window in windows]


def test_constant_rate_windows_cover_the_duration_and_the_last_is_shorter() -> None:
    times = [i / 25 for i in range(25 * 70)]  # 70 s at 25 fps
    windows = plan_windows(times, 70.0, 30)
    assert spans(windows) == [(0, 30), (30, 60), (60, 70)]
    assert [window.segment for window in windows] == [0, 1, 2]
    assert spans(plan_windows(times, 70.0, 35)) == [(0, 35), (35, 70)]  # exact fit: no empty window after
    assert spans(plan_windows(times, 70.0, 100)) == [(0, 70)]  # a clip shorter than one window


def test_boundaries_are_frame_times_at_29_97_fps() -> None:
    times = [i * 1001 / 30000 for i in range(900)]  # 30.03 s
    windows = plan_windows(times, 900 * 1001 / 30000, 10)
    assert all(window.start in times for window in windows)
    assert [window.end for window in windows[:-1]] == [window.start for window in windows[1:]]
    assert windows[1].start == times[300] and windows[-1].end == pytest.approx(30.03)


def test_overlap_steps_by_segment_minus_overlap_and_stops_at_the_end() -> None:
    times = [i / 10 for i in range(750)]  # 75 s
    assert spans(plan_windows(times, 75.0, 30, overlap=10)) == [(0, 30), (20, 50), (40, 70), (60, 75)]
    assert spans(plan_windows(times, 70.0, 30, overlap=10)) == [(0, 30), (20, 50), (40, 70)]


def test_variable_frame_rate_snaps_to_frames_and_a_held_frame_stays_in_its_window() -> None:
    times = [0.0, 0.4, 0.9, 1.7, 2.1, 2.2, 6.5, 6.6, 7.9]  # nothing starts between 2.2 s and 6.5 s
    windows = plan_windows(times, 8.0, 2)
    assert spans(windows) == [(0, 2.1), (2.1, 6.5), (6.5, 8.0)]  # the 4.3 s still belongs to the window it starts in
    assert [window.segment for window in windows] == [0, 1, 2]
    assert all(window.start in times for window in windows)


def test_first_frame_after_zero_and_bad_options() -> None:
    assert spans(plan_windows([0.5, 1.0, 1.5, 2.0], 2.5, 1)) == [(0.5, 1.5), (1.5, 2.5)]
    with pytest.raises(ValueError, match="--segment 0"):
        plan_windows([0.0], 1.0, 0)
    with pytest.raises(ValueError, match="--overlap 5"):
        plan_windows([0.0], 1.0, 5, overlap=5)


def test_srt_and_vtt_files_parse_with_subtitle_libraries(tmp_path) -> None:
    records = [{"video": "a.mp4", "segment": 1, "start": 30.0, "end": 61.25, "caption": "A dog <barks> &\n\nruns"},
               {"video": "a.mp4", "segment": 0, "start": 0.0, "end": 30.0, "caption": "A red car --> turns\x05."},
               {"video": "a.mp4", "segment": 2, "start": 61.25, "end": 3725.5, "error": "a.mp4: broken"}]
    cues = cues_from_records(records)
    assert cues == [Cue(0.0, 30.0, "A red car --> turns."), Cue(30.0, 61.25, "A dog <barks> & runs")]
    parsed = list(srt.parse(write_subtitles(tmp_path / "a.srt", cues, "srt").read_text()))
    assert [(s.index, s.start.total_seconds(), s.end.total_seconds(), s.content) for s in parsed] == [
        (1, 0.0, 30.0, "A red car --> turns."), (2, 30.0, 61.25, "A dog <barks> & runs")]
    vtt = webvtt.read(str(write_subtitles(tmp_path / "a.vtt", cues, "vtt")))
    assert [(c.start_in_seconds, c.end_in_seconds) for c in vtt] == [(0, 30), (30, 61)]  # whole seconds in webvtt-py
    assert [(c.start, c.end) for c in vtt] == [("00:00:00.000", "00:00:30.000"), ("00:00:30.000", "00:01:01.250")]
    assert vtt[1].text == "A dog &lt;barks&gt; &amp; runs" and html.unescape(vtt[1].text) == "A dog <barks> & runs"
    assert format_time(3725.5, ",") == "01:02:05,500" and not list((tmp_path).glob("*.tmp"))


def test_subtitle_paths_and_name_clashes(tmp_path) -> None:
    assert subtitle_path("clips/a.mp4", "srt", None).as_posix() == "clips/a.srt"
    assert subtitle_path("clips/a.mp4", "vtt", tmp_path) == tmp_path / "a.vtt"
    check_subtitle_names(["x/a.mp4", "y/a.mp4"], None)
    with pytest.raises(ValueError, match="would both write a subtitles"):
        check_subtitle_names(["x/a.mp4", "y/a.mkv"], tmp_path)


def test_summary_is_due_once_every_window_is_done() -> None:
    windows = [Window(0, 0.0, 30.0), Window(1, 30.0, 45.5)]
    first = {"video": "a.mp4", "segment": 0, "start": 0.0, "end": 30.0, "caption": "A red square."}
    done = {'["a.mp4", 0]': first}
    assert summary_work({"a.mp4": windows}, done, WINDOW_KEY).requests == []  # window 1 is not done yet
    done['["a.mp4", 1]'] = {"video": "a.mp4", "segment": 1, "start": 30.0, "end": 45.5, "error": "a.mp4: broken"}
    work = summary_work({"a.mp4": windows, "b.mp4": [Window(0, 0.0, 3.0)]}, {
        **done, '["b.mp4", 0]': {"video": "b.mp4", "segment": 0, "start": 0.0, "end": 3.0, "error": "b: broken"}},
        WINDOW_KEY)
    assert work.records == [{"video": "a.mp4", "segments": 1}]
    assert "0:00:00-0:00:30 A red square." in work.requests[0].question and work.requests[0].video is None
    assert work.failed == [{"video": "b.mp4", "error": "b.mp4: no window could be captioned (1 windows), so no "
                                                       "summary"}]
    done['["a.mp4", null]'] = {"video": "a.mp4", "segments": 1, "summary": "..."}
    assert summary_work({"a.mp4": windows}, done, WINDOW_KEY).requests == []  # written once
