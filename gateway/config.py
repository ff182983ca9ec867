"""The line configuration: one validated model, loaded from one TOML file at start.

Every option has a default; config/line-example.toml lists them all with comments and
config/demo.toml is what ``udigate demo`` runs. Problems are reported per key as
``key.path = value: expected form`` (see :class:`ConfigError`).
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from plc.registers import REGISTER_COUNT
from vision.symbology import size_for

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
# ISA-95 style names: no spaces and none of MQTT's special characters + # / $
Name = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=64)]


def gtin_check_digit(body: str) -> int:
    """GS1 mod-10 check digit for the digits ``body`` (the GTIN without its last digit)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def _valid_gtin(value: str) -> str:
    if not re.fullmatch(r"\d{14}", value):
        raise ValueError("a GTIN-14: 14 digits, e.g. 06901234567892")
    if gtin_check_digit(value[:13]) != int(value[13]):
        raise ValueError(f"a GTIN-14 with a valid check digit (the last digit would be {gtin_check_digit(value[:13])})")
    return value


Gtin = Annotated[str, AfterValidator(_valid_gtin)]
# GS1 CSET 82 (the characters allowed in lot and serial fields), 1 to 20 of them
CSET82_PATTERN = r"""^[A-Za-z0-9!"%&'()*+,\-./:;<=>?_]{1,20}$"""
Cset82 = Annotated[str, Field(pattern=CSET82_PATTERN)]
AI_PATTERN = r"^\d{2,4}$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineSection(Section):
    # ISA-95 levels: enterprise / site / area / line (MQTT topics and Sparkplug names use them)
    enterprise: Name = "enterprise"
    site: Name = "site1"
    area: Name = "packaging"
    name: Name = "line1"
    # SQLite database, reject images and other state; relative paths are taken from the
    # working directory.
    data_dir: Path = Path("/var/lib/udigate")


class JobSection(Section):
    """The production order the line is packing (expected content of every code)."""

    id: str = ""
    gtin: Gtin | None = None
    di: str | None = Field(None, min_length=1, max_length=64)  # a non-GS1 DI (MA, HIBC, AHM)
    lot: Cset82 | None = None
    production_date: date | None = None
    expiry: date | None = None
    # Application identifiers every code must carry.
    required_ais: tuple[Annotated[str, Field(pattern=AI_PATTERN)], ...] = ("01", "17", "10", "21")
    # Date windows: production date at most this many days before today (and not in the future);
    # expiry at least this many days after today.
    max_production_age_days: int | None = Field(None, ge=0, le=3650)
    min_shelf_life_days: int | None = Field(None, ge=0, le=36500)
    serial_pattern: str = ""  # regular expression every serial must match in full, e.g. "SER\\d{4}"

    @field_validator("serial_pattern")
    @classmethod
    def _valid_serial_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"a regular expression ({exc})") from None
        return value


ISSUERS = ("GS1", "MA", "HIBC", "AHM", "ISBT 128")


class ContentSection(Section):
    """How codes are parsed and which issuing agencies this line prints."""

    issuers: tuple[Literal["GS1", "MA", "HIBC", "AHM", "ISBT 128"], ...] = ("GS1",)
    day_zero: Literal["accept", "warn", "reject"] = "warn"  # GS1 dates with day 00 (= end of month)
    ma_check: Literal["ignore", "warn", "reject"] = "warn"  # the MA check character is unconfirmed
    # AHM codes (syntax not public): a regular expression with named groups di, lot, serial,
    # production, expiry (dates YYMMDD or YYYYMMDD)
    ahm_pattern: str = ""

    @field_validator("ahm_pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            groups = re.compile(value).groupindex
        except re.error as exc:
            raise ValueError(f"a regular expression ({exc})") from None
        unknown = set(groups) - {"di", "lot", "serial", "production", "expiry"}
        if value and ("di" not in groups or unknown):
            raise ValueError("a regular expression with a named group di and only lot, serial, production, expiry")
        return value


class DefectMix(Section):
    """Share of simulated items (0–1) printed with each defect; the rest are good."""

    low_contrast: float = Field(0.0, ge=0, le=1)
    damaged_finder: float = Field(0.0, ge=0, le=1)
    no_code: float = Field(0.0, ge=0, le=1)
    wrong_lot: float = Field(0.0, ge=0, le=1)
    expired: float = Field(0.0, ge=0, le=1)
    duplicate_serial: float = Field(0.0, ge=0, le=1)
    bad_check_digit: float = Field(0.0, ge=0, le=1)
    missing_separator: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> DefectMix:
        total = sum(self.model_dump().values())
        if total > 1:
            raise ValueError(f"shares that add up to at most 1 (they add up to {total:g})")
        return self


class SimulatorSection(Section):
    rate_ppm: float = Field(300, ge=0, le=6000)  # items per minute; 0 = as fast as inspected
    items: int = Field(0, ge=0)  # stop after this many items; 0 = run until stopped
    width: int = Field(1280, ge=160, le=8192)
    height: int = Field(960, ge=120, le=8192)
    module_px: float = Field(6.0, ge=2, le=30)  # pixels per module in the frame
    rotation_jitter_deg: float = Field(10, ge=0, le=180)
    perspective: float = Field(0.01, ge=0, le=0.2)  # corner displacement, share of label size
    blur_sigma: float = Field(0.6, ge=0, le=5)  # Gaussian blur, pixels
    noise_sigma: float = Field(2.0, ge=0, le=40)  # sensor noise, grey levels
    lighting: float = Field(0.2, ge=0, le=0.9)  # brightness falls by up to this share across the frame
    # A printhead running dry: the ink's grey level rises by this much per 1000 items, so contrast
    # and grades fall over the run until items are rejected. Faded items carry no ground truth.
    ink_fade_per_1000: float = Field(0, ge=0, le=255)
    shelf_life_days: int = Field(730, ge=1, le=36500)
    seed: int | None = Field(None, ge=0)  # fixed seed = the same items (and serials) every run
    defects: DefectMix = DefectMix()


class FolderSection(Section):
    path: Path
    loop: bool = False
    rate_ppm: float = Field(0, ge=0, le=60000)  # 0 = as fast as inspected


def _valid_box(value: tuple[int, ...]) -> tuple[int, ...]:
    if len(value) != 4 or min(value[:2]) < 0 or min(value[2:]) <= 0:
        raise ValueError("[x, y, width, height]: 4 integers, x and y >= 0, width and height > 0")
    return value


Box = Annotated[tuple[int, ...], AfterValidator(_valid_box)]  # a rectangle of the frame, in pixels


class CameraSection(Section):
    """A real camera (kind = "opencv" or "picamera2"): fixed settings, so every label is lit and
    exposed alike (automatic exposure would change the grades)."""

    # opencv: a V4L2 device ("/dev/video0"), its index ("0") or a video file (tests, replays);
    # picamera2: the camera number ("0")
    device: str = "0"
    width: int = Field(1280, ge=160, le=8192)
    height: int = Field(960, ge=120, le=8192)
    fps: float = Field(30, gt=0, le=1000)  # opencv: requested rate; a video file replays at this rate
    rate_ppm: float = Field(60, ge=0, le=60000)  # trigger = "timer": captures per minute; 0 = every frame
    exposure_us: int | None = Field(None, ge=10, le=1_000_000)  # fixed exposure; none = the camera's own
    gain: float | None = Field(None, ge=0, le=64)  # fixed analogue gain
    focus: float | None = Field(None, ge=0, le=1000)  # picamera2: lens position in dioptres; opencv: CAP_PROP_FOCUS
    roi: Box | None = None  # [x, y, width, height] cut from every frame before vision
    # picamera2 with an external trigger (Global Shutter Camera XTR pin): every frame is one item,
    # source.trigger = "camera"
    external_trigger: bool = False
    loop: bool = False  # a video file starts again at its end


class GpioSection(Section):
    """A photo-eye on a GPIO line (trigger = "gpio"), through libgpiod's character device."""

    chip: str = "/dev/gpiochip0"  # Raspberry Pi 5: /dev/gpiochip4 (the RP1's header pins)
    line: int = Field(17, ge=0, le=511)  # the line offset: BCM number on a Raspberry Pi
    active_low: bool = False  # an NPN (sinking) sensor pulls the line low when it sees a pack
    debounce_ms: float = Field(5, ge=0, le=1000)
    # from the photo-eye to the camera's field of view: the capture waits this long
    delay_ms: float = Field(0, ge=0, le=10_000)


class PresenceSection(Section):
    """Free-running capture (trigger = "presence"): an item is a pack entering the frame, seen
    as a share of the region's pixels differing from the empty belt."""

    region: Box | None = None  # [x, y, width, height] watched; none = the whole frame
    level: float = Field(25, gt=0, le=255)  # grey levels a pixel must differ by
    share: float = Field(0.05, gt=0, le=1)  # share of the region's pixels that must differ
    settle_frames: int = Field(1, ge=0, le=100)  # frames to wait after entry (the pack moves into view)


class IoBoardSection(Section):
    """The line I/O board (firmware/: an RP2040 with the photo-eye, the encoder, the camera
    trigger and strobe, and an ejector fired by encoder count), on a serial port."""

    enabled: bool = False
    port: str = "/dev/ttyACM0"  # the Pico's USB serial, or a UART such as /dev/ttyAMA0
    baudrate: int = Field(115200, ge=1200, le=4_000_000)
    debounce_ms: int = Field(5, ge=0, le=1000)  # photo-eye
    eject_counts: int = Field(3000, ge=1)  # encoder counts from the photo-eye to the ejector
    trigger_us: int = Field(200, ge=1)  # camera trigger pulse
    strobe_us: int = Field(100, ge=0)  # strobe pulse, with the trigger
    reject_us: int = Field(20_000, ge=1)  # ejector pulse
    heartbeat_ms: int = Field(500, ge=50)  # both sides; 3 missed = the board or the gateway is lost


class SourceSection(Section):
    kind: Literal["simulator", "folder", "opencv", "picamera2"] = "simulator"
    # "timer": the source's own rate; "plc": one capture per trigger edge from the PLC over
    # Modbus (plc_control bit 2, with the PLC's item id and encoder count; docs/plc-register-map.md);
    # "gpio": a photo-eye ([source.gpio]); "presence": free-running, a pack entering the frame
    # ([source.presence]); "camera": the camera's own hardware trigger, one frame per item;
    # "ioboard": the I/O board's photo-eye ([ioboard]), which also ejects the rejects
    trigger: Literal["timer", "plc", "gpio", "presence", "camera", "ioboard"] = "timer"
    simulator: SimulatorSection = SimulatorSection()
    folder: FolderSection | None = None
    camera: CameraSection = CameraSection()
    gpio: GpioSection = GpioSection()
    presence: PresenceSection = PresenceSection()

    @model_validator(mode="after")
    def _folder_given(self) -> SourceSection:
        if self.kind == "folder" and self.folder is None:
            raise ValueError('a [source.folder] table with path = "..." when kind = "folder"')
        return self

    @model_validator(mode="after")
    def _trigger_fits_the_source(self) -> SourceSection:
        cameras = ("opencv", "picamera2")
        if self.trigger in ("gpio", "presence", "ioboard") and self.kind not in cameras:
            raise ValueError(f'source.trigger = "{self.trigger}" with a camera: kind = "opencv" or "picamera2"')
        if self.trigger == "camera" and not (self.kind == "picamera2" and self.camera.external_trigger):
            raise ValueError('source.trigger = "camera" with kind = "picamera2" and camera.external_trigger = true')
        if self.camera.external_trigger and self.trigger != "camera":
            raise ValueError('source.camera.external_trigger = true with source.trigger = "camera"')
        return self


class VisionSection(Section):
    decoder: Literal["udigate", "zxing", "libdmtx"] = "udigate"
    # udigate only: "consensus" = zxing-cpp must read the same bytes or the item is rejected;
    # "fallback" = zxing-cpp's corners seed udigate's grid when udigate finds nothing; "off"
    second_opinion: Literal["consensus", "fallback", "off"] = "consensus"
    polarity: Literal["auto", "dark", "light"] = "auto"  # dark modules on light, light on dark, or both
    size_hint: tuple[int, ...] | None = None  # [rows, cols] when the line prints one symbol size
    max_symbols: int = Field(1, ge=1, le=16)  # symbols to look for per frame (an item carries one)
    workers: int = Field(2, ge=1, le=32)  # decoding threads
    queue_size: int = Field(4, ge=1, le=1024)  # frames waiting for a worker
    roi: Box | None = None  # [x, y, width, height] in pixels; none = whole frame

    @field_validator("size_hint")
    @classmethod
    def _size_form(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (len(value) != 2 or size_for(*value) is None):
            raise ValueError("[rows, cols] of an ECC200 or DMRE size, e.g. [22, 22] or [16, 48]")
        return value

    @model_validator(mode="after")
    def _second_opinion_needs_own_reader(self) -> VisionSection:
        if self.decoder != "udigate" and "second_opinion" in self.model_fields_set and self.second_opinion != "off":
            raise ValueError('second_opinion only with decoder = "udigate" (set it to "off")')
        return self


GRADE_PARAMETERS = {
    "2011": ("Decode", "SC", "MOD", "RM", "FPD", "AN", "GN", "UEC", "PG"),
    "2024": ("Decode", "SC", "MOD", "RM", "FPD", "AN", "GN", "UEC", "PG"),
    "dpm": ("Decode", "CC", "CM", "MR", "FPD", "AN", "GN", "UEC"),
}
Band = tuple[float, float, float, float]


class GradingSection(Section):
    enabled: bool = True  # grade every item (needs vision.decoder = "udigate")
    method: Literal["2011", "2024", "dpm"] = "2011"
    min_grade: float = Field(1.5, ge=0, le=4)  # 1.5 = GS1's 1.5/08/660 for healthcare
    min_parameters: dict[str, float] = {}  # per-parameter minimum grades, e.g. {SC = 2.0}
    warn_margin: float = Field(0.5, ge=0, le=4)  # warn when the rolling mean grade nears min_grade
    # Drift warning (review UI, /metrics): the trend of each parameter over this window, warned
    # about when it is falling and reaches the minimum within the horizon.
    drift_window_minutes: float = Field(60, ge=5, le=24 * 60)
    drift_horizon_minutes: float = Field(60, ge=1, le=7 * 24 * 60)
    aperture_mil: float = Field(8.0, gt=0, le=50)
    x_dimension_mm: float = Field(0.254, gt=0, le=5)  # nominal module size of the printed code
    wavelength_nm: int = Field(660, ge=300, le=1100)
    min_module_px: float = Field(5.0, ge=1, le=50)
    fpd_damage: Band = (0.0, 0.09, 0.13, 0.17)
    print_growth: Band = (0.15, 0.30, 0.45, 0.60)
    calibration_file: Path = Path("calibration.json")  # relative paths: inside line.data_dir
    calibration_max_age_days: int = Field(180, ge=1, le=3650)

    @field_validator("min_parameters")
    @classmethod
    def _known_parameters(cls, value: dict[str, float]) -> dict[str, float]:
        known = sorted({name for names in GRADE_PARAMETERS.values() for name in names})
        for name, grade in value.items():
            if name not in known:
                raise ValueError(f"parameter names from {', '.join(known)} (not {name!r})")
            if not 0 <= grade <= 4:
                raise ValueError(f"grades from 0 to 4 ({name} = {grade})")
        return value

    @field_validator("fpd_damage", "print_growth")
    @classmethod
    def _rising_band(cls, value: Band) -> Band:
        if any(b < a for a, b in zip(value, value[1:], strict=False)) or value[0] < 0:
            raise ValueError("4 limits for grades A, B, C, D, from 0 upwards, e.g. [0.0, 0.09, 0.13, 0.17]")
        return value

    @model_validator(mode="after")
    def _parameters_of_the_method(self) -> GradingSection:
        foreign = [name for name in self.min_parameters if name not in GRADE_PARAMETERS[self.method]]
        if foreign:
            raise ValueError(
                f"min_parameters of parameters that method {self.method!r} grades:"
                f" {', '.join(GRADE_PARAMETERS[self.method])} (not {', '.join(foreign)})"
            )
        return self


class ModbusSection(Section):
    enabled: bool = True
    # "server": the PLC polls the station; "client": the station writes into the PLC's registers
    mode: Literal["server", "client"] = "server"
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "0.0.0.0"  # server: the address to listen on; client: the PLC's address
    port: int = Field(502, ge=1, le=65535)
    serial_port: str = ""  # rtu: /dev/ttyUSB0, /dev/ttyAMA0 …
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    # client mode
    unit_id: int = Field(1, ge=0, le=247)  # the PLC's unit (slave) id
    base_address: int = Field(0, ge=0, le=65536 - REGISTER_COUNT)  # where the station's map starts in the PLC
    poll_ms: float = Field(20, ge=1, le=10000)  # how often the PLC's block is read
    timeout_ms: float = Field(500, ge=10, le=60000)  # no answer for this long = the PLC is gone

    @model_validator(mode="after")
    def _peer_given(self) -> ModbusSection:
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError('a serial_port = "/dev/ttyUSB0" (or similar) when transport = "rtu"')
        if self.mode == "client" and self.transport == "tcp" and self.host in ("", "0.0.0.0", "::"):
            raise ValueError(f'host = the PLC\'s address (e.g. "192.168.0.10") when mode = "client", not {self.host!r}')
        return self


class PlcSimulatorSection(Section):
    enabled: bool = False
    poll_ms: float = Field(20, ge=1, le=10000)
    # With [source] trigger = "plc" the simulated PLC runs the belt: items at random spacing pass
    # the camera (trigger), ride ejector_mm to the ejector, which fires on a reject or a missing result.
    speed_mm_s: float = Field(250, gt=0, le=10000)
    pitch_mm: tuple[float, float] = (40.0, 60.0)
    ejector_mm: float = Field(300, gt=0, le=100000)

    @field_validator("pitch_mm")
    @classmethod
    def _pitch_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("[min, max] spacing in mm with 0 < min <= max, e.g. [40, 60]")
        return value


class PlcSection(Section):
    # The PLC needs each result within this time of the trigger (camera-to-ejector distance / belt
    # speed, less its scan time). A later result is a reject with result code TIMEOUT (reason
    # deadline_missed), never a silent pass; applies to sources that run with the line (rate > 0,
    # cameras), not to replay.
    deadline_ms: float = Field(1000, ge=1, le=60000)
    # A PLC that toggles plc_control bit 0 is watched: no toggle for this long raises the PLC alarm
    # (status bit, MQTT …/alarms, log); 0 = not watched.
    plc_heartbeat_timeout_s: float = Field(3.0, ge=0, le=600)
    # While the PLC's heartbeat is lost: "alarm" only, "reject_all" (every result a reject) or
    # "stop_line" (status bit 9 asks to stop the line, and reject-all).
    on_heartbeat_lost: Literal["alarm", "reject_all", "stop_line"] = "alarm"
    modbus: ModbusSection = ModbusSection()
    simulator: PlcSimulatorSection = PlcSimulatorSection()


def _existing_file(what: str):
    def check(path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"{what} (no such file)")
        return path

    return AfterValidator(check)


PemFile = Annotated[Path, _existing_file("a readable PEM file")]
_password_file = _existing_file("a readable file whose first line is the password")


class MqttTlsSection(Section):
    """TLS to the broker (port 8883 by convention); the broker's certificate is always verified."""

    enabled: bool = False
    ca_file: PemFile | None = None  # the CA that signed the broker's certificate; none = the system's CAs
    cert_file: PemFile | None = None  # client certificate (brokers with require_certificate) ...
    key_file: PemFile | None = None  # ... and its private key
    check_hostname: bool = True  # false only for brokers reached by an address not in their certificate

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mqtt.tls.cert_file and mqtt.tls.key_file together (a client certificate needs its key)")
        return self


class OutboxSection(Section):
    """Every record is committed here before it is published and deleted after the broker's
    acknowledgement, so a broker outage or a killed gateway loses nothing."""

    max_mb: float = Field(512, gt=0, le=1_000_000)  # disk quota of records waiting for the broker
    # "process": survives a killed gateway (WAL, synchronous=NORMAL); "power": also a power cut
    # (an fsync per record)
    durability: Literal["process", "power"] = "process"
    # At 80 % the …/alarms outbox_filling alarm is raised. When full, a record cannot be kept:
    # "stop_line" asks the PLC to stop the line (status bit 9) and rejects every item until there
    # is room again, so no pack leaves without its record; "alarm" keeps the line running and
    # counts the records it could not keep.
    on_full: Literal["stop_line", "alarm"] = "stop_line"


class SparkplugSection(Section):
    """``mqtt.format = "sparkplug"``: Sparkplug B 3.0 (spBv1.0/<group>/…/<edge node>/<device>)."""

    group_id: Name = "udigate"
    edge_node_id: str = "{site}-{line}"  # fields {enterprise} {site} {area} {line}
    device_id: Name = "station"
    # The primary host application whose retained spBv1.0/STATE/<id> gates publishing: while it
    # is offline, records wait in the outbox and are replayed as historical; "" = not watched.
    primary_host_id: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$")
    # The specification publishes data at QoS 0 (the outbox then lets a record go once written to
    # the socket); 1 keeps it until the broker's acknowledgement, as the JSON feed does.
    data_qos: Literal[0, 1] = 0

    @field_validator("edge_node_id")
    @classmethod
    def _edge_node_form(cls, value: str) -> str:
        return _topic_fields(value, "a name", allow_slash=False)


def _topic_fields(value: str, what: str, allow_slash: bool = True) -> str:
    try:
        topic = value.format(enterprise="e", site="s", area="a", line="l")
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{what} that uses no fields but {{enterprise}} {{site}} {{area}} {{line}}") from None
    bad = "+#$" if allow_slash else "+#$/"
    if not topic or any(c in topic for c in bad) or topic.startswith("/") or topic.endswith("/") or " " in topic:
        raise ValueError(f"{what} without spaces, {' '.join(bad)} and without a leading or trailing /")
    return value


class MqttSection(Section):
    enabled: bool = True
    # Empty host: start an embedded broker on 127.0.0.1:port (mosquitto when installed,
    # otherwise an in-process one); when the port is taken, a free one is used and shown.
    host: str = ""
    port: int = Field(1883, ge=1, le=65535)
    # ISA-95 style: fields {enterprise} {site} {area} {line} from [line]
    topic_root: str = "udigate/{site}/{line}"
    qos: Literal[1, 2] = 1  # item records; an acknowledgement is what lets the outbox delete one
    client_id: str = ""  # empty = udigate-<site>-<line>
    keepalive_s: int = Field(30, ge=5, le=3600)
    counters_interval_s: float = Field(10, gt=0, le=3600)
    # "auto": MQTT 5 (record id as a user property, response topics), 3.1.1 when the broker refuses it
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    username: str = ""
    password: str = ""  # prefer password_file: config files get copied around
    password_file: Annotated[Path, _password_file] | None = None  # first line is the password
    format: Literal["json", "sparkplug"] = "json"
    # also publish each record as an EPCIS 2.0 ObjectEvent (JSON-LD) on …/epcis
    epcis: bool = False
    # EPCIS readPoint / bizLocation: URIs (a GS1 Digital Link of a GLN, an SGLN …); "" = a
    # udigate URN of the line (urn:udigate:location:<site>:<line>) / none
    epcis_read_point: str = Field("", pattern=r"^([A-Za-z][A-Za-z0-9+.-]*:\S+)?$")
    epcis_biz_location: str = Field("", pattern=r"^([A-Za-z][A-Za-z0-9+.-]*:\S+)?$")
    tls: MqttTlsSection = MqttTlsSection()
    outbox: OutboxSection = OutboxSection()
    sparkplug: SparkplugSection = SparkplugSection()

    @field_validator("topic_root")
    @classmethod
    def _topic_root_form(cls, value: str) -> str:
        return _topic_fields(value, "a topic")

    @model_validator(mode="after")
    def _one_password(self) -> MqttSection:
        if self.password and self.password_file is not None:
            raise ValueError("mqtt.password or mqtt.password_file, not both")
        if (self.password or self.password_file) and not self.username:
            raise ValueError("mqtt.username with mqtt.password / mqtt.password_file")
        return self

    def secret(self) -> str | None:
        """The password, read from password_file when set."""
        if self.password_file is not None:
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
            return lines[0] if lines else ""
        return self.password or None


class UdidSection(Section):
    """The product master: China's national UDI database, imported with ``udigate udid import``."""

    enabled: bool = False  # check every DI against the imported UDID
    # the level this line packs: "unit" (minimum sales unit) or the UDID's package level name (盒, 箱 …);
    # "" = any level
    package_level: str = "unit"


class SerialsSection(Section):
    """Serial uniqueness: a second code with the same DI and serial is a duplicate."""

    scope: Literal["job", "line", "all"] = "line"  # within the order, the line, or every line of this database
    # "process": survives a killed process (WAL, synchronous=NORMAL); "power": also a power cut
    # (an fsync per item, 0.2-10 ms on edge storage)
    durability: Literal["process", "power"] = "process"


class RejectLogSection(Section):
    """The review store: rejects (and a sample of passes) with their pictures and records."""

    enabled: bool = True
    image_format: Literal["png", "jpg"] = "png"  # of the full frame; crops and overlays are PNG
    keep_passes_every: int = Field(100, ge=0)  # also keep every Nth passed item, for comparison; 0 = none
    # Items with pictures waiting for the writer (each holds its frame in memory). Beyond this a
    # line in real time keeps the item's record without its pictures rather than delay a verdict.
    picture_backlog: int = Field(32, ge=1, le=1024)
    # Retention, oldest first: whichever limit is reached first.
    max_age_days: float = Field(90, gt=0, le=3650)
    max_disk_mb: float = Field(2000, gt=0)  # pictures and records of the store
    min_free_mb: float = Field(200, ge=0)  # and leave this much free on the data disk


def _argon2_hash(value: str) -> str:
    if not value.startswith("$argon2"):
        raise ValueError("an argon2 hash as printed by `udigate user hash` ($argon2id$v=19$…), not a password")
    return value


class WebUser(Section):
    name: Name
    password_hash: Annotated[str, AfterValidator(_argon2_hash)]
    # engineer: dispositions; admin: dispositions and settings (production order)
    role: Literal["engineer", "admin"] = "engineer"


class WebSection(Section):
    """The review UI and the Prometheus endpoint (/metrics), served by the gateway."""

    enabled: bool = True
    host: str = "127.0.0.1"  # localhost only; "0.0.0.0" to serve the plant network
    port: int = Field(8080, ge=0, le=65535)  # 0 = any free port (printed at start)
    read_only_without_login: bool = True  # browse without login; dispositions always need one
    users: tuple[WebUser, ...] = ()
    # TOML file with [[users]] tables like web.users: keeps the hashes out of the line config
    users_file: Annotated[Path, _existing_file("a TOML file with [[users]] tables")] | None = None
    session_hours: float = Field(12, gt=0, le=24 * 30)
    metrics: bool = True  # Prometheus text format on /metrics (no login: plant monitoring scrapes it)

    def all_users(self) -> dict[str, WebUser]:
        """The users of web.users and of users_file, by name (a bad users_file raises ConfigError)."""
        users = {u.name: u for u in self.users}
        if self.users_file is not None:
            source = str(self.users_file)
            try:
                raw = tomllib.loads(self.users_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(source, [f"cannot read the users file: {exc}"]) from None
            entries = raw.get("users")
            if not isinstance(entries, list):
                raise ConfigError(source, ["users: a list of [[users]] tables with name and password_hash"])
            for index, entry in enumerate(entries):
                try:
                    user = WebUser.model_validate(entry)
                except ValidationError as exc:
                    # named as in web.users, whose keys a users file shares
                    problems = [_describe({**e, "loc": ("web", "users", index, *e["loc"])}) for e in exc.errors()]
                    raise ConfigError(source, problems) from None
                users[user.name] = user
        return users


class Config(Section):
    line: LineSection = LineSection()
    job: JobSection = JobSection()
    content: ContentSection = ContentSection()
    source: SourceSection = SourceSection()
    vision: VisionSection = VisionSection()
    grading: GradingSection = GradingSection()
    plc: PlcSection = PlcSection()
    mqtt: MqttSection = MqttSection()
    udid: UdidSection = UdidSection()
    serials: SerialsSection = SerialsSection()
    rejects: RejectLogSection = RejectLogSection()
    web: WebSection = WebSection()
    ioboard: IoBoardSection = IoBoardSection()

    @model_validator(mode="after")
    def _grading_needs_own_reader(self) -> Config:
        if self.vision.decoder != "udigate" and self.grading.enabled and "enabled" in self.grading.model_fields_set:
            raise ValueError('grading.enabled = true only with vision.decoder = "udigate" (it grades on its grid)')
        return self

    @model_validator(mode="after")
    def _ioboard_trigger_needs_the_board(self) -> Config:
        if self.source.trigger == "ioboard" and not self.ioboard.enabled:
            raise ValueError('ioboard.enabled = true when source.trigger = "ioboard"')
        return self

    @model_validator(mode="after")
    def _plc_trigger_needs_modbus(self) -> Config:
        if self.source.trigger == "plc" and not self.plc.modbus.enabled:
            raise ValueError('plc.modbus.enabled = true when source.trigger = "plc" (the trigger comes over Modbus)')
        if self.plc.simulator.enabled and self.plc.modbus.transport == "rtu":
            raise ValueError(
                'plc.simulator.enabled = false with plc.modbus.transport = "rtu" (the simulated PLC '
                "needs the other end of the serial line: run python -m plc.simulator rtu:DEVICE there)"
            )
        return self

    def calibration_path(self) -> Path:
        """The reflectance calibration file (``grading.calibration_file`` inside data_dir)."""
        return self.line.data_dir / self.grading.calibration_file


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    return validate_config(raw, source)


def validate_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from None


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc}"]) from None
    return parse_config(text, str(path))


def demo_config_text() -> str:
    """The text of config/demo.toml as installed with udigate."""
    return resources.files("gateway.configs").joinpath("demo.toml").read_text(encoding="utf-8")


def override(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with dotted keys changed (``{"source.simulator.rate_ppm": 600}``),
    validated like a file."""
    raw = config.model_dump(mode="json", exclude_none=True)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return validate_config(raw, "command line")


def dump_config(config: Config, hide_secrets: bool = False) -> str:
    """The resolved configuration as TOML (unset options are left out); ``hide_secrets`` masks
    passwords and password hashes (the settings page shows it)."""
    raw = config.model_dump(mode="json", exclude_none=True)
    if hide_secrets:
        if raw["mqtt"].get("password"):
            raw["mqtt"]["password"] = "********"
        for user in raw["web"]["users"]:
            user["password_hash"] = "********"
    return tomli_w.dumps(raw)


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"]) or "(top level)"
    message = error["msg"]
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_keys(error["loc"][:-1])
        return f"{path}: unknown key; expected one of: {', '.join(known)}"
    if kind == "missing":
        return f"{path}: missing; this key is required"
    for prefix in ("Value error, ", "Input should be "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if message.startswith("String should match pattern"):
        message = _PATTERN_FORMS.get(error.get("ctx", {}).get("pattern"), message)
    value = error.get("input")
    shown = "(a table)" if isinstance(value, dict) else repr(value)
    if not error["loc"] or kind in ("value_error", "assertion_error") and isinstance(value, dict):
        # model-level checks (several keys together) carry the key name in the message
        return f"{path}: expected {message}"
    return f"{path} = {shown}: expected {message}"


_PATTERN_FORMS = {
    NAME_PATTERN: "a name of letters, digits, '_', '.' or '-' (no spaces, no + # / $)",
    CSET82_PATTERN: "1 to 20 characters of GS1 CSET 82 (letters, digits, !\"%&'()*+,-./:;<=>?_)",
    AI_PATTERN: 'a GS1 application identifier of 2 to 4 digits, e.g. "21"',
}


def _known_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = Config
    for key in loc:
        if isinstance(key, int):
            continue
        field = model.model_fields.get(str(key))
        annotation = field.annotation if field else None
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        submodels = [a for a in candidates if issubclass(a, BaseModel)]
        if not submodels:
            return []
        model = submodels[0]
    return sorted(model.model_fields)
