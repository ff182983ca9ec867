"""Locate: regions of a frame that may hold a Data Matrix symbol.

The finder "L" is a solid bar of dark modules along two sides; with the dark data modules
touching it, it forms one large connected blob. On a reduced copy of the frame, a local-mean
threshold separates dark from light, connected components are labelled and each large,
moderately filled blob is reported with its minimum-area rectangle — any rotation, several per
frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

MAX_CANDIDATES = 24
MIN_FILL = 0.2  # share of its rectangle a symbol's blob covers at least (about half, typically)


@dataclass(frozen=True, slots=True)
class Candidate:
    """The minimum-area rectangle of a blob, in frame pixels."""

    centre: tuple[float, float]
    axis: tuple[float, float]  # unit vector along the first side; the second side is perpendicular
    half: tuple[float, float]  # half lengths along the axis and across it
    fill: float  # share of the rectangle covered by the blob

    @property
    def hollow(self) -> bool:
        """An outline rather than a symbol: the edge of a label brighter than its surroundings,
        which a symbol near that edge can merge with. Only worth a refined search."""
        return self.fill < MIN_FILL

    def corners(self) -> np.ndarray:
        (cx, cy), (ux, uy), (a, b) = self.centre, self.axis, self.half
        vx, vy = -uy, ux
        return np.array(
            [
                [cx + sa * a * ux + sb * b * vx, cy + sa * a * uy + sb * b * vy]
                for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))
            ]
        )


@njit(cache=True, nogil=True)
def halve(image):
    """Mean of 2 × 2 blocks."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    out = np.empty((h, w), np.uint8)
    for y in range(h):
        top = image[2 * y]
        bottom = image[2 * y + 1]
        for x in range(w):
            out[y, x] = (np.int32(top[2 * x]) + top[2 * x + 1] + bottom[2 * x] + bottom[2 * x + 1] + 2) >> 2
    return out


def binarize(image: np.ndarray, radius: int, offset: int) -> np.ndarray:
    """1 where a pixel is darker than the mean of its (2r+1)² window by more than ``offset``
    grey levels. The box mean is OpenCV's (its SIMD box filter is about three times faster
    here than the best scalar numba loop), the rest of the search is numba."""
    mean = cv2.blur(image, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REPLICATE)
    return (cv2.subtract(mean, image) > offset).astype(np.uint8)


@njit(cache=True, nogil=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


@njit(cache=True, nogil=True)
def components(mask):
    """8-connected components of a 0/1 mask, from its horizontal runs.

    Returns the runs (row, first x, last x), the runs of each component grouped together
    (``order`` with ``starts``: component k owns runs order[starts[k]:starts[k + 1]]) and per
    component [area, x0, y0, x1, y1].
    """
    h, w = mask.shape
    capacity = h * (w // 2 + 1)
    run_row = np.empty(capacity, np.int32)
    run_x0 = np.empty(capacity, np.int32)
    run_x1 = np.empty(capacity, np.int32)
    row_start = np.empty(h + 1, np.int64)
    n = 0
    for y in range(h):
        row_start[y] = n
        x = 0
        while x < w:
            if mask[y, x]:
                first = x
                while x < w and mask[y, x]:
                    x += 1
                run_row[n], run_x0[n], run_x1[n] = y, first, x - 1
                n += 1
            else:
                x += 1
    row_start[h] = n
    parent = np.arange(n)
    for y in range(1, h):
        i, j = row_start[y - 1], row_start[y]
        end_i, end_j = row_start[y], row_start[y + 1]
        while i < end_i and j < end_j:  # runs touching across rows, diagonals included
            if run_x1[i] < run_x0[j] - 1:
                i += 1
            elif run_x1[j] < run_x0[i] - 1:
                j += 1
            else:
                a, b = _find(parent, i), _find(parent, j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                if run_x1[i] < run_x1[j]:
                    i += 1
                else:
                    j += 1
    component = np.full(n, -1, np.int64)
    count = 0
    owner = np.empty(n, np.int64)
    for r in range(n):
        root = _find(parent, r)
        if component[root] < 0:
            component[root] = count
            count += 1
        owner[r] = component[root]
    stats = np.zeros((count, 5), np.int64)
    stats[:, 1] = w
    stats[:, 2] = h
    sizes = np.zeros(count + 1, np.int64)
    for r in range(n):
        k = owner[r]
        stats[k, 0] += run_x1[r] - run_x0[r] + 1
        stats[k, 1] = min(stats[k, 1], run_x0[r])
        stats[k, 2] = min(stats[k, 2], run_row[r])
        stats[k, 3] = max(stats[k, 3], run_x1[r])
        stats[k, 4] = max(stats[k, 4], run_row[r])
        sizes[k + 1] += 1
    starts = np.cumsum(sizes)
    fill = starts[:-1].copy()
    order = np.empty(n, np.int64)
    for r in range(n):
        k = owner[r]
        order[fill[k]] = r
        fill[k] += 1
    return run_row[:n], run_x0[:n], run_x1[:n], order, starts, stats


@njit(cache=True, nogil=True)
def _cross(ox, oy, ax, ay, bx, by):
    return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox)


@njit(cache=True, nogil=True)
def min_area_rect(run_row, run_x0, run_x1, runs):
    """Minimum-area rectangle around the pixels of the given runs: centre x, y, axis ux, uy,
    half lengths a, b (pixel centres; callers add half a pixel of border)."""
    m = 2 * len(runs)
    pts = np.empty((m, 2), np.float64)
    for i in range(len(runs)):
        r = runs[i]
        pts[2 * i, 0], pts[2 * i, 1] = run_x0[r], run_row[r]
        pts[2 * i + 1, 0], pts[2 * i + 1, 1] = run_x1[r], run_row[r]
    order = np.argsort(pts[:, 0] * 1e6 + pts[:, 1])
    pts = pts[order]
    hull = np.empty((2 * m + 1, 2), np.float64)
    k = 0
    for i in range(m):  # Andrew's monotone chain
        while (
            k >= 2 and _cross(hull[k - 2, 0], hull[k - 2, 1], hull[k - 1, 0], hull[k - 1, 1], pts[i, 0], pts[i, 1]) <= 0
        ):
            k -= 1
        hull[k] = pts[i]
        k += 1
    lower = k + 1
    for i in range(m - 2, -1, -1):
        while (
            k >= lower
            and _cross(hull[k - 2, 0], hull[k - 2, 1], hull[k - 1, 0], hull[k - 1, 1], pts[i, 0], pts[i, 1]) <= 0
        ):
            k -= 1
        hull[k] = pts[i]
        k += 1
    k -= 1
    best = np.inf
    result = np.zeros(6, np.float64)
    if k < 3:
        result[0], result[1], result[2], result[3] = pts[0, 0], pts[0, 1], 1.0, 0.0
        return result
    for i in range(k):  # rotating calipers, O(k²): hulls here are small
        ex = hull[(i + 1) % k, 0] - hull[i, 0]
        ey = hull[(i + 1) % k, 1] - hull[i, 1]
        length = np.hypot(ex, ey)
        if length == 0:
            continue
        ux, uy = ex / length, ey / length
        umin, umax, vmin, vmax = np.inf, -np.inf, np.inf, -np.inf
        for j in range(k):
            pu = hull[j, 0] * ux + hull[j, 1] * uy
            pv = -hull[j, 0] * uy + hull[j, 1] * ux
            umin, umax = min(umin, pu), max(umax, pu)
            vmin, vmax = min(vmin, pv), max(vmax, pv)
        area = (umax - umin + 1) * (vmax - vmin + 1)
        if area < best:
            best = area
            cu, cv = (umin + umax) / 2, (vmin + vmax) / 2
            result[0] = cu * ux - cv * uy
            result[1] = cu * uy + cv * ux
            result[2], result[3] = ux, uy
            result[4], result[5] = (umax - umin) / 2, (vmax - vmin) / 2
    return result


@njit(cache=True, nogil=True)
def _large_blobs(stats, width, height):
    """Components large enough to hold a symbol (at least 8 × 16 pixels: two pixels per module
    of the smallest symbol side) and smaller than the frame, largest first."""
    keep = np.zeros(stats.shape[0], np.int64)
    areas = np.zeros(stats.shape[0], np.int64)
    n = 0
    for i in range(stats.shape[0]):
        area, x0, y0, x1, y1 = stats[i, 0], stats[i, 1], stats[i, 2], stats[i, 3], stats[i, 4]
        w, h = x1 - x0 + 1, y1 - y0 + 1
        if max(w, h) < 16 or min(w, h) < 8 or area < 64:
            continue
        if w >= width - 2 and h >= height - 2:
            continue  # the background itself
        keep[n] = i
        areas[n] = area
        n += 1
    order = np.argsort(-areas[:n])
    return keep[:n][order]


def locate(image: np.ndarray, factor: int = 2, centred: bool = False) -> Iterator[Candidate]:
    """Candidate symbol rectangles in ``image`` (2-D uint8, dark modules on light), produced as
    they are needed: largest blobs first, or — ``centred``, for a region of interest placed on
    the symbol — the blobs nearest the middle first. Light-on-dark symbols are found in the
    inverted image.

    The search runs on the frame reduced ``factor`` times (the smallest module must stay at
    least two pixels wide: factor 2 finds modules from 4 px up), then on a copy reduced twice
    as much, where large modules form solid blobs that the first window size breaks up.
    """
    small = np.ascontiguousarray(image)
    for _ in range(factor.bit_length() - 1):
        small = halve(small)
    seen: list[Candidate] = []
    for candidate in _blob_rectangles(small, factor, centred):
        seen.append(candidate)
        yield candidate
    if min(small.shape) >= 128:
        for candidate in _blob_rectangles(halve(small), 2 * factor, centred):
            if len(seen) >= MAX_CANDIDATES:
                return
            if not any(_same(candidate, other) for other in seen):
                seen.append(candidate)
                yield candidate


def _same(a: Candidate, b: Candidate) -> bool:
    """Two rectangles around the same blob (centres close, sizes alike)."""
    size_a, size_b = max(a.half), max(b.half)
    distance = np.hypot(a.centre[0] - b.centre[0], a.centre[1] - b.centre[1])
    return distance < 0.25 * min(size_a, size_b) and 0.75 < size_a / size_b < 1.33


def _blob_rectangles(small: np.ndarray, factor: int, centred: bool) -> Iterator[Candidate]:
    yield from _rectangles(binarize(small, 6, 6), factor, 0, 0, False, centred)


def _rectangles(
    mask: np.ndarray, factor: int, x0: int, y0: int, inner_only: bool, centred: bool = False
) -> Iterator[Candidate]:
    """Candidates from the large components of ``mask`` (``factor`` pixels per mask pixel,
    offset ``x0``, ``y0``); ``inner_only`` skips components touching the mask's border;
    ``centred`` takes those nearest the middle first instead of the largest."""
    run_row, run_x0, run_x1, order, starts, stats = components(mask)
    height, width = mask.shape
    blobs = _large_blobs(stats, width, height)
    if centred:
        middle_x = (stats[blobs, 1] + stats[blobs, 3]) / 2 - width / 2
        middle_y = (stats[blobs, 2] + stats[blobs, 4]) / 2 - height / 2
        blobs = blobs[np.argsort(np.hypot(middle_x, middle_y), kind="stable")]
    for index in blobs[:MAX_CANDIDATES]:
        area, bx0, by0, bx1, by1 = stats[index]
        if inner_only and (bx0 == 0 or by0 == 0 or bx1 == width - 1 or by1 == height - 1):
            continue  # touches the region: background, not a symbol with its quiet zone
        runs = order[starts[index] : starts[index + 1]]
        cx, cy, ux, uy, a, b = min_area_rect(run_row, run_x0, run_x1, runs)
        a, b = a + 0.5, b + 0.5
        fill = area / (4 * a * b)
        if not 0.05 <= fill <= 0.92 or max(a, b) > 20 * min(a, b):
            continue
        yield Candidate(
            centre=(x0 + (cx + 0.5) * factor - 0.5, y0 + (cy + 0.5) * factor - 0.5),
            axis=(float(ux), float(uy)),
            half=(a * factor, b * factor),
            fill=float(fill),
        )


@njit(cache=True, nogil=True)
def otsu_threshold(image):
    """Otsu's threshold of an 8-bit image (from its histogram)."""
    histogram = np.zeros(256, np.int64)
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            histogram[image[y, x]] += 1
    total = image.shape[0] * image.shape[1]
    weighted = 0.0
    for v in range(256):
        weighted += v * histogram[v]
    best, threshold = -1.0, 128
    count = 0
    low = 0.0
    for v in range(255):
        count += histogram[v]
        low += v * histogram[v]
        if count == 0 or count == total:
            continue
        w0 = count / total
        between = w0 * (1 - w0) * (low / count - (weighted - low) / (total - count)) ** 2
        if between > best:
            best, threshold = between, v + 1
    return threshold


def refine(image: np.ndarray, candidate: Candidate) -> list[Candidate]:
    """Blobs around a candidate whose finder was not found, separated with one threshold for
    the neighbourhood instead of local means: a symbol on a label brighter than its
    surroundings merges with them under local means, and a faint symbol with large modules
    breaks up. The threshold is Otsu's over the middle of the candidate (ink and paper); it is
    applied to a region three times its size (the candidate may be a piece of the symbol)."""
    corners = candidate.corners()
    centre = corners.mean(axis=0)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    x0, y0 = np.maximum(np.floor(centre + (lo - centre) * 3.0).astype(int), 0)
    x1, y1 = np.ceil(centre + (hi - centre) * 3.0).astype(int)
    x1, y1 = min(image.shape[1], x1), min(image.shape[0], y1)
    ix0, iy0 = np.maximum(np.floor(centre + (lo - centre) * 0.5).astype(int), 0)
    ix1, iy1 = np.ceil(centre + (hi - centre) * 0.5).astype(int)
    inner = np.ascontiguousarray(image[iy0:iy1, ix0:ix1])
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    if min(crop.shape) < 16 or min(inner.shape) < 4:
        return []
    threshold = otsu_threshold(inner)
    factor = 1
    while max(crop.shape) > 400:  # keep the labelling cheap; modules stay above 2 px for symbols this size
        crop = halve(crop)
        factor *= 2
    mask = (crop < threshold).astype(np.uint8)
    return list(itertools.islice(_rectangles(mask, factor, x0, y0, True), 4))
