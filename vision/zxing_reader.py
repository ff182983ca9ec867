"""zxing-cpp behind udigate's reader interface.

zxing-cpp is fast and reliable (../shared/reference/decoders.md) but exposes no module grid and
formats UEC wrongly below 0.10, so udigate uses it for decoding and corners only.
"""

from __future__ import annotations

import numpy as np
import zxingcpp

from .reader import crop
from .symbol import Roi, Symbol


class ZXingReader:
    name = "zxing"

    def __init__(self, try_invert: bool = True) -> None:
        # try_invert finds light-on-dark codes at about twice the cost; a line that knows its
        # polarity turns it off.
        self._try_invert = try_invert

    def warm_up(self) -> None:
        """Nothing to prepare: the library is compiled ahead of time."""

    def read(self, image: np.ndarray, roi: Roi | None = None) -> tuple[Symbol, ...]:
        view, (dx, dy) = crop(image, roi)
        if view.size == 0:
            return ()
        barcodes = zxingcpp.read_barcodes(
            np.ascontiguousarray(view),
            formats=zxingcpp.BarcodeFormat.DataMatrix,
            try_rotate=True,
            try_invert=self._try_invert,
            text_mode=zxingcpp.TextMode.Plain,
        )
        return tuple(_symbol(b, dx, dy) for b in barcodes if b.valid)


def _symbol(barcode: zxingcpp.Barcode, dx: int, dy: int) -> Symbol:
    p = barcode.position
    corners = tuple(
        (float(c.x + dx), float(c.y + dy)) for c in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
    )
    rows, cols = (int(n) for n in barcode.extra["Version"].split("x"))
    return Symbol(
        data=bytes(barcode.bytes),
        text=barcode.text,
        symbology_identifier=barcode.symbology_identifier,
        corners=corners,
        rows=rows,
        cols=cols,
        decoder="zxing",
    )
