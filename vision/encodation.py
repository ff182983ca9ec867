"""ECC200 data decoding (ISO/IEC 16022:2006 5.2–5.6, Annex B and C): data codewords → message.

All encodation modes (ASCII, C40, Text, X12, EDIFACT, Base 256), FNC1 (first position → GS1,
later → GS), ECI, Structured Append, Macro 05/06 and Reader Programming. Invalid streams raise
:class:`EncodationError` with the reason; padding is checked codeword by codeword, which also
catches most Reed–Solomon miscorrections beyond capacity.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

GS, RS, EOT = 0x1D, 0x1E, 0x04

_C40_BASIC = b"\0\0\0 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TEXT_BASIC = b"\0\0\0 0123456789abcdefghijklmnopqrstuvwxyz"
_SHIFT2 = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_"  # value 27 is FNC1, 30 is Upper Shift
_TEXT_SHIFT3 = b"`ABCDEFGHIJKLMNOPQRSTUVWXYZ{|}~\x7f"
_X12 = b"\r*> 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# ECI assignment number → Python codec (AIM ECI specification); the default is ISO/IEC 8859-1.
ECI_CODECS = {
    0: "cp437",
    1: "latin-1",
    2: "cp437",
    3: "latin-1",
    4: "iso8859-2",
    5: "iso8859-3",
    6: "iso8859-4",
    7: "iso8859-5",
    8: "iso8859-6",
    9: "iso8859-7",
    10: "iso8859-8",
    11: "iso8859-9",
    12: "iso8859-10",
    13: "iso8859-11",
    15: "iso8859-13",
    16: "iso8859-14",
    17: "iso8859-15",
    18: "iso8859-16",
    20: "shift_jis",
    21: "cp1250",
    22: "cp1251",
    23: "cp1252",
    24: "cp1256",
    25: "utf-16-be",
    26: "utf-8",
    27: "ascii",
    28: "big5",
    29: "gb18030",
    30: "euc-kr",
    31: "gbk",
    32: "gb18030",
    33: "utf-16-le",
    34: "utf-32-be",
    35: "utf-32-le",
    170: "ascii",
    899: "latin-1",
}


class EncodationError(ValueError):
    """The data codewords are not a valid ECC200 message."""


@dataclass(frozen=True, slots=True)
class Message:
    data: bytes  # message bytes as transmitted after the symbology identifier (FNC1 → GS)
    symbology_identifier: str  # ]d1 … ]d6 (DMRE: ]d7 … ]d12, as zxing-cpp reports them)
    text: str  # the message as text, each segment in its ECI character set
    eci: tuple[int, ...]  # ECI assignments used, in order
    structured_append: tuple[int, int, int] | None  # (position 1…, total, file id), if any
    reader_init: bool  # a reader programming symbol
    modes: frozenset[str]  # encodation modes met: ascii, c40, text, x12, edifact, base256


class _Stream:
    def __init__(self, codewords: list[int]) -> None:
        self.codewords = codewords
        self.position = 0

    def remaining(self) -> int:
        return len(self.codewords) - self.position

    def next(self) -> int:
        if self.position >= len(self.codewords):
            raise EncodationError("message ends inside a segment")
        value = self.codewords[self.position]
        self.position += 1
        return value


class _Output:
    """Collects message bytes, tracking ECI segments and the pending Upper Shift."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.segments: list[tuple[int | None, int]] = [(None, 0)]  # (ECI, start offset)
        self.upper_shift = False

    def byte(self, value: int) -> None:
        if self.upper_shift:
            value += 128
            self.upper_shift = False
        self.data.append(value)

    def text(self) -> str:
        parts = []
        ends = [start for _, start in self.segments[1:]] + [len(self.data)]
        for (eci, start), end in zip(self.segments, ends, strict=True):
            codec = ECI_CODECS.get(eci, "latin-1") if eci is not None else "latin-1"
            parts.append(codecs.decode(bytes(self.data[start:end]), codec, errors="replace"))
        return "".join(parts)


def decode_message(codewords: list[int], dmre: bool = False) -> Message:
    """Decode the data codewords of one symbol (all blocks, de-interleaved)."""
    stream = _Stream(list(codewords))
    out = _Output()
    modes: set[str] = set()
    trailer = b""
    structured_append = None
    reader_init = False
    fnc1_first = 1  # codeword position (1-based) where an FNC1 means GS1
    modifier = 1
    ecis: list[int] = []
    while stream.remaining():
        position = stream.position + 1
        value = stream.next()
        if value == 0:
            raise EncodationError("codeword 0 is not valid")
        if value <= 128:
            modes.add("ascii")
            out.byte(value - 1)
        elif value == 129:
            _check_padding(stream)
            break
        elif value <= 229:
            modes.add("ascii")
            out.data.extend(b"%02d" % (value - 130))
        elif value == 230:
            _c40_text(stream, out, _C40_BASIC, "c40")
            modes.add("c40")
        elif value == 231:
            _base256(stream, out)
            modes.add("base256")
        elif value == 232:
            if position == fnc1_first:
                modifier = 2  # GS1
            elif position == fnc1_first + 1:
                modifier = 3  # AIM application indicator
            else:
                out.byte(GS)
        elif value == 233:
            if position != 1:
                raise EncodationError("Structured Append must be the first codeword")
            sequence, file_1, file_2 = stream.next(), stream.next(), stream.next()
            count = 17 - (sequence & 0x0F)
            index = (sequence >> 4) + 1
            if not 2 <= count <= 16 or index > count:
                raise EncodationError(f"Structured Append symbol {index} of {count} is not valid")
            structured_append = (index, count, (file_1 << 8) | file_2)
            fnc1_first = 5
        elif value == 234:
            if position != 1:
                raise EncodationError("Reader Programming must be the first codeword")
            reader_init = True
        elif value == 235:
            out.upper_shift = True
        elif value in (236, 237):
            if position != 1:
                raise EncodationError("a Macro codeword must be the first codeword")
            out.data.extend(b"[)>\x1e%s\x1d" % (b"05" if value == 236 else b"06"))
            trailer = b"\x1e\x04"
        elif value == 238:
            _x12(stream, out)
            modes.add("x12")
        elif value == 239:
            _c40_text(stream, out, _TEXT_BASIC, "text")
            modes.add("text")
        elif value == 240:
            _edifact(stream, out)
            modes.add("edifact")
        elif value == 241:
            eci = _eci_number(stream)
            ecis.append(eci)
            out.segments.append((eci, len(out.data)))
        elif value == 254 and not stream.remaining():
            pass  # some encoders end with an unlatch in ASCII mode
        else:
            raise EncodationError(f"codeword {value} is not valid in ASCII encodation")
    out.data.extend(trailer)
    if ecis:
        modifier += 3
    if dmre:
        modifier += 6
    return Message(
        data=bytes(out.data),
        symbology_identifier=f"]d{modifier}",
        text=out.text(),
        eci=tuple(ecis),
        structured_append=structured_append,
        reader_init=reader_init,
        modes=frozenset(modes),
    )


def _check_padding(stream: _Stream) -> None:
    """After the first pad (129), every codeword is the 253-state randomised pad of its position."""
    while stream.remaining():
        position = stream.position + 1
        expected = 129 + (149 * position) % 253 + 1
        if expected > 254:
            expected -= 254
        if stream.next() != expected:
            raise EncodationError(f"pad codeword at position {position} is wrong")


def _triples(stream: _Stream):
    """C40, Text and X12 values, three per codeword pair, until unlatch or the message ends."""
    while stream.remaining() >= 2:
        first = stream.next()
        if first == 254:
            return
        packed = (first << 8) + stream.next() - 1
        if not 0 <= packed < 64000:
            raise EncodationError("C40/Text/X12 codeword pair out of range")
        yield packed // 1600
        yield packed // 40 % 40
        yield packed % 40


def _c40_text(stream: _Stream, out: _Output, basic: bytes, mode: str) -> None:
    shift = 0
    for value in _triples(stream):
        if shift == 0:
            if value < 3:
                shift = value + 1
            else:
                out.byte(basic[value])
            continue
        current, shift = shift, 0
        if current == 1:
            if value > 31:
                raise EncodationError(f"{mode} shift 1 value {value} is not valid")
            out.byte(value)
        elif current == 2:
            if value < len(_SHIFT2):
                out.byte(_SHIFT2[value])
            elif value == 27:
                out.byte(GS)  # FNC1
            elif value == 30:
                out.upper_shift = True
            else:
                raise EncodationError(f"{mode} shift 2 value {value} is not valid")
        elif mode == "c40":
            if value > 31:
                raise EncodationError(f"c40 shift 3 value {value} is not valid")
            out.byte(value + 96)
        elif value < len(_TEXT_SHIFT3):
            out.byte(_TEXT_SHIFT3[value])
        else:
            raise EncodationError(f"text shift 3 value {value} is not valid")


def _x12(stream: _Stream, out: _Output) -> None:
    for value in _triples(stream):
        out.byte(_X12[value])


def _edifact(stream: _Stream, out: _Output) -> None:
    while stream.remaining() >= 3:
        a, b, c = stream.next(), stream.next(), stream.next()
        packed = (a << 16) | (b << 8) | c
        for shift in (18, 12, 6, 0):
            value = (packed >> shift) & 0x3F
            if value == 0x1F:  # unlatch; the rest of the codeword is filler
                stream.position -= shift // 8
                return
            out.byte(value | 0x40 if not value & 0x20 else value)


def _unrandomize_255(value: int, position: int) -> int:
    return (value - ((149 * position) % 255 + 1)) % 256


def _base256(stream: _Stream, out: _Output) -> None:
    length = _unrandomize_255(stream.next(), stream.position)
    if length == 0:
        length = stream.remaining()
    elif length >= 250:
        length = 250 * (length - 249) + _unrandomize_255(stream.next(), stream.position)
    if length > stream.remaining():
        raise EncodationError(f"Base 256 segment of {length} bytes is longer than the message")
    for _ in range(length):
        out.data.append(_unrandomize_255(stream.next(), stream.position))


def _eci_number(stream: _Stream) -> int:
    first = stream.next()
    if first <= 127:
        return first - 1
    second = stream.next()
    if first <= 191:
        return (first - 128) * 254 + 127 + second - 1
    third = stream.next()
    return (first - 192) * 64516 + 16383 + (second - 1) * 254 + third - 1
