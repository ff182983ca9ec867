"""Print-quality grading of a decoded symbol (ISO/IEC 15415 style).

So far only Symbol Contrast is measured: the overall grade is the SC grade, reported with
method ``"sc-only"``. The full parameter set (modulation, fixed pattern damage, axial and grid
nonuniformity, unused error correction) needs the own reader's module grid and comes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .symbol import Symbol

# ISO/IEC 15415 (2011) symbol contrast bands: (minimum SC in %, grade)
SC_BANDS = ((70.0, 4), (55.0, 3), (40.0, 2), (20.0, 1))
_SAMPLES_PER_MODULE = 8


@dataclass(frozen=True, slots=True)
class ParameterGrade:
    value: float
    grade: float


@dataclass(frozen=True, slots=True)
class Grade:
    overall: float  # 0.0 (F) … 4.0 (A)
    parameters: dict[str, ParameterGrade]
    method: str

    def below(self, minimum: float) -> tuple[str, ...]:
        """Names of the parameters graded below ``minimum``."""
        return tuple(name for name, p in self.parameters.items() if p.grade < minimum)


def band(value: float, bands: tuple[tuple[float, int], ...]) -> int:
    """The grade of ``value`` in a table of (minimum, grade) rows, best first; 0 below all."""
    for minimum, grade in bands:
        if value >= minimum:
            return grade
    return 0


def symbol_contrast(image: np.ndarray, symbol: Symbol, aperture_modules: float = 0.8) -> float:
    """Symbol Contrast in % of full scale: the spread between the lightest and darkest
    reflectance seen through a circular aperture of ``aperture_modules`` module widths,
    over the symbol and its one-module quiet zone.

    Grey levels stand in for reflectance until the reflectance calibration exists.
    """
    k = _SAMPLES_PER_MODULE
    size = (int((symbol.cols + 2) * k), int((symbol.rows + 2) * k))
    grid = np.float32(
        [[k, k], [(symbol.cols + 1) * k, k], [(symbol.cols + 1) * k, (symbol.rows + 1) * k], [k, (symbol.rows + 1) * k]]
    )
    to_grid = cv2.getPerspectiveTransform(np.float32(symbol.corners), grid)
    patch = cv2.warpPerspective(image, to_grid, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    diameter = max(1, int(round(aperture_modules * k)))
    aperture = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter)).astype(np.float32)
    seen = cv2.filter2D(patch.astype(np.float32), -1, aperture / aperture.sum(), borderType=cv2.BORDER_REPLICATE)
    return float(seen.max() - seen.min()) * 100.0 / 255.0


def grade_symbol(image: np.ndarray, symbol: Symbol, aperture_modules: float = 0.8) -> Grade:
    sc = symbol_contrast(image, symbol, aperture_modules)
    parameters = {"SC": ParameterGrade(round(sc, 1), band(sc, SC_BANDS))}
    return Grade(overall=min(p.grade for p in parameters.values()), parameters=parameters, method="sc-only")
