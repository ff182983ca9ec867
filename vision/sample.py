"""Sample: module reflectance through a circular synthetic aperture."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def bilinear(image, x, y):
    """Grey value at (x, y) in pixel-centre coordinates, clamped at the border."""
    h, w = image.shape
    if x < 0.0:
        x = 0.0
    elif x > w - 1.001:
        x = w - 1.001
    if y < 0.0:
        y = 0.0
    elif y > h - 1.001:
        y = h - 1.001
    x0, y0 = int(x), int(y)
    fx, fy = x - x0, y - y0
    top = image[y0, x0] * (1.0 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1.0 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1.0 - fy) + bottom * fy


@njit(cache=True, nogil=True)
def aperture_offsets(radius):
    """Sample points filling a disc of ``radius`` pixels on a lattice of half a pixel, or of
    half the radius for wide discs (enough for a mean; at least the centre)."""
    step = max(0.5, radius / 2)
    n = int(radius / step)
    points = np.zeros(((2 * n + 1) ** 2, 2), np.float64)
    k = 0
    for i in range(-n, n + 1):
        for j in range(-n, n + 1):
            dx, dy = i * step, j * step
            if dx * dx + dy * dy <= radius * radius + 1e-9:
                points[k, 0], points[k, 1] = dx, dy
                k += 1
    return points[:k]


@njit(cache=True, nogil=True)
def sample_modules(image, centres, radius):
    """Mean grey value over a disc of ``radius`` pixels around each module centre.

    ``centres`` is rows × cols × 2 (x, y); returns rows × cols float32.
    """
    offsets = aperture_offsets(radius)
    rows, cols = centres.shape[0], centres.shape[1]
    out = np.empty((rows, cols), np.float32)
    for r in range(rows):
        for c in range(cols):
            x, y = centres[r, c, 0], centres[r, c, 1]
            total = 0.0
            for k in range(offsets.shape[0]):
                total += bilinear(image, x + offsets[k, 0], y + offsets[k, 1])
            out[r, c] = total / offsets.shape[0]
    return out
