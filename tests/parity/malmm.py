"""MA-LMM memory bank compression against boheumd/MA-LMM ``memory_bank_compress`` (commit ffe9fa9).

Every shape, the streaming ``memory_bank_length`` and the target length come from each case.json.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fusion.memory_bank import MemoryBank, adjacent_similarity, mbc_compress, merge_indices
from parity.common import assert_close, load_io


def _check_inputs(case: dict, io: dict[str, torch.Tensor]) -> None:
    shapes = case["shapes"]
    expected = [shapes["B"], shapes["T"], shapes["N"], shapes["C"]]
    name = "frames" if "frames" in io else "memory_bank"
    assert list(io[name].shape) == expected, f"{name} shape {list(io[name].shape)} != case.json shapes {expected}"


def _check_outputs(case: dict, actual: dict[str, torch.Tensor], io: dict[str, torch.Tensor]) -> None:
    """Compare every output case.json lists (each must be one this check computes) with its stored tensor."""
    unknown = sorted(set(case["outputs"]) - set(actual))
    assert not unknown, f"case.json outputs {unknown} are not computed by this check (it computes {sorted(actual)})"
    assert case["outputs"], "case.json lists no outputs"
    for name in case["outputs"]:
        assert_close(name, actual[name], io[name], case["tolerance"][name])


def _one_step(case_dir: Path, case: dict) -> dict[str, torch.Tensor]:
    """One mbc_compress call on the stored bank; checks every listed output and returns the computed tensors."""
    io = load_io(case_dir)
    _check_inputs(case, io)
    memory, sizes = mbc_compress(io["memory_bank"], io["compression_size"])
    actual = {
        "compressed_memory_bank": memory,
        "compressed_size": sizes,
        "merge_index": merge_indices(io["memory_bank"]),
        "adjacent_cosine_similarity": adjacent_similarity(io["memory_bank"]),
    }
    _check_outputs(case, actual, io)
    return actual


def check_compress_step(case_dir: Path, case: dict) -> None:
    """One call removes one time step; merge index per (batch, token)."""
    _one_step(case_dir, case)


def check_compress_ties(case_dir: Path, case: dict) -> None:
    """Exact ties resolve to the first index; the recorded tie positions are checked too."""
    merge_at = _one_step(case_dir, case)["merge_index"]
    assert case["ties"], "case.json lists no ties"
    for tie in case["ties"]:
        chosen = merge_at[tie["b"], 0, tie["n"]].item()
        assert chosen == tie["chosen"] == min(tie["tied_argmax_positions"]), f"tie {tie}: chose {chosen}"


def check_compress_to_target(case_dir: Path, case: dict) -> None:
    """Repeated single-step calls down to the target length; every call's merge index is recorded."""
    io = load_io(case_dir)
    _check_inputs(case, io)
    memory, sizes = io["memory_bank"], io["compression_size"]
    chosen = []
    while memory.shape[1] > case["target_length"]:
        chosen.append(merge_indices(memory)[:, 0])
        memory, sizes = mbc_compress(memory, sizes)
    assert len(chosen) == case["shapes"]["calls"], f"{len(chosen)} calls != case.json calls {case['shapes']['calls']}"
    actual = {"compressed_memory_bank": memory, "compressed_size": sizes, "merge_indices": torch.stack(chosen)}
    _check_outputs(case, actual, io)


def check_stream(case_dir: Path, case: dict) -> None:
    """Append one frame at a time and compress once past ``memory_bank_length``, as MA-LMM's Q-Former loop does."""
    io = load_io(case_dir)
    _check_inputs(case, io)
    frames = io["frames"]
    bank = MemoryBank(case["memory_bank_length"])
    for step in range(frames.shape[1] - 1):
        bank.append(frames[:, step])
    actual = {
        "memory_bank_before_last_frame": bank.memory,
        "compression_size_before_last_frame": bank.sizes,
        "encoder_hidden_states_last": bank.with_frame(frames[:, -1]),
    }
    bank.append(frames[:, -1])
    actual |= {"memory_bank_all_frames": bank.memory, "compression_size_all_frames": bank.sizes}
    _check_outputs(case, actual, io)
