"""The grade overlay of the review store: the symbol crop and the marks on damaged modules."""

import numpy as np

from vision.grade import grade_symbol
from vision.report import FINDER_DAMAGE, GRADE_COLOURS, report_image, symbol_crop

from .symbols import camera, render
from .test_grade import MODULES, READER


def read(image):
    (symbol,) = READER.read(image)
    return symbol, grade_symbol(image, symbol)


def count(picture, colour):
    return int(np.all(picture == colour, axis=-1).sum())


def test_the_crop_holds_the_symbol_and_its_margin_inside_the_frame():
    image = camera(render(MODULES))  # 22 modules of 10 px with 3 modules of quiet zone
    symbol, _ = read(image)
    crop, (x0, y0) = symbol_crop(image, symbol, margin_modules=2)
    corners = np.array(symbol.corners)
    assert 8 <= x0 <= 11 and 8 <= y0 <= 11  # 2 modules of margin before the symbol at 30 px
    height, width = crop.shape
    assert 258 <= height <= 264 and 258 <= width <= 264 and crop.flags["C_CONTIGUOUS"]  # 22 + 2 × 2 modules
    assert np.array_equal(crop, image[y0 : y0 + height, x0 : x0 + width])
    assert np.all(corners >= (x0, y0)) and np.all(corners <= (x0 + width, y0 + height))
    wide, origin = symbol_crop(image, symbol, margin_modules=10)  # more margin than the frame has
    assert origin == (0, 0) and wide.shape == image.shape


def test_damaged_finder_modules_are_outlined_in_red_and_f_modules_crossed():
    levels = np.full(MODULES.shape, np.nan)
    levels[[4, 9], 0] = 220  # two light spots on the solid left side of the finder
    levels[10, 10] = 220 if MODULES[10, 10] else 30  # a data module printed the wrong colour
    pictures = {}
    for name, picture in (("clean", render(MODULES)), ("damaged", render(MODULES, levels=levels))):
        image = camera(picture)
        symbol, grade = read(image)
        pictures[name] = (report_image(image, symbol, grade), grade)
    clean, _ = pictures["clean"]
    damaged, grade = pictures["damaged"]
    assert grade.informative["FPD.L1"] < 4 and grade.margin_grades[10, 10] == 0
    assert count(clean, FINDER_DAMAGE) == 0
    red = np.argwhere(np.all(damaged == FINDER_DAMAGE, axis=-1))
    assert len(red) > 100
    assert red[:, 1].max() < damaged.shape[1] * 0.25  # on the left side, where the spots are
    assert count(damaged, GRADE_COLOURS[0]) > count(clean, GRADE_COLOURS[0]) + 10  # the cross on the bad module
    assert clean.shape == damaged.shape
