"""The grade report picture: the symbol enlarged, with the fitted grid, every module's
modulation grade as a coloured dot, the damaged codewords outlined, damaged finder and clock
modules marked and modules graded F crossed, under a header with the quality string and the
parameter grades. Pure computation: frame and grade in, BGR image out (the caller writes it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .placement import layout
from .symbol import Symbol

if TYPE_CHECKING:
    from .grade import Grade

# BGR colour per grade 4 (A) … 0 (F)
GRADE_COLOURS = {4: (60, 170, 40), 3: (90, 210, 150), 2: (40, 210, 230), 1: (30, 140, 250), 0: (40, 40, 220)}
GRADE_LETTERS = {4: "A", 3: "B", 2: "C", 1: "D", 0: "F"}
DAMAGED = (200, 40, 200)  # magenta outline: damaged codewords
FINDER_DAMAGE = (30, 30, 230)  # red outline: finder / clock modules whose margin grades D or F
FINDER_DAMAGE_BELOW = 2  # the margin grade below which a fixed-pattern module counts as damaged (C passes)
GRID = (200, 160, 60)
HEADER_FONT = cv2.FONT_HERSHEY_SIMPLEX
MARGIN_MODULES = 3
MIN_MODULE_PX = 24  # modules are drawn at least this large
MIN_WIDTH_PX = 520  # room for the header whatever the symbol's size
LEGEND = (
    "dots: module modulation grade",
    "magenta: damaged codewords",
    "red: damaged finder/clock",
    "x: module graded F",
)


def grade_letter(grade: float) -> str:
    """A … F for a grade 4 … 0 (rounded down: 3.5 is B)."""
    return GRADE_LETTERS[max(0, min(4, math.floor(grade + 1e-9)))]


def symbol_crop(
    image: np.ndarray, symbol: Symbol, margin_modules: float = MARGIN_MODULES
) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of ``image`` around ``symbol`` (its corners' bounding box and ``margin_modules``
    of quiet zone, clipped to the frame) and that part's origin (x0, y0) in the frame."""
    corners = np.array(symbol.corners, np.float64)
    margin = margin_modules * max(symbol.module_px, 1.0)
    x0, y0 = np.floor(corners.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0) + margin).astype(int)
    height, width = image.shape[:2]
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height)
    return np.ascontiguousarray(image[y0:y1, x0:x1]), (x0, y0)


def report_image(image: np.ndarray, symbol: Symbol, grade: Grade) -> np.ndarray:
    """The report picture of one graded symbol of ``image`` (greyscale frame)."""
    module_px = max(symbol.module_px, 1.0)
    scale = max(1.0, MIN_MODULE_PX / module_px)
    crop, (x0, y0) = symbol_crop(image, symbol)
    body = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    body = cv2.cvtColor(body, cv2.COLOR_GRAY2BGR)
    body = (body * 0.75 + 40).astype(np.uint8)  # lighter, so the marks stand out

    def to_body(points: np.ndarray) -> np.ndarray:
        return np.round((points - (x0, y0) + 0.5) * scale - 0.5).astype(np.int32)

    if grade.centres is not None and grade.module_grades is not None:
        centres = to_body(grade.centres.reshape(-1, 2)).reshape(grade.centres.shape)
        rows, cols = grade.module_grades.shape
        for r in range(rows):  # the fitted grid
            cv2.polylines(body, [centres[r]], False, GRID, 1, cv2.LINE_AA)
        for c in range(cols):
            cv2.polylines(body, [np.ascontiguousarray(centres[:, c])], False, GRID, 1, cv2.LINE_AA)
        pitch = module_px * scale
        dot = max(2, int(pitch * 0.22))
        for r in range(rows):
            for c in range(cols):
                colour = GRADE_COLOURS[int(grade.module_grades[r, c])]
                cv2.circle(body, tuple(int(v) for v in centres[r, c]), dot, colour, -1, cv2.LINE_AA)
        half = pitch / 2
        if symbol.grid is not None and grade.margin_grades is not None:
            _mark_damaged_modules(body, centres, grade.margin_grades, symbol, half)
        symbol_layout = layout(symbol.grid.size) if symbol.grid is not None else None
        if symbol_layout is not None:
            for k in grade.damaged_codewords:
                for r, c in zip(symbol_layout.bit_rows[k], symbol_layout.bit_cols[k], strict=True):
                    x, y = centres[r, c]
                    cv2.rectangle(body, (int(x - half), int(y - half)), (int(x + half), int(y + half)), DAMAGED, 2)
                x, y = centres[symbol_layout.bit_rows[k][0], symbol_layout.bit_cols[k][0]]
                cv2.putText(
                    body,
                    str(k),
                    (int(x - half), int(y - half) - 2),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.4,
                    DAMAGED,
                    1,
                    cv2.LINE_AA,
                )
    width = max(body.shape[1], MIN_WIDTH_PX)
    return np.vstack([_header(grade, width), _pad_to(body, width)])


def _mark_damaged_modules(
    body: np.ndarray, centres: np.ndarray, margin_grades: np.ndarray, symbol: Symbol, half: float
) -> None:
    """Red squares on the finder and clock modules whose reflectance margin grades below C (what
    fixed pattern damage counts), a cross on every data module whose margin is F (read as the
    wrong colour, or too close to the threshold to tell)."""
    from .grade import fixed_pattern_segments  # here: grade_letter users need not load numba

    segments = fixed_pattern_segments(symbol.grid.size)
    fixed = np.logical_or.reduce([m[1:-1, 1:-1] for m in segments.values()])  # the symbol's own modules
    rows, cols = margin_grades.shape
    arm = max(2, int(half * 0.6))
    for r in range(rows):
        for c in range(cols):
            x, y = (int(v) for v in centres[r, c])
            if fixed[r, c] and margin_grades[r, c] < FINDER_DAMAGE_BELOW:
                cv2.rectangle(body, (int(x - half), int(y - half)), (int(x + half), int(y + half)), FINDER_DAMAGE, 2)
            elif not fixed[r, c] and margin_grades[r, c] == 0:
                cv2.line(body, (x - arm, y - arm), (x + arm, y + arm), GRADE_COLOURS[0], 2, cv2.LINE_AA)
                cv2.line(body, (x - arm, y + arm), (x + arm, y - arm), GRADE_COLOURS[0], 2, cv2.LINE_AA)


def _header(grade: Grade, width: int) -> np.ndarray:
    """Quality string, parameter letters (below C in bold red: what fails a GS1 healthcare
    line), the legend and the colour key."""
    title = f"{grade.quality}  (ISO/IEC {'TR 29158' if grade.method == 'dpm' else '15415 ' + grade.method})"
    lines: list[list[tuple[str, bool]]] = [[(title, False)]]
    if grade.refused:
        lines.append([(f"not graded: {grade.refused}", True)])
    parameters = [(f"{name} {grade_letter(p.grade)}", p.grade < 1.5) for name, p in grade.parameters.items()]
    lines += _flow(parameters, width)
    lines += _flow([(item, False) for item in LEGEND], width)
    header = np.full((22 * len(lines) + 16, width, 3), 255, np.uint8)
    for i, tokens in enumerate(lines):
        x = 8
        for text, failing in tokens:
            colour, thickness = ((30, 30, 210), 2) if failing else ((20, 20, 20), 1)
            cv2.putText(header, text, (x, 24 + 22 * i), HEADER_FONT, 0.55, colour, thickness, cv2.LINE_AA)
            x += _token_width(text, thickness)
    x = width - 5 * 34 - 8
    for g in range(4, -1, -1):  # colour key
        cv2.circle(header, (x, 16), 6, GRADE_COLOURS[g], -1, cv2.LINE_AA)
        cv2.putText(header, GRADE_LETTERS[g], (x + 9, 21), HEADER_FONT, 0.45, (20, 20, 20), 1)
        x += 34
    return header


def _token_width(text: str, thickness: int) -> int:
    """Pixels a header token takes, with the gap to the next one."""
    return cv2.getTextSize(text + "   ", HEADER_FONT, 0.55, thickness)[0][0]


def _flow(tokens: list[tuple[str, bool]], width: int) -> list[list[tuple[str, bool]]]:
    """``tokens`` (text, failing) laid out in as many lines as it takes to stay inside ``width``."""
    lines: list[list[tuple[str, bool]]] = [[]]
    used = 0
    for text, failing in tokens:
        needed = _token_width(text, 2 if failing else 1)
        if lines[-1] and 8 + used + needed > width:
            lines.append([])
            used = 0
        lines[-1].append((text, failing))
        used += needed
    return lines


def _pad_to(body: np.ndarray, width: int) -> np.ndarray:
    if body.shape[1] >= width:
        return body
    return cv2.copyMakeBorder(body, 0, 0, 0, width - body.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
