"""Content rules: is the decoded code a well-formed GS1 UDI for the production order?

This is the minimal rule set: GS1 element-string syntax (AI table and value checks from biip),
GTIN check digit, dates, separators, required AIs, and the order's GTIN, lot and expiry. Serial
uniqueness is kept by :class:`SerialRegistry`. The full rule set (MA, HIBC, UDID product master,
persistent serials) builds on the same :class:`Content` result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from biip import ParseConfig, ParseError
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_element_strings import GS1ElementString

from vision.symbol import GS

from .config import JobSection

_BIIP = ParseConfig(separator_chars=[GS])
_DATE_AIS = {"11", "12", "13", "15", "16", "17"}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str  # a reason code from gateway.reasons
    message: str  # the specific fault, for the operator


@dataclass(frozen=True, slots=True)
class Content:
    issuer: str  # "GS1" or "unknown"
    fields: dict[str, str]  # AI → value as encoded, in code order
    findings: tuple[Finding, ...]
    expiry: date | None = None
    # AIs whose value is untrustworthy (a swallowed separator, a bad check digit): the order's
    # rules are not applied to them, their own finding says what is wrong.
    suspect: frozenset[str] = field(default_factory=frozenset)

    @property
    def hri(self) -> str:
        """Human-readable interpretation, ``(01)…(17)…(10)…(21)…``."""
        return "".join(f"({ai}){value}" for ai, value in self.fields.items())

    @property
    def gtin(self) -> str | None:
        return self.fields.get("01")

    @property
    def serial(self) -> str | None:
        return None if "21" in self.suspect else self.fields.get("21")


def check_content(data: str, symbology_identifier: str, job: JobSection, today: date) -> Content:
    """Check the message ``data`` (GS as separator, no symbology identifier) of one code."""
    if symbology_identifier not in ("]d2", "]d8"):
        return Content(
            "unknown",
            {},
            (Finding("not_gs1", f"symbology identifier {symbology_identifier}: not a GS1 DataMatrix"),),
        )
    fields, dates, findings, suspect, complete = _parse_element_string(data)
    # When parsing stopped early, what follows is unknown: its finding stands alone.
    for ai in job.required_ais if complete else ():
        if ai in fields:
            continue
        swallowed_by = next(
            (other for other, value in fields.items() if ai in value and _separator_required(other)), None
        )
        if swallowed_by is not None:
            suspect.add(swallowed_by)
            findings.append(
                Finding(
                    "gs1_missing_separator",
                    f"({swallowed_by}) {fields[swallowed_by]!r} contains ({ai}): "
                    f"the GS separator before ({ai}) is missing",
                )
            )
        else:
            findings.append(Finding("gs1_missing_ai", f"required ({ai}) is missing"))

    expiry = dates.get("17")
    if "01" in fields and "01" not in suspect and job.gtin and fields["01"] != job.gtin:
        findings.append(Finding("wrong_di", f"GTIN {fields['01']}, the order is for {job.gtin}"))
    if "10" in fields and "10" not in suspect and job.lot and fields["10"] != job.lot:
        findings.append(Finding("wrong_lot", f"lot {fields['10']!r}, the order is lot {job.lot!r}"))
    if expiry is not None and expiry < today:
        findings.append(Finding("expired", f"expiry {expiry.isoformat()} has passed"))
    elif expiry is not None and job.expiry and expiry != job.expiry:
        findings.append(
            Finding("wrong_expiry", f"expiry {expiry.isoformat()}, the order says {job.expiry.isoformat()}")
        )
    return Content("GS1", fields, tuple(findings), expiry, frozenset(suspect))


def _separator_required(ai: str) -> bool:
    return GS1ApplicationIdentifier.extract(ai).separator_required


def _parse_element_string(data: str):
    """Split a GS1 element string into its fields, noting every syntax fault on the way.
    ``complete`` is False when a fault stopped the parse before the end."""
    fields: dict[str, str] = {}
    dates: dict[str, date] = {}
    findings: list[Finding] = []
    suspect: set[str] = set()
    rest = data
    while rest:
        if rest[0] == GS:
            rest = rest[1:]
            continue
        try:
            element = GS1ElementString.extract(rest, config=_BIIP)
        except ParseError as exc:
            code = "date_invalid" if rest[:2] in _DATE_AIS else "gs1_syntax"
            findings.append(Finding(code, f"{exc} (at {rest[:24]!r})"))
            return fields, dates, findings, suspect, False
        ai = element.ai.ai
        if ai in fields:
            findings.append(Finding("gs1_syntax", f"({ai}) appears twice"))
        fields[ai] = element.value
        if element.date is not None:
            dates[ai] = element.date
        if element.gtin_error:
            suspect.add(ai)
            findings.append(Finding("gs1_check_digit", element.gtin_error))
        rest = rest[len(ai) + len(element.value) :]
        if rest and element.ai.separator_required and rest[0] != GS:
            # The field ran to its maximum length and more data follows without a separator:
            # where the next field starts is unknowable, so parsing stops here.
            suspect.add(ai)
            findings.append(
                Finding("gs1_missing_separator", f"({ai}) {element.value!r} is not followed by a GS separator")
            )
            return fields, dates, findings, suspect, False
    return fields, dates, findings, suspect, True


class SerialRegistry:
    """GTIN + serial of every verified item in this run: a second one is a duplicate.

    In memory for now; the persistent, line-wide registry replaces it with the same interface.
    """

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def add(self, key: tuple[str, str]) -> None:
        self._seen.add(key)
