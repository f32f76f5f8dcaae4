"""vision.preprocess against Pillow and the Hugging Face processors, and the VideoLLaMA2 golden fixture."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from parity.common import assert_close, load_io
from PIL import Image
from test_fixtures import fixtures_root

from vision import CLIP, SIGLIP, ImageProcessorConfig, MediaError, load_image, load_video, preprocess_frames
from vision.preprocess import resize, resize_torch
from vision.videollama2_preset import (
    videollama2_frame_indices,
    videollama2_image_pixel_values,
    videollama2_pixel_values,
)

# (in_h, in_w) -> (out_h, out_w): down, up, mixed in both orders, portrait video (Pillow runs the vertical pass first).
SHAPES = [((72, 128), (38, 38)), ((50, 90), (70, 70)), ((40, 40), (20, 80)), ((40, 40), (80, 20)),
          ((128, 72), (38, 38)), ((37, 53), (13, 100)), ((30, 100), (60, 50)), ((61, 61), (61, 17))]


def pillow_resize(frames: torch.Tensor, height: int, width: int, resample) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(Image.fromarray(f).resize((width, height), resample))
                                      for f in frames.numpy()]))


@pytest.fixture(scope="module")
def real_frames(bigbuckbunny: Path) -> torch.Tensor:
    return load_video(bigbuckbunny, num_frames=2).frames


@pytest.mark.parametrize(("shape", "out"), SHAPES)
@pytest.mark.parametrize("resample", ["bicubic", "bilinear"])
def test_torch_resize_is_pillow_bit_for_bit(shape, out, resample: str) -> None:
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, *shape, 3), dtype=np.uint8))
    expected = pillow_resize(frames, *out, {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[resample])
    assert torch.equal(resize_torch(frames, *out, resample), expected)
    assert torch.equal(resize(frames, *out, resample), expected)


@pytest.mark.parametrize("portrait", [False, True])
def test_siglip_matches_hugging_face(real_frames: torch.Tensor, portrait: bool) -> None:
    transformers = pytest.importorskip("transformers")
    frames = real_frames.transpose(1, 2).contiguous() if portrait else real_frames
    processor = transformers.SiglipImageProcessorPil(size={"height": 384, "width": 384})
    expected = processor(list(frames.numpy()), return_tensors="pt")["pixel_values"]
    actual = preprocess_frames(frames, SIGLIP)
    assert actual.shape == (2, 3, 384, 384) and actual.dtype == torch.float32
    assert (actual - expected).abs().max() < 1e-6  # measured: 0.0


@pytest.mark.parametrize("portrait", [False, True])
def test_clip_matches_hugging_face(real_frames: torch.Tensor, portrait: bool) -> None:
    transformers = pytest.importorskip("transformers")
    frames = real_frames.transpose(1, 2).contiguous() if portrait else real_frames
    processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                                   image_mean=list(CLIP.image_mean), image_std=list(CLIP.image_std))
    expected = processor(list(frames.numpy()), return_tensors="pt")["pixel_values"]
    assert (preprocess_frames(frames, CLIP) - expected).abs().max() < 1e-6  # measured: 0.0


def expand2square(image: Image.Image, colour: tuple[int, ...]) -> Image.Image:
    """VideoLLaMA2 mm_utils.expand2square, verbatim logic."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), colour)
    result.paste(image, (0, (side - height) // 2) if width > height else ((side - width) // 2, 0))
    return result


@pytest.mark.parametrize("base", [SIGLIP, CLIP], ids=["siglip", "clip"])
def test_pad_mode_is_videollama2_expand2square(real_frames: torch.Tensor, base: ImageProcessorConfig) -> None:
    config = dataclasses.replace(base, size=64, mode="pad")
    assert config.pad_colour == ((127, 127, 127) if base is SIGLIP else (122, 116, 104))
    for frames in (real_frames, real_frames.transpose(1, 2).contiguous()):
        padded = [np.asarray(expand2square(Image.fromarray(f), config.pad_colour).resize((64, 64), Image.BICUBIC))
                  for f in frames.numpy()]
        expected = preprocess_frames(torch.from_numpy(np.stack(padded)), dataclasses.replace(config, mode="resize"))
        assert torch.equal(preprocess_frames(frames, config), expected)


def test_from_pretrained_reads_hugging_face_configs(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.SiglipImageProcessorPil(size={"height": 224, "width": 224}).save_pretrained(tmp_path / "siglip")
    assert ImageProcessorConfig.from_pretrained(tmp_path / "siglip") == dataclasses.replace(SIGLIP, size=224)
    transformers.CLIPImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                       image_mean=list(CLIP.image_mean), image_std=list(CLIP.image_std),
                                       ).save_pretrained(tmp_path / "clip")
    clip = ImageProcessorConfig.from_pretrained(tmp_path / "clip")
    assert clip == dataclasses.replace(CLIP, size=224, shortest_edge=256)
    assert ImageProcessorConfig.from_pretrained(tmp_path / "clip", mode="pad").mode == "pad"
    raw = json.loads((tmp_path / "clip" / "preprocessor_config.json").read_text())
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps({**raw, "do_normalize": False,
                                                                          "resample": 1}))
    with pytest.raises(ValueError, match="do_normalize=false; resample=1"):
        ImageProcessorConfig.from_pretrained(tmp_path / "clip")
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        ImageProcessorConfig.from_pretrained(tmp_path)


def test_config_and_input_checks() -> None:
    with pytest.raises(ValueError, match="size=0.*mode='squash'"):
        ImageProcessorConfig(size=0, mode="squash")
    with pytest.raises(ValueError, match="expected a uint8 tensor"):
        preprocess_frames(torch.zeros(1, 8, 8, 3), SIGLIP)


def test_an_image_is_a_one_frame_video(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "picture.png")
    clip = load_image(tmp_path / "picture.png")
    assert clip.backend == "pil" and torch.equal(clip.frames, torch.from_numpy(array)[None])
    assert preprocess_frames(clip.frames, dataclasses.replace(SIGLIP, size=16)).shape == (1, 3, 16, 16)
    (tmp_path / "fake.png").write_text("not a picture")
    with pytest.raises(MediaError, match="fake.png: not a readable image"):
        load_image(tmp_path / "fake.png")


def videollama2_cases() -> list:
    root = fixtures_root()
    cases = [] if root is None else [
        path for path in sorted(root.iterdir())
        if (path / "case.json").is_file() and json.loads((path / "case.json").read_text())["kind"]
        == "videollama2_av_checkpoint"]
    return [pytest.param(path, id=path.name) for path in cases] or [
        pytest.param(None, marks=pytest.mark.skip(reason="no videollama2_av_checkpoint fixture (AVLM_FIXTURES)"))]


@pytest.mark.parametrize("case_dir", videollama2_cases())
def test_videollama2_preprocessing_fixture(case_dir: Path) -> None:
    case = json.loads((case_dir / "case.json").read_text())
    io, tolerance = load_io(case_dir), case["tolerance"]
    checkpoint = next(path for path in case_dir.iterdir() if (path / "config.json").is_file())
    model_config = json.loads((checkpoint / "config.json").read_text())
    num_frames = model_config["num_frames"]
    processor = ImageProcessorConfig.from_pretrained(checkpoint / model_config["mm_vision_tower"])
    indices = torch.tensor([videollama2_frame_indices(int(n), num_frames) for n in io["frame_sample.durations"]])
    assert_close("frame_sample.indices", indices, io["frame_sample.indices"], tolerance["frame_sample.indices"])
    for sample in ("av", "v"):
        pixels = videollama2_pixel_values(io[f"{sample}.frames_uint8"], processor, num_frames)
        name = f"{sample}.pixel_values"
        assert_close(name, pixels, io[name], tolerance[name])
    for name, aspect_ratio in (("img.pixel_values", None), ("img.pixel_values_pad", "pad")):
        pixels = videollama2_image_pixel_values(io["img.image_uint8"], processor, aspect_ratio=aspect_ratio)
        assert_close(name, pixels, io[name], tolerance[name])
