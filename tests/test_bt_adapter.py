"""BT-Adapter invariants (seed_systems.md §3.12) on a tiny random CLIP: backbone untouched, only the branch
trains, temporal identity at init, frame-permutation layout, temporal mixing, half-and-half gates, tube masking,
frame bounds, and the ViT-L/14 depth-4 parameter count."""

from __future__ import annotations

import copy

import pytest
import torch

import fusion
from fusion.bt_adapter import BTAdapter

BRANCH_PREFIXES = ("temporal_layers.", "spatial_layers.", "time_embedding.", "cls_token", "output_gate", "middle_gate")


def pixels(batch: int = 2, frames: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def tiny(seed: int = 0, **options) -> BTAdapter:
    torch.manual_seed(seed)
    return BTAdapter.tiny(**options).eval()


def randomize_temporal_outputs(adapter: BTAdapter) -> None:
    with torch.no_grad():
        for layer in adapter.temporal_layers:
            layer.output_proj.weight.normal_(0, 0.2)


def test_interface_and_frozen_backbone_bitwise() -> None:
    adapter = tiny(seed=1)
    pristine = copy.deepcopy(adapter.clip_vision)
    x = pixels()
    adapter.train()
    randomize_temporal_outputs(adapter)
    optimizer = torch.optim.SGD([p for p in adapter.parameters() if p.requires_grad], lr=0.5)
    output = adapter.encode(x)
    (output.frame_tokens.square().mean() + output.video_embed.square().mean()).backward()
    optimizer.step()
    trainable = {name for name, parameter in adapter.named_parameters() if parameter.requires_grad}
    assert trainable and all(name.startswith(BRANCH_PREFIXES) for name in trainable)
    assert all(parameter.grad is None for parameter in adapter.clip_vision.parameters())
    assert all(adapter.get_parameter(name).grad is not None for name in trainable)
    assert not adapter.clip_vision.training
    adapter.eval()
    with torch.no_grad():
        output = adapter.encode(x)
        expected = pristine(pixel_values=x.flatten(0, 1), output_hidden_states=True).hidden_states
    assert len(output.backbone_hidden) == len(expected) == 4
    for ours, theirs in zip(output.backbone_hidden, expected, strict=True):
        assert torch.equal(ours.flatten(0, 1), theirs)
    assert adapter(x).shape == (2, 3, adapter.num_patches, adapter.output_dim) == (2, 3, 16, 32)
    assert output.branch_tokens.shape == (2, 1 + 16 * 3, 32) and output.frame_cls.shape == (2, 3, 32)


def test_spatial_layers_start_as_copies_of_the_last_clip_layers() -> None:
    adapter = tiny()
    clip_layers = adapter.clip_vision.encoder.layers
    for j, spatial in enumerate(adapter.spatial_layers):
        clip_state = clip_layers[len(clip_layers) - adapter.depth + j].state_dict()
        assert spatial.state_dict().keys() == clip_state.keys()
        assert all(torch.equal(value, clip_state[key]) for key, value in spatial.state_dict().items())
        assert spatial.mlp.fc1.weight.data_ptr() != clip_state["mlp.fc1.weight"].data_ptr()


def test_temporal_layer_is_identity_at_init() -> None:
    adapter = tiny()
    tokens = torch.randn(2, 1 + 16 * 5, 32)
    for layer in adapter.temporal_layers:
        assert torch.equal(layer(tokens, num_frames=5), tokens)
    randomize_temporal_outputs(adapter)
    changed = adapter.temporal_layers[0](tokens, num_frames=5)
    assert torch.equal(changed[:, 0], tokens[:, 0]) and not torch.allclose(changed[:, 1:], tokens[:, 1:])


def test_permuting_frames_permutes_frame_tokens() -> None:
    adapter = tiny()
    with torch.no_grad():
        adapter.time_embedding.weight.zero_()
        adapter.output_gate.normal_(0, 1e-4)  # gates off the half-and-half point, still layout-neutral
        x, order = pixels(frames=4), torch.tensor([2, 0, 3, 1])
        base, permuted = adapter.encode(x), adapter.encode(x[:, order])
    torch.testing.assert_close(permuted.frame_tokens, base.frame_tokens[:, order], rtol=0, atol=1e-6)
    torch.testing.assert_close(permuted.frame_cls, base.frame_cls[:, order], rtol=0, atol=1e-6)
    torch.testing.assert_close(permuted.video_embed, base.video_embed, rtol=0, atol=1e-6)


def test_temporal_mixing_reaches_other_frames_only_in_the_branch() -> None:
    adapter = tiny()
    randomize_temporal_outputs(adapter)
    x = pixels(batch=1, frames=4)
    changed = x.clone()
    changed[:, 2] += torch.randn_like(changed[:, 2])
    with torch.no_grad():
        base, other = adapter.encode(x), adapter.encode(changed)
    untouched = [0, 1, 3]
    for ours, theirs in zip(base.backbone_hidden, other.backbone_hidden, strict=True):
        assert torch.equal(ours[:, untouched], theirs[:, untouched])
    branch_base = base.branch_tokens[:, 1:].reshape(1, 16, 4, 32)[:, :, untouched]
    branch_other = other.branch_tokens[:, 1:].reshape(1, 16, 4, 32)[:, :, untouched]
    assert (branch_base - branch_other).abs().amax() > 1e-4


def test_zero_gates_mix_half_and_half() -> None:
    adapter = tiny()
    randomize_temporal_outputs(adapter)
    with torch.no_grad():
        output = adapter.encode(pixels())
    last = output.backbone_hidden[-1]
    branch_cls = output.branch_tokens[:, :1]
    expected_cls = adapter.clip_vision.post_layernorm((branch_cls + last[:, :, 0]) / 2)
    torch.testing.assert_close(output.frame_cls, expected_cls, rtol=0, atol=1e-6)
    branch_patches = output.branch_tokens[:, 1:].reshape(2, 16, 3, 32).transpose(1, 2)
    torch.testing.assert_close(output.frame_tokens, (branch_patches + last[:, :, 1:]) / 2, rtol=0, atol=1e-6)


def test_tube_masking_drops_the_same_patches_in_every_frame() -> None:
    adapter = tiny()
    with torch.no_grad():
        adapter.time_embedding.weight.zero_()
        frame = pixels(batch=2, frames=1)
        video = frame.expand(2, 4, 3, 32, 32)  # identical frames: a tube keeps the branch identical across t
        masked = adapter.encode(video, mask_ratio=0.7, generator=torch.Generator().manual_seed(3))
        full = adapter.encode(video)
    kept = 16 - int(0.7 * 16)
    assert masked.branch_tokens.shape == (2, 1 + 4 * kept, 32) and masked.frame_tokens is None
    assert masked.patch_mask.shape == (2, 16) and masked.patch_mask.sum(1).tolist() == [16 - kept] * 2
    per_patch = masked.branch_tokens[:, 1:].reshape(2, kept, 4, 32)
    torch.testing.assert_close(per_patch, per_patch[:, :, :1].expand_as(per_patch), rtol=0, atol=1e-5)
    assert not torch.allclose(per_patch[:, :, 0], full.branch_tokens[:, 1:].reshape(2, 16, 4, 32)[:, :kept, 0])
    for ours, theirs in zip(masked.backbone_hidden, full.backbone_hidden, strict=True):
        assert torch.equal(ours, theirs)


def test_frame_bounds_and_errors() -> None:
    adapter = tiny(max_frames=4)
    with torch.no_grad():
        assert adapter(pixels(frames=1)).shape == (2, 1, 16, 32)
    with pytest.raises(ValueError, match="max_frames"):
        adapter(pixels(frames=5))
    with pytest.raises(ValueError, match="mask_ratio"):
        adapter.encode(pixels(), mask_ratio=1.0)
    with pytest.raises(ValueError, match="depth"):
        tiny(depth=4)
    with pytest.raises(TypeError, match="CLIPVisionModel"):
        BTAdapter(torch.nn.Linear(2, 2))
    assert fusion.BTAdapter is BTAdapter


def test_parameter_count_vit_large_depth_4() -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=224, patch_size=14, projection_dim=768)
    with torch.device("meta"):
        adapter = BTAdapter(CLIPVisionModel(config), depth=4)
    new = sum(parameter.numel() for parameter in adapter.parameters() if parameter.requires_grad)
    assert new == 71_453_696
    assert sum(p.numel() for p in adapter.spatial_layers[0].parameters()) == 12_596_224
    assert sum(p.numel() for p in adapter.temporal_layers[0].parameters()) == 5_250_048


def test_reference_key_names_follow_the_reference_layout() -> None:
    keys = set(tiny().reference_state_dict())
    for key in ("btadapter_S_layers.0.self_attn.q_proj.weight", "btadapter_S_layers.0.mlp.fc2.bias",
                "btadapter_T_layers.0.temporal_fc.weight", "btadapter_T_layers.0.layer_norm1.bias",
                "btadapter_time_embed.weight", "btadapter_cls_token", "balance1", "balance2", "class_embedding",
                "patch_embedding.weight", "position_embedding.weight", "pre_layrnorm.weight", "layers.0.mlp.fc1.weight",
                "post_layernorm.bias"):
        assert key in keys, key
    assert not any(key.startswith(("clip_vision.", "temporal_layers.", "spatial_layers.")) for key in keys)


def test_reference_checkpoint_round_trip_with_prefix_and_legacy_names(tmp_path) -> None:
    source, target = tiny(seed=1), tiny(seed=2)
    randomize_temporal_outputs(source)
    saved = {"backbone." + key.replace("btadapter", "timesFPN"): value
             for key, value in source.reference_state_dict().items()}
    saved["cls_head.fc.weight"] = torch.zeros(3, 3)  # other recognizer parts are not read
    torch.save({"state_dict": saved, "meta": {"epoch": 3}}, tmp_path / "epoch_3.pth")
    target.load_reference_checkpoint(tmp_path / "epoch_3.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    x = pixels()
    assert torch.equal(source(x), target(x))


def test_branch_only_keeps_the_clip_weights_and_errors_list_every_key() -> None:
    source, target = tiny(seed=1), tiny(seed=2)
    clip_before = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("clip_vision.")}
    branch = {k: v for k, v in source.reference_state_dict().items() if k.startswith(("btadapter", "balance"))}
    target.load_reference_state_dict(branch, branch_only=True)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in clip_before.items())
    assert torch.equal(target.output_gate, source.output_gate)
    with pytest.raises(ValueError, match=r"missing 1 \['btadapter_cls_token'\].*unexpected 1 \['extra'\]"):
        target.load_reference_state_dict({k: v for k, v in branch.items() if k != "btadapter_cls_token"}
                                         | {"extra": torch.zeros(1)}, branch_only=True)
    bad = dict(branch, balance1=torch.zeros(7))
    with pytest.raises(ValueError, match="mis-shaped 1"):
        target.load_reference_state_dict(bad, branch_only=True)
    with pytest.raises(FileNotFoundError, match="no such BT-Adapter checkpoint"):
        target.load_reference_checkpoint("/nonexistent/bt.pth")
