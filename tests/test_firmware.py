"""The line I/O board's firmware (firmware/) on the host, and the gateway's driver for it.

The firmware runs unchanged: fake ``machine``, ``rp2`` and ``micropython`` modules stand in for
the Pico (pins whose edges call the registered IRQ handlers at once, a UART backed by byte
buffers, PIO state machines that record the pulses they would make) and ``time`` gets
MicroPython's ticks functions, wrapping at 2**30 as on the RP2040. A simulated belt drives the
encoder's A/B phases and the photo-eye; the gateway's side is either a small stand-in speaking
the protocol in simulated time, or gateway.ioboard.IoBoard over a pseudo-terminal in real time.
"""

from __future__ import annotations

import binascii
import importlib
import os
import random
import select
import sys
import threading
import time
import types
from dataclasses import dataclass

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from firmware import lineio, protocol
from gateway.ioboard import IoBoard, IoBoardError, IoBoardSettings

from .conftest import wait_for

TICKS_PERIOD = 1 << 30  # MicroPython's ticks period on 32-bit ports


# -- MicroPython's ticks and the Pico's peripherals, faked


class SimClock:
    """Simulated time: moves only when the test moves it."""

    def __init__(self, start_us: int) -> None:
        self.now_us = start_us

    def advance(self, us: int) -> None:
        self.now_us += us

    def ticks_us(self) -> int:
        return self.now_us % TICKS_PERIOD


class WallClock:
    """Real time, for runs against the gateway's real threads."""

    def advance(self, us: int) -> None:
        pass

    @property
    def now_us(self) -> int:
        return time.monotonic_ns() // 1000

    def ticks_us(self) -> int:
        return self.now_us % TICKS_PERIOD


def install_ticks(monkeypatch, clock) -> None:
    half = TICKS_PERIOD // 2
    monkeypatch.setattr(time, "ticks_us", clock.ticks_us, raising=False)
    monkeypatch.setattr(time, "ticks_diff", lambda a, b: (a - b + half) % TICKS_PERIOD - half, raising=False)
    monkeypatch.setattr(time, "ticks_add", lambda t, delta: (t + delta) % TICKS_PERIOD, raising=False)


class FakePin:
    IN, OUT = 0, 1
    PULL_UP, PULL_DOWN = 1, 2
    IRQ_FALLING, IRQ_RISING = 4, 8
    registry: dict[int, FakePin]

    def __init__(self, id: int, mode: int = -1, pull: int = -1) -> None:
        self.id = id
        self._level = 0
        self._handler = None
        self._trigger = 0
        self.registry[id] = self

    def value(self, level: int | None = None) -> int | None:
        if level is None:
            return self._level
        self._level = int(level)
        return None

    def irq(self, handler=None, trigger: int = 12, hard: bool = False) -> None:
        assert hard, "the line's inputs need hard IRQs"
        self._handler, self._trigger = handler, trigger

    def drive(self, level: int) -> None:
        """The outside world sets the input; an edge the IRQ was asked for runs its handler now."""
        if level == self._level:
            return
        self._level = level
        if self._handler is not None and self._trigger & (self.IRQ_RISING if level else self.IRQ_FALLING):
            self._handler(self)


class FakeUart:
    registry: dict[int, FakeUart]

    def __init__(self, id: int, baudrate: int = 115200, tx=None, rx=None, txbuf: int = 0, rxbuf: int = 0) -> None:
        self.rx, self.tx = bytearray(), bytearray()
        self.registry[id] = self

    def any(self) -> int:
        return len(self.rx)

    def read(self, n: int) -> bytes | None:
        data = bytes(self.rx[:n])
        del self.rx[:n]
        return data or None

    def write(self, data: bytes) -> int:
        self.tx.extend(data)
        return len(data)

    # the gateway's end of the wire
    def send(self, data: bytes) -> None:
        self.rx.extend(data)

    def take(self) -> bytes:
        data = bytes(self.tx)
        self.tx.clear()
        return data


@dataclass(frozen=True)
class Pulse:
    pin: int
    width_us: int
    position: int | None  # where the test's belt was when the pulse started


class FakeStateMachine:
    """Records each pulse instead of running the PIO program, which holds its pin high for
    n + 2 cycles per value n put into it."""

    hardware: Hardware

    def __init__(self, id: int, program, freq: int, set_base: FakePin) -> None:
        self.pin, self.freq = set_base.id, freq

    def active(self, on: int) -> None:
        pass

    def put(self, value: int) -> None:
        width_us = (value + 2) * 1_000_000 // self.freq
        self.hardware.pulses.append(Pulse(self.pin, width_us, self.hardware.probe()))


class Hardware:
    """A Pico with firmware/main.py booted on it, and the test's handles on its pins and UART."""

    def __init__(self, monkeypatch, clock) -> None:
        self.clock = clock
        self.pins: dict[int, FakePin] = {}
        self.uarts: dict[int, FakeUart] = {}
        self.pulses: list[Pulse] = []
        self.probe = lambda: None
        machine = types.ModuleType("machine")
        machine.Pin = type("Pin", (FakePin,), {"registry": self.pins})
        machine.UART = type("UART", (FakeUart,), {"registry": self.uarts})
        rp2 = types.ModuleType("rp2")
        rp2.PIO = types.SimpleNamespace(OUT_LOW=0)
        rp2.asm_pio = lambda **settings: lambda program: program  # never assembled on the host
        rp2.StateMachine = type("StateMachine", (FakeStateMachine,), {"hardware": self})
        micropython = types.ModuleType("micropython")
        micropython.alloc_emergency_exception_buf = lambda size: None
        install_ticks(monkeypatch, clock)
        for name, module in (("machine", machine), ("rp2", rp2), ("micropython", micropython)):
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.delitem(sys.modules, "firmware.main", raising=False)
        self.main = importlib.import_module("firmware.main")
        self.restart()

    def restart(self) -> None:
        """Powers the board on (again): main.Board() with new pins and UART, the defaults, no items."""
        self.board = self.main.Board()
        self.uart = self.uarts[self.main.UART_ID]

    def pin(self, number: int) -> FakePin:
        return self.pins[number]

    def pulses_on(self, pin: int) -> list[Pulse]:
        return [p for p in self.pulses if p.pin == pin]


# -- the belt


@dataclass(frozen=True)
class Pack:
    lead: int  # the belt position (encoder counts) at which its front reaches the photo-eye
    length: int


QUADRATURE = ((0, 0), (1, 0), (1, 1), (0, 1))  # (A, B) going forward: A leads B


class Belt:
    """Carries packs past the photo-eye one encoder count at a time: drives the A/B pins through
    the quadrature phases and the photo-eye pin, with contact bounce at every change."""

    def __init__(self, hw: Hardware, rng: random.Random, every_step=lambda: None, bounce: bool = True) -> None:
        self.hw, self.rng, self.every_step, self.bounce = hw, rng, every_step, bounce
        self.a, self.b = hw.pin(hw.main.ENCODER_A_PIN), hw.pin(hw.main.ENCODER_B_PIN)
        self.eye = hw.pin(hw.main.PHOTO_EYE_PIN)
        self.position = 0
        self.phase = 0
        self.packs: list[Pack] = []
        self.covered = False
        self.fronts: list[tuple[int, int]] = []  # (position, clock µs) of each pack's front at the photo-eye
        hw.probe = lambda: self.position

    def move(self, counts: int, speed: float) -> None:
        """``counts`` forward (or back when negative) at ``speed`` counts per second."""
        step = 1 if counts > 0 else -1
        period_us = max(1, round(1e6 / speed))
        for _ in range(abs(counts)):
            self.hw.clock.advance(period_us)
            self.position += step
            self.phase = (self.phase + step) % 4
            a, b = QUADRATURE[self.phase]
            self.a.drive(a)  # one of the two changes
            self.b.drive(b)
            covered = any(p.lead <= self.position < p.lead + p.length for p in self.packs)
            if covered != self.covered:
                self._photo_eye(covered)
            self.every_step()

    def _photo_eye(self, covered: bool) -> None:
        self.covered = covered
        if covered:
            self.fronts.append((self.position, self.hw.clock.now_us))
        self.eye.drive(int(covered))
        for _ in range(self.rng.randint(1, 3) if self.bounce else 0):  # each bounce well inside 2 ms
            self.hw.clock.advance(self.rng.randint(20, 300))
            self.eye.drive(int(not covered))
            self.hw.clock.advance(self.rng.randint(20, 300))
            self.eye.drive(int(covered))


def lay_packs(rng: random.Random, first_lead: int, count: int, gaps=(150, 500)) -> list[Pack]:
    packs, lead = [], first_lead
    for _ in range(count):
        length = rng.randint(60, 200)
        packs.append(Pack(lead, length))
        lead += length + rng.randint(*gaps)
    return packs


class SimGateway:
    """The gateway's end of the board's UART in simulated time: keeps every message the board
    sends, answers each TRIGGER as ``plan(item_id)`` says (None: never; else (reject, counts the
    belt moves before the VERDICT goes out)), and sends a HEARTBEAT every 100 ms."""

    def __init__(self, hw: Hardware, plan=lambda item_id: None) -> None:
        self.hw, self.plan = hw, plan
        self.receiver = protocol.Receiver()
        self.received: list = []
        self.verdicts_due: list[tuple[int, protocol.Verdict]] = []
        self.beat = 0
        self.next_beat_us = hw.clock.now_us
        self.heartbeats = True

    def send(self, *messages) -> None:
        self.hw.uart.send(b"".join(protocol.encode(m) for m in messages))

    def exchange(self, position: int) -> None:
        """One turn: the board's main loop, then what the gateway reads and sends back."""
        self.hw.board.poll()
        for message in self.receiver.feed(self.hw.uart.take()):
            self.received.append(message)
            if type(message) is protocol.Trigger and (decision := self.plan(message.item_id)) is not None:
                reject, delay = decision
                self.verdicts_due.append((message.encoder + delay, protocol.Verdict(message.item_id, int(reject))))
        due = [v for at, v in self.verdicts_due if position >= at]
        self.verdicts_due = [(at, v) for at, v in self.verdicts_due if position < at]
        if self.heartbeats and self.hw.clock.now_us >= self.next_beat_us:
            self.beat += 1
            due.append(protocol.Heartbeat(self.beat))
            self.next_beat_us = self.hw.clock.now_us + 100_000
        self.send(*due)

    def of(self, kind) -> list:
        return [m for m in self.received if type(m) is kind]

    def errors(self, code: int) -> list[int]:
        return [e.detail for e in self.of(protocol.Error) if e.code == code]


LINE_CONFIG = protocol.Config(
    debounce_ms=2, eject_counts=1500, trigger_us=150, strobe_us=80, reject_us=15_000, heartbeat_ms=100
)


# -- the line logic on its own


@pytest.fixture
def sim_ticks(monkeypatch) -> SimClock:
    clock = SimClock(TICKS_PERIOD - 5_000)
    install_ticks(monkeypatch, clock)
    return clock


def test_debouncer_takes_one_pack_per_arrival_whatever_the_bounce(sim_ticks):
    debouncer = lineio.Debouncer(2000, 0, sim_ticks.ticks_us())
    arrivals = []

    def edges(*steps):
        for delay_us, level in steps:
            sim_ticks.advance(delay_us)
            arrivals.append(debouncer.edge(level, sim_ticks.ticks_us()))

    edges((10, 1), (150, 0), (90, 1), (200, 0), (40, 1))  # a pack arrives, the contact bounces
    edges((30_000, 0), (100, 1), (120, 0))  # it leaves, bouncing
    edges((1500, 1), (50_000, 0))  # high again 1.5 ms after the low: a gap that short makes no pack
    edges((2500, 1), (250, 0), (250, 1))  # 2.5 ms low: the next pack (the ticks wrapped meanwhile)
    edges((40_000, 0), (10, 1), (2000, 1))  # a missed low between two highs is no new pack
    assert [i for i, arrived in enumerate(arrivals) if arrived] == [0, 10]


def test_quadrature_decoder_counts_both_ways_and_reports_skipped_edges(sim_ticks):
    decoder = lineio.QuadratureDecoder(0, 0)
    position = lineio.Unwrapper(lineio.COUNT_PERIOD, decoder.count, 0)
    phase = 0
    for step in [1] * 400 + [-1] * 1000 + [1] * 250:
        phase = (phase + step) % 4
        decoder.update(*QUADRATURE[phase])
        position.advance(decoder.count)
    assert position.total == 400 - 1000 + 250
    assert decoder.count == lineio.COUNT_PERIOD - 350  # the ISR's count wrapped below 0
    assert decoder.skipped == 0
    decoder.update(*QUADRATURE[(phase + 2) % 4])  # both channels changed at once: a count lost
    assert decoder.skipped == 1 and decoder.count == lineio.COUNT_PERIOD - 350


def test_unwrapped_counts_survive_runs_far_beyond_the_wrap():
    period = lineio.COUNT_PERIOD
    raw, true_total = 12345, 12345
    position = lineio.Unwrapper(period, raw, true_total)
    for _ in range(5000):  # 5000 × period/3 forward: past 2**39
        raw, true_total = (raw + period // 3) % period, true_total + period // 3
        position.advance(raw)
    assert position.total == true_total > 1 << 39
    for _ in range(20000):  # and back below zero
        raw, true_total = (raw - period // 3) % period, true_total - period // 3
        position.advance(raw)
    assert position.total == true_total < -(1 << 40)


def test_reject_tracker_ring():
    tracker = lineio.RejectTracker(3)
    assert tracker.add(1, 100) and tracker.add(2, 200) and tracker.add(3, lineio.COUNT_PERIOD - 1)
    assert not tracker.add(4, 400)  # full
    assert tracker.decide(2, lineio.REJECT) and not tracker.decide(9, lineio.PASS)
    assert not tracker.due(99) and tracker.due(100)
    assert tracker.pop() == lineio.NO_VERDICT and tracker.popped_id == 1
    assert tracker.pop() == lineio.REJECT and tracker.popped_id == 2
    assert tracker.add(5, 10)  # after the wrap of the count
    assert not tracker.due(lineio.COUNT_PERIOD - 2) and tracker.due(0)  # 0 is just past COUNT_PERIOD - 1
    assert tracker.pop() == lineio.NO_VERDICT and tracker.popped_id == 3
    assert tracker.decide(5, lineio.PASS) and not tracker.decide(2, lineio.PASS)  # 2 has gone


# -- the whole board on a simulated line


def plan_verdicts(eject_counts: int, rng: random.Random):
    """Every 3rd item rejected, every 7th without a verdict, item 10 answered after it passed the
    ejector; the other verdicts come after a random part of the way to the ejector."""

    def plan(item_id: int):
        if item_id % 7 == 0:
            return None
        if item_id == 10:
            return False, eject_counts + 50
        return item_id % 3 == 0, rng.randint(20, eject_counts - 100)

    return plan


def test_board_ejects_exactly_at_the_configured_distance(monkeypatch):
    rng = random.Random(20261123)
    hw = Hardware(monkeypatch, SimClock(TICKS_PERIOD - 700_000))  # ticks_us wraps 0.7 s into the run
    eject = LINE_CONFIG.eject_counts
    gateway = SimGateway(hw, plan_verdicts(eject, rng))
    steps = 0

    def every_step():
        nonlocal steps
        steps += 1
        if steps % 16 == 0:  # the main loop runs between encoder edges, not at each one
            gateway.exchange(belt.position)

    belt = Belt(hw, rng, every_step)
    gateway.send(LINE_CONFIG)
    gateway.exchange(0)
    assert gateway.of(protocol.Config) == [LINE_CONFIG]

    belt.move(-600, 8000)  # jogged backwards first: the count goes below zero
    first = lay_packs(rng, -450, 18)
    gap_start = first[-1].lead + first[-1].length
    belt.packs = first + lay_packs(rng, gap_start + 700, 18)
    reverse_at = gap_start + 300  # in the long gap: no pack comes back under the photo-eye
    end = belt.packs[-1].lead + belt.packs[-1].length + eject + 300
    for stop in (reverse_at, end):
        while belt.position < stop:
            belt.move(min(rng.randint(100, 900), stop - belt.position), rng.uniform(3000, 40_000))
        if stop == reverse_at:
            belt.move(-200, 5000)  # runs backwards with items on their way to the ejector
    for _ in range(15):  # 1.5 s more of main loop: the last STATUS has every count
        hw.clock.advance(100_000)
        gateway.exchange(belt.position)

    packs = belt.packs
    items = range(1, len(packs) + 1)
    assert [position for position, _ in belt.fronts] == [p.lead for p in packs]
    assert belt.fronts[0][1] < TICKS_PERIOD < belt.fronts[-1][1]  # the ticks wrapped while packs passed

    # one TRIGGER per pack, with the encoder count and the board's time at its front
    triggers = gateway.of(protocol.Trigger)
    assert [t.item_id for t in triggers] == list(items)
    assert [t.encoder for t in triggers] == [p.lead for p in packs]
    assert [t.time_us - triggers[0].time_us for t in triggers] == [t - belt.fronts[0][1] for _, t in belt.fronts]
    for pin, width in ((hw.main.TRIGGER_PIN, LINE_CONFIG.trigger_us), (hw.main.STROBE_PIN, LINE_CONFIG.strobe_us)):
        assert [(p.position, p.width_us) for p in hw.pulses_on(pin)] == [(p.lead, width) for p in packs]

    # rejects fire at the ejector, passes never; no verdict in time is a reject (fail-safe)
    expected = {i: protocol.REASON_VERDICT for i in items if i % 3 == 0 and i % 7}
    expected |= {i: protocol.REASON_NO_VERDICT for i in items if i % 7 == 0 or i == 10}
    ejected = gateway.of(protocol.Ejected)
    assert {e.item_id: e.reason for e in ejected} == expected
    assert [e.encoder for e in ejected] == [packs[e.item_id - 1].lead + eject for e in ejected]
    fired = hw.pulses_on(hw.main.REJECT_PIN)
    assert len(fired) == len(expected)
    for pulse, item_id in zip(fired, sorted(expected), strict=True):
        assert abs(pulse.position - (packs[item_id - 1].lead + eject)) <= 1
        assert pulse.width_us == LINE_CONFIG.reject_us
    assert gateway.errors(protocol.ERROR_LATE_VERDICT) == [10]

    status = gateway.of(protocol.Status)[-1]
    assert (status.items, status.pending, status.untracked, status.events_lost) == (len(packs), 0, 0, 0)
    assert status.rejected == sum(r == protocol.REASON_VERDICT for r in expected.values())
    assert status.no_verdict == sum(r == protocol.REASON_NO_VERDICT for r in expected.values())
    assert status.passed == len(packs) - len(expected)
    assert (status.encoder, status.encoder_errors) == (belt.position, 0)
    assert status.flags == protocol.FLAG_CONFIGURED | protocol.FLAG_GATEWAY_ALIVE
    assert status.uptime_us > TICKS_PERIOD  # the board's clock went on past the ticks' wrap


def test_board_takes_config_through_line_noise_and_refuses_a_bad_one(monkeypatch):
    hw = Hardware(monkeypatch, SimClock(1_000))
    gateway = SimGateway(hw)
    good = protocol.encode(LINE_CONFIG)
    flipped = bytearray(good)
    flipped[5] ^= 0x40
    hw.uart.send(b"\x13\x37noise" + bytes(flipped) + good[: len(good) // 2] + good)
    gateway.exchange(0)
    assert gateway.of(protocol.Config) == [LINE_CONFIG]
    status = gateway.of(protocol.Status)[-1]
    assert status.flags & protocol.FLAG_CONFIGURED
    assert status.crc_errors + status.length_errors == 3  # the noise, the flipped and the cut frame

    gateway.send(LINE_CONFIG._replace(reject_us=1), protocol.Trigger(1, 2, 3))
    gateway.exchange(0)
    assert gateway.errors(protocol.ERROR_BAD_CONFIG) == [0]
    assert gateway.errors(protocol.ERROR_UNEXPECTED_MESSAGE) == [protocol.TRIGGER]
    assert gateway.of(protocol.Config) == [LINE_CONFIG]  # still the one it runs
    assert hw.board.line.reject_us == LINE_CONFIG.reject_us


def test_board_reports_the_gateways_lost_heartbeat_and_rejects_without_verdicts(monkeypatch):
    hw = Hardware(monkeypatch, SimClock(0))
    gateway = SimGateway(hw)
    belt = Belt(hw, random.Random(3), bounce=False)
    gateway.send(LINE_CONFIG)
    for _ in range(5):
        gateway.exchange(0)
        hw.clock.advance(50_000)
    gateway.heartbeats = False
    for _ in range(8):
        gateway.exchange(0)
        hw.clock.advance(50_000)
    (silent_ms,) = gateway.errors(protocol.ERROR_GATEWAY_LOST)
    assert 300 < silent_ms <= 400  # 3 heartbeat periods of 100 ms
    belt.packs = [Pack(100, 80)]
    belt.move(100 + LINE_CONFIG.eject_counts + 10, 20_000)
    hw.clock.advance(1_000_000)
    gateway.exchange(belt.position)
    assert [(e.item_id, e.reason) for e in gateway.of(protocol.Ejected)] == [(1, protocol.REASON_NO_VERDICT)]
    assert not gateway.of(protocol.Status)[-1].flags & protocol.FLAG_GATEWAY_ALIVE


# -- the protocol


SAMPLES = (
    protocol.Heartbeat(4_000_000_000),
    protocol.Status(2**40, -(2**35), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 3),
    protocol.Trigger(1, -5, 0),
    protocol.Trigger(2**32 - 1, 2**62, 2**63),
    protocol.Ejected(17, 123_456_789_012, 99, protocol.REASON_NO_VERDICT),
    protocol.Verdict(17, 1),
    protocol.Config(5, 3000, 200, 100, 20_000, 500),
    protocol.Error(protocol.ERROR_LATE_VERDICT, 17),
)


def test_crc_is_ccitt_false():
    assert protocol.crc16(b"123456789") == 0x29B1  # the catalogue's check value
    data = random.Random(1).randbytes(300)
    assert protocol.crc16(data) == binascii.crc_hqx(data, 0xFFFF)


@given(st.binary(max_size=700))
def test_cobs_round_trip_has_no_zero(data):
    encoded = protocol.cobs_encode(data)
    assert 0 not in encoded
    assert protocol.cobs_decode(encoded) == data


def test_every_single_byte_flip_is_dropped_and_the_next_frame_arrives():
    frame, following = protocol.encode(SAMPLES[1]), protocol.encode(SAMPLES[5])
    for index in range(1, len(frame) - 1):
        for flip in (0x01, 0x80, 0xFF):
            corrupted = bytearray(frame)
            corrupted[index] ^= flip
            receiver = protocol.Receiver()
            assert receiver.feed(bytes(corrupted) + following) == [SAMPLES[5]]
            assert receiver.crc_errors + receiver.length_errors + receiver.unknown_types >= 1


def read_messages(fd: int, receiver: protocol.Receiver, count: int, timeout_s: float = 5.0) -> list:
    messages, deadline = [], time.monotonic() + timeout_s
    while len(messages) < count and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            messages += receiver.feed(os.read(fd, 4096))
    return messages


def test_every_message_type_round_trips_through_a_serial_line(pty_pair):
    master, path = pty_pair
    with serial.Serial(path, 115200, timeout=0.05) as port:
        os.write(master, b"".join(protocol.encode(m) for m in SAMPLES))  # board -> gateway
        received, receiver, deadline = [], protocol.Receiver(), time.monotonic() + 5
        while len(received) < len(SAMPLES) and time.monotonic() < deadline:
            received += receiver.feed(port.read(max(1, port.in_waiting)))
        assert received == list(SAMPLES)
        port.write(b"".join(protocol.encode(m) for m in SAMPLES))  # gateway -> board
        assert read_messages(master, protocol.Receiver(), len(SAMPLES)) == list(SAMPLES)
    assert {protocol.message_type(m) for m in SAMPLES} == {
        protocol.HEARTBEAT,
        protocol.STATUS,
        protocol.TRIGGER,
        protocol.EJECTED,
        protocol.VERDICT,
        protocol.CONFIG,
        protocol.ERROR,
    }


def with_crc(payload: bytes) -> bytes:
    crc = protocol.crc16(payload)
    return payload + bytes((crc >> 8, crc & 0xFF))


def framed(content: bytes) -> bytes:
    """``content`` (payload and CRC, right or wrong) on the wire as one frame."""
    return b"\x00" + protocol.cobs_encode(content) + b"\x00"


def test_corrupted_frames_are_dropped_counted_and_the_next_one_arrives(pty_pair):
    master, path = pty_pair
    good = [protocol.encode(m) for m in SAMPLES[:5]]
    verdict = bytes((protocol.VERDICT,)) + (17).to_bytes(4, "little") + b"\x01"
    bit_flipped = bytearray(with_crc(verdict))
    bit_flipped[2] ^= 0x10
    stream = (
        good[0]
        + framed(bytes(bit_flipped))
        + good[1][:9]  # cut short: the next frame's delimiter ends it
        + good[2]
        + b"line noise \xff\xfe between frames"
        + good[3]
        + framed(with_crc(bytes((0x55, 1, 2, 3))))  # a type nobody knows
        + framed(with_crc(verdict + b"\x00"))  # a VERDICT one byte too long
        + bytes(range(1, 256)) * 2  # noise longer than any frame
        + good[4]
    )
    with serial.Serial(path, 115200, timeout=0.05) as port:
        os.write(master, stream)
        received, receiver, deadline = [], protocol.Receiver(), time.monotonic() + 5
        while len(received) < 4 and time.monotonic() < deadline:
            received += receiver.feed(port.read(max(1, port.in_waiting)))
    assert received == [SAMPLES[0], SAMPLES[2], SAMPLES[3], SAMPLES[4]]
    assert (receiver.frames, receiver.unknown_types) == (4, 1)
    assert receiver.crc_errors == 2  # the bit flip, the cut frame (still valid COBS)
    assert receiver.length_errors == 3  # the noise (no COBS block), the long VERDICT, the noise past MAX_FRAME


# -- the gateway's driver against the firmware, over a pseudo-terminal


class BoardRunner:
    """The firmware's main loop on the pseudo-terminal's master end, in real time, with a belt
    that moves 4 counts per turn (about 4000 counts a second)."""

    def __init__(self, hw: Hardware, master: int, belt: Belt, end: int) -> None:
        self.hw, self.master, self.belt, self.end = hw, master, belt, end
        self.running = threading.Event()
        self.running.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="board", daemon=True)

    def __enter__(self) -> BoardRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.running.is_set():
                time.sleep(0.005)
                continue
            if select.select([self.master], [], [], 0.001)[0]:
                self.hw.uart.send(os.read(self.master, 4096))
            self.hw.board.poll()
            if out := self.hw.uart.take():
                os.write(self.master, out)
            if self.belt.packs and self.belt.position < self.end:
                self.belt.move(4, 4000)


def triggers_within(driver: IoBoard, timeout_s: float):
    """driver.triggers() that ends after ``timeout_s`` at the latest."""
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        yield from driver.triggers(stop)
    finally:
        timer.cancel()


def test_ioboard_drives_the_board_end_to_end(monkeypatch, pty_pair):
    master, path = pty_pair
    hw = Hardware(monkeypatch, WallClock())
    belt = Belt(hw, random.Random(5))
    settings = IoBoardSettings(
        debounce_ms=2, eject_counts=600, trigger_us=150, strobe_us=80, reject_us=5000, heartbeat_ms=50
    )
    problems, ejections = [], []
    driver = IoBoard(path, 115200, settings, on_problem=problems.append, on_ejected=ejections.append)
    packs = [Pack(100 + 200 * i, 60) for i in range(6)]
    with BoardRunner(hw, master, belt, end=packs[-1].lead + 600 + 100) as runner:
        try:
            driver.start()
            assert hw.board.link.configured and hw.board.line.eject_counts == 600
            belt.packs = packs
            triggers = []
            for trigger in triggers_within(driver, 10):
                triggers.append(trigger)
                if trigger.item_id != 6:  # item 6 gets no verdict
                    driver.verdict(trigger.item_id, reject=trigger.item_id in (2, 5))
                if len(triggers) == len(packs):
                    break
            assert [(t.item_id, t.encoder) for t in triggers] == [(i + 1, p.lead) for i, p in enumerate(packs)]
            assert wait_for(lambda: len(ejections) == 3)
            assert [(e.item_id, e.encoder, e.reason) for e in ejections] == [
                (2, packs[1].lead + 600, "verdict"),
                (5, packs[4].lead + 600, "verdict"),
                (6, packs[5].lead + 600, "no_verdict"),
            ]
            driver.verdict(999, reject=False)
            assert wait_for(lambda: driver.counts.board_errors == {"unknown_item": 1})
            assert any("999" in p for p in problems)
            assert wait_for(lambda: driver.counts.status is not None and driver.counts.status.passed == 3)
            counts = driver.counts
            assert (counts.triggers, counts.verdicts, counts.ejected, counts.ejected_no_verdict) == (6, 6, 2, 1)
            assert counts.board_alive and counts.status.flags & protocol.FLAG_GATEWAY_ALIVE

            runner.running.clear()  # the board goes quiet: its heartbeat is missed within 3 periods
            assert wait_for(lambda: not driver.counts.board_alive, timeout=1)
            assert driver.counts.heartbeat_losses == 1
            assert any("no heartbeat from the I/O board" in p for p in problems)

            # noise and a broken frame on the way to the gateway are counted; the next frame arrives
            flipped = bytearray(protocol.encode(protocol.Trigger(77, 1, 2)))
            flipped[4] ^= 0x08
            os.write(master, b"\xffnoise" + bytes(flipped) + protocol.encode(protocol.Trigger(78, 3, 4)))
            following = next(triggers_within(driver, 5))
            assert (following.item_id, following.encoder) == (78, 3)
            assert driver.counts.crc_errors + driver.counts.length_errors == 2

            hw.restart()  # the board lost power and comes back with its defaults: it is configured again
            runner.running.set()
            assert wait_for(lambda: hw.board.link.configured and driver.counts.board_alive)
            assert hw.board.line.config == settings.message()
            assert any("power-on defaults" in p for p in problems)
        finally:
            driver.close()


def test_ioboard_start_fails_when_no_board_answers(pty_pair):
    _, path = pty_pair
    driver = IoBoard(path, 115200, IoBoardSettings())
    with pytest.raises(IoBoardError, match="no answer from the I/O board"):
        driver.start(timeout_s=0.3)


def test_ioboard_settings_out_of_range_are_refused_before_sending():
    with pytest.raises(ValueError, match="out of range"):
        IoBoardSettings(reject_us=0)
