"""`avlm inspect`: stream table, contact sheet PNG, and a one-line error for a bad file."""

from __future__ import annotations

from PIL import Image

from avlm.cli import COMMANDS, main


def test_commands_listed():
    assert "inspect" in COMMANDS


def test_inspect_real_clip_with_audio(bigbuckbunny, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["inspect", str(bigbuckbunny), "--num-frames", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "aac" in printed and "48000 Hz" in printed and "1280x720" in printed
    assert "8 frames" in printed
    with Image.open(out) as image:
        assert image.width > 400 and image.height > 200


def test_inspect_clip_without_audio(bikes, tmp_path, capsys):
    out = tmp_path / "bikes.png"
    assert main(["inspect", str(bikes), "--num-frames", "4", "--out", str(out)]) == 0
    assert "no audio stream" in capsys.readouterr().out
    assert out.stat().st_size > 0


def test_inspect_bad_file_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello")
    assert main(["inspect", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err
    assert "notes.mp4" in error and "not a readable media file" in error
    assert not (tmp_path / "x.png").exists()
