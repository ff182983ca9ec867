"""Frame sources: everything that turns a trigger into an image with an item id."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

import numpy as np

from plc.registers import PlcTrigger

from ..config import Config


@dataclass(frozen=True, slots=True)
class LabelTruth:
    """What the simulator printed on an item and the verdict a correct station reaches."""

    defect: str  # "good" or one of the simulator's defects
    element_string: str | None  # the GS1 element string printed (GS separators), None if no code
    expected_reasons: tuple[str, ...]  # empty = the item must pass


@dataclass(frozen=True, slots=True)
class Frame:
    """One trigger: an image of one item (or why there is none)."""

    item_id: int  # 1, 2, 3 … per run, one per trigger
    image: np.ndarray | None  # 2-D uint8 grayscale
    t_trigger: float  # time.monotonic() at the trigger
    timestamp: datetime  # wall-clock time of the trigger (UTC)
    origin: str  # "simulator", the file name, the camera
    truth: LabelTruth | None = None
    error: str | None = None  # why there is no image
    plc_item_id: int | None = None  # the PLC's (or the I/O board's) id for the item it triggered
    encoder: int = 0  # the PLC's (or the board's) encoder count at that trigger


@dataclass(frozen=True, slots=True)
class Trigger:
    """The moment an item is to be captured."""

    item_id: int  # the station's: 1, 2, 3 … per run
    t: float  # time.monotonic()
    timestamp: datetime  # wall clock, UTC
    plc_item_id: int | None = None
    encoder: int = 0

    def frame(self, image: np.ndarray | None, origin: str, truth: LabelTruth | None = None, error: str | None = None):
        """The frame captured at this trigger."""
        return Frame(self.item_id, image, self.t, self.timestamp, origin, truth, error, self.plc_item_id, self.encoder)


class PlcTriggers:
    """Trigger edges from the PLC (taken on the Modbus side), queued for the source. The queue is
    bounded: a trigger that does not fit, or comes after the source stopped, is refused and the
    PLC sees an overrun instead of an acknowledged trigger that is never captured."""

    def __init__(self, size: int = 64) -> None:
        self._queue: queue.Queue[PlcTrigger] = queue.Queue(size)
        self._lock = threading.Lock()
        self._closed = False

    def offer(self, trigger: PlcTrigger) -> bool:
        with self._lock:
            if self._closed:
                return False
            try:
                self._queue.put_nowait(trigger)
            except queue.Full:
                return False
            return True

    def triggers(self, stop: threading.Event) -> Iterator[Trigger]:
        """One station trigger per PLC trigger until ``stop``; the triggers already queued then
        are still captured (the PLC is tracking those items), later ones are refused."""
        for item_id in itertools.count(1):
            plc = self._next(stop)
            if plc is None:
                return
            yield Trigger(item_id, plc.t, datetime.now(UTC), plc.item_id, plc.encoder)

    def _next(self, stop: threading.Event) -> PlcTrigger | None:
        """The next queued trigger; None once ``stop`` is set and the queue is empty."""
        while not stop.is_set():
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        with self._lock:
            self._closed = True  # from now on offer() refuses: an overrun, not a lost item
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None


class Source(Protocol):
    # True when items arrive whether or not the station is ready (a real line): if the vision
    # queue is full the item is reported "not inspected". False when the source waits for the
    # station (replay, benchmarks).
    realtime: bool

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Frames in trigger order until the source ends or ``stop`` is set."""
        ...


def triggers(rate_ppm: float, stop: threading.Event, plc: PlcTriggers | None = None) -> Iterator[Trigger]:
    """The PLC's triggers when given; otherwise a timer: ``rate_ppm`` per minute on a fixed
    schedule (a late item does not shift the ones after it), all at once when the rate is 0.
    Ends when ``stop`` is set."""
    if plc is not None:
        yield from plc.triggers(stop)
        return
    period = 60.0 / rate_ppm if rate_ppm > 0 else 0.0
    start = time.monotonic()
    for item_id in itertools.count(1):
        if stop.wait(max(0.0, start + (item_id - 1) * period - time.monotonic())):
            return
        yield Trigger(item_id, time.monotonic(), datetime.now(UTC))


def open_source(config: Config, today: date | None = None, plc: PlcTriggers | None = None, board=None) -> Source:
    """The source the configuration asks for; ``plc`` delivers the triggers when
    ``[source] trigger = "plc"``, ``board`` (gateway.ioboard.IoBoard) when ``"ioboard"``."""
    source = config.source
    if source.kind == "folder":
        from .folder import FolderSource

        return FolderSource(source.folder, plc)
    if source.kind in ("opencv", "picamera2"):
        from .camera import CameraSource, open_camera
        from .gpio import GpioTriggers

        gpio = GpioTriggers(source.gpio) if source.trigger == "gpio" else None
        return CameraSource(source, open_camera(source), plc, gpio, board)
    from .simulator import LineSimulator

    return LineSimulator(source.simulator, config.job, today=today, plc=plc)
