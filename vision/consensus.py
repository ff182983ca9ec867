"""Second opinions: udigate's reader checked by (or seeded from) an independent decoder.

* ``consensus``: every symbol the own reader decodes is read again by the second decoder in a
  region around it; unless both give the same bytes, the symbol carries a ``disagreement``
  (the pipeline rejects it as ``decoder_disagreement``). Two independent decoders agreeing on a
  wrong message is practically impossible; one of them misreading is not.
* ``fallback``: when the own locator finds nothing, the second decoder's corners seed the own
  grid (the own decoder still reads the modules, so the result has a grid and RS statistics).
* ``off``: the own reader alone.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .grid import Finder, grids
from .reader import DataMatrixReader, Reader
from .symbol import Roi, Symbol

MODES = ("consensus", "fallback", "off")


class SecondOpinionReader:
    def __init__(self, primary: DataMatrixReader, second: Reader, mode: str = "consensus") -> None:
        if mode not in MODES:
            raise ValueError(f"second opinion {mode!r}: expected one of {', '.join(MODES)}")
        self.primary = primary
        self.second = second
        self.mode = mode
        self.name = primary.name

    def warm_up(self) -> None:
        self.primary.warm_up()

    def read(self, image: np.ndarray, roi: Roi | None = None) -> tuple[Symbol, ...]:
        symbols = self.primary.read(image, roi)
        if self.mode == "consensus":
            return tuple(self._check(image, s) for s in symbols)
        if self.mode == "fallback" and not symbols:
            return tuple(s for s in (self._seeded(image, other) for other in self.second.read(image, roi)) if s)
        return symbols

    def _check(self, image: np.ndarray, symbol: Symbol) -> Symbol:
        others = self.second.read(image, around(symbol.corners, image.shape))
        if any(other.data == symbol.data for other in others):
            return symbol
        if not others:
            verdict = f"{self.second.name} found no symbol there"
        else:
            verdict = f"{self.second.name} read {others[0].data!r}"
        return replace(symbol, disagreement=f"{self.primary.name} read {symbol.data!r}, {verdict}")

    def _seeded(self, image: np.ndarray, other: Symbol) -> Symbol | None:
        """Decode with the own grid placed on the second decoder's corners."""
        tl, tr, br, bl = (np.array(p, np.float64) for p in other.corners)
        work = np.ascontiguousarray(image, dtype=np.uint8)
        module = float(np.linalg.norm(br - bl)) / other.cols
        for inverted in (False, True):  # polarity unknown: dark modules first
            view = 255 - work if inverted else work
            region = view[_bounds(other.corners, image.shape)]
            dark, light = float(np.percentile(region, 5)), float(np.percentile(region, 95))
            finder = Finder(bl, br, tl, tr, module, dark, light)
            for grid in grids(view, finder, (other.rows, other.cols)):
                symbol = self.primary.decode_grid(view, grid, inverted=inverted)
                if symbol is not None:
                    return replace(symbol, decoder=f"{self.primary.name}+{self.second.name} corners")
        return None


def around(corners, shape: tuple[int, ...], margin: float = 0.5) -> Roi:
    """A region holding the quad ``corners`` and ``margin`` of its size on every side."""
    pts = np.asarray(corners, np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = (hi - lo) * margin
    x0, y0 = np.maximum(np.floor(lo - pad), 0).astype(int)
    x1 = int(min(shape[1], np.ceil(hi[0] + pad[0])))
    y1 = int(min(shape[0], np.ceil(hi[1] + pad[1])))
    return Roi(int(x0), int(y0), max(1, x1 - x0), max(1, y1 - y0))


def _bounds(corners, shape) -> tuple[slice, slice]:
    roi = around(corners, shape, 0.05)
    return slice(roi.y, roi.y + roi.height), slice(roi.x, roi.x + roi.width)
