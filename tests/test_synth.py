"""AV-Synth generator: determinism, real decodable files, sounds and flashes where the scene says, held-out pairs."""

from __future__ import annotations

import hashlib
import json

import av
import numpy as np
import pytest

from audio import load_audio
from avlm.cli import main
from avlm.data import load_annotations
from avlm.synth import SynthConfig, generate, parse_caption
from avlm.synth.mp4 import write_mp4
from avlm.synth.questions import caption, caption_attributes, questions
from avlm.synth.render import render_frames
from avlm.synth.scene import Scene, SceneObject
from avlm.synth.sound import FREQUENCIES, event_span, render_audio
from avlm.synth.vocab import COLOURS, FLASH_COLOUR
from vision import load_video

CONFIG = SynthConfig(n_train=8, n_test=4, seed=3)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("avsynth")
    generate(out, CONFIG)
    return out


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.json*"))
            if p.name != "synth.json"}


def _decoded(path):
    """All frames and the whole waveform, decoded (x264 may pick different but equivalent bitstreams run to run)."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames, load_audio(path, sample_rate=16000).waveform.numpy()


def test_same_seed_same_files_other_seed_other_annotations(synth_dir, tmp_path):
    generate(tmp_path / "again", CONFIG)
    assert _digests(tmp_path / "again") == _digests(synth_dir) and len(_digests(synth_dir)) == 6
    for clip in ("train-00002.mp4", "test-00003.mp4"):
        (frames, sound), (frames2, sound2) = (_decoded(root / "clips" / clip)
                                              for root in (synth_dir, tmp_path / "again"))
        assert np.array_equal(frames, frames2) and np.array_equal(sound, sound2)
    generate(tmp_path / "other", SynthConfig(n_train=8, n_test=4, seed=4))
    assert (tmp_path / "other" / "train.json").read_text() != (synth_dir / "train.json").read_text()


def test_annotations_load_and_meta_matches(synth_dir):
    for split, clips in (("train", CONFIG.n_train), ("test", CONFIG.n_test)):
        records, report = load_annotations([synth_dir / f"{split}.json"])
        assert report.num_skipped == 0 and report.num_kept == len(records)
        assert set(report.kept_by_group) == {"av", "audio", "video"}
        meta = [json.loads(line) for line in (synth_dir / f"{split}_meta.jsonl").read_text().splitlines()]
        assert [m["id"] for m in meta] == [r.id for r in records]
        assert all(m["task"] == r.task for m, r in zip(meta, records, strict=True))
        assert {r.id.rsplit("-", 1)[0] for r in records} == {f"{split}-{i:05d}" for i in range(clips)}
        for record, row in zip(records, meta, strict=True):
            assert record.conversations[1]["value"] == row["answer"]
            modalities = {"audio_qa": ("audio",), "video_qa": ("video",)}.get(row["task"], ("video", "audio"))
            assert record.modalities == modalities


def test_held_out_pairs_only_in_test(synth_dir):
    manifest = json.loads((synth_dir / "synth.json").read_text())
    colour_shape = {tuple(p) for p in manifest["held_out"]["colour_shape"]}
    direction_sound = {tuple(p) for p in manifest["held_out"]["direction_sound"]}
    for split in ("train", "test"):
        for line in (synth_dir / f"{split}_scenes.jsonl").read_text().splitlines():
            scene = json.loads(line)
            pairs = {(o["colour"], o["shape"]) for o in scene["objects"]} & colour_shape
            pairs |= {(o["direction"], scene["sound"]) for o in scene["objects"]} & direction_sound
            assert bool(pairs) == (split == "test") == bool(scene["held_out"]), scene


def test_clips_decode_with_duration_audio_and_frames(synth_dir):
    clip = synth_dir / "clips" / "test-00001.mp4"
    video = load_video(clip, num_frames=4)
    assert video.frames.shape == (4, CONFIG.side, CONFIG.side, 3)
    assert abs(video.duration - CONFIG.duration) < 0.1
    sound = load_audio(clip, sample_rate=16000)
    assert abs(len(sound.waveform) / 16000 - CONFIG.duration) < 0.1


def _scene(sound="high"):
    obj = SceneObject("circle", "red", "big", "right", flash_slot=2, start=(0.3, 0.5))
    return Scene("hand-made", "train", 2.0, [obj], sound, sound_slots=[1])


def test_tone_pitch_and_flash_where_the_scene_says(tmp_path):
    scene = _scene()
    frames = render_frames(scene, 32, 12.0)
    path = write_mp4(tmp_path / "c.mp4", frames, 12.0, render_audio(scene, 16000, np.random.default_rng(0)), 16000)
    waveform = load_audio(path, sample_rate=16000).waveform.numpy()
    start, end = event_span(scene, 1)
    inside = waveform[int((start + 0.05) * 16000):int((end - 0.05) * 16000)]
    spectrum = np.abs(np.fft.rfft(inside))
    peak = np.fft.rfftfreq(len(inside), 1 / 16000)[spectrum.argmax()]
    assert abs(peak - FREQUENCIES["high"]) < 30
    silent = waveform[int(0.05 * 16000):int(0.4 * 16000)]  # slot 0 (0-0.5 s) has no event
    assert np.sqrt((silent ** 2).mean()) < 0.1 * np.sqrt((inside ** 2).mean())
    decoded = load_video(path, num_frames=4).frames.numpy().astype(int)  # frames in slots 0, 1, 2, 3
    white = [(np.abs(f - FLASH_COLOUR).sum(-1) < 60).sum() for f in decoded]
    red = [(np.abs(f - COLOURS["red"]).sum(-1) < 90).sum() for f in decoded]
    assert white[2] > 50 and white[0] == white[1] == white[3] == 0
    assert red[2] < 10 and min(red[0], red[1], red[3]) > 50


def test_object_moves_in_its_direction():
    frames = render_frames(_scene(), 64, 12.0)
    columns = [np.nonzero((f != f[0, 0]).any(-1).any(0))[0].mean() for f in frames[[0, -1]]]
    assert columns[1] - columns[0] > 0.3 * 64


def test_caption_round_trip_and_questions():
    scene = _scene("chirp")
    assert caption(scene) == "a big red circle moves right while a chirp plays"
    assert parse_caption(caption(scene)) == caption_attributes(scene)
    assert parse_caption("A big red circle moves right.") == {"object1.size": "big", "object1.colour": "red",
                                                               "object1.shape": "circle", "object1.direction": "right"}
    asked = {kind: answer for kind, _, answer in questions(scene, np.random.default_rng(0))}
    assert asked["count"] == "one" and asked["sync"] == "no" and asked["order"] == "before"
    assert asked["direction"] == "right" and asked["sound"] == "chirp"


def test_cli_and_bad_settings(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "cli"), "--n-train", "2", "--n-test", "1", "--side", "32"]) == 0
    assert "held out of training" in capsys.readouterr().out
    assert len(list((tmp_path / "cli" / "clips").glob("*.mp4"))) == 3
    assert main(["synth", str(tmp_path / "bad"), "--side", "33"]) == 2
    assert "side=33 must be an even number" in capsys.readouterr().err
