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
from collections.abc import Callable
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
    """Bits of register ``status`` (station → PLC)."""

    READY = 1 << 0
    RESULT_TOGGLE = 1 << 1
    HEARTBEAT = 1 << 2
    PLC_ALARM = 1 << 3
    REJECT_ALL = 1 << 4
    TRIGGER_ACK = 1 << 5
    RESULT_VALID = 1 << 6
    OVERRUN = 1 << 7
    FAULT = 1 << 8
    STOP_LINE = 1 << 9


class Control(IntFlag):
    """Bits of register ``plc_control`` (PLC → station)."""

    HEARTBEAT = 1 << 0
    REJECT_ALL = 1 << 1
    TRIGGER = 1 << 2
    RESULT_ACK = 1 << 3
    RESET = 1 << 4


# What each bit means, for the documentation (tables as data: the generator prints these).
STATUS_BITS: dict[Status, str] = {
    Status.READY: "the station is inspecting",
    Status.RESULT_TOGGLE: "flips with every new result",
    Status.HEARTBEAT: "flips once a second while the station runs (`heartbeat` counts the same beats)",
    Status.PLC_ALARM: "the PLC's heartbeat (`plc_control` bit 0) stopped",
    Status.REJECT_ALL: "every item is rejected: the PLC asked (`plc_control` bit 1) or the heartbeat policy did",
    Status.TRIGGER_ACK: "follows `plc_control` bit 2 once the station has taken the trigger",
    Status.RESULT_VALID: "set with every new result, cleared by a rising edge of `plc_control` bit 3",
    Status.OVERRUN: "a trigger was lost (capture queue full); held until `plc_control` bit 4",
    Status.FAULT: "the station cannot inspect (camera or source failed, vision or registry error)",
    Status.STOP_LINE: "the station asks to stop the line (heartbeat policy `stop_line`)",
}
CONTROL_BITS: dict[Control, str] = {
    Control.HEARTBEAT: "PLC heartbeat: toggle at least once a second",
    Control.REJECT_ALL: "reject every item while set (start-up, fail-safe test)",
    Control.TRIGGER: "rising edge: capture one item; write `plc_item_id` and `plc_encoder` in the same request",
    Control.RESULT_ACK: "rising edge: the PLC has taken the latest result (clears `status` bit 6)",
    Control.RESET: "rising edge: zero the counters and clear the overrun bit",
}


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    address: int  # 0-based protocol address
    words: int
    type: str
    meaning: str
    direction: str = "station → PLC"


HISTORY_BASE = 16
HISTORY_LENGTH = 16
HISTORY_ENTRY_WORDS = 5  # sequence, result code, reject flag, item id (2 words)
CONTROL_BASE = HISTORY_BASE + HISTORY_LENGTH * HISTORY_ENTRY_WORDS  # 96
CONTROL_END = CONTROL_BASE + 5  # plc_control, plc_item_id, plc_encoder
TO_PLC = "PLC → station"

REGISTERS: tuple[Register, ...] = (
    Register("status", 0, 1, "bits", "station status, bits below"),
    Register("heartbeat", 1, 1, "uint16", "increments once a second while the station runs (wraps)"),
    Register("result_seq", 2, 1, "uint16", "sequence number of the latest result, 1, 2, … 65535, 1 (0 = none yet)"),
    Register("result_code", 3, 1, "uint16", "result code of the latest result (table below)"),
    Register("reject", 4, 1, "uint16", "1 = reject the item of the latest result, 0 = keep it"),
    Register(
        "item_id",
        5,
        2,
        "uint32",
        "item id of the latest result: the PLC's `plc_item_id` from its trigger, else the station's item counter",
    ),
    Register("grade_x10", 7, 1, "uint16", "overall print grade of the latest result × 10 (0–40; 0 also when unread)"),
    Register("count_items", 8, 2, "uint32", "items decided since start or reset"),
    Register("count_pass", 10, 2, "uint32", "items passed"),
    Register("count_reject", 12, 2, "uint32", "items rejected"),
    Register("encoder", 14, 2, "uint32", "the PLC's `plc_encoder` at the trigger of the latest result (0 without)"),
    Register(
        "history",
        HISTORY_BASE,
        HISTORY_LENGTH * HISTORY_ENTRY_WORDS,
        f"{HISTORY_LENGTH} × 5 words",
        f"the last results, entry at {HISTORY_BASE} + 5·(seq mod {HISTORY_LENGTH}): "
        "sequence, result code, reject, item id (uint32)",
    ),
    Register("plc_control", CONTROL_BASE, 1, "bits", "PLC control bits, below", TO_PLC),
    Register("plc_item_id", CONTROL_BASE + 1, 2, "uint32", "the PLC's id of the item it triggers", TO_PLC),
    Register("plc_encoder", CONTROL_BASE + 3, 2, "uint32", "the PLC's encoder count at that trigger", TO_PLC),
    Register("count_triggers", CONTROL_END, 2, "uint32", "triggers taken from the PLC"),
    Register("count_overruns", CONTROL_END + 2, 2, "uint32", "PLC triggers lost because the capture queue was full"),
    Register(
        "count_timeouts",
        CONTROL_END + 4,
        2,
        "uint32",
        "results decided after the deadline or not taken by the PLC within it",
    ),
)
REGISTER_COUNT = CONTROL_END + 6  # 107: one read of at most 125 registers takes the whole map
ADDRESS = {r.name: r.address for r in REGISTERS}
# The station's own registers; the PLC writes only CONTROL_BASE … CONTROL_END - 1.
STATION_RANGES = ((0, CONTROL_BASE), (CONTROL_END, REGISTER_COUNT))


@dataclass(frozen=True, slots=True)
class Result:
    """One decision as the PLC sees it."""

    seq: int
    item_id: int
    code: ResultCode
    reject: bool
    grade_x10: int = 0


@dataclass(frozen=True, slots=True)
class PlcTrigger:
    """A trigger edge from the PLC: capture the item the PLC calls ``item_id``."""

    item_id: int
    encoder: int
    t: float  # time.monotonic() when the station saw the edge


def split32(value: int) -> tuple[int, int]:
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


def seqs_in(words: list[int], address: int, count: int) -> set[int]:
    """The results a PLC has after reading (or the station writing) ``words[address:address+count]``
    of the map: every history entry read whole, and the latest result when its registers were."""
    end = address + count
    seqs = set()
    if address <= ADDRESS["result_seq"] and ADDRESS["item_id"] + 2 <= end and words[ADDRESS["result_seq"]]:
        seqs.add(words[ADDRESS["result_seq"]])
    for slot in range(HISTORY_LENGTH):
        base = HISTORY_BASE + HISTORY_ENTRY_WORDS * slot
        if address <= base and base + HISTORY_ENTRY_WORDS <= end and words[base]:
            seqs.add(words[base])
    return seqs


def seq_behind(newer: int, older: int) -> int:
    """How many results ``older`` is behind ``newer`` (sequence numbers wrap 65535 → 1)."""
    return (newer - older) % 65535


class RegisterImage:
    """The station's registers in memory; every update is atomic with respect to ``snapshot``.

    ``on_trigger`` takes the PLC's trigger edges (False: the capture queue is full, an overrun);
    without it the station does not take triggers and does not acknowledge them. ``on_change`` is
    called after every change of the station's registers (client mode wakes its writer with it).
    """

    _COUNTERS = ("count_items", "count_pass", "count_reject", "count_triggers", "count_overruns", "count_timeouts")

    def __init__(
        self,
        on_trigger: Callable[[PlcTrigger], bool] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._words = [0] * REGISTER_COUNT
        self._lock = threading.Lock()
        self._seq = 0
        self._counts = dict.fromkeys(self._COUNTERS, 0)
        self._control_changed: float | None = None
        self.on_trigger = on_trigger
        self.on_change = on_change

    def snapshot(self) -> list[int]:
        with self._lock:
            return list(self._words)

    def counts(self) -> dict[str, int]:
        """The station's counters (``count_items`` …) as the PLC reads them."""
        with self._lock:
            return dict(self._counts)

    def write_control(self, address: int, values: list[int]) -> bool:
        """A PLC write; False (refused) unless it stays inside the PLC's block. Acts on the
        control bits' edges: trigger, result acknowledge, reset."""
        if address < CONTROL_BASE or address + len(values) > CONTROL_END:
            return False
        now = time.monotonic()
        with self._lock:
            status_before = self._words[0]
            before = Control(self._words[CONTROL_BASE])
            self._words[address : address + len(values)] = [v & 0xFFFF for v in values]
            after = Control(self._words[CONTROL_BASE])
            self._control_changed = now
            rising = after & ~before
            trigger = None
            if rising & Control.TRIGGER and self.on_trigger is not None:
                item_id, encoder = (join32(*self._words[a : a + 2]) for a in (CONTROL_BASE + 1, CONTROL_BASE + 3))
                trigger = PlcTrigger(item_id, encoder, now)
            if rising & Control.RESULT_ACK:
                self._words[0] &= ~Status.RESULT_VALID
            if rising & Control.RESET:
                self._counts = dict.fromkeys(self._COUNTERS, 0)
                self._write_counts()
                self._words[0] &= ~Status.OVERRUN
            if not after & Control.TRIGGER:
                self._words[0] &= ~Status.TRIGGER_ACK
            changed = self._words[0] != status_before or bool(rising & Control.RESET)
        if trigger is not None:
            # outside the lock: the handler queues the capture and may take its own locks
            taken = self.on_trigger(trigger)
            with self._lock:
                self._counts["count_triggers" if taken else "count_overruns"] += 1
                if not taken:
                    self._words[0] |= Status.OVERRUN
                if Control(self._words[CONTROL_BASE]) & Control.TRIGGER:
                    self._words[0] |= Status.TRIGGER_ACK
                self._write_counts()
            changed = True
        if changed:  # the station's registers moved: a client-mode writer has something to send
            self._changed()
        return True

    def control(self) -> tuple[Control, float | None]:
        """The PLC's control bits and when the PLC last wrote them (monotonic; None = never)."""
        with self._lock:
            return Control(self._words[CONTROL_BASE] & 0x1F), self._control_changed

    def set_status(self, flag: Status, on: bool) -> None:
        with self._lock:
            if on:
                self._words[0] |= flag
            else:
                self._words[0] &= ~flag
        self._changed()

    def beat(self) -> None:
        """Advance the heartbeat (call once a second)."""
        with self._lock:
            self._words[0] ^= Status.HEARTBEAT
            self._words[1] = (self._words[1] + 1) & 0xFFFF
        self._changed()

    def count_timeout(self) -> None:
        """A result the PLC did not get within the deadline."""
        with self._lock:
            self._counts["count_timeouts"] += 1
            self._write_counts()
        self._changed()

    def publish(self, item_id: int, code: ResultCode, reject: bool, grade_x10: int, encoder: int = 0) -> Result:
        """Present a new result and return it with its sequence number. While reject-all is on
        (the PLC's control bit or the station's status bit), every result is a reject."""
        with self._lock:
            w = self._words
            reject = reject or bool(w[CONTROL_BASE] & Control.REJECT_ALL) or bool(w[0] & Status.REJECT_ALL)
            self._seq = self._seq % 65535 + 1
            self._counts["count_items"] += 1
            self._counts["count_reject" if reject else "count_pass"] += 1
            if code == ResultCode.TIMEOUT:
                self._counts["count_timeouts"] += 1
            w[0] = (w[0] ^ Status.RESULT_TOGGLE) | Status.RESULT_VALID
            w[2], w[3], w[4] = self._seq, int(code), int(reject)
            w[5], w[6] = split32(item_id)
            w[7] = grade_x10
            w[14], w[15] = split32(encoder)
            base = history_slot(self._seq)
            w[base : base + HISTORY_ENTRY_WORDS] = [self._seq, int(code), int(reject), *split32(item_id)]
            self._write_counts()
            result = Result(self._seq, item_id, code, reject, grade_x10)
        self._changed()
        return result

    def _write_counts(self) -> None:
        for name, value in self._counts.items():
            address = ADDRESS[name]
            self._words[address], self._words[address + 1] = split32(value)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def register_map_markdown() -> str:
    """docs/plc-register-map.md, generated from the tables above (``python -m plc.registers``)."""
    lines = [
        "# udigate Modbus register map",
        "",
        "Generated by `python -m plc.registers` from `plc/registers.py`; do not edit by hand.",
        "",
        "## Addressing and encoding",
        "",
        "- All data are holding registers: read with function code 3 (function code 4 returns the same",
        "  data as input registers), written with function code 6 or 16.",
        "- Addresses are given 0-based (as sent in the Modbus frame) and as 1-based `4xxxxx` references",
        "  (as most PLC and HMI tools, and `mbpoll -r`, count them).",
        "- Every register is a big-endian 16-bit word (Modbus byte order: high byte first). 32-bit values",
        '  take two registers, **high word first** (word order big-endian, "ABCD"), unsigned.',
        f"- The whole map (addresses 0–{REGISTER_COUNT - 1}) fits one read of at most 125 registers and is",
        "  served as one consistent snapshot: a result is never read half-written.",
        f"- The PLC writes only its block ({CONTROL_BASE}–{CONTROL_END - 1}); a write elsewhere is refused with",
        "  exception 2 (illegal data address).",
        "",
        '**Server mode** (`[plc.modbus] mode = "server"`, default): the station is a Modbus TCP server',
        "(port 502; the demo uses 5020) or an RTU slave on a serial port, and answers every unit id. The PLC",
        'polls. **Client mode** (`mode = "client"`): the station writes its registers into the PLC\'s holding',
        "registers at `base_address` + address and reads the PLC's block from `base_address` + "
        f"{CONTROL_BASE}…{CONTROL_END - 1}",
        "every `poll_ms`; the PLC program sees the same layout, offset by `base_address`.",
        "",
        "| address (0-based) | reference (1-based) | words | type | direction | name | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in REGISTERS:
        last = r.address + r.words - 1
        span = str(r.address) if r.words == 1 else f"{r.address}–{last}"
        ref = f"4{r.address + 1:05d}" if r.words == 1 else f"4{r.address + 1:05d}–4{last + 1:05d}"
        lines.append(f"| {span} | {ref} | {r.words} | {r.type} | {r.direction} | `{r.name}` | {r.meaning} |")
    lines += ["", "## `status` bits (address 0)", "", "| bit | mask | meaning |", "|---|---|---|"]
    lines += [f"| {b.bit_length() - 1} | {int(b)} | {text} |" for b, text in STATUS_BITS.items()]
    lines += ["", f"## `plc_control` bits (address {CONTROL_BASE})", "", "| bit | mask | meaning |", "|---|---|---|"]
    lines += [f"| {b.bit_length() - 1} | {int(b)} | {text} |" for b, text in CONTROL_BITS.items()]
    lines += ["", "## Result codes (`result_code`, history entries)", "", "| code | name |", "|---|---|"]
    lines += [f"| {code.value} | {code.name} |" for code in ResultCode]
    lines += [
        "",
        '## Trigger handshake (`[source] trigger = "plc"`)',
        "",
        "1. The PLC writes `plc_control` with bit 2 set together with `plc_item_id` and `plc_encoder` in one",
        f"   function-code-16 request to {CONTROL_BASE}–{CONTROL_END - 1} (so the id belongs to the edge).",
        "2. The station queues the capture and sets `status` bit 5 (trigger ack). The PLC clears bit 2;",
        "   the station clears bit 5. The next trigger may follow at once.",
        "3. When the capture queue is full the trigger is lost: `status` bit 7 (overrun) is set and",
        "   `count_overruns` counts it; the PLC's own tracking rejects that item (no result arrives).",
        "4. The result carries the PLC's id in `item_id` (and in its history entry) and the encoder count",
        "   in `encoder`, so the PLC matches it to its tracking FIFO.",
        "",
        "## Reading results without missing one",
        "",
        "Poll the map and compare `result_seq` with the last sequence number you handled. Every",
        f"result since then is in the history (the last {HISTORY_LENGTH}): the entry for sequence `s` is at",
        f"address `{HISTORY_BASE} + {HISTORY_ENTRY_WORDS}·(s mod {HISTORY_LENGTH})` and holds `s`, the result code,",
        "the reject flag and the item id. Sequence numbers run 1…65535 and wrap to 1 (0 = no result yet).",
        f"A PLC that polls at least once per {HISTORY_LENGTH} items never misses a result. PLCs that prefer a",
        "strobe use `status` bit 6 (result valid) and acknowledge with a rising edge of `plc_control` bit 3;",
        "bit 1 (result toggle) flips with every result for toggle-style logic.",
        "",
        "The station counts a result as delivered when the PLC reads `result_seq` after it was published",
        "(client mode: when the write into the PLC succeeded). A result not delivered within",
        "`[plc] deadline_ms` of its trigger is counted in `count_timeouts`, logged and published on MQTT",
        "`…/plc/undelivered`: nothing is lost silently. The PLC must treat an item without a result when it",
        "reaches the ejector as a reject.",
        "",
        "## Heartbeats and fail-safe",
        "",
        '`heartbeat` increments once a second while the station runs; a PLC should raise "vision',
        'down" when it stops changing for a few seconds. `status` bit 0 (ready) is set while the',
        "station is inspecting; bit 8 (fault) when it cannot.",
        "",
        "A PLC that toggles `plc_control` bit 0 at least once a second is watched: when it stops",
        "(`[plc] plc_heartbeat_timeout_s`, default 3 s, after the first toggle), the station sets `status`",
        "bit 3 (PLC alarm), publishes the alarm on MQTT `…/alarms` and logs it, until the heartbeat returns.",
        "`[plc] on_heartbeat_lost` chooses what else happens meanwhile: `alarm` (nothing more),",
        "`reject_all` (every result is a reject, `status` bit 4) or `stop_line` (`status` bit 9, and reject-all).",
        "While `plc_control` bit 1 is set, every result is a reject (its result code is unchanged).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(register_map_markdown(), end="")
