"""How many threads each torch process distill starts may use, decided before torch loads.

Why this matters: torch's OpenMP threads spin while they wait at the end of every parallel
region. When another process holds one of the cores (another training, a browser, the
editor's helper decoding), a spinning thread waits for a thread that is not running, and
every region waits for the slowest: a 2-core machine with one other busy process ran a
prior training step 4 to 7x slower with 2 spinning threads than with 1 thread, or with 2
threads whose waits sleep (OMP_WAIT_POLICY=PASSIVE). distill runs several torch processes
at once itself (the training pool's workers, the server's helper), so it did this to itself.

So every process distill starts that runs torch calls `fit_threads` first thing, before
torch is imported: the OpenMP runtime reads its wait policy once, when torch loads it.

Who decides, strongest first:
1. the standard variables the user set (OMP_NUM_THREADS, OMP_WAIT_POLICY): they win;
2. `--threads N` (THREADS_ENV in the environment, which spawned processes inherit);
3. the share: the cores this process may run on, divided among the torch processes
   distill keeps busy at once, its training workers (`torch_processes`).
A Dask worker's task is the exception to 1: its nanny sets OMP_NUM_THREADS=1 for every
worker it starts, which is not the user's choice, so a task takes its share regardless.

Torch-free (it runs before torch loads), at the ground layer beside paths.py.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

THREADS_ENV = "DISTILL_THREADS"  # `--threads N`: how it reaches the processes distill starts
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
WAIT_POLICY = "PASSIVE"  # a waiting thread sleeps: it never holds a core someone else needs


@dataclass(frozen=True)
class ThreadFit:
    """What one process was given, and who decided: "environment", "--threads" or "share"."""

    threads: int
    wait_policy: str
    source: str


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, as a container or taskset
    gives it), not every core the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def torch_processes(concurrency: int) -> int:
    """How many torch processes the cores are shared among: the pool's workers, which
    compute for as long as they hold a run.

    A server's helpers (scans, the editor) are not counted: they idle
    between requests. Counted, they kept a server's training worker on one core of two for
    the whole run, to spare a core for a helper that was idle nearly all of it (4.2 prior
    steps/s instead of 5.9 on a quiet 2-core machine). Not counted, a helper at work and
    the worker each take every core while it lasts, which costs little with passive waits:
    bench/contention.py's "helper decoding" measures it against the 0.45x target."""
    return max(1, concurrency)


def share(processes: int, cores: int | None = None) -> int:
    """Each of `processes` torch processes' share of the cores, at least one."""
    return max(1, (cores if cores is not None else available_cores()) // max(1, processes))


def requested_threads(value: int | None) -> None:
    """`--threads N`: into the environment, so every process this one starts inherits it.
    None (the option left out) leaves the share to decide."""
    if value is not None:
        if value < 1:
            raise ValueError(f"--threads must be at least 1, got {value}")
        os.environ[THREADS_ENV] = str(value)


def decide(
    processes: int, environ: MutableMapping[str, str] | None = None, users_env: bool = True
) -> ThreadFit:
    """The thread count and wait policy for a process, without setting anything.

    `users_env=False` (a Dask worker): the thread variables present were set by the nanny,
    not the user, and do not count; an explicit --threads still does."""
    env = os.environ if environ is None else environ
    policy = env.get(WAIT_POLICY_VARIABLE) or WAIT_POLICY
    given = _positive(env.get("OMP_NUM_THREADS")) if users_env else None
    if given is not None:
        return ThreadFit(given, policy, "environment")
    asked = _positive(env.get(THREADS_ENV))
    if asked is not None:
        return ThreadFit(asked, policy, "--threads")
    return ThreadFit(share(processes), policy, "share")


def fit_threads(processes: int, users_env: bool = True) -> ThreadFit:
    """Decide, set the variables for this process, then load torch under them (OpenMP
    reads them once, as torch loads it) and set torch's own counts. Returns the decision.
    In a process where torch is already loaded, the wait policy stays as it was.

    Call it only in the process that runs torch: the variables it sets are inherited by
    anything this process starts, where they would read as the user's."""
    fit = decide(processes, users_env=users_env)
    for name in THREAD_VARIABLES:
        if users_env:
            os.environ.setdefault(name, str(fit.threads))
        else:
            os.environ[name] = str(fit.threads)
    os.environ.setdefault(WAIT_POLICY_VARIABLE, fit.wait_policy)
    import torch

    torch.set_num_threads(fit.threads)
    try:  # the inter-op pool can be sized only before its first use; after that, keep it
        if torch.get_num_interop_threads() != fit.threads:
            torch.set_num_interop_threads(fit.threads)
    except RuntimeError:
        pass
    return fit


def fitted() -> ThreadFit:
    """For tests and reports: what this process runs torch with, as torch and the
    environment say (source "")."""
    import torch

    return ThreadFit(torch.get_num_threads(), os.environ.get(WAIT_POLICY_VARIABLE, ""), "")


def _positive(value: str | None) -> int | None:
    """A thread count from the environment; anything else (unset, "", "auto") is none."""
    try:
        number = int(value) if value is not None else 0
    except ValueError:
        return None
    return number if number >= 1 else None


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the block, then as it was: for generating, whose steps are
    one token each, too small to share between threads. On 2 cores (bench/prior_bench.py,
    passive waits) the small prior samples 2x faster on 1 thread than on 2, the largest
    1.3x, and the other core is left to a training beside it; a seed's codes then do not
    depend on how many cores the machine has either."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
