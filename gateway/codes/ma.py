"""MA codes (IDcode, issuing agency ZIIOT): ``MA.156.M0.<registrant>.<product>`` then dot-prefixed
production units, one qualifier letter each, and an optional PI check character ``.C``.

The check character algorithm is reconstructed from an open implementation and reproduces the
published samples, but is unconfirmed: a mismatch is a warning unless the line says otherwise
(``CodePolicy.ma_check``).
"""

from __future__ import annotations

import re
from datetime import date

from ..reasons import Finding
from . import CodePolicy, ParsedCode, parse_date

DI_PATTERN = re.compile(r"^MA\.(\d{3})\.([A-Z0-9]{2})\.(\d{6})\.([A-Za-z0-9]{1,34})$")
# qualifier letter → meaning; dates are YYMMDD or YYYYMMDD
UNITS = {
    "L": "lot",
    "S": "serial",
    "M": "production date",
    "P": "production date",  # older samples
    "D": "sterilisation lot",
    "V": "use-by as labelled",
    "E": "expiry",
    "C": "check character",
}
DATE_UNITS = frozenset("MPVE")
_VALUES = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg")}
_VALUES.update({c: 45 + i for i, c in enumerate("hijklmnopqrstuvwxyz")})
_VALUES.update({c: 64 + i for i, c in enumerate("-.@$,*+%/#!^~")})


def check_character(text: str) -> str | None:
    """The MA check digit over ``text``: characters → numbers, decimal strings concatenated,
    Luhn with every second digit from the right doubled, starting with the second-last (this
    reproduces the DI and PI check characters of the published samples). None when a
    character has no value."""
    try:
        digits = "".join(str(_VALUES[c]) for c in text)
    except KeyError:
        return None
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 1 else 1)
        total += n - 9 if n > 9 else n
    return str((10 - total % 10) % 10)


def parse_ma(text: str, policy: CodePolicy, today: date) -> ParsedCode:
    errors: list[Finding] = []
    warnings: list[Finding] = []
    parts = text.split(".")
    # the DI is the first five dot-separated parts; production units follow
    di = ".".join(parts[:5])
    if DI_PATTERN.match(di) is None:
        return ParsedCode(
            text, "MA", {}, (Finding("ma_syntax", f"{di!r} is not an MA DI (MA.156.M0.<6 digits>.<product code>)"),)
        )
    fields: dict[str, str] = {"DI": di}
    expected = check_character(di[:-1])
    if expected is not None and di[-1] != expected and policy.ma_check != "ignore":
        finding = Finding("ma_check_character", f"DI check character {di[-1]!r}, computed {expected!r}")
        (errors if policy.ma_check == "reject" else warnings).append(finding)
    units = parts[5:]
    pi_text = ""
    for unit in units:
        if not unit:
            errors.append(Finding("ma_syntax", "an empty production unit (two dots in a row)"))
            continue
        letter, value = unit[0], unit[1:]
        if letter not in UNITS:
            errors.append(Finding("ma_syntax", f"unknown production unit .{letter} ({unit!r})"))
            continue
        if letter in fields:
            errors.append(Finding("ma_syntax", f"production unit .{letter} appears twice"))
            continue
        if letter == "C":
            expected = check_character(pi_text)
            if unit != units[-1]:
                errors.append(Finding("ma_syntax", ".C (check character) must be the last unit"))
            elif expected is not None and value != expected and policy.ma_check != "ignore":
                finding = Finding("ma_check_character", f"PI check character {value!r}, computed {expected!r}")
                (errors if policy.ma_check == "reject" else warnings).append(finding)
        elif letter in DATE_UNITS and parse_date(value) is None:
            errors.append(Finding("date_invalid", f".{letter}{value}: {UNITS[letter]} is not a valid YYMMDD date"))
        fields[letter] = value
        pi_text += "." + unit
    production = parse_date(fields["M"]) if "M" in fields else parse_date(fields.get("P", ""))
    return ParsedCode(
        input=text,
        issuer="MA",
        fields=fields,
        errors=tuple(errors),
        warnings=tuple(warnings),
        di=di,
        lot=fields.get("L"),
        serial=fields.get("S"),
        production=production,
        expiry=parse_date(fields.get("E", "")) or parse_date(fields.get("V", "")),
    )
