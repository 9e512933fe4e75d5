"""What the back-ends keep across calls for live tuning: asked again only when nothing
changed."""

from __future__ import annotations

import gc

import numpy as np

from napari_instseg.core.assembly import reuse


def _counting():
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    return calls, compute


def test_same_arrays_and_key_compute_once():
    reuse.forget()
    x, mask = np.arange(10.0), None
    calls, compute = _counting()
    assert reuse.Inputs(x, mask).reuse(("k", 1), compute) == 1
    assert reuse.Inputs(x, mask).reuse(("k", 1), compute) == 1
    assert reuse.Inputs(x, mask).reuse(("k", 2), compute) == 2  # another key
    assert len(calls) == 2


def test_an_edit_in_place_or_another_array_computes_again():
    reuse.forget()
    x = np.arange(10.0)
    calls, compute = _counting()
    reuse.Inputs(x).reuse(("k",), compute)
    x[7] = -1.0
    reuse.Inputs(x).reuse(("k",), compute)
    reuse.Inputs(x.copy()).reuse(("k",), compute)  # equal content, another object
    assert len(calls) == 3


def test_values_go_with_their_arrays_and_with_age():
    reuse.forget()
    x = np.arange(10.0)
    reuse.Inputs(x).reuse(("k",), lambda: np.zeros(1000))
    assert len(reuse._kept) == 1
    del x
    gc.collect()
    reuse.Inputs(np.ones(3)).reuse(("other",), lambda: 0)
    assert [e[2] for e in reuse._kept] == [("other",)]  # the first value was let go
    keep = [np.full(3, i) for i in range(reuse.KEEP + 2)]
    for i, a in enumerate(keep):
        reuse.Inputs(a).reuse(("k", i), lambda i=i: i)
    assert len(reuse._kept) == reuse.KEEP
    calls, compute = _counting()
    reuse.Inputs(keep[0]).reuse(("k", 0), compute)  # the oldest was dropped
    assert calls == [1]
    reuse.forget()
