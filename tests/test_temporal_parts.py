"""The seeds' temporal modules as model parts: MA-LMM's memory bank as a video connector (``memory_bank``) and
BT-Adapter as a video encoder (``bt_adapter_clip``): streaming, what trains, build -> train -> save -> reload ->
caption, and memory that stays flat as the frame count grows."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
from media import write_video
from safetensors.torch import load_file, save_file
from train_support import read_losses, tiny_data_dir, tiny_recipe
from transformers import CLIPVisionConfig, CLIPVisionModel

import avlm
import fusion
from avlm.cli import main
from avlm.modeling.branches import BRANCHES, BranchInputs
from avlm.modeling.configuration import AVLMConfig, ConnectorSpec
from avlm.modeling.model import AVLMForCausalLM
from avlm.modeling.trainable import TrainablePolicy, set_trainable
from avlm.train.loop import train
from vision import VISION_ENCODERS, build_vision_encoder
from vision.encoders import SiglipVisionEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_temporal_memory  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent
MBANK_OPTIONS = {"num_queries": 8, "num_layers": 2, "memory_length": 2, "chunk_frames": 2}  # as avlm-tiny-mbank


def test_memory_bank_connector_streams_chunks_like_one_call() -> None:
    torch.manual_seed(0)
    connector = fusion.build_connector("memory_bank", 12, 16, num_queries=4, num_layers=2, memory_length=3,
                                       dropout=0.0).eval()
    torch.nn.init.normal_(connector.time_embedding.weight)  # zero at init: make the frame order matter
    x = torch.randn(2, 9, 5, 12)
    whole = connector(x)
    state = connector.new_state()
    for chunk in x.split(4, dim=1):  # 4 + 4 + 1 frames
        streamed = connector(chunk, state)
    assert whole.shape == (2, 4, 16) and torch.equal(streamed, whole)
    assert len(state.visual) == 3 and state.visual.sizes.sum(1).eq(9).all()  # L steps kept, every frame counted
    assert all(len(bank) == 3 for bank in state.queries) and state.frames == 9
    assert connector.num_output_tokens(9, 5) == connector.num_output_tokens(900, 5) == 4
    assert not torch.equal(connector(x.flip(1)), whole)  # the order of the frames matters
    connector.train()
    x.requires_grad_(True)
    connector(x).sum().backward()
    reached = x.grad.abs().sum((0, 2, 3))
    assert reached[-1] > 0 and reached[:-1].eq(0).all()  # banks are detached: only the last step gets gradients
    with pytest.raises(ValueError, match="more than max_frames=4 frames"):
        fusion.build_connector("memory_bank", 12, 16, max_frames=4)(torch.randn(1, 5, 2, 12))
    with pytest.raises(ValueError, match="memory_length must be a positive int; got 0; hidden_dim 12 must be "
                                         "divisible by num_heads 5"):
        fusion.build_connector("memory_bank", 12, 16, num_heads=5, memory_length=0)


def test_video_branch_encodes_chunk_by_chunk_for_a_streaming_connector() -> None:
    torch.manual_seed(0)
    encoder = SiglipVisionEncoder.tiny()
    connector = fusion.build_connector("memory_bank", 32, 24, num_queries=4, num_layers=2, memory_length=2,
                                       chunk_frames=3, dropout=0.0).eval()
    calls = []
    encoder.register_forward_pre_hook(lambda _, args: calls.append(tuple(args[0].shape[:2])))
    pixels, counts = torch.randn(3, 7, 3, 16, 16), torch.tensor([7, 5, 7])
    tokens = BRANCHES["video"].tokens(encoder, connector, BranchInputs(pixels, counts))
    assert calls == [(1, 3), (1, 2), (2, 3), (2, 3), (2, 1)]  # per group of equal count, at most 3 frames a call
    for i, count in enumerate(counts.tolist()):
        alone = connector(encoder(pixels[i:i + 1, :count]))[0]  # all frames at once, then the bank
        torch.testing.assert_close(tokens[i], alone, atol=1e-6, rtol=1e-5)


def test_bt_adapter_encoder_sees_one_video_per_row() -> None:
    torch.manual_seed(0)
    encoder = VISION_ENCODERS["bt_adapter_clip"].tiny()
    assert encoder.mixes_frames and not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    connector = fusion.build_connector("linear", encoder.output_dim, 8)
    pixels, counts = torch.randn(2, 4, 3, 32, 32), torch.tensor([4, 3])
    tokens = BRANCHES["video"].tokens(encoder, connector, BranchInputs(pixels, counts))
    for i, count in enumerate(counts.tolist()):
        torch.testing.assert_close(tokens[i], connector(encoder(pixels[i:i + 1, :count]))[0], atol=1e-6, rtol=1e-5)
    frames = encoder(pixels[:1])
    changed = pixels[:1].clone()
    changed[:, 0] += 1.0
    assert not torch.allclose(encoder(changed)[0, 2], frames[0, 2])  # frame 0 reaches frame 2 (the video CLS)
    one_row = encoder(pixels[:, :3].flatten(0, 1)[None])  # what the all-frames-in-one-row path would compute
    assert not torch.allclose(one_row[0, :3], frames[0, :3])


def test_bt_adapter_encoder_loads_a_clip_folder_strictly(tmp_path, capsys) -> None:
    """``build_vision_encoder(path=...)`` and ``avlm build --preset avlm-tiny-btadapter --vision CLIP_DIR``."""
    torch.manual_seed(1)
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                            num_attention_heads=2, image_size=16, patch_size=4)).eval()
    clip.save_pretrained(tmp_path)
    encoder = build_vision_encoder("bt_adapter_clip", path=tmp_path, depth=2)
    loaded = encoder.clip_vision.state_dict()
    assert all(torch.equal(value, loaded[key]) for key, value in clip.state_dict().items())
    last = clip.encoder.layers[2]  # the branch's spatial layers start as CLIP's last `depth` layers
    assert torch.equal(encoder.spatial_layers[1].mlp.fc1.weight, last.mlp.fc1.weight)
    assert encoder.image_processor.size == 16 and not any(p.requires_grad for p in encoder.parameters())
    for preset, name in (("avlm-tiny-btadapter", "bt_adapter_clip"), ("avlm-tiny", "clip")):  # the preset decides
        assert main(["build", str(tmp_path / preset), "--preset", preset, "--vision", str(tmp_path)]) == 0
        model = AVLMForCausalLM.from_pretrained(tmp_path / preset)
        assert model.config.encoders["video"].name == name and type(model.encoders["video"]) is VISION_ENCODERS[name]
    # chosen on the command line: any preset, a CLIP folder, BT-Adapter with its own options
    assert main(["build", str(tmp_path / "chosen"), "--preset", "avlm-tiny", "--vision", str(tmp_path),
                 "--vision-encoder", "bt_adapter_clip", "--vision-options", '{"depth": 1}']) == 0
    chosen = AVLMForCausalLM.from_pretrained(tmp_path / "chosen")
    assert chosen.config.encoders["video"].name == "bt_adapter_clip"
    assert chosen.config.encoders["video"].options == {"depth": 1} and len(chosen.encoders["video"].spatial_layers) == 1
    for options, message in ((["--vision", str(tmp_path), "--vision-encoder", "siglip"],
                              "vision encoder 'siglip' does not read this folder (model_type 'clip_vision_model'); "
                              "encoders that do: ['clip', 'bt_adapter_clip']"),
                             (["--vision-encoder", "bt_adapter_clip"], "vision encoder 'bt_adapter_clip' does not take "
                              "the preset's 'siglip_vision_model' encoder config; encoders that do: ['siglip']"),
                             (["--vision-options", "[1]"], "--vision-options must be a JSON object"),
                             (["--vision", str(tmp_path), "--vision-encoder", "bt_adapter_clip", "--vision-options",
                               '{"bogus": 1}'], "unknown options ['bogus'] for vision encoder 'bt_adapter_clip'; its "
                              "options are ['depth', 'drop_path_max', 'frozen', 'image_processor', 'max_frames'")):
        assert main(["build", str(tmp_path / "bad"), "--preset", "avlm-tiny", *options]) == 2
        assert message in " ".join(capsys.readouterr().err.split())
    weights = load_file(str(tmp_path / "model.safetensors"))
    weights.pop("post_layernorm.weight")
    save_file(weights, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \['post_layernorm.weight'\]"):
        build_vision_encoder("bt_adapter_clip", path=tmp_path)


def test_adapter_policy_trains_the_branch_and_keeps_clip_frozen() -> None:
    model = AVLMForCausalLM(AVLMConfig.from_preset("avlm-tiny-btadapter"))
    encoder = model.encoders["video"]
    counts = set_trainable(model, TrainablePolicy(llm="frozen", encoders={"video": "adapter", "audio": "frozen"}))
    trained = {name for name, p in encoder.named_parameters() if p.requires_grad}
    branch = sum(p.numel() for name, p in encoder.named_parameters() if name.split(".")[0] in encoder.adapter_modules)
    assert counts["encoders.video"] == branch > 0 and counts["llm"] == 0
    assert {name.split(".")[0] for name in trained} == set(encoder.adapter_modules)
    assert not any(p.requires_grad for p in encoder.clip_vision.parameters())
    full = set_trainable(model, TrainablePolicy(llm="frozen", encoders={"video": "full", "audio": "frozen"}))
    assert full["encoders.video"] == sum(p.numel() for p in encoder.parameters()) > branch
    with pytest.raises(ValueError, match="encoders.audio is 'adapter' but BEATsEncoder has no adapter_modules"):
        set_trainable(model, TrainablePolicy(llm="frozen", encoders={"video": "frozen", "audio": "adapter"}))
    with pytest.raises(ValueError, match=r"connectors.video='adapter' \(only encoders"):
        TrainablePolicy(connectors={"video": "adapter", "audio": "full"})


def test_fusion_never_imports_vision() -> None:
    """vision imports fusion (BT-Adapter's branch); the other way would close a circle."""
    for path in (ROOT / "fusion").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0] == "vision" for name in names), f"{path} imports vision"


def _logits(model: AVLMForCausalLM, processor) -> torch.Tensor:
    frames = torch.arange(4 * 16 * 16 * 3, dtype=torch.int64).reshape(4, 16, 16, 3).remainder(251).to(torch.uint8)
    batch = processor(["What colour is it?"], videos=[frames])
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize(("build", "trains"), [
    (["--preset", "avlm-tiny", "--connector", "memory_bank", "--connector-options",
      '{"num_queries": 8, "num_layers": 2, "memory_length": 2, "chunk_frames": 2}'], []),
    (["--preset", "avlm-tiny-btadapter"], ["trainable.encoders.video=adapter"]),
], ids=["memory_bank", "bt_adapter"])
def test_build_train_save_reload_caption(build, trains, tmp_path_factory, tmp_path) -> None:
    folder = tmp_path / "built"
    assert main(["build", str(folder), *build]) == 0
    config = AVLMConfig.from_pretrained(folder)
    if "memory_bank" in build:
        assert config.connectors["video"] == ConnectorSpec("memory_bank", MBANK_OPTIONS)
    else:
        assert config.encoders["video"].name == "bt_adapter_clip" and config.encoders["video"].options == {"depth": 2}
    data = tiny_data_dir(tmp_path_factory, {"av": 4, "video": 4}, name="av-video")
    recipe = tiny_recipe({}, data, tmp_path / "run", f"model={folder}", "trainable.llm=full", "train.max_steps=6",
                         "train.lr=1e-2", "train.warmup_ratio=0.1", *trains)
    result = train(recipe, say=lambda _: None)
    losses = read_losses(tmp_path / "run")
    assert len(losses) == 6 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.3, losses
    before, after = AVLMForCausalLM.from_pretrained(folder), AVLMForCausalLM.from_pretrained(result.final)
    changed = {name.split(".")[2] for name, p in after.named_parameters()
               if name.startswith("encoders.video.") and not torch.equal(p, before.get_parameter(name))}
    if trains:  # the branch trained, CLIP did not
        assert {"temporal_layers", "spatial_layers"} <= changed <= set(after.encoders["video"].adapter_modules)
    else:  # the SigLIP tower stays frozen
        assert changed == set()
    processor = avlm.Processor.from_pretrained(result.final)
    logits = _logits(after, processor)
    after.save_pretrained(tmp_path / "again")
    assert torch.equal(_logits(AVLMForCausalLM.from_pretrained(tmp_path / "again"), processor), logits)
    again = AVLMConfig.from_pretrained(tmp_path / "again")
    assert (again.encoders, again.connectors) == (config.encoders, config.connectors)
    clip = write_video(tmp_path / "clip.mp4", seconds=1.0, fps=8, width=32, height=32, audio_rate=16000)
    caption = avlm.load(result.final, device="cpu").caption(clip, max_new_tokens=4, eos_token_id=None)
    assert isinstance(caption, str)  # (six steps teach colour words and the end token: it may decode to "")


def test_memory_bank_peak_memory_is_flat_in_the_frame_count() -> None:
    """torch's CPU allocator peak of a whole model forward (inference), measured with the profiler
    (scripts/bench_temporal_memory.py; docs/benchmarks.md has 8 / 64 / 512 frames): the memory bank stays flat,
    STC over the same frames grows, which shows the measurement sees frame-dependent memory."""
    peaks = {}
    for connector in ("memory_bank", "stc_connector_v35"):
        model = bench_temporal_memory.build("avlm-tiny-mbank", connector)
        for frames in (8, 96):
            peaks[connector, frames] = bench_temporal_memory.peak_allocated_bytes(
                bench_temporal_memory.one_call(model, frames, "infer"))
    assert peaks["memory_bank", 96] <= 1.05 * peaks["memory_bank", 8] + 4096, peaks
    assert peaks["stc_connector_v35", 96] > 4 * peaks["stc_connector_v35", 8], peaks
