"""ISBT 128 (ICCBBA; cell and tissue products): recognised by its data identifiers so that a line
can say what it saw; its content is licensed and not validated here."""

from __future__ import annotations

from ..reasons import Finding
from . import ParsedCode

DATA_IDENTIFIERS = {"=/": "product code", "=>": "expiry", "=}": "production date", "=,": "serial", "=<": "product"}


def parse_isbt(text: str) -> ParsedCode:
    kind = DATA_IDENTIFIERS.get(text[:2], "data structure")
    return ParsedCode(
        text,
        "ISBT 128",
        {text[:2]: text[2:]},
        warnings=(Finding("isbt_not_validated", f"ISBT 128 {kind}: recognised, content not validated"),),
    )
