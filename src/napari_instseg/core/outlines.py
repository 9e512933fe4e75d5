"""Outlines of labelled objects as polygons along pixel edges, for vector exports.

Each object of a 2D labels image becomes one or more polygons whose vertices are pixel
corners: pixel ``(row, col)`` covers ``x`` in ``[col, col + 1]`` and ``y`` in
``[row, row + 1]``, the convention of ImageJ/Fiji and QuPath. Filling such a polygon (a pixel
is inside when its centre is) gives back exactly the object's pixels, so areas measured in
Fiji or QuPath equal the pixel counts of the labels.

Topology: an object's parts are its 4-connected components, one polygon each; a hole is a
region of other pixels (background or another object) enclosed by one part, with the
8-connected neighbourhood that 4-connected parts imply. Where two pixels of an object touch
only at a corner, the outline passes through that corner twice rather than across it, so a
ring may touch itself or another ring at a vertex but never crosses it.

Rings are lists of ``(x, y)`` corners, not repeated at the end. Outer rings run one way and
holes the other: the shoelace area of an outer ring, computed on ``(x, y)`` as stored, is
positive (counter-clockwise in GeoJSON's right-hand-rule sense; on screen, with ``y`` pointing
down, that looks clockwise) and that of a hole negative. Even-odd and non-zero filling
therefore agree on every polygon written from here.

Examples
--------
>>> labels = np.zeros((4, 5), np.uint32)
>>> labels[1:3, 1:4] = 7
>>> outlines = label_outlines(labels)
>>> outlines[7][0][0].tolist()  # one part, its outer ring
[[1, 1], [4, 1], [4, 3], [1, 3]]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: A polygon: its outer ring, then its holes; each ring an ``(N, 2)`` array of ``(x, y)``.
Polygon = list[np.ndarray]

# Edge directions in (x, y) with y pointing down: east, south, west, north. Turning right on
# screen is the next one, (d + 1) % 4.
_DX = (1, 0, -1, 0)
_DY = (0, 1, 0, -1)


def ring_area(ring: np.ndarray) -> float:
    """Shoelace area of a ring of ``(x, y)`` vertices: positive for outer rings written by
    :func:`trace_mask`, negative for holes."""
    x = np.asarray(ring[:, 0], dtype=np.float64)
    y = np.asarray(ring[:, 1], dtype=np.float64)
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0


def trace_mask(mask: np.ndarray) -> list[Polygon]:
    """Polygons along the pixel edges of a 2D mask, one per 4-connected component.

    Parameters
    ----------
    mask : ndarray of bool
        ``(Y, X)`` mask.

    Returns
    -------
    list of Polygon
        In the raster order of the components' first pixels; each polygon is its outer ring
        followed by its holes (in the order they are met), integer ``(x, y)`` corners in the
        mask's frame.
    """
    from scipy import ndimage as ndi

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"trace_mask needs a 2D mask, got shape {mask.shape}")
    h, w = mask.shape
    if not mask.any():
        return []
    parts, n_parts = ndi.label(mask)  # default structure: 4-connected in 2D
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1]
    stride = w + 1
    # An edge lies between an object pixel and a pixel outside it, walked with the object on
    # the right (on screen): top edges east, right edges south, bottom west, left north.
    sides = (
        (inner & ~padded[:-2, 1:-1], 0, 0, 0),  # top: starts at (col, row), east
        (inner & ~padded[1:-1, 2:], 1, 0, 1),  # right: starts at (col + 1, row), south
        (inner & ~padded[2:, 1:-1], 1, 1, 2),  # bottom: starts at (col + 1, row + 1), west
        (inner & ~padded[1:-1, :-2], 0, 1, 3),  # left: starts at (col, row + 1), north
    )
    out = np.zeros((h + 1) * stride, dtype=np.uint8)  # bit d: an edge leaves in direction d
    starts: list[np.ndarray] = []
    for on, ox, oy, d in sides:
        rows, cols = np.nonzero(on)
        keys = (rows + oy) * stride + (cols + ox)
        np.bitwise_or.at(out, keys, np.uint8(1 << d))
        starts.append(np.stack([keys, np.full_like(keys, d)], axis=1))
    step = (1, stride, -1, -stride)
    remaining = out.copy()

    rings: list[tuple[int, np.ndarray]] = []  # (component, ring)
    for key, d in np.concatenate(starts).tolist():
        if not remaining[key] >> d & 1:
            continue
        start = (key, d)
        corners: list[int] = []
        v = key
        while True:
            remaining[v] &= ~np.uint8(1 << d)
            v += step[d]
            bits = out[v]
            # Prefer turning right, then straight, then left: at a corner where two pixels
            # of the object touch diagonally this keeps to the pixel just walked around, so
            # parts stay 4-connected and rings never cross.
            for nd in ((d + 1) % 4, d, (d + 3) % 4):
                if bits >> nd & 1:
                    break
            if nd != d:
                corners.append(v)
            d = nd
            if (v, d) == start:
                break
        # the walk ends on its start vertex: put it first
        corners = corners[-1:] + corners[:-1]
        ring = np.array([(c % stride, c // stride) for c in corners], dtype=np.int64)
        x0, y0 = start[0] % stride, start[0] // stride
        # the pixel to the right of the first edge (see `sides`) names the component
        row = y0 - (start[1] in (2, 3))
        col = x0 - (start[1] in (1, 2))
        rings.append((int(parts[row, col]), ring))

    polygons: list[Polygon] = [[] for _ in range(n_parts)]
    holes: list[list[np.ndarray]] = [[] for _ in range(n_parts)]
    for part, ring in rings:
        if ring_area(ring) > 0:
            polygons[part - 1].append(ring)
        else:
            holes[part - 1].append(ring)
    return [outer + hole for outer, hole in zip(polygons, holes, strict=True)]


def _object_slices(labels: np.ndarray) -> Iterator[tuple[int, tuple[slice, ...]]]:
    """``(id, bounding box)`` of every object of a 2D labels image, by id."""
    from scipy import ndimage as ndi

    top = int(labels.max(initial=0))
    if top == 0:
        return
    if top <= 4 * labels.size + 1024:
        for index, box in enumerate(ndi.find_objects(labels)):
            if box is not None:
                yield index + 1, box
        return
    # ids too sparse for a list over the id range: number them 1..N first
    ids, inverse = np.unique(labels, return_inverse=True)
    shift = 0 if ids[0] == 0 else 1  # value k of `compact` is object ids[k - shift]
    compact = inverse.reshape(labels.shape) + shift
    for index, box in enumerate(ndi.find_objects(compact)):
        if box is not None:
            yield int(ids[index + 1 - shift]), box


def label_outlines(labels: np.ndarray) -> dict[int, list[Polygon]]:
    """The pixel-edge polygons of every object of a 2D labels image.

    Parameters
    ----------
    labels : ndarray of int
        ``(Y, X)`` labels, 0 = background; ids need not be consecutive.

    Returns
    -------
    dict of int to list of Polygon
        By id, ascending: the object's parts (see :func:`trace_mask`), vertices as integer
        ``(x, y)`` pixel corners of the whole image.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label_outlines needs 2D labels, got shape {labels.shape}")
    result: dict[int, list[Polygon]] = {}
    for label_id, (rows, cols) in _object_slices(labels):
        offset = np.array([cols.start, rows.start], dtype=np.int64)
        polygons = trace_mask(labels[rows, cols] == label_id)
        result[label_id] = [[ring + offset for ring in polygon] for polygon in polygons]
    return result
