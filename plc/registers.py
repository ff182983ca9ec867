"""The station's Modbus register map: one table that the server, the PLC simulator and the
documentation (docs/plc-register-map.md) all read.

All values are holding registers (function code 3; function code 4 reads the same data as input
registers). 32-bit values take two registers, high word first ("big-endian word order"); each
register is big-endian on the wire as Modbus defines.

A PLC that polls slower than results arrive reads the result history: the last
``HISTORY_LENGTH`` results, each tagged with its sequence number, so no result is ever missed
as long as the PLC polls at least once per ``HISTORY_LENGTH`` items.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import IntEnum, IntFlag


class ResultCode(IntEnum):
    """What the station decided for one item (register ``result_code``)."""

    NONE = 0  # no result yet
    PASS = 1
    NO_READ = 2
    GRADE_FAIL = 3
    CONTENT_MISMATCH = 4
    DUPLICATE = 5
    SYNTAX_ERROR = 6
    NOT_INSPECTED = 7
    STATION_ERROR = 8
    TIMEOUT = 9  # decided after the item's deadline: reject it


class Status(IntFlag):
    """Bits of register ``status``."""

    READY = 1 << 0  # the station is inspecting
    RESULT_TOGGLE = 1 << 1  # flips with every new result
    HEARTBEAT = 1 << 2  # flips once a second while the station runs
    PLC_ALARM = 1 << 3  # the PLC's heartbeat stopped (it is not polling or not running)
    REJECT_ALL = 1 << 4  # the PLC asked for every item to be rejected (control bit 3)


class Control(IntFlag):
    """Bits of register ``plc_control``, written by the PLC."""

    HEARTBEAT = 1 << 0  # toggled by the PLC at least once a second
    REJECT_ALL = 1 << 1  # reject every item while set (fail-safe test, line start-up)


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    address: int  # 0-based protocol address
    words: int
    type: str
    meaning: str


HISTORY_BASE = 16
HISTORY_LENGTH = 16
HISTORY_ENTRY_WORDS = 5  # sequence, result code, reject flag, item id (2 words)

REGISTERS: tuple[Register, ...] = (
    Register(
        "status",
        0,
        1,
        "bits",
        "bit 0 ready, bit 1 result toggle (flips with every result), bit 2 heartbeat (flips at 1 Hz), "
        "bit 3 PLC alarm (the PLC's heartbeat stopped), bit 4 reject-all active",
    ),
    Register("heartbeat", 1, 1, "uint16", "increments once a second while the station runs (wraps)"),
    Register("result_seq", 2, 1, "uint16", "sequence number of the latest result, 1, 2, … 65535, 1 (0 = none yet)"),
    Register("result_code", 3, 1, "uint16", "result code of the latest result (table below)"),
    Register("reject", 4, 1, "uint16", "1 = reject the item of the latest result, 0 = keep it"),
    Register("item_id", 5, 2, "uint32", "item id of the latest result (the station's trigger counter)"),
    Register("grade_x10", 7, 1, "uint16", "overall print grade of the latest result × 10 (0–40; 0 also when unread)"),
    Register("count_items", 8, 2, "uint32", "items decided since start"),
    Register("count_pass", 10, 2, "uint32", "items passed since start"),
    Register("count_reject", 12, 2, "uint32", "items rejected since start"),
    Register(
        "history",
        HISTORY_BASE,
        HISTORY_LENGTH * HISTORY_ENTRY_WORDS,
        f"{HISTORY_LENGTH} × 5 words",
        "the last results, entry k at 16 + 5·(seq mod 16): sequence, result code, reject, item id (uint32)",
    ),
)

CONTROL_BASE = HISTORY_BASE + HISTORY_LENGTH * HISTORY_ENTRY_WORDS  # 96: written by the PLC
CONTROL: tuple[Register, ...] = (
    Register(
        "plc_control",
        CONTROL_BASE,
        1,
        "bits",
        "written by the PLC: bit 0 PLC heartbeat (toggle at least once a second), bit 1 reject all items",
    ),
)
REGISTER_COUNT = CONTROL_BASE + sum(r.words for r in CONTROL)
ADDRESS = {r.name: r.address for r in (*REGISTERS, *CONTROL)}


@dataclass(frozen=True, slots=True)
class Result:
    """One decision as the PLC sees it."""

    seq: int
    item_id: int
    code: ResultCode
    reject: bool
    grade_x10: int = 0


def _split32(value: int) -> tuple[int, int]:
    value &= 0xFFFFFFFF
    return value >> 16, value & 0xFFFF


def join32(high: int, low: int) -> int:
    return (high << 16) | low


def history_slot(seq: int) -> int:
    """Address of the history entry that holds result ``seq``."""
    return HISTORY_BASE + HISTORY_ENTRY_WORDS * (seq % HISTORY_LENGTH)


def decode_history(registers: list[int]) -> list[Result]:
    """The results held in a read of the whole map (``registers[0]`` = address 0), oldest first."""
    entries = []
    for slot in range(HISTORY_LENGTH):
        base = HISTORY_BASE + HISTORY_ENTRY_WORDS * slot
        seq, code, reject, high, low = registers[base : base + HISTORY_ENTRY_WORDS]
        if seq:
            entries.append(Result(seq, join32(high, low), ResultCode(code), bool(reject)))
    # Sequence numbers wrap at 65535 → 1; order by distance behind the newest.
    newest = registers[ADDRESS["result_seq"]]
    return sorted(entries, key=lambda r: (newest - r.seq) % 65535, reverse=True)


class RegisterImage:
    """The station's registers in memory; every update is atomic with respect to ``snapshot``."""

    def __init__(self) -> None:
        self._words = [0] * REGISTER_COUNT
        self._lock = threading.Lock()
        self._seq = 0
        self._counts = [0, 0, 0]  # items, passed, rejected
        self._control_changed: float | None = None

    def snapshot(self) -> list[int]:
        with self._lock:
            return list(self._words)

    def write_control(self, address: int, values: list[int]) -> bool:
        """A PLC write; False (refused) unless it stays inside the control block."""
        if address < CONTROL_BASE or address + len(values) > REGISTER_COUNT:
            return False
        with self._lock:
            self._words[address : address + len(values)] = [v & 0xFFFF for v in values]
            self._control_changed = time.monotonic()
        return True

    def control(self) -> tuple[Control, float | None]:
        """The PLC's control bits and when the PLC last wrote them (monotonic; None = never)."""
        with self._lock:
            return Control(self._words[CONTROL_BASE] & 0x3), self._control_changed

    def set_status(self, flag: Status, on: bool) -> None:
        with self._lock:
            if on:
                self._words[0] |= flag
            else:
                self._words[0] &= ~flag

    def beat(self) -> None:
        """Advance the heartbeat (call once a second)."""
        with self._lock:
            self._words[0] ^= Status.HEARTBEAT
            self._words[1] = (self._words[1] + 1) & 0xFFFF

    def publish(self, item_id: int, code: ResultCode, reject: bool, grade_x10: int) -> Result:
        """Present a new result and return it with its sequence number. While the PLC sets
        reject-all, every result is a reject."""
        with self._lock:
            reject = reject or bool(self._words[CONTROL_BASE] & Control.REJECT_ALL)
            self._seq = self._seq % 65535 + 1
            self._counts[0] += 1
            self._counts[2 if reject else 1] += 1
            w = self._words
            w[0] ^= Status.RESULT_TOGGLE
            w[2], w[3], w[4] = self._seq, int(code), int(reject)
            w[5], w[6] = _split32(item_id)
            w[7] = grade_x10
            for address, value in zip((8, 10, 12), self._counts, strict=True):
                w[address], w[address + 1] = _split32(value)
            base = history_slot(self._seq)
            w[base : base + HISTORY_ENTRY_WORDS] = [self._seq, int(code), int(reject), *_split32(item_id)]
            return Result(self._seq, item_id, code, reject, grade_x10)


def register_map_markdown() -> str:
    """docs/plc-register-map.md, generated from the table above (``python -m plc.registers``)."""
    lines = [
        "# udigate Modbus register map",
        "",
        "Generated by `python -m plc.registers` from `plc/registers.py`; do not edit by hand.",
        "",
        "The station is a Modbus TCP server (default port 502; the demo uses 5020) and answers any",
        "unit id. All registers are holding registers, read with function code 3 (function code 4",
        f"returns the same data as input registers). Addresses 0–{CONTROL_BASE - 1} are the station's and",
        "read-only (a write is refused with exception 2); the control block from address",
        f"{CONTROL_BASE} is written by the PLC (function code 6 or 16).",
        "32-bit values occupy two registers, high word first; each register is big-endian on the wire.",
        f"Read the whole map (addresses 0–{REGISTER_COUNT - 1}) in one request: one consistent snapshot.",
        "Addresses 14–15 are reserved and read as 0.",
        "",
        "| address (0-based) | reference (1-based) | words | type | name | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for r in (*REGISTERS, *CONTROL):
        last = r.address + r.words - 1
        span = str(r.address) if r.words == 1 else f"{r.address}–{last}"
        ref = f"4{r.address + 1:04d}" if r.words == 1 else f"4{r.address + 1:04d}–4{last + 1:04d}"
        lines.append(f"| {span} | {ref} | {r.words} | {r.type} | `{r.name}` | {r.meaning} |")
    lines += ["", "## Result codes (`result_code`, history entries)", "", "| code | name |", "|---|---|"]
    lines += [f"| {code.value} | {code.name} |" for code in ResultCode]
    lines += [
        "",
        "## Reading results without missing one",
        "",
        "Poll the map and compare `result_seq` with the last sequence number you handled. Every",
        f"result since then is in the history (the last {HISTORY_LENGTH}): entry for sequence `s` is at",
        f"address `{HISTORY_BASE} + {HISTORY_ENTRY_WORDS}·(s mod {HISTORY_LENGTH})` and holds `s`, the result code,",
        "the reject flag and the item id. Sequence numbers run 1…65535 and wrap to 1 (0 = no result yet).",
        f"A PLC that polls at least once per {HISTORY_LENGTH} items never misses a result.",
        "",
        '`heartbeat` increments once a second while the station runs; a PLC should raise "vision',
        'down" when it stops changing for a few seconds. `status` bit 0 (ready) is set while the',
        "station is inspecting.",
        "",
        "## Heartbeat from the PLC",
        "",
        "A PLC that toggles `plc_control` bit 0 at least once a second is watched: when it stops",
        "(`[plc] plc_heartbeat_timeout_s`, default 3 s, after the first toggle), the station sets `status`",
        "bit 3 (PLC alarm), publishes `plc_alarm` on MQTT status and logs it, until the heartbeat returns.",
        "While `plc_control` bit 1 is set, every result is a reject (its result code is unchanged) and",
        "`status` bit 4 shows it.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(register_map_markdown(), end="")
