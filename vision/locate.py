"""Locate: regions of a frame that may hold a Data Matrix symbol.

The finder "L" is a solid bar of dark modules along two sides; with the dark data modules
touching it, it forms one large connected blob. On a reduced copy of the frame, a local-mean
threshold separates dark from light, connected components are labelled and each large,
moderately filled blob is reported with its minimum-area rectangle — any rotation, several per
frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

MAX_CANDIDATES = 24


@dataclass(frozen=True, slots=True)
class Candidate:
    """The minimum-area rectangle of a blob, in frame pixels."""

    centre: tuple[float, float]
    axis: tuple[float, float]  # unit vector along the first side; the second side is perpendicular
    half: tuple[float, float]  # half lengths along the axis and across it
    fill: float  # share of the rectangle covered by the blob

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


@njit(cache=True, nogil=True)
def binarize(image, radius, offset):
    """1 where a pixel is darker than the mean of its (2r+1)² window by more than ``offset``
    grey levels (the window is clipped at the frame border)."""
    h, w = image.shape
    columns = np.zeros(w, np.int32)  # running column sums over the rows of the window
    out = np.zeros((h, w), np.uint8)
    for y in range(min(radius, h)):
        for x in range(w):
            columns[x] += image[y, x]
    rows_in = min(radius, h)
    for y in range(h):
        add, drop = y + radius, y - radius - 1
        if add < h:
            for x in range(w):
                columns[x] += image[add, x]
            rows_in += 1
        if drop >= 0:
            for x in range(w):
                columns[x] -= image[drop, x]
            rows_in -= 1
        total = np.int32(0)
        n = 0
        for x in range(min(radius, w)):
            total += columns[x]
            n += 1
        for x in range(w):
            if x + radius < w:
                total += columns[x + radius]
                n += 1
            if x - radius - 1 >= 0:
                total -= columns[x - radius - 1]
                n -= 1
            count = n * rows_in
            if np.int32(image[y, x]) * count < total - offset * count:
                out[y, x] = 1
    return out


@njit(cache=True, nogil=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


@njit(cache=True, nogil=True)
def label(mask):
    """8-connected components of a 0/1 mask. Returns the label image (0 = background) and per
    label (1-based row index) its area and bounding box: [area, x0, y0, x1, y1]."""
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    parent = np.zeros(h * w // 2 + 2, np.int32)
    count = 0
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            current = 0
            for dy, dx in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
                ny, nx = y + dy, x + dx
                if ny < 0 or nx < 0 or nx >= w:
                    continue
                other = labels[ny, nx]
                if other == 0:
                    continue
                if current == 0:
                    current = other
                else:
                    a, b = _find(parent, current), _find(parent, other)
                    if a != b:
                        if a < b:
                            parent[b] = a
                        else:
                            parent[a] = b
            if current == 0:
                count += 1
                parent[count] = count
                current = count
            labels[y, x] = current
    remap = np.zeros(count + 1, np.int32)
    final = 0
    for i in range(1, count + 1):
        root = _find(parent, i)
        if remap[root] == 0:
            final += 1
            remap[root] = final
        remap[i] = remap[root]
    stats = np.zeros((final + 1, 5), np.int32)
    for i in range(1, final + 1):
        stats[i, 1] = w
        stats[i, 2] = h
    for y in range(h):
        for x in range(w):
            v = labels[y, x]
            if v:
                v = remap[v]
                labels[y, x] = v
                stats[v, 0] += 1
                stats[v, 1] = min(stats[v, 1], x)
                stats[v, 2] = min(stats[v, 2], y)
                stats[v, 3] = max(stats[v, 3], x)
                stats[v, 4] = max(stats[v, 4], y)
    return labels, stats


@njit(cache=True, nogil=True)
def _cross(ox, oy, ax, ay, bx, by):
    return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox)


@njit(cache=True, nogil=True)
def min_area_rect(labels, index, x0, y0, x1, y1):
    """Minimum-area rectangle around component ``index``: centre x, y, axis ux, uy, half
    lengths a, b (pixel centres; callers add half a pixel of border)."""
    n = y1 - y0 + 1
    pts = np.empty((2 * n, 2), np.float64)
    m = 0
    for y in range(y0, y1 + 1):
        first = -1
        last = -1
        for x in range(x0, x1 + 1):
            if labels[y, x] == index:
                if first < 0:
                    first = x
                last = x
        if first >= 0:
            pts[m, 0], pts[m, 1] = first, y
            m += 1
            if last != first:
                pts[m, 0], pts[m, 1] = last, y
                m += 1
    pts = pts[:m]
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
    """Labels of blobs large enough to hold a symbol (at least 8 × 16 pixels: two pixels per
    module of the smallest symbol side) and smaller than the frame, largest first."""
    keep = np.zeros(stats.shape[0], np.int64)
    areas = np.zeros(stats.shape[0], np.int64)
    n = 0
    for i in range(1, stats.shape[0]):
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


def locate(image: np.ndarray, factor: int = 2) -> list[Candidate]:
    """Candidate symbol rectangles in ``image`` (2-D uint8, dark modules on light), largest
    blobs first. Light-on-dark symbols are found in the inverted image.

    The search runs on the frame reduced ``factor`` times (the smallest module must stay at
    least two pixels wide: factor 2 finds modules from 4 px up) and again reduced twice as much,
    where large modules form solid blobs that the first window size breaks up.
    """
    small = np.ascontiguousarray(image)
    for _ in range(factor.bit_length() - 1):
        small = halve(small)
    candidates = _blob_rectangles(small, factor)
    if min(small.shape) >= 128:
        coarse = _blob_rectangles(halve(small), 2 * factor)
        candidates += [c for c in coarse if not any(_same(c, other) for other in candidates)]
    return candidates[:MAX_CANDIDATES]


def _same(a: Candidate, b: Candidate) -> bool:
    """Two rectangles around the same blob (centres close, sizes alike)."""
    size_a, size_b = max(a.half), max(b.half)
    distance = np.hypot(a.centre[0] - b.centre[0], a.centre[1] - b.centre[1])
    return distance < 0.25 * min(size_a, size_b) and 0.75 < size_a / size_b < 1.33


def _blob_rectangles(small: np.ndarray, factor: int) -> list[Candidate]:
    mask = binarize(small, 6, 6)
    labels, stats = label(mask)
    found = _large_blobs(stats, small.shape[1], small.shape[0])
    candidates = []
    for index in found[:MAX_CANDIDATES]:
        area, x0, y0, x1, y1 = stats[index]
        cx, cy, ux, uy, a, b = min_area_rect(labels, index, x0, y0, x1, y1)
        a, b = a + 0.5, b + 0.5
        fill = area / (4 * a * b)
        long, short = max(a, b), min(a, b)
        if not 0.2 <= fill <= 0.92 or long > 20 * short:
            continue
        candidates.append(
            Candidate(
                centre=((cx + 0.5) * factor - 0.5, (cy + 0.5) * factor - 0.5),
                axis=(float(ux), float(uy)),
                half=(a * factor, b * factor),
                fill=float(fill),
            )
        )
    return candidates


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
    labels, stats = label(mask)
    found = []
    for index in _large_blobs(stats, crop.shape[1], crop.shape[0]):
        area, bx0, by0, bx1, by1 = stats[index]
        if bx0 == 0 or by0 == 0 or bx1 == crop.shape[1] - 1 or by1 == crop.shape[0] - 1:
            continue  # touches the crop: background, not a symbol with its quiet zone
        cx, cy, ux, uy, a, b = min_area_rect(labels, index, bx0, by0, bx1, by1)
        a, b = a + 0.5, b + 0.5
        fill = area / (4 * a * b)
        if 0.2 <= fill <= 0.92 and max(a, b) <= 20 * min(a, b):
            found.append(
                Candidate(
                    centre=(x0 + (cx + 0.5) * factor - 0.5, y0 + (cy + 0.5) * factor - 0.5),
                    axis=(float(ux), float(uy)),
                    half=(a * factor, b * factor),
                    fill=float(fill),
                )
            )
    return found[:4]
