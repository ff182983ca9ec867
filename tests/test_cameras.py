"""Camera sources and triggers: OpenCV on a real video file, picamera2 and gpiod through fakes of
their Python modules only (the hardware boundary; neither library is installed here)."""

import sys
import threading
import time
import types
from datetime import date, timedelta

import cv2
import numpy as np
import pytest

from gateway.app import Gateway
from gateway.config import CameraSection, PresenceSection, parse_config
from gateway.sources import PlcTriggers
from gateway.sources.camera import CameraError, CameraSource, EndOfVideo, OpenCvCamera, Picamera2Camera
from gateway.sources.gpio import GpioError, GpioTriggers
from gateway.sources.presence import PresenceDetector
from gateway.sources.simulator import LineSimulator
from plc.registers import PlcTrigger

from .conftest import line_config

PACKS = 6


def write_video(path, frames, fps=30):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height), isColor=True)
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame)
    writer.release()


@pytest.fixture(scope="module")
def line_video(tmp_path_factory):
    """A belt filmed free-running: empty belt, a pack passes (two frames), empty belt … (lossless)."""
    config = parse_config("[source.simulator]\nseed = 4\nitems = 6\nrate_ppm = 0\nwidth = 800\nheight = 600\n")
    simulator = LineSimulator(config.source.simulator, config.job, today=date.today())
    labels = [f.image for f in simulator.frames(threading.Event())]
    empty = np.full_like(labels[0], int(np.median(labels[0])))
    frames = [empty] * 3
    for label in labels:
        frames += [label, label, empty, empty, empty]
    path = tmp_path_factory.mktemp("video") / "belt.avi"
    write_video(path, frames)
    return path, len(labels)


def test_presence_on_a_recorded_video_gives_one_item_per_pack(tmp_path, line_video):
    path, packs = line_video
    config = line_config(
        tmp_path,
        **{
            "source.kind": "opencv",
            "source.trigger": "presence",
            "source.camera.device": str(path),
            "source.camera.fps": 60,
            "plc.modbus.enabled": False,
            "mqtt.enabled": False,
            "web.enabled": False,
        },
    )
    gateway = Gateway(config)
    gateway.start()
    assert gateway.run(threading.Event()) == packs
    summary = gateway.close()
    assert summary.source_error is None
    # every pack of the video decoded, graded and passed against the demo's production order
    assert (summary.stats.items, summary.stats.passed) == (packs, packs)
    assert summary.stats.grade_count == packs


def test_opencv_frames_are_grey_cut_to_the_roi_and_a_file_ends_or_loops(tmp_path):
    colour = np.zeros((120, 160, 3), np.uint8)
    colour[..., 2] = 200  # red: grey 60 after conversion
    path = tmp_path / "colour.avi"
    write_video(path, [colour] * 3)
    camera = OpenCvCamera(CameraSection(device=str(path), roi=(10, 20, 50, 40), fps=500))
    image, t = camera.read()
    assert image.shape == (40, 50) and image.dtype == np.uint8 and abs(int(image[0, 0]) - 60) <= 2
    assert abs(t - time.monotonic()) < 1
    camera.read(), camera.read()
    with pytest.raises(EndOfVideo):
        camera.read()
    looping = OpenCvCamera(CameraSection(device=str(path), loop=True, fps=500))
    assert len([looping.read() for _ in range(7)]) == 7


def test_a_missing_camera_is_named_with_what_to_check():
    with pytest.raises(CameraError, match=r"source.camera.device = '/dev/video99': cannot open it as a V4L2 camera"):
        OpenCvCamera(CameraSection(device="/dev/video99"))


class StampedCamera:
    """A fake camera at the hardware boundary: a frame every ``period`` s, its pixels the frame number."""

    name = "fake"

    def __init__(self, period=0.01):
        self.period, self.count, self.closed = period, 0, False
        self.times = []

    def read(self):
        time.sleep(self.period)
        self.count += 1
        t = time.monotonic()
        self.times.append(t)
        return np.full((8, 8), self.count % 256, np.uint8), t

    def close(self):
        self.closed = True


def fake_gpiod(monkeypatch, edges_after_s):
    """The subset of libgpiod v2's Python bindings udigate uses, with edges at given delays."""
    requested = {}

    class Request:
        def __init__(self):
            start = time.monotonic_ns()
            self.pending = [start + int(s * 1e9) for s in edges_after_s]
            self.released = False

        def wait_edge_events(self, timeout):
            due = [t for t in self.pending if t <= time.monotonic_ns()]
            if not due:
                time.sleep(min(timeout.total_seconds(), 0.005))
            return bool(due)

        def read_edge_events(self):
            now = time.monotonic_ns()
            due = [t for t in self.pending if t <= now]
            self.pending = [t for t in self.pending if t > now]
            return [types.SimpleNamespace(timestamp_ns=t) for t in due]

        def release(self):
            self.released = True

    def request_lines(chip, consumer, config):
        requested.update(chip=chip, consumer=consumer, config=config, request=Request())
        return requested["request"]

    gpiod = types.ModuleType("gpiod")
    gpiod.LineSettings = lambda **settings: settings
    gpiod.request_lines = request_lines
    line = types.ModuleType("gpiod.line")
    line.Edge = types.SimpleNamespace(RISING="rising", FALLING="falling")
    gpiod.line = line
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    return requested


def test_a_photo_eye_takes_the_first_frame_after_its_delay(monkeypatch):
    requested = fake_gpiod(monkeypatch, [0.15, 0.4, 0.45])
    source = parse_config(
        '[source]\nkind = "opencv"\ntrigger = "gpio"\n[source.gpio]\nchip = "/dev/gpiochip4"\nline = 27\n'
        "active_low = true\ndebounce_ms = 3\ndelay_ms = 60\n"
    ).source
    camera = StampedCamera()
    stop = threading.Event()
    frames = []
    for frame in CameraSource(source, camera, gpio=GpioTriggers(source.gpio)).frames(stop):
        frames.append(frame)
        if len(frames) == 3:
            stop.set()
    assert requested["chip"] == "/dev/gpiochip4" and requested["consumer"] == "udigate"
    settings = requested["config"][27]
    assert settings == {"edge_detection": "rising", "active_low": True, "debounce_period": timedelta(milliseconds=3)}
    assert [f.item_id for f in frames] == [1, 2, 3]
    for frame in frames:
        captured = camera.times[int(frame.image[0, 0]) - 1]
        assert frame.t_trigger + 0.06 <= captured < frame.t_trigger + 0.06 + 0.03  # the next frame after the delay
    assert frames[2].t_trigger - frames[1].t_trigger == pytest.approx(0.05, abs=0.01)  # kernel timestamps kept
    assert requested["request"].released and camera.closed


def test_gpio_without_its_library_says_what_to_install():
    with pytest.raises(GpioError, match="pip install gpiod"):
        GpioTriggers(parse_config("").source.gpio)


def fake_picamera2(monkeypatch, width, height):
    made = {}

    class Request:
        def __init__(self, number):
            self.number = number

        def make_array(self, stream):
            assert stream == "main"
            yuv = np.zeros((height * 3 // 2, width), np.uint8)
            yuv[:height] = self.number  # the Y plane
            yuv[height:] = 128  # chroma
            return yuv

        def release(self):
            made["released"] = made.get("released", 0) + 1

    class Picamera2:
        def __init__(self, number):
            made["number"], self.frames = number, 0

        def create_video_configuration(self, **settings):
            made["settings"] = settings
            return settings

        def configure(self, settings):
            made["configured"] = settings

        def start(self):
            made["started"] = True

        def capture_request(self):
            time.sleep(0.005)
            self.frames += 1
            return Request(self.frames)

        def stop(self):
            made["stopped"] = True

        def close(self):
            made["closed"] = True

    module = types.ModuleType("picamera2")
    module.Picamera2 = Picamera2
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return made


def test_picamera2_with_an_external_trigger_gives_one_item_per_frame(monkeypatch):
    made = fake_picamera2(monkeypatch, 320, 240)
    from gateway.sources import open_source

    config = parse_config(
        '[source]\nkind = "picamera2"\ntrigger = "camera"\n[source.camera]\ndevice = "1"\nwidth = 320\nheight = 240\n'
        "exposure_us = 200\ngain = 2.0\nfocus = 4.5\nexternal_trigger = true\nroi = [8, 4, 32, 24]\n"
    )
    stop = threading.Event()
    frames = []
    for frame in open_source(config).frames(stop):
        frames.append(frame)
        if len(frames) == 4:
            stop.set()
    assert made["number"] == 1 and made["started"] and made["stopped"] and made["closed"]
    assert made["settings"]["main"] == {"size": (320, 240), "format": "YUV420"}
    assert made["settings"]["controls"] == {
        "AeEnable": False,
        "ExposureTime": 200,
        "AnalogueGain": 2.0,
        "AfMode": 0,
        "LensPosition": 4.5,
    }  # no FrameRate: the trigger pulses set the rate
    assert [f.item_id for f in frames] == [1, 2, 3, 4]
    assert [int(f.image[0, 0]) for f in frames] == [1, 2, 3, 4]  # every frame an item, in order
    assert frames[0].image.shape == (24, 32) and frames[0].origin == "picamera2:1"


def test_picamera2_missing_names_the_os_package():
    with pytest.raises(CameraError, match="sudo apt install python3-picamera2"):
        Picamera2Camera(CameraSection())


def test_presence_counts_one_item_per_pack_with_hysteresis():
    detector = PresenceDetector(PresenceSection(level=30, share=0.2, settle_frames=1))
    empty = np.full((40, 40), 100, np.uint8)
    pack = empty.copy()
    pack[:, :20] = 220  # half the view
    edge = empty.copy()
    edge[:, :6] = 220  # 15 %: between the two thresholds
    sequence = [empty, pack, pack, edge, pack, empty, empty, pack, pack, pack, empty]
    taken = [i for i, image in enumerate(sequence) if detector.update(image)]
    assert taken == [2, 8]  # one frame after each entry; the dip to 15 % is the same pack


def test_trigger_settings_must_fit_the_source():
    for text, message in (
        ('[source]\ntrigger = "presence"', 'source.trigger = "presence" with a camera'),
        ('[source]\nkind = "opencv"\ntrigger = "camera"', 'with kind = "picamera2" and camera.external_trigger'),
        ('[source]\nkind = "picamera2"\n[source.camera]\nexternal_trigger = true', 'with source.trigger = "camera"'),
        ("[source.camera]\nroi = [0, 0, 0, 10]", "source.camera.roi = [0, 0, 0, 10]: expected [x, y, width, height]"),
    ):
        with pytest.raises(Exception, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_config(text)


def test_plc_triggers_take_the_frame_after_the_edge_and_keep_the_plc_item_id():
    plc = PlcTriggers()
    source = parse_config('[source]\nkind = "opencv"\ntrigger = "plc"\n[plc.modbus]\nenabled = true\n').source
    camera = StampedCamera()
    stop = threading.Event()

    def edges():
        for plc_item, encoder in ((1001, 500), (1002, 820)):
            time.sleep(0.1)
            assert plc.offer(PlcTrigger(plc_item, encoder, time.monotonic()))

    threading.Thread(target=edges).start()
    frames = []
    for frame in CameraSource(source, camera, plc=plc).frames(stop):
        frames.append(frame)
        if len(frames) == 2:
            stop.set()
    assert [(f.item_id, f.plc_item_id, f.encoder) for f in frames] == [(1, 1001, 500), (2, 1002, 820)]
    for frame in frames:
        captured = camera.times[int(frame.image[0, 0]) - 1]
        assert frame.t_trigger <= captured < frame.t_trigger + 0.03


def test_a_camera_that_fails_mid_run_ends_the_source_with_its_reason():
    class Unplugged(StampedCamera):
        def read(self):
            if self.count == 5:
                raise CameraError("/dev/video0 stopped delivering frames (unplugged?)")
            return super().read()

    source = parse_config('[source]\nkind = "opencv"\n[source.camera]\nrate_ppm = 0\n').source
    camera = Unplugged()
    frames = []
    with pytest.raises(CameraError, match="stopped delivering frames"):
        for frame in CameraSource(source, camera).frames(threading.Event()):
            frames.append(frame)
    assert 1 <= len(frames) <= 5 and camera.closed
