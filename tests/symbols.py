"""Symbols from independent encoders, as module matrices and as clean images: zxing-cpp's
writer (zint inside) and Debian's zint command line."""

from __future__ import annotations

import shutil
import subprocess

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
    picture = np.where(np.kron(modules, np.ones((module_px, module_px), bool)), ink, paper).astype(np.uint8)
    return np.pad(picture, quiet * module_px, constant_values=paper)
