"""CodePrior and sampling: the KV cache changes nothing but speed; seeds and filters hold."""

from __future__ import annotations

import pytest
import torch

from distill.models.config import PriorConfig
from distill.models.prior import CodePrior, codes_to_tokens, window_inputs
from distill.models.sampling import (
    CLIPS_PER_BATCH,
    MIN_BATCH_ROWS,
    Sampling,
    generate_codes,
    sample_next,
)
from distill.threads import one_torch_thread

CONFIG = PriorConfig(
    rvq_levels=3, codebook_size=16, context_steps=6, hidden_size=32, layers=2, heads=4, dropout=0.3
)


@pytest.fixture
def prior() -> CodePrior:
    torch.manual_seed(0)
    return CodePrior(CONFIG).eval()


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_tokens_are_time_major_with_a_range_per_level() -> None:
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6]]])  # (b=1, t=2, q=3)
    assert codes_to_tokens(codes, 16).tolist() == [[1, 18, 35, 4, 21, 38]]
    assert window_inputs(codes, 16, bos=48).tolist() == [[48, 1, 18, 35, 4, 21]]


def test_cached_and_uncached_give_the_same_logits(prior: CodePrior) -> None:
    """nanoGPT PR #613: a KV cache can drift from the full computation. Ours must not."""
    codes = torch.randint(0, 16, (2, 6, 3))
    inputs = window_inputs(codes, 16, prior.bos)  # (2, 18)
    with torch.no_grad():
        full = prior(inputs)
        prior.setup_cache(2)
        one_by_one = [prior(inputs[:, :5])]
        one_by_one += [prior(inputs[:, i : i + 1], start=i) for i in range(5, 18)]
        prior.setup_cache(2)
        chunks = [
            prior(inputs[:, :7]),
            prior(inputs[:, 7:12], start=7),
            prior(inputs[:, 12:], start=12),
        ]
        prior.clear_cache()
    torch.testing.assert_close(torch.cat(one_by_one, dim=1), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-5)


def test_each_slot_only_sees_the_past(prior: CodePrior) -> None:
    codes = torch.randint(0, 16, (1, 6, 3))
    changed = codes.clone()
    changed[0, 4, 1] = (changed[0, 4, 1] + 1) % 16  # the code of slot 13
    with torch.no_grad():
        before = prior(window_inputs(codes, 16, prior.bos))
        after = prior(window_inputs(changed, 16, prior.bos))
    torch.testing.assert_close(before[:, :14], after[:, :14])  # slot 14 is the first to see it
    assert not torch.allclose(before[:, 14:], after[:, 14:])


def test_cached_generation_equals_recomputing_past_several_windows(prior: CodePrior) -> None:
    steps = 4 * CONFIG.context_steps + 1  # slides the window several times
    cached = generate_codes(prior, steps, generators(1, 2))
    recomputed = generate_codes(prior, steps, generators(1, 2), cached=False)
    assert cached.shape == (2, steps, 3)
    assert torch.equal(cached, recomputed)
    assert int(cached.max()) < 16 and int(cached.min()) >= 0


# What the tiny seeded prior drew before generation was made faster: a faster loop must
# draw exactly these (same model, same seeds, same codes).
PINNED = [
    [11, 4, 6, 11, 0, 12, 6, 12, 9, 6, 10, 8, 10, 5, 7, 7, 9, 7, 14, 11, 4, 2, 6, 4, 5, 8,
     12, 12, 0, 13, 10, 15, 13, 0, 0, 3, 15, 6, 11],
    [9, 6, 10, 7, 11, 9, 6, 1, 10, 0, 9, 8, 5, 14, 8, 11, 11, 3, 5, 15, 0, 7, 7, 13, 7, 9, 7,
     3, 3, 3, 0, 2, 9, 13, 8, 4, 11, 5, 6],
]  # fmt: skip
PINNED_AFTER_PREFIX = [
    11, 4, 6, 11, 0, 12, 6, 12, 9, 6, 10, 8, 10, 5, 7, 7, 9, 7, 14, 11, 4, 0, 0, 3, 0, 10, 0,
    11, 11, 6, 14, 13, 14, 0, 10, 0, 7, 0, 15,
]  # fmt: skip


def test_a_seed_draws_the_codes_it_always_drew(prior: CodePrior) -> None:
    codes = generate_codes(prior, 13, generators(1, 2))  # slides the window twice
    assert codes.reshape(2, -1).tolist() == PINNED
    filtered = generate_codes(prior, 13, generators(3), Sampling(0.8, 5, 0.9), prefix=codes[:1, :7])
    assert filtered.reshape(-1).tolist() == PINNED_AFTER_PREFIX


def test_same_seed_same_codes_whatever_the_batch(prior: CodePrior) -> None:
    batch = generate_codes(prior, 10, generators(5, 6, 7))
    alone = generate_codes(prior, 10, generators(6))
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])


def test_a_windows_logits_do_not_depend_on_the_rest_of_its_batch(prior: CodePrior) -> None:
    """A matrix product rounds by its shape (1 row, 2 or 3 rows and 4 or more round
    differently in the last bits, enough to flip a draw that falls on a code's boundary).
    From MIN_BATCH_ROWS rows on, a window's logits are the same bits whatever the other
    rows hold, wherever it sits and however many rows there are: for the window's first
    pass, each cached step, and without the cache. On one thread, as generate_codes runs
    (on two, the rows are split between the threads and the split shows in the bits)."""
    torch.manual_seed(0)
    inputs = torch.randint(0, 3 * 16, (9, 18))

    def logits(rows: torch.Tensor) -> torch.Tensor:
        prior.setup_cache(len(rows))
        steps = [prior(rows[:, :7])]
        steps += [prior(rows[:, i : i + 1], start=i) for i in range(7, 18)]
        prior.clear_cache()
        return torch.cat(steps, dim=1)

    with torch.no_grad(), one_torch_thread():
        batch, uncached = logits(inputs), prior(inputs)
        for i in range(len(inputs)):
            others = torch.randint(0, 3 * 16, (MIN_BATCH_ROWS, 18))
            row = i % MIN_BATCH_ROWS
            others[row] = inputs[i]
            assert torch.equal(logits(others)[row], batch[i])
            assert torch.equal(prior(others)[row], uncached[i])


def test_more_clips_than_a_batch_draw_what_each_draws_alone(prior: CodePrior) -> None:
    """generate_codes draws CLIPS_PER_BATCH clips at a time; a clip's codes are those of
    its seed alone, in whichever batch it falls, with filters, a prefix or forced codes."""
    count = 2 * CLIPS_PER_BATCH + 1
    seeds = list(range(10, 10 + count))
    sampling = Sampling(0.8, 5, 0.9)
    prefix = torch.randint(0, 16, (count, 4, 3))
    forced = torch.full((count, 13, 3), -1)
    forced[:, :, 0] = torch.randint(0, 16, (count, 13))
    for options in ({}, {"prefix": prefix}, {"forced": forced}):
        batch = generate_codes(prior, 13, generators(*seeds), sampling, **options)
        alone = [
            generate_codes(
                prior, 13, generators(seed), sampling,
                **{name: value[i : i + 1] for name, value in options.items()},
            )[0]
            for i, seed in enumerate(seeds)
        ]  # fmt: skip
        assert batch.shape == (count, 13, 3)
        assert all(torch.equal(batch[i], alone[i]) for i in range(count)), options


def test_a_window_longer_than_the_context_is_refused(prior: CodePrior) -> None:
    with pytest.raises(ValueError, match="do not fit a window of 18 tokens"):
        prior(torch.zeros(1, 19, dtype=torch.long))


def test_temperature_zero_and_top_k_one_take_the_likeliest_code() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    for sampling in (Sampling(temperature=0), Sampling(top_k=1)):
        for u in (0.0, 0.5, 0.999):
            assert sample_next(logits, sampling, torch.tensor([u])).item() == 1


def test_top_k_and_top_p_keep_only_the_likeliest_codes() -> None:
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.1, 0.35]]))
    uniforms = torch.linspace(0, 0.999, 200)
    drawn = {
        name: {sample_next(logits, s, u.reshape(1)).item() for u in uniforms}
        for name, s in {
            "all": Sampling(),
            "top_k=2": Sampling(top_k=2),
            "top_p=0.8": Sampling(top_p=0.8),  # 0.5 + 0.35 reaches it
            "top_p=0.5": Sampling(top_p=0.5),
        }.items()
    }
    assert drawn == {"all": {0, 1, 2, 3}, "top_k=2": {1, 3}, "top_p=0.8": {1, 3}, "top_p=0.5": {1}}


def test_sampling_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.25, 0.75]]))
    uniforms = torch.rand(4000, generator=torch.Generator().manual_seed(0))
    codes = sample_next(logits.expand(4000, 2), Sampling(), uniforms)
    assert 0.72 < codes.float().mean().item() < 0.78


def test_bad_sampling_values_are_refused() -> None:
    for bad in ({"temperature": -1}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            Sampling(**bad)


def test_the_prior_is_sized_from_the_file_count() -> None:
    def size(files: int, **overrides) -> tuple:
        c = PriorConfig.from_file_count(files, 3, 64, 32, **overrides)
        return c.hidden_size, c.layers, c.heads, c.dropout

    assert size(5) == size(20) == (128, 2, 4, 0.3)
    assert size(21) == size(100) == (256, 4, 4, 0.2)
    assert size(101) == (512, 6, 8, 0.1)
    assert size(5, hidden_size=64, layers=3, heads=None) == (64, 3, 4, 0.3)
    config = PriorConfig.from_file_count(5, 3, 64, 32, context_steps=64)
    assert config.context_steps == 64 and config.sequence_length == 192
    assert PriorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="must divide"):
        PriorConfig(rvq_levels=2, codebook_size=8, context_steps=4, hidden_size=30, heads=4)
