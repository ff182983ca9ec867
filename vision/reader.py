"""The reader interface every Data Matrix decoder in udigate implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .symbol import Roi, Symbol


class Reader(Protocol):
    """Finds and decodes the Data Matrix symbols in one grayscale frame.

    Implementations are pure computation (no I/O) and safe to call from several threads at once.
    """

    name: str

    def read(self, image: np.ndarray, roi: Roi | None = None) -> tuple[Symbol, ...]:
        """Decode every symbol in ``image`` (2-D uint8), or in ``roi`` of it.

        Symbol corners are always in full-frame pixel coordinates.
        """
        ...


def crop(image: np.ndarray, roi: Roi | None) -> tuple[np.ndarray, tuple[int, int]]:
    """The view of ``image`` inside ``roi`` (clipped to the frame) and its offset."""
    if roi is None:
        return image, (0, 0)
    height, width = image.shape[:2]
    x0, y0 = min(roi.x, width), min(roi.y, height)
    x1, y1 = min(roi.x + roi.width, width), min(roi.y + roi.height, height)
    return image[y0:y1, x0:x1], (x0, y0)


def open_reader(name: str, try_invert: bool = True) -> Reader:
    """The reader registered under ``name``; ``try_invert`` also finds light-on-dark symbols."""
    if name == "zxing":
        from .zxing_reader import ZXingReader

        return ZXingReader(try_invert=try_invert)
    raise ValueError(f"unknown decoder {name!r}; expected one of: zxing")
