"""Frame sources: everything that turns a trigger into an image with an item id."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

import numpy as np

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


class Source(Protocol):
    # True when items arrive whether or not the station is ready (a real line): if the vision
    # queue is full the item is reported "not inspected". False when the source waits for the
    # station (replay, benchmarks).
    realtime: bool

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Frames in trigger order until the source ends or ``stop`` is set."""
        ...


def triggers(rate_ppm: float, stop: threading.Event) -> Iterator[int]:
    """Item ids 1, 2, 3 … each yielded at its trigger time, ``rate_ppm`` per minute on a fixed
    schedule (a late item does not shift the ones after it); all at once when the rate is 0.
    Ends when ``stop`` is set."""
    period = 60.0 / rate_ppm if rate_ppm > 0 else 0.0
    start = time.monotonic()
    for item_id in itertools.count(1):
        if stop.wait(max(0.0, start + (item_id - 1) * period - time.monotonic())):
            return
        yield item_id


def open_source(config: Config, today: date | None = None) -> Source:
    """The source the configuration asks for."""
    source = config.source
    if source.kind == "folder":
        from .folder import FolderSource

        return FolderSource(source.folder)
    from .simulator import LineSimulator

    return LineSimulator(source.simulator, config.job, today=today)
