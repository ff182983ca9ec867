"""Folder replay: recorded frames (PNG, JPEG, BMP) in file-name order, optionally looped."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..config import FolderSection
from . import Frame, PlcTriggers, triggers

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


class FolderSource:
    def __init__(self, config: FolderSection, plc: PlcTriggers | None = None) -> None:
        self.config = config
        self.plc = plc
        self.realtime = config.rate_ppm > 0 or plc is not None
        if not config.path.is_dir():
            raise FileNotFoundError(f"source.folder.path: {config.path} is not a folder")
        self.files = sorted(p for p in config.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(
                f"source.folder.path: {config.path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        paths = itertools.cycle(self.files) if self.config.loop else iter(self.files)
        for path, trigger in zip(paths, triggers(self.config.rate_ppm, stop, self.plc), strict=False):
            image, error = read_grayscale(path)
            yield trigger.frame(image, str(path), error=error)


def read_grayscale(path: Path) -> tuple[np.ndarray | None, str | None]:
    """The image at ``path`` as 8-bit grayscale, or None and the reason it cannot be read."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        return None, f"{path} is not a readable PNG, JPEG or BMP image (corrupt or truncated?)"
    return image, None
