"""Codeword placement (ISO/IEC 16022 Annex F, the "utah" algorithm): where each bit of each
codeword sits in the symbol, and which modules are finder, clock or fixed filler."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from .symbology import SymbolSize


@dataclass(frozen=True)
class Layout:
    """Module roles of one symbol size, in symbol coordinates (row 0 = top clock track)."""

    size: SymbolSize
    # bit_rows[k, b], bit_cols[k, b]: the module of bit b (0 = most significant) of codeword k
    bit_rows: np.ndarray
    bit_cols: np.ndarray
    # pattern[r, c]: 1 = must be dark, 0 = must be light, -1 = carries data (finder, clock and
    # the fixed filler modules of sizes whose mapping area has 4 spare modules)
    pattern: np.ndarray

    @property
    def codewords(self) -> int:
        return self.bit_rows.shape[0]


# Bits 1…8 of a codeword around its anchor module (the "utah" shape) …
_UTAH = ((-2, -2), (-2, -1), (-1, -2), (-1, -1), (-1, 0), (0, -2), (0, -1), (0, 0))
# … and the four corner shapes (ISO/IEC 16022 Figures F.3–F.6); negative rows and columns count
# from the bottom and right edges of the mapping matrix.
_CORNERS = (
    ((-1, 0), (-1, 1), (-1, 2), (0, -2), (0, -1), (1, -1), (2, -1), (3, -1)),
    ((-3, 0), (-2, 0), (-1, 0), (0, -4), (0, -3), (0, -2), (0, -1), (1, -1)),
    ((-3, 0), (-2, 0), (-1, 0), (0, -2), (0, -1), (1, -1), (2, -1), (3, -1)),
    ((-1, 0), (-1, -1), (0, -3), (0, -2), (0, -1), (1, -3), (1, -2), (1, -1)),
)


@cache
def layout(size: SymbolSize) -> Layout:
    nrow, ncol = size.mapping_rows, size.mapping_cols
    owner = np.full((nrow, ncol), -1, np.int32)  # codeword index * 8 + bit
    total = size.data_codewords + size.ec_codewords

    def module(row: int, col: int, chr_: int, bit: int) -> None:
        if row < 0:
            row += nrow
            col += 4 - ((nrow + 4) % 8)
        if col < 0:
            col += ncol
            row += 4 - ((ncol + 4) % 8)
        if row >= nrow:  # only DMRE 26x40 and 26x48 wrap this way (ISO/IEC 21471)
            row -= nrow
        owner[row, col] = chr_ * 8 + bit

    def utah(row: int, col: int, chr_: int) -> None:
        for bit, (dr, dc) in enumerate(_UTAH):
            module(row + dr, col + dc, chr_, bit)

    def corner(shape: int, chr_: int) -> None:
        for bit, (r, c) in enumerate(_CORNERS[shape]):
            module(r + nrow if r < 0 else r, c + ncol if c < 0 else c, chr_, bit)

    chr_, row, col = 0, 4, 0
    while True:
        if row == nrow and col == 0:
            corner(0, chr_)
            chr_ += 1
        if row == nrow - 2 and col == 0 and ncol % 4:
            corner(1, chr_)
            chr_ += 1
        if row == nrow - 2 and col == 0 and ncol % 8 == 4:
            corner(2, chr_)
            chr_ += 1
        if row == nrow + 4 and col == 2 and not ncol % 8:
            corner(3, chr_)
            chr_ += 1
        while True:  # sweep up and to the right
            if 0 <= row < nrow and 0 <= col < ncol and owner[row, col] < 0:
                utah(row, col, chr_)
                chr_ += 1
            row -= 2
            col += 2
            if not (row >= 0 and col < ncol):
                break
        row += 1
        col += 3
        while True:  # sweep down and to the left
            if 0 <= row < nrow and 0 <= col < ncol and owner[row, col] < 0:
                utah(row, col, chr_)
                chr_ += 1
            row += 2
            col -= 2
            if not (row < nrow and col >= 0):
                break
        row += 3
        col += 1
        if not (row < nrow or col < ncol):
            break
    if chr_ != total:
        raise AssertionError(f"placement of {size.name} gave {chr_} codewords, expected {total}")

    # Symbol coordinates of every mapping position: each data region is framed by its own
    # clock row above, finder row below, finder column left and clock column right.
    rr, rc = size.region_rows, size.region_cols
    map_rows = np.arange(nrow)
    map_cols = np.arange(ncol)
    sym_row = 1 + (map_rows // rr) * (rr + 2) + map_rows % rr
    sym_col = 1 + (map_cols // rc) * (rc + 2) + map_cols % rc

    bit_rows = np.zeros((total, 8), np.int32)
    bit_cols = np.zeros((total, 8), np.int32)
    pattern = np.full((size.rows, size.cols), -1, np.int8)
    for r in range(nrow):
        for c in range(ncol):
            o = owner[r, c]
            if o >= 0:
                bit_rows[o // 8, o % 8] = sym_row[r]
                bit_cols[o // 8, o % 8] = sym_col[c]
            else:  # the 2x2 filler in the bottom-right corner: dark on its diagonal
                pattern[sym_row[r], sym_col[c]] = 1 if (nrow - 1 - r) == (ncol - 1 - c) else 0

    for v in range(size.regions_v):
        top, bottom = v * (rr + 2), v * (rr + 2) + rr + 1
        pattern[bottom, :] = 1  # finder: solid bottom row of each region
        pattern[top, :] = (np.arange(size.cols) + 1) % 2  # clock: dark, light, … from the left
    for h in range(size.regions_h):
        left, right = h * (rc + 2), h * (rc + 2) + rc + 1
        pattern[:, left] = 1  # finder: solid left column of each region
        # clock: alternating, dark at the bottom of each region
        pattern[:, right] = np.where((size.rows - 1 - np.arange(size.rows)) % 2 == 0, 1, 0)
    return Layout(size, bit_rows, bit_cols, pattern)
