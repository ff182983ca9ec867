"""Print-quality grading against ground truth: symbols drawn with known contrast, axis scaling,
grid warp, codeword errors, finder damage, per-codeword contrast and print growth."""

import numpy as np
import pytest

from vision.decoder import modules_from_codewords, read_codewords
from vision.grade import (
    Calibration,
    GradingSettings,
    band,
    continuous,
    grade_symbol,
    measure_calibration,
    overall_grade,
)
from vision.placement import layout
from vision.reader import DataMatrixReader
from vision.symbology import size_for

from .symbols import camera, render, zxing_modules

READER = DataMatrixReader()
SIZE = size_for(22, 22)
MODULES = zxing_modules("0123456789" * 6, version=7)  # 22x22: one block, 30 data + 20 EC codewords


def graded(image, settings=None):
    symbols = READER.read(image)
    assert len(symbols) == 1, "the test symbol must decode"
    return grade_symbol(image, symbols[0], settings)


@pytest.mark.parametrize("ink, paper", [(20, 230), (60, 200), (100, 190), (140, 200), (170, 215)])
@pytest.mark.parametrize("method", ["2011", "2024"])
def test_symbol_contrast(ink, paper, method):
    grade = graded(camera(render(MODULES, ink=ink, paper=paper)), GradingSettings(method=method))
    expected = (paper - ink) * 100 / 255
    assert grade.parameters["SC"].value == pytest.approx(expected, abs=2)


@pytest.mark.parametrize("stretch", [1.0, 1.04, 1.08, 0.9])
def test_axial_nonuniformity(stretch):
    import cv2

    picture = render(MODULES, module_px=10)
    picture = cv2.resize(picture, None, fx=stretch, fy=1.0, interpolation=cv2.INTER_LINEAR)
    grade = graded(camera(picture))
    expected = abs(stretch - 1) / ((stretch + 1) / 2)
    assert grade.parameters["AN"].value == pytest.approx(expected, abs=0.01)
    assert grade.parameters["AN"].grade == band(expected, (0.06, 0.08, 0.10, 0.12), higher_is_better=False)


@pytest.mark.parametrize("amplitude", [0.0, 0.25, 0.5, 0.6])
def test_grid_nonuniformity(amplitude):
    """A bulge in the middle of the print (the edges stay put): GN is its largest displacement."""
    import cv2

    px = 10
    picture = render(MODULES, module_px=px)
    h, w = picture.shape
    quiet = 3 * px
    side = 22 * px
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = np.clip((xs - quiet) / side, 0, 1)
    v = np.clip((ys - quiet) / side, 0, 1)
    bump = amplitude * px * np.sin(np.pi * u) * np.sin(np.pi * v)
    warped = cv2.remap(picture, xs - bump, ys - 0.5 * bump, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # where the centre of module (r, c) lands: p + d(p) with d = (bump, bump / 2) at p
    centres = np.arange(22) + 0.5
    shift = amplitude * np.outer(np.sin(np.pi * centres / 22), np.sin(np.pi * centres / 22))
    expected = float(np.hypot(shift, 0.5 * shift).max())
    grade = graded(camera(warped))
    assert grade.parameters["GN"].value == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("errors", [0, 1, 3, 5, 7, 10])
def test_unused_error_correction(errors):
    raw = read_codewords(MODULES, layout(SIZE))
    for position in np.random.default_rng(errors).choice(len(raw), errors, replace=False):
        raw[position] ^= 0xA5
    grade = graded(camera(render(modules_from_codewords(raw, SIZE))))
    expected = 1 - 2 * errors / SIZE.ec_per_block
    assert grade.parameters["UEC"].value == pytest.approx(expected, abs=1e-9)
    assert grade.parameters["UEC"].grade == band(expected, (0.62, 0.50, 0.37, 0.25))
    assert len(grade.damaged_codewords) == errors


@pytest.mark.parametrize("damaged, expected_fpd", [(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)])
def test_fixed_pattern_damage_bands(damaged, expected_fpd):
    """Light spots on the left finder side (22 modules): 1/22 = 4.5 % is B, 2/22 = 9.1 % C,
    3/22 = 13.6 % D, 4/22 = 18.2 % F; FPD also averages the segments (A for the other four)."""
    levels = np.full(MODULES.shape, np.nan)
    for row in (4, 9, 14, 18)[:damaged]:
        levels[row, 0] = 220
    grade = graded(camera(render(MODULES, levels=levels)))
    assert grade.informative["FPD.L1"] == min(expected_fpd, 4)
    assert grade.parameters["FPD"].grade == expected_fpd


@pytest.mark.parametrize("codewords, modulation, expected", [(3, 0.35, 4), (10, 0.35, 3), (14, 0.35, 2), (14, 0.25, 1)])
def test_modulation_through_the_codeword_overlay(codewords, modulation, expected):
    """Dark modules of some codewords printed paler, at a known modulation 2|R − GT|/SC: the
    overlay counts them as erasures of the block, level by level."""
    ink, paper = 30, 220
    threshold = (ink + paper) / 2
    pale = threshold - modulation * (paper - ink) / 2
    symbol_layout = layout(SIZE)
    levels = np.full(MODULES.shape, np.nan)
    chosen = np.random.default_rng(codewords).choice(symbol_layout.codewords, codewords, replace=False)
    for k in chosen:
        for r, c in zip(symbol_layout.bit_rows[k], symbol_layout.bit_cols[k], strict=True):
            if MODULES[r, c]:
                levels[r, c] = pale
    grade = graded(camera(render(MODULES, ink=ink, paper=paper, levels=levels)))
    assert grade.parameters["MOD"].grade == expected
    assert grade.parameters["MOD"].value == pytest.approx(modulation, abs=0.03)


def test_overall_grade_and_quality_string():
    grade = graded(camera(render(MODULES, ink=80, paper=220)))  # SC = 54.9 % → C
    assert grade.parameters["SC"].grade == 2
    assert grade.overall == 2.0 and grade.quality == "2.0/08/660"
    assert overall_grade([grade, graded(camera(render(MODULES)))]) == 3.0
    settings = GradingSettings(aperture_mil=6, wavelength_nm=625)
    assert graded(camera(render(MODULES, ink=80, paper=220)), settings).quality == "2.0/06/625"


@pytest.mark.parametrize("growth_px, expected", [(0, 0.0), (1, 0.2), (2, 0.4)])
def test_print_growth(growth_px, expected):
    grade = graded(camera(render(MODULES, module_px=10, growth_px=growth_px)))
    assert grade.informative["print_growth_x"] == pytest.approx(expected, abs=0.04)
    assert grade.informative["print_growth_y"] == pytest.approx(expected, abs=0.04)


def test_repeatability_under_noise():
    rng = np.random.default_rng(3)
    picture = render(MODULES, module_px=8, ink=70, paper=215)
    settings = GradingSettings(method="2024")
    overall = [graded(camera(picture, rng, noise=5, blur=0.8), settings).overall for _ in range(20)]
    assert np.std(overall) <= 0.1


def test_insufficient_resolution_is_refused():
    grade = graded(camera(render(MODULES, module_px=4)))
    assert grade.overall is None and grade.refused.startswith("insufficient resolution: 4.0 px per module")
    assert grade.quality == "-/08/660"


def test_direct_part_marking_mode():
    grade = graded(camera(render(MODULES, ink=60, paper=160)), GradingSettings(method="dpm"))
    assert grade.parameters["CC"].value == pytest.approx(100 * (160 - 60) / 160, abs=1.5)
    assert grade.parameters["MR"].grade == 4
    assert grade.quality.startswith("DPM")
    assert set(grade.parameters) == {"Decode", "CC", "CM", "MR", "FPD", "AN", "GN", "UEC"}


def test_calibrated_reflectance():
    card = np.full((200, 400), 40, np.uint8)
    card[:, 200:] = 210
    calibration = measure_calibration(card, card_rmax=85.0, card_rmin=5.0, date="2026-11-23")
    assert (calibration.grey_light, calibration.grey_dark) == (210.0, 40.0)
    grade = graded(camera(render(MODULES, ink=40, paper=210)), GradingSettings(calibration=calibration))
    assert grade.parameters["SC"].value == pytest.approx(80.0, abs=1.0)
    with pytest.raises(ValueError, match="light and a dark patch"):
        measure_calibration(np.full((100, 100), 128, np.uint8), 85, 5, "2026-11-23")
    with pytest.raises(ValueError, match="not one large uniform area"):  # a label is not a card
        measure_calibration(camera(render(MODULES)), 85, 5, "2026-11-23")
    assert isinstance(calibration, Calibration)


def test_continuous_grades():
    edges = (70.0, 55.0, 40.0, 20.0)
    assert [continuous(v, edges) for v in (80, 70, 62.5, 55, 30, 20, 10, 0)] == [4.0, 4.0, 3.5, 3.0, 1.5, 1.0, 0.5, 0.0]
    assert continuous(0.07, (0.06, 0.08, 0.10, 0.12), higher_is_better=False) == 3.5


def test_report_picture_marks_the_damaged_codewords():
    from vision.report import DAMAGED, report_image

    raw = read_codewords(MODULES, layout(SIZE))
    clean = camera(render(MODULES))
    raw[[4, 17]] ^= 0x3C
    damaged = camera(render(modules_from_codewords(raw, SIZE)))
    pictures = []
    for image in (clean, damaged):
        (symbol,) = READER.read(image)
        grade = grade_symbol(image, symbol)
        pictures.append(report_image(image, symbol, grade))
    magenta = [int(np.all(p == DAMAGED, axis=-1).sum()) for p in pictures]
    assert magenta[0] == 0 and magenta[1] > 100
    assert pictures[1].shape[0] > pictures[1].shape[1] // 2  # header above the enlarged symbol


@pytest.mark.parametrize("side", ["L1", "L2"])
def test_finder_damage_near_the_far_end_still_decodes_and_grades(side):
    """Light finder modules two modules from the end of a solid side: the reader bridges the
    gap (second try) and FPD grades the damage instead of the symbol going unread."""
    levels = np.full(MODULES.shape, np.nan)
    if side == "L1":
        levels[[2, 8], 0] = 220  # the left side runs from the bottom-left corner to the top
    else:
        levels[-1, [13, 19]] = 220  # the bottom side runs to the right
    grade = graded(camera(render(MODULES, levels=levels)))
    assert grade.informative[f"FPD.{side}"] == 2  # 2 of 22 modules: 9.1 % is grade C
