"""Folder replay: recorded frames (PNG, JPEG, BMP) in file-name order, optionally looped."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from ..config import FolderSection
from . import Frame, triggers

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


class FolderSource:
    def __init__(self, config: FolderSection) -> None:
        self.config = config
        self.realtime = config.rate_ppm > 0
        if not config.path.is_dir():
            raise FileNotFoundError(f"source.folder.path: {config.path} is not a folder")
        self.files = sorted(p for p in config.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(
                f"source.folder.path: {config.path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        paths = itertools.cycle(self.files) if self.config.loop else iter(self.files)
        for path, item_id in zip(paths, triggers(self.config.rate_ppm, stop), strict=False):
            t_trigger, timestamp = time.monotonic(), datetime.now(UTC)
            image, error = read_grayscale(path)
            yield Frame(item_id, image, t_trigger, timestamp, str(path), error=error)


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
