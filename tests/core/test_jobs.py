"""Tests for napari_instseg.core.jobs: the generator protocol and ``run``."""

from __future__ import annotations

import dataclasses

import pytest

from napari_instseg.core.jobs import Checkpoint, Metric, Progress, Stop, run, stop_requested


def counting_job(n: int, received: list):
    """Yields Progress 1..n, records what it receives, returns n or the step it stopped at."""
    for i in range(n):
        command = yield Progress("count", i + 1, n)
        received.append(command)
        if stop_requested(command):
            return ("stopped", i + 1)
    return ("done", n)


def test_run_returns_the_generator_return_value():
    received = []
    assert run(counting_job(4, received)) == ("done", 4)
    assert received == [None] * 4


def test_run_calls_on_event_in_order():
    events = []
    run(counting_job(3, []), events.append)
    assert events == [Progress("count", 1, 3), Progress("count", 2, 3), Progress("count", 3, 3)]


def test_mixed_events_arrive_in_order():
    def job():
        yield Metric("loss", 1.0, 1)
        yield Progress("train", 1, 2)
        yield Checkpoint("x.json", 1)
        return 42

    events = []
    assert run(job(), events.append) == 42
    assert [type(e).__name__ for e in events] == ["Metric", "Progress", "Checkpoint"]
    assert events[2].kind == "latest"


def test_should_stop_sends_stop_and_the_job_returns_early():
    events, received = [], []
    result = run(
        counting_job(10, received),
        events.append,
        should_stop=lambda: len(events) >= 3,
    )
    assert result == ("stopped", 3)
    assert len(events) == 3
    assert received[:2] == [None, None]
    assert isinstance(received[2], Stop)


def test_should_stop_is_polled_after_each_event():
    polls = []

    def should_stop():
        polls.append(True)
        return False

    run(counting_job(5, []), should_stop=should_stop)
    assert len(polls) == 5


def test_job_that_yields_nothing():
    def job():
        return "empty"
        yield  # pragma: no cover - makes this a generator

    assert run(job()) == "empty"


def test_exceptions_inside_a_job_propagate():
    def job():
        yield Progress("x", 1, 2)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(job())


def test_events_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Progress("a", 1, 2).step = 3


def test_stop_requested():
    assert stop_requested(Stop())
    assert not stop_requested(None)
    assert not stop_requested("stop")
