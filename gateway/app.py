"""The orchestrator: wires the configured source, the pipeline and every output of one line.

gateway = Gateway(config)
gateway.start()              # outputs up: broker, Modbus server, PLC simulator, MQTT, reject log
gateway.run(stop_event)      # inspect until the source ends or stop_event is set, then drain
summary = gateway.close()    # flush and stop everything, in dependency order
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from datetime import date

from plc.client import StationClient
from plc.delivery import DeliveryLog, Undelivered
from plc.link import Link
from plc.registers import Control, RegisterImage, ResultCode, Status
from plc.server import StationServer
from plc.simulator import Conveyor, PlcCounts, PlcSimulator

from . import epcis
from .broker import start_embedded_broker
from .config import Config, ModbusSection
from .ioloop import IoLoop
from .jobs import JobControl
from .mqtt import MqttPublisher, now_utc
from .outbox import Outbox, OutboxFull
from .pipeline import Pipeline, Verdict, line_reader
from .reasons import result_code
from .records import LineContext, item_record
from .rejects import RejectLog
from .serials import SerialStore
from .sources import PlcTriggers, open_source
from .stats import LineStats, Snapshot

log = logging.getLogger(__name__)


def modbus_link(modbus: ModbusSection) -> Link:
    """Where the station's Modbus peer is (or where it listens, in server mode)."""
    return Link(
        modbus.transport, modbus.host, modbus.port, modbus.serial_port, modbus.baudrate, modbus.parity, modbus.stopbits
    )


@dataclass(frozen=True)
class Endpoints:
    """Where the running line can be watched from outside."""

    mqtt: tuple[str, int] | None
    mqtt_broker: str | None  # "mosquitto" / "amqtt" when embedded
    topic_root: str | None
    modbus: str | None  # how to watch the registers (an mbpoll command), or where they are written
    web: str | None = None  # the review UI


@dataclass(frozen=True)
class Summary:
    stats: Snapshot
    plc: PlcCounts | None
    plc_delivered: int  # results the PLC took in time
    plc_undelivered: int  # results it did not (reported on MQTT …/plc/undelivered)
    mqtt_committed: int  # records committed to the outbox in this run
    mqtt_acknowledged: int  # records the broker acknowledged (earlier runs' included)
    mqtt_pending: int  # records left in the outbox: sent at the next start
    mqtt_refused: int  # records the full outbox could not keep
    rejects_logged: int
    passes_kept: int  # passed items kept in the review store for comparison
    rejects_failed: int
    pictures_skipped: int  # items stored without pictures: the writer was too far behind
    source_error: str | None

    @property
    def clean(self) -> bool:
        """True when every output received everything."""
        return (
            self.source_error is None
            and self.mqtt_pending == 0
            and self.mqtt_refused == 0
            and self.rejects_failed == 0
            and self.plc_undelivered == 0
            and (self.plc is None or self.plc.missed == 0)
        )


class Gateway:
    def __init__(self, config: Config, today: Callable[[], date] = date.today) -> None:
        self.config = config
        self.stats = LineStats(config.grading.min_grade, config.grading.warn_margin)
        self.context = LineContext(config.line.site, config.line.name, LineContext.new_run_id())
        self.plc_triggers = PlcTriggers() if config.source.trigger == "plc" else None
        self.board = None  # the line I/O board (firmware/), started with the other outputs
        if config.ioboard.enabled:
            from .ioboard import IoBoard, IoBoardSettings

            io = config.ioboard  # [ioboard] holds the board's settings under the same names
            settings = IoBoardSettings(**{f.name: getattr(io, f.name) for f in fields(IoBoardSettings)})
            self.board = IoBoard(io.port, io.baudrate, settings)
        self.source = open_source(config, today=today(), plc=self.plc_triggers, board=self.board)
        config.line.data_dir.mkdir(parents=True, exist_ok=True)
        self.serials = SerialStore(
            config.line.data_dir / "udigate.db",
            scope=config.serials.scope,
            line=config.line.name,
            job=config.job.id,
            run_id=self.context.run_id,
            durability=config.serials.durability,
        )
        self.pipeline = Pipeline(config, line_reader(config), self._emit, serials=self.serials, today=today)
        self.jobs = JobControl(config.job, config.line.data_dir, self._job_changed)
        self.pipeline.set_job(self.jobs.active)
        self.registers = RegisterImage(on_trigger=self.plc_triggers.offer if self.plc_triggers else None)
        # On a line every result must reach the PLC within the item's deadline; a replay has none.
        self.delivery = DeliveryLog(config.plc.deadline_ms / 1000 if self.source.realtime else None)
        self.io = IoLoop()
        self.mqtt: MqttPublisher | None = None
        self.mqtt_refused = 0
        # Alarms on MQTT …/alarms (retained), each raised and cleared with a log line.
        self.alarms = {"plc_heartbeat_lost": False, "outbox_filling": False, "outbox_full": False}
        self._outbox_stops_line = False  # outbox full with on_full = "stop_line"
        self.rejects: RejectLog | None = None
        self.web = None  # gateway.web.server.WebServer when web.enabled
        self.plc_simulator: PlcSimulator | None = None
        self.plc_client: StationClient | None = None  # client mode
        self._unlogged: list[Undelivered] = []  # undelivered results not yet in the log
        self._logged_at = 0.0
        self.endpoints = Endpoints(None, None, None, None)
        self._teardown = contextlib.ExitStack()
        self._teardown.callback(self.serials.close)

    def start(self) -> None:
        """Bring up every output; on failure, stop what was started and raise."""
        try:
            self._start()
        except BaseException:
            self._teardown.close()
            raise

    def _start(self) -> None:
        config = self.config
        config.line.data_dir.mkdir(parents=True, exist_ok=True)
        self.pipeline.warm_up()
        self.io.start()
        self._teardown.callback(self.io.stop)
        modbus_endpoint = mqtt_endpoint = None
        broker_kind = None

        if config.plc.modbus.enabled:
            modbus_endpoint = self._start_modbus(config.plc.modbus)

        if self.board is not None:  # the ejector's FIFO must hear every verdict from the first item
            self.board.start()
            self._teardown.callback(self.board.close)

        if config.mqtt.enabled:
            host, port = config.mqtt.host, config.mqtt.port
            if not host:
                broker = start_embedded_broker(port, self.io.loop)
                self._teardown.callback(broker.close)
                host, port, broker_kind = broker.host, broker.port, broker.kind
            outbox = Outbox(
                config.line.data_dir / "mqtt-outbox.db",
                int(config.mqtt.outbox.max_mb * 1e6),
                config.mqtt.outbox.durability,
            )
            self._teardown.callback(outbox.close)
            names = {"enterprise": config.line.enterprise, "site": config.line.site}
            names |= {"area": config.line.area, "line": config.line.name}
            self.mqtt = MqttPublisher(config.mqtt, names, host, port, outbox, on_job_command=self.jobs.command)
            self.mqtt.set_state("job", self.jobs.describe())  # what the line is packing
            self._publish_alarms("station started", None)
            self.mqtt.start()
            self._teardown.callback(self.mqtt.close)
            for task in (self._publish_counters(), self._watch_outbox()):
                future = self.io.spawn(task)
                self._teardown.callback(future.cancel)
            mqtt_endpoint = (host, port)

        if config.rejects.enabled:
            self.rejects = RejectLog(config.line.data_dir, config.rejects, realtime=self.source.realtime)
            self.rejects.start()
            self._teardown.callback(self.rejects.close)

        web_url = None
        if config.web.enabled:
            from .metrics import metrics_text  # the web stack only when serving
            from .review import ReviewIndex
            from .web.server import WebServer

            self.web = WebServer(config, ReviewIndex(config.line.data_dir), self.live_status, self.jobs)
            self.web.metrics = metrics_text(self.live_status, self.web.drift)
            web_url = self.web.start()
            self._teardown.callback(self.web.close)

        job_file = self.io.spawn(self._watch_job_file())
        self._teardown.callback(job_file.cancel)
        self.endpoints = Endpoints(
            mqtt_endpoint, broker_kind, self.mqtt.root if self.mqtt else None, modbus_endpoint, web_url
        )
        self.registers.set_status(Status.READY, True)
        self._teardown.callback(self.registers.set_status, Status.READY, False)
        if config.plc.modbus.enabled:  # first at close: the PLC takes the last results (or they count)
            self._teardown.callback(self._settle_delivery)

    def _start_modbus(self, modbus: ModbusSection) -> str:
        """The station's side (server or client), its heartbeat and watch, the PLC simulator."""
        config = self.config
        link = modbus_link(modbus)
        simulator = None
        if config.plc.simulator.enabled:
            sim = config.plc.simulator
            items = config.source.simulator.items if config.source.kind == "simulator" else 0
            conveyor = (
                Conveyor(sim.speed_mm_s, sim.pitch_mm, sim.ejector_mm, items=items)
                if config.source.trigger == "plc"
                else None
            )
            host = "127.0.0.1" if link.host in ("0.0.0.0", "") else link.host
            simulator = PlcSimulator(
                replace(link, host=host),
                sim.poll_ms,
                conveyor=conveyor,
                serve=modbus.mode == "client",
                base_address=modbus.base_address,
            )
            self.plc_simulator = simulator
        if modbus.mode == "client":
            if simulator is not None:  # the simulated PLC listens before the station connects
                self.io.run(simulator.start())
                self._teardown.callback(lambda: self.io.run(simulator.stop()))
            client = self.plc_client = StationClient(
                self.registers,
                link,
                modbus.unit_id,
                modbus.base_address,
                modbus.poll_ms,
                modbus.timeout_ms,
                on_written=self._delivered,
            )
            self.registers.on_change = client.notify
            self.io.run(client.start())
            self._teardown.callback(lambda: self.io.run(client.stop()))
        else:
            server = StationServer(self.registers, link, on_read=self._delivered)
            self.io.run(server.start())
            self._teardown.callback(lambda: self.io.run(server.stop()))
            if simulator is not None:
                self.io.run(simulator.start())
                self._teardown.callback(lambda: self.io.run(simulator.stop()))
        for task in (self._beat(), self._watch_plc()):
            future = self.io.spawn(task)
            self._teardown.callback(future.cancel)
        if modbus.mode == "client":
            return f"Modbus client: writing the registers into the PLC at {link} (base address {modbus.base_address})"
        if link.transport == "rtu":
            parity = {"N": "none", "E": "even", "O": "odd"}[link.parity]
            return (
                f"Modbus RTU:  mbpoll -m rtu -b {link.baudrate} -P {parity} -s {link.stopbits} "
                f"-a 1 -t 4 -r 1 -c 16 -1 {link.serial_port}"
            )
        host = "127.0.0.1" if link.host in ("0.0.0.0", "") else link.host
        return f"Modbus TCP:  mbpoll -m tcp -p {link.port} -a 1 -t 4 -r 1 -c 16 -1 {host}"

    def run(self, stop: threading.Event) -> int:
        """Inspect until the source ends or ``stop`` is set; returns the number of items decided."""
        decided = self.pipeline.run(self.source, stop)
        if self.pipeline.source_error is not None:  # the camera is gone: the PLC must know
            self.registers.set_status(Status.FAULT, True)
            self.registers.set_status(Status.READY, False)
        return decided

    def close(self) -> Summary:
        """Drain and stop every output (reject log, PLC, MQTT, broker) and summarise the run."""
        self._teardown.close()
        mqtt, rejects = self.mqtt, self.rejects
        error = self.pipeline.source_error
        return Summary(
            stats=self.stats.snapshot(),
            plc=self.plc_simulator.counts if self.plc_simulator else None,
            plc_delivered=self.delivery.delivered,
            plc_undelivered=self.delivery.undelivered,
            mqtt_committed=mqtt.outbox.committed if mqtt else 0,
            mqtt_acknowledged=mqtt.acknowledged if mqtt else 0,
            mqtt_pending=mqtt.outbox.count if mqtt else 0,
            mqtt_refused=self.mqtt_refused,
            rejects_logged=rejects.written - rejects.passes_written if rejects else 0,
            passes_kept=rejects.passes_written if rejects else 0,
            rejects_failed=rejects.failed if rejects else 0,
            pictures_skipped=rejects.pictures_skipped if rejects else 0,
            source_error=f"{type(error).__name__}: {error}" if error else None,
        )

    def live_status(self) -> dict:
        """The line now, JSON-ready: counters, latency, grade, job, alarms, MQTT, PLC and the
        review store (the web UI's status page, /api/status and /metrics)."""
        s = self.stats.snapshot()
        # the snapshot without the simulator's ground truth, latency as the total's quantiles
        stats = {k: v for k, v in asdict(s).items() if k != "latency_ms" and not k.startswith("truth_")}
        stats |= {f"latency_{quantile}_ms": ms for quantile, ms in s.latency_ms["total"].items()}
        status = {
            "running": True,
            "site": self.context.site,
            "line": self.context.line,
            "run_id": self.context.run_id,
            "source": self.config.source.kind,
            "stats": stats,
            "job": self.jobs.describe(),
            "alarms": dict(self.alarms),
            "mqtt": None,
            "plc": None,
            "store": None,
        }
        if self.mqtt is not None:
            status["mqtt"] = {
                "connected": self.mqtt.connected.is_set(),
                "problem": self.mqtt.problem,
                "pending": self.mqtt.outbox.count,
                "acknowledged": self.mqtt.acknowledged,
                "refused": self.mqtt_refused,
            }
        if self.config.plc.modbus.enabled:
            status["plc"] = {"delivered": self.delivery.delivered, "undelivered": self.delivery.undelivered}
        if self.board is not None:
            counts = self.board.counts
            status["ioboard"] = {
                "alive": counts.board_alive,
                "triggers": counts.triggers,
                "verdicts": counts.verdicts,
                "ejected": counts.ejected,
                "ejected_no_verdict": counts.ejected_no_verdict,
                "frame_errors": counts.crc_errors + counts.length_errors + counts.unknown_types,
            }
        if self.rejects is not None:
            r = self.rejects
            status["store"] = {
                "items": r.items,
                "bytes": r.bytes,
                "quota_bytes": int(self.config.rejects.max_disk_mb * 1e6),
                "written": r.written,
                "deleted": r.deleted,
                "failed": r.failed,
                "pictures_skipped": r.pictures_skipped,
            }
        return status

    def _emit(self, verdict: Verdict) -> None:
        """The pipeline's sink: every verdict to every output, in item order."""
        self.stats.record(verdict)
        has_grade = verdict.grade is not None and verdict.grade.overall is not None
        grade_x10 = int(round(verdict.grade.overall * 10)) if has_grade else 0
        frame, code = verdict.frame, result_code(verdict.reasons)
        plc_item_id = frame.plc_item_id if frame.plc_item_id is not None else verdict.item_id
        result = self.registers.publish(plc_item_id, code, not verdict.passed, grade_x10, frame.encoder)
        self.registers.set_status(Status.FAULT, code == ResultCode.STATION_ERROR)
        if self.config.plc.modbus.enabled:
            self.delivery.published(result, verdict.item_id, frame.t_trigger, verdict.t_decided)
        if self.board is not None and frame.plc_item_id is not None:  # the board ejects by encoder count
            self.board.verdict(frame.plc_item_id, not verdict.passed)
        if self.mqtt is None and self.rejects is None:
            return
        record = item_record(verdict, self.context)
        if self.config.plc.modbus.enabled:  # what the PLC was told: its item id, and reject-all
            record["plc"] = {"item_id": result.item_id, "seq": result.seq, "reject": result.reject}
        if self.mqtt is not None:
            self._commit("verified" if verdict.passed else "rejected", record["record_id"], record)
            if self.config.mqtt.epcis:
                self._commit_epcis(record)
        if self.rejects is not None:
            self.rejects.observe(record, verdict.frame.image, verdict.symbol, verdict.grade)

    def _job_changed(self, job) -> None:
        self.pipeline.set_job(job)
        if self.mqtt is not None:
            self.mqtt.set_state("job", self.jobs.describe())

    async def _watch_job_file(self) -> None:
        """``udigate job start|stop`` writes the job file; pick it up within a second."""
        while True:
            await asyncio.sleep(1.0)
            self.jobs.poll_file()

    async def _watch_plc(self) -> None:
        """Results the PLC did not take in time are accounted; the PLC's heartbeat and reject-all
        request are mirrored in the status bits; a heartbeat that stops raises the PLC alarm (and
        the configured fail-safe) until it comes back."""
        timeout, policy = self.config.plc.plc_heartbeat_timeout_s, self.config.plc.on_heartbeat_lost
        last_bit, last_change, alarm = None, None, False
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            self._account(self.delivery.expire(now))
            control, _ = self.registers.control()
            bit = bool(control & Control.HEARTBEAT)
            if bit != last_bit:
                if last_bit is not None:
                    last_change = now
                last_bit = bit
            lost = timeout > 0 and last_change is not None and now - last_change > timeout
            stop_line = (lost and policy == "stop_line") or self._outbox_stops_line
            reject_all = bool(control & Control.REJECT_ALL) or (lost and policy != "alarm") or stop_line
            self.registers.set_status(Status.REJECT_ALL, reject_all)
            self.registers.set_status(Status.STOP_LINE, stop_line)
            if lost != alarm:
                alarm = lost
                self.registers.set_status(Status.PLC_ALARM, lost)
                detail = f"no PLC heartbeat for {timeout:g} s" if lost else "PLC heartbeat back"
                self._alarm("plc_heartbeat_lost", lost, detail, policy)

    def _delivered(self, seqs: set[int]) -> None:
        """The PLC has these results (it read them, or the write into it succeeded)."""
        self._account(self.delivery.taken(seqs, time.monotonic()))

    def _account(self, undelivered: list[Undelivered]) -> None:
        """Results the PLC did not get in time: counted in its registers, logged, sent to the MES."""
        if not undelivered:
            return
        for entry in undelivered:
            self.registers.count_timeout()
            if self.mqtt is not None:
                r, key = entry.result, f"{self.context.run_id}/{entry.station_item_id}/undelivered"
                event = {"event_id": key, "item_id": entry.station_item_id, "plc_item_id": r.item_id, "seq": r.seq}
                event |= {"result_code": int(r.code), "reject": r.reject, "detail": entry.detail}
                self._commit("plc/undelivered", key, event | {"timestamp": now_utc()})
        self._unlogged += undelivered
        if time.monotonic() - self._logged_at >= 5.0:  # an outage at line speed: one line per 5 s
            self._log_undelivered()

    def _log_undelivered(self) -> None:
        if self._unlogged:
            first, last = self._unlogged[0], self._unlogged[-1]
            log.warning(
                "the PLC did not get %d result(s) in time (items %d…%d, on MQTT …/plc/undelivered): %s",
                len(self._unlogged),
                first.station_item_id,
                last.station_item_id,
                last.detail,
            )
        self._unlogged, self._logged_at = [], time.monotonic()

    def _settle_delivery(self) -> None:
        """At close: give the PLC until the last deadline to take the last results, then account
        for what it did not take (a replay has no deadline: nothing to account)."""
        deadline_s = self.delivery.deadline_s
        if deadline_s is None:
            self.delivery.discard()
            return
        give_up = time.monotonic() + deadline_s
        while self.delivery.pending() and time.monotonic() < give_up:
            time.sleep(0.01)
        self._account(self.delivery.expire(float("inf")))
        self._log_undelivered()

    async def _beat(self) -> None:
        while True:
            self.registers.beat()
            await asyncio.sleep(1.0)

    def _commit(self, kind: str, key: str, record: dict) -> None:
        """Into the outbox; a record the full outbox cannot keep is counted and alarmed."""
        try:
            self.mqtt.publish_record(kind, key, record)
        except OutboxFull as exc:
            self.mqtt_refused += 1
            if not self.alarms["outbox_full"]:
                on_full = self.config.mqtt.outbox.on_full
                self._outbox_stops_line = on_full == "stop_line"
                self._alarm("outbox_full", True, str(exc), on_full)

    def _commit_epcis(self, record: dict) -> None:
        """The record as an EPCIS 2.0 document on …/epcis; a pack without a code has none, and
        one whose key EPCIS cannot carry is logged (its udigate record went out anyway)."""
        mqtt = self.config.mqtt
        read_point = mqtt.epcis_read_point or f"urn:udigate:location:{self.context.site}:{self.context.line}"
        try:
            event = epcis.object_event(record, read_point=read_point, biz_location=mqtt.epcis_biz_location or None)
        except epcis.EpcisError as exc:
            log.warning("no EPCIS event: %s", exc)
            return
        if event is not None:
            document = epcis.document([event], created=record["decided_at"])
            self._commit("epcis", f"{record['record_id']}/epcis", document)

    async def _watch_outbox(self) -> None:
        """Filling (80 %) and full alarms, each cleared with some room to spare."""
        outbox = self.mqtt.outbox
        while True:
            await asyncio.sleep(0.5)
            fill = outbox.fill
            if self.alarms["outbox_filling"] != (fill >= (0.7 if self.alarms["outbox_filling"] else 0.8)):
                detail = f"MQTT outbox {fill:.0%} full: {outbox.count} records wait for the broker"
                self._alarm("outbox_filling", not self.alarms["outbox_filling"], detail, None)
            if self.alarms["outbox_full"] and fill < 0.9:
                self._outbox_stops_line = False
                self._alarm("outbox_full", False, f"MQTT outbox has room again ({fill:.0%})", None)

    def _alarm(self, name: str, active: bool, detail: str, action: str | None) -> None:
        self.alarms[name] = active
        (log.error if active else log.warning)("alarm %s %s: %s", name, "raised" if active else "cleared", detail)
        self._publish_alarms(detail, action if active else None)

    def _publish_alarms(self, detail: str, action: str | None) -> None:
        if self.mqtt is not None:
            self.mqtt.set_state("alarms", {**self.alarms, "detail": detail, "action": action, "timestamp": now_utc()})

    async def _publish_counters(self) -> None:
        while True:
            await asyncio.sleep(self.config.mqtt.counters_interval_s)
            snapshot = asdict(self.stats.snapshot())
            del snapshot["truth_mismatches"]
            self.mqtt.publish_counters(snapshot)
