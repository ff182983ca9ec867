"""Bad input for the reader: noise, broken symbols, odd shapes. It must return (a symbol or
nothing), never crash, and stay within a per-frame time bound."""

import time

import numpy as np
import pytest

from vision.reader import DataMatrixReader

from .frames import FrameSpec, make_frame

READER = DataMatrixReader()
TIME_BOUND_S = 1.0  # per frame; typical reads take a few ms


def read_bounded(image):
    start = time.perf_counter()
    symbols = READER.read(image)
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_BOUND_S, f"read took {elapsed:.2f} s"
    return symbols


@pytest.mark.parametrize("seed", range(12))
def test_random_frames(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(16, 1000)), int(rng.integers(16, 1300)))
    kind = seed % 4
    if kind == 0:
        image = rng.integers(0, 256, shape, dtype=np.uint8)  # white noise
    elif kind == 1:
        image = (rng.random(shape) < 0.5).astype(np.uint8) * 255  # salt and pepper
    elif kind == 2:  # blocky noise: many module-like squares
        cells = rng.random((shape[0] // 6 + 1, shape[1] // 6 + 1)) < 0.5
        image = np.kron(cells, np.ones((6, 6), bool))[: shape[0], : shape[1]].astype(np.uint8) * 200 + 20
    else:  # a checkerboard, all clock tracks and no finder
        y, x = np.indices(shape)
        image = (((y // 7) + (x // 7)) % 2 * 200 + 25).astype(np.uint8)
    assert all(s.data for s in read_bounded(image))


def test_degenerate_images():
    for image in (
        np.zeros((480, 640), np.uint8),
        np.full((480, 640), 255, np.uint8),
        np.zeros((10, 10), np.uint8),
        np.zeros((1, 2000), np.uint8),
        np.zeros((2000, 3), np.uint8),
    ):
        assert read_bounded(image) == ()


@pytest.mark.parametrize("seed", range(16))
def test_corrupted_symbols_are_read_right_or_not_at_all(seed):
    rng = np.random.default_rng(1000 + seed)
    frame = make_frame(rng, FrameSpec(module_px=float(rng.choice([4, 6, 10])), rotation_deg=float(rng.uniform(0, 360))))
    (truth,) = frame.truths
    image = frame.image.copy()
    lo, hi = truth.corners.min(axis=0).astype(int), truth.corners.max(axis=0).astype(int)
    for _ in range(int(rng.integers(1, 6))):  # blots, scratches and stripes across the symbol
        x, y = int(rng.integers(lo[0], hi[0])), int(rng.integers(lo[1], hi[1]))
        w, h = int(rng.integers(2, 40)), int(rng.integers(2, 40))
        image[y : y + h, x : x + w] = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    for symbol in read_bounded(image):
        assert symbol.data == truth.data  # a misread would be the worst outcome
