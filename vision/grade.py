"""Print-quality grading of a decoded symbol: ISO/IEC 15415 (2011 and 2024 methods) and
ISO/IEC TR 29158 for direct part marks, on the own reader's fitted grid and Reed–Solomon result.

Everything is measured on reflectance: grey levels through the calibration (a linear map from
an image of a card with two known reflectances), or grey/255 uncalibrated. The synthetic
aperture is a disc of ``aperture_mil`` at the symbol's nominal X dimension. The symbol and its
quiet zone are measured on the camera image itself: the aperture's mean at every fitted module
centre and on a one-module ring of quiet zone (an equal-area quadrature of bilinear samples,
so sub-pixel moves change it smoothly and repeated images give repeatable numbers); symbol
contrast, modulation, margins and fixed-pattern damage come from those reflectances, print
growth from the camera image between the fitted centres.

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
MODULATION_EDGES = np.array(HIGHER_IS_BETTER["MOD"])
UEC_EDGES = np.array(HIGHER_IS_BETTER["UEC"])


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

    def grey(self, reflectance: float) -> float:
        """The grey level that reads as ``reflectance`` (the inverse map)."""
        slope = (self.card_rmax - self.card_rmin) / (self.grey_light - self.grey_dark)
        return self.grey_dark + (reflectance - self.card_rmin) / slope


def measure_calibration(image: np.ndarray, card_rmax: float, card_rmin: float, date: str) -> Calibration:
    """Calibration from an image of a card: its light and dark patches are the two classes of
    Otsu's threshold; each patch's grey level is the median of its class (robust to edges)."""
    if not 0 <= card_rmin < card_rmax <= 100:
        raise ValueError(f"card reflectances {card_rmin} and {card_rmax}: expected 0 <= Rmin < Rmax <= 100")
    gray = np.ascontiguousarray(image, dtype=np.uint8)
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light_mask = gray > threshold
    light, dark = gray[light_mask], gray[~light_mask]
    if light.size < 100 or dark.size < 100 or float(np.median(light)) - float(np.median(dark)) < 20:
        raise ValueError("the image does not show a light and a dark patch (too little contrast)")
    # Patches are large: most of each class survives an erosion by a twentieth of the image.
    # A printed code or text does not, and would calibrate on edges and stray pixels.
    size = max(9, min(gray.shape) // 20)
    kernel = np.ones((size, size), np.uint8)
    for name, mask in (("light", light_mask), ("dark", ~light_mask)):
        core = cv2.erode(mask.astype(np.uint8), kernel)
        if core.sum() < 0.3 * mask.sum():
            raise ValueError(f"the {name} patch is not one large uniform area (is this an image of the card?)")
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
    # rows × cols reflectance margin grade of each module (cell modulation for TR 29158): F when
    # a module is the wrong colour or too close to the threshold; what FPD judges (reports)
    margin_grades: np.ndarray | None = None
    centres: np.ndarray | None = None  # rows × cols × 2 fitted module centres, frame pixels (reports)
    damaged_codewords: tuple[int, ...] = ()  # codewords Reed–Solomon corrected or erased
    warnings: tuple[str, ...] = ()

    @property
    def quality(self) -> str:
        """``grade/aperture/wavelength``, e.g. ``1.5/08/660`` (``DPM1.5/08/660`` for TR 29158)."""
        grade = "-" if self.overall is None else f"{self.overall:.1f}"
        prefix = "DPM" if self.method == "dpm" else ""
        return f"{prefix}{grade}/{round(self.aperture_mil):02d}/{self.wavelength_nm}"

    def to_dict(self) -> dict:
        """JSON-ready: overall, quality, method, parameters {name: {value, grade}} (SC, RM …
        values in percent reflectance, MOD/RM/CM modulations, AN, UEC fractions, GN in module
        widths), informative measurements, damaged codewords, warnings, refused."""
        return {
            "overall": self.overall,
            "quality": self.quality,
            "method": self.method,
            "parameters": {name: {"value": p.value, "grade": p.grade} for name, p in self.parameters.items()},
            "informative": dict(self.informative),
            "damaged_codewords": list(self.damaged_codewords),
            "warnings": list(self.warnings),
            "refused": self.refused,
        }

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
        # The actual grid: the ideal grid (the homography through the corners) plus the smooth
        # displacement field the module edges call for; the reader's own centres carry
        # per-module jitter from decoding and are not used.
        gray = self.gray = np.ascontiguousarray(image, dtype=np.uint8)
        samples = sample_modules(gray, grid.centres, 0.0)
        dark_physical = grid.modules != grid.inverted
        midpoint = 0.5 * (float(samples[dark_physical].mean()) + float(samples[~dark_physical].mean()))
        ideal = project(grid.homography, _ring_grid(rows, cols)).reshape(rows + 2, cols + 2, 2)
        self.centres = fit_centres(gray, ideal[1:-1, 1:-1], grid.modules, midpoint)
        # Reflectance of every module through the aperture: at the actual centres inside the
        # symbol, on the ideal grid in the one-module quiet zone ring around it.
        points = ideal.copy()
        points[1:-1, 1:-1] = self.centres
        radius = 0.5 * settings.aperture_modules * grid.module_px
        grey = _aperture_means(gray, points.reshape(-1, 2), radius).reshape(rows + 2, cols + 2)
        calibration = settings.calibration
        self.reflectance = calibration.reflectance(grey) if calibration else grey * (100.0 / 255.0)
        self.expect_dark = np.zeros((rows + 2, cols + 2), bool)  # physically dark; the quiet zone is light
        self.expect_dark[1:-1, 1:-1] = grid.modules != grid.inverted
        symbol_layout = layout(self.size)
        self.bit_rows, self.bit_cols = symbol_layout.bit_rows, symbol_layout.bit_cols
        self.data = symbol_layout.pattern < 0  # modules of codewords, not of a fixed pattern

    # -- shared measurements ------------------------------------------------------------------

    def lowest_in_data(self, values: np.ndarray) -> float:
        """The lowest of a per-module measure (quiet zone ring included) over the data modules."""
        return float(values[1:-1, 1:-1][self.data].min())

    def contrast(self, percentile_mean: bool) -> tuple[float, float]:
        """Rmax, Rmin over the modules of the symbol and its quiet zone, through the aperture
        (2011: extremes; 2024: means of the lightest and darkest 1 %, at least one module)."""
        values = self.reflectance
        if not percentile_mean:
            return float(values.max()), float(values.min())
        flat = np.sort(values, axis=None)
        n = max(1, flat.size // 100)
        return float(flat[-n:].mean()), float(flat[:n].mean())

    def module_grades(self, threshold: float, scale: float, margin: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per module: modulation 2·|R − threshold| / scale and its grade; with ``margin``, a
        module on the wrong side of the threshold counts 0 (reflectance margin)."""
        return _module_grades(self.reflectance, self.expect_dark, threshold, scale, margin, MODULATION_EDGES)

    def overlay(self, grades: np.ndarray) -> int:
        """Codeword overlay: each codeword takes its lowest module grade; for level L = 4 … 1
        codewords below L count as erasures (and the decode's own corrections outside them as
        errors) in a notional UEC of each Reed–Solomon block; the result is the highest L
        whose worst block's notional UEC grade is at least L."""
        corrected = np.zeros(len(self.bit_rows), np.bool_)
        corrected[list(self.damaged_codewords)] = True
        size = self.size
        return _overlay(
            grades,
            self.bit_rows,
            self.bit_cols,
            _block_of(size),
            size.block_count,
            corrected,
            float(size.ec_per_block - size.reserved_codewords),
            UEC_EDGES,
        )

    @property
    def damaged_codewords(self) -> tuple[int, ...]:
        return tuple(sorted(p for b in self.symbol.blocks for p in b.corrected))

    def fixed_pattern(self, grades: np.ndarray, distributed: bool) -> tuple[int, dict[str, int]]:
        """Fixed pattern damage: each segment graded through the per-level overlay (modules
        below the level are damaged, the damaged share graded on ``fpd_damage``); FPD is the
        lowest segment grade and the average grade (2011/2024) or the distributed damage over
        all segments together (TR 29158), whichever is lower."""
        names, masks, cells = _segment_matrix(self.size)
        below = (grades.reshape(-1)[None, :] < np.arange(1, 5)[:, None]).astype(np.float64)  # level 1 … 4 × cells
        shares = (below @ masks.T) / cells  # level × segment: damaged share at each level
        per_segment = {name: _fpd_level(shares[:, i], self.settings.fpd_damage) for i, name in enumerate(names)}
        lowest = min(per_segment.values())
        if distributed:
            everywhere = (below @ masks.any(axis=0)) / masks.any(axis=0).sum()
            second = _fpd_level(everywhere, self.settings.fpd_damage)
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
        modules 20 % wider than light ones. Measured on the camera image between the fitted
        centres, without the aperture (``threshold`` is a reflectance)."""
        calibration = self.settings.calibration
        grey = calibration.grey(threshold) if calibration else threshold * 255.0 / 100.0
        top = np.ascontiguousarray(self.centres[0, :])
        right = np.ascontiguousarray(self.centres[:, self.size.cols - 1])
        return _growth(self.gray, top, grey), _growth(self.gray, right, grey)

    # -- the methods ------------------------------------------------------------------------

    def grade(self) -> Grade:
        method = self.settings.method
        warnings = ()
        if self.settings.calibration is None:
            warnings = ("uncalibrated: reflectance is grey level / 255",)
        if method == "dpm":
            parameters, informative, module_grades, margin_grades = self._dpm()
        else:
            parameters, informative, module_grades, margin_grades = self._iso15415(method == "2024")
        overall = min(p.grade for p in parameters.values())
        return Grade(
            overall=round(float(overall), 1),
            parameters=parameters,
            method=method,
            aperture_mil=self.settings.aperture_mil,
            wavelength_nm=self.settings.wavelength_nm,
            informative=informative,
            module_grades=module_grades[1:-1, 1:-1],
            margin_grades=margin_grades[1:-1, 1:-1],
            centres=self.centres,
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
        if edition_2024:  # modulation and reflectance margin merged
            rm = self.overlay(rm_grades)
            low = self.lowest_in_data(margin)
            parameters["MOD"] = ParameterGrade(round(low, 2), float(rm))
            parameters["RM"] = ParameterGrade(round(low, 2), float(rm))
        else:
            parameters["MOD"] = ParameterGrade(
                round(self.lowest_in_data(modulation), 2), float(self.overlay(mod_grades))
            )
            parameters["RM"] = ParameterGrade(round(self.lowest_in_data(margin), 2), float(self.overlay(rm_grades)))
        worst_segment = min(segments, key=segments.get)
        parameters["FPD"] = ParameterGrade(float(segments[worst_segment]), float(fpd))
        parameters["AN"] = ParameterGrade(round(an, 3), float(grade(an, LOWER_IS_BETTER["AN"], False)))
        parameters["GN"] = ParameterGrade(round(gn, 3), float(grade(gn, LOWER_IS_BETTER["GN"], False)))
        parameters["UEC"] = ParameterGrade(round(uec, 3), float(grade(uec, HIGHER_IS_BETTER["UEC"])))
        pg = max(pg_x, pg_y, key=abs)
        informative = {
            "contrast_uniformity": round(self.lowest_in_data(modulation), 3),
            "print_growth_x": round(pg_x, 3),
            "print_growth_y": round(pg_y, 3),
            "threshold": round(threshold, 1),
            **{f"FPD.{name}": float(g) for name, g in segments.items()},
        }
        if edition_2024:
            parameters["PG"] = ParameterGrade(round(pg, 3), continuous(abs(pg), self.settings.print_growth, False))
        else:
            parameters["PG"] = ParameterGrade(round(pg, 3), 4.0)  # informative in 2011: not graded
        return parameters, informative, mod_grades, rm_grades

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
        parameters = {
            "Decode": ParameterGrade(1.0, 4.0),
            "CC": ParameterGrade(round(cc, 1), float(band(cc, HIGHER_IS_BETTER["CC"]))),
            "CM": ParameterGrade(round(self.lowest_in_data(modulation), 2), float(self.overlay(cm_grades))),
            "MR": ParameterGrade(round(mean_light, 1), 4.0 if mean_light >= 5.0 else 0.0),
            "FPD": ParameterGrade(float(min(segments.values())), float(fpd)),
            "AN": ParameterGrade(round(an, 3), float(band(an, LOWER_IS_BETTER["AN"], False))),
            "GN": ParameterGrade(round(gn, 3), float(band(gn, LOWER_IS_BETTER["GN"], False))),
            "UEC": ParameterGrade(round(uec, 3), float(band(uec, HIGHER_IS_BETTER["UEC"]))),
        }
        pg_x, pg_y = self.print_growth(threshold)
        informative = {
            "mean_light": round(mean_light, 1),
            "mean_dark": round(mean_dark, 1),
            "print_growth_x": round(pg_x, 3),
            "print_growth_y": round(pg_y, 3),
            **{f"FPD.{name}": float(g) for name, g in segments.items()},
        }
        return parameters, informative, cm_grades, cm_grades


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


@cache
def _segment_matrix(size: SymbolSize) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The fixed-pattern segments as rows of a matrix over the flattened module array, for
    counting damaged modules of every segment at every level in one product."""
    segments = fixed_pattern_segments(size)
    masks = np.array([m.reshape(-1) for m in segments.values()], np.float64)
    return tuple(segments), masks, masks.sum(axis=1)


def _fpd_level(shares: np.ndarray, edges: tuple[float, float, float, float]) -> int:
    """Highest level L whose damaged share (modules graded below L) still grades at least L."""
    for level in (4, 3, 2, 1):
        if band(float(shares[level - 1]), edges, higher_is_better=False) >= level:
            return level
    return 0


@cache
def _ring_grid(rows: int, cols: int) -> np.ndarray:
    """Module-centre coordinates (x, y) of the symbol and a one-module ring around it, in
    module units, row by row: ((rows + 2) · (cols + 2)) × 2."""
    ring_r, ring_c = np.mgrid[-1 : rows + 1, -1 : cols + 1]
    return np.stack([ring_c + 0.5, ring_r + 0.5], axis=-1).reshape(-1, 2).astype(np.float64)


# Equal-area quadrature of a disc: 3 rings × 8 directions (the rings staggered), unit radius
_DISC = np.array(
    [
        (np.sqrt((i + 0.5) / 3) * np.cos(a), np.sqrt((i + 0.5) / 3) * np.sin(a))
        for i in range(3)
        for a in np.arange(8) * np.pi / 4 + i * np.pi / 8
    ]
)


@njit(cache=True, nogil=True)
def _aperture_means(image, points, radius):
    """Mean grey level over a disc of ``radius`` pixels around each of ``points`` (the
    synthetic aperture), by an equal-area quadrature of bilinear samples."""
    out = np.empty(points.shape[0])
    for i in range(points.shape[0]):
        total = 0.0
        for j in range(_DISC.shape[0]):
            total += bilinear(image, points[i, 0] + radius * _DISC[j, 0], points[i, 1] + radius * _DISC[j, 1])
        out[i] = total / _DISC.shape[0]
    return out


@cache
def _block_of(size: SymbolSize) -> np.ndarray:
    """The Reed–Solomon block of every codeword (symbol order)."""
    block_of = np.zeros(size.data_codewords + size.ec_per_block * size.block_count, np.int64)
    for b, (positions, _) in enumerate(block_indices(size)):
        block_of[positions] = b
    return block_of


@njit(cache=True, nogil=True)
def _module_grades(reflectance, expect_dark, threshold, scale, margin, edges):
    """Modulation 2·|R − threshold| / scale of every module and its grade 4 … 0 on ``edges``;
    with ``margin``, 0 for a module on the wrong side of the threshold."""
    rows, cols = reflectance.shape
    modulation = np.empty((rows, cols))
    grades = np.empty((rows, cols), np.int64)
    for r in range(rows):
        for c in range(cols):
            value = 2.0 * abs(reflectance[r, c] - threshold) / scale
            if margin and (reflectance[r, c] < threshold) != expect_dark[r, c]:
                value = 0.0
            modulation[r, c] = value
            grade = 0
            for edge in edges:
                if value >= edge:
                    grade += 1
            grades[r, c] = grade
    return modulation, grades


@njit(cache=True, nogil=True)
def _overlay(grades, bit_rows, bit_cols, block_of, blocks, corrected, usable, uec_edges):
    """The codeword overlay level (see ``_Grader.overlay``); ``grades`` includes the quiet zone
    ring, hence the + 1."""
    n = bit_rows.shape[0]
    codeword = np.empty(n, np.int64)
    for k in range(n):
        low = 4
        for b in range(bit_rows.shape[1]):
            low = min(low, grades[bit_rows[k, b] + 1, bit_cols[k, b] + 1])
        codeword[k] = low
    for level in range(4, 0, -1):
        erased = np.zeros(blocks)
        errors = np.zeros(blocks)
        for k in range(n):
            if codeword[k] < level:
                erased[block_of[k]] += 1
            elif corrected[k]:
                errors[block_of[k]] += 1
        worst = 1.0
        for b in range(blocks):
            worst = min(worst, 1.0 - (erased[b] + 2 * errors[b]) / usable)
        grade = 0
        for edge in uec_edges:
            if worst >= edge:
                grade += 1
        if grade >= level:
            return level
    return 0


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
def _growth(image, centres, threshold):
    """(dark − light)/(dark + light) mean run widths along a clock track through ``centres``
    (image pixels), in module units; runs cut by the ends (joined to the finder) are left
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
