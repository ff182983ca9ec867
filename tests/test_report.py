"""The grade report picture: the symbol crop, the picture's layout, and the marks on damaged
finder / clock modules and on data modules graded F, on rendered symbols with known damage."""

from dataclasses import replace

import numpy as np
import pytest

from vision.grade import GradingSettings, grade_symbol
from vision.report import FINDER_DAMAGE, GRADE_COLOURS, MIN_MODULE_PX, MIN_WIDTH_PX, report_image, symbol_crop

from .symbols import camera, render, zxing_modules
from .test_grade import MODULES, READER

MODULE_PX = 10  # render's default, with 3 modules of quiet zone
QUIET_PX = 3 * MODULE_PX
PAPER = 220
METHODS = ["2011", "2024", "dpm"]


def read(image, method="2011"):
    symbols = READER.read(image)
    assert len(symbols) == 1, "the test symbol must decode"
    return symbols[0], grade_symbol(image, symbols[0], GradingSettings(method=method))


def near(picture, colour, tolerance=8):
    """Mask of the pixels within ``tolerance`` of ``colour`` in every channel."""
    return np.all(np.abs(picture.astype(int) - colour) <= tolerance, axis=-1)


def body_layout(picture, image, symbol):
    """(header height, body height, body width, scale): where the enlarged crop sits in the picture."""
    crop, _ = symbol_crop(image, symbol)
    scale = max(1.0, MIN_MODULE_PX / symbol.module_px)
    body_height, body_width = round(crop.shape[0] * scale), round(crop.shape[1] * scale)
    return picture.shape[0] - body_height, body_height, body_width, scale


def in_picture(picture, image, symbol, points):
    """Frame pixel positions mapped into the report picture (x, y)."""
    header, _, _, scale = body_layout(picture, image, symbol)
    _, origin = symbol_crop(image, symbol)
    return (np.asarray(points) - origin + 0.5) * scale - 0.5 + (0, header)


def test_symbol_crop_holds_the_corners_with_the_margin():
    image = camera(render(MODULES))  # the symbol spans 30 … 250 px of a 280 px frame
    symbol, _ = read(image)
    crop, (x0, y0) = symbol_crop(image, symbol, margin_modules=2)
    height, width = crop.shape
    assert crop.flags["C_CONTIGUOUS"] and np.array_equal(crop, image[y0 : y0 + height, x0 : x0 + width])
    corners = np.array(symbol.corners)
    margin = 2 * symbol.module_px
    before = corners.min(axis=0) - (x0, y0)
    after = (x0 + width, y0 + height) - corners.max(axis=0)
    assert np.all(before >= margin) and np.all(before <= margin + 1)
    assert np.all(after >= margin) and np.all(after <= margin + 1)


def test_symbol_crop_is_clipped_at_the_frame_edge():
    frame = camera(render(MODULES))
    found, _ = read(frame)
    # the frame cut to 1 module of quiet zone left and right (too little for the reader to find
    # the symbol there, so it is read in the whole frame and moved)
    image = np.ascontiguousarray(frame[:, 20:240])
    symbol = replace(found, corners=tuple((x - 20, y) for x, y in found.corners))
    crop, (x0, y0) = symbol_crop(image, symbol, margin_modules=2)
    assert x0 == 0 and crop.shape[1] == image.shape[1]  # clipped on both sides
    assert 8 <= y0 <= 11 and 258 <= crop.shape[0] <= 262  # not clipped: 22 + 2 × 2 modules
    assert np.array_equal(crop, image[y0 : y0 + crop.shape[0]])
    whole, origin = symbol_crop(image, symbol, margin_modules=10)
    assert origin == (0, 0) and np.array_equal(whole, image)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("module_px, noise", [(10, 0.0), (6, 3.0)])
def test_clean_symbol_has_no_damage_marks(method, module_px, noise):
    image = camera(render(MODULES, module_px=module_px), np.random.default_rng(3), noise=noise, blur=0.7)
    symbol, grade = read(image, method)
    picture = report_image(image, symbol, grade)
    header, *_ = body_layout(picture, image, symbol)
    body = picture[header:]
    assert grade.parameters["FPD"].grade == 4
    assert not near(body, FINDER_DAMAGE).any()
    assert not near(body, GRADE_COLOURS[0]).any()  # no F dot, no cross
    assert near(body, GRADE_COLOURS[4]).sum() > 22 * 22 * 10  # an A dot on every module


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("side", ["L1", "L2"])
def test_finder_damage_is_outlined_in_red(method, side):
    """A white bar over two modules of a solid finder side: the symbol still decodes, FPD grades
    the damage C, and exactly those two modules get red outlines."""
    picture = render(MODULES)
    bar = slice(QUIET_PX + 10 * MODULE_PX, QUIET_PX + 12 * MODULE_PX)  # modules 10 and 11
    edge = slice(QUIET_PX + 21 * MODULE_PX, QUIET_PX + 22 * MODULE_PX + MODULE_PX // 2)  # into the quiet zone
    if side == "L1":
        picture[bar, QUIET_PX - MODULE_PX // 2 : QUIET_PX + MODULE_PX] = PAPER
        damaged = [(10, 0), (11, 0)]
    else:
        picture[edge, bar] = PAPER
        damaged = [(21, 10), (21, 11)]
    image = camera(picture, np.random.default_rng(5), noise=3.0, blur=0.7)
    symbol, grade = read(image, method)
    assert grade.informative[f"FPD.{side}"] == 2
    report = report_image(image, symbol, grade)
    red = np.argwhere(near(report, FINDER_DAMAGE))[:, ::-1]  # (x, y)
    half = symbol.module_px * body_layout(report, image, symbol)[3] / 2
    centres = in_picture(report, image, symbol, [grade.centres[r, c] for r, c in damaged])
    assert len(red) > 2 * 4 * 2 * half  # two square outlines, 2 px thick
    distance = np.abs(red[:, None, :] - centres[None, :, :]).max(axis=-1).min(axis=1)  # to the nearest centre
    assert np.all(distance <= half + 2)  # on the damaged modules' outlines and nowhere else
    for x, y in centres:  # each damaged module has its own square outline
        for dx, dy in ((-half, 0), (half, 0), (0, -half), (0, half)):
            assert (np.abs(red - (x + dx, y + dy)).max(axis=1) <= 2).any()


def test_data_module_graded_f_is_crossed():
    levels = np.full(MODULES.shape, np.nan)
    levels[10, 10] = PAPER if MODULES[10, 10] else 30  # printed the wrong colour
    image = camera(render(MODULES, levels=levels))
    symbol, grade = read(image)
    assert np.argwhere(grade.margin_grades == 0).tolist() == [[10, 10]]
    picture = report_image(image, symbol, grade)
    header, *_, scale = body_layout(picture, image, symbol)
    red = np.argwhere(near(picture[header:], GRADE_COLOURS[0]))[:, ::-1] + (0, header)
    (centre,) = in_picture(picture, image, symbol, [grade.centres[10, 10]])
    assert len(red) > 10
    assert np.all(np.abs(red - centre).max(axis=1) <= symbol.module_px * scale / 2)  # only on that module
    assert not near(picture, FINDER_DAMAGE).any()


@pytest.mark.parametrize(
    "modules, module_px",
    [(MODULES, 10), (MODULES, 30), (zxing_modules("12345", version=1), 4)],  # 10 × 10 at 4 px: narrower than 520
)
def test_picture_is_the_header_over_the_enlarged_crop(modules, module_px):
    image = camera(render(modules, module_px=module_px))
    symbol, grade = read(image)
    picture = report_image(image, symbol, grade)
    header, body_height, body_width, scale = body_layout(picture, image, symbol)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert picture.shape[1] == max(MIN_WIDTH_PX, body_width)
    assert symbol.module_px * scale >= MIN_MODULE_PX - 0.5
    assert 80 <= header <= 160  # title, parameters and legend over 4 … 6 lines
    assert np.all(picture[header - 6 : header] == 255)  # the header's white bottom margin
    assert np.all(picture[header, :body_width] < 255)  # the crop starts right below it
    assert np.all(picture[header:, body_width:] == 255)  # white padding to the header's width
