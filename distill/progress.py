"""How long a run has left, one way for the terminal and the dashboard.

A run has two stretches: its epochs (every one about as long as the last ones) and, for
a VQ-VAE, its decoder stage's steps after them. Both are estimated at the pace so far:
what is left, times the time each unit took. The CLI's progress line (cli/render.py) and
the run page (server/views.py) call these functions with what each has at hand.
"""

from __future__ import annotations


def remaining_seconds(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left when `done` of `total` units took `elapsed` seconds; None before any
    unit is done (there is no pace yet)."""
    if done <= 0 or elapsed <= 0 or total <= 0:
        return None
    return max(total - done, 0.0) * elapsed / done


def epochs_remaining(
    epoch_seconds: list[float], epochs_left: int, within: float = 0.0, since_start: float = 0.0
) -> float | None:
    """Seconds left in the epochs: `epochs_left` (the current one included) less the share
    `within` (0..1) of the current one already done, at the mean length of the finished
    epochs given (`epoch_seconds`, the latest few). Before any epoch finished, at the pace
    of the current one so far (`since_start` seconds for `within` of it)."""
    if epoch_seconds:
        return max(epochs_left - within, 0.0) * sum(epoch_seconds) / len(epoch_seconds)
    return remaining_seconds(within, epochs_left, since_start)


def duration(seconds: float | None) -> str:
    """ "1 h 05 min", "3 min 20 s", "45 s"; "-" for no figure."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
