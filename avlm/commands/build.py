"""Assemble a new model folder: a named preset (random init), pretrained parts from disk, or both.

Examples::

    avlm build runs/tiny --preset avlm-tiny
    avlm build runs/av7b --llm Qwen2-7B-Instruct/ --vision siglip-so400m-patch14-384/ \\
        --audio BEATs_iter3_plus_AS2M.pt --connector stc_connector_v35 --audio-connector mlp2x_gelu
    avlm build runs/avs-ccam --preset avsynth-100m --connector ccam --connector-options '{"num_queries": 64}'

The folder holds config.json, generation_config.json, safetensors weights, the tokenizer and processor_config.json;
it loads with ``AVLMForCausalLM.from_pretrained`` / ``avlm.Processor.from_pretrained`` and starts the training recipes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="folder to write the model into (created)")
    parser.add_argument("--preset", default=None,
                        help="architecture defaults (avlm-tiny, videollama2.1-7b-av); parts given below replace its "
                             "random-init ones")
    parser.add_argument("--llm", type=Path, help="local Hugging Face causal-LM folder (weights + tokenizer)")
    parser.add_argument("--vision", type=Path, help="local SigLIP or CLIP folder")
    parser.add_argument("--vision-encoder", default=None,
                        help="video encoder (vision.VISION_ENCODERS key) among those that read --vision or the "
                             "preset's encoder config, e.g. bt_adapter_clip (frozen CLIP + BT-Adapter's temporal "
                             "branch) for a CLIP folder (default: the preset's, else the folder's own)")
    parser.add_argument("--vision-options", default=None, metavar="JSON",
                        help='options of the video encoder as a JSON object, e.g. \'{"depth": 4}\' for '
                             "bt_adapter_clip (default: the preset's for its own encoder, else the encoder's)")
    parser.add_argument("--audio", type=Path, help="BEATs .pt file or local Whisper folder")
    parser.add_argument("--connector", help="video connector (fusion.CONNECTORS key), e.g. stc_connector_v35")
    parser.add_argument("--connector-options", default=None, metavar="JSON",
                        help='options of the video connector as a JSON object, e.g. \'{"num_queries": 64}\' for '
                             'ccam (default: the connector\'s own defaults, or the preset\'s when --connector is not '
                             'given)')
    parser.add_argument("--audio-connector", help="audio projector (fusion.CONNECTORS key), e.g. mlp2x_gelu")
    parser.add_argument("--av-fusion", choices=["separate", "concat_at_video"], default=None,
                        help="separate: <video><audio> placeholders (avlm); concat_at_video: audio tokens appended "
                             "to the video tokens at <video> (VideoLLaMA2-AV)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-init parts")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top, to keep `avlm --help` light (no torch/transformers).
    from avlm.assembly import build_model
    from avlm.synth.tokenizer import tokenizer_for_preset

    if args.preset is None and args.llm is None:
        raise SystemExit("avlm build: give --preset NAME, or the parts (--llm, --vision and/or --audio, connectors)")
    tokenizer = tokenizer_for_preset(args.preset) if args.preset and not args.llm else None
    model, processor = build_model(args.preset, args.llm, args.vision, args.audio, args.connector,
                                   args.audio_connector, args.av_fusion, args.seed,
                                   connector_options=_json_object(args.connector_options, "--connector-options"),
                                   tokenizer=tokenizer, vision_encoder=args.vision_encoder,
                                   vision_options=_json_object(args.vision_options, "--vision-options"))
    model.save_pretrained(args.out_dir)
    processor.save_pretrained(args.out_dir)
    for part, module in [("llm", model.llm), *model.encoders.items(), *(
            (f"{m} connector", c) for m, c in model.connectors.items())]:
        print(f"{part:>16}: {type(module).__name__}, {sum(p.numel() for p in module.parameters()):,} parameters")
    counts = model.num_media_tokens(processor.config.num_frames if "video" in model.encoders else None)
    print(f"media tokens: {counts} for {processor.config.num_frames} frames; av_fusion={model.config.av_fusion}")
    print(f"wrote {args.out_dir}")
    return 0


def _json_object(text: str | None, option: str) -> dict | None:
    """The JSON object an option gives (None when not given)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{option} is not JSON ({error}): {text!r}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, got {text!r}")
    return value
