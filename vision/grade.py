"""Print-quality grading of a decoded symbol: ISO/IEC 15415 (2011 and 2024 methods) and
ISO/IEC TR 29158 for direct part marks, on the own reader's fitted grid and Reed–Solomon result.

Everything is measured on reflectance: grey levels through the calibration (a linear map from
an image of a card with two known reflectances), or grey/255 uncalibrated. The synthetic
aperture is a disc of ``aperture_mil`` at the symbol's nominal X dimension. The symbol and its
one-module quiet zone are resampled onto a canonical image (``k`` pixels per module) through the
grid's homography and filtered with the aperture once; symbol contrast, module reflectances
(at the refined module centres), quiet zone and print growth all come from it.

Where the ISO texts are not public, the choices are explicit and configurable (see
../shared/reference/datamatrix-and-grading.md): the codeword overlay counts damaged codewords
as erasures; fixed-pattern-damage shares per band; 2024 continuous grades interpolate
linearly between band edges; print growth bands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np
from numba import njit

from .decoder import block_indices
from .grid import fit_centres, project
from .placement import layout
from .sample import bilinear, sample_modules
from .symbol import Symbol
from .symbology import SymbolSize

MIL_MM = 0.0254

# Band edges for grades A, B, C, D (ISO/IEC 15415 Table 6 as vendors publish it; TR 29158)
HIGHER_IS_BETTER = {
    "SC": (70.0, 55.0, 40.0, 20.0),  # percent
    "MOD": (0.50, 0.40, 0.30, 0.20),
    "UEC": (0.62, 0.50, 0.37, 0.25),
    "CC": (30.0, 25.0, 20.0, 15.0),  # percent (TR 29158)
}
LOWER_IS_BETTER = {
    "AN": (0.06, 0.08, 0.10, 0.12),
    "GN": (0.38, 0.50, 0.63, 0.75),  # module widths
}
METHODS = ("2011", "2024", "dpm")


@dataclass(frozen=True)
class Calibration:
    """Grey level → reflectance (%), from a card with two known reflectances."""

    card_rmax: float  # reflectance of the card's light patch, %
    card_rmin: float
    grey_light: float  # grey levels measured on those patches
    grey_dark: float
    date: str  # ISO date of the measurement

    def reflectance(self, grey):
        slope = (self.card_rmax - self.card_rmin) / (self.grey_light - self.grey_dark)
        return self.card_rmin + (np.asarray(grey, np.float32) - self.grey_dark) * slope


def measure_calibration(image: np.ndarray, card_rmax: float, card_rmin: float, date: str) -> Calibration:
    """Calibration from an image of a card: its light and dark patches are the two classes of
    Otsu's threshold; each patch's grey level is the median of its class (robust to edges)."""
    if not 0 <= card_rmin < card_rmax <= 100:
        raise ValueError(f"card reflectances {card_rmin} and {card_rmax}: expected 0 <= Rmin < Rmax <= 100")
    gray = np.ascontiguousarray(image, dtype=np.uint8)
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light, dark = gray[gray > threshold], gray[gray <= threshold]
    if light.size < 100 or dark.size < 100 or float(np.median(light)) - float(np.median(dark)) < 20:
        raise ValueError("the image does not show a light and a dark patch (too little contrast)")
    return Calibration(card_rmax, card_rmin, float(np.median(light)), float(np.median(dark)), date)


@dataclass(frozen=True)
class GradingSettings:
    method: str = "2011"  # "2011", "2024" or "dpm" (ISO/IEC TR 29158)
    aperture_mil: float = 8.0
    x_dimension_mm: float = 0.254  # nominal module size: converts the aperture to module widths
    wavelength_nm: int = 660
    min_module_px: float = 5.0  # below this, no grade ("insufficient resolution")
    # fixed pattern damage: damaged share of a segment allowed for grades A, B, C, D (unconfirmed)
    fpd_damage: tuple[float, float, float, float] = (0.0, 0.09, 0.13, 0.17)
    # print growth |PG| for grades A, B, C, D, graded in the 2024 method only (unconfirmed)
    print_growth: tuple[float, float, float, float] = (0.15, 0.30, 0.45, 0.60)
    calibration: Calibration | None = None

    @property
    def aperture_modules(self) -> float:
        return self.aperture_mil * MIL_MM / self.x_dimension_mm


@dataclass(frozen=True)
class ParameterGrade:
    value: float
    grade: float


@dataclass(frozen=True)
class Grade:
    """The grade of one symbol in one image (a scan grade)."""

    overall: float | None  # 0.0 (F) … 4.0 (A); None when refused
    parameters: dict[str, ParameterGrade]
    method: str
    aperture_mil: float
    wavelength_nm: int
    refused: str | None = None  # why there is no grade
    informative: dict[str, float] = field(default_factory=dict)  # contrast uniformity, print growth, segments
    module_grades: np.ndarray | None = None  # rows × cols modulation grade of each module (reports)
    damaged_codewords: tuple[int, ...] = ()  # codewords Reed–Solomon corrected or erased
    warnings: tuple[str, ...] = ()

    @property
    def quality(self) -> str:
        """``grade/aperture/wavelength``, e.g. ``1.5/08/660`` (``DPM1.5/08/660`` for TR 29158)."""
        grade = "-" if self.overall is None else f"{self.overall:.1f}"
        prefix = "DPM" if self.method == "dpm" else ""
        return f"{prefix}{grade}/{round(self.aperture_mil):02d}/{self.wavelength_nm}"

    def below(self, minimum: float) -> tuple[str, ...]:
        """Names of the parameters graded below ``minimum``."""
        return tuple(name for name, p in self.parameters.items() if p.grade < minimum)


def overall_grade(grades: list[Grade]) -> float | None:
    """ISO/IEC 15415 overall grade: the mean of the scan grades of several images."""
    scans = [g.overall for g in grades if g.overall is not None]
    return round(sum(scans) / len(scans), 1) if scans else None


def band(value: float, edges: tuple[float, float, float, float], higher_is_better: bool = True) -> int:
    """Integer grade 4 (A) … 0 (F) of ``value`` for band edges (A, B, C, D)."""
    for grade, edge in zip((4, 3, 2, 1), edges, strict=True):
        if (value >= edge) if higher_is_better else (value <= edge):
            return grade
    return 0


def continuous(value: float, edges: tuple[float, float, float, float], higher_is_better: bool = True) -> float:
    """2024-style grade with one decimal: linear between band edges, one band's width of ramp
    below D."""
    a, b, c, d = edges
    if not higher_is_better:
        value, a, b, c, d = -value, -a, -b, -c, -d
    if value >= a:
        return 4.0
    for grade, (high, low) in zip((3, 2, 1), ((a, b), (b, c), (c, d)), strict=True):
        if value >= low:
            return round(grade + (value - low) / (high - low), 1)
    return round(max(0.0, (value - (d - (c - d))) / (c - d)), 1)


def grade_symbol(image: np.ndarray, symbol: Symbol, settings: GradingSettings | None = None) -> Grade:
    """Grade one decoded symbol of ``image`` (needs the own reader's grid)."""
    settings = settings or GradingSettings()
    if settings.method not in METHODS:
        raise ValueError(f"grading method {settings.method!r}: expected one of {', '.join(METHODS)}")
    grid = symbol.grid
    if grid is None or grid.modules is None:
        return _refused(settings, f"no module grid from decoder {symbol.decoder}")
    if grid.module_px < settings.min_module_px:
        return _refused(
            settings,
            f"insufficient resolution: {grid.module_px:.1f} px per module, grading needs {settings.min_module_px:g}",
        )
    return _Grader(image, symbol, settings).grade()


def _refused(settings: GradingSettings, reason: str) -> Grade:
    return Grade(None, {}, settings.method, settings.aperture_mil, settings.wavelength_nm, refused=reason)


class _Grader:
    """The measurements of one symbol; each method picks its parameters from them."""

    def __init__(self, image: np.ndarray, symbol: Symbol, settings: GradingSettings) -> None:
        self.settings = settings
        self.symbol = symbol
        grid = self.grid = symbol.grid
        self.size = grid.size
        rows, cols = self.size.rows, self.size.cols
        # Canonical image of the symbol and its quiet zone: module coordinates −1 … cols+1.
        k = self.k = int(np.clip(round(grid.module_px), 6, 16))
        to_module = np.array([[1 / k, 0, -1], [0, 1 / k, -1], [0, 0, 1]], np.float64)
        self.to_frame = grid.homography @ to_module
        shape = ((cols + 2) * k, (rows + 2) * k)
        raw = cv2.warpPerspective(
            np.ascontiguousarray(image, dtype=np.uint8), self.to_frame, shape,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
        ).astype(np.float32)
        calibration = settings.calibration
        self.raw = calibration.reflectance(raw) if calibration else raw * (100.0 / 255.0)
        diameter = max(1, int(round(settings.aperture_modules * k)))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter)).astype(np.float32)
        self.filtered = cv2.filter2D(self.raw, -1, disc / disc.sum(), borderType=cv2.BORDER_REPLICATE)
        # Reflectance of every module through the aperture: at the refined centres inside the
        # symbol, on the ideal grid in the quiet zone ring.
        # The actual grid: the reader's centres refined until they settle (a single pass, enough
        # to decode, leaves part of a smooth displacement).
        gray = np.ascontiguousarray(image, dtype=np.uint8)
        samples = sample_modules(gray, grid.centres, 0.0)
        dark_physical = grid.modules != grid.inverted
        midpoint = 0.5 * (float(samples[dark_physical].mean()) + float(samples[~dark_physical].mean()))
        self.centres = fit_centres(gray, grid.centres, grid.modules, midpoint)
        frame_to_canonical = np.linalg.inv(self.to_frame)
        inner = project(frame_to_canonical, self.centres.reshape(-1, 2)).reshape(rows, cols, 2)
        self.canonical_centres = inner
        ring_r, ring_c = np.meshgrid(np.arange(-1, rows + 1), np.arange(-1, cols + 1), indexing="ij")
        centres = np.stack([(ring_c + 1.5) * k, (ring_r + 1.5) * k], axis=-1).astype(np.float64)
        centres[1:-1, 1:-1] = inner
        self.reflectance = _bilinear(self.filtered, centres)  # (rows+2) × (cols+2)
        dark_logic = np.zeros((rows + 2, cols + 2), bool)
        dark_logic[1:-1, 1:-1] = grid.modules
        self.expect_dark = dark_logic != grid.inverted  # physically dark
        self.expect_dark[0, :] = self.expect_dark[-1, :] = False  # quiet zone: light
        self.expect_dark[:, 0] = self.expect_dark[:, -1] = False
        symbol_layout = layout(self.size)
        self.bit_rows, self.bit_cols = symbol_layout.bit_rows, symbol_layout.bit_cols
        self.pattern = symbol_layout.pattern

    # -- shared measurements ------------------------------------------------------------------

    def contrast(self, percentile_mean: bool) -> tuple[float, float]:
        """Rmax, Rmin over the symbol and its quiet zone (2011: extremes; 2024: means of the
        lightest and darkest 1 %)."""
        values = self.filtered
        if not percentile_mean:
            return float(values.max()), float(values.min())
        flat = np.sort(values, axis=None)
        n = max(1, flat.size // 100)
        return float(flat[-n:].mean()), float(flat[:n].mean())

    def module_grades(self, threshold: float, scale: float, margin: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per module: modulation 2·|R − threshold| / scale and its grade; with ``margin``, a
        module on the wrong side of the threshold counts 0 (reflectance margin)."""
        r = self.reflectance
        modulation = 2.0 * np.abs(r - threshold) / scale
        if margin:
            wrong = (r < threshold) != self.expect_dark
            modulation = np.where(wrong, 0.0, modulation)
        edges = np.array(HIGHER_IS_BETTER["MOD"])
        grades = (modulation[..., None] >= edges).sum(axis=-1)  # A edge met → 4, … none → 0
        return modulation, grades

    def overlay(self, grades: np.ndarray) -> int:
        """Codeword overlay: each codeword takes its lowest module grade; for level L = 4 … 1
        codewords below L count as erasures (and the decode's own corrections outside them as
        errors) in a notional UEC of each Reed–Solomon block; the result is the highest L
        whose worst block's notional UEC grade is at least L."""
        inner = grades[1:-1, 1:-1]
        codeword = inner[self.bit_rows, self.bit_cols].min(axis=1)
        corrected = np.zeros(len(codeword), bool)
        corrected[list(self.damaged_codewords)] = True
        size = self.size
        usable = size.ec_per_block - size.reserved_codewords
        blocks = block_indices(size)
        for level in (4, 3, 2, 1):
            worst = np.inf
            for positions, _ in blocks:
                damaged = codeword[positions] < level
                errors = int((corrected[positions] & ~damaged).sum())
                worst = min(worst, 1.0 - (int(damaged.sum()) + 2 * errors) / usable)
            if band(worst, HIGHER_IS_BETTER["UEC"]) >= level:
                return level
        return 0

    @property
    def damaged_codewords(self) -> tuple[int, ...]:
        return tuple(sorted(p for b in self.symbol.blocks for p in b.corrected))

    def segments(self) -> dict[str, np.ndarray]:
        return fixed_pattern_segments(self.size)

    def fixed_pattern(self, grades: np.ndarray, distributed: bool) -> tuple[int, dict[str, int]]:
        """Fixed pattern damage: each segment graded through the per-level overlay (modules
        below the level are damaged, the damaged share graded on ``fpd_damage``); FPD is the
        lowest segment grade and the average grade (2011/2024) or the distributed damage over
        all segments together (TR 29158), whichever is lower."""
        edges = self.settings.fpd_damage
        segments = self.segments()

        def graded(mask: np.ndarray) -> int:
            values = grades[mask]
            for level in (4, 3, 2, 1):
                if band(float(np.mean(values < level)), edges, higher_is_better=False) >= level:
                    return level
            return 0

        per_segment = {name: graded(mask) for name, mask in segments.items()}
        lowest = min(per_segment.values())
        if distributed:
            second = graded(np.logical_or.reduce(list(segments.values())))
        else:
            mean = float(np.mean(list(per_segment.values())))
            second = 4 if mean >= 4 else 3 if mean >= 3.5 else 2 if mean >= 3.0 else 1 if mean >= 2.5 else 0
        return min(lowest, second), per_segment

    def axial_and_grid(self) -> tuple[float, float]:
        """Axial nonuniformity from the mean module pitch along each axis of the refined grid;
        grid nonuniformity: the largest distance of a refined centre from the ideal grid (the
        homography through the four corners), in module widths."""
        x_pitch, y_pitch, deviation = _grid_geometry(np.ascontiguousarray(self.centres), self.grid.homography)
        axial = abs(x_pitch - y_pitch) / ((x_pitch + y_pitch) / 2)
        return axial, deviation / ((x_pitch + y_pitch) / 2)

    def unused_error_correction(self) -> float:
        return max(0.0, min(b.unused_error_correction for b in self.symbol.blocks))

    def print_growth(self, threshold: float) -> tuple[float, float]:
        """Print growth per axis, (dark − light)/(dark + light) of the mean run widths along the
        top clock track (horizontal) and the right one (vertical): 0 is ideal, +0.2 means dark
        modules 20 % wider than light ones. Measured without the aperture."""
        rows, cols = self.size.rows, self.size.cols
        top = self.canonical_centres[0, :]
        right = self.canonical_centres[:, cols - 1]
        return _growth(self.raw, np.ascontiguousarray(top), threshold), _growth(self.raw, np.ascontiguousarray(right), threshold)

    # -- the methods ------------------------------------------------------------------------

    def grade(self) -> Grade:
        method = self.settings.method
        warnings = ()
        if self.settings.calibration is None:
            warnings = ("uncalibrated: reflectance is grey level / 255",)
        if method == "dpm":
            parameters, informative, module_grades = self._dpm()
        else:
            parameters, informative, module_grades = self._iso15415(method == "2024")
        overall = min(p.grade for p in parameters.values())
        return Grade(
            overall=round(float(overall), 1),
            parameters=parameters,
            method=method,
            aperture_mil=self.settings.aperture_mil,
            wavelength_nm=self.settings.wavelength_nm,
            informative=informative,
            module_grades=module_grades[1:-1, 1:-1],
            damaged_codewords=self.damaged_codewords,
            warnings=warnings,
        )

    def _iso15415(self, edition_2024: bool):
        rmax, rmin = self.contrast(percentile_mean=edition_2024)
        sc = rmax - rmin
        if edition_2024:  # the threshold between the decoded dark and light modules
            r = self.reflectance[1:-1, 1:-1]
            dark = self.expect_dark[1:-1, 1:-1]
            threshold = 0.5 * (float(r[dark].mean()) + float(r[~dark].mean()))
        else:
            threshold = 0.5 * (rmax + rmin)
        scale = max(sc, 1e-6)
        modulation, mod_grades = self.module_grades(threshold, scale, margin=False)
        margin, rm_grades = self.module_grades(threshold, scale, margin=True)
        fpd, segments = self.fixed_pattern(rm_grades, distributed=False)
        an, gn = self.axial_and_grid()
        uec = self.unused_error_correction()
        pg_x, pg_y = self.print_growth(threshold)
        grade = continuous if edition_2024 else band
        parameters = {
            "Decode": ParameterGrade(1.0, 4.0),
            "SC": ParameterGrade(round(sc, 1), float(grade(sc, HIGHER_IS_BETTER["SC"]))),
        }
        data = ~_pattern_mask(self.pattern)
        if edition_2024:  # modulation and reflectance margin merged
            rm = self.overlay(rm_grades)
            low = float(margin[1:-1, 1:-1][data].min())
            parameters["MOD"] = ParameterGrade(round(low, 2), float(rm))
            parameters["RM"] = ParameterGrade(round(low, 2), float(rm))
        else:
            parameters["MOD"] = ParameterGrade(round(float(modulation[1:-1, 1:-1][data].min()), 2), float(self.overlay(mod_grades)))
            parameters["RM"] = ParameterGrade(round(float(margin[1:-1, 1:-1][data].min()), 2), float(self.overlay(rm_grades)))
        worst_segment = min(segments, key=segments.get)
        parameters["FPD"] = ParameterGrade(float(segments[worst_segment]), float(fpd))
        parameters["AN"] = ParameterGrade(round(an, 3), float(grade(an, LOWER_IS_BETTER["AN"], False)))
        parameters["GN"] = ParameterGrade(round(gn, 3), float(grade(gn, LOWER_IS_BETTER["GN"], False)))
        parameters["UEC"] = ParameterGrade(round(uec, 3), float(grade(uec, HIGHER_IS_BETTER["UEC"])))
        pg = max(pg_x, pg_y, key=abs)
        informative = {
            "contrast_uniformity": round(float(modulation[1:-1, 1:-1][data].min()), 3),
            "print_growth_x": round(pg_x, 3),
            "print_growth_y": round(pg_y, 3),
            "threshold": round(threshold, 1),
            **{f"FPD.{name}": float(g) for name, g in segments.items()},
        }
        if edition_2024:
            parameters["PG"] = ParameterGrade(round(pg, 3), continuous(abs(pg), self.settings.print_growth, False))
        else:
            parameters["PG"] = ParameterGrade(round(pg, 3), 4.0)  # informative in 2011: not graded
        return parameters, informative, mod_grades

    def _dpm(self):
        r = self.reflectance[1:-1, 1:-1]
        dark = self.expect_dark[1:-1, 1:-1]
        mean_light, mean_dark = float(r[~dark].mean()), float(r[dark].mean())
        cc = 100.0 * (mean_light - mean_dark) / max(mean_light, 1e-6)
        threshold = 0.5 * (mean_light + mean_dark)
        modulation, cm_grades = self.module_grades(threshold, max(mean_light - mean_dark, 1e-6), margin=True)
        fpd, segments = self.fixed_pattern(cm_grades, distributed=True)
        an, gn = self.axial_and_grid()
        uec = self.unused_error_correction()
        data = ~_pattern_mask(self.pattern)
        parameters = {
            "Decode": ParameterGrade(1.0, 4.0),
            "CC": ParameterGrade(round(cc, 1), float(band(cc, HIGHER_IS_BETTER["CC"]))),
            "CM": ParameterGrade(round(float(modulation[1:-1, 1:-1][data].min()), 2), float(self.overlay(cm_grades))),
            "MR": ParameterGrade(round(mean_light, 1), 4.0 if mean_light >= 5.0 else 0.0),
            "FPD": ParameterGrade(float(min(segments.values())), float(fpd)),
            "AN": ParameterGrade(round(an, 3), float(band(an, LOWER_IS_BETTER["AN"], False))),
            "GN": ParameterGrade(round(gn, 3), float(band(gn, LOWER_IS_BETTER["GN"], False))),
            "UEC": ParameterGrade(round(uec, 3), float(band(uec, HIGHER_IS_BETTER["UEC"]))),
        }
        pg_x, pg_y = self.print_growth(threshold)
        informative = {"mean_light": round(mean_light, 1), "mean_dark": round(mean_dark, 1),
                       "print_growth_x": round(pg_x, 3), "print_growth_y": round(pg_y, 3),
                       **{f"FPD.{name}": float(g) for name, g in segments.items()}}
        return parameters, informative, cm_grades


@cache
def fixed_pattern_segments(size: SymbolSize) -> dict[str, np.ndarray]:
    """Fixed-pattern segments as boolean masks over the (rows+2) × (cols+2) module array (the
    symbol and its one-module quiet zone): L1, L2 (the solid finder sides), QZL1, QZL2 (the quiet
    zone beside them) and, per data region, its clock tracks with the adjacent solid area of the
    alignment pattern (CTv.h)."""
    rows, cols = size.rows, size.cols
    shape = (rows + 2, cols + 2)

    def mask(r0, r1, c0, c1):  # symbol coordinates, inclusive
        m = np.zeros(shape, bool)
        m[r0 + 1 : r1 + 2, c0 + 1 : c1 + 2] = True
        return m

    found = {
        "L1": mask(0, rows - 1, 0, 0),
        "L2": mask(rows - 1, rows - 1, 0, cols - 1),
        "QZL1": mask(0, rows, -1, -1),
        "QZL2": mask(rows, rows, -1, cols - 1),
    }
    taken = found["L1"] | found["L2"]
    rr, rc = size.region_rows + 2, size.region_cols + 2
    for v in range(size.regions_v):
        for h in range(size.regions_h):
            top, bottom, left, right = v * rr, v * rr + rr - 1, h * rc, h * rc + rc - 1
            m = mask(top, top, left, right) | mask(top, bottom, right, right)
            if v < size.regions_v - 1:
                m |= mask(bottom, bottom, left, right)
            if h > 0:
                m |= mask(top, bottom, left, left)
            found[f"CT{v + 1}.{h + 1}"] = m & ~taken
            taken |= m
    return found


def _pattern_mask(pattern: np.ndarray) -> np.ndarray:
    """True where a module belongs to a fixed pattern (finder, clock, filler), not to a codeword."""
    return pattern >= 0


@njit(cache=True, nogil=True)
def _grid_geometry(centres, h):
    """Mean module pitch along rows and along columns, and the largest distance of a centre
    from where the homography ``h`` puts it (pixels)."""
    rows, cols = centres.shape[0], centres.shape[1]
    x_total = y_total = 0.0
    for r in range(rows):
        for c in range(cols - 1):
            x_total += np.hypot(centres[r, c + 1, 0] - centres[r, c, 0], centres[r, c + 1, 1] - centres[r, c, 1])
    for r in range(rows - 1):
        for c in range(cols):
            y_total += np.hypot(centres[r + 1, c, 0] - centres[r, c, 0], centres[r + 1, c, 1] - centres[r, c, 1])
    deviation = 0.0
    for r in range(rows):
        for c in range(cols):
            u, v = c + 0.5, r + 0.5
            w = h[2, 0] * u + h[2, 1] * v + h[2, 2]
            x = (h[0, 0] * u + h[0, 1] * v + h[0, 2]) / w
            y = (h[1, 0] * u + h[1, 1] * v + h[1, 2]) / w
            deviation = max(deviation, np.hypot(centres[r, c, 0] - x, centres[r, c, 1] - y))
    return x_total / (rows * (cols - 1)), y_total / ((rows - 1) * cols), deviation


@njit(cache=True, nogil=True)
def _sample(image, points):
    """Values of ``image`` at ``points`` (n × 2, x, y), bilinear, clamped at the border."""
    out = np.empty(points.shape[0], np.float32)
    for i in range(points.shape[0]):
        out[i] = bilinear(image, points[i, 0], points[i, 1])
    return out


def _bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    shape = points.shape[:-1]
    return _sample(image, np.ascontiguousarray(points.reshape(-1, 2), np.float64)).reshape(shape)


@njit(cache=True, nogil=True)
def _growth(image, centres, threshold):
    """(dark − light)/(dark + light) mean run widths along a clock track through ``centres``
    (canonical pixels), in module units; runs cut by the ends (joined to the finder) are left
    out."""
    per_module = 16
    n = (centres.shape[0] - 1) * per_module
    dark_total = light_total = 0.0
    dark_runs = light_runs = 0
    previous = False
    run_start = -1
    for i in range(n):
        a = i // per_module
        t = (i % per_module) / per_module
        x = centres[a, 0] + (centres[a + 1, 0] - centres[a, 0]) * t
        y = centres[a, 1] + (centres[a + 1, 1] - centres[a, 1]) * t
        is_dark = bilinear(image, x, y) < threshold
        if i > 0 and is_dark != previous:
            if run_start >= 0:
                width = (i - run_start) / per_module
                if previous:
                    dark_total += width
                    dark_runs += 1
                else:
                    light_total += width
                    light_runs += 1
            run_start = i
        previous = is_dark
    if dark_runs == 0 or light_runs == 0:
        return 0.0
    dark, light = dark_total / dark_runs, light_total / light_runs
    return (dark - light) / (dark + light)
