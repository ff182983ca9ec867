"""Symbols from independent encoders, as module matrices and as clean images: zxing-cpp's
writer (zint inside) and Debian's zint command line."""

from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import zxingcpp

from vision.symbology import SIZES, SymbolSize


def zxing_modules(content: str | bytes, **options) -> np.ndarray:
    """Module matrix (True = dark) written by zxing-cpp."""
    barcode = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.DataMatrix, **options)
    return np.asarray(barcode.to_image(scale=1, add_quiet_zones=False)) < 128


def zint_modules(*args: str) -> tuple[np.ndarray, SymbolSize]:
    """Module matrix written by the zint command line (``zint -b 71 --dump ARGS``)."""
    assert shutil.which("zint"), "zint is missing: run the tests through ./dev test"
    out = subprocess.run(["zint", "-b", "71", "--dump", *args], capture_output=True, text=True, check=True).stdout
    rows = [line.replace(" ", "") for line in out.splitlines() if line.strip()]
    bits = len(rows[0]) * 4  # zint dumps each row as hex digits, padded to 4 bits
    size = next(s for s in SIZES if s.rows == len(rows) and -(-s.cols // 4) * 4 == bits)
    modules = np.array([[int(h, 16) >> (3 - b) & 1 for h in row for b in range(4)][: size.cols] for row in rows], bool)
    return modules, size


def image_of(modules: np.ndarray, module_px: int = 6, quiet: int = 3, ink: int = 25, paper: int = 225) -> np.ndarray:
    """A clean grayscale picture of a module matrix with its quiet zone."""
    return camera(render(modules, module_px, ink, paper, quiet))


def render(
    modules: np.ndarray,
    module_px: int = 10,
    ink: float = 30,
    paper: float = 220,
    quiet: int = 3,
    levels: np.ndarray | None = None,
    growth_px: int = 0,
) -> np.ndarray:
    """A clean float picture of a module matrix: ``levels`` (rows × cols, NaN = default) sets
    the grey level of single modules; ``growth_px`` widens every dark area by that many pixels
    on each side (print growth)."""
    dark = np.kron(modules, np.ones((module_px, module_px), bool))
    if growth_px:
        kernel = np.ones((2 * growth_px + 1, 2 * growth_px + 1), np.uint8)
        dark = cv2.dilate(dark.astype(np.uint8), kernel).astype(bool)
    picture = np.where(dark, ink, paper).astype(np.float32)
    if levels is not None:
        override = np.kron(levels, np.ones((module_px, module_px)))
        picture = np.where(np.isnan(override), picture, override).astype(np.float32)
    return np.pad(picture, quiet * module_px, constant_values=paper)


def camera(picture: np.ndarray, rng: np.random.Generator | None = None, noise: float = 0.0, blur: float = 0.0):
    """``picture`` as an 8-bit camera frame: optional Gaussian blur and sensor noise."""
    if blur:
        picture = cv2.GaussianBlur(picture, (0, 0), blur)
    if noise and rng is not None:
        picture = picture + rng.normal(0, noise, picture.shape).astype(np.float32)
    return np.clip(np.round(picture), 0, 255).astype(np.uint8)
