"""Annotation loading: JSON list and JSONL, every problem reported at once with file and line, skip_invalid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avlm.data.annotations import AnnotationError, AnnotationSource, Record, load_annotations


def turns(question: str, answer: str = "an answer") -> list[dict[str, str]]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name in ["videos/a.mp4", "videos/b.mp4", "audio/a.wav", "images/a.jpg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


GOOD = [
    {"id": "av", "video": "videos/a.mp4", "audio": "audio/a.wav", "conversations": turns("<video>\nWhat plays?")},
    {"id": 7, "video": "videos/b.mp4", "task": "captioning", "conversations": turns("<video>\nDescribe.")},
    {"id": "aud", "audio": "audio/a.wav", "conversations": turns("<audio>\nWhat sound?")},
    {"id": "img", "image": "images/a.jpg", "conversations": turns("<image>\nWhat is it?")},
    {"id": "txt", "conversations": turns("Hi", "Hello") + turns("How are you", "Fine")},
]


def test_json_list_and_jsonl_load_with_groups_and_paths(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(GOOD[:3], indent=1))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in GOOD[3:]) + "\n\n")
    records, report = load_annotations([tmp_path / "a.json", tmp_path / "b.jsonl"], data_root)
    assert [r.id for r in records] == ["av", "7", "aud", "img", "txt"]
    assert [r.group for r in records] == ["av", "video", "audio", "image", "text"]
    assert [r.modalities for r in records] == [("video", "audio"), ("video",), ("audio",), ("video",), ()]
    assert records[0].video == data_root / "videos/a.mp4" and records[0].audio_path == data_root / "audio/a.wav"
    assert records[1].task == "captioning" and records[0].task is None
    assert records[3].location == f"{tmp_path / 'b.jsonl'}:1" and records[1].location.startswith(f"{tmp_path}/a.json:")
    assert len(records[4].conversations) == 4
    assert report.num_read == report.num_kept == 5 and report.num_skipped == 0
    assert report.kept_by_group == {"av": 1, "video": 1, "audio": 1, "image": 1, "text": 1}


def test_audio_from_video_makes_video_records_audio_visual(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "av.json").write_text(json.dumps(GOOD[1:4]))
    source = AnnotationSource(tmp_path / "av.json", data_root=data_root, audio_from_video=True)
    records, _ = load_annotations([source])
    assert [r.group for r in records] == ["av", "audio", "image"]
    assert records[0].audio_path == data_root / "videos/b.mp4"
    assert records[0].without_audio().group == "video" and records[0].without_audio().audio_path is None
    assert not records[2].audio_from_video  # only video records take audio from their file


def test_every_problem_is_reported_with_file_and_line(tmp_path: Path, data_root: Path) -> None:
    bad = [
        GOOD[0],
        {"id": "m", "video": "videos/missing.mp4", "conversations": turns("<video>\nQ")},
        {"id": "k", "vidoe": "videos/a.mp4", "conversations": turns("Q")},
        {"id": "p", "conversations": turns("<audio>\nQ")},
        {"id": "n", "audio": "audio/a.wav", "conversations": turns("Q")},
        {"id": "e", "conversations": turns("Q", "  ")},
        {"id": "r", "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]},
        {"id": "twice", "video": "videos/a.mp4", "conversations": turns("<video> <video>\nQ")},
        {"conversations": turns("Q")},
    ]
    (tmp_path / "bad.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in bad) + "\n]\n")
    (tmp_path / "bad.jsonl").write_text(json.dumps(GOOD[2]) + "\n" + '{"id": "x", "conversations": [}\n')
    with pytest.raises(AnnotationError) as raised:
        load_annotations([tmp_path / "bad.json", tmp_path / "bad.jsonl"], data_root)
    problems = raised.value.problems
    expected = [
        f"bad.json:3 (item 1): record 'm': video file not found: {data_root / 'videos/missing.mp4'}",
        "bad.json:4 (item 2): record 'k': unknown key 'vidoe' (did you mean 'video'?)",
        "bad.json:5 (item 3): record 'p': placeholder <audio> in turn 0 but the record has no 'audio' file",
        "bad.json:6 (item 4): record 'n': 'audio' file given but no <audio> placeholder",
        "bad.json:7 (item 5): record 'e': turn 1 (gpt) has an empty answer",
        "bad.json:8 (item 6): record 'r': turn 0 is from 'gpt', expected 'human'",
        "bad.json:9 (item 7): record 'twice': placeholder <video> appears 2 times",
        "bad.json:10 (item 8): record None: 'id' must be a string or an integer",
        "bad.jsonl:2:31: record None: malformed JSON: Expecting value",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(f"{tmp_path}/{start}"), (problem, start)
    assert "skip_invalid=True" in str(raised.value)


def test_skip_invalid_keeps_good_records_and_counts_reasons(tmp_path: Path, data_root: Path) -> None:
    rows = [GOOD[2], {"id": "m", "audio": "audio/none.wav", "conversations": turns("<audio>\nQ")}, "[1]", GOOD[4]]
    (tmp_path / "mixed.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    records, report = load_annotations([tmp_path / "mixed.jsonl"], data_root, skip_invalid=True)
    assert [r.id for r in records] == ["aud", "txt"]
    assert (report.num_read, report.num_kept, report.num_skipped) == (4, 2, 2)
    assert report.skipped_by_reason == {"missing media file": 1, "not an object": 1}
    assert "2 of 4 records kept (audio 1, text 1); 2 skipped" in report.summary()
    assert len(report.problems) == 2


def test_file_level_problems_raise_even_with_skip_invalid(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('[\n  {"id": 1,\n   "conversations": [\n  }\n]')
    (tmp_path / "object.json").write_text('{"id": 1}')
    with pytest.raises(AnnotationError) as raised:
        load_annotations([tmp_path / "broken.json", tmp_path / "object.json", tmp_path / "absent.jsonl"],
                         skip_invalid=True)
    problems = raised.value.problems
    assert problems[0].startswith(f"{tmp_path / 'broken.json'}:4:3: malformed JSON")
    assert problems[1] == f"{tmp_path / 'object.json'}:1: expected a JSON list of records ('[ ... ]')"
    assert problems[2].startswith(f"{tmp_path / 'absent.jsonl'}: cannot read the annotation file")


def test_av_record_may_use_both_placeholders_but_not_split(tmp_path: Path, data_root: Path) -> None:
    both = {"id": "b", "video": "videos/a.mp4", "audio": "audio/a.wav", "conversations": turns("<video><audio>\nQ")}
    split = {"id": "s", "video": "videos/a.mp4", "audio": "audio/a.wav",
             "conversations": turns("<video>\nQ") + turns("<audio>\nQ2")}
    (tmp_path / "av.jsonl").write_text(json.dumps(both) + "\n" + json.dumps(split))
    records, report = load_annotations([tmp_path / "av.jsonl"], data_root, skip_invalid=True)
    assert [r.id for r in records] == ["b"] and report.skipped_by_reason == {"split placeholders": 1}
    assert isinstance(records[0], Record) and records[0].group == "av"


def test_check_media_false_skips_stat(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps(GOOD[0]))
    records, _ = load_annotations([tmp_path / "a.jsonl"], tmp_path / "nowhere", check_media=False)
    assert records[0].video == tmp_path / "nowhere/videos/a.mp4"
