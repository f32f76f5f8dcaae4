"""The training loop on avlm-tiny (CPU): stored first losses, falling loss, outputs, exact resume, the dummy-encoder
rule, gradient accumulation and per-part learning rates."""

from __future__ import annotations

import json

import pytest
import torch
from train_support import read_losses, tiny_data_dir, tiny_model_dir, tiny_recipe

from avlm.train.checkpoints import list_checkpoints
from avlm.train.loop import train

# First three losses of test_smoke_run (avlm-tiny seed 0, the mixed test data, LLM + connectors trained).
STORED_FIRST_LOSSES = [6.2228851318359375, 6.231119632720947, 6.088976860046387]


def quiet(_: str) -> None:
    """Discard the loop's messages."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data_dir(tmp_path_factory)


def test_smoke_run(model_dir, data, tmp_path):
    recipe = tiny_recipe({}, data, tmp_path, f"model={model_dir}", "trainable.llm=full", "train.max_steps=8",
                         "train.lr=1e-2", "train.warmup_ratio=0.1", "train.save_every=4", "train.keep_last=1")
    result = train(recipe, say=quiet)
    losses = read_losses(tmp_path)
    assert losses == result.losses and len(losses) == 8
    assert losses[:3] == pytest.approx(STORED_FIRST_LOSSES, abs=1e-4)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(line["time"]) == {"data_wait", "vision", "audio", "connectors", "llm_forward", "backward", "optimizer"}
    assert set(line["lr"]) == {"connectors", "llm"} and line["samples"] == 16 and line["tokens_per_s"] > 0
    assert line["grad_norm"] > 0
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert [path.name for path in list_checkpoints(tmp_path / "checkpoints")] == ["step-000008"]  # keep_last=1
    from avlm.modeling.model import AVLMForCausalLM

    assert AVLMForCausalLM.from_pretrained(result.final).config.text_config.hidden_size == 32


def test_resume_equals_uninterrupted_run(model_dir, tmp_path_factory, tmp_path):
    # Audio and text samples only, to keep 40 CPU steps fast (the video connector dominates a CPU step); 5 records
    # with batch 1 x grad_accum 2, so epochs end inside a step. LoRA dropout is on: RNG states must be restored too.
    data = tiny_data_dir(tmp_path_factory, {"audio": 2, "text": 3}, name="audio-text")
    common = [f"model={model_dir}", "train.max_steps=20", "train.lr=1e-3", "train.batch_size=1", "train.grad_accum=2",
              "train.warmup_ratio=0.1"]
    full = train(tiny_recipe({}, data, tmp_path / "full", *common), say=quiet).losses
    split = tmp_path / "split"
    first = train(tiny_recipe({}, data, split, *common, "train.save_every=4"), say=quiet, stop_at=10)
    assert first.final is None and [p.name for p in list_checkpoints(split / "checkpoints")][-1] == "step-000010"
    with pytest.raises(ValueError, match="already holds checkpoints"):  # a fresh run must not mix with them
        train(tiny_recipe({}, data, split, *common), say=quiet)
    crashed = split / "checkpoints" / ".tmp-step-000012"  # a checkpoint write interrupted by a crash
    crashed.mkdir()
    (crashed / "state.json").write_text('{"step": 12')
    with pytest.raises(ValueError, match="cannot resume .* grad_accum"):  # a step would mean something else
        train(tiny_recipe({}, data, split, *common, "train.resume=auto", "train.grad_accum=1"), say=quiet)
    second = train(tiny_recipe({}, data, split, *common, "train.resume=auto"), say=quiet)
    assert len(first.losses) == 10 and len(second.losses) == 10
    assert max(abs(a - b) for a, b in zip(full, first.losses + second.losses, strict=True)) <= 1e-6
    assert read_losses(split) == pytest.approx(full, abs=1e-6)  # metrics.jsonl continues without gaps or repeats
    from avlm.modeling.model import AVLMForCausalLM

    final = AVLMForCausalLM.from_pretrained(second.final)
    assert not any("lora" in name for name, _ in final.named_parameters())  # adapters merged into final/


def test_unmerged_adapter_kept_with_merge_lora_false(model_dir, data, tmp_path):
    from avlm.modeling.lora import load_adapter, read_adapter_meta
    from avlm.modeling.model import AVLMForCausalLM

    recipe = tiny_recipe({}, data, tmp_path, f"model={model_dir}", "train.max_steps=1", "train.merge_lora=false")
    final = train(recipe, say=quiet).final
    assert read_adapter_meta(final / "adapter")["base_model"] == str(model_dir)
    base = AVLMForCausalLM.from_pretrained(model_dir)
    load_adapter(base, final / "adapter")  # the adapter fits its base; final/ itself is the merged model
    assert (final / "config.json").is_file()


def test_gradient_accumulation_equals_one_big_batch(model_dir, data, tmp_path):
    common = [f"model={model_dir}", "train.max_steps=2", "train.lr=1e-2", "lora.dropout=0"]  # within one epoch
    big = train(tiny_recipe({}, data, tmp_path / "big", *common, "train.batch_size=4"), say=quiet).losses
    small = train(tiny_recipe({}, data, tmp_path / "acc", *common, "train.batch_size=2", "train.grad_accum=2"),
                  say=quiet).losses
    assert small == pytest.approx(big, abs=1e-5)


def test_packed_sequences_train_like_the_padded_batch(model_dir, data, tmp_path):
    common = [f"model={model_dir}", "train.max_steps=2", "train.lr=1e-2", "lora.dropout=0", "train.batch_size=4"]
    padded = train(tiny_recipe({}, data, tmp_path / "padded", *common), say=quiet).losses
    packed = train(tiny_recipe({}, data, tmp_path / "packed", *common, "train.pack_sequences=true",
                               "train.attn_implementation=eager"), say=quiet).losses
    assert packed == pytest.approx(padded, abs=1e-5)


def test_missing_modality_runs_every_encoder_on_a_dummy(model_dir):
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.processing.collator import collate
    from avlm.processing.processor import Processor
    from avlm.train.stages import TrainingForward, labelled_tokens

    model, processor = AVLMForCausalLM.from_pretrained(model_dir), Processor.from_pretrained(model_dir)
    sample = processor.sample("What colour?", torch.zeros(4, 16, 16, 3, dtype=torch.uint8))  # video only
    sample["labels"] = sample["input_ids"].clone()
    batch = collate([sample], processor.tokenizer.pad_token_id)
    num_items = torch.tensor(labelled_tokens(batch))
    losses = {}
    for run_all in (False, True):
        model.zero_grad()
        forward = TrainingForward(model, run_all_encoders=run_all)
        losses[run_all] = forward(batch, num_items)
        losses[run_all].backward()
        audio_grads = [p.grad for p in model.connectors["audio"].parameters()]
        if run_all:  # the audio branch ran (gradients exist) and contributed exactly nothing
            assert all(g is not None and not g.any() for g in audio_grads) and forward.times["audio"] > 0
        else:
            assert all(g is None for g in audio_grads) and forward.times["audio"] == 0
    assert losses[True].item() == losses[False].item()
    merged = model.embed_multimodal(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                    video_pixels=batch["video_pixels"], video_frame_counts=batch["video_frame_counts"],
                                    video_sample_index=batch["video_sample_index"])
    assert forward.tokens == int(merged.attention_mask.sum())  # LLM tokens counted from shapes, no device sync


def test_part_learning_rates_and_decay_groups(model_dir):
    from avlm.recipe_loading import load_config
    from avlm.train.recipe import Recipe
    from avlm.train.setup import build_optimizer, prepare_model

    overrides = ["train.lr=1e-3", "train.part_lrs={connectors: 5e-4}", "train.weight_decay=0.1",
                 "trainable.encoders.audio=full"]
    recipe = load_config(Recipe, {"model": str(model_dir)}, overrides)
    model, _, _ = prepare_model(recipe)
    groups = {(g["name"], g["weight_decay"]): g["lr"] for g in build_optimizer(model, recipe.train).param_groups}
    assert groups == {("connectors", 0.0): 5e-4, ("connectors", 0.1): 5e-4, ("encoders", 0.0): 1e-3,
                      ("encoders", 0.1): 1e-3, ("lora", 0.1): 1e-3}


def test_undecodable_audio_trains_on_video_and_is_counted(model_dir, tmp_path):
    from train_support import make_dataset

    data = make_dataset(tmp_path / "data", {"av": 2})
    (data.parent / "av-1.wav").write_bytes(b"RIFF not really a wav file")
    recipe = tiny_recipe({}, data, tmp_path / "run", f"model={model_dir}", "train.max_steps=1",
                         "data.allow_missing_audio=true", "data.shuffle=false")
    train(recipe, say=quiet)
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert line["media_errors"] == 1 and line["samples"] == 2


def test_official_av_layout_trains_like_the_separate_one(model_dir, tmp_path_factory, tmp_path):
    """A concat_at_video model (official VideoLLaMA2-AV layout: one <video> placeholder, audio appended to the video
    block) gets the same spliced sequence, so the same loss, as the separate layout; and a recipe trains it."""
    import shutil

    from avlm.data import collate
    from avlm.data.annotations import load_annotations
    from avlm.data.dataset import ConversationDataset
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.processing.processor import Processor

    concat_dir = tmp_path / "concat-model"
    shutil.copytree(model_dir, concat_dir)
    config = json.loads((concat_dir / "config.json").read_text())
    config["av_fusion"] = "concat_at_video"
    (concat_dir / "config.json").write_text(json.dumps(config))
    data = tiny_data_dir(tmp_path_factory, {"av": 4}, name="av-only")
    records, _ = load_annotations([data])
    processor = Processor.from_pretrained(model_dir)
    losses, rows = {}, {}
    for layout, folder in (("separate", model_dir), ("concat_at_video", concat_dir)):
        model = AVLMForCausalLM.from_pretrained(folder).eval()
        assert model.config.av_fusion == layout
        ids = {m: model.config.placeholder_token_ids[m] for m in ("video", "audio")}
        dataset = ConversationDataset(records, processor.tokenizer, processor.load_media, ids, av_fusion=layout)
        batch = collate([dataset[i] for i in range(len(dataset))], processor.tokenizer.pad_token_id, "right")
        rows[layout] = [processor.tokenizer.convert_ids_to_tokens(row) for row in batch["input_ids"].tolist()]
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels", "video_pixels", "video_frame_counts",
                                        "video_sample_index", "audio_features", "audio_lengths", "audio_sample_index")}
        with torch.no_grad():
            losses[layout] = model(**inputs).loss
    assert all(row.count("<video>") == 1 and "<audio>" not in row for row in rows["concat_at_video"])
    assert all(row.count("<audio>") == 1 for row in rows["separate"])
    torch.testing.assert_close(losses["concat_at_video"], losses["separate"])

    recipe = tiny_recipe({}, data, tmp_path / "run", f"model={concat_dir}", "trainable.llm=full",
                         "data.max_length=4096")
    result = train(recipe, say=quiet)
    assert len(result.losses) == 3 and all(0 < loss < 20 for loss in result.losses)


def test_official_checkpoint_fine_tunes_with_the_lora_recipe(tmp_path):
    """The official tiny VideoLLaMA2-AV checkpoint (placeholder ids -201/-202 outside the vocabulary, audio appended at
    <video>) trains with finetune_lora: training ids are the inference prompt plus the answer, and final/ loads."""
    from pathlib import Path

    from test_fixtures import official_tiny_case
    from train_support import make_dataset

    from avlm.assembly import load_processor
    from avlm.data.conversation import tokenize_conversation
    from avlm.modeling.model import AVLMForCausalLM

    case = official_tiny_case()
    if case is None:
        pytest.skip("no fixtures: set AVLM_FIXTURES=/path/to/fixtures")
    folder = case[2]
    processor = load_processor(folder)
    turns = [{"from": "human", "value": "<video>\nWhat colour is it?"}, {"from": "gpt", "value": "red"}]
    encoded = tokenize_conversation(processor.tokenizer, turns, processor.placeholder_token_ids, ["video", "audio"],
                                    av_fusion=processor.av_fusion)
    prompt = processor.encode_prompt("What colour is it?", ["video", "audio"])
    assert torch.equal(encoded["input_ids"][:len(prompt)], prompt)
    assert (encoded["labels"][:len(prompt)] == -100).all() and (encoded["labels"][len(prompt):] != -100).all()
    assert (encoded["input_ids"] == processor.placeholder_token_ids["video"]).sum() == 1

    data = make_dataset(tmp_path / "data", {"av": 2, "video": 2, "audio": 2})
    recipe = tiny_recipe(Path(__file__).parents[1] / "avlm" / "recipes" / "finetune_lora.yaml", data, tmp_path / "run",
                         f"model={folder}", "data.mix_ratios=null", "train.max_steps=2", "lora.rank=4",
                         "lora.alpha=8")
    result = train(recipe, say=quiet)
    assert len(result.losses) == 2 and all(0 < loss < 20 for loss in result.losses)
    tuned = AVLMForCausalLM.from_pretrained(result.final)
    assert tuned.config.av_fusion == "concat_at_video"


def test_frozen_weights_in_bfloat16(model_dir, tmp_path_factory, tmp_path):
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.recipe_loading import ConfigError
    from avlm.train.setup import prepare_model

    data = tiny_data_dir(tmp_path_factory, {"audio": 2, "text": 3}, name="audio-text")
    common = [f"model={model_dir}", "train.max_steps=6", "train.lr=1e-2", "train.batch_size=1", "lora.dropout=0",
              "train.mixed_precision=bf16"]
    half = tiny_recipe({}, data, tmp_path / "half", *common, "train.frozen_dtype=bfloat16")
    model, _, _ = prepare_model(half)
    dtypes = {(parameter.requires_grad, parameter.dtype) for parameter in model.parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}  # LoRA + connectors fp32, the rest bf16
    full = train(tiny_recipe({}, data, tmp_path / "full", *common), say=quiet).losses
    result = train(half, say=quiet)
    # Same bf16 autocast either way: the matmuls already ran in bf16, so the losses agree closely.
    assert result.losses == pytest.approx(full, abs=5e-3) and result.losses[-1] < result.losses[0] - 0.05
    split = tmp_path / "split"
    train(tiny_recipe({}, data, split, *common, "train.frozen_dtype=bfloat16", "train.save_every=3"), say=quiet,
          stop_at=3)
    resumed = train(tiny_recipe({}, data, split, *common, "train.frozen_dtype=bfloat16", "train.resume=auto"),
                    say=quiet)
    assert read_losses(split) == pytest.approx(result.losses, abs=1e-6)  # frozen weights re-cast the same way
    final = AVLMForCausalLM.from_pretrained(resumed.final)
    assert not any("lora" in name for name, _ in final.named_parameters())
    # A float32 run in the same process after bf16 ones (accelerate's per-process state is renewed for each run).
    assert len(train(tiny_recipe({}, data, tmp_path / "fp32", f"model={model_dir}", "train.max_steps=1"),
                     say=quiet).losses) == 1
    with pytest.raises(ConfigError, match="frozen_dtype=bfloat16 needs mixed_precision=bf16"):
        tiny_recipe({}, data, tmp_path, *common, "train.frozen_dtype=bfloat16", "train.mixed_precision=fp32")
    with pytest.raises(ConfigError, match="FSDP and DeepSpeed keep their own parameter dtypes"):
        tiny_recipe({}, data, tmp_path, *common, "train.frozen_dtype=bfloat16", "distributed.strategy=fsdp")
