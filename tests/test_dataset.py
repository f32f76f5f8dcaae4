"""ConversationDataset: tokenised samples with injected media, missing-audio policy, DataLoader workers end to end."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import pytest
import torch
from chat_tokenizer import CHATML, ids_of, make_tokenizer

from avlm.data import ConversationDataset, ModalityMixSampler, Record, collate
from avlm.data.conversation import IGNORE_INDEX
from vision.container import MediaError

QA = ({"from": "human", "value": "<video>\nwhat is playing"}, {"from": "gpt", "value": "a violin"})
RECORDS = [
    Record(id="av", conversations=QA, video=Path("ok.mp4"), audio_from_video=True, location="f:1"),
    Record(id="mute", conversations=QA, video=Path("mute.mp4"), audio_from_video=True, location="f:2"),
    Record(id="video", conversations=QA, video=Path("ok.mp4"), location="f:3"),
    Record(id="audio", conversations=({"from": "human", "value": "<audio>\nwhat is playing"}, QA[1]),
           audio=Path("a.wav"), location="f:4"),
    Record(id="text", conversations=({"from": "human", "value": "who plays"}, QA[1]), location="f:5"),
]


class FakeMediaLoader:
    """Frames [2, 3, 4, 4] per video, fbank-like [6, 5] per audio; mute.mp4 has no audio track."""

    def __call__(self, record: Record) -> dict[str, torch.Tensor]:
        media = {}
        if record.video is not None:
            media["video"] = torch.ones(2, 3, 4, 4)
        if record.audio_path is not None:
            if record.audio_path.name == "mute.mp4":
                raise MediaError(record.audio_path, "has no audio stream")
            media["audio"] = torch.ones(6, 5)
        return media


def make_dataset(**options) -> ConversationDataset:
    tokenizer = make_tokenizer(CHATML)
    return ConversationDataset(RECORDS, tokenizer, FakeMediaLoader(), ids_of(tokenizer, ["video", "audio"]), **options)


def test_samples_hold_placeholders_media_and_answer_labels() -> None:
    dataset = make_dataset(allow_missing_audio=True)
    tokenizer = dataset.tokenizer
    av = dataset[0]
    tokens = tokenizer.convert_ids_to_tokens(av["input_ids"].tolist())
    assert tokens[13:16] == ["<video>", "<audio>", "\n"]
    assert av["video"].shape == (2, 3, 4, 4) and av["audio"].shape == (6, 5) and av["media_error"] is None
    answer = av["labels"][av["labels"] != IGNORE_INDEX]
    assert tokenizer.convert_ids_to_tokens(answer.tolist()) == ["a", "violin", "<|im_end|>", "\n"]
    mute = dataset[1]
    assert "audio" not in mute and mute["video"].shape == (2, 3, 4, 4)
    assert "<audio>" not in tokenizer.convert_ids_to_tokens(mute["input_ids"].tolist())
    assert mute["media_error"] == "mute.mp4: mute.mp4: has no audio stream"
    assert set(dataset[4]) == {"input_ids", "labels", "id", "media_error"}


def test_missing_audio_is_an_error_unless_allowed() -> None:
    with pytest.raises(ValueError, match=r"record 'mute' \(f:2, video mute.mp4, audio mute.mp4\): .*no audio stream"):
        make_dataset()[1]


def test_audio_only_records_are_never_reduced_to_text() -> None:
    class BrokenAudio(FakeMediaLoader):
        def __call__(self, record: Record) -> dict[str, torch.Tensor]:
            if record.audio is not None:
                raise MediaError(record.audio, "truncated file")
            return super().__call__(record)

    dataset = make_dataset(allow_missing_audio=True)
    dataset.media_loader = BrokenAudio()
    with pytest.raises(ValueError, match=r"record 'audio' \(f:4, audio a.wav\): a.wav: truncated file"):
        dataset[3]


def test_max_length_counts_media_tokens() -> None:
    with pytest.raises(ValueError, match="max_length needs media_token_counter"):
        make_dataset(max_length=10)
    dataset = make_dataset(max_length=33, media_token_counter=lambda record: {"video": 8, "audio": 4})
    assert len(dataset[2]["input_ids"]) == 33 - 7  # video-only: only its own count is used (27 tokens cut to 26)
    with pytest.raises(ValueError, match="record 'av' .*no answer token is left"):
        dataset[0]


def test_dataloader_workers_give_the_same_batches_as_the_main_process() -> None:
    dataset = make_dataset(allow_missing_audio=True)
    assert pickle.loads(pickle.dumps(dataset))[0]["input_ids"].tolist() == dataset[0]["input_ids"].tolist()
    runs = []
    for workers in (0, 2):
        sampler = ModalityMixSampler.from_records(RECORDS, 2, seed=0)
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=workers,
                                             collate_fn=functools.partial(collate, pad_token_id=1))
        runs.append(list(loader))
    assert [b["ids"] for b in runs[0]] == [b["ids"] for b in runs[1]]
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first["input_ids"], second["input_ids"]) and torch.equal(first["labels"], second["labels"])
    batches = runs[1]
    rows = {sample_id: (batch, row) for batch in batches for row, sample_id in enumerate(batch["ids"])}
    batch, row = rows["mute"]
    assert batch["modality_mask"]["video"][row] and not batch["modality_mask"]["audio"][row]
    assert sum(b["media_errors"] for b in batches) == 1
    batch, row = rows["text"]
    assert not batch["modality_mask"]["video"][row] and not batch["modality_mask"]["audio"][row]


def test_data_config_from_yaml_builds_a_mixed_loader(tmp_path: Path) -> None:
    import json

    from avlm.data import AnnotationError, DataConfig, build_data
    from avlm.recipe_docs import describe
    from avlm.recipe_loading import ConfigError, load_config

    for name in ["v0.mp4", "v1.mp4", "a0.wav"]:
        (tmp_path / name).write_bytes(b"x")
    video = [{"id": f"v{i}", "video": f"v{i}.mp4", "conversations": list(QA)} for i in range(2)]
    audio = [{"id": "a0", "audio": "a0.wav", "conversations": [RECORDS[3].conversations[0], QA[1]]}]
    (tmp_path / "av.json").write_text(json.dumps(video))
    (tmp_path / "video.json").write_text(json.dumps(video))
    (tmp_path / "audio.jsonl").write_text(json.dumps(audio[0]))
    (tmp_path / "data.yaml").write_text(  # annotation paths are relative to the working directory, media to data_root
        f"sources:\n  - {{path: {tmp_path}/av.json, audio_from_video: true}}\n  - {{path: {tmp_path}/video.json}}\n"
        f"  - {{path: {tmp_path}/audio.jsonl}}\nmix_ratios: {{av: 2, video: 1, audio: 1}}\nnum_workers: 0\n"
    )
    config = load_config(DataConfig, tmp_path / "data.yaml", [f"data_root={tmp_path}"])
    tokenizer = make_tokenizer(CHATML)
    data = build_data(config, tokenizer, FakeMediaLoader(), ids_of(tokenizer, ["video", "audio"]), batch_size=4)
    assert data.report.kept_by_group == {"av": 2, "video": 2, "audio": 1}
    batch = next(iter(data.loader))
    assert batch["modality_mask"]["video"].tolist() == [True, True, True, False]
    assert batch["modality_mask"]["audio"].tolist() == [True, True, False, True]
    assert describe(DataConfig)["sources[].audio_from_video"].startswith("Video records also use")
    with pytest.raises(ConfigError, match="data.mix_ratios needs positive integers"):
        load_config(DataConfig, {"mix_ratios": {"av": 0}})
    (tmp_path / "a0.wav").unlink()
    with pytest.raises(AnnotationError, match="audio file not found"):
        build_data(config, tokenizer, FakeMediaLoader(), ids_of(tokenizer, ["video", "audio"]), batch_size=4)


def test_media_cache_decodes_each_record_once_and_keeps_missing_audio_errors() -> None:
    class Counting(FakeMediaLoader):
        calls: list[str] = []

        def __call__(self, record: Record) -> dict[str, torch.Tensor]:
            self.calls.append(record.id)
            return super().__call__(record)

    tokenizer = make_tokenizer(CHATML)
    loader = Counting()
    dataset = ConversationDataset(RECORDS, tokenizer, loader, ids_of(tokenizer, ["video", "audio"]),
                                  allow_missing_audio=True, cache_media=True)
    first = [dataset[i] for i in range(len(RECORDS))]
    calls = len(loader.calls)
    second = [dataset[i] for i in range(len(RECORDS))]
    assert len(loader.calls) == calls == 5  # av, mute (with audio, then without), video, audio; text loads nothing
    for a, b in zip(first, second, strict=True):
        assert a["media_error"] == b["media_error"] and torch.equal(a["input_ids"], b["input_ids"])
        assert all(torch.equal(a[m], b[m]) for m in ("video", "audio") if m in a)
    uncached = make_dataset(allow_missing_audio=True)
    assert uncached.cache is None
