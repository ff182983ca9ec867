"""Module matrix → codewords → Reed–Solomon blocks → message: the bit-level half of the reader."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .encodation import EncodationError, Message, decode_message
from .placement import Layout, layout
from .reed_solomon import FAILED, correct
from .symbology import SymbolSize


@dataclass(frozen=True, slots=True)
class BlockStats:
    """Reed–Solomon result of one block."""

    data_codewords: int
    ec_codewords: int
    reserved: int  # p: codewords kept for misdecode protection
    errors: int
    erasures: int
    # codeword indices (in symbol order) that were corrected or erased, for grading overlays
    corrected: tuple[int, ...]

    @property
    def unused_error_correction(self) -> float:
        """UEC = 1 − (e + 2t) / (d − p)  (ISO/IEC 15415)."""
        return 1.0 - (self.erasures + 2 * self.errors) / (self.ec_codewords - self.reserved)


@dataclass(frozen=True, slots=True)
class Decoded:
    message: Message
    blocks: tuple[BlockStats, ...]
    codewords: np.ndarray  # all codewords as read (before correction), symbol order
    corrected: np.ndarray  # the same after Reed–Solomon correction


class DecodeError(ValueError):
    """The module matrix does not hold a readable symbol; the message says at which step."""


def read_codewords(modules: np.ndarray, symbol_layout: Layout) -> np.ndarray:
    """Codeword values from a boolean module matrix (True = dark) of the layout's size."""
    bits = modules[symbol_layout.bit_rows, symbol_layout.bit_cols].astype(np.int32)
    weights = np.array([128, 64, 32, 16, 8, 4, 2, 1], np.int32)
    return bits @ weights


def modules_from_codewords(codewords: np.ndarray, size: SymbolSize) -> np.ndarray:
    """The module matrix (True = dark) a perfect print of these codewords has, with its finder,
    clock and filler patterns."""
    symbol_layout = layout(size)
    modules = symbol_layout.pattern == 1
    bits = (np.asarray(codewords, np.int32)[:, None] >> np.arange(7, -1, -1)) & 1
    modules[symbol_layout.bit_rows, symbol_layout.bit_cols] = bits.astype(bool)
    return modules


def block_indices(size: SymbolSize, alternative_144: bool = False) -> list[tuple[np.ndarray, int]]:
    """For each Reed–Solomon block, the symbol-order indices of its codewords (data then EC)
    and its number of data codewords. Codewords are interleaved: codeword i belongs to block
    i mod B. ``alternative_144`` is the EC interleaving some encoders use for 144x144
    (zxing-cpp issue 259)."""
    count = size.block_count
    data_total = size.data_codewords
    data_per_block = [data for n, data in size.blocks for _ in range(n)]
    blocks = []
    for b in range(count):
        data_positions = [b + count * i for i in range(data_per_block[b])]
        ec_block = (b + count - 8) % count if alternative_144 and size.rows == 144 else b
        ec_positions = [data_total + ec_block + count * i for i in range(size.ec_per_block)]
        blocks.append((np.array(data_positions + ec_positions, np.int32), data_per_block[b]))
    return blocks


def decode_modules(modules: np.ndarray, size: SymbolSize, erasable: np.ndarray | None = None) -> Decoded:
    """Decode a module matrix (rows × cols, True = dark) of a known size.

    ``erasable`` (optional, same shape, True = unreliable module) marks codewords to treat as
    erasures; at most ``d − p − 2`` per block are used so that two syndromes always remain to
    detect a miscorrection.
    """
    symbol_layout = layout(size)
    raw = read_codewords(modules, symbol_layout)
    suspect = None
    if erasable is not None:
        suspect = erasable[symbol_layout.bit_rows, symbol_layout.bit_cols].any(axis=1)
    last_error = "Reed–Solomon: too many errors"
    for alternative in (False, True) if size.rows == 144 else (False,):
        try:
            return _correct_and_decode(raw, size, suspect, alternative)
        except DecodeError as exc:
            last_error = str(exc)
    raise DecodeError(last_error)


def _correct_and_decode(raw: np.ndarray, size: SymbolSize, suspect: np.ndarray | None, alternative: bool) -> Decoded:
    corrected = raw.copy()
    stats = []
    reserved = size.reserved_codewords
    for positions, data_count in block_indices(size, alternative):
        block = raw[positions].copy()
        erasures = np.zeros(0, np.int32)
        if suspect is not None:
            marked = np.flatnonzero(suspect[positions]).astype(np.int32)
            limit = max(0, size.ec_per_block - reserved - 2)
            erasures = marked[:limit]
        errors, erased = correct(block, size.ec_per_block, erasures, reserved)
        if errors == FAILED:
            raise DecodeError("Reed–Solomon: too many errors")
        changed = tuple(int(p) for p in positions[np.flatnonzero(block != raw[positions])])
        erased_positions = tuple(int(positions[e]) for e in erasures)
        corrected[positions] = block
        stats.append(
            BlockStats(
                data_count,
                size.ec_per_block,
                reserved,
                errors,
                erased,
                tuple(sorted(set(changed) | set(erased_positions))),
            )
        )
    data = [int(v) for v in corrected[: size.data_codewords]]
    try:
        message = decode_message(data, size.dmre)
    except EncodationError as exc:
        raise DecodeError(f"data: {exc}") from None
    return Decoded(message, tuple(stats), raw, corrected)
