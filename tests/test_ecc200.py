"""The bit-level half of the reader: symbol table, placement, Reed–Solomon, data decoding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vision.decoder import DecodeError, decode_modules, modules_from_codewords, read_codewords
from vision.encodation import EncodationError, decode_message
from vision.placement import layout
from vision.reed_solomon import FAILED, correct, encode
from vision.symbology import SIZES, size_for

from .symbols import zint_modules, zxing_modules


def test_symbol_table():
    assert len([s for s in SIZES if not s.dmre]) == 30 and len([s for s in SIZES if s.dmre]) == 18
    assert len([s for s in SIZES if s.rows == s.cols]) == 24
    s144 = size_for(144, 144)
    assert (s144.data_codewords, s144.ec_codewords, s144.block_count) == (1558, 620, 10)
    assert (s144.regions_v, s144.regions_h, s144.mapping_rows) == (6, 6, 132)
    assert size_for(26, 40).dmre and size_for(11, 11) is None


@pytest.mark.parametrize("size", SIZES, ids=lambda s: s.name)
def test_layout_covers_every_module_once(size):
    symbol_layout = layout(size)
    cover = np.zeros((size.rows, size.cols), int)
    np.add.at(cover, (symbol_layout.bit_rows.ravel(), symbol_layout.bit_cols.ravel()), 1)
    assert cover.max() == 1
    assert ((cover == 1) == (symbol_layout.pattern < 0)).all()
    assert symbol_layout.codewords == size.data_codewords + size.ec_codewords


@pytest.mark.parametrize("index, size", list(enumerate(SIZES, start=1)), ids=lambda v: getattr(v, "name", ""))
def test_every_size_round_trips_through_zxing_cpps_writer(index, size):
    text = ("0123456789" * 400)[: 2 * size.data_codewords - 2]
    modules = zxing_modules(text, version=index)
    assert modules.shape == (size.rows, size.cols)
    decoded = decode_modules(modules, size)
    assert decoded.message.data == text.encode()
    assert all(b.errors == 0 and b.erasures == 0 for b in decoded.blocks)
    # re-drawing the corrected codewords gives the symbol back, finder and clock included
    assert (modules_from_codewords(decoded.corrected, size) == modules).all()


@pytest.mark.parametrize(
    "args, data, identifier, modes",
    [
        (["-d", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"], b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "]d1", {"c40"}),
        (["-d", "abcdefghijklmnopqrstuvwxyz abcdefghij"], b"abcdefghijklmnopqrstuvwxyz abcdefghij", "]d1", {"text"}),
        (["--esc", "-d", r"ABC*DEF>GHI\rJKL*MNO>PQR\rSTU*VWX>"], b"ABC*DEF>GHI\rJKL*MNO>PQR\rSTU*VWX>", "]d1", {"x12"}),
        (["-d", "@ABCDEFG.,?/[]^_@ABC:;<=>?@ABCDEF"], b"@ABCDEFG.,?/[]^_@ABC:;<=>?@ABCDEF", "]d1", {"edifact"}),
        (
            ["--binary", "--esc", "-d", r"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\x00\x01"],
            bytes([255, 254, 253, 252, 251, 250, 249, 248, 0, 1]),
            "]d1",
            {"base256"},
        ),
        (["-d", "12345678901234567890"], b"12345678901234567890", "]d1", {"ascii"}),
        (
            ["--gs1", "--gssep", "-d", "[01]06901234567892[17]281231[10]ABCDEFGHIJ[21]XYZ123"],
            b"01069012345678921728123110ABCDEFGHIJ\x1d21XYZ123",
            "]d2",
            None,
        ),
        (["--esc", "-d", r"[)>\R05\G0106901234567892\R\E"], b"[)>\x1e05\x1d0106901234567892\x1e\x04", "]d1", None),
        (["--esc", "-d", r"[)>\R06\G12345\R\E"], b"[)>\x1e06\x1d12345\x1e\x04", "]d1", None),
        (["--eci=26", "-d", "Grüße 你好"], "Grüße 你好".encode(), "]d4", None),
        (["--dmre", "--vers=31", "-d", "DMRE 8x48"], b"DMRE 8x48", "]d7", None),
    ],
)
def test_encodation_modes_from_zint(args, data, identifier, modes):
    modules, size = zint_modules(*args)
    message = decode_modules(modules, size).message
    assert message.data == data
    assert message.symbology_identifier == identifier
    if modes is not None:
        assert modes <= message.modes


def test_eci_text_structured_append_and_reader_programming():
    modules, size = zint_modules("--eci=3", "-d", "café")
    message = decode_modules(modules, size).message
    assert (message.text, message.eci, message.data) == ("café", (3,), b"caf\xe9")
    modules, size = zint_modules("--structapp=2,3", "-d", "PART TWO")
    message = decode_modules(modules, size).message
    assert message.structured_append[:2] == (2, 3) and message.data == b"PART TWO"
    modules, size = zint_modules("--init", "-d", "PROGRAM")
    assert decode_modules(modules, size).message.reader_init


def test_fnc1_inside_c40_becomes_gs():
    # zint switches to C40 for upper-case lots and encodes the separator FNC1 inside C40
    modules, size = zint_modules("--gs1", "-d", "[01]06901234567892[10]ABCDEFGHIJKLMNOP[21]QRSTUVWXYZ")
    message = decode_modules(modules, size).message
    assert message.data == b"010690123456789210ABCDEFGHIJKLMNOP\x1d21QRSTUVWXYZ"
    assert "c40" in message.modes


def test_padding_is_checked():
    codewords = [66, 67, 129, 0, 0]  # "AB", pad, then not the randomised pad values
    with pytest.raises(EncodationError, match="pad codeword at position 4"):
        decode_message(codewords)


@pytest.mark.parametrize("ec", [5, 7, 10, 18, 28, 42, 62, 68])
def test_reed_solomon_corrects_up_to_capacity_with_exact_counts(ec):
    rng = np.random.default_rng(ec)
    reserved = ec % 2
    for _ in range(60):
        data = rng.integers(0, 256, int(rng.integers(3, 120))).astype(np.int32)
        block = np.concatenate([data, encode(data, ec)])
        erasures = int(rng.integers(0, ec - reserved + 1))
        errors = int(rng.integers(0, (ec - reserved - erasures) // 2 + 1))
        positions = rng.choice(len(block), erasures + errors, replace=False)
        received = block.copy()
        for p in positions[erasures:]:
            received[p] ^= int(rng.integers(1, 256))
        for p in positions[:erasures]:
            received[p] = int(rng.integers(0, 256))
        assert correct(received, ec, np.sort(positions[:erasures]), reserved) == (errors, erasures)
        assert (received == block).all()


@pytest.mark.parametrize("ec", [5, 7, 10, 18, 28, 42, 62, 68])
def test_reed_solomon_fails_beyond_capacity(ec):
    rng = np.random.default_rng(100 + ec)
    reserved = ec % 2
    for _ in range(200):
        data = rng.integers(0, 256, int(rng.integers(3, 120))).astype(np.int32)
        block = np.concatenate([data, encode(data, ec)])
        errors = (ec - reserved) // 2 + 1 + int(rng.integers(0, 3))
        received = block.copy()
        for p in rng.choice(len(block), errors, replace=False):
            received[p] ^= int(rng.integers(1, 256))
        assert correct(received, ec, None, reserved)[0] == FAILED


def test_symbol_errors_up_to_capacity_and_beyond():
    size = size_for(22, 22)
    modules = zxing_modules("0123456789" * 6, version=7)
    raw = read_codewords(modules, layout(size))
    rng = np.random.default_rng(5)
    for damaged in (0, 5, 10, 11, 14):
        corrupt = raw.copy()
        for p in rng.choice(len(raw), damaged, replace=False):
            corrupt[p] ^= 0x5A
        matrix = modules_from_codewords(corrupt, size)
        if damaged <= 10:
            decoded = decode_modules(matrix, size)
            assert decoded.message.data == b"0123456789" * 6
            assert decoded.blocks[0].errors == damaged
            assert decoded.blocks[0].unused_error_correction == pytest.approx(1 - 2 * damaged / 20)
        else:
            with pytest.raises(DecodeError):
                decode_modules(matrix, size)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=1, max_size=300), st.booleans())
def test_random_codeword_streams_decode_or_fail_cleanly(codewords, dmre):
    try:
        message = decode_message(codewords, dmre)
    except EncodationError:
        return
    assert isinstance(message.data, bytes) and message.symbology_identifier.startswith("]d")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SIZES), st.integers(0, 2**32 - 1))
def test_random_module_matrices_decode_or_fail_cleanly(size, seed):
    modules = np.random.default_rng(seed).random((size.rows, size.cols)) < 0.5
    try:
        decode_modules(modules, size)
    except DecodeError:
        pass
