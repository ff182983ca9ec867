"""Presence detection for free-running capture: a pack entering the camera's view is an item.

Each frame is compared with a reference of the empty belt: a pixel differs when it is more than
``level`` grey levels from the reference; a pack is present while at least ``share`` of the
watched region differs, absent again below half that share (hysteresis, so a pack on the edge
of the threshold is one item, not several). The reference is the first frame and follows slow
lighting changes while the belt is empty. The item's frame is the one ``settle_frames`` after
the pack entered (the code is fully in view by then).
"""

from __future__ import annotations

import numpy as np

from ..config import PresenceSection

FOLLOW = 0.05  # share of each empty-belt frame blended into the reference


class PresenceDetector:
    def __init__(self, settings: PresenceSection) -> None:
        self.settings = settings
        self._reference: np.ndarray | None = None
        self._present = False
        self._since_entry = -1  # frames since the pack entered; -1: none waiting to be taken

    def update(self, image: np.ndarray) -> bool:
        """Feed one frame; True when this frame is an item's."""
        region = self._region(image).astype(np.float32)
        if self._reference is None or self._reference.shape != region.shape:
            self._reference = region
            return False
        share = float(np.mean(np.abs(region - self._reference) > self.settings.level))
        if not self._present and share >= self.settings.share:
            self._present, self._since_entry = True, 0
        elif self._present and share < self.settings.share / 2:
            self._present, self._since_entry = False, -1
        if not self._present:
            self._reference += FOLLOW * (region - self._reference)
            return False
        if self._since_entry < 0:
            return False
        if self._since_entry == self.settings.settle_frames:
            self._since_entry = -1  # one frame per pack
            return True
        self._since_entry += 1
        return False

    def _region(self, image: np.ndarray) -> np.ndarray:
        if self.settings.region is None:
            return image
        x, y, width, height = self.settings.region
        return image[y : y + height, x : x + width]
