"""Value types passed between the vision stages and out to the gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .decoder import BlockStats
    from .grid import Grid

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
    FNC1 of a GS1 symbol is not data, later FNC1 separators appear as GS (0x1D). ``text`` is the
    message as text (ISO/IEC 8859-1 unless an ECI says otherwise).
    ``corners`` are the symbol's outer corners in frame pixels, in reading order: top-left,
    top-right, bottom-right, bottom-left of the upright symbol (the finder's corner is last).
    Only udigate's own reader fills in the grid, the Reed–Solomon blocks and stage timings.
    """

    data: bytes
    text: str
    symbology_identifier: str
    corners: tuple[Point, Point, Point, Point]
    rows: int
    cols: int
    decoder: str
    grid: Grid | None = field(default=None, compare=False)
    blocks: tuple[BlockStats, ...] = field(default=(), compare=False)
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)
    # set when a second decoder, asked to confirm this symbol, read something else or nothing
    disagreement: str | None = None

    @property
    def is_gs1(self) -> bool:
        # DMRE GS1 symbols are reported as ]d8 (zxing-cpp's convention, followed here)
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
