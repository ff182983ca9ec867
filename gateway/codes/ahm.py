"""AHM (Alibaba Health) codes: the syntax is not public, so the line configures a regular
expression with named groups ``di``, ``lot``, ``serial``, ``production`` and ``expiry`` (dates
as YYMMDD or YYYYMMDD)."""

from __future__ import annotations

import re
from datetime import date

from ..reasons import Finding
from . import CodePolicy, ParsedCode, parse_date


def parse_ahm(text: str, policy: CodePolicy, today: date) -> ParsedCode:
    match = re.fullmatch(policy.ahm_pattern, text)
    if match is None:
        return ParsedCode(text, "AHM", {}, (Finding("ahm_syntax", "does not match the line's AHM pattern"),))
    fields = {k: v for k, v in match.groupdict().items() if v is not None}
    errors = []
    dates = {}
    for key in ("production", "expiry"):
        if key in fields:
            dates[key] = parse_date(fields[key])
            if dates[key] is None:
                errors.append(Finding("date_invalid", f"{key} {fields[key]!r} is not a valid YYMMDD date"))
    return ParsedCode(
        input=text,
        issuer="AHM",
        fields=fields,
        errors=tuple(errors),
        di=fields.get("di"),
        lot=fields.get("lot"),
        serial=fields.get("serial"),
        production=dates.get("production"),
        expiry=dates.get("expiry"),
    )
