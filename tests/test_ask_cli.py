"""`avlm ask`: one question printed; a questions file with malformed lines answered per id/line, resumably."""

from __future__ import annotations

import json

import pytest
from infer_support import write_clips

import avlm
from avlm.cli import main

OPTIONS = ["--max-new-tokens", "5", "--num-workers", "0", "--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_question_prints_the_answer(tiny_dir, tmp_path, capsys) -> None:
    clip = write_clips(tmp_path, 1)[0]
    assert main(["ask", "--model", str(tiny_dir), "--video", str(clip), "--question", "What moves?", *OPTIONS]) == 0
    printed = capsys.readouterr().out.strip()
    expected = avlm.load(tiny_dir, device="cpu").ask("What moves?", video=clip, max_new_tokens=5)
    assert printed == expected and printed
    assert main(["ask", "--model", str(tiny_dir), "--video", str(tmp_path / "no.mp4"), "--question", "?"]) == 2
    assert "no.mp4: no such file" in capsys.readouterr().err
    assert main(["ask", "--model", str(tiny_dir), "--question", "?"]) == 2  # no media


def test_questions_file_with_malformed_lines_and_resume(tiny_dir, tmp_path) -> None:
    write_clips(tmp_path / "clips", 2)
    lines = ['{"video": "clips/clip00.mp4", "question": "What moves?"}',
             '{"video": "clips/clip01.mp4", "question": "Any sound?", "id": "silent"}',
             "{not json",
             '{"video": "clips/clip00.mp4", "question": "Who?", "speaker": 1}',
             "",
             '{"video": "clips/clip00.mp4", "audio": "clips/clip01.mp4", "question": "Hear it?"}',
             '{"video": "clips/clip00.mp4", "audio": null, "question": "Colours?", "id": "silent"}',
             '{"audio": "clips/clip00.mp4", "question": "What sound is this?", "id": 9}']
    questions = tmp_path / "qa.jsonl"
    questions.write_text("\n".join(lines) + "\n")
    out = tmp_path / "answers.jsonl"
    argv = ["ask", "--model", str(tiny_dir), "--questions", str(questions), "-o", str(out), *OPTIONS]
    assert main(argv) == 0
    records = {str(r["id"]): r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(records) == ["1", "3", "4", "6", "7", "9", "silent"]  # a repeated id: reported by line
    assert records["3"]["error"].startswith(f"{questions}:3: not valid JSON")
    assert "unknown fields ['speaker']" in records["4"]["error"]
    assert "clip01.mp4: has no audio stream" in records["6"]["error"]  # an explicit audio must have sound
    assert "id 'silent' already used on line 2" in records["7"]["error"]
    assert records["silent"]["has_audio"] is False and records["1"]["has_audio"] is True
    assert records["9"]["num_frames"] == 0 and records["9"]["has_audio"] is True
    assert set(records["1"]) == {"id", "video", "question", "answer", "num_frames", "has_audio", "seconds"}
    assert records["1"]["video"] == "clips/clip00.mp4"  # as written in the questions file
    kept = out.read_text().splitlines()
    out.write_text("\n".join(kept[:-2]) + "\n")  # killed before the last two lines
    assert main(argv) == 0
    again = out.read_text().splitlines()
    assert again[:-2] == kept[:-2] and sorted(again) == sorted(kept)
    assert main(argv) == 0 and out.read_text().splitlines() == again


def test_questions_file_errors(tiny_dir, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "gone.mp4", "question": "?"}\n[1, 2]\n')
    out = tmp_path / "answers.jsonl"
    assert main(["ask", "--model", str(tiny_dir), "--questions", str(bad), "-o", str(out), *OPTIONS]) == 1
    assert main(["ask", "--model", str(tiny_dir), "--questions", str(tmp_path / "none.jsonl"), "-o", str(out)]) == 2
    assert main(["ask", "--model", str(tiny_dir), "--questions", str(bad)]) == 2  # no --output
