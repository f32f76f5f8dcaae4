"""Parity and loading of the transformers-backed towers (SigLIP, CLIP, Whisper) against the upstream models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from test_fixtures import fixtures_root

from audio.encoders.whisper import WhisperAudioEncoder, silence_value
from vision import VISION_ENCODERS, build_vision_encoder
from vision.encoders import CLIPVisionEncoder, SiglipVisionEncoder
from vision.preprocess import SIGLIP

# (registry name, wrapper, upstream vision model, full text + vision model and config, class tokens dropped)
TOWERS = [
    pytest.param("siglip", SiglipVisionEncoder, "SiglipVisionModel", "SiglipModel", "SiglipConfig", 0, id="siglip"),
    pytest.param("clip", CLIPVisionEncoder, "CLIPVisionModel", "CLIPModel", "CLIPConfig", 1, id="clip"),
]
TOWER_ARGS = ("name", "tower", "upstream", "full_model", "full_config", "prefix")
TINY_TEXT = {
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 16,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def save_full_model(folder: Path, full_model: str, full_config: str, vision_config) -> torch.nn.Module:
    """Write a random text + vision checkpoint (as the hub repos hold) and return its vision model."""
    config = getattr(transformers, full_config)(text_config=TINY_TEXT, vision_config=vision_config.to_dict())
    torch.manual_seed(1)
    model = getattr(transformers, full_model)(config).eval()
    model.save_pretrained(folder)
    return model.vision_model


# select_layer -> encoder layers built and run by the tiny (2-layer) tower
@pytest.mark.parametrize(("select_layer", "layers_run"), [(-2, 1), (-1, 2), (0, 0), (1, 1)])
@pytest.mark.parametrize(TOWER_ARGS, TOWERS)
def test_vision_tower_equals_upstream_hidden_state(
    name, tower, upstream, full_model, full_config, prefix, select_layer, layers_run
):
    torch.manual_seed(0)
    reference = getattr(transformers, upstream)._from_config(tower.tiny().config).eval()
    encoder = tower.from_config(reference.config, select_layer=select_layer)
    encoder.load_upstream_state_dict(reference.state_dict())
    pixel_values = torch.randn(2, 3, 3, encoder.image_size, encoder.image_size)
    expected = reference(pixel_values.flatten(0, 1), output_hidden_states=True).hidden_states[select_layer]
    tokens = encoder(pixel_values)
    torch.testing.assert_close(tokens.flatten(0, 1), expected[:, prefix:], atol=1e-6, rtol=0)
    # Only the layers needed are built; no post-layernorm or pooling head.
    assert len(encoder.encoder.layers) == encoder.num_layers_run == layers_run
    assert not any(key.startswith(("post_layernorm", "head")) for key in encoder.state_dict())


@pytest.mark.parametrize(TOWER_ARGS, TOWERS)
def test_vision_tower_loads_checkpoints_strictly(tmp_path, name, tower, upstream, full_model, full_config, prefix):
    vision_model = save_full_model(tmp_path, full_model, full_config, tower.tiny().config)
    encoder = build_vision_encoder(name, path=tmp_path)
    assert encoder.attn_implementation == "sdpa"
    assert (
        encoder.image_processor.size == 16
        and encoder.image_processor.image_mean == tower.default_image_processor.image_mean
    )
    pixel_values = torch.randn(1, 2, 3, 16, 16)
    expected = vision_model(pixel_values[0], output_hidden_states=True).hidden_states[-2][:, prefix:]
    torch.testing.assert_close(encoder(pixel_values)[0], expected, atol=1e-6, rtol=0)
    eager = tower.from_pretrained(tmp_path, attn_implementation="eager")
    assert eager.encoder.layers[0].self_attn.config._attn_implementation == "eager"
    torch.testing.assert_close(eager(pixel_values), encoder(pixel_values), atol=1e-5, rtol=0)
    chunked = tower.from_pretrained(tmp_path, chunk_size=1)
    torch.testing.assert_close(chunked(pixel_values), encoder(pixel_values), atol=1e-6, rtol=0)
    vision_model.save_pretrained(tmp_path / "vision_only")  # vision-only checkpoint, current key layout
    vision_only = build_vision_encoder(name, path=tmp_path / "vision_only")
    torch.testing.assert_close(vision_only(pixel_values), encoder(pixel_values), atol=0, rtol=0)

    state_dict = vision_model.state_dict()
    complete = {f"vision_model.{key}": value for key, value in state_dict.items()}
    broken = {key: value for key, value in complete.items() if key != "vision_model.post_layernorm.weight"}
    broken["vision_model.extra.weight"] = torch.zeros(1)
    broken["vision_model.encoder.layers.0.mlp.fc1.bias"] = torch.zeros(3)
    with pytest.raises(ValueError) as error:
        encoder.load_upstream_state_dict(broken, source="broken")
    for key in ["post_layernorm.weight", "extra.weight", "encoder.layers.0.mlp.fc1.bias: checkpoint (3,)"]:
        assert key in str(error.value)


def test_vision_tower_rejects_wrong_inputs(tmp_path):
    encoder = SiglipVisionEncoder.tiny()
    with pytest.raises(ValueError, match=r"pixel_values must have shape \[b, t, 3, 16, 16\]"):
        encoder(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="select_layer=-4"):
        SiglipVisionEncoder.tiny(select_layer=-4)
    with pytest.raises(ValueError, match="image_processor.size=384 differs from the model's image_size=16"):
        SiglipVisionEncoder.tiny(image_processor=SIGLIP)
    with pytest.raises(TypeError, match="config must be a SiglipVisionConfig"):
        SiglipVisionEncoder.from_config(CLIPVisionEncoder.tiny().config)
    save_full_model(tmp_path, "CLIPModel", "CLIPConfig", CLIPVisionEncoder.tiny().config)
    with pytest.raises(ValueError, match="model_type is 'clip'"):
        SiglipVisionEncoder.from_pretrained(tmp_path)
    with pytest.raises(ValueError,
                       match=r"unknown vision encoder 'dino'; choose one of \['bt_adapter_clip', 'clip', 'siglip'\]"):
        build_vision_encoder("dino", path=tmp_path)
    with pytest.raises(ValueError, match="exactly one of path"):
        build_vision_encoder("clip")
    assert sorted(VISION_ENCODERS) == ["bt_adapter_clip", "clip", "siglip"]


def test_siglip_fixture_folder_reproduces_videollama2_features():
    root = fixtures_root()
    case_dir = root / "videollama2_av_tiny" if root else None
    if case_dir is None or not case_dir.is_dir():
        pytest.skip("videollama2_av_tiny fixture not available (set AVLM_FIXTURES)")
    from safetensors.torch import load_file

    case = json.loads((case_dir / "case.json").read_text())
    folder = case_dir / "VideoLLaMA2.1-AV-tiny" / "siglip-tiny-patch14-70"
    encoder = SiglipVisionEncoder.from_pretrained(folder)
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert list(encoder.image_processor.image_mean) == processor["image_mean"]
    assert encoder.image_size == encoder.image_processor.size == processor["size"]["height"]
    io = load_file(str(case_dir / "io.safetensors"))
    for sample in ["av", "v", "img"]:
        expected = io[f"{sample}.vision_features"]  # [t, n, d]; an image is repeated over the t frames
        pixel_values = io[f"{sample}.pixel_values"].expand(expected.shape[0], -1, -1, -1)
        tokens = encoder(pixel_values[None])[0]
        assert tokens.shape == expected.shape
        limit = case["tolerance"][f"{sample}.vision_features"]["max_abs_diff"]
        assert (tokens - expected).abs().max() <= limit


def save_whisper(folder: Path, model_class: str) -> torch.nn.Module:
    torch.manual_seed(2)
    model = getattr(transformers, model_class)(WhisperAudioEncoder.tiny().config).eval()
    model.save_pretrained(folder)
    return model.get_encoder()


@pytest.mark.parametrize("model_class", ["WhisperForConditionalGeneration", "WhisperModel"])
def test_whisper_encoder_equals_upstream(tmp_path, model_class):
    reference = save_whisper(tmp_path, model_class)
    encoder = WhisperAudioEncoder.from_pretrained(tmp_path)
    assert encoder.encoder.config._attn_implementation == "sdpa"
    features = torch.randn(2, encoder.num_frames, encoder.num_mel_bins)
    tokens, lengths = encoder(features)
    expected = reference(input_features=features.transpose(1, 2)).last_hidden_state
    torch.testing.assert_close(tokens, expected, atol=1e-6, rtol=0)
    assert lengths.tolist() == [encoder.max_source_positions] * 2

    # Short input: padded with silence inside; lengths = ceil(valid / 2); batch padding does not leak in.
    short, short_lengths = encoder(features[:1, :31])
    silence = silence_value(features[:1, :31], torch.ones(1, 31, dtype=torch.bool))
    padded = torch.cat([features[:1, :31], silence.expand(1, encoder.num_frames - 31, encoder.num_mel_bins)], 1)
    torch.testing.assert_close(short, reference(input_features=padded.transpose(1, 2)).last_hidden_state)
    assert short_lengths.tolist() == [16]
    garbage = 5 * torch.randn(29, encoder.num_mel_bins)
    batch = torch.stack([features[1, :60], torch.cat([features[0, :31], garbage])])
    batched, batched_lengths = encoder(batch, torch.tensor([60, 31]))
    torch.testing.assert_close(batched[1], short[0], atol=1e-6, rtol=0)
    assert batched_lengths.tolist() == [30, 16]
    # Longer input is cut to 2 * max_source_positions frames.
    long, long_lengths = encoder(torch.cat([features, features[:, :7]], 1))
    torch.testing.assert_close(long, tokens, atol=0, rtol=0)
    assert long_lengths.tolist() == [encoder.max_source_positions] * 2


def test_whisper_silence_matches_feature_extractor():
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    time = torch.arange(8000) / 16000
    for amplitude in [0.3, 1e-6]:
        waveform = (amplitude * torch.sin(2 * torch.pi * 440 * time)).numpy()
        features = torch.from_numpy(extractor(waveform, sampling_rate=16000, return_tensors="np").input_features)
        features = features.transpose(1, 2)  # [1, 3000, 80]; 0.5 s of signal = 50 frames, then zero padding
        valid = torch.arange(3000)[None] < 50
        torch.testing.assert_close(features[0, 60:], silence_value(features, valid)[0].expand(2940, 80))


def test_whisper_strict_loading_and_input_checks(tmp_path):
    reference = save_whisper(tmp_path, "WhisperForConditionalGeneration")
    encoder = WhisperAudioEncoder.from_pretrained(tmp_path)
    state_dict = {f"model.encoder.{key}": value for key, value in reference.state_dict().items()}
    del state_dict["model.encoder.layer_norm.bias"]
    state_dict["model.encoder.conv1.weight"] = torch.zeros(1)
    state_dict["model.extra"] = torch.zeros(1)
    with pytest.raises(ValueError) as error:
        encoder.load_upstream_state_dict(state_dict, source="broken")
    message = str(error.value)
    assert "missing keys ['layer_norm.bias']" in message and "unexpected keys ['model.extra']" in message
    assert "conv1.weight: checkpoint (1,)" in message
    with pytest.raises(ValueError, match=r"features must have shape \[b, f, 80\]"):
        encoder(torch.randn(1, 80, 100))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 20\]"):
        encoder(torch.randn(2, 20, 80), torch.tensor([0, 20]))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    with pytest.raises(ValueError, match="model_type is 'siglip'"):
        WhisperAudioEncoder.from_pretrained(tmp_path)
