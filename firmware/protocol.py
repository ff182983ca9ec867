"""The serial protocol between the line I/O board and the gateway (PROTOCOL.md): COBS framing,
CRC-16/CCITT-FALSE, one named tuple per message type.

The same file runs on the board (MicroPython) and in the gateway (CPython, gateway/ioboard.py),
so it uses only what both have: struct and collections.namedtuple, no annotations, no
dataclasses. Nothing here runs in an interrupt handler: encoding and decoding allocate.
"""

import struct
from collections import namedtuple

# Message types (the first byte of a frame's payload).
HEARTBEAT = 0x01  # both ways
STATUS = 0x02  # board -> gateway
TRIGGER = 0x10  # board -> gateway
EJECTED = 0x11  # board -> gateway
VERDICT = 0x20  # gateway -> board
CONFIG = 0x21  # gateway -> board; the board answers with the CONFIG it now runs
ERROR = 0x7F  # board -> gateway

Heartbeat = namedtuple("Heartbeat", ("beat",))
Status = namedtuple(
    "Status",
    (
        "uptime_us",
        "encoder",
        "items",
        "rejected",
        "no_verdict",
        "passed",
        "pending",
        "untracked",
        "events_lost",
        "late_verdicts",
        "unknown_verdicts",
        "encoder_errors",
        "crc_errors",
        "length_errors",
        "unknown_types",
        "flags",
    ),
)
Trigger = namedtuple("Trigger", ("item_id", "encoder", "time_us"))
Ejected = namedtuple("Ejected", ("item_id", "encoder", "time_us", "reason"))
Verdict = namedtuple("Verdict", ("item_id", "reject"))
Config = namedtuple("Config", ("debounce_ms", "eject_counts", "trigger_us", "strobe_us", "reject_us", "heartbeat_ms"))
Error = namedtuple("Error", ("code", "detail"))

# Ejected.reason
REASON_VERDICT = 1  # the gateway said reject
REASON_NO_VERDICT = 2  # no verdict had come when the item reached the ejector (fail-safe)
REASONS = {REASON_VERDICT: "verdict", REASON_NO_VERDICT: "no_verdict"}

# Status.flags
FLAG_CONFIGURED = 1  # running the gateway's CONFIG, not the defaults it booted with
FLAG_GATEWAY_ALIVE = 2  # a gateway HEARTBEAT came within 3 heartbeat periods

# Error.code (detail in PROTOCOL.md)
ERROR_BAD_CONFIG = 1
ERROR_LATE_VERDICT = 2
ERROR_UNKNOWN_ITEM = 3
ERROR_UNTRACKED = 4
ERROR_EVENTS_LOST = 5
ERROR_GATEWAY_LOST = 6
ERROR_UNEXPECTED_MESSAGE = 7
ERRORS = {
    ERROR_BAD_CONFIG: "bad_config",
    ERROR_LATE_VERDICT: "late_verdict",
    ERROR_UNKNOWN_ITEM: "unknown_item",
    ERROR_UNTRACKED: "untracked",
    ERROR_EVENTS_LOST: "events_lost",
    ERROR_GATEWAY_LOST: "gateway_lost",
    ERROR_UNEXPECTED_MESSAGE: "unexpected_message",
}

# The ranges a CONFIG must keep (PROTOCOL.md); the board answers any other with ERROR bad_config.
MAX_EJECT_COUNTS = (1 << 28) - 1  # half the wrap of the board's encoder count
MIN_PULSE_US, MAX_PULSE_US = 2, 1_000_000


def valid_config(config):
    """True when the board can run ``config``."""
    return (
        0 <= config.debounce_ms <= 1000
        and 1 <= config.eject_counts <= MAX_EJECT_COUNTS
        and MIN_PULSE_US <= config.trigger_us <= MAX_PULSE_US
        and MIN_PULSE_US <= config.strobe_us <= MAX_PULSE_US
        and MIN_PULSE_US <= config.reject_us <= MAX_PULSE_US
        and 10 <= config.heartbeat_ms <= 60_000
    )


# Bodies are little-endian (both ends are little-endian machines); the CRC is high byte first.
_LAYOUTS = (
    (HEARTBEAT, Heartbeat, "<I"),
    (STATUS, Status, "<QqIIIIHIIIIIIIIB"),
    (TRIGGER, Trigger, "<IqQ"),
    (EJECTED, Ejected, "<IqQB"),
    (VERDICT, Verdict, "<IB"),
    (CONFIG, Config, "<HIIIIH"),
    (ERROR, Error, "<BI"),
)
_BY_TYPE = {code: (cls, fmt, struct.calcsize(fmt)) for code, cls, fmt in _LAYOUTS}
_BY_CLASS = {cls: (code, fmt) for code, cls, fmt in _LAYOUTS}

# The longest encoded frame a receiver accepts: the largest payload (STATUS) with its type and
# CRC fits with room to spare; anything longer is line noise without a delimiter.
MAX_FRAME = 128


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data):
    """Consistent Overhead Byte Stuffing: ``data`` without any zero byte, one byte longer per 254."""
    out = bytearray(1)
    code_at, code = 0, 1
    for byte in data:
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == 0xFF:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """The bytes ``cobs_encode`` was given; ValueError when ``data`` is no COBS block."""
    out = bytearray()
    i, end = 0, len(data)
    while i < end:
        code = data[i]
        if code == 0 or i + code > end:
            raise ValueError("COBS code byte points past the frame")
        out.extend(data[i + 1 : i + code])
        i += code
        if code < 0xFF and i < end:
            out.append(0)
    return bytes(out)


def encode(message):
    """One frame: a zero delimiter, COBS(type, body, CRC-16 of type and body), a zero delimiter.
    The leading zero closes whatever noise came before, so the receiver never glues it to us."""
    code, fmt = _BY_CLASS[type(message)]
    payload = bytes((code,)) + struct.pack(fmt, *message)
    crc = crc16(payload)
    return b"\x00" + cobs_encode(payload + bytes((crc >> 8, crc & 0xFF))) + b"\x00"


def message_type(message):
    """The type byte ``message`` is sent with."""
    return _BY_CLASS[type(message)][0]


class Receiver:
    """Turns the received byte stream back into messages. A frame that fails (bad COBS or
    length, bad CRC, unknown type) is dropped and counted; the next delimiter starts afresh."""

    def __init__(self):
        self.frames = 0  # good frames
        self.crc_errors = 0
        self.length_errors = 0  # too short or too long for its type, no COBS block, over MAX_FRAME
        self.unknown_types = 0
        self._frame = bytearray()
        self._overflow = False  # the frame being received passed MAX_FRAME: dropped at its end

    def feed(self, data):
        """The messages completed by ``data``, in order."""
        messages = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._collect(data[start:])
                return messages
            self._collect(data[start:end])
            message = self._close_frame()
            if message is not None:
                messages.append(message)
            start = end + 1

    def _collect(self, chunk):
        if self._overflow or not chunk:
            return
        if len(self._frame) + len(chunk) > MAX_FRAME:
            self._overflow = True
            self._frame = bytearray()
        else:
            self._frame.extend(chunk)

    def _close_frame(self):
        frame, overflow = self._frame, self._overflow
        self._frame, self._overflow = bytearray(), False
        if overflow:
            self.length_errors += 1
            return None
        if not frame:  # two delimiters in a row: between frames, not a frame
            return None
        try:
            payload = cobs_decode(frame)
        except ValueError:
            self.length_errors += 1
            return None
        if len(payload) < 3:
            self.length_errors += 1
            return None
        if crc16(payload) != 0:  # the CRC over data and its own big-endian CRC leaves 0
            self.crc_errors += 1
            return None
        layout = _BY_TYPE.get(payload[0])
        if layout is None:
            self.unknown_types += 1
            return None
        cls, fmt, size = layout
        if len(payload) - 3 != size:
            self.length_errors += 1
            return None
        self.frames += 1
        return cls(*struct.unpack(fmt, payload[1:-2]))
