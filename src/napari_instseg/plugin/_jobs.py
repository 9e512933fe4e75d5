"""Run a core job in a napari worker thread: events to the GUI, Stop from the GUI.

Events reach the callbacks on the main thread (Qt queued signals), so callbacks may touch
layers. ``stop()`` sends :class:`~napari_instseg.core.jobs.Stop` into the job at its next event,
so the job ends the way it chooses (training saves its latest checkpoint; prediction returns
None). ``NAPARI_INSTSEG_NO_THREADS=1`` runs jobs synchronously, for debugging.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from napari_instseg.core.jobs import Stop


def threads_disabled() -> bool:
    return os.environ.get("NAPARI_INSTSEG_NO_THREADS", "") not in ("", "0")


class JobHandle:
    """A running (or finished) job: ``stop()`` it, ask whether it is ``running``."""

    def __init__(self):
        self._stop = threading.Event()
        self.running = True
        self.worker = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


def _drive(job, handle: JobHandle):
    """Generator for napari's worker: re-yields the job's events, forwards Stop."""
    try:
        event = next(job)
        while True:
            yield event
            event = job.send(Stop() if handle.stop_requested else None)
    except StopIteration as finished:
        return finished.value


def start_job(
    job_factory: Callable[[], Any],
    *,
    on_event: Callable[[Any], None] | None = None,
    on_done: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> JobHandle:
    """Start ``job_factory()`` (a core job) in a worker thread and return its handle.

    ``job_factory`` is called inside the worker, so even building the job (reading data,
    loading a model) stays off the main thread.
    """
    handle = JobHandle()

    def finish_ok(value):
        handle.running = False
        if on_done is not None:
            on_done(value)

    def finish_error(err):
        handle.running = False
        if on_error is not None:
            on_error(err)

    if threads_disabled():
        try:
            gen = _drive(job_factory(), handle)
            try:
                while True:
                    event = next(gen)
                    if on_event is not None:
                        on_event(event)
            except StopIteration as finished:
                finish_ok(finished.value)
        except Exception as err:  # reported to the user like a worker error
            finish_error(err)
        return handle

    from napari.qt.threading import create_worker

    def work():
        # Errors travel as return values: superqt's worker treats a RuntimeError (what torch
        # raises for most failures) as "worker deleted" and only warns, which would leave the
        # GUI waiting forever.
        try:
            return True, (yield from _drive(job_factory(), handle))
        except Exception as err:
            return False, err

    def finish(outcome):
        ok, value = outcome
        (finish_ok if ok else finish_error)(value)

    worker = create_worker(work, _start_thread=False)
    if on_event is not None:
        worker.yielded.connect(on_event)
    worker.returned.connect(finish)
    handle.worker = worker
    worker.start()
    return handle


def call_in_worker(
    fn: Callable[[], Any],
    *,
    on_done: Callable[[Any], None],
    on_error: Callable[[BaseException], None] | None = None,
) -> JobHandle:
    """Run a plain function (no events) in a worker; a job of one step."""

    def job():
        return fn()
        yield  # makes this a generator

    return start_job(job, on_done=on_done, on_error=on_error)
