"""GS1 element strings and GS1 Digital Link URIs, strictly.

The AI table (formats, patterns, which AIs need a separator) is biip's copy of the GS1 table;
AI associations (requires / excludes) are data in gs1_associations.toml. On top of biip this
parser reports what biip accepts silently: a wrong check digit, characters outside CSET 82, a
value longer than its AI allows (a dropped separator), an AI hidden inside a variable field (a
dropped separator that still fits), repeated AIs, missing or excluded associations, and dates
with day 00 per the line's policy.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from datetime import date
from functools import cache
from importlib import resources

from biip import EncodeError, ParseConfig, ParseError
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message

from ..reasons import Finding
from . import GS, CodePolicy, ParsedCode

CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
DAY_ZERO_AIS = frozenset({"11", "12", "13", "15", "16", "17"})  # YYMMDD where day 00 = end of month
# Production identifiers a dropped separator can hide inside a lot or serial
PI_AIS = ("10", "21", "11", "17", "240", "22", "30", "7003", "712", "714", "8012")
_BIIP = ParseConfig(separator_chars=[GS])


@cache
def associations() -> tuple[dict[str, list[list[str]]], dict[str, list[str]]]:
    table = tomllib.loads(resources.files(__package__).joinpath("gs1_associations.toml").read_text("utf-8"))
    return table["requires"], table["excludes"]


@cache
def _ai(prefix: str) -> GS1ApplicationIdentifier | None:
    try:
        return GS1ApplicationIdentifier.extract(prefix)
    except ParseError:
        return None


def _lengths(ai: GS1ApplicationIdentifier) -> tuple[int, int]:
    """(minimum, maximum) length of the value, from the AI's format (``N2+X..20``, ``N4+N6``)."""
    low = high = 0
    for part in ai.format.split("+")[1:]:
        optional = part.startswith("[")
        match = re.search(r"(\.\.)?(\d+)", part)
        n = int(match[2])
        high += n
        low += 0 if optional else (1 if match[1] else n)
    return low, high


def _x_field(ai: GS1ApplicationIdentifier) -> bool:
    return "X" in ai.format.split("+", 1)[1]


def parse_element_string(data: str, policy: CodePolicy, today: date, issuer: str = "GS1") -> ParsedCode:
    fields: dict[str, str] = {}
    elements: dict[str, GS1ElementString] = {}
    errors: list[Finding] = []
    warnings: list[Finding] = []
    suspect: set[str] = set()
    pos, complete = 0, True
    while pos < len(data):
        if data[pos] == GS:
            pos += 1
            continue
        ai = next((a for n in (2, 3, 4) if (a := _ai(data[pos : pos + n])) and a.ai == data[pos : pos + n]), None)
        if ai is None:
            errors.append(Finding("gs1_unknown_ai", f"no GS1 application identifier at {data[pos : pos + 8]!r}"))
            complete = False
            break
        start = pos + len(ai.ai)
        low, high = _lengths(ai)
        if ai.separator_required:
            end = data.find(GS, start)
            end = len(data) if end < 0 else end
        else:
            end = start + high
        value = data[start:end]
        if len(value) > high or (not ai.separator_required and GS in value):
            suspect.add(ai.ai)
            errors.append(
                Finding(
                    "gs1_missing_separator",
                    f"({ai.ai}) {value!r} is {len(value)} characters, at most {high}: "
                    "the GS separator after it is missing",
                )
            )
            fields.setdefault(ai.ai, value[:high])
            complete = False
            break
        if len(value) < low or (not ai.separator_required and len(value) < high):
            errors.append(Finding("gs1_syntax", f"({ai.ai}) {value!r} is too short: {ai.format} expected"))
            complete = False
            break
        problem = _value_problem(ai, value)
        if problem is not None:
            errors.append(problem)
            suspect.add(ai.ai)
        if ai.ai in fields:
            if fields[ai.ai] != value:
                errors.append(Finding("gs1_repeated_ai", f"({ai.ai}) appears twice: {fields[ai.ai]!r} and {value!r}"))
                suspect.add(ai.ai)
            else:
                warnings.append(Finding("gs1_repeated_ai", f"({ai.ai}) appears twice with the same value"))
        else:
            fields[ai.ai] = value
        if problem is None:
            element = GS1ElementString.extract(ai.ai + value, config=_BIIP)
            elements[ai.ai] = element
            for error in (element.gtin_error, element.sscc_error, element.gln_error):
                if error:
                    suspect.add(ai.ai)
                    errors.append(Finding("gs1_check_digit", f"({ai.ai}) {value}: {error}"))
            if ai.ai in DAY_ZERO_AIS and value[4:6] == "00" and policy.day_zero != "accept":
                finding = Finding(
                    "gs1_day_zero",
                    f"({ai.ai}) {value}: day 00 (= end of month); healthcare codes should print the real day",
                )
                (errors if policy.day_zero == "reject" else warnings).append(finding)
        pos = end

    if complete:
        hidden = _hidden_elements(fields, policy, errors, warnings, suspect)
        _associations(fields, errors)
        for ai in policy.required_ais:
            if ai not in fields and ai not in hidden:
                errors.append(Finding("gs1_missing_ai", f"required ({ai}) is missing"))
    dates = {ai: e.date for ai, e in elements.items() if e.date is not None and ai not in suspect}
    trusted = {ai: v for ai, v in fields.items() if ai not in suspect}
    return ParsedCode(
        input=data,
        issuer=issuer,
        fields=fields,
        errors=tuple(errors),
        warnings=tuple(warnings),
        di=trusted.get("01"),
        lot=trusted.get("10"),
        serial=trusted.get("21"),
        production=dates.get("11"),
        expiry=dates.get("17") or (elements["7003"].datetime.date() if "7003" in dates else None),
        suspect=frozenset(suspect),
    )


def _value_problem(ai: GS1ApplicationIdentifier, value: str) -> Finding | None:
    if _x_field(ai):
        bad = next((c for c in value if c not in CSET82), None)
        if bad is not None:
            return Finding(
                "gs1_invalid_character",
                f"({ai.ai}) {value!r} contains {bad!r}: only letters, digits and !\"%&'()*+,-./:;<=>?_ are allowed",
            )
    if re.fullmatch(ai.pattern, ai.ai + value) is None:
        code = "date_invalid" if ai.ai in DAY_ZERO_AIS or ai.ai == "7003" else "gs1_syntax"
        return Finding(code, f"({ai.ai}) {value!r} does not match {ai.format.split('+', 1)[1]} ({ai.data_title})")
    try:
        GS1ElementString.extract(ai.ai + value, config=_BIIP)
    except ParseError as exc:
        code = "date_invalid" if "date" in str(exc) else "gs1_syntax"
        return Finding(code, f"({ai.ai}) {value!r}: {exc}")
    return None


def _hidden_elements(fields, policy, errors, warnings, suspect) -> set[str]:
    """A dropped separator that still fits: ``10A2611`` + ``21SER1`` reads as lot ``A261121SER1``.
    Where a lot or serial ends in a complete, valid PI element that the code otherwise lacks,
    report it: an error when that AI is required (preferred when several splits are possible),
    else a warning (a lot may well contain "21"). Returns the AIs found hidden as errors."""
    hidden_required: set[str] = set()
    for ai, value in list(fields.items()):
        if ai in suspect or not _ai(ai).separator_required:
            continue
        candidates = []
        for i in range(1, len(value) - 2):
            for hidden in PI_AIS:
                rest = value[i + len(hidden) :]
                if not value.startswith(hidden, i) or hidden in fields:
                    continue
                low, high = _lengths(_ai(hidden))
                if low <= len(rest) <= high and _value_problem(_ai(hidden), rest) is None:
                    candidates.append((hidden not in policy.required_ais, i, hidden, rest))
        if not candidates:
            continue
        optional, _, hidden, rest = min(candidates)
        message = f"({ai}) {value!r} ends in ({hidden}) {rest!r}: the GS separator before ({hidden}) is missing"
        if optional:
            warnings.append(Finding("gs1_missing_separator", "possibly " + message))
        else:
            suspect.add(ai)
            hidden_required.add(hidden)
            errors.append(Finding("gs1_missing_separator", message))
    return hidden_required


def _associations(fields: dict[str, str], errors: list[Finding]) -> None:
    requires, excludes = associations()
    for ai in fields:
        for alternatives in requires.get(ai, ()):
            if not any(other in fields for other in alternatives):
                needed = " or ".join(f"({a})" for a in alternatives)
                errors.append(Finding("gs1_ai_requires", f"({ai}) needs {needed} in the same code"))
        for other in excludes.get(ai, ()):
            if other in fields and ai < other:
                errors.append(Finding("gs1_ai_excludes", f"({ai}) and ({other}) must not be in the same code"))


def from_hri(text: str) -> str:
    """``(01)…(10)…(21)…`` → the element string, GS after every field that needs one."""
    parts = re.findall(r"\((\d{2,4})\)([^(]*)", text)
    out = ""
    for i, (ai, value) in enumerate(parts):
        out += ai + value
        known = _ai(ai)
        if i < len(parts) - 1 and (known is None or known.separator_required):
            out += GS
    return out


def parse_digital_link(uri: str, policy: CodePolicy, today: date) -> ParsedCode:
    """A GS1 Digital Link URI: its AIs are checked like an element string."""
    try:
        link = GS1DigitalLinkURI.parse(uri)
    except ParseError as exc:
        return ParsedCode(uri, "GS1 Digital Link", {}, (Finding("gs1_syntax", f"not a GS1 Digital Link URI: {exc}"),))
    data = GS.join(e.ai.ai + e.value for e in link.element_strings)
    parsed = parse_element_string(data, policy, today, issuer="GS1 Digital Link")
    return replace(parsed, input=uri)


def digital_link(fields: dict[str, str]) -> str | None:
    """The canonical GS1 Digital Link URI (id.gs1.org) of a code's AIs; None when they make no
    valid one (no primary key such as a GTIN, or a value biip refuses)."""
    try:
        message = GS1Message.parse(from_hri("".join(f"({ai}){value}" for ai, value in fields.items())), config=_BIIP)
        return GS1DigitalLinkURI.from_element_strings(message.element_strings).as_canonical_uri()
    except (ParseError, EncodeError, ValueError):
        return None
