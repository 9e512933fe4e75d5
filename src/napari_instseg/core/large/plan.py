"""Where the blocks of a large image go: a core per block, read with a halo around it.

Each block owns the objects whose centroid lies in its core and is predicted and assembled
on its read region: the core grown by ``halo`` on every side. Near the image edge the read
window slides inwards instead of shrinking, so every block reads the same shape (the block
store holds equal slots, and a worker's memory does not depend on where its block lies).
Cores are whole multiples of the output's shard shape, so each shard has exactly one writer.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..arrays import InputError


@dataclass(frozen=True)
class Block:
    """One block: its index in the plan, grid position, core and read region (global)."""

    index: int
    grid: tuple[int, ...]
    core: tuple[slice, ...]
    read: tuple[slice, ...]

    def core_in_read(self) -> tuple[slice, ...]:
        """The core as a region of the read array."""
        return tuple(
            slice(c.start - r.start, c.stop - r.start)
            for c, r in zip(self.core, self.read, strict=True)
        )


@dataclass(frozen=True)
class BlockPlan:
    """A cover of ``shape`` by blocks of ``core`` with ``halo`` context on each side."""

    shape: tuple[int, ...]
    core: tuple[int, ...]
    halo: tuple[int, ...]
    shard: tuple[int, ...]
    chunk: tuple[int, ...]
    read_shape: tuple[int, ...]
    grid_shape: tuple[int, ...]
    blocks: tuple[Block, ...]

    def __len__(self) -> int:
        return len(self.blocks)

    def describe(self) -> dict:
        """JSON-friendly summary (also the identity a resumed run must match)."""
        return {
            "shape": list(self.shape),
            "core": list(self.core),
            "halo": list(self.halo),
            "shard": list(self.shard),
            "chunk": list(self.chunk),
            "read_shape": list(self.read_shape),
            "blocks": len(self.blocks),
        }

    def read_ratio(self) -> float:
        """Pixels read over pixels in the image: the compute overhead of the halos."""
        return len(self.blocks) * math.prod(self.read_shape) / math.prod(self.shape)

    def overlapping(self, region: tuple[slice, ...]) -> list[Block]:
        """Blocks whose read region intersects ``region`` (searched near it on the grid)."""
        ranges = []
        for sl, c, r, g in zip(region, self.core, self.read_shape, self.grid_shape, strict=True):
            # a block's read window lies within one window's length of its core start
            ranges.append(range(max(0, (sl.start - r) // c), min(g, (sl.stop + r) // c + 1)))
        out = []
        for grid in itertools.product(*ranges):
            block = self.blocks[int(np.ravel_multi_index(grid, self.grid_shape))]
            if intersect(block.read, region) is not None:
                out.append(block)
        return out

    def pairs(self) -> list[tuple[int, int]]:
        """Index pairs ``(a, b)``, ``a < b``, of blocks whose read regions overlap."""
        return [
            (a.index, b.index)
            for a in self.blocks
            for b in self.overlapping(a.read)
            if b.index > a.index
        ]


def intersect(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...] | None:
    """The intersection of two regions, or None when it is empty."""
    out = []
    for x, y in zip(a, b, strict=True):
        lo, hi = max(x.start, y.start), min(x.stop, y.stop)
        if lo >= hi:
            return None
        out.append(slice(lo, hi))
    return tuple(out)


def shift(region: tuple[slice, ...], origin: tuple[slice, ...]) -> tuple[slice, ...]:
    """``region`` (global) relative to the corner of ``origin``."""
    return tuple(
        slice(r.start - o.start, r.stop - o.start) for r, o in zip(region, origin, strict=True)
    )


def _per_axis(value, nd: int, what: str) -> tuple[int, ...]:
    values = (value,) * nd if isinstance(value, int | float) else tuple(value)
    if len(values) != nd:
        raise InputError(f"{what} needs {nd} values (one per spatial axis), got {values}")
    return tuple(int(v) for v in values)


def default_chunk(shard: tuple[int, ...]) -> tuple[int, ...]:
    """Inner chunks for viewing: 256 per axis in 2D, 64 in 3D, dividing the shard."""
    edge = 256 if len(shard) == 2 else 64
    return tuple(math.gcd(s, edge) if s % edge else edge for s in shard)


def plan_blocks(
    shape: tuple[int, ...],
    *,
    core: int | tuple[int, ...],
    halo: int | tuple[int, ...],
    shard: int | tuple[int, ...] | None = None,
    chunk: int | tuple[int, ...] | None = None,
) -> BlockPlan:
    """Plan the blocks of an image of spatial ``shape``.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the image.
    core : int or tuple
        Core shape of each block (per axis, or one value for all). Capped at the image.
    halo : int or tuple
        Context read around each core: at least the largest object's radius plus what the
        network needs to see around a pixel.
    shard : int or tuple, optional
        Shard shape of the output labels (zarr v3). Each core must be a whole multiple of it,
        so that no two blocks write one shard. Default: the core.
    chunk : int or tuple, optional
        Inner chunk shape of the output (must divide the shard). Default
        :func:`default_chunk`.

    Raises
    ------
    InputError
        A core that is not a multiple of the shard shape (two writers would share a shard
        and silently lose data), a chunk that does not divide the shard, or sizes below 1.
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    if nd not in (2, 3) or min(shape) < 1:
        raise InputError(f"a block plan needs a 2D or 3D image shape, got {shape}")
    core_t = tuple(min(c, s) for c, s in zip(_per_axis(core, nd, "core"), shape, strict=True))
    halo_t = _per_axis(halo, nd, "halo")
    if min(core_t) < 1 or min(halo_t) < 0:
        raise InputError(f"core must be >= 1 and halo >= 0 per axis, got {core_t}, {halo_t}")
    shard_t = core_t if shard is None else _per_axis(shard, nd, "shard")
    shard_t = tuple(min(s, n) for s, n in zip(shard_t, shape, strict=True))
    for c, s, n in zip(core_t, shard_t, shape, strict=True):
        if s < 1 or (c % s and c != n):
            raise InputError(
                f"the block core {core_t} is not a whole multiple of the output shard shape "
                f"{shard_t}: two blocks would write the same shard and lose data. Use a core "
                "that is a multiple of the shard (or the shard itself)."
            )
    chunk_t = default_chunk(shard_t) if chunk is None else _per_axis(chunk, nd, "chunk")
    if any(s % c for s, c in zip(shard_t, chunk_t, strict=True)):
        raise InputError(f"the chunk shape {chunk_t} does not divide the shard shape {shard_t}")
    read_shape = tuple(min(c + 2 * h, n) for c, h, n in zip(core_t, halo_t, shape, strict=True))
    grid_shape = tuple(math.ceil(n / c) for n, c in zip(shape, core_t, strict=True))
    blocks = []
    for index, grid in enumerate(itertools.product(*(range(g) for g in grid_shape))):
        core_sl, read_sl = [], []
        for g, c, h, n, r in zip(grid, core_t, halo_t, shape, read_shape, strict=True):
            start = g * c
            core_sl.append(slice(start, min(start + c, n)))
            # Slide the window inwards at the image edge: the same read shape everywhere.
            lo = min(max(start - h, 0), n - r)
            read_sl.append(slice(lo, lo + r))
        blocks.append(Block(index, tuple(grid), tuple(core_sl), tuple(read_sl)))
    return BlockPlan(shape, core_t, halo_t, shard_t, chunk_t, read_shape, grid_shape, tuple(blocks))
