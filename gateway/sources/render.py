"""Renders a UDI label onto a camera-like grayscale frame (the line simulator's camera)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import zxingcpp

from ..config import SimulatorSection

QUIET_ZONE_MODULES = 3  # label margin around the symbol (ECC200 needs 1)


@dataclass(frozen=True, slots=True)
class Print:
    """How one label was printed."""

    hri: str | None  # GS1 content in HRI form "(01)…(21)…" as given to the encoder; None = no code
    text_lines: tuple[str, ...]  # human-readable lines printed beside the code
    ink: float  # grey level of printed modules (0–255)
    paper: float  # grey level of the label stock
    smudge: bool = False  # an ink smear over the finder corner


def symbol_modules(hri: str) -> np.ndarray:
    """The module matrix (True = dark) of a square GS1 DataMatrix for ``hri``.

    zxing-cpp's writer (zint inside) starts the symbol with FNC1 and puts GS separators after
    variable-length fields that are followed by another AI; it does not verify check digits, so
    a deliberately wrong GTIN can be printed.
    """
    barcode = zxingcpp.create_barcode(hri, zxingcpp.BarcodeFormat.DataMatrix, gs1=True, forceSquare=True)
    return np.asarray(barcode.to_image(scale=1, add_quiet_zones=False)) < 128


class FrameRenderer:
    """Places labels on a conveyor background under the configured optics and lighting."""

    def __init__(self, config: SimulatorSection) -> None:
        self.config = config
        # Labels are drawn at twice the frame's pixels per module, then warped down onto the
        # frame, which anti-aliases module edges like a real lens.
        self._canvas_px = max(4, int(round(2 * config.module_px)))

    def render(self, label: Print, rng: np.random.Generator) -> np.ndarray:
        canvas = self._label_canvas(label)
        return self._camera(canvas, rng)

    def _label_canvas(self, label: Print) -> np.ndarray:
        s = self._canvas_px
        modules = symbol_modules(label.hri) if label.hri is not None else None
        n = modules.shape[0] if modules is not None else 22
        side = (n + 2 * QUIET_ZONE_MODULES) * s
        line_height = side / (len(label.text_lines) + 1)
        scale = line_height / 40
        thickness = max(1, int(scale * 2))
        text_width = max(
            (cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for line in label.text_lines),
            default=0,
        )
        q = QUIET_ZONE_MODULES * s
        canvas = np.full((side, side + text_width + q), round(label.paper), np.uint8)
        if modules is not None:
            dark = np.kron(modules, np.ones((s, s), bool))
            canvas[q : q + dark.shape[0], q : q + dark.shape[1]][dark] = round(label.ink)
        if label.smudge:
            # An ink smear across the corner where the finder's solid sides meet, large enough
            # that no decoder can recover the symbol (more than error correction can repair).
            cv2.ellipse(canvas, (q, q + n * s), (int(0.75 * n * s), int(0.6 * n * s)), 30, 0, 360, round(label.ink), -1)
        for i, line in enumerate(label.text_lines):
            y = int(line_height * (i + 1) + line_height * 0.3)
            cv2.putText(
                canvas, line, (side, y), cv2.FONT_HERSHEY_SIMPLEX, scale, round(label.ink), thickness, cv2.LINE_AA
            )
        return canvas.astype(np.float32)

    def _camera(self, canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        h, w = canvas.shape
        zoom = cfg.module_px / self._canvas_px
        radius = zoom * np.hypot(w, h) / 2
        cx = rng.uniform(min(radius, cfg.width / 2), max(cfg.width - radius, cfg.width / 2))
        cy = rng.uniform(min(radius, cfg.height / 2), max(cfg.height - radius, cfg.height / 2))
        angle = np.deg2rad(rng.uniform(-cfg.rotation_jitter_deg, cfg.rotation_jitter_deg))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        centred = (src - [w / 2, h / 2]) * zoom
        dst = centred @ rot.T + [cx, cy]
        dst += rng.uniform(-1, 1, dst.shape) * cfg.perspective * zoom * max(w, h)
        dst = dst.astype(np.float32)

        frame = np.full((cfg.height, cfg.width), rng.uniform(50, 90), np.float32)
        carton = (centred * 1.25) @ rot.T + [cx, cy]
        cv2.fillConvexPoly(frame, carton.astype(np.int32), float(rng.uniform(120, 160)))
        homography = cv2.getPerspectiveTransform(src, dst)
        cv2.warpPerspective(
            canvas,
            homography,
            (cfg.width, cfg.height),
            dst=frame,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_TRANSPARENT,
        )
        if cfg.lighting:
            frame *= self._light_field(rng)
        if cfg.blur_sigma:
            cv2.GaussianBlur(frame, (0, 0), cfg.blur_sigma, dst=frame)
        if cfg.noise_sigma:
            noise = np.empty_like(frame)
            cv2.setRNGSeed(int(rng.integers(2**31)))
            cv2.randn(noise, 0.0, cfg.noise_sigma)
            frame += noise
        np.clip(frame, 0, 255, out=frame)
        return frame.astype(np.uint8)

    def _light_field(self, rng: np.random.Generator) -> np.ndarray:
        """Brightness that falls linearly by ``lighting`` across the frame in a random direction."""
        cfg = self.config
        direction = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:1:9j, 0:1:9j]
        ramp = xs * np.cos(direction) + ys * np.sin(direction)
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
        small = (1 - cfg.lighting * ramp).astype(np.float32)
        return cv2.resize(small, (cfg.width, cfg.height), interpolation=cv2.INTER_LINEAR)
