"""ECC200 symbol sizes (ISO/IEC 16022:2006 Table 7) and DMRE sizes (ISO/IEC 21471:2020 Table 7).

The table is data: symbol rows × cols, data region rows × cols, error correction codewords per
block, and the Reed–Solomon blocks as (count, data codewords per block).
"""

from __future__ import annotations

from dataclasses import dataclass

# rows, cols, region rows, region cols, EC codewords per block, ((blocks, data codewords per block), ...)
_TABLE = (
    (10, 10, 8, 8, 5, ((1, 3),)),
    (12, 12, 10, 10, 7, ((1, 5),)),
    (14, 14, 12, 12, 10, ((1, 8),)),
    (16, 16, 14, 14, 12, ((1, 12),)),
    (18, 18, 16, 16, 14, ((1, 18),)),
    (20, 20, 18, 18, 18, ((1, 22),)),
    (22, 22, 20, 20, 20, ((1, 30),)),
    (24, 24, 22, 22, 24, ((1, 36),)),
    (26, 26, 24, 24, 28, ((1, 44),)),
    (32, 32, 14, 14, 36, ((1, 62),)),
    (36, 36, 16, 16, 42, ((1, 86),)),
    (40, 40, 18, 18, 48, ((1, 114),)),
    (44, 44, 20, 20, 56, ((1, 144),)),
    (48, 48, 22, 22, 68, ((1, 174),)),
    (52, 52, 24, 24, 42, ((2, 102),)),
    (64, 64, 14, 14, 56, ((2, 140),)),
    (72, 72, 16, 16, 36, ((4, 92),)),
    (80, 80, 18, 18, 48, ((4, 114),)),
    (88, 88, 20, 20, 56, ((4, 144),)),
    (96, 96, 22, 22, 68, ((4, 174),)),
    (104, 104, 24, 24, 56, ((6, 136),)),
    (120, 120, 18, 18, 68, ((6, 175),)),
    (132, 132, 20, 20, 62, ((8, 163),)),
    (144, 144, 22, 22, 62, ((8, 156), (2, 155))),
    (8, 18, 6, 16, 7, ((1, 5),)),
    (8, 32, 6, 14, 11, ((1, 10),)),
    (12, 26, 10, 24, 14, ((1, 16),)),
    (12, 36, 10, 16, 18, ((1, 22),)),
    (16, 36, 14, 16, 24, ((1, 32),)),
    (16, 48, 14, 22, 28, ((1, 49),)),
    # DMRE (ISO/IEC 21471)
    (8, 48, 6, 22, 15, ((1, 18),)),
    (8, 64, 6, 14, 18, ((1, 24),)),
    (8, 80, 6, 18, 22, ((1, 32),)),
    (8, 96, 6, 22, 28, ((1, 38),)),
    (8, 120, 6, 18, 32, ((1, 49),)),
    (8, 144, 6, 22, 36, ((1, 63),)),
    (12, 64, 10, 14, 27, ((1, 43),)),
    (12, 88, 10, 20, 36, ((1, 64),)),
    (16, 64, 14, 14, 36, ((1, 62),)),
    (20, 36, 18, 16, 28, ((1, 44),)),
    (20, 44, 18, 20, 34, ((1, 56),)),
    (20, 64, 18, 14, 42, ((1, 84),)),
    (22, 48, 20, 22, 38, ((1, 72),)),
    (24, 48, 22, 22, 41, ((1, 80),)),
    (24, 64, 22, 14, 46, ((1, 108),)),
    (26, 40, 24, 18, 38, ((1, 70),)),
    (26, 48, 24, 22, 42, ((1, 90),)),
    (26, 64, 24, 14, 50, ((1, 118),)),
)
_DMRE_FROM = 30  # table index of the first DMRE size


@dataclass(frozen=True, slots=True)
class SymbolSize:
    rows: int
    cols: int
    region_rows: int  # data region size, without its finder and clock patterns
    region_cols: int
    ec_per_block: int
    blocks: tuple[tuple[int, int], ...]  # (number of blocks, data codewords in each)
    dmre: bool

    @property
    def regions_v(self) -> int:
        return self.rows // (self.region_rows + 2)

    @property
    def regions_h(self) -> int:
        return self.cols // (self.region_cols + 2)

    @property
    def mapping_rows(self) -> int:
        """Rows of the mapping matrix: the symbol without finder and clock patterns."""
        return self.regions_v * self.region_rows

    @property
    def mapping_cols(self) -> int:
        return self.regions_h * self.region_cols

    @property
    def block_count(self) -> int:
        return sum(count for count, _ in self.blocks)

    @property
    def data_codewords(self) -> int:
        return sum(count * data for count, data in self.blocks)

    @property
    def ec_codewords(self) -> int:
        return self.block_count * self.ec_per_block

    @property
    def reserved_codewords(self) -> int:
        """``p``: codewords of each block kept for misdecode protection, so that at most
        ``(ec_per_block - p) / 2`` errors are corrected. One for an odd number of EC codewords
        (the one that error correction cannot use anyway); the ISO table value is unconfirmed."""
        return self.ec_per_block % 2

    @property
    def name(self) -> str:
        return f"{self.rows}x{self.cols}"


SIZES: tuple[SymbolSize, ...] = tuple(
    SymbolSize(r, c, rr, rc, ec, blocks, i >= _DMRE_FROM) for i, (r, c, rr, rc, ec, blocks) in enumerate(_TABLE)
)
_BY_DIMENSIONS = {(s.rows, s.cols): s for s in SIZES}


def size_for(rows: int, cols: int) -> SymbolSize | None:
    """The ECC200/DMRE size with these dimensions in modules, if there is one."""
    return _BY_DIMENSIONS.get((rows, cols))
