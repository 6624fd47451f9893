"""What long work says as it goes; the library reports, the command line draws.

Any ``Callable[[str], None]`` serves as a progress callback: it hears one message per step begun (a result cell
computed, a training, a stage). A :class:`Progress` hears more, for a display that nests: how far the current
step is (``advance``: images attacked, training batches done) and what happens inside a batch (``detail``:
AutoAttack's component attacks, each of which can run for minutes on a CPU).
"""

from __future__ import annotations

from typing import Callable

from robustbench_dc.errors import UserError


class Progress:
    """A progress callback that also hears where a step stands; subclass it and override what you show."""

    def __call__(self, message: str) -> None:
        """A step begins."""

    def position(self, done: int, total: int) -> None:
        """``done`` of ``total`` steps are finished (read from the store or computed); the next one begins."""

    def advance(self, done: int, total: int, unit: str) -> None:
        """``done`` of the current step's ``total`` ``unit``s (e.g. "images", "batches") are finished."""

    def detail(self, message: str) -> None:
        """What the current batch is doing."""


class _Messages(Progress):
    def __init__(self, callback: Callable[[str], None]) -> None:
        self.callback = callback

    def __call__(self, message: str) -> None:
        self.callback(message)


def as_progress(callback: Callable[[str], None] | Progress | bool | None) -> Progress:
    """``callback`` as a :class:`Progress` (a plain callable hears messages only; ``None`` or ``False`` hears
    nothing)."""
    if isinstance(callback, Progress):
        return callback
    if callback is None or callback is False:
        return Progress()
    if not callable(callback):
        raise UserError(
            f"progress={callback!r}: give a callable taking one message (print, a logger's info), a "
            "robustbench_dc.progress.Progress, or None/False for silence"
        )
    return _Messages(callback)


def counter(progress: Progress, total: int, unit: str) -> Callable[[int], None]:
    """A per-batch callback taking the batch's size, reporting the running count to ``progress``."""
    done = 0

    def add(k: int) -> None:
        nonlocal done
        done += k
        progress.advance(done, total, unit)

    return add
