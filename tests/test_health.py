"""Codebook health on hand-made index tensors, where the right answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from distill.models.health import (
    count_codes,
    judged,
    level_health,
    low_gain_levels,
    low_utilization_levels,
    perplexity,
    utilization_advice,
)


def test_all_codes_used_uniformly() -> None:
    indices = torch.arange(8).repeat(5).reshape(-1, 1)  # (40, 1): each code 5 times
    (health,) = level_health(count_codes(indices, 8))
    assert health.utilization == 1.0
    assert health.dead_codes == 0
    assert health.perplexity == pytest.approx(8.0)


def test_one_code_used() -> None:
    indices = torch.full((100, 1), 3)
    (health,) = level_health(count_codes(indices, 16))
    assert health.utilization == pytest.approx(1 / 16)
    assert health.dead_codes == 15
    assert health.perplexity == pytest.approx(1.0)


def test_uniform_over_half_the_codebook() -> None:
    indices = torch.arange(0, 32, 2).repeat(3).reshape(-1, 1)  # 16 of 32 codes, evenly
    (health,) = level_health(count_codes(indices, 32))
    assert health.utilization == 0.5
    assert health.dead_codes == 16
    assert health.perplexity == pytest.approx(16.0)


def test_skewed_use_has_perplexity_between_one_and_used() -> None:
    counts = torch.tensor([90, 5, 5, 0])
    value = perplexity(counts)
    p = torch.tensor([0.9, 0.05, 0.05])
    assert value == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert 1.0 < value < 3.0


def test_levels_are_counted_separately_and_numbered_from_one() -> None:
    # (batch 2, time 4, levels 3): level 1 uses one code, level 2 two, level 3 all four
    level1 = torch.zeros(2, 4, dtype=torch.long)
    level2 = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]])
    level3 = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    indices = torch.stack([level1, level2, level3], dim=-1)
    report = level_health(count_codes(indices, 4), [0.5, 0.2, 0.1])
    assert [h.level for h in report] == [1, 2, 3]
    assert [h.utilization for h in report] == [0.25, 0.5, 1.0]
    assert [h.error_reduction for h in report] == [0.5, 0.2, 0.1]
    assert [h.level for h in low_utilization_levels(report)] == [1]


def test_masked_indices_are_ignored_and_empty_counts_are_zero() -> None:
    counts = count_codes(torch.tensor([[-1], [2], [-1]]), 4)
    assert counts.tolist() == [[0, 0, 1, 0]]
    assert perplexity(torch.zeros(4, dtype=torch.long)) == 0.0


def test_a_level_counted_on_too_few_vectors_is_not_judged_nor_warned() -> None:
    few = torch.arange(20).reshape(-1, 1)  # 20 vectors for 64 codes: 31% at best
    (health,) = level_health(count_codes(few, 64))
    assert health.vectors == 20 and not judged(health)
    assert low_utilization_levels([health]) == []


def test_a_level_that_really_under_uses_its_codes_is_warned_with_fitting_advice() -> None:
    indices = torch.arange(10).repeat(30).reshape(-1, 1)  # 300 vectors, 10 of 64 codes
    (health,) = level_health(count_codes(indices, 64), [0.5])
    assert judged(health) and low_utilization_levels([health]) == [health]
    assert "--codebook-size 16" in utilization_advice(health, [health])


def test_a_residual_level_that_adds_nothing_is_told_to_go() -> None:
    indices = torch.stack([torch.arange(300) % 64, torch.arange(300) % 5], dim=1)
    levels = level_health(count_codes(indices, 64), [0.5, 0.0])
    (weak,) = low_utilization_levels(levels)
    assert weak.level == 2 and "fewer --rvq-levels" in utilization_advice(weak, levels)


def test_a_level_that_earns_a_tiny_share_of_level_ones_reduction_is_flagged() -> None:
    """The kit of issue 28: level 3 lowered the error by 0.012 against level 1's 1.007."""
    indices = torch.stack([torch.arange(300) % 64] * 3, dim=1)
    levels = level_health(count_codes(indices, 64), [1.007, 0.3, 0.012])
    assert [h.level for h in low_gain_levels(levels)] == [3]
    assert low_gain_levels(level_health(count_codes(indices, 64), [0.0, 0.0, 0.0])) == []
