"""Follow one run's event stream in the terminal, and turn its end into an exit code."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from distill.core.core import Core, RunError
from distill.events import TERMINAL_KINDS, Event
from distill.threads import THREADS_ENV
from distill.training.jobs import RUN_TYPES
from distill.training.specs import RunRequest

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# The options of every command that starts a run (train, train-prior): one spelling each.
DeviceOption = Annotated[str, typer.Option(help="auto (CUDA when there is one), cpu or cuda.")]
EventsJsonOption = Annotated[bool, typer.Option("--json", help="Print events as JSON lines.")]
FollowOption = Annotated[
    bool, typer.Option("--follow/--no-follow", help="Show the run live until it ends.")
]
# serve, train, train-prior, generate: torch threads per process (distill/threads.py).
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help=f"Torch threads for each process this starts (default: its share of the cores; "
        f"${THREADS_ENV}, and OMP_NUM_THREADS, which wins, set it too).",
        show_default=False,
    ),
]
KeepBestOption = Annotated[
    bool,
    typer.Option(
        "--keep-best/--no-keep-best",
        help="On Ctrl-C, save the best epoch so far as the model (the run ends completed); "
        "--no-keep-best only checkpoints it, for `distill runs resume`.",
    ),
]
PATIENCE_HELP = (
    "Stop when validation has not improved for this many epochs (the best epoch is kept); "
    "0 trains every epoch."
)


STOPPING = "stopping after this step (Ctrl-C again to leave)..."
STOPPING_KEEPING_BEST = (
    "stopping after this step; the best epoch so far becomes the model (Ctrl-C again to "
    "leave; --no-keep-best would only checkpoint)..."
)


def bad_input(console: Console, message: str) -> NoReturn:
    """Say what is wrong with what the user asked, and exit 2 (the user's to fix)."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(EXIT_BAD_INPUT)


def stopping_words(keep_best: bool) -> str:
    """What the first Ctrl-C says it does."""
    return STOPPING_KEEPING_BEST if keep_best else STOPPING


async def render_stream(
    events: AsyncIterator[Event],
    render: Callable[[Event], None],
    on_interrupt: Callable[[], Coroutine[Any, Any, None]] | None = None,
    console: Console | None = None,
    stopping: str = STOPPING,
) -> Event | None:
    """Render every event; the first Ctrl-C asks the run to stop (`stopping` says how),
    the second leaves.

    Returns the last terminal event seen (None if the stream ended without one).
    """
    loop = asyncio.get_running_loop()
    interrupts = 0
    follower = asyncio.current_task()
    assert follower is not None  # this coroutine runs in a task

    def interrupted() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and on_interrupt is not None:
            if console is not None:
                console.print(f"[yellow]{stopping}[/]")
            loop.create_task(on_interrupt())
        else:
            follower.cancel()

    loop.add_signal_handler(signal.SIGINT, interrupted)
    terminal = None
    try:
        async for event in events:
            render(event)
            if event.kind in TERMINAL_KINDS:
                terminal = event
    except asyncio.CancelledError:
        pass
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    return terminal


def exit_code(terminal: Event | None) -> int:
    """From the run's last event: completed 0, bad input 2, anything else 1."""
    if terminal is None:
        return EXIT_FAILED
    failed = terminal.kind == "run_failed"
    return _exit_code(
        terminal.kind == "run_completed", terminal.payload["error"] if failed else None
    )


def exit_code_of_run(run: dict[str, Any]) -> int:
    """The same, from the run's recorded status: for a follow that began past its end."""
    failed = run["status"] == "failed"
    return _exit_code(run["status"] == "completed", run.get("error") if failed else None)


def _exit_code(completed: bool, error: str | None) -> int:
    if completed:
        return EXIT_OK
    if error is not None and error.startswith("DatasetError"):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


async def run_in_process(home: Path, request: RunRequest, render,
                         console: Console, keep_best: bool = True) -> int:  # fmt: skip
    """No server running: start a core in this process, submit, follow to the end; a
    Ctrl-C stops the run, keeping its best epoch so far as the model with `keep_best`."""
    async with Core(home, run_types=RUN_TYPES) as core:
        try:
            run_id = await core.submit(request.run_type, request)
        except (RunError, ValueError) as error:
            console.print(f"[bold red]error:[/] {error}")
            return EXIT_BAD_INPUT
        terminal = await render_stream(
            core.follow(run_id), render, lambda: core.cancel(run_id, keep_best), console,
            stopping_words(keep_best),
        )  # fmt: skip
        return exit_code(terminal)
