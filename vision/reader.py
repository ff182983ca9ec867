"""The reader interface, and udigate's own Data Matrix reader composing the stages:

locate (blobs) → grid (finder L, clock tracks, module centres) → sample (aperture)
→ decoder (codewords, Reed–Solomon, encodation) → Symbol
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Protocol

import numpy as np

from .decoder import DecodeError, decode_modules, modules_from_codewords
from .grid import Grid, find, grids, refine_centres
from .locate import locate, refine
from .placement import layout
from .sample import sample_modules
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

    def warm_up(self) -> None:
        """Get ready for the first frame (load compiled code, self-test)."""
        ...


def crop(image: np.ndarray, roi: Roi | None) -> tuple[np.ndarray, tuple[int, int]]:
    """The view of ``image`` inside ``roi`` (clipped to the frame) and its offset."""
    if roi is None:
        return image, (0, 0)
    height, width = image.shape[:2]
    x0, y0 = min(roi.x, width), min(roi.y, height)
    x1, y1 = min(roi.x + roi.width, width), min(roi.y + roi.height, height)
    return image[y0:y1, x0:x1], (x0, y0)


MAX_REFINEMENTS = 6  # candidates per frame searched again with a neighbourhood threshold

# A 10x10 symbol holding "UDI", drawn at start-up so that every numba kernel is loaded (or
# compiled, the first time) before the first frame arrives.
_WARM_UP_SYMBOL = (
    "#.#.#.#.#.",
    "#.#.#.#..#",
    "#.......#.",
    "##.#.#..##",
    "#..##.#.#.",
    "#.#..#.###",
    "##.####.#.",
    "##..##.###",
    "###..####.",
    "##########",
)


def warm_up_frame() -> np.ndarray:
    """A 640 × 640 frame with the built-in symbol at 8 px per module."""
    modules = np.array([[c == "#" for c in row] for row in _WARM_UP_SYMBOL])
    symbol = np.where(np.kron(modules, np.ones((8, 8), bool)), 30, 220).astype(np.uint8)
    image = np.pad(symbol, 32, constant_values=220)
    frame = np.full((640, 640), 200, np.uint8)
    frame[40 : 40 + image.shape[0], 60 : 60 + image.shape[1]] = image
    return frame


class DataMatrixReader:
    """udigate's own reader: every stage in ``vision``, numba kernels for the pixel work.

    ``polarity``: "dark" (dark modules on light), "light" (light on dark) or "auto" (dark
    first, light when nothing dark was found). ``aperture``: the sampling aperture for
    decoding, in module widths. ``size_hint``: the symbol size (rows, cols) when the line knows
    it — skips counting the clock tracks and rejects symbols of other sizes. ``max_symbols``:
    stop after this many symbols (an inline station expects one per item); None = all.
    """

    name = "udigate"

    def __init__(
        self,
        polarity: str = "auto",
        aperture: float = 0.5,
        size_hint: tuple[int, int] | None = None,
        max_symbols: int | None = None,
    ) -> None:
        if polarity not in ("auto", "dark", "light"):
            raise ValueError(f"polarity {polarity!r}: expected auto, dark or light")
        self.polarity = polarity
        self.aperture = aperture
        self.size_hint = size_hint
        self.max_symbols = max_symbols

    def warm_up(self) -> None:
        """Run every stage once on a built-in symbol: numba kernels are loaded from the cache (or
        compiled on the very first run) now instead of on the first frame."""
        frame = warm_up_frame()
        if not self.read(frame) or not self.read(frame[:200, :220]):
            raise RuntimeError("the Data Matrix reader failed its start-up self-test")

    def read(self, image: np.ndarray, roi: Roi | None = None) -> tuple[Symbol, ...]:
        view, (dx, dy) = crop(image, roi)
        if view.ndim != 2 or min(view.shape) < 16:
            return ()
        view = np.ascontiguousarray(view, dtype=np.uint8)
        # Search a half-size copy unless the region is small enough that it may hold only
        # small symbols, whose modules might then fall below two pixels.
        factor = 2 if min(view.shape) >= 240 else 1
        found: list[Symbol] = []
        for inverted in {"auto": (False, True), "dark": (False,), "light": (True,)}[self.polarity]:
            work = 255 - view if inverted else view
            found += self._read_polarity(work, factor, dx, dy, found, roi is not None, inverted)
            if found:
                break
        return tuple(found)

    def _read_polarity(
        self, work: np.ndarray, factor: int, dx: int, dy: int, known: list[Symbol], centred: bool, inverted: bool
    ) -> list[Symbol]:
        candidates = locate(work, factor, centred)
        symbols: list[Symbol] = []
        failed = []
        for candidate in candidates:
            if self._enough(known, symbols):
                return symbols
            if candidate.hollow or not self._try(work, candidate, dx, dy, known, symbols, inverted):
                failed.append(candidate)
        # Second chance for the largest failures: separated again with a neighbourhood threshold
        # (one when this frame already gave a symbol: most failures are then clutter).
        budget = MAX_REFINEMENTS if not (known or symbols) else 1
        for candidate in failed:
            if budget == 0:
                break
            if self._covered(candidate, dx, dy, known, symbols):
                continue
            budget -= 1
            for refined in refine(work, candidate):
                if self._enough(known, symbols):
                    return symbols
                self._try(work, refined, dx, dy, known, symbols, inverted)
        return symbols

    def _enough(self, known: list[Symbol], symbols: list[Symbol]) -> bool:
        return self.max_symbols is not None and len(known) + len(symbols) >= self.max_symbols

    def _covered(self, candidate, dx, dy, known, symbols) -> bool:
        centre = np.array(candidate.centre) + (dx, dy)
        return any(_inside(centre, s.corners) for s in (*known, *symbols))

    def _try(self, work, candidate, dx, dy, known, symbols, inverted) -> bool:
        """Decode the symbol of one candidate into ``symbols``; True when it holds one."""
        if self._covered(candidate, dx, dy, known, symbols):
            return True
        tried = None
        for bridge in (False, True):  # a damaged finder side: bridge its gaps on the second try
            t0 = time.perf_counter()
            finder = find(work, candidate.centre, candidate.axis, candidate.half, bridge)
            if finder is None or (
                tried is not None and np.allclose(finder.end_a, tried.end_a) and np.allclose(finder.end_b, tried.end_b)
            ):
                continue
            tried = finder
            t1 = time.perf_counter()
            for grid in grids(work, finder, self.size_hint):
                symbol = self.decode_grid(work, grid, dx, dy, inverted)
                if symbol is not None:
                    t2 = time.perf_counter()
                    symbol.timings_ms.update(finder=(t1 - t0) * 1000, decode=(t2 - t1) * 1000)
                    symbols.append(symbol)
                    return True
        return False

    def decode_grid(
        self, work: np.ndarray, grid: Grid, dx: int = 0, dy: int = 0, inverted: bool = False
    ) -> Symbol | None:
        """Sample, threshold and decode one grid (dark modules = low values in ``work``, which is
        the frame ``inverted`` for light-on-dark symbols; ``dx``, ``dy``: offset of ``work`` in
        the frame). A failed decode is retried with the module
        centres refined locally (warped prints), then with uncertain modules as erasures."""
        size = grid.size
        pattern = layout(size).pattern
        radius = 0.5 * self.aperture * grid.module_px
        centres = grid.centres
        decoded = None
        for attempt in range(3):
            values = sample_modules(work, centres, radius)
            dark_level = float(values[pattern == 1].mean())
            light_level = float(values[pattern == 0].mean())
            if light_level - dark_level < 8:
                return None
            threshold = 0.5 * (dark_level + light_level)
            modules = values < threshold
            erasable = np.abs(values - threshold) < 0.2 * (light_level - dark_level) if attempt == 2 else None
            try:
                decoded = decode_modules(modules, size, erasable)
                break
            except DecodeError:
                if attempt == 0:
                    centres = refine_centres(work, centres, modules, threshold)
        if decoded is None:
            return None
        # The fitted grid: centres refined against the modules the symbol really has.
        ideal = modules_from_codewords(decoded.corrected, size)
        grid = replace(
            grid, centres=refine_centres(work, grid.centres, ideal, threshold), modules=ideal, inverted=inverted
        )
        message = decoded.message
        if dx or dy:  # report the grid in frame coordinates
            shift = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
            grid = replace(grid, homography=shift @ grid.homography, centres=grid.centres + (dx, dy))
        corners = grid.corners
        return Symbol(
            data=message.data,
            text=message.text,
            symbology_identifier=message.symbology_identifier,
            corners=tuple((float(x), float(y)) for x, y in corners),
            rows=size.rows,
            cols=size.cols,
            decoder=self.name,
            grid=grid,
            blocks=decoded.blocks,
        )


def _inside(point: np.ndarray, quad) -> bool:
    q = np.asarray(quad)
    sign = 0.0
    for i in range(4):
        a, b = q[i], q[(i + 1) % 4]
        cross = (b[0] - a[0]) * (point[1] - a[1]) - (b[1] - a[1]) * (point[0] - a[0])
        if cross != 0:
            if sign and np.sign(cross) != sign:
                return False
            sign = np.sign(cross)
    return True


def open_reader(
    name: str = "udigate",
    polarity: str = "auto",
    second_opinion: str = "off",
    size_hint: tuple[int, int] | None = None,
    max_symbols: int | None = None,
) -> Reader:
    """The reader registered under ``name``: "udigate" (own, optionally with a second opinion
    from zxing-cpp, see vision.consensus), "zxing" or "libdmtx". ``polarity``: "auto", "dark"
    (dark modules on light) or "light"; ``size_hint`` and ``max_symbols``: see
    :class:`DataMatrixReader`."""
    if name == "udigate":
        own = DataMatrixReader(polarity, size_hint=size_hint, max_symbols=max_symbols)
        if second_opinion == "off":
            return own
        from .consensus import SecondOpinionReader
        from .zxing_reader import ZXingReader

        return SecondOpinionReader(own, ZXingReader(try_invert=polarity != "dark"), second_opinion)
    if name == "zxing":
        from .zxing_reader import ZXingReader

        return ZXingReader(try_invert=polarity != "dark")
    if name == "libdmtx":
        from .libdmtx_reader import LibdmtxReader

        return LibdmtxReader()
    raise ValueError(f"unknown decoder {name!r}; expected one of: udigate, zxing, libdmtx")
