"""HIBC (Health Industry Bar Code, HIBCC): primary data ``+LIC product unit-of-measure`` and
secondary data (lot, serial, dates), concatenated after ``/`` in one symbol or in a symbol of its
own (``+$…`` ending in the primary's check character as the link), with a mod-43 check character
over the whole text before it (including the leading ``+``)."""

from __future__ import annotations

import re
from datetime import date, timedelta

from ..reasons import Finding
from . import ParsedCode, parse_date

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"
PRIMARY = re.compile(r"^\+([A-Z][A-Z0-9]{3})([A-Z0-9]{1,18})(\d)$")


def check_character(text: str) -> str | None:
    """Mod 43 over the HIBC values of ``text``; None when a character is outside the table."""
    if any(c not in ALPHABET for c in text):
        return None
    return ALPHABET[sum(ALPHABET.index(c) for c in text) % 43]


def _dated(field: str) -> tuple[date | None, str, bool]:
    """The date part of a ``$$`` (or ``$$+``) field: (expiry, the rest = lot or serial, whether a
    date was meant). A first character 0 or 1 is the month of MMYY; 2-7 are date-format flags."""
    head = field[:1]
    if head in ("0", "1"):
        month, year = field[0:2], field[2:4]
        if not (month.isdigit() and year.isdigit() and 1 <= int(month) <= 12):
            return None, field[4:], True
        m, y = int(month), 2000 + int(year)
        return date(y + m // 12, m % 12 + 1, 1) - timedelta(days=1), field[4:], True
    lengths = {"2": 6, "3": 6, "4": 8, "5": 5, "6": 7, "7": 0}
    if head not in lengths:
        return None, field, False
    n = lengths[head]
    value, rest = field[1 : 1 + n], field[1 + n :]
    if head == "7":
        return None, rest, False
    if not value.isdigit() or len(value) < n:
        return None, rest, True
    if head == "2":  # MMDDYY
        return parse_date(value[4:6] + value[0:4]), rest, True
    if head in ("3", "4"):  # YYMMDD[HH]
        return parse_date(value[:6]), rest, True
    day = int(value[2:5])  # YYJJJ[HH]
    if not 1 <= day <= 366:
        return None, rest, True
    return date(2000 + int(value[:2]), 1, 1) + timedelta(days=day - 1), rest, True


def parse_hibc(text: str, today: date) -> ParsedCode:
    errors: list[Finding] = []
    fields: dict[str, str] = {}
    body, check = text[:-1], text[-1:]
    expected = check_character(body)
    if expected is None:
        return ParsedCode(text, "HIBC", {}, (Finding("hibc_syntax", "characters outside the HIBC set"),))
    if check != expected:
        errors.append(Finding("hibc_check_character", f"check character {check!r}, computed {expected!r}"))
    if body.startswith("+$"):  # secondary data in its own symbol: + data, link character, check
        primary, secondary = "", body[1:-1]
        fields["link"] = body[-1:]  # the check character of the primary symbol it belongs to
        match = None
    else:
        primary, _, secondary = body.partition("/")
        match = PRIMARY.match(primary)
    if match is None and primary:
        return ParsedCode(
            text,
            "HIBC",
            {},
            (*errors, Finding("hibc_syntax", f"{primary!r} is not + LIC (4) + product (1-18) + unit of measure")),
        )
    if match is not None:
        fields.update(lic=match[1], product=match[2], unit_of_measure=match[3])
    lot = serial = expiry = production = None
    for part in secondary.split("/") if secondary else ():
        if part.startswith("$$"):
            is_serial = part.startswith("$$+")
            field = part[3:] if is_serial else part[2:]
            if field[:1] in ("8", "9"):  # quantity first, then the date
                digits = 2 if field[0] == "8" else 5
                fields["quantity"] = field[1 : 1 + digits]
                field = field[1 + digits :]
            found, rest, dated = _dated(field)
            if dated and found is None:
                errors.append(Finding("date_invalid", f"{part!r}: the expiry is not a valid date"))
            if found is not None:
                expiry = found
                fields["expiry"] = found.isoformat()
            if is_serial:
                serial = fields["serial"] = rest
            else:
                lot = fields["lot"] = rest
        elif part.startswith("$+"):
            serial = fields["serial"] = part[2:]
        elif part.startswith("$"):
            lot = fields["lot"] = part[1:]
        elif part.startswith("16D"):
            production = parse_date(part[3:11])
            fields["production_date"] = part[3:11]
            if production is None:
                errors.append(Finding("date_invalid", f"production date {part[3:11]!r} is not a valid YYYYMMDD date"))
        elif part.startswith("14D"):
            expiry = parse_date(part[3:11])
            fields["expiry"] = part[3:11]
            if expiry is None:
                errors.append(Finding("date_invalid", f"expiry {part[3:11]!r} is not a valid YYYYMMDD date"))
        elif part.startswith("S"):
            serial = fields["serial"] = part[1:]
        else:
            errors.append(Finding("hibc_syntax", f"unknown secondary field {part!r}"))
    return ParsedCode(
        input=text,
        issuer="HIBC",
        fields=fields,
        errors=tuple(errors),
        di=f"+{match[1]}{match[2]}{match[3]}" if match is not None else None,
        lot=lot,
        serial=serial,
        production=production,
        expiry=expiry,
    )
