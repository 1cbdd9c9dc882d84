"""Seeded fuzzing of what a model file says, past its checksum (issue 14).

Unlike test_model_file_fuzz.py, whose byte mutants mostly meet the checksum, every mutant
here is sealed with a fresh checksum (tests/card_fuzz.py), so it reaches the card's schema,
the tensor checks and the model code. Each must be refused with a ModelFileError or load
and run; bench/model_fuzz.py runs the same mutants by the tens of thousands.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path

import pytest
import torch
from card_fuzz import LOADED, REFUSED, SEED, base_model, mutants, outcome

MUTANTS = 500


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: more threads only contend, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    return base_model(tmp_path_factory.mktemp("card-fuzz")).read_bytes()


def test_the_base_model_loads_and_runs(good: bytes, tmp_path: Path) -> None:
    path = tmp_path / "base.distill"
    path.write_bytes(good)
    assert outcome(path, tmp_path / "home") == LOADED


def test_every_sealed_mutant_is_refused_cleanly_or_loads_and_runs(
    good: bytes, tmp_path: Path
) -> None:
    path, home = tmp_path / "mutant.distill", tmp_path / "home"
    counts: collections.Counter[str] = collections.Counter()
    for mutant in mutants(random.Random(SEED), good, MUTANTS):
        path.write_bytes(mutant.data)
        try:
            counts[outcome(path, home)] += 1
        except Exception as error:  # any other exception is the bug this test is for
            raise AssertionError(
                f"{mutant.description}: {type(error).__name__}: {error}"
            ) from error
    # Both outcomes happen, or the fuzz would test nothing but one path.
    assert counts[REFUSED] > MUTANTS // 4 and counts[LOADED] > MUTANTS // 20, counts
    assert not list((home / "models").glob("*")), "a refused import left a file behind"
