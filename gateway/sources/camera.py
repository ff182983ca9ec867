"""Real cameras behind one interface, and the source that ties their frames to triggers.

* :class:`OpenCvCamera`: any V4L2 / UVC camera OpenCV opens (``/dev/video0``, an index) and
  video files (replays, tests).
* :class:`Picamera2Camera`: Raspberry Pi cameras through picamera2 (imported only here: it comes
  from the OS package python3-picamera2), including the Global Shutter Camera on an external
  trigger.

Every camera runs with fixed exposure, gain and focus when configured (automatic exposure would
change the grades from pack to pack) and hands out 8-bit grayscale frames, cut to the
configured region, each stamped with ``time.monotonic()`` at capture.

:class:`CameraSource` reads the camera continuously in a grabber thread and keeps the last few
frames. A trigger (PLC, photo-eye, timer) takes the first frame captured at or after the
trigger time plus ``gpio.delay_ms``; with ``trigger = "presence"`` a pack entering the frame is
the trigger; with ``trigger = "camera"`` the camera's own hardware trigger is, one frame per item.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..config import CameraSection, SourceSection
from . import Frame, PlcTriggers, Trigger, triggers
from .presence import PresenceDetector

log = logging.getLogger(__name__)
BUFFERED_FRAMES = 8  # about a quarter second at 30 fps: triggers are matched within it


class CameraError(RuntimeError):
    """A camera that cannot be opened or stopped delivering frames, with what to check."""


class EndOfVideo(Exception):
    """A video file (not looped) has no more frames."""


class Camera(Protocol):
    name: str

    def read(self) -> tuple[np.ndarray, float]:
        """The next frame (2-D uint8) and its capture time (``time.monotonic()``)."""
        ...

    def close(self) -> None: ...


def crop(image: np.ndarray, roi: tuple[int, ...] | None) -> np.ndarray:
    """``image`` as contiguous 8-bit grayscale, cut to ``roi`` = (x, y, width, height) when given
    (one copy at most: a view of a padded buffer is copied once, with or without a region)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if roi is not None:
        x, y, width, height = roi
        image = image[y : y + height, x : x + width]
    return np.ascontiguousarray(image)


class OpenCvCamera:
    """A V4L2/UVC camera or a video file through OpenCV."""

    def __init__(self, config: CameraSection) -> None:
        self.config = config
        device = config.device
        self.is_file = Path(device).is_file()
        self.name = device if not device.isdigit() else f"/dev/video{device}"
        if self.is_file:
            self._capture = cv2.VideoCapture(device)
        else:
            target = int(device) if device.isdigit() else device
            self._capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
        if not self._capture.isOpened():
            hint = (
                "a readable video file"
                if self.is_file
                else "a V4L2 camera (is it plugged in? `v4l2-ctl --list-devices`; the user needs the video group)"
            )
            raise CameraError(f"source.camera.device = {device!r}: cannot open it as {hint}")
        if not self.is_file:
            self._set_fixed(config)
        self._period = 1.0 / config.fps
        self._next_at = time.monotonic()

    def _set_fixed(self, config: CameraSection) -> None:
        capture = self._capture
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
        capture.set(cv2.CAP_PROP_FPS, config.fps)
        if config.exposure_us is not None:
            capture.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2 "manual" mode
            capture.set(cv2.CAP_PROP_EXPOSURE, config.exposure_us / 100)  # V4L2 exposure_absolute: 100 µs units
        if config.gain is not None:
            capture.set(cv2.CAP_PROP_GAIN, config.gain)
        if config.focus is not None:
            capture.set(cv2.CAP_PROP_AUTOFOCUS, 0)
            capture.set(cv2.CAP_PROP_FOCUS, config.focus)

    def read(self) -> tuple[np.ndarray, float]:
        if self.is_file:  # a file is as fast as the disk: replay it at the camera's rate
            self._next_at += self._period
            time.sleep(max(0.0, self._next_at - time.monotonic()))
        ok, image = self._capture.read()
        if not ok and self.is_file and self.config.loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
        if not ok:
            if self.is_file:
                raise EndOfVideo(self.name)
            raise CameraError(f"{self.name} stopped delivering frames (unplugged? another process using it?)")
        return crop(image, self.config.roi), time.monotonic()

    def close(self) -> None:
        self._capture.release()


class Picamera2Camera:
    """A Raspberry Pi camera through picamera2: fixed exposure, gain and lens position; the Y
    plane of YUV420 frames is the grayscale image (no colour conversion)."""

    def __init__(self, config: CameraSection) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraError(
                'source.kind = "picamera2" needs picamera2: on Raspberry Pi OS `sudo apt install python3-picamera2`'
                " and a virtual environment made with --system-site-packages (systemd/install.sh does both)"
            ) from None
        self.config = config
        self.name = f"picamera2:{config.device}"
        try:
            self._camera = Picamera2(int(config.device))
        except (IndexError, RuntimeError) as exc:
            raise CameraError(
                f"source.camera.device = {config.device!r}: no such Raspberry Pi camera ({exc})"
            ) from None
        controls: dict[str, object] = {}
        if not config.external_trigger:  # on an external trigger the pulse sets rate and exposure
            controls["FrameRate"] = config.fps
        if config.exposure_us is not None or config.gain is not None:
            controls["AeEnable"] = False
        if config.exposure_us is not None:
            controls["ExposureTime"] = config.exposure_us
        if config.gain is not None:
            controls["AnalogueGain"] = config.gain
        if config.focus is not None:
            controls["AfMode"] = 0  # manual
            controls["LensPosition"] = config.focus
        settings = self._camera.create_video_configuration(
            main={"size": (config.width, config.height), "format": "YUV420"}, controls=controls, buffer_count=4
        )
        self._camera.configure(settings)
        self._camera.start()

    def read(self) -> tuple[np.ndarray, float]:
        request = self._camera.capture_request()
        try:
            yuv = request.make_array("main")
        finally:
            request.release()
        # the Y plane: the first `height` rows of the (stride-padded) YUV420 buffer
        return crop(yuv[: self.config.height, : self.config.width], self.config.roi), time.monotonic()

    def close(self) -> None:
        self._camera.stop()
        self._camera.close()


def open_camera(source: SourceSection) -> Camera:
    if source.kind == "picamera2":
        return Picamera2Camera(source.camera)
    return OpenCvCamera(source.camera)


class CameraSource:
    """Frames of a camera tied to items (see the module's description)."""

    realtime = True  # a line does not wait for the station

    def __init__(
        self, source: SourceSection, camera: Camera, plc: PlcTriggers | None = None, gpio=None, board=None
    ) -> None:
        self.source = source
        self.camera = camera
        self.plc = plc
        self.gpio = gpio  # gateway.sources.gpio.GpioTriggers when trigger = "gpio"
        self.board = board  # gateway.ioboard.IoBoard when trigger = "ioboard"
        self._frames: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=BUFFERED_FRAMES)
        self._arrived = threading.Condition()
        self._ended: BaseException | None = None  # EndOfVideo or CameraError from the grabber
        self._stop_grabbing = threading.Event()

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        grabber = threading.Thread(target=self._grab, name="camera", daemon=True)
        grabber.start()
        try:
            if self.source.trigger == "camera":
                yield from self._per_frame(stop, lambda image: True)
            elif self.source.trigger == "presence":
                yield from self._per_frame(stop, PresenceDetector(self.source.presence).update)
            else:
                yield from self._on_triggers(stop)
        finally:
            self._stop_grabbing.set()
            grabber.join(timeout=5)
            self.camera.close()

    # -- the grabber thread ----------------------------------------------------------------------

    def _grab(self) -> None:
        while not self._stop_grabbing.is_set():
            try:
                image, t = self.camera.read()
            except (EndOfVideo, CameraError) as exc:
                with self._arrived:
                    self._ended = exc
                    self._arrived.notify_all()
                return
            with self._arrived:
                self._frames.append((t, image))
                self._arrived.notify_all()

    def _next_frame(self, after: float, stop: threading.Event) -> tuple[float, np.ndarray] | None:
        """The first buffered frame captured at or after ``after``; waits for it. None when the
        video ended or ``stop`` is set; raises CameraError when the camera failed."""
        with self._arrived:
            while True:
                for t, image in self._frames:
                    if t >= after:
                        return t, image
                if self._ended is not None:
                    if isinstance(self._ended, CameraError):
                        raise self._ended
                    return None
                if stop.is_set():
                    return None
                self._arrived.wait(0.05)

    # -- the three ways to an item ----------------------------------------------------------------

    def _on_triggers(self, stop: threading.Event) -> Iterator[Frame]:
        """PLC, photo-eye or timer: the frame after each trigger (plus the photo-eye's delay)."""
        if self.source.trigger == "gpio":
            trigger_stream = self.gpio.triggers(stop)
            delay = self.source.gpio.delay_ms / 1000
        elif self.source.trigger == "ioboard":
            trigger_stream = board_triggers(self.board, stop)
            delay = 0.0
        else:
            trigger_stream = triggers(self.source.camera.rate_ppm, stop, self.plc)
            delay = 0.0
        for trigger in trigger_stream:
            captured = self._next_frame(trigger.t + delay, stop)
            if captured is None:
                return
            yield trigger.frame(captured[1], self.camera.name)

    def _per_frame(self, stop: threading.Event, is_item: Callable[[np.ndarray], bool]) -> Iterator[Frame]:
        """Every frame in turn; those ``is_item`` takes (all on a hardware trigger, a pack's
        arrival with presence detection) are items, timestamped at capture."""
        after = 0.0
        item_ids = itertools.count(1)
        while (captured := self._next_frame(after, stop)) is not None:
            t, image = captured
            after = t + 1e-9
            if is_item(image):
                yield Trigger(next(item_ids), t, datetime.now(UTC)).frame(image, self.camera.name)


def board_triggers(board, stop: threading.Event) -> Iterator[Trigger]:
    """The I/O board's photo-eye triggers as the station's, keeping the board's item id (sent
    back with the verdict) and encoder count."""
    item_ids = itertools.count(1)
    for seen in board.triggers(stop):
        yield Trigger(next(item_ids), seen.t, datetime.now(UTC), seen.item_id, seen.encoder)
