"""Generated camera frames with Data Matrix symbols of known content and position, for the
reader's tests and bench/decoders_bench.py.

Each frame holds 1–3 GS1 DataMatrix UDI symbols written by zxing-cpp's writer (zint), on labels
placed on a cluttered background, seen through a camera model: module size, any rotation, mild
perspective, blur, noise, uneven light; optionally low contrast, inverted, mirrored, rectangular.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import cv2
import numpy as np
import zxingcpp

QUIET_ZONE = 2  # modules of label around each symbol
_SUPERSAMPLE = 8  # pixels per module when drawing, before the camera warp


@dataclass(frozen=True)
class SymbolTruth:
    data: bytes  # message as a reader transmits it (GS separators, no symbology identifier)
    rows: int
    cols: int
    corners: np.ndarray  # 4 × 2, outer symbol corners in frame pixels
    module_px: float
    inverted: bool
    mirrored: bool
    centres: np.ndarray  # rows × cols × 2 module centres in frame pixels (as printed, warp included)


@dataclass(frozen=True)
class FrameSpec:
    module_px: float = 6.0
    rotation_deg: float = 0.0  # of the first symbol; others get their own
    perspective: float = 0.03  # corner displacement, share of the symbol size
    blur_sigma: float = 0.7
    noise_sigma: float = 3.0
    lighting: float = 0.25
    low_contrast: bool = False
    inverted: bool = False
    mirrored: bool = False
    rectangular: bool = False
    symbols: int = 1
    curvature: float = 0.0  # label wrapped round a cylinder: half the symbol's arc, in radians
    width: int = 1280
    height: int = 960
    clutter: bool = True


@dataclass
class Frame:
    image: np.ndarray
    spec: FrameSpec
    truths: list[SymbolTruth] = field(default_factory=list)


def udi_hri(rng: np.random.Generator) -> str:
    """A GS1 UDI element string in HRI form: GTIN, expiry, lot, serial."""
    body = "069" + "".join(str(d) for d in rng.integers(0, 10, 10))
    check = (10 - sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body))) % 10) % 10
    alphabet = string.ascii_uppercase + string.digits + string.ascii_lowercase
    lot = "".join(rng.choice(list(alphabet), int(rng.integers(3, 11))))
    serial = "".join(rng.choice(list(alphabet), int(rng.integers(4, 13))))
    yy, mm, dd = rng.integers(26, 36), rng.integers(1, 13), rng.integers(1, 29)
    return f"(01){body}{check}(17){yy:02d}{mm:02d}{dd:02d}(10){lot}(21){serial}"


def write_symbol(hri: str, rectangular: bool) -> tuple[np.ndarray, bytes]:
    """Module matrix (True = dark) and transmitted bytes of a GS1 DataMatrix for ``hri``."""
    barcode = None
    if rectangular:
        for version in (30, 29, 28):  # 16x48, 16x36, 12x36
            try:
                barcode = zxingcpp.create_barcode(hri, zxingcpp.BarcodeFormat.DataMatrix, gs1=True, version=version)
                break
            except ValueError:
                continue
    if barcode is None:
        barcode = zxingcpp.create_barcode(hri, zxingcpp.BarcodeFormat.DataMatrix, gs1=True, forceSquare=True)
    modules = np.asarray(barcode.to_image(scale=1, add_quiet_zones=False)) < 128
    data = bytes(zxingcpp.read_barcodes(barcode.to_image(scale=3), text_mode=zxingcpp.TextMode.Plain)[0].bytes)
    return modules, data


def make_frame(rng: np.random.Generator, spec: FrameSpec) -> Frame:
    frame = _background(rng, spec)
    truths: list[SymbolTruth] = []
    placed: list[tuple[float, float, float]] = []
    for index in range(spec.symbols):
        modules, data = write_symbol(udi_hri(rng), spec.rectangular)
        if spec.mirrored:
            modules = modules[:, ::-1]
        rows, cols = modules.shape
        rotation = spec.rotation_deg if index == 0 else rng.uniform(0, 360)
        truth = _place(frame, rng, spec, modules, data, rotation, placed)
        if truth is not None:
            truths.append(truth)
    image = _camera(frame, rng, spec)
    return Frame(image, spec, truths)


def _background(rng: np.random.Generator, spec: FrameSpec) -> np.ndarray:
    small = rng.uniform(60, 180, (6, 8)).astype(np.uint8)
    frame = cv2.resize(small, (spec.width, spec.height), interpolation=cv2.INTER_CUBIC)
    if spec.clutter:  # boxes, lines and printed text: things a locator must not mistake for a symbol
        for _ in range(int(rng.integers(3, 9))):
            x, y = int(rng.uniform(0, spec.width)), int(rng.uniform(0, spec.height))
            w, h = int(rng.uniform(20, 250)), int(rng.uniform(5, 120))
            cv2.rectangle(frame, (x, y), (x + w, y + h), float(rng.uniform(0, 255)), -1 if rng.random() < 0.5 else 3)
        for _ in range(int(rng.integers(2, 6))):
            text = "".join(rng.choice(list(string.ascii_uppercase + string.digits + " ()"), 14))
            org = (int(rng.uniform(0, spec.width - 200)), int(rng.uniform(20, spec.height)))
            cv2.putText(
                frame,
                text,
                org,
                cv2.FONT_HERSHEY_SIMPLEX,
                float(rng.uniform(0.5, 1.6)),
                float(rng.uniform(0, 80)),
                int(rng.integers(1, 4)),
            )
    return frame.astype(np.float32)


def _place(frame, rng, spec, modules, data, rotation, placed) -> SymbolTruth | None:
    rows, cols = modules.shape
    q = QUIET_ZONE
    if spec.inverted:
        ink, paper = rng.uniform(190, 230), rng.uniform(20, 60)
    elif spec.low_contrast:
        paper = rng.uniform(170, 215)
        ink = paper - rng.uniform(45, 70)
    else:
        ink, paper = rng.uniform(10, 50), rng.uniform(190, 235)
    s = _SUPERSAMPLE
    canvas = np.full(((rows + 2 * q) * s, (cols + 2 * q) * s), paper, np.float32)
    canvas[q * s : (q + rows) * s, q * s : (q + cols) * s][np.kron(modules, np.ones((s, s), bool))] = ink
    zoom = spec.module_px / s
    h, w = canvas.shape
    radius = zoom * np.hypot(w, h) / 2
    for _ in range(50):
        cx = rng.uniform(radius, spec.width - radius) if spec.width > 2 * radius else spec.width / 2
        cy = rng.uniform(radius, spec.height - radius) if spec.height > 2 * radius else spec.height / 2
        if all(np.hypot(cx - x, cy - y) > radius + r for x, y, r in placed):
            break
    else:
        return None
    placed.append((cx, cy, radius))
    angle = np.deg2rad(rotation)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = ((src - [w / 2, h / 2]) * zoom) @ turn.T + [cx, cy]
    dst += rng.uniform(-1, 1, dst.shape) * spec.perspective * zoom * max(w, h)
    homography = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    # module centres on the canvas; on a cylinder (axis along the symbol's columns, seen from
    # the front) a point at arc length x from the middle appears at R·sin(x / R)
    cc, rr = np.meshgrid((np.arange(cols) + q + 0.5) * s, (np.arange(rows) + q + 0.5) * s)
    if spec.curvature:
        middle = w / 2
        radius = (cols * s / 2) / spec.curvature
        xs = np.arange(w, dtype=np.float32)
        arc = np.clip((xs - middle) / radius, -1, 1)
        source_x = (middle + radius * np.arcsin(arc)).astype(np.float32)
        map_x = np.repeat(source_x[None, :], h, axis=0)
        map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
        canvas = cv2.remap(canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        cc = middle + radius * np.sin((cc - middle) / radius)
    cv2.warpPerspective(
        canvas,
        homography,
        (spec.width, spec.height),
        dst=frame,
        flags=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_TRANSPARENT,
    )
    outer = np.float32([[q, q], [q + cols, q], [q + cols, q + rows], [q, q + rows]]) * s
    corners = cv2.perspectiveTransform(outer[None], homography)[0]
    centres = cv2.perspectiveTransform(np.stack([cc, rr], -1).reshape(1, -1, 2).astype(np.float32), homography)
    return SymbolTruth(
        data, rows, cols, corners, spec.module_px, spec.inverted, spec.mirrored, centres.reshape(rows, cols, 2)
    )


def _camera(frame: np.ndarray, rng: np.random.Generator, spec: FrameSpec) -> np.ndarray:
    if spec.lighting:
        direction = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:1:9j, 0:1:9j]
        ramp = xs * np.cos(direction) + ys * np.sin(direction)
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
        light = cv2.resize((1 - spec.lighting * ramp).astype(np.float32), (spec.width, spec.height))
        frame = frame * light
    if spec.blur_sigma:
        frame = cv2.GaussianBlur(frame, (0, 0), spec.blur_sigma)
    if spec.noise_sigma:
        frame = frame + rng.normal(0, spec.noise_sigma, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def frame_set(count: int, seed: int = 2026) -> list[Frame]:
    """The mixed set the reader is measured on: every condition, in a fixed random order."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        kind = i % 10
        module_px = (4.0, 6.0, 10.0)[i % 3]
        spec = FrameSpec(
            module_px=module_px,
            rotation_deg=float(rng.uniform(0, 360)),
            perspective=float(rng.uniform(0, 0.05)),
            blur_sigma=float(rng.uniform(0.3, 0.25 * module_px)),
            noise_sigma=float(rng.uniform(1, 6)),
            lighting=float(rng.uniform(0, 0.4)),
            low_contrast=kind == 4,
            inverted=kind == 5,
            mirrored=kind == 6,
            rectangular=kind == 7,
            symbols=3 if kind == 8 else 1,
        )
        frames.append(make_frame(rng, spec))
    return frames
