import cv2
import numpy as np
import pytest

from gateway.sources.render import symbol_modules
from vision.grade import HIGHER_IS_BETTER, band, grade_symbol
from vision.reader import open_reader
from vision.symbol import Roi

HRI = "(01)06901234567892(17)281123(10)A2611(21)SER0001"
ELEMENT_STRING = "01069012345678921728112310A2611\x1d21SER0001"


def printed(ink: int = 20, paper: int = 220, module_px: int = 8, margin_modules: int = 4, angle: float = 0.0):
    """A GS1 DataMatrix drawn with exact grey levels, optionally rotated, on paper."""
    modules = symbol_modules(HRI)
    symbol = np.where(np.kron(modules, np.ones((module_px, module_px), bool)), ink, paper).astype(np.uint8)
    pad = margin_modules * module_px
    image = np.pad(symbol, pad, constant_values=paper)
    if angle:
        h, w = image.shape
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        image = cv2.warpAffine(image, turn, (w, h), flags=cv2.INTER_LINEAR, borderValue=paper)
    return image, modules.shape[0]


@pytest.mark.parametrize("angle", [0, 17, 90, 200])
def test_zxing_reader_returns_gs1_bytes_and_corners(angle):
    image, n = printed(angle=angle)
    (symbol,) = open_reader("zxing").read(image)
    assert symbol.symbology_identifier == "]d2" and symbol.is_gs1
    assert symbol.data == ELEMENT_STRING.encode() and symbol.text == ELEMENT_STRING
    assert (symbol.rows, symbol.cols) == (n, n)
    assert symbol.decoder == "zxing"
    assert symbol.module_px == pytest.approx(8, rel=0.05)
    centre = np.mean(symbol.corners, axis=0)
    assert centre == pytest.approx(np.array(image.shape[::-1]) / 2, abs=4)


def test_region_of_interest_limits_the_search_and_keeps_frame_coordinates():
    image, _ = printed()
    frame = np.full((600, 800), 200, np.uint8)
    frame[300 : 300 + image.shape[0], 400 : 400 + image.shape[1]] = image
    reader = open_reader("zxing")
    (whole,) = reader.read(frame)
    (inside,) = reader.read(frame, Roi(350, 250, 400, 350))
    assert np.allclose(whole.corners, inside.corners, atol=1.0)
    assert reader.read(frame, Roi(0, 0, 300, 250)) == ()
    assert reader.read(frame, Roi(900, 700, 10, 10)) == ()  # outside the frame


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="unknown decoder 'quirc'"):
        open_reader("quirc")


def test_a_symbol_without_a_grid_is_not_graded():
    """zxing-cpp gives corners but no module grid: grading says so instead of guessing."""
    image, _ = printed()
    (symbol,) = open_reader("zxing").read(image)
    grade = grade_symbol(image, symbol)
    assert grade.overall is None and grade.refused == "no module grid from decoder zxing"


def test_contrast_bands():
    bands = HIGHER_IS_BETTER["SC"]
    assert [band(v, bands) for v in (70, 69.9, 55, 40, 39.9, 20, 19.9)] == [4, 3, 3, 2, 1, 1, 0]
