"""Threads that fit the machine: every torch process distill starts gets its share of the
cores and OpenMP's passive wait policy before torch loads; the user's variables win, and
`--threads` wins over the share (distill/threads.py)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from distill.core.runner import JobRunner
from distill.core.worker import init_worker, thread_count
from distill.server.helper import Helper
from distill.threads import (
    THREAD_VARIABLES,
    THREADS_ENV,
    WAIT_POLICY_VARIABLE,
    ThreadFit,
    available_cores,
    decide,
    fitted,
    requested_threads,
    share,
    torch_processes,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No thread variables: what a spawned process inherits is only what a test sets, and
    whatever the test sets is gone after it (set first, so that the undo removes it)."""
    for name in (*THREAD_VARIABLES, WAIT_POLICY_VARIABLE, THREADS_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def test_the_share_divides_the_cores_among_the_torch_processes() -> None:
    assert torch_processes(1) == 1  # a CLI run in its own process, or a server's one worker
    assert torch_processes(2) == 2  # a server: two workers; its idle helpers are not counted
    assert share(3, cores=8) == 2
    assert share(3, cores=2) == 1  # never none
    assert decide(2, {}) == ThreadFit(share(2), "PASSIVE", "share")


def test_the_users_variables_win_then_threads_then_the_share() -> None:
    users = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE", THREADS_ENV: "5"}
    assert decide(1, users) == ThreadFit(3, "ACTIVE", "environment")
    assert decide(1, {THREADS_ENV: "5"}) == ThreadFit(5, "PASSIVE", "--threads")
    assert decide(1, {"OMP_NUM_THREADS": "", THREADS_ENV: "x"}).source == "share"
    # a Dask nanny's OMP_NUM_THREADS=1 is not the user's: the share (or --threads) decides
    nanny = {"OMP_NUM_THREADS": "1", THREADS_ENV: "5"}
    assert decide(1, nanny, users_env=False) == ThreadFit(5, "PASSIVE", "--threads")


def test_threads_option_refuses_nonsense(clean_env: pytest.MonkeyPatch) -> None:
    requested_threads(None)
    assert THREADS_ENV not in os.environ
    with pytest.raises(ValueError, match="at least 1"):
        requested_threads(0)
    requested_threads(2)
    assert decide(1).source == "--threads"


def _in_worker(runner: JobRunner) -> ThreadFit:
    """What a worker of the runner's own pool (its initializer, spawned) reports."""

    async def ask() -> ThreadFit:
        await runner.start()
        pool, _ = runner._ensure_pool()
        try:
            return await asyncio.wrap_future(pool.submit(thread_count))
        finally:
            await runner.stop()

    return asyncio.run(ask())


def test_a_spawned_worker_gets_its_share_and_the_passive_policy(
    clean_env: pytest.MonkeyPatch,
) -> None:
    runner = JobRunner(lambda batch: None, lambda run_id: None, concurrency=1)
    assert runner.torch_processes == 1  # the helper idles between requests: not counted
    got = _in_worker(runner)
    assert got.threads == share(1) == available_cores()
    assert got.wait_policy == "PASSIVE"


def test_the_helper_takes_threads_over_its_share(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(THREADS_ENV, "3")  # what `distill serve --threads 3` sets

    async def ask() -> ThreadFit:
        helper = Helper(torch_processes(4))
        try:
            return await helper.call(fitted)
        finally:
            await helper.close()

    assert asyncio.run(ask()) == ThreadFit(3, "PASSIVE", "")


def test_the_users_variables_win_in_a_spawned_worker(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OMP_NUM_THREADS", "1")
    clean_env.setenv(WAIT_POLICY_VARIABLE, "ACTIVE")
    clean_env.setenv(THREADS_ENV, "3")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, context, initializer=init_worker, initargs=(None, 1)) as pool:
        assert pool.submit(thread_count).result() == ThreadFit(1, "ACTIVE", "")


def test_generating_runs_torch_on_one_thread_and_gives_the_rest_back() -> None:
    import torch

    from distill.threads import one_torch_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), one_torch_thread():
            raise RuntimeError("a failed generate")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
