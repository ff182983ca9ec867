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
from dataclasses import asdict, dataclass
from datetime import date

from plc.registers import Control, RegisterImage, Status
from plc.server import StationServer
from plc.simulator import PlcCounts, PlcSimulator

from .broker import start_embedded_broker
from .config import Config
from .ioloop import IoLoop
from .jobs import JobControl
from .mqtt import MqttPublisher
from .pipeline import Pipeline, Verdict, line_reader
from .reasons import result_code
from .records import LineContext, item_record
from .rejects import RejectLog
from .serials import SerialStore
from .sources import open_source
from .stats import LineStats, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    """Where the running line can be watched from outside."""

    mqtt: tuple[str, int] | None
    mqtt_broker: str | None  # "mosquitto" / "amqtt" when embedded
    topic_root: str | None
    modbus: tuple[str, int] | None


@dataclass(frozen=True)
class Summary:
    stats: Snapshot
    plc: PlcCounts | None
    mqtt_sent: int
    mqtt_acknowledged: int
    rejects_logged: int
    rejects_failed: int
    source_error: str | None

    @property
    def clean(self) -> bool:
        """True when every output received everything."""
        return (
            self.source_error is None
            and self.mqtt_sent == self.mqtt_acknowledged
            and self.rejects_failed == 0
            and (self.plc is None or self.plc.missed == 0)
        )


class Gateway:
    def __init__(self, config: Config, today: Callable[[], date] = date.today) -> None:
        self.config = config
        self.stats = LineStats(config.grading.min_grade, config.grading.warn_margin)
        self.context = LineContext(config.line.site, config.line.name, LineContext.new_run_id())
        self.source = open_source(config, today=today())
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
        self.registers = RegisterImage()
        self.io = IoLoop()
        self.mqtt: MqttPublisher | None = None
        self.rejects: RejectLog | None = None
        self.plc_simulator: PlcSimulator | None = None
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
            server = StationServer(self.registers, config.plc.modbus.host, config.plc.modbus.port)
            self.io.run(server.start())
            self._teardown.callback(lambda: self.io.run(server.stop()))
            heartbeat = self.io.spawn(self._beat())
            self._teardown.callback(heartbeat.cancel)
            if config.plc.plc_heartbeat_timeout_s > 0:
                watch = self.io.spawn(self._watch_plc())
                self._teardown.callback(watch.cancel)
            modbus_endpoint = (config.plc.modbus.host, config.plc.modbus.port)
            if config.plc.simulator.enabled:
                host = "127.0.0.1" if config.plc.modbus.host in ("0.0.0.0", "") else config.plc.modbus.host
                self.plc_simulator = PlcSimulator(host, config.plc.modbus.port, config.plc.simulator.poll_ms)
                self.io.run(self.plc_simulator.start())
                self._teardown.callback(lambda: self.io.run(self.plc_simulator.stop()))

        if config.mqtt.enabled:
            host, port = config.mqtt.host, config.mqtt.port
            if not host:
                broker = start_embedded_broker(port, self.io.loop)
                self._teardown.callback(broker.close)
                host, port, broker_kind = broker.host, broker.port, broker.kind
            self.mqtt = MqttPublisher(
                config.mqtt, config.line.site, config.line.name, host, port, on_job_command=self.jobs.command
            )
            self.mqtt.start()
            self.mqtt.publish_job(self.jobs.describe())  # retained: what the line is packing
            self.mqtt.publish_alarms({"plc_heartbeat_lost": False, "detail": "station started"})
            self._teardown.callback(self.mqtt.close)
            counters = self.io.spawn(self._publish_counters())
            self._teardown.callback(counters.cancel)
            mqtt_endpoint = (host, port)

        if config.rejects.enabled:
            self.rejects = RejectLog(config.line.data_dir, config.rejects.image_format)
            self.rejects.start()
            self._teardown.callback(self.rejects.close)

        job_file = self.io.spawn(self._watch_job_file())
        self._teardown.callback(job_file.cancel)
        self.endpoints = Endpoints(mqtt_endpoint, broker_kind, self.mqtt.root if self.mqtt else None, modbus_endpoint)
        self.registers.set_status(Status.READY, True)
        self._teardown.callback(self.registers.set_status, Status.READY, False)

    def run(self, stop: threading.Event) -> int:
        """Inspect until the source ends or ``stop`` is set; returns the number of items decided."""
        return self.pipeline.run(self.source, stop)

    def close(self) -> Summary:
        """Drain and stop every output (reject log, PLC, MQTT, broker) and summarise the run."""
        self._teardown.close()
        mqtt, rejects = self.mqtt, self.rejects
        error = self.pipeline.source_error
        return Summary(
            stats=self.stats.snapshot(),
            plc=self.plc_simulator.counts if self.plc_simulator else None,
            mqtt_sent=mqtt.sent if mqtt else 0,
            mqtt_acknowledged=mqtt.acknowledged if mqtt else 0,
            rejects_logged=rejects.written if rejects else 0,
            rejects_failed=rejects.failed if rejects else 0,
            source_error=f"{type(error).__name__}: {error}" if error else None,
        )

    def _emit(self, verdict: Verdict) -> None:
        """The pipeline's sink: every verdict to every output, in item order."""
        self.stats.record(verdict)
        has_grade = verdict.grade is not None and verdict.grade.overall is not None
        grade_x10 = int(round(verdict.grade.overall * 10)) if has_grade else 0
        self.registers.publish(verdict.item_id, result_code(verdict.reasons), not verdict.passed, grade_x10)
        if self.mqtt is None and self.rejects is None:
            return
        record = item_record(verdict, self.context)
        if self.mqtt is not None:
            self.mqtt.publish_item(record)
        if self.rejects is not None and not verdict.passed:
            graded = (verdict.symbol, verdict.grade) if verdict.symbol and verdict.grade else None
            self.rejects.submit(record, verdict.frame.image, graded)

    def _job_changed(self, job) -> None:
        self.pipeline.set_job(job)
        if self.mqtt is not None:
            self.mqtt.publish_job(self.jobs.describe())

    async def _watch_job_file(self) -> None:
        """``udigate job start|stop`` writes the job file; pick it up within a second."""
        while True:
            await asyncio.sleep(1.0)
            self.jobs.poll_file()

    async def _watch_plc(self) -> None:
        """The PLC's side of the heartbeat and its reject-all request, mirrored in the status bits;
        a heartbeat that stops raises the PLC alarm until it comes back."""
        timeout = self.config.plc.plc_heartbeat_timeout_s
        last_bit, last_change, alarm = None, None, False
        while True:
            await asyncio.sleep(0.2)
            control, _ = self.registers.control()
            self.registers.set_status(Status.REJECT_ALL, bool(control & Control.REJECT_ALL))
            now = time.monotonic()
            bit = bool(control & Control.HEARTBEAT)
            if bit != last_bit:
                if last_bit is not None:
                    last_change = now
                last_bit = bit
            lost = last_change is not None and now - last_change > timeout
            if lost != alarm:
                alarm = lost
                self.registers.set_status(Status.PLC_ALARM, lost)
                detail = f"no PLC heartbeat for {timeout:g} s" if lost else "PLC heartbeat back"
                (log.error if lost else log.warning)("PLC alarm: %s", detail)
                if self.mqtt is not None:
                    self.mqtt.publish_alarms({"plc_heartbeat_lost": lost, "detail": detail})

    async def _beat(self) -> None:
        while True:
            self.registers.beat()
            await asyncio.sleep(1.0)

    async def _publish_counters(self) -> None:
        while True:
            await asyncio.sleep(self.config.mqtt.counters_interval_s)
            snapshot = asdict(self.stats.snapshot())
            del snapshot["truth_mismatches"]
            self.mqtt.publish_counters(snapshot)
