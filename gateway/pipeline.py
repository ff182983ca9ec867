"""The inspection pipeline: source → vision → content rules → verdict → outputs.

Threads and queues:

    source thread ──(bounded queue)──► vision workers ──► reorder buffer ──► decision (caller's thread) ──► sink

* The vision queue is bounded. A realtime source (a line that does not wait) never blocks: when
  the queue is full the item is decided at once as ``not_inspected``, counted and rejected. A
  non-realtime source (replay, benchmark) waits instead.
* Vision workers run in parallel; the reorder buffer hands items to the decision stage strictly
  in item-id order, so outputs stay in line order and serial checks are deterministic.
* Every triggered item gets exactly one verdict, whatever fails on the way.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from vision.grade import Grade, GradingSettings, grade_symbol
from vision.reader import DataMatrixReader, Reader, open_reader, warm_up_frame
from vision.symbol import Roi, Symbol

from .config import Config, JobSection
from .grading import grade_findings, line_grading
from .reasons import PRECEDENCE, Finding, ordered
from .rules import Content, check_content, product_findings
from .serials import SerialStore
from .sources import Frame, Source
from .udid import Product, ProductMaster

log = logging.getLogger(__name__)

STAGES = ("capture", "queue", "vision", "reorder", "rules", "total")


@dataclass(frozen=True, slots=True)
class Inspection:
    """What the vision stage saw on one frame."""

    frame: Frame
    t_queued: float  # when the source handed the frame over
    t_vision_start: float
    t_vision_end: float
    symbols: tuple[Symbol, ...] = ()
    grade: Grade | None = None
    finding: Finding | None = None  # why the frame was not inspected (image, overflow, reader failure)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The station's decision for one item."""

    frame: Frame
    reasons: tuple[str, ...]  # reason codes in precedence order; empty = pass
    findings: tuple[Finding, ...]  # the specific faults behind the reasons
    symbol: Symbol | None
    grade: Grade | None
    content: Content | None
    timings_ms: dict[str, float]  # per stage, see STAGES
    t_decided: float  # time.monotonic()
    job_id: str | None = None  # the production order active when it was decided (None: stopped)
    product: Product | None = None  # the product master's entry for the DI (udid.enabled)

    @property
    def item_id(self) -> int:
        return self.frame.item_id

    @property
    def passed(self) -> bool:
        return not self.reasons


class ReorderBuffer:
    """Collects inspections in any order and releases them in item-id order 1, 2, 3 …"""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[int, Inspection] = {}
        self._next = 1
        self._last: int | None = None

    def put(self, inspection: Inspection) -> None:
        with self._cond:
            self._pending[inspection.frame.item_id] = inspection
            self._cond.notify()

    def close(self, last_item_id: int) -> None:
        """No item after ``last_item_id`` will come."""
        with self._cond:
            self._last = last_item_id
            self._cond.notify()

    def __iter__(self):
        while True:
            with self._cond:
                while self._next not in self._pending and (self._last is None or self._next <= self._last):
                    self._cond.wait()
                if self._next not in self._pending:
                    return
                inspection = self._pending.pop(self._next)
                self._next += 1
            yield inspection


def line_reader(config: Config) -> Reader:
    """The reader the line's configuration asks for."""
    v = config.vision
    return open_reader(v.decoder, v.polarity, v.second_opinion, v.size_hint, v.max_symbols)


class Pipeline:
    """Inspects every frame of a source and hands each verdict to ``sink`` in item order."""

    def __init__(
        self,
        config: Config,
        reader: Reader,
        sink: Callable[[Verdict], None],
        serials: SerialStore | None = None,
        today: Callable[[], date] = date.today,
        grading: GradingSettings | None | str = "line",
    ) -> None:
        """``grading``: "line" grades as the config says (with its calibration file), None
        does not grade, or explicit settings."""
        self.config = config
        self.reader = reader
        self.grading = line_grading(config, today()) if grading == "line" else grading
        self.sink = sink
        # without a store (tests, benchmarks) serials are unique within this pipeline's run
        self.serials = serials or SerialStore(Path(":memory:"), line=config.line.name, job=config.job.id)
        self.job: JobSection | None = config.job  # replaced while running by set_job
        self.products = ProductMaster(config.line.data_dir / "udigate.db") if config.udid.enabled else None
        self.today = today
        self.roi = Roi(*config.vision.roi) if config.vision.roi else None
        self.source_error: BaseException | None = None
        self._realtime = False  # the running source's, set by run()

    def set_job(self, job: JobSection | None) -> None:
        """Switch the production order (None: stopped, every item is rejected as no_active_job).
        Items decided after this call use the new order."""
        self.serials.set_job(job.id if job is not None else "")
        self.job = job

    def warm_up(self) -> None:
        """Load the reader's, the grader's and the rules' tables now rather than on the first item."""
        self.reader.warm_up()
        if self.grading is not None:
            frame = warm_up_frame()
            grade_symbol(frame, DataMatrixReader().read(frame)[0], self.grading)
        check_content("010690123456789217261231", "]d2", self.config.job, self.today())

    def run(self, source: Source, stop: threading.Event) -> int:
        """Run until the source ends or ``stop`` is set, then drain: every frame already
        triggered is inspected and decided. Returns the number of items decided."""
        self._realtime = source.realtime
        frames: queue.Queue[tuple[Frame, float] | None] = queue.Queue(self.config.vision.queue_size)
        reorder = ReorderBuffer()
        workers = [
            threading.Thread(target=self._inspect_frames, args=(frames, reorder), name=f"vision-{i}", daemon=True)
            for i in range(self.config.vision.workers)
        ]
        feeder = threading.Thread(
            target=self._feed, args=(source, stop, frames, reorder, len(workers)), name="source", daemon=True
        )
        for thread in (*workers, feeder):
            thread.start()
        decided = 0
        try:
            for inspection in reorder:
                self.sink(self._decide(inspection))
                decided += 1
        except BaseException:
            stop.set()  # no more triggers; the source and the workers wind down, the caller gets the error
            raise
        feeder.join()
        for worker in workers:
            worker.join()
        return decided

    def _feed(
        self, source: Source, stop: threading.Event, frames: queue.Queue, reorder: ReorderBuffer, workers: int
    ) -> None:
        last_item_id = 0
        try:
            for frame in source.frames(stop):
                last_item_id = frame.item_id
                now = time.monotonic()
                if frame.image is None:
                    reorder.put(
                        Inspection(frame, now, now, now, finding=Finding("image_error", frame.error or "no image"))
                    )
                elif not source.realtime:
                    frames.put((frame, now))
                else:
                    try:
                        frames.put_nowait((frame, now))
                    except queue.Full:
                        reorder.put(
                            Inspection(
                                frame,
                                now,
                                now,
                                now,
                                finding=Finding(
                                    "not_inspected",
                                    f"all {self.config.vision.workers} vision workers busy and "
                                    f"{self.config.vision.queue_size} frames waiting",
                                ),
                            )
                        )
        except Exception as exc:  # a failing source ends the run; what was triggered is still decided
            log.exception("the frame source failed")
            self.source_error = exc
        finally:
            reorder.close(last_item_id)
            for _ in range(workers):
                frames.put(None)

    def _inspect_frames(self, frames: queue.Queue, reorder: ReorderBuffer) -> None:
        while (job := frames.get()) is not None:
            frame, t_queued = job
            start = time.monotonic()
            try:
                symbols = self.reader.read(frame.image, self.roi)
                grade = None
                if symbols and self.grading is not None:
                    grade = grade_symbol(frame.image, symbols[0], self.grading)
                reorder.put(Inspection(frame, t_queued, start, time.monotonic(), symbols, grade))
            except Exception as exc:
                log.exception("vision failed on item %d (%s)", frame.item_id, frame.origin)
                finding = Finding("vision_error", f"{type(exc).__name__}: {exc}")
                reorder.put(Inspection(frame, t_queued, start, time.monotonic(), finding=finding))

    def _decide(self, inspection: Inspection) -> Verdict:
        start = time.monotonic()
        frame = inspection.frame
        job = self.job  # one order for the whole decision, even if it changes meanwhile
        findings: list[Finding] = []
        symbol = inspection.symbols[0] if inspection.symbols else None
        content = product = None
        serial_key = None
        if inspection.finding is not None:
            findings.append(inspection.finding)
        elif symbol is None:
            findings.append(Finding("no_read", "no Data Matrix found or decoded"))
        else:
            if inspection.grade is not None:
                findings.extend(grade_findings(inspection.grade, self.config.grading))
            if symbol.disagreement:
                findings.append(Finding("decoder_disagreement", symbol.disagreement))
            if job is None:
                findings.append(Finding("no_active_job", "no production order is active (stopped)"))
            order = job or JobSection(required_ais=self.config.job.required_ais)
            today = self.today()
            content = check_content(symbol.text, symbol.symbology_identifier, order, today, self.config.content)
            findings.extend(content.findings)
            if self.products is not None:
                product = self.products.lookup(content.di) if content.di else None
                findings.extend(product_findings(content, product, self.config.udid.package_level, today))
            if content.di and content.serial:
                serial_key = (content.di, content.serial)
                first = self.serials.seen(*serial_key)
                if first is not None:
                    findings.append(_duplicate(serial_key, first))
        late_ms = (time.monotonic() - frame.t_trigger) * 1000
        if self._realtime and late_ms > self.config.plc.deadline_ms:
            message = f"decided {late_ms:.0f} ms after the trigger; the deadline is {self.config.plc.deadline_ms:g} ms"
            findings.append(Finding("deadline_missed", message))
        findings.sort(key=lambda f: PRECEDENCE[f.code])
        reasons = ordered(f.code for f in findings)
        if not reasons and serial_key is not None:
            # committed before the verdict leaves: a passed item's serial survives a kill
            try:
                first = self.serials.add(*serial_key, item_id=frame.item_id, timestamp=frame.timestamp)
            except sqlite3.Error as exc:
                log.error("serial registry: cannot record item %d: %s", frame.item_id, exc)
                first, findings = None, [Finding("serial_registry_error", f"{type(exc).__name__}: {exc}")]
            if first is not None:  # another writer recorded it in the meantime
                findings = [_duplicate(serial_key, first)]
            reasons = ordered(f.code for f in findings)
        decided = time.monotonic()
        timings = {
            "capture": inspection.t_queued - frame.t_trigger,
            "queue": inspection.t_vision_start - inspection.t_queued,
            "vision": inspection.t_vision_end - inspection.t_vision_start,
            "reorder": start - inspection.t_vision_end,
            "rules": decided - start,
            "total": decided - frame.t_trigger,
        }
        return Verdict(
            frame=frame,
            reasons=reasons,
            findings=tuple(findings),
            symbol=symbol,
            grade=inspection.grade,
            content=content,
            timings_ms={k: round(v * 1000, 3) for k, v in timings.items()},
            t_decided=decided,
            job_id=job.id if job is not None else None,
            product=product,
        )


def _duplicate(serial_key: tuple[str, str], first) -> Finding:
    di, serial = serial_key
    return Finding("duplicate_serial", f"DI {di} serial {serial!r} already verified: {first}")
