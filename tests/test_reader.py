"""udigate's own Data Matrix reader on images: every size, generated camera frames against
zxing-cpp in the same run, regions of interest, size hints, curved labels, second opinions."""

import cv2
import numpy as np
import pytest
import zxingcpp

from vision.consensus import SecondOpinionReader, around
from vision.grid import _module_centres
from vision.libdmtx_reader import LibdmtxReader
from vision.reader import DataMatrixReader, open_reader
from vision.symbol import Roi
from vision.symbology import SIZES
from vision.zxing_reader import ZXingReader

from .frames import FrameSpec, frame_set, make_frame
from .symbols import image_of, zint_modules, zxing_modules

READER = DataMatrixReader()


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape
    size = int(np.hypot(h, w)) + 8
    canvas = np.full((size, size), int(image[0, 0]), np.uint8)
    canvas[(size - h) // 2 : (size - h) // 2 + h, (size - w) // 2 : (size - w) // 2 + w] = image
    turn = cv2.getRotationMatrix2D((size / 2, size / 2), degrees, 1.0)
    return cv2.warpAffine(canvas, turn, (size, size), flags=cv2.INTER_LINEAR, borderValue=int(image[0, 0]))


@pytest.mark.parametrize("index, size", list(enumerate(SIZES, start=1)), ids=lambda v: getattr(v, "name", ""))
def test_every_size_is_read_from_an_image(index, size):
    text = ("UDI-0123456789-" * 300)[: size.data_codewords - 2]
    image = rotated(image_of(zxing_modules(text, version=index), module_px=4 if size.rows > 80 else 6), 7 * index)
    symbols = READER.read(image)
    assert len(symbols) == 1
    symbol = symbols[0]
    assert (symbol.data, symbol.rows, symbol.cols) == (text.encode(), size.rows, size.cols)
    assert symbol.grid is not None and symbol.grid.size == size
    assert len(symbol.blocks) == size.block_count and all(b.errors == 0 for b in symbol.blocks)


@pytest.mark.parametrize(
    "args",
    [
        ["--gs1", "-d", "[01]06901234567892[17]281231[10]A2611[21]SERIAL001"],
        ["--esc", "-d", r"[)>\R06\G12345\R\E"],
        ["--eci=26", "-d", "Grüße 你好"],
        ["--structapp=1,2", "-d", "PART ONE"],
        ["--dmre", "--vers=43", "-d", "DMRE 22x48 rectangle"],
    ],
)
def test_symbols_from_zint_are_read(args):
    modules, size = zint_modules(*args)
    expected = READER.read(image_of(modules))
    assert len(expected) == 1 and (expected[0].rows, expected[0].cols) == (size.rows, size.cols)
    zxing = zxingcpp.read_barcodes(image_of(modules), text_mode=zxingcpp.TextMode.Plain)
    assert expected[0].data == bytes(zxing[0].bytes)


def test_mirrored_and_inverted_symbols():
    modules = zxing_modules("MIRROR 12345", version=5)
    assert READER.read(image_of(modules[:, ::-1]))[0].data == b"MIRROR 12345"
    assert READER.read(image_of(modules, ink=230, paper=30))[0].data == b"MIRROR 12345"
    assert DataMatrixReader(polarity="dark").read(image_of(modules, ink=230, paper=30)) == ()


def test_generated_frames_read_at_least_as_well_as_zxing_with_no_wrong_reads():
    """The acceptance measurement on a subset (the full 500-frame run is bench/decoders_bench.py):
    4, 6 and 10 px per module, any rotation, perspective, blur, noise, low contrast, inverted,
    mirrored, rectangular and three symbols per frame."""
    frames = frame_set(100)
    own = zxing = wrong = total = 0
    for frame in frames:
        truth = {t.data: t for t in frame.truths}
        symbols = READER.read(frame.image)
        read = {s.data for s in symbols}
        zxing += len(truth.keys() & {bytes(b.bytes) for b in zxingcpp.read_barcodes(frame.image)})
        own += len(truth.keys() & read)
        wrong += len(read - truth.keys())
        total += len(truth)
        for symbol in symbols:  # corners within half a module of where the symbol was drawn
            t = truth[symbol.data]
            found = np.array(symbol.corners)
            distances = [np.min(np.linalg.norm(t.corners - p, axis=1)) for p in found]
            assert max(distances) < 0.5 * t.module_px + 1.5, (symbol.data, distances)
    assert wrong == 0
    assert own >= zxing, (own, zxing, total)
    assert own >= 0.97 * total


@pytest.mark.parametrize("curvature", [0.5, 1.0])
def test_curved_labels_are_read_and_their_grid_fitted(curvature):
    errors_homography, errors_fitted = [], []
    for seed in range(6):
        spec = FrameSpec(module_px=6, rotation_deg=seed * 50, curvature=curvature, clutter=False, perspective=0.01)
        frame = make_frame(np.random.default_rng(seed), spec)
        (truth,) = frame.truths
        (symbol,) = READER.read(frame.image)
        assert symbol.data == truth.data
        grid = symbol.grid
        ideal = _module_centres(grid.homography, grid.size)
        errors_homography.append(np.linalg.norm(ideal - truth.centres, axis=2).max() / 6)
        errors_fitted.append(np.linalg.norm(grid.centres - truth.centres, axis=2).max() / 6)
    assert max(errors_fitted) < 0.25  # modules
    assert np.mean(errors_fitted) < np.mean(errors_homography)


def test_region_of_interest_and_size_hint():
    frame = make_frame(np.random.default_rng(7), FrameSpec(symbols=2, module_px=6))
    first, second = frame.truths
    roi = around(first.corners, frame.image.shape, 1.0)
    (symbol,) = READER.read(frame.image, roi)
    assert symbol.data == first.data
    assert np.allclose(np.sort(np.array(symbol.corners), axis=0), np.sort(first.corners, axis=0), atol=4)
    assert np.abs(symbol.grid.centres.mean(axis=(0, 1)) - first.centres.mean(axis=(0, 1))).max() < 2
    hinted = DataMatrixReader(size_hint=(first.rows, first.cols)).read(frame.image, roi)
    assert hinted and hinted[0].data == first.data
    assert DataMatrixReader(size_hint=(10, 10)).read(frame.image, roi) == ()
    assert DataMatrixReader(max_symbols=1).read(frame.image)[0].data in {first.data, second.data}
    assert READER.read(frame.image, Roi(0, 0, 5, 5)) == ()


def test_consensus_accepts_agreement_and_flags_disagreement():
    agreeing = open_reader("udigate", second_opinion="consensus")
    modules = zxing_modules("(01)06901234567892(21)ABC123", gs1=True, forceSquare=True)
    (symbol,) = agreeing.read(image_of(modules))
    assert symbol.disagreement is None and symbol.symbology_identifier == "]d2"
    # libdmtx cannot read DMRE: as the second opinion it makes the read a disagreement
    dmre, _ = zint_modules("--dmre", "--vers=33", "-d", "DMRE 8x80")
    strict = SecondOpinionReader(DataMatrixReader(), LibdmtxReader(), "consensus")
    (symbol,) = strict.read(image_of(dmre))
    assert symbol.data == b"DMRE 8x80"
    assert symbol.disagreement == "udigate read b'DMRE 8x80', libdmtx found no symbol there"


def test_fallback_seeds_the_own_grid_from_zxing_corners():
    # the own reader is told to look for dark-on-light symbols only, zxing-cpp finds the
    # light-on-dark one; its corners let the own decoder read the modules (with a grid)
    image = image_of(zxing_modules("FALLBACK", version=4), ink=230, paper=30)
    assert DataMatrixReader(polarity="dark").read(image) == ()
    reader = SecondOpinionReader(DataMatrixReader(polarity="dark"), ZXingReader(), "fallback")
    (symbol,) = reader.read(image)
    assert symbol.data == b"FALLBACK" and symbol.grid is not None
    assert symbol.decoder == "udigate+zxing corners"


def test_libdmtx_adapter_reports_gs1_with_separators():
    modules = zxing_modules("(01)06901234567892(10)LOT7(21)S1", gs1=True, forceSquare=True)
    (symbol,) = LibdmtxReader().read(image_of(modules))
    assert symbol.symbology_identifier == "]d2"
    assert symbol.data == b"010690123456789210LOT7\x1d21S1"
