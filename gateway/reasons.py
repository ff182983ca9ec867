"""Reject reasons: one table shared by the PLC result codes, MQTT records, the reject log and the
operator's screens. Codes are stable identifiers; never rename one, add a new one instead."""

from __future__ import annotations

from dataclasses import dataclass

from plc.registers import ResultCode


@dataclass(frozen=True, slots=True)
class Finding:
    """One fault of one item: a reason code from the table below and what exactly is wrong."""

    code: str
    message: str  # the specific fault, for the operator


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    result: ResultCode  # what the PLC is told
    text: str  # what a line operator reads


_TABLE = (
    Reason("image_error", ResultCode.STATION_ERROR, "the frame could not be captured or read"),
    Reason("vision_error", ResultCode.STATION_ERROR, "the reader failed on this frame (see the log)"),
    Reason("serial_registry_error", ResultCode.STATION_ERROR, "the serial could not be recorded (see the log)"),
    Reason("not_inspected", ResultCode.NOT_INSPECTED, "the station was busy and could not inspect the item"),
    Reason("deadline_missed", ResultCode.TIMEOUT, "decided too late for the ejector: rejected to be safe"),
    Reason("no_read", ResultCode.NO_READ, "no readable Data Matrix on the pack"),
    Reason("decoder_disagreement", ResultCode.NO_READ, "two independent decoders read the code differently"),
    Reason("grade_below_min", ResultCode.GRADE_FAIL, "print quality grade below the line's minimum"),
    Reason(
        "insufficient_resolution",
        ResultCode.GRADE_FAIL,
        "the code is too small in the image to grade (pixels per module)",
    ),
    Reason("not_graded", ResultCode.GRADE_FAIL, "the code was read but could not be graded"),
    Reason("not_gs1", ResultCode.SYNTAX_ERROR, "the code is not a GS1 DataMatrix (no leading FNC1)"),
    Reason("unknown_issuer", ResultCode.SYNTAX_ERROR, "the code is not a UDI of a known issuing agency"),
    Reason("issuer_not_allowed", ResultCode.SYNTAX_ERROR, "the code's issuing agency is not the one this line prints"),
    Reason("gs1_syntax", ResultCode.SYNTAX_ERROR, "the GS1 element string cannot be parsed"),
    Reason("gs1_unknown_ai", ResultCode.SYNTAX_ERROR, "the code holds an unknown GS1 application identifier"),
    Reason("gs1_check_digit", ResultCode.SYNTAX_ERROR, "the GTIN check digit is wrong"),
    Reason("gs1_missing_separator", ResultCode.SYNTAX_ERROR, "a GS separator is missing: fields run together"),
    Reason("gs1_invalid_character", ResultCode.SYNTAX_ERROR, "a character not allowed in GS1 fields"),
    Reason("gs1_repeated_ai", ResultCode.SYNTAX_ERROR, "an element appears twice with different values"),
    Reason("gs1_ai_requires", ResultCode.SYNTAX_ERROR, "an element lacks the element it belongs to"),
    Reason("gs1_ai_excludes", ResultCode.SYNTAX_ERROR, "two elements that must not be combined"),
    Reason("gs1_missing_ai", ResultCode.SYNTAX_ERROR, "a required element (GTIN, lot, serial, date) is missing"),
    Reason("gs1_day_zero", ResultCode.SYNTAX_ERROR, "a date with day 00, which this line does not accept"),
    Reason("ma_syntax", ResultCode.SYNTAX_ERROR, "the MA code cannot be parsed"),
    Reason("ma_check_character", ResultCode.SYNTAX_ERROR, "the MA check character is wrong"),
    Reason("hibc_syntax", ResultCode.SYNTAX_ERROR, "the HIBC code cannot be parsed"),
    Reason("hibc_check_character", ResultCode.SYNTAX_ERROR, "the HIBC check character is wrong"),
    Reason("ahm_syntax", ResultCode.SYNTAX_ERROR, "the code does not match the line's AHM pattern"),
    Reason("isbt_not_validated", ResultCode.SYNTAX_ERROR, "an ISBT 128 code (cell and tissue), not validated here"),
    Reason("date_invalid", ResultCode.SYNTAX_ERROR, "a date in the code is not a valid date"),
    Reason("udid_unknown_di", ResultCode.CONTENT_MISMATCH, "the DI is not registered in the national UDI database"),
    Reason("udid_withdrawn", ResultCode.CONTENT_MISMATCH, "the product is withdrawn in the national UDI database"),
    Reason("udid_pi_mismatch", ResultCode.CONTENT_MISMATCH, "the code's lot/serial/dates differ from the registration"),
    Reason("udid_wrong_level", ResultCode.CONTENT_MISMATCH, "the DI is another package level than the line packs"),
    Reason("no_active_job", ResultCode.CONTENT_MISMATCH, "no production order is active: the line is stopped"),
    Reason("wrong_di", ResultCode.CONTENT_MISMATCH, "the GTIN (UDI-DI) is not the production order's"),
    Reason("wrong_lot", ResultCode.CONTENT_MISMATCH, "the lot is not the production order's"),
    Reason("wrong_production_date", ResultCode.CONTENT_MISMATCH, "the production date is not the order's"),
    Reason("production_date_window", ResultCode.CONTENT_MISMATCH, "the production date is outside the allowed window"),
    Reason("wrong_expiry", ResultCode.CONTENT_MISMATCH, "the expiry date is not the production order's"),
    Reason("expired", ResultCode.CONTENT_MISMATCH, "the expiry date has passed"),
    Reason("short_shelf_life", ResultCode.CONTENT_MISMATCH, "too little shelf life left before the expiry date"),
    Reason("serial_pattern", ResultCode.CONTENT_MISMATCH, "the serial does not have the order's form"),
    Reason("duplicate_serial", ResultCode.DUPLICATE, "this GTIN + serial was already verified"),
)

REASONS: dict[str, Reason] = {r.code: r for r in _TABLE}
# Order of precedence when an item has several reasons: the first decides the PLC result code.
PRECEDENCE: dict[str, int] = {r.code: i for i, r in enumerate(_TABLE)}


def ordered(codes) -> tuple[str, ...]:
    """Reason codes in precedence order, without repeats."""
    return tuple(sorted(set(codes), key=PRECEDENCE.__getitem__))


def result_code(codes: tuple[str, ...]) -> ResultCode:
    """The PLC result code for an item with these (ordered) reasons."""
    return REASONS[codes[0]].result if codes else ResultCode.PASS
