"""Long work as generators of small typed events, stoppable, driven the same way everywhere.

A job is a generator: it ``yield``s events, may receive a :class:`Stop` through ``send`` in
answer to any event, and ``return``s its result. The CLI, the tests and the napari plugin all
drive jobs with :func:`run` or their own loop over the same protocol.

Examples
--------
>>> def count(n):
...     for i in range(n):
...         command = yield Progress("count", i + 1, n)
...         if isinstance(command, Stop):
...             return i + 1
...     return n
>>> run(count(5))
5
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """``step`` of ``total`` units of ``stage`` are done."""

    stage: str
    step: int
    total: int


@dataclass(frozen=True)
class Metric:
    """A named value measured at a training step (loss, validation AP ...)."""

    name: str
    value: float
    step: int


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint was written to ``path`` at ``step`` (``kind`` is 'best' or 'latest')."""

    path: str
    step: int
    kind: str = "latest"


@dataclass(frozen=True)
class Preview:
    """An intermediate result worth showing, for example labels of the current model."""

    name: str
    data: Any
    step: int


@dataclass(frozen=True)
class Stop:
    """Command sent into a job to make it stop at its next event and return."""


Event = Progress | Metric | Checkpoint | Preview
Job = Generator[Event, Stop | None, T]


def run(
    job: Job[T],
    on_event: Callable[[Event], None] | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> T:
    """Drive ``job`` to its end and return its result.

    Parameters
    ----------
    job : generator
        The job to run.
    on_event : callable, optional
        Called with every event, in order.
    should_stop : callable, optional
        Polled after each event; when it returns True the job is sent :class:`Stop`.
    """
    try:
        event = next(job)
        while True:
            if on_event is not None:
                on_event(event)
            command = Stop() if should_stop is not None and should_stop() else None
            event = job.send(command)
    except StopIteration as finished:
        return finished.value


def stop_requested(command: object) -> bool:
    """True when the value received from ``yield`` asks the job to stop."""
    return isinstance(command, Stop)
