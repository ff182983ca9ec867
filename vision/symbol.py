"""Value types passed between the vision stages and out to the gateway."""

from __future__ import annotations

from dataclasses import dataclass

GS = "\x1d"  # FNC1 used as a field separator is transmitted as ASCII GS

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Roi:
    """A rectangular region of interest in frame pixels."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Symbol:
    """One decoded Data Matrix symbol.

    ``data`` holds the message bytes as transmitted after the symbology identifier: the leading
    FNC1 of a GS1 symbol is not data, later FNC1 separators appear as GS (0x1D).
    ``corners`` are the symbol's outer corners in frame pixels, in reading order: the corner
    where the finder's two solid sides meet comes last (top-left, top-right, bottom-right,
    bottom-left of the upright symbol).
    """

    data: bytes
    symbology_identifier: str
    corners: tuple[Point, Point, Point, Point]
    rows: int
    cols: int
    decoder: str

    @property
    def text(self) -> str:
        """The message as text (ISO/IEC 8859-1, the Data Matrix default character set)."""
        return self.data.decode("latin-1")

    @property
    def is_gs1(self) -> bool:
        # zxing-cpp reports GS1 DMRE symbols as ]d8 (see ../shared/reference/decoders.md)
        return self.symbology_identifier in ("]d2", "]d8")

    @property
    def module_px(self) -> float:
        """Mean module pitch in pixels, from the corner quad."""
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = self.corners
        top = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        bottom = ((x2 - x3) ** 2 + (y2 - y3) ** 2) ** 0.5
        left = ((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5
        right = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
        return ((top + bottom) / (2 * self.cols) + (left + right) / (2 * self.rows)) / 2
