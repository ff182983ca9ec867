"""MQTT benchmark: sustained record throughput through the durable outbox to a real mosquitto.

    .venv/bin/python bench/mqtt_bench.py [--records 20000] [--power-records 2000] [--repeat 3]
                                         [--payload-bytes 0] [--dir PATH] [--check]

Starts a private mosquitto on loopback and, in the same run, measures:

* udigate, durability "process": the main thread calls ``MqttPublisher.publish_record`` as fast as
  it can for ``--records`` item records (~1.5 KB of JSON each: the fields of
  ``gateway.records.item_record`` with a 12-parameter grade; one in 20 a reject), each committed to
  the SQLite outbox (WAL, synchronous=NORMAL, one commit per record) and published QoS 1 by the
  ``mqtt`` thread, deleted when mosquitto's PUBACK arrives. "end to end" is the time from the first
  ``publish_record`` to the moment the outbox is empty (every record acknowledged); "commit" is the
  rate of ``publish_record`` calls as the producer sees it (the outbox's write speed, which paces
  the line's thread);
* the same with durability "power" (synchronous=FULL: an fsync per record), on
  ``--power-records`` records: bounded by the disk's fsync latency, so much slower on most disks;
* the reference: bare paho-mqtt publishing the same records QoS 1 (the same JSON encoding and MQTT 5
  properties, ``max_inflight_messages_set(1000)``, ``max_queued_messages_set(0)``), no outbox, timed
  from the first publish to the last PUBACK: the ceiling of the MQTT path on this machine.

A subscriber in a separate process (paho, QoS 1, on ``<root>/+``) counts the records it receives
and checks they arrive complete, once each and in item order (mosquitto's per-client queue limit
is raised from 1000, so that a subscriber falling behind on a busy machine is not counted as a
loss). The rate of each row is the best of ``--repeat`` runs (shared machines vary ±20 %); rows are
interleaved so that noise hits them alike; the load average is printed before and after.
Also printed: the process's peak RSS and the outbox's files (database + WAL) after the run.
With ``--check`` the exit status is 1 when the end-to-end rate (durability "process") is below
2,000 records/s or a subscriber missed records.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt import __version__ as PAHO_VERSION
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.broker import Mosquitto, free_port  # noqa: E402
from gateway.config import MqttSection  # noqa: E402
from gateway.mqtt import MqttPublisher  # noqa: E402
from gateway.outbox import Outbox  # noqa: E402

TARGET = 2000  # records/s, end to end with durability "process" (the figure)
NAMES = {"enterprise": "acme", "site": "site-a", "area": "packaging", "line": "line-7"}
ROOT = MqttSection().topic_root.format(**NAMES)
REJECT_EVERY = 20
BROKER_QUEUE = 1_000_000  # mosquitto's max_queued_messages per client (default 1000)
GS = "\x1d"
GTIN = "06901234567892"


# -- the records ---------------------------------------------------------------------------------


def template(payload_bytes: int) -> dict:
    """An item record as ``gateway.records.item_record`` builds it for a graded GS1 code; padded
    (in the grade's warnings) to about ``payload_bytes`` of JSON."""
    parameters = {
        "Decode": (1.0, 4.0),
        "SC": (78.4, 4.0),
        "MOD": (0.71, 4.0),
        "RM": (0.68, 4.0),
        "FPD": (3.0, 3.0),
        "AN": (0.021, 4.0),
        "GN": (0.142, 4.0),
        "UEC": (1.0, 4.0),
        "PG": (0.064, 4.0),
        "L1": (4.0, 4.0),
        "L2": (4.0, 4.0),
        "QZL1": (4.0, 4.0),
    }
    record = {
        "schema": "udigate.item/1",
        "record_id": "",
        "site": NAMES["site"],
        "line": NAMES["line"],
        "job": "PO-2026-00417",
        "run_id": "20260301T080000.000000Z",
        "item_id": 0,
        "timestamp": "2026-03-01T08:00:00.000Z",
        "decided_at": "2026-03-01T08:00:00.012Z",
        "verdict": "pass",
        "result_code": 0,
        "reasons": [],
        "source": "camera:line-7/top",
        "latency_ms": 11.84,
        "decoder": "zxing-cpp",
        "symbology_identifier": "]d2",
        "data": "",
        "data_b64": "",
        "symbol_size": "22x22",
        "issuer": "GS1",
        "hri": "",
        "fields": {},
        "di": GTIN,
        "pi": {"lot": "L2403A", "serial": "", "production_date": "2026-02-28", "expiry": "2028-02-29"},
        "expiry": "2028-02-29",
        "digital_link": "",
        "grade": {
            "overall": 3.0,
            "quality": "3.0/08/660",
            "method": "2011",
            "parameters": {name: {"value": v, "grade": g} for name, (v, g) in parameters.items()},
            "informative": {"Rmax": 88.1, "Rmin": 9.7, "aperture": 8, "wavelength": 660},
            "damaged_codewords": [],
            "warnings": [],
            "refused": None,
        },
    }
    size = len(json.dumps(make_record(record, 1), separators=(",", ":")))
    if size < payload_bytes:
        record["grade"]["warnings"] = ["x" * max(0, payload_bytes - size - 4)]
    return record


def make_record(base: dict, item_id: int) -> dict:
    """The record of item ``item_id``: its own serial, ids and times (the rest shared)."""
    serial = f"S{item_id:011d}"
    data = f"01{GTIN}17280229{GS}10L2403A{GS}21{serial}"
    seconds = item_id * 0.05
    stamp = f"2026-03-01T08:{int(seconds // 60) % 60:02d}:{seconds % 60:06.3f}Z"
    record = dict(base)
    record.update(
        record_id=f"{base['run_id']}/{item_id}",
        item_id=item_id,
        timestamp=stamp,
        decided_at=stamp,
        data=data,
        data_b64=base64.b64encode(data.encode()).decode("ascii"),
        hri=f"(01){GTIN}(17)280229(10)L2403A(21){serial}",
        fields={"01": GTIN, "17": "280229", "10": "L2403A", "21": serial},
        pi={**base["pi"], "serial": serial},
        digital_link=f"https://id.gs1.org/01/{GTIN}/10/L2403A/21/{serial}?17=280229",
    )
    if item_id % REJECT_EVERY == 0:
        record.update(
            verdict="reject",
            result_code=16,
            reasons=[{"code": "grade_below_min", "text": "print quality below the minimum", "detail": "FPD 1.0"}],
        )
    return record


def kind_of(record: dict) -> str:
    return "verified" if record["verdict"] == "pass" else "rejected"


# -- the subscriber (its own process, so that it does not share the benchmark's GIL) -------------


def subscriber_main(port: int, connection) -> None:
    ids: list[int] = []
    lock = threading.Lock()
    changed = threading.Condition(lock)

    def on_message(client, userdata, message) -> None:
        payload = message.payload
        at = payload.find(b'"item_id":')
        if at < 0:  # …/status, …/counters
            return
        start = at + len(b'"item_id":')
        item_id = int(payload[start : payload.index(b",", start)])
        with changed:
            ids.append(item_id)
            changed.notify()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")
    subscribed = threading.Event()
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(f"{ROOT}/+", qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connection.send(subscribed.wait(10))
    while True:
        request = connection.recv()
        if request is None:
            break
        expected, timeout = request  # wait for ``expected`` records, then report and start over
        with changed:
            changed.wait_for(lambda count=expected: len(ids) >= count, timeout)
        time.sleep(0.2)  # duplicates would follow shortly
        with changed:
            got, ids[:] = list(ids), []
        connection.send(got)
    client.disconnect()
    client.loop_stop()


class Subscriber:
    def __init__(self, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=subscriber_main, args=(port, child), daemon=True)
        self._process.start()
        if not self._connection.recv():
            raise RuntimeError("the subscriber could not subscribe")

    @property
    def pid(self) -> int:
        return self._process.pid

    def received(self, expected: int, timeout: float) -> list[int]:
        """The item ids received since the last call, once ``expected`` arrived (or timeout)."""
        self._connection.send((expected, timeout))
        return self._connection.recv()

    def close(self) -> None:
        self._connection.send(None)
        self._process.join(10)


# -- the runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    records: int
    end_to_end_s: float
    commit_s: float
    received: list[int] = field(default_factory=list)
    backlog: int = 0  # most records waiting in the outbox (or paho's queue) at a time
    outbox_mb: float = 0.0  # database + WAL just after the run
    resent: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds during the run, per process

    @property
    def rate(self) -> float:
        return self.records / self.end_to_end_s

    @property
    def commit_rate(self) -> float:
        return self.records / self.commit_s

    def cpu_us(self, process: str) -> float:
        return self.cpu_s.get(process, float("nan")) / self.records * 1e6

    def delivery(self) -> str:
        """``received/sent``, then "in order", or what went wrong: missing, duplicated, reordered."""
        first = list(dict.fromkeys(self.received))  # first arrivals, in arrival order
        text = f"{len(first)}/{self.records}"
        if len(self.received) > len(first):
            text += f" ({len(self.received) - len(first)} twice)"
        return text + (" in order" if first == sorted(first) else " OUT OF ORDER")

    @property
    def complete(self) -> bool:
        return set(self.received) == set(range(1, self.records + 1))


class CpuMeter:
    """CPU seconds used by this process (every thread) and by other processes, by name."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.tick = os.sysconf("SC_CLK_TCK")

    def read(self) -> dict[str, float]:
        seconds = {"bench": time.process_time()}
        for name, pid in self.pids.items():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds[name] = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        return seconds

    def since(self, before: dict[str, float]) -> dict[str, float]:
        return {name: value - before[name] for name, value in self.read().items()}


def files_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6


def run_udigate(
    port: int, subscriber: Subscriber, meter: CpuMeter, base: dict, count: int, durability: str, folder: Path
) -> Run:
    path = folder / f"outbox-{durability}-{time.monotonic_ns()}.db"
    config = MqttSection()
    outbox = Outbox(path, int(config.outbox.max_mb * 1e6), durability)
    publisher = MqttPublisher(config, NAMES, "127.0.0.1", port, outbox)
    publisher.start()
    if not publisher.connected.wait(10):
        raise RuntimeError(f"udigate did not connect to mosquitto: {publisher.problem}")
    time.sleep(0.2)  # the retained status went out; the figures are the records'
    backlog = 0
    cpu = meter.read()
    start = time.perf_counter()
    for item_id in range(1, count + 1):
        record = make_record(base, item_id)
        publisher.publish_record(kind_of(record), record["record_id"], record)
        if item_id % 100 == 0:
            backlog = max(backlog, outbox.count)
    committed = time.perf_counter()
    deadline = committed + 60 + count / 100
    while outbox.count and time.perf_counter() < deadline:
        time.sleep(0.001)
    emptied = time.perf_counter()
    if outbox.count:
        raise RuntimeError(f"{outbox.count} records still in the outbox after {emptied - start:.0f} s")
    size = files_mb(path)
    received = subscriber.received(count, 30)
    cpu = meter.since(cpu)  # the subscriber has all the records: every process is idle
    publisher.close(timeout=10)
    outbox.close()
    run = Run(count, emptied - start, committed - start, received, backlog, size, publisher.sent - count, cpu)
    for p in folder.glob(path.name + "*"):
        p.unlink()
    return run


def run_bare(port: int, subscriber: Subscriber, meter: CpuMeter, base: dict, count: int) -> Run:
    acknowledged = 0
    done = threading.Event()
    finished = [0.0]

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        nonlocal acknowledged
        acknowledged += 1
        if acknowledged == count:
            finished[0] = time.perf_counter()
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("bare paho did not connect to mosquitto")
    time.sleep(0.2)
    backlog = 0
    cpu = meter.read()
    start = time.perf_counter()
    for item_id in range(1, count + 1):
        record = make_record(base, item_id)
        properties = Properties(PacketTypes.PUBLISH)  # as udigate's MQTT 5 records carry them
        properties.UserProperty = [("record_id", record["record_id"])]
        properties.ContentType = "application/json"
        payload = json.dumps(record, separators=(",", ":")).encode()
        client.publish(f"{ROOT}/{kind_of(record)}", payload, 1, False, properties)
        if item_id % 100 == 0:
            backlog = max(backlog, item_id - acknowledged)
    committed = time.perf_counter()
    if not done.wait(60 + count / 100):
        raise RuntimeError(f"bare paho: {count - acknowledged} PUBACKs missing")
    received = subscriber.received(count, 30)
    cpu = meter.since(cpu)
    client.disconnect()
    client.loop_stop()
    return Run(count, finished[0] - start, committed - start, received, backlog, cpu_s=cpu)


def encode_rate(base: dict, count: int) -> float:
    """Records built and JSON-encoded per second, no I/O: the part every row shares."""
    start = time.perf_counter()
    for item_id in range(1, count + 1):
        json.dumps(make_record(base, item_id), separators=(",", ":")).encode()
    return count / (time.perf_counter() - start)


def mosquitto_version() -> str:
    try:
        output = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5).stdout
    except OSError:
        return "?"
    return output.split("version", 1)[-1].split()[0] if "version" in output else "?"


def fsync_ms(folder: Path, count: int = 200) -> float:
    """Median time of a 4 KB write + fsync in ``folder``: what durability "power" pays per record."""
    path = folder / "fsync-probe"
    times = []
    with open(path, "wb") as probe:
        for _ in range(count):
            start = time.perf_counter()
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
            times.append(time.perf_counter() - start)
    path.unlink()
    return sorted(times)[count // 2] * 1000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000, help="records per run (udigate and bare paho)")
    parser.add_argument("--power-records", type=int, default=2000, help='records per durability "power" run, 0 = skip')
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the best is shown")
    parser.add_argument(
        "--payload-bytes", type=int, default=0, help="pad records to about this JSON size (0: as built, ~1.5 KB)"
    )
    parser.add_argument("--dir", type=Path, help="folder for the outbox (default: a temporary one)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {TARGET} records/s end to end")
    args = parser.parse_args()

    base = template(args.payload_bytes)
    sizes = [len(json.dumps(make_record(base, i), separators=(",", ":"))) for i in (1, REJECT_EVERY)]
    print(
        f"MQTT records through the outbox to mosquitto on loopback: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, paho-mqtt {PAHO_VERSION}, "
        f"SQLite {sqlite3.sqlite_version}, mosquitto {mosquitto_version()}"
    )
    print("load average {:.2f} {:.2f} {:.2f} (other work on the machine skews every figure)".format(*os.getloadavg()))
    print(
        f"{args.records:,} records per run ("
        + (f"{args.power_records:,} with durability power), " if args.power_records else "durability power skipped), ")
        + f"{sizes[0]} B JSON each ({sizes[1]} B rejects), QoS 1, best of {args.repeat}"
    )
    print(f"building + JSON-encoding a record alone: {encode_rate(base, min(args.records, 5000)):,.0f}/s\n")

    folder = args.dir or Path(tempfile.mkdtemp(prefix="mqtt-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    fsync = fsync_ms(folder)
    broker = Mosquitto("127.0.0.1", free_port(), f"allow_anonymous true\nmax_queued_messages {BROKER_QUEUE}")
    broker.start()
    subscriber = Subscriber(broker.port)
    meter = CpuMeter({"mosquitto": broker._process.pid, "subscriber": subscriber.pid})
    rows: dict[str, list[Run]] = {"udigate process": [], "udigate power": [], "bare paho": []}
    rss_udigate = 0.0
    try:
        for repeat in range(args.repeat):
            rows["udigate process"].append(
                run_udigate(broker.port, subscriber, meter, base, args.records, "process", folder)
            )
            if repeat == 0:
                rss_udigate = peak_rss_mb()
            if args.power_records:
                rows["udigate power"].append(
                    run_udigate(broker.port, subscriber, meter, base, args.power_records, "power", folder)
                )
            rows["bare paho"].append(run_bare(broker.port, subscriber, meter, base, args.records))
            print(
                f"  run {repeat + 1}: "
                + ", ".join(f"{name} {runs[-1].rate:,.0f}/s" for name, runs in rows.items() if runs),
                flush=True,
            )
    finally:
        subscriber.close()
        broker.close()
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)

    print(
        f"\n{'':16} {'':7} {'':>12} {'':>9} {'':>7} {'CPU µs per record':^20}\n"
        f"{'row':16} {'records':>7} {'end to end/s':>12} {'commit/s':>9} {'wall µs':>7} "
        f"{'bench':>6} {'mosq':>6} {'sub':>6} {'backlog':>7} {'outbox MB':>9}  received by the subscriber"
    )
    best = {name: max(runs, key=lambda r: r.rate) for name, runs in rows.items() if runs}
    for name, run in best.items():
        outbox = f"{run.outbox_mb:9.1f}" if name.startswith("udigate") else f"{'-':>9}"
        cpu = " ".join(f"{run.cpu_us(process):6.0f}" for process in ("bench", "mosquitto", "subscriber"))
        print(
            f"{name:16} {run.records:7d} {run.rate:12,.0f} {run.commit_rate:9,.0f} {1e6 / run.rate:7.0f} "
            f"{cpu} {run.backlog:7d} {outbox}  {run.delivery()}" + (f" ({run.resent} resent)" if run.resent else "")
        )
    process, bare = best["udigate process"], best["bare paho"]
    print(
        f"\nudigate (process) / bare paho, end to end: {process.rate / bare.rate:.2f}; every run: "
        + "; ".join(f"{name} " + " ".join(f"{r.rate:,.0f}" for r in runs) for name, runs in rows.items() if runs)
    )
    print(
        "commit/s: publish_record() calls per second as the producer saw them (bare: publish() calls); "
        "wall µs: 1 / end-to-end rate; CPU µs: CPU time per record of this process (all its threads: "
        "producer, udigate's mqtt thread, paho's), of mosquitto and of the subscriber, which share the "
        f"{os.cpu_count()} CPUs; backlog: most records committed (bare: handed to paho) and not yet "
        "acknowledged; outbox MB: database + WAL just after the run (the WAL keeps its size)"
    )
    if "udigate power" in best:
        print(
            f'durability "power" adds an fsync per record; fsync here takes {fsync:.2f} ms (median): its rate '
            "follows the disk (on the SD cards and eMMC of edge boxes, an fsync commonly takes milliseconds)"
        )
    print(
        f"peak RSS {rss_udigate:.0f} MB after the first udigate run, {peak_rss_mb():.0f} MB at the end "
        "(bare paho queues every unacknowledged message in memory: udigate keeps them in the outbox)"
    )
    print("load average {:.2f} {:.2f} {:.2f} at the end".format(*os.getloadavg()))
    lost = any(not r.complete for runs in rows.values() for r in runs)
    verdict = "meets" if process.rate >= TARGET else "MISSES"
    print(f"end to end (durability process) {process.rate:,.0f} records/s {verdict} the target of {TARGET:,}/s")
    if lost:
        print("the subscriber MISSED records in at least one run")
    return 1 if args.check and (process.rate < TARGET or lost) else 0


if __name__ == "__main__":
    sys.exit(main())
