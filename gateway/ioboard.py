"""The gateway's driver for the line I/O board (firmware/: an RP2040 beside the belt that takes
the photo-eye and the encoder, fires the camera trigger, the strobe and the ejector, and
ejects by encoder count). It speaks the board's serial protocol (firmware/PROTOCOL.md) through
the board's own protocol module::

    board = IoBoard("/dev/ttyUSB0", 115200, IoBoardSettings(eject_counts=2400))
    board.start()                          # opens the port, sends CONFIG, waits for the board's answer
    for trigger in board.triggers(stop):   # one per pack at the photo-eye, until stop is set
        ...
        board.verdict(trigger.item_id, reject)
    board.counts                           # counters and the board's latest STATUS
    board.close()

One thread (``ioboard``) reads the board's frames, sends the gateway's heartbeat, watches the
board's, and reopens the port after a failure (then sends CONFIG again, as it does whenever a
STATUS says the board runs its power-on defaults). Problems (the board's heartbeat lost, its
ERROR messages, a failed port) are logged and passed to ``on_problem``; ejections to
``on_ejected``; both are called on that thread. An item whose verdict is late or lost is
rejected by the board: the driver reports, it never has to make up for it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import serial

from firmware import protocol

log = logging.getLogger(__name__)

REOPEN_S = 1.0  # between attempts to reopen a failed port
HEARTBEATS_LOST = 3  # heartbeat periods without one before the board counts as lost
TRIGGER_QUEUE = 1024  # triggers not yet taken from triggers(); beyond, they are dropped and counted


class IoBoardError(RuntimeError):
    """The board cannot be used: no answer, or it refused the configuration."""


@dataclass(frozen=True, slots=True)
class IoBoardSettings:
    """What the gateway sends the board in CONFIG (ranges in firmware/PROTOCOL.md)."""

    debounce_ms: int = 5  # photo-eye: a pack needs the input low this long before its edge
    eject_counts: int = 3000  # encoder counts from the photo-eye to the ejector
    trigger_us: int = 200  # camera trigger pulse
    strobe_us: int = 100  # strobe pulse, starting with the trigger
    reject_us: int = 20_000  # ejector pulse
    heartbeat_ms: int = 500  # both sides send a HEARTBEAT this often; 3 missed = lost

    def __post_init__(self) -> None:
        if not protocol.valid_config(self.message()):
            raise ValueError(f"I/O board settings out of range (see firmware/PROTOCOL.md): {self}")

    def message(self) -> protocol.Config:
        return protocol.Config(
            self.debounce_ms, self.eject_counts, self.trigger_us, self.strobe_us, self.reject_us, self.heartbeat_ms
        )


@dataclass(frozen=True, slots=True)
class BoardTrigger:
    """A pack at the photo-eye, as the board saw it."""

    item_id: int  # the board's: 1, 2, 3 … from power-on
    encoder: int  # encoder count at the photo-eye edge (signed, from power-on)
    board_time_us: int  # the board's clock at the edge, µs from power-on
    t: float  # time.monotonic() when the gateway received it


@dataclass(frozen=True, slots=True)
class Ejection:
    """The ejector fired for an item."""

    item_id: int
    encoder: int
    board_time_us: int
    reason: str  # "verdict" (the gateway said reject) or "no_verdict" (none in time: fail-safe)


@dataclass(frozen=True, slots=True)
class IoBoardCounts:
    triggers: int  # TRIGGERs received
    trigger_overruns: int  # TRIGGERs dropped because triggers() was not taking them
    verdicts: int  # VERDICTs sent
    ejected: int  # EJECTED on a reject verdict
    ejected_no_verdict: int  # EJECTED without a verdict
    board_errors: dict[str, int]  # the board's ERROR messages by name (protocol.ERRORS)
    crc_errors: int  # frames from the board dropped here
    length_errors: int
    unknown_types: int
    heartbeat_losses: int
    board_alive: bool  # the board's heartbeat came within 3 periods
    status: protocol.Status | None  # the board's latest STATUS: its own counters


class IoBoard:
    """The board on serial ``port`` at ``baudrate`` (8N1), configured with ``settings``."""

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        settings: IoBoardSettings | None = None,
        on_problem: Callable[[str], None] | None = None,
        on_ejected: Callable[[Ejection], None] | None = None,
    ) -> None:
        self.port, self.baudrate = port, baudrate
        self.settings = settings or IoBoardSettings()
        self.on_problem, self.on_ejected = on_problem, on_ejected
        self._serial: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self._receiver = protocol.Receiver()
        self._triggers: queue.Queue[BoardTrigger] = queue.Queue(TRIGGER_QUEUE)
        self._stop = threading.Event()
        self._answered = threading.Event()  # the board echoed our CONFIG, or refused it
        self._refused = False
        self._thread = threading.Thread(target=self._run, name="ioboard", daemon=True)
        self._counts = Counter()
        self._board_errors: Counter[str] = Counter()
        self._status: protocol.Status | None = None
        self._beat = 0
        self._next_beat = 0.0
        self._board_seen = 0.0
        self._board_alive = False

    # -- API

    def start(self, timeout_s: float = 2.0) -> None:
        """Opens the port, configures the board and starts the reader thread. Raises OSError
        when the port cannot be opened, IoBoardError when the board does not take CONFIG."""
        self._serial = self._open()
        self._board_seen = time.monotonic()
        self._thread.start()
        self._send(self.settings.message())
        if not self._answered.wait(timeout_s):
            self.close()
            raise IoBoardError(
                f"no answer from the I/O board on {self.port} within {timeout_s:g} s "
                f"(wrong port or baud rate, or the firmware is not running?)"
            )
        if self._refused:
            self.close()
            raise IoBoardError(f"the I/O board refused its configuration {self.settings}")

    def triggers(self, stop: threading.Event) -> Iterator[BoardTrigger]:
        """The board's triggers in order, until ``stop`` is set."""
        while not stop.is_set():
            try:
                yield self._triggers.get(timeout=0.05)
            except queue.Empty:
                pass

    def verdict(self, item_id: int, reject: bool) -> None:
        """Tells the board whether to eject ``item_id``. Thread-safe."""
        if self._send(protocol.Verdict(item_id, 1 if reject else 0)):
            self._counts["verdicts"] += 1

    @property
    def counts(self) -> IoBoardCounts:
        c = self._counts
        return IoBoardCounts(
            triggers=c["triggers"],
            trigger_overruns=c["trigger_overruns"],
            verdicts=c["verdicts"],
            ejected=c["ejected"],
            ejected_no_verdict=c["ejected_no_verdict"],
            board_errors=dict(self._board_errors),
            crc_errors=self._receiver.crc_errors,
            length_errors=self._receiver.length_errors,
            unknown_types=self._receiver.unknown_types,
            heartbeat_losses=c["heartbeat_losses"],
            board_alive=self._board_alive,
            status=self._status,
        )

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._write_lock:
            if self._serial is not None:
                self._serial.close()
                self._serial = None

    # -- the reader thread

    def _run(self) -> None:
        while not self._stop.is_set():
            port = self._serial
            if port is None:
                self._reopen()
                continue
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                self._port_failed(exc)
                continue
            now = time.monotonic()
            for message in self._receiver.feed(data):
                self._handle(message, now)
            self._heartbeats(now)

    def _handle(self, message, now: float) -> None:
        kind = type(message)
        if kind is protocol.Trigger:
            self._counts["triggers"] += 1
            try:
                self._triggers.put_nowait(BoardTrigger(message.item_id, message.encoder, message.time_us, now))
            except queue.Full:
                self._counts["trigger_overruns"] += 1
                self._problem(f"I/O board trigger for item {message.item_id} dropped: nobody takes the triggers")
        elif kind is protocol.Ejected:
            reason = protocol.REASONS.get(message.reason, str(message.reason))
            self._counts["ejected" if message.reason == protocol.REASON_VERDICT else "ejected_no_verdict"] += 1
            if self.on_ejected is not None:
                self.on_ejected(Ejection(message.item_id, message.encoder, message.time_us, reason))
        elif kind is protocol.Heartbeat:
            self._board_seen = now
            if not self._board_alive:
                self._board_alive = True
                log.info("I/O board on %s: heartbeat received", self.port)
        elif kind is protocol.Status:
            self._status = message
            if not message.flags & protocol.FLAG_CONFIGURED and self._answered.is_set():
                self._problem("the I/O board runs its power-on defaults (it restarted?): sending CONFIG again")
                self._send(self.settings.message())
        elif kind is protocol.Config:
            if message == self.settings.message():
                self._answered.set()
            else:
                self._problem(f"the I/O board answered CONFIG with {message}, not {self.settings.message()}")
        elif kind is protocol.Error:
            self._board_error(message)
        else:
            self._problem(f"unexpected message from the I/O board: {message}")

    def _board_error(self, error: protocol.Error) -> None:
        name = protocol.ERRORS.get(error.code, f"code_{error.code}")
        self._board_errors[name] += 1
        if error.code == protocol.ERROR_BAD_CONFIG:
            self._refused = True
            self._answered.set()
        detail = {
            protocol.ERROR_LATE_VERDICT: f"the verdict for item {error.detail} came after it passed the ejector",
            protocol.ERROR_UNKNOWN_ITEM: f"a verdict for item {error.detail}, which the board never triggered",
            protocol.ERROR_UNTRACKED: f"item {error.detail} could not be tracked (tracker full): not ejected",
            protocol.ERROR_EVENTS_LOST: f"{error.detail} events lost (the board's main loop fell behind)",
            protocol.ERROR_GATEWAY_LOST: f"no gateway heartbeat for {error.detail} ms",
        }.get(error.code, f"detail {error.detail}")
        self._problem(f"I/O board error {name}: {detail}")

    def _heartbeats(self, now: float) -> None:
        period = self.settings.heartbeat_ms / 1000
        if now >= self._next_beat:
            self._beat += 1
            self._send(protocol.Heartbeat(self._beat))
            self._next_beat = now + period
        silent = now - self._board_seen
        if self._board_alive and silent > HEARTBEATS_LOST * period:
            self._board_alive = False
            self._counts["heartbeat_losses"] += 1
            self._problem(f"no heartbeat from the I/O board on {self.port} for {silent * 1000:.0f} ms")

    # -- the port

    def _open(self) -> serial.Serial:
        if not os.path.exists(self.port):
            raise OSError(f"{self.port}: no such serial device (board plugged in? see ls /dev/serial/by-id/)")
        if not os.access(self.port, os.R_OK | os.W_OK):
            raise OSError(f"{self.port}: no permission to open it (add the user to the group dialout)")
        try:
            port = serial.Serial(self.port, self.baudrate, timeout=0.02)
        except serial.SerialException as exc:
            raise OSError(f"cannot open the I/O board's port: {exc}") from None
        port.reset_input_buffer()  # what came before we listened belongs to no one
        return port

    def _reopen(self) -> None:
        if self._stop.wait(REOPEN_S):
            return
        try:
            port = self._open()
        except OSError:
            return  # reported once when the port failed
        with self._write_lock:
            self._serial = port
        log.info("I/O board port %s reopened", self.port)
        self._send(self.settings.message())

    def _port_failed(self, exc: Exception) -> None:
        with self._write_lock:
            if self._serial is not None:
                self._serial.close()
                self._serial = None
        self._problem(f"I/O board port {self.port} failed: {exc}; reopening every {REOPEN_S:g} s")

    def _send(self, message) -> bool:
        with self._write_lock:
            if self._serial is None:
                return False
            try:
                self._serial.write(protocol.encode(message))
                return True
            except (serial.SerialException, OSError) as exc:
                failed = exc
        self._problem(f"cannot send {type(message).__name__} to the I/O board: {failed}")
        return False

    def _problem(self, text: str) -> None:
        log.warning("%s", text)
        if self.on_problem is not None:
            self.on_problem(text)
