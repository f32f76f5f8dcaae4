"""`avlm build` (preset, or pretrained parts on disk) and `avlm merge-lora`: folders that load back and agree."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch

from avlm.cli import main
from avlm.modeling.lora import LoRAConfig, save_adapter
from avlm.modeling.trainable import TrainablePolicy, prepare_for_training


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    assert main(["build", str(folder), "--preset", "avlm-tiny"]) == 0
    return folder


def _sample(processor) -> dict:
    from avlm.commands.merge_lora import check_sample

    return check_sample(processor, ["video", "audio"])


def test_tiny_preset_folder_loads_through_the_auto_classes(tiny_dir) -> None:
    from transformers import AutoModelForCausalLM

    import avlm

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    processor = avlm.Processor.from_pretrained(tiny_dir)
    assert type(model).__name__ == "AVLMForCausalLM" and sorted(model.encoders) == ["audio", "video"]
    assert model.llm.lm_head.weight is model.llm.get_input_embeddings().weight  # tied, stored once
    assert processor.config.num_frames == 4 and processor.config.image_processor.size == 16
    batch = _sample(processor)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == 512 and torch.isfinite(logits).all()
    again = avlm.AVLMForCausalLM.from_pretrained(tiny_dir)
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, logits, atol=0, rtol=0)


def test_strict_loading_names_every_mismatch(tiny_dir, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    from avlm.modeling.model import AVLMForCausalLM

    for name in ("config.json", "generation_config.json"):
        (tmp_path / name).write_text((tiny_dir / name).read_text())
    state = load_file(str(tiny_dir / "model.safetensors"))
    removed = sorted(key for key in state if key.startswith("connectors.audio."))[0]
    state.pop(removed)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"missing keys \['{removed}'\], unexpected keys \['extra.weight'\]"):
        AVLMForCausalLM.from_pretrained(tmp_path)


def test_pickle_files_load_only_as_plain_tensors(tmp_path) -> None:
    from avlm.modeling.serialization import load_pickle_weights

    torch.save({"weight": torch.ones(2)}, tmp_path / "plain.bin")
    assert torch.equal(load_pickle_weights(tmp_path / "plain.bin")["weight"], torch.ones(2))
    torch.save({"weight": torch.ones(2), "cfg": argparse.Namespace(rate=1)}, tmp_path / "evil.bin")
    with pytest.raises(ValueError, match="refused to load.*safetensors"):
        load_pickle_weights(tmp_path / "evil.bin")


def test_build_from_parts_on_disk(tmp_path) -> None:
    from chat_tokenizer import CHATML, make_tokenizer
    from transformers import AutoModelForCausalLM, Qwen2Config, SiglipVisionConfig, SiglipVisionModel

    from audio.encoders.beats import BEATsEncoder
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.processing.processor import Processor

    tokenizer = make_tokenizer(CHATML)  # knows <video> and <audio>; <image> gets added
    llm = AutoModelForCausalLM.from_config(Qwen2Config(
        hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        vocab_size=len(tokenizer)))
    llm.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    vision = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                                  num_attention_heads=2, image_size=16, patch_size=4))
    vision.save_pretrained(tmp_path / "siglip")
    beats = BEATsEncoder.tiny()
    torch.save({"cfg": dataclasses.asdict(beats.config), "model": beats.state_dict()}, tmp_path / "beats.pt")
    out = tmp_path / "model"
    assert main(["build", str(out), "--llm", str(tmp_path / "llm"), "--vision", str(tmp_path / "siglip"),
                 "--audio", str(tmp_path / "beats.pt"), "--connector", "stc_connector_v35",
                 "--audio-connector", "mlp2x_gelu"]) == 0
    model, processor = AVLMForCausalLM.from_pretrained(out), Processor.from_pretrained(out)
    assert json.loads((out / "config.json").read_text())["encoders"]["video"]["options"] == {"select_layer": -2}
    torch.testing.assert_close(model.encoders["video"].encoder.layers[0].mlp.fc1.weight,
                               vision.encoder.layers[0].mlp.fc1.weight)
    torch.testing.assert_close(model.encoders["audio"].patch_embedding.weight, beats.patch_embedding.weight)
    torch.testing.assert_close(model.llm.model.layers[1].mlp.up_proj.weight, llm.model.layers[1].mlp.up_proj.weight)
    assert model.llm.get_input_embeddings().num_embeddings == len(tokenizer) + 1  # room for <image>
    assert processor.placeholder_token_ids["image"] == len(tokenizer)
    with torch.no_grad():
        assert torch.isfinite(model(**_sample(processor)).logits).all()


def test_merge_lora_writes_a_model_with_the_adapted_outputs(tiny_dir, tmp_path, capsys) -> None:
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.processing.processor import Processor

    model = AVLMForCausalLM.from_pretrained(tiny_dir)
    prepare_for_training(model, TrainablePolicy(), LoRAConfig(rank=4, alpha=8))
    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data = 0.5 * torch.randn(parameter.shape, generator=generator)
    save_adapter(model, tmp_path / "adapter", LoRAConfig(rank=4, alpha=8))
    batch = _sample(Processor.from_pretrained(tiny_dir))
    with torch.no_grad():
        adapted = model.eval()(**batch).logits
    assert main(["merge-lora", str(tmp_path / "adapter"), str(tmp_path / "merged")]) == 0
    assert "tolerance 0.0001" in capsys.readouterr().out
    with torch.no_grad():
        merged = AVLMForCausalLM.from_pretrained(tmp_path / "merged")(**batch).logits
        base = AVLMForCausalLM.from_pretrained(tiny_dir)(**batch).logits
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)
    assert (adapted - base).abs().max() > 1e-2  # the adapters do change the outputs
    assert main(["merge-lora", str(tmp_path / "adapter"), str(tmp_path / "refused"), "--tolerance", "1e-30"]) == 1
    assert not (tmp_path / "refused").exists()


def test_build_takes_video_connector_options(tmp_path, capsys) -> None:
    out = tmp_path / "pool"
    assert main(["build", str(out), "--preset", "avlm-tiny", "--connector", "spatial_pool",
                 "--connector-options", '{"grid": 2}']) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["connectors"]["video"] == {"name": "spatial_pool", "options": {"grid": 2}}
    assert "media tokens: {'video': 16" in capsys.readouterr().out  # 4 frames x 2 x 2
    assert main(["build", str(tmp_path / "bad"), "--preset", "avlm-tiny", "--connector-options", "{grid: 2}"]) == 2
    assert "--connector-options is not JSON" in capsys.readouterr().err


@pytest.mark.parametrize("connector, options", [("ccam", None), ("stc_connector_v35", {}),
                                                ("spatial_pool", {"grid": 4, "temporal_pool": 2})])
def test_avsynth_gpu_preset_gives_every_compared_connector_64_tokens(connector, options) -> None:
    from avlm.modeling import AVLMConfig
    from avlm.modeling.configuration import ConnectorSpec
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.processing import MediaConfig

    config = AVLMConfig.from_preset("avsynth-100m")
    if options is not None:
        config.connectors["video"] = ConnectorSpec(connector, options)
    with torch.device("meta"):
        model = AVLMForCausalLM(config)
    assert config.connectors["video"].name == connector
    assert model.num_media_tokens(MediaConfig.from_preset("avsynth-100m").num_frames)["video"] == 64
    assert 90e6 < sum(p.numel() for p in model.parameters()) < 115e6  # "a ~100M-parameter model"
