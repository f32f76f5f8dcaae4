"""Chat-template tokenisation: labels on assistant answers only, token by token, for ChatML and [INST] templates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from chat_tokenizer import CHATML, INST, ids_of, make_tokenizer

from avlm.data.annotations import Record
from avlm.data.conversation import IGNORE_INDEX, token_budget, tokenize_conversation

TURNS = [
    {"from": "human", "value": "what is playing <video>"},
    {"from": "gpt", "value": "a violin"},
    {"from": "human", "value": "who plays"},
    {"from": "gpt", "value": "a girl"},
]


def pairs(tokenizer, encoded: dict[str, torch.Tensor]) -> list[tuple[str, bool]]:
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"].tolist())
    supervised = encoded["labels"] != IGNORE_INDEX
    assert torch.equal(encoded["labels"][supervised], encoded["input_ids"][supervised])
    return list(zip(tokens, supervised.tolist(), strict=True))


def test_chatml_labels_token_by_token() -> None:
    tokenizer = make_tokenizer(CHATML)
    encoded = tokenize_conversation(tokenizer, TURNS, ids_of(tokenizer, ["video", "audio"]), ["video", "audio"])
    expected = (
        [("<|im_start|>", 0), ("system", 0), ("\n", 0), ("You", 0), ("are", 0), ("a", 0), ("helpful", 0),
         ("assistant.", 0), ("<|im_end|>", 0), ("\n", 0)]
        + [("<|im_start|>", 0), ("user", 0), ("\n", 0), ("<video>", 0), ("<audio>", 0), ("\n", 0), ("what", 0),
           ("is", 0), ("playing", 0), ("<|im_end|>", 0), ("\n", 0), ("<|im_start|>", 0), ("assistant", 0), ("\n", 0)]
        + [("a", 1), ("violin", 1), ("<|im_end|>", 1), ("\n", 1)]
        + [("<|im_start|>", 0), ("user", 0), ("\n", 0), ("who", 0), ("plays", 0), ("<|im_end|>", 0), ("\n", 0),
           ("<|im_start|>", 0), ("assistant", 0), ("\n", 0)]
        + [("a", 1), ("girl", 1), ("<|im_end|>", 1), ("\n", 1)]
    )
    assert pairs(tokenizer, encoded) == [(token, bool(flag)) for token, flag in expected]


def test_inst_template_labels_token_by_token_with_system_prompt_off() -> None:
    tokenizer = make_tokenizer(INST)
    encoded = tokenize_conversation(tokenizer, TURNS, ids_of(tokenizer, ["video", "audio"]), ["video"])
    expected = (
        [("<s>", 0), ("[INST]", 0), ("<video>", 0), ("\n", 0), ("what", 0), ("is", 0), ("playing", 0), ("[/INST]", 0)]
        + [("a", 1), ("violin", 1), ("</s>", 1)]
        + [("[INST]", 0), ("who", 0), ("plays", 0), ("[/INST]", 0), ("a", 1), ("girl", 1), ("</s>", 1)]
    )
    assert pairs(tokenizer, encoded) == [(token, bool(flag)) for token, flag in expected]


def test_system_prompt_text_only_and_placeholder_only_user_turn() -> None:
    tokenizer = make_tokenizer(CHATML)
    placeholders = ids_of(tokenizer, ["video", "audio"])
    text_only = tokenize_conversation(tokenizer, TURNS[2:], placeholders, (), system_prompt="be helpful")
    assert [t for t, _ in pairs(tokenizer, text_only)][:6] == ["<|im_start|>", "system", "\n", "be", "helpful",
                                                               "<|im_end|>"]
    caption = [{"from": "human", "value": "<audio>"}, {"from": "gpt", "value": "a violin"}]
    encoded = tokenize_conversation(tokenizer, caption, placeholders, ["audio"])
    tokens = [t for t, _ in pairs(tokenizer, encoded)]
    assert tokens[10:15] == ["<|im_start|>", "user", "\n", "<audio>", "<|im_end|>"]  # no "\n" after a bare placeholder


def test_dropped_audio_removes_its_placeholder() -> None:
    tokenizer = make_tokenizer(CHATML)
    turns = [{"from": "human", "value": "<video><audio>\nwhat is playing"}, {"from": "gpt", "value": "a violin"}]
    encoded = tokenize_conversation(tokenizer, turns, ids_of(tokenizer, ["video", "audio"]), ["video"])
    tokens = [t for t, _ in pairs(tokenizer, encoded)]
    assert "<audio>" not in tokens and tokens.count("<video>") == 1


def test_truncation_counts_media_tokens() -> None:
    tokenizer = make_tokenizer(CHATML)
    placeholders = ids_of(tokenizer, ["video", "audio"])
    full = tokenize_conversation(tokenizer, TURNS, placeholders, ["video"])
    assert len(full["input_ids"]) == 41
    cut = tokenize_conversation(tokenizer, TURNS, placeholders, ["video"], max_length=40,
                                media_token_counts={"video": 10})
    assert len(cut["input_ids"]) == 31 and torch.equal(cut["labels"], full["labels"][:31])
    with pytest.raises(ValueError, match="no answer token is left"):
        tokenize_conversation(tokenizer, TURNS, placeholders, ["video"], max_length=30,
                              media_token_counts={"video": 10})
    with pytest.raises(ValueError, match="cuts off a media placeholder"):
        tokenize_conversation(tokenizer, TURNS, placeholders, ["video"], max_length=20, media_token_counts={"video": 8})


def test_errors_for_missing_placeholder_token_and_unstable_template() -> None:
    tokenizer = make_tokenizer(CHATML)
    with pytest.raises(ValueError, match="appears 2 times in the tokenized prompt, expected 1"):
        tokenize_conversation(tokenizer, TURNS, {"video": tokenizer.convert_tokens_to_ids("violin")}, ["video"])
    with pytest.raises(ValueError, match=r"modalities \['audio'\] have no placeholder token"):
        tokenize_conversation(tokenizer, TURNS, ids_of(tokenizer, ["video"]), ["audio"])
    tokenizer.chat_template = "{{ messages | length }}" + CHATML  # text before a turn depends on later turns
    with pytest.raises(ValueError, match="prefix by prefix"):
        tokenize_conversation(tokenizer, TURNS, ids_of(tokenizer, ["video"]), ["video"])


def test_token_budget_reports_truncated_samples() -> None:
    tokenizer = make_tokenizer(CHATML)
    records = [
        Record(id="av", conversations=tuple(TURNS[:2]), video=Path("v.mp4"), audio=Path("a.wav"), location="f:1"),
        Record(id="txt", conversations=tuple(TURNS[2:]), location="f:2"),
    ]
    counts = {"av": {"video": 16, "audio": 20}, "txt": {}}
    rows, totals = token_budget(records, tokenizer, lambda record: counts[record.id], 40,
                                ids_of(tokenizer, ["video", "audio"]))
    assert [(r.id, r.text_tokens, r.answer_tokens, r.media_tokens, r.total, r.truncated) for r in rows] == [
        ("av", 26, 4, {"video": 16, "audio": 20}, 62, True),
        ("txt", 24, 4, {}, 24, False),
    ]
    assert (totals.num_samples, totals.num_truncated, totals.text_tokens, totals.longest) == (2, 1, 50, 62)
    assert totals.media_tokens == {"video": 16, "audio": 20}
    with pytest.raises(ValueError, match="expected counts for"):
        token_budget(records[:1], tokenizer, lambda record: {"video": 1}, 40, ids_of(tokenizer, ["video", "audio"]))


def test_prompt_ids_match_the_videollama2_reference_fixture() -> None:
    """The official code's video prompt ids (placeholder id -201) equal ours up to the generation prompt."""
    safetensors = pytest.importorskip("safetensors.torch")
    case = Path(os.environ.get("AVLM_FIXTURES", Path(__file__).resolve().parents[2] / "shared/fixtures"))
    case = case / "videollama2_av_tiny"
    if not (case / "io.safetensors").exists():
        pytest.skip(f"fixture {case} not present")
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(case / "VideoLLaMA2.1-AV-tiny")  # its tokenizer.json
    tokenizer.add_special_tokens({"additional_special_tokens": ["<video>", "<audio>"]})
    placeholders = ids_of(tokenizer, ["video", "audio"])
    reference = safetensors.load_file(case / "io.safetensors")["v.input_ids"][0]
    turns = [{"from": "human", "value": "<video>\nWhat activity are the people practicing in the video?"},
             {"from": "gpt", "value": "Dancing."}]
    encoded = tokenize_conversation(tokenizer, turns, placeholders, ["video"])
    ours = encoded["input_ids"][: len(reference)].clone()
    ours[ours == placeholders["video"]] = -201
    assert torch.equal(ours, reference)
    assert (encoded["labels"][: len(reference)] == IGNORE_INDEX).all()
    assert tokenizer.decode(encoded["input_ids"][len(reference):]) == "Dancing.<|im_end|>\n"
    assert (encoded["labels"][len(reference):] != IGNORE_INDEX).all()


def test_official_av_layout_writes_one_video_placeholder() -> None:
    tokenizer = make_tokenizer(CHATML)
    ids = ids_of(tokenizer, ["video", "audio"])
    separate = tokenize_conversation(tokenizer, TURNS, ids, ["video", "audio"])
    concat = tokenize_conversation(tokenizer, TURNS, ids, ["video", "audio"], av_fusion="concat_at_video")
    tokens = tokenizer.convert_ids_to_tokens(concat["input_ids"].tolist())
    assert tokens.count("<video>") == 1 and "<audio>" not in tokens  # VideoLLaMA2-AV: audio joins the video block
    assert len(concat["input_ids"]) == len(separate["input_ids"]) - 1
    audio_only = tokenize_conversation(tokenizer, TURNS, ids, ["audio"], av_fusion="concat_at_video")
    assert "<audio>" in tokenizer.convert_ids_to_tokens(audio_only["input_ids"].tolist())
    # max_length counts the media tokens of both modalities against the one placeholder
    length = len(concat["input_ids"])
    fits = tokenize_conversation(tokenizer, TURNS, ids, ["video", "audio"], max_length=length + 14,
                                 media_token_counts={"video": 10, "audio": 5}, av_fusion="concat_at_video")
    assert len(fits["input_ids"]) == length
    cut = tokenize_conversation(tokenizer, TURNS, ids, ["video", "audio"], max_length=length + 13,
                                media_token_counts={"video": 10, "audio": 5}, av_fusion="concat_at_video")
    assert len(cut["input_ids"]) == length - 1
    with pytest.raises(ValueError, match="av_fusion must be one of"):
        tokenize_conversation(tokenizer, TURNS, ids, ["video"], av_fusion="concat")
