"""The line simulator: a packaging line with a printer that sometimes fails, seen by a camera.

Every item carries its ground truth (what was printed, which defect, which verdict a correct
station reaches), so tests and the demo can check every verdict; except items printed with a
fading ink (``ink_fade_per_1000``), whose verdict depends on how far the grades have fallen.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np

from ..config import JobSection, SimulatorSection, gtin_check_digit
from . import Frame, LabelTruth, PlcTriggers, triggers
from .render import FrameRenderer, Print

DEMO_GTIN = "06901234567892"  # GS1 China prefix 690, valid check digit
DEMO_LOT = "A2611"
DEFECTS = (
    "low_contrast",
    "damaged_finder",
    "no_code",
    "wrong_lot",
    "expired",
    "duplicate_serial",
    "bad_check_digit",
    "missing_separator",
)
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class _Content:
    gtin: str
    production: date
    expiry: date
    lot: str
    serial: str


class LineSimulator:
    """Frames of simulated items at ``rate_ppm`` (or as fast as taken when the rate is 0)."""

    def __init__(
        self, config: SimulatorSection, job: JobSection, today: date | None = None, plc: PlcTriggers | None = None
    ) -> None:
        self.config = config
        self.job = job
        self.plc = plc
        self.realtime = config.rate_ppm > 0 or plc is not None
        self._today = today or date.today()
        self._rng = np.random.default_rng(config.seed)
        self._renderer = FrameRenderer(config)
        # Serials start with a run token: from the clock, so that runs never repeat a serial, or
        # from the seed, so that a seeded run repeats its items exactly.
        self._serial_prefix = _base36(int(time.time()) // 2 if config.seed is None else config.seed, 6)
        self._verified_serials: deque[str] = deque(maxlen=1000)
        shares = config.defects.model_dump()
        self._defects = ("good", *DEFECTS)
        self._weights = np.array([1 - sum(shares.values()), *(shares[d] for d in DEFECTS)])
        # Render one label now so the first item's capture time is not the renderer's start-up.
        self._renderer.render(Print(f"(01){DEMO_GTIN}", (), 30, 210), np.random.default_rng(0))

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for trigger in triggers(self.config.rate_ppm, stop, self.plc):
            label, truth = self._next_label(trigger.item_id)
            yield trigger.frame(self._renderer.render(label, self._rng), "simulator", truth)
            if trigger.item_id == self.config.items:  # the last one: do not wait for another trigger
                return

    def _next_label(self, item_id: int) -> tuple[Print, LabelTruth | None]:
        defect = str(self._rng.choice(self._defects, p=self._weights / self._weights.sum()))
        if defect == "duplicate_serial" and not self._verified_serials:
            defect = "good"  # nothing to duplicate yet
        content = _Content(
            gtin=self.job.gtin or DEMO_GTIN,
            production=self._today,
            expiry=self.job.expiry or self._today + timedelta(days=self.config.shelf_life_days),
            lot=self.job.lot or DEMO_LOT,
            serial=f"{self._serial_prefix}{item_id:05d}",
        )
        match defect:
            case "wrong_lot":
                content = replace(content, lot=f"{content.lot[:17]}X{int(self._rng.integers(10, 99))}")
            case "expired":
                content = replace(content, expiry=self._today - timedelta(days=int(self._rng.integers(1, 400))))
            case "duplicate_serial":
                content = replace(content, serial=str(self._rng.choice(list(self._verified_serials))))
            case "bad_check_digit":
                body = content.gtin[:13]
                content = replace(content, gtin=body + str((gtin_check_digit(body) + 1) % 10))
        if defect == "missing_separator":
            # The printer dropped the GS after the lot: (10) swallows "21" + serial. GS1 limits
            # (10) to 20 characters, so a long serial is cut as a printer would.
            lot_and_serial = f"(10){(content.lot + '21' + content.serial)[:20]}"
        else:
            lot_and_serial = f"(10){content.lot}(21){content.serial}"
        ink, paper = (
            (self._rng.uniform(125, 135), self._rng.uniform(195, 210))
            if defect == "low_contrast"
            else (self._rng.uniform(15, 40), self._rng.uniform(200, 225))
        )
        fade = self.config.ink_fade_per_1000 * (item_id - 1) / 1000
        ink = min(ink + fade, paper)  # a dry printhead ends up printing nothing, never lighter than the label
        hri = f"(01){content.gtin}(11){_yymmdd(content.production)}(17){_yymmdd(content.expiry)}{lot_and_serial}"
        lines = (
            f"(01) {content.gtin}",
            f"(11) {_yymmdd(content.production)}",
            f"(17) {_yymmdd(content.expiry)}",
            f"(10) {content.lot}",
            f"(21) {content.serial}",
        )
        label = Print(
            hri=None if defect == "no_code" else hri,
            text_lines=lines,
            ink=ink,
            paper=paper,
            smudge=defect == "damaged_finder",
        )
        expected = self._expected_reasons(defect)
        if not expected:
            self._verified_serials.append(content.serial)
        if fade >= 1:
            # Where a faded print crosses the minimum grade (or stops being read) is what the
            # station measures; the simulator cannot know it in advance, so it claims no verdict.
            return label, None
        element_string = None if label.hri is None else _element_string(hri)
        return label, LabelTruth(defect, element_string, expected)

    def _expected_reasons(self, defect: str) -> tuple[str, ...]:
        """The reasons a correct station gives, given what the production order lets it check."""
        match defect:
            case "good":
                return ()
            case "low_contrast":
                return ("grade_below_min",)
            case "damaged_finder" | "no_code":
                return ("no_read",)
            case "wrong_lot":
                return ("wrong_lot",) if self.job.lot else ()
            case "expired":
                return ("expired",)
            case "duplicate_serial":
                return ("duplicate_serial",)
            case "bad_check_digit":
                return ("gs1_check_digit",)
            case "missing_separator":
                if "21" in self.job.required_ais:
                    return ("gs1_missing_separator",)
                return ("wrong_lot",) if self.job.lot else ()  # the lot swallowed the serial
        raise AssertionError(defect)


def _element_string(hri: str) -> str:
    """``(01)…(10)LOT(21)SER`` → ``01…10LOT<GS>21SER``: GS after each variable field but the last."""
    fixed_length = {"01", "11", "17"}
    parts = [p.split(")", 1) for p in hri[1:].split("(")]
    out = []
    for i, (ai, value) in enumerate(parts):
        out.append(ai + value)
        if ai not in fixed_length and i < len(parts) - 1:
            out.append("\x1d")
    return "".join(out)


def _yymmdd(day: date) -> str:
    return day.strftime("%y%m%d")


def _base36(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))
