"""LoRA: the right layers get adapters, only adapters (and parts marked trainable) train, merge = W + (alpha/r) BA,
merged and unmerged outputs agree, and adapter folders are standard PEFT folders plus the trained connectors."""

from __future__ import annotations

import pytest
import torch
from avlm_dummies import PLACEHOLDERS, dummy_model

from avlm.modeling.lora import LoRAConfig, load_adapter, merge_lora, read_adapter_meta, save_adapter
from avlm.modeling.trainable import TrainablePolicy, prepare_for_training, set_trainable

peft = pytest.importorskip("peft")
V, A = PLACEHOLDERS["video"], PLACEHOLDERS["audio"]


def _inputs(seed: int = 3) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.tensor([[10, V, A, 11, 12], [0, 0, 13, V, 14]]),
            "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]),
            "video_pixels": torch.randn(2, 4, 3, 8, 8, generator=generator),
            "video_frame_counts": torch.tensor([4, 2]),
            "audio_features": torch.randn(1, 12, 10, generator=generator)}


def _randomize_adapters(model, seed: int = 5) -> None:
    """LoRA B starts at zero (a no-op); give it values so merging has something to check."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data = 0.3 * torch.randn(parameter.shape, generator=generator)


def test_default_lora_adapts_every_linear_layer_of_the_llm_but_the_head() -> None:
    model = dummy_model()
    counts = prepare_for_training(model, TrainablePolicy(), LoRAConfig(rank=4, alpha=8))
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in model.llm.named_parameters() if ".lora_A." in name}
    leaves = sorted({name.rsplit(".", 1)[1] for name in adapted})
    assert leaves == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert len(adapted) == 7 * 2  # two layers
    assert not any("lm_head" in name and "lora" in name for name, _ in model.named_parameters())
    assert counts["llm"] == sum(p.numel() for n, p in model.llm.named_parameters() if "lora_" in n)
    assert counts["encoders.video"] == counts["encoders.audio"] == 0


def test_only_adapters_and_parts_marked_trainable_get_gradients() -> None:
    model = dummy_model().train()
    policy = TrainablePolicy(llm="lora", encoders={"video": "frozen", "audio": "full"},
                             connectors={"video": "full", "audio": "frozen"})
    prepare_for_training(model, policy, LoRAConfig(rank=4, alpha=8, dropout=0.0))
    batch = _inputs()
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model(**batch).loss.backward()
    for name, parameter in model.named_parameters():
        trains = ("lora_" in name or name.startswith(("encoders.audio.", "connectors.video.")))
        assert parameter.requires_grad == trains, name
        assert (parameter.grad is not None) == trains, name
    lora_b = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(grad.abs().sum() > 0 for grad in lora_b)


def test_merge_adds_scaled_ba_to_each_weight_and_keeps_the_outputs() -> None:
    model = dummy_model()
    prepare_for_training(model, TrainablePolicy(), LoRAConfig(rank=4, alpha=8))
    _randomize_adapters(model)
    model.eval()
    layer = model.llm.base_model.model.model.layers[0].self_attn.q_proj
    expected = layer.base_layer.weight + (8 / 4) * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    with torch.no_grad():
        unmerged = model(**_inputs()).logits
        merge_lora(model)
        merged = model(**_inputs()).logits
    torch.testing.assert_close(model.llm.model.layers[0].self_attn.q_proj.weight, expected)
    assert not any("lora" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="has no adapters"):
        set_trainable(model, TrainablePolicy())


def test_adapter_folder_is_a_peft_folder_and_restores_the_trained_model(tmp_path) -> None:
    model = dummy_model()
    policy = TrainablePolicy(encoders={"video": "frozen", "audio": "lora"})
    prepare_for_training(model, policy, LoRAConfig(rank=4, alpha=8))
    _randomize_adapters(model)
    with torch.no_grad():
        model.connectors["video"].proj.weight.add_(1.0)  # a trained connector
    model.eval()
    save_adapter(model, tmp_path, LoRAConfig(rank=4, alpha=8), base_model="base-folder")
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "encoders" / "audio").is_dir()
    meta = read_adapter_meta(tmp_path)
    assert meta["base_model"] == "base-folder" and meta["parts"] == ["llm", "encoders.audio"]
    assert meta["trainables"] == ["connectors.audio.proj.bias", "connectors.audio.proj.weight",
                                  "connectors.video.proj.bias", "connectors.video.proj.weight"]

    embeds = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(0))
    plain = peft.PeftModel.from_pretrained(dummy_model().llm, tmp_path).eval()  # same seed: same base weights
    with torch.no_grad():
        torch.testing.assert_close(plain(inputs_embeds=embeds).logits, model.llm(inputs_embeds=embeds).logits)

    restored = dummy_model()
    load_adapter(restored, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(**_inputs()).logits, model(**_inputs()).logits)
