"""libdmtx (through pylibdmtx) behind udigate's reader interface, with the fixes the
measurements in ../shared/reference/decoders.md call for:

* FNC1: libdmtx drops FNC1 unless ``DmtxPropFnc1`` is set; set to GS it reports the leading
  FNC1 as GS too, which becomes the ``]d2`` symbology identifier here;
* one symbol per call and a time limit: ``decode()`` otherwise keeps scanning for seconds;
* a region of interest: libdmtx is about 100 times slower than zxing-cpp on a full frame.

libdmtx cuts data at the first 0x00 byte, has no DMRE and no ECI, and reports only a rectangle.
"""

from __future__ import annotations

from ctypes import POINTER as _POINTER
from ctypes import c_ubyte, cast, string_at

import numpy as np
from pylibdmtx import pylibdmtx as _dmtx
from pylibdmtx.wrapper import DmtxProperty, DmtxUndefined, dmtxDecodeSetProp, dmtxTimeAdd, dmtxTimeNow

from .reader import crop
from .symbol import Roi, Symbol

_GS = 0x1D


class LibdmtxReader:
    name = "libdmtx"

    def __init__(self, timeout_ms: int = 200) -> None:
        self.timeout_ms = timeout_ms

    def warm_up(self) -> None:
        """Nothing to prepare: the library is compiled ahead of time."""

    def read(self, image: np.ndarray, roi: Roi | None = None) -> tuple[Symbol, ...]:
        view, (dx, dy) = crop(image, roi)
        if view.size == 0:
            return ()
        view = np.ascontiguousarray(view, dtype=np.uint8)
        height, width = view.shape
        deadline = dmtxTimeAdd(dmtxTimeNow(), self.timeout_ms)
        with _dmtx._image(cast(view.ctypes.data, _POINTER(c_ubyte)), width, height, _dmtx._PACK_ORDER[8]) as img:
            with _dmtx._decoder(img, 1) as decoder:
                dmtxDecodeSetProp(decoder, DmtxProperty.DmtxPropFnc1, _GS)
                with _dmtx._region(decoder, deadline) as region:
                    if not region:
                        return ()
                    with _dmtx._decoded_matrix_region(decoder, region, DmtxUndefined) as message:
                        if not message:
                            return ()
                        data = string_at(message.contents.output)
                        rows = int(region.contents.symbolRows)
                        cols = int(region.contents.symbolCols)
                        corners = _corners(region, dx, dy, height)
        gs1 = data[:1] == bytes([_GS])
        if gs1:
            data = data[1:]
        return (
            Symbol(
                data=data,
                text=data.decode("latin-1"),
                symbology_identifier="]d2" if gs1 else "]d1",
                corners=corners,
                rows=rows,
                cols=cols,
                decoder=self.name,
            ),
        )


def _corners(region, dx: int, dy: int, height: int):
    """The symbol's corners from libdmtx's fit (its y axis points up)."""
    points = []
    for u, v in ((0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)):
        p = _dmtx.DmtxVector2(u, v)
        _dmtx.dmtxMatrix3VMultiplyBy(p, region.contents.fit2raw)
        points.append((float(p.X) + dx, float(height - 1 - p.Y) + dy))
    return tuple(points)
