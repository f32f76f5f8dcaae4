"""BEATs front end against a beats_encoder fixture: waveform -> fbank (and its normalisation)."""

from __future__ import annotations

from pathlib import Path

from audio.features import beats_fbank, beats_normalize
from parity.common import assert_close, load_io


def check_front_end(case_dir: Path, case: dict) -> None:
    io = load_io(case_dir)
    sample_rate = case["preprocessing"]["fbank_kwargs"]["sample_frequency"]
    assert_close("fbank", beats_fbank(io["waveform"], sample_rate), io["fbank"], case["tolerance"]["fbank"])
    assert_close("fbank_normalized", beats_normalize(io["fbank"]), io["fbank_normalized"],
                 case["tolerance"]["fbank_normalized"])
