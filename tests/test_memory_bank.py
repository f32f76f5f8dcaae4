"""MA-LMM memory bank invariants (seed_systems.md §2.10): length, mass, conservation, argmax choice, order,
identity, unweighted merge, no gradients in the bank, explicit reset."""

from __future__ import annotations

import pytest
import torch

from fusion.memory_bank import MemoryBank, mbc_compress, merge_indices


def random_walk(batch: int, steps: int, tokens: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, tokens, width, generator=generator).cumsum(1)


@pytest.mark.parametrize("max_length", [1, 3, 5])
def test_stream_length_mass_conservation(max_length: int) -> None:
    frames = random_walk(2, 11, 3, 8).double()
    bank = MemoryBank(max_length)
    for step in range(frames.shape[1]):
        bank.append(frames[:, step])
        seen = step + 1
        assert len(bank) == min(seen, max_length)
        assert torch.equal(bank.sizes.sum(1), torch.full((2, 3), float(seen)))
        total = (bank.sizes.unsqueeze(-1) * bank.memory).sum(1)
        torch.testing.assert_close(total, frames[:, :seen].sum(1), rtol=1e-10, atol=1e-10)
        assert bank.kv().shape == (2, len(bank) * 3, 8)


def test_stream_conservation_float32() -> None:
    frames = random_walk(1, 40, 5, 16)
    bank = MemoryBank(10)
    for step in range(frames.shape[1]):
        bank.append(frames[:, step])
    total = (bank.sizes.unsqueeze(-1) * bank.memory).sum(1)
    torch.testing.assert_close(total, frames.sum(1), rtol=1e-5, atol=1e-4)


def test_merges_identical_pair_and_leaves_the_rest_bitwise() -> None:
    memory = random_walk(1, 6, 3, 8, seed=1)
    memory[0, 3, 0] = memory[0, 2, 0]  # token 0: pair (2, 3) identical -> the unique maximum
    memory[0, 0, 1] = memory[0, 1, 1]  # token 1: pair (0, 1)
    sizes = torch.ones(1, 6, 3)
    merged, new_sizes = mbc_compress(memory, sizes)
    assert merge_indices(memory)[0, 0, :2].tolist() == [2, 0]
    # token 0: slots 0, 1 untouched; slot 2 is the (identical) pair; slots 4, 5 shift down by exactly one.
    assert torch.equal(merged[0, :2, 0], memory[0, :2, 0])
    assert torch.equal(merged[0, 2, 0], memory[0, 2, 0])
    assert torch.equal(merged[0, 3:, 0], memory[0, 4:, 0])
    assert new_sizes[0, :, 0].tolist() == [1, 1, 2, 1, 1]
    # token 1 chose independently.
    assert new_sizes[0, :, 1].tolist() == [2, 1, 1, 1, 1]
    assert torch.equal(merged[0, 1:, 1], memory[0, 2:, 1])


def test_merged_pair_is_the_most_similar() -> None:
    memory = random_walk(3, 7, 4, 6, seed=2)
    sizes = torch.ones(3, 7, 4)
    similarity = torch.nn.functional.cosine_similarity(memory[:, :-1], memory[:, 1:], dim=-1)
    merge_at = merge_indices(memory)[:, 0]
    assert torch.equal(similarity.gather(1, merge_at.unsqueeze(1))[:, 0], similarity.max(1).values)
    _, new_sizes = mbc_compress(memory, sizes)
    assert torch.equal(new_sizes.argmax(1), merge_at)


def test_weighted_and_unweighted_merge() -> None:
    memory = random_walk(1, 3, 1, 4, seed=3).double()
    memory[0, 2, 0] = -memory[0, 1, 0]  # pair (0, 1) wins
    ones = torch.ones(1, 3, 1, dtype=torch.float64)
    merged, _ = mbc_compress(memory, ones)
    torch.testing.assert_close(merged[0, 0, 0], (memory[0, 0, 0] + memory[0, 1, 0]) / 2)
    sizes = torch.tensor([[[3.0], [1.0], [2.0]]], dtype=torch.float64)
    weighted, weighted_sizes = mbc_compress(memory, sizes)
    torch.testing.assert_close(weighted[0, 0, 0], (3 * memory[0, 0, 0] + memory[0, 1, 0]) / 4)
    plain, plain_sizes = mbc_compress(memory, sizes, weighted=False)
    torch.testing.assert_close(plain[0, 0, 0], (memory[0, 0, 0] + memory[0, 1, 0]) / 2)
    assert weighted_sizes.flatten().tolist() == plain_sizes.flatten().tolist() == [4.0, 2.0]


def test_no_compression_up_to_max_length() -> None:
    frames = random_walk(2, 4, 3, 5)
    bank = MemoryBank(4)
    for step in range(4):
        bank.append(frames[:, step])
    assert torch.equal(bank.memory, frames)
    assert torch.equal(bank.sizes, torch.ones(2, 4, 3))


def test_bank_holds_no_gradient_but_current_step_does() -> None:
    frames = random_walk(1, 5, 2, 4).requires_grad_(True)
    bank = MemoryBank(2)
    for step in range(4):
        bank.append(frames[:, step] * 2)
    assert not bank.memory.requires_grad and not bank.sizes.requires_grad
    context = bank.with_frame(frames[:, 4] * 2)
    context.sum().backward()
    assert torch.equal(frames.grad[:, :4], torch.zeros_like(frames.grad[:, :4]))
    assert torch.equal(frames.grad[:, 4], torch.full_like(frames.grad[:, 4], 2.0))


def test_reset_isolates_videos() -> None:
    video_a, video_b = random_walk(1, 7, 3, 6, seed=4), random_walk(1, 13, 3, 6, seed=5)
    bank = MemoryBank(4)
    for step in range(7):
        bank.append(video_a[:, step])
    bank.reset()
    assert len(bank) == 0
    fresh = MemoryBank(4)
    for step in range(13):
        bank.append(video_b[:, step])
        fresh.append(video_b[:, step])
    assert torch.equal(bank.memory, fresh.memory) and torch.equal(bank.sizes, fresh.sizes)


def test_no_implicit_reset_and_shape_errors() -> None:
    bank = MemoryBank(3)
    bank.append(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="reset"):
        bank.append(torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="max_length"):
        MemoryBank(0)
    with pytest.raises(ValueError, match="empty"):
        MemoryBank(2).kv()
    with pytest.raises(ValueError, match="at least 2"):
        mbc_compress(torch.randn(1, 1, 2, 3), torch.ones(1, 1, 2))
    with pytest.raises(ValueError, match="sizes"):
        mbc_compress(torch.randn(1, 3, 2, 3), torch.ones(1, 3, 3))


def test_bfloat16_bank_keeps_exact_float32_sizes() -> None:
    frames = random_walk(1, 300, 2, 4).to(torch.bfloat16)
    bank = MemoryBank(3)
    for step in range(frames.shape[1]):
        bank.append(frames[:, step])
    assert bank.memory.dtype == torch.bfloat16 and bank.sizes.dtype == torch.float32
    assert torch.equal(bank.sizes.sum(1), torch.full((1, 2), 300.0))
