"""The systemd service: the unit as systemd reads and scores it, sd_notify from a real
``udigate run`` to a real notify socket, the watchdog's liveness, and the installer's dry run."""

import ctypes
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import systemd
from gateway.sources import PlcTriggers
from plc.registers import CONTROL_BASE, Control, RegisterImage, ResultCode

from .conftest import REPO
from .test_cli import UDIGATE, write_config

UNIT = REPO / "systemd" / "udigate.service"
INSTALL = REPO / "systemd" / "install.sh"
# The udigate this checkout runs: systemd-analyze verify wants ExecStart= to exist.
UDIGATE_BINARY = Path(sys.executable).with_name("udigate")
MAX_EXPOSURE = 3.0  # "OK" or better in systemd-analyze security


def unit_copy(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart= on this checkout's udigate, plus ``extra`` (a drop-in's text)."""
    text = UNIT.read_text().replace("/opt/udigate/venv/bin/udigate", str(UDIGATE_BINARY))
    assert str(UDIGATE_BINARY) in text
    path = tmp_path / "udigate.service"
    path.write_text(text + extra)
    return path


def exposure(unit: Path) -> float:
    """systemd-analyze security's overall exposure level of ``unit`` (0 = locked down, 10 = not)."""
    analysis = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert analysis.returncode == 0, analysis.stderr
    level = re.search(r"Overall exposure level for udigate\.service: (\d+\.\d+) (\w+)", analysis.stdout)
    assert level, analysis.stdout
    print(f"systemd-analyze security {unit.name}: {level[1]} {level[2]}")
    return float(level[1])


def verify(unit: Path) -> list[str]:
    """What systemd-analyze verify says about ``unit``: its complaints name the file, and some
    (unknown keys) leave the exit status 0."""
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (run.stdout + run.stderr).splitlines() if unit.name in line]
    return complaints + ([f"exit status {run.returncode}: {run.stderr}"] if run.returncode else [])


# -- the unit ----------------------------------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(tmp_path):
    assert verify(unit_copy(tmp_path)) == []


def test_verify_would_report_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt directive is reported."""
    broken = unit_copy(tmp_path, "[Service]\nProtectSytem=strict\n")
    assert any("ProtectSytem" in complaint for complaint in verify(broken))


def test_unit_exposure_is_ok_or_better(tmp_path):
    assert exposure(unit_copy(tmp_path)) <= MAX_EXPOSURE


def test_unit_grants_no_capability_and_keeps_numba_working():
    settings = [line.strip() for line in UNIT.read_text().splitlines() if not line.startswith("#")]
    assert "CapabilityBoundingSet=" in settings and "AmbientCapabilities=" in settings
    assert not any(line.startswith("MemoryDenyWriteExecute=") for line in settings)
    assert "Environment=NUMBA_CACHE_DIR=/var/lib/udigate/numba-cache" in settings
    assert "StateDirectory=udigate" in settings  # where NUMBA_CACHE_DIR is, writable


def test_numba_cannot_run_under_memory_deny_write_execute(tmp_path):
    """Why the unit leaves MemoryDenyWriteExecute= out: under the kernel's equivalent
    (PR_SET_MDWE, Linux 6.3) numba cannot even be imported, cached kernels or not."""
    pr_set_mdwe, pr_get_mdwe, refuse_exec_gain = 65, 66, 1
    if ctypes.CDLL(None).prctl(pr_get_mdwe, 0, 0, 0, 0) < 0:
        pytest.skip("the kernel has no PR_SET_MDWE (Linux < 6.3)")
    script = (
        "import ctypes, sys\n"
        f"assert ctypes.CDLL(None).prctl({pr_set_mdwe}, {refuse_exec_gain}, 0, 0, 0) == 0\n"
        "import numba\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "cannot allocate executable memory" in run.stderr


# -- sd_notify ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    at: float  # time.monotonic() when received
    pid: int  # the sender, as the kernel reports it (systemd checks it the same way)
    text: str


class NotifySocket:
    """A service manager's notify socket: an AF_UNIX datagram socket that learns each sender's pid."""

    def __init__(self, address: str, bind_to: str) -> None:
        self.address = address  # the value of $NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout: float) -> Notification | None:
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except TimeoutError:
            return None
        pid = next(struct.unpack("3i", d)[0] for _level, kind, d in ancillary if kind == socket.SCM_CREDENTIALS)
        return Notification(time.monotonic(), pid, data.decode())

    def collect(self, seconds: float) -> list[str]:
        """Every message received within ``seconds``."""
        texts, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if received := self.receive(left):
                texts.append(received.text)
        return texts

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def abstract_socket():
    name = f"udigate-test-{uuid.uuid4().hex}"
    notify_socket = NotifySocket("@" + name, "\0" + name)
    yield notify_socket
    notify_socket.close()


@pytest.fixture
def under_systemd(monkeypatch, abstract_socket):
    """This process as systemd would run it with WatchdogSec=0.2."""
    monkeypatch.setenv("NOTIFY_SOCKET", abstract_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    return abstract_socket


def test_notify_reaches_a_socket_path(monkeypatch, tmp_path):
    path = tmp_path / "notify"
    notify_socket = NotifySocket(str(path), str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        assert systemd.ready() and systemd.status("12 items\n(2.0/s)") and systemd.stopping()
        assert notify_socket.collect(0.2) == ["READY=1", "STATUS=12 items (2.0/s)", "STOPPING=1"]
    finally:
        notify_socket.close()


def test_notify_reaches_an_abstract_socket(under_systemd):
    assert systemd.notify("READY=1\nSTATUS=up")
    received = under_systemd.receive(1.0)
    assert received.text == "READY=1\nSTATUS=up" and received.pid == os.getpid()


def test_nothing_happens_outside_systemd(monkeypatch):
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    assert not systemd.ready() and not systemd.status("x") and not systemd.stopping()
    watchdog = systemd.Watchdog(lambda: True)
    watchdog.start()
    assert watchdog.interval is None
    assert "systemd-watchdog" not in [thread.name for thread in threading.enumerate()]
    watchdog.stop()


def test_a_watchdog_meant_for_another_process_is_not_pinged(under_systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == pytest.approx(0.1)


def test_watchdog_pings_at_half_the_timeout_only_while_the_line_is_alive(under_systemd):
    alive = threading.Event()
    alive.set()
    watchdog = systemd.Watchdog(alive.is_set)
    watchdog.start()
    try:
        pings = under_systemd.collect(1.0)
        assert set(pings) == {"WATCHDOG=1"} and 7 <= len(pings) <= 11  # every 0.1 s
        alive.clear()
        under_systemd.collect(0.15)  # a check made just before may still be sent
        assert under_systemd.collect(0.6) == []
        alive.set()
        assert len(under_systemd.collect(0.5)) >= 3
    finally:
        watchdog.stop()
    under_systemd.collect(0.05)
    assert under_systemd.collect(0.3) == []  # stopped


def test_a_failing_liveness_check_counts_as_a_dead_line(under_systemd, caplog):
    watchdog = systemd.Watchdog(lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="gateway.systemd"):
        watchdog.start()
        assert under_systemd.collect(0.5) == []
        watchdog.stop()
    assert "liveness check failed" in caplog.text and "no progress" in caplog.text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_alive_while_the_count_moves_or_the_line_is_idle():
    clock, line = FakeClock(), {"items": 0, "idle": False}
    progress = systemd.Progress(lambda: line["items"], lambda: line["idle"], stall_s=60, clock=clock)
    clock.now = 59
    assert progress()
    clock.now = 61
    assert not progress()  # no item for 61 s
    line["items"], clock.now = 1, 62
    assert progress()
    clock.now = 121
    assert progress()
    clock.now = 123
    assert not progress()
    line["idle"] = True  # nothing to do: not a hang, however long
    clock.now = 500
    assert progress()
    line["idle"], clock.now = False, 559
    assert progress()
    clock.now = 561
    assert not progress()


def plc_trigger(registers: RegisterImage, item_id: int) -> None:
    """A trigger edge as the PLC writes it: bit 2 with the item id, then bit 2 cleared."""
    assert registers.write_control(CONTROL_BASE, [int(Control.TRIGGER), 0, item_id, 0, 0])
    assert registers.write_control(CONTROL_BASE, [0])


def test_line_liveness_tells_a_stopped_belt_from_a_hung_pipeline():
    triggers = PlcTriggers()
    registers = RegisterImage(on_trigger=triggers.offer)
    finished = threading.Event()
    pipeline = threading.Thread(target=finished.wait)
    pipeline.start()
    clock = FakeClock()
    plc_line, timer_line, photo_eye_line = (
        systemd.line_liveness(pipeline, registers, trigger, stall_s=60, clock=clock)
        for trigger in ("plc", "timer", "gpio")
    )
    try:
        clock.now = 3600
        assert plc_line()  # an hour without a trigger: the belt stopped, the line waits
        assert not timer_line()  # a timer source has the next item coming: an hour without is a hang
        assert photo_eye_line()  # no item without a pack at the photo-eye
        plc_trigger(registers, 7)
        clock.now = 3630
        assert plc_line()
        clock.now = 3661
        assert not plc_line()  # the trigger waited 61 s for its result
        registers.publish(7, ResultCode.PASS, False, 40)
        clock.now = 3662
        assert plc_line() and timer_line()
    finally:
        finished.set()
        pipeline.join()
    assert not plc_line() and not timer_line() and not photo_eye_line()  # the pipeline thread ended


def test_udigate_run_reports_ready_status_watchdog_and_stopping(tmp_path, abstract_socket):
    """A real line under a notify socket as systemd would give it, WatchdogSec=2: READY=1 once
    the line is up, WATCHDOG=1 every second, STATUS= every 5 s, STOPPING=1 on SIGTERM."""
    config = write_config(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": abstract_socket.address, "WATCHDOG_USEC": "2000000"}
    line = subprocess.Popen(
        [*UDIGATE, "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Only udigate's own messages count (NotifyAccess=main): its embedded mosquitto inherits the
    # socket and reports its own READY=1.
    received: list[Notification] = []
    deadline = time.monotonic() + 120
    try:
        while not any(n.text.startswith("STATUS=") for n in received):
            assert line.poll() is None and time.monotonic() < deadline, "no STATUS= from udigate run"
            notification = abstract_socket.receive(1.0)
            if notification is not None and notification.pid == line.pid:
                received.append(notification)
        before_sigterm = list(received)
        line.send_signal(signal.SIGTERM)
        out, err = line.communicate(timeout=60)
    finally:
        line.kill()
    assert line.returncode == 0, err
    while notification := abstract_socket.receive(0.1):
        if notification.pid == line.pid:
            received.append(notification)
    texts = [n.text for n in received]
    assert texts[0] == "READY=1"
    status = next(text for text in texts if text.startswith("STATUS="))
    assert re.fullmatch(r"STATUS=\d+ items \([\d.]+/s\): \d+ passed, \d+ rejected .* ms.*", status)
    pings = [n.at for n in before_sigterm if n.text == "WATCHDOG=1"]  # the later ones were read after the exit
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:], strict=False)]
    print(f"watchdog pings {len(pings)}, gaps {min(gaps):.2f} to {max(gaps):.2f} s")
    assert len(pings) >= 3
    assert all(0.5 < gap < 1.5 for gap in gaps)  # half of the 2 s timeout; a gap of 2 s would be a restart
    assert "STOPPING=1" in texts[texts.index(status) :]


# -- install.sh --------------------------------------------------------------------------------

INSTALLED = (
    "/opt/udigate",
    "/etc/udigate",
    "/var/lib/udigate",
    "/etc/systemd/system/udigate.service",
    "/etc/systemd/system/udigate.service.d",
)


def machine_state() -> dict:
    """What an installation changes: its paths (with their times) and the user."""
    state = {path: os.stat(path).st_mtime_ns if os.path.exists(path) else None for path in INSTALLED}
    state["user"] = subprocess.run(["getent", "passwd", "udigate"], capture_output=True, text=True).stdout
    return state


def install_dry_run(*options: str) -> subprocess.CompletedProcess:
    before = machine_state()
    run = subprocess.run([str(INSTALL), "--dry-run", *options], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert machine_state() == before
    return run


def test_install_dry_run_prints_the_steps_and_changes_nothing(tmp_path):
    prefix = tmp_path / "opt"
    run = install_dry_run("--prefix", str(prefix), "--with-mosquitto")
    steps, venv = run.stdout, prefix / "venv"
    print(steps)
    assert not prefix.exists()
    model = Path("/proc/device-tree/model")
    on_a_pi = model.exists() and model.read_bytes().startswith(b"Raspberry Pi")
    packages = re.search(r"Debian packages: (.*)", run.stderr)[1].split()
    assert {"python3-venv", "libdmtx0b", "libpango-1.0-0", "mosquitto"} <= set(packages)
    assert ("python3-picamera2" in packages) == on_a_pi
    assert f"+ /usr/bin/python3 -m venv --system-site-packages {venv}\n" in steps
    assert f"+ {venv}/bin/python -m pip install -q {prefix}/source\n" in steps
    unit = (
        f"+ write /etc/systemd/system/udigate.service (mode 0644): systemd/udigate.service, running {venv}/bin/udigate"
    )
    assert unit in steps
    if not Path("/etc/udigate/line.toml").exists():
        assert f"+ install -m 0640 -o root -g udigate {REPO}/config/line-example.toml /etc/udigate/line.toml" in steps
    if Path("/run/systemd/system").is_dir():
        assert steps.index("+ systemctl daemon-reload") < steps.index("+ systemctl enable --now udigate")
    else:
        assert "systemd is not running" in run.stderr


@pytest.mark.parametrize("modbus_port", [502, 5020])
def test_install_grants_the_port_capability_only_to_a_line_serving_a_port_below_1024(tmp_path, modbus_port):
    """With udigate installed (here: this checkout's, under --prefix) the dry run checks the
    configuration and shows the drop-in for port 502; the unit with it stays "OK"."""
    if Path("/etc/udigate/line.toml").exists():
        pytest.skip("a line is installed on this machine: install.sh checks its configuration")
    bin_dir = tmp_path / "opt" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "udigate").symlink_to(UDIGATE_BINARY)
    config = write_config(tmp_path, **{"plc.modbus.port": modbus_port, "plc.modbus.host": "0.0.0.0"})
    steps = install_dry_run("--prefix", str(tmp_path / "opt"), "--config", str(config)).stdout
    drop_in_path = "/etc/systemd/system/udigate.service.d/privileged-port.conf"
    if modbus_port >= 1024:
        assert drop_in_path not in steps
        return
    drop_in = re.search(rf"\+ write {drop_in_path} \(mode 0644\):\n((?:    .*\n)+)", steps)
    assert drop_in, steps
    text = re.sub(r"(?m)^    ", "", drop_in[1])
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n" in text
    unit = unit_copy(tmp_path, text)
    assert verify(unit) == []
    assert exposure(unit) <= MAX_EXPOSURE
