"""The checks a card's schema is composed of (models/card_schema.py): each takes a JSON
value and where it stands in the card ("config.mel.n_fft"), and refuses a bad one with a
ModelFileError that names that place and says what was wanted.

Plain Python on what json.loads returns: `type(value) is int` where JSON's true and 1e3
must not pass for integers, finite numbers unless a measured metric may be NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from distill.models.model_file import ModelFileError

MAX_COUNT = 2**53  # counts and indices: exact in JSON's numbers

Check = Callable[[Any, str], None]  # (value, where) -> None, or ModelFileError naming `where`


def refuse(where: str, problem: str, value: Any = None, show: bool = True) -> None:
    """The one way a card is refused: the place, the problem and (shortened) what was there."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise ModelFileError(f"{where}: {problem}" + (f", got {shown}" if show else ""))


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def integer(low: int, high: int) -> Check:
    """An int from low to high; `type is int` because JSON's true and 1e3 are not ints."""

    def check(value: Any, where: str) -> None:
        if type(value) is not int or not low <= value <= high:
            refuse(where, f"must be a finite integer from {low} to {high}", value)

    return check


def number(low: float, high: float, *, below: bool = False) -> Check:
    """A finite int or float from low to high (`below`: strictly under high)."""
    span = f"from {low:g} to under {high:g}" if below else f"from {low:g} to {high:g}"

    def check(value: Any, where: str) -> None:
        ok = type(value) in (int, float) and math.isfinite(value) and low <= value <= high
        if not ok or (below and value == high):
            refuse(where, f"must be a finite number {span}", value)

    return check


def metric(value: Any, where: str) -> None:
    """A measured number: NaN and infinity allowed (a diverged loss is NaN)."""
    if type(value) not in (int, float):
        refuse(where, "must be a number", value)


def text(value: Any, where: str) -> None:
    if not isinstance(value, str) or "\x00" in value:
        refuse(where, "must be a string without NUL characters", value)


def boolean(value: Any, where: str) -> None:
    if type(value) is not bool:
        refuse(where, "must be true or false", value)


def optional(check: Check) -> Check:
    """`check`, or JSON null."""

    def checked(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return checked


def list_of(item: Check, most: int = MAX_COUNT) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            refuse(where, "must be a list", value)
        if len(value) > most:
            refuse(where, f"must have at most {most} items, has {len(value)}", show=False)
        for index, entry in enumerate(value):
            item(entry, f"{where}[{index}]")

    return check


def mapping_of(item: Check) -> Check:
    """An object whose every value passes `item` (its keys are JSON's strings)."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            refuse(where, "must be an object", value)
        for key, entry in value.items():
            item(entry, _join(where, key))

    return check


def record(
    required: dict[str, Check], optional: dict[str, Check] | None = None, *, closed: bool
) -> Check:
    """An object with these fields; a closed one refuses any other field."""
    known = {**required, **(optional or {})}

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            refuse(where, "must be an object", value)
        for name in required:
            if name not in value:
                refuse(_join(where, name), "missing", show=False)
        if closed and (unknown := sorted(set(value) - set(known))):
            refuse(_join(where, unknown[0]), "unknown field", show=False)
        for name, field in known.items():
            if name in value:
                field(value[name], _join(where, name))

    return check


def power_of_two(high: int) -> Check:
    def check(value: Any, where: str) -> None:
        if type(value) is not int or not 1 <= value <= high or value & (value - 1):
            refuse(where, f"must be a power of two from 1 to {high}", value)

    return check
