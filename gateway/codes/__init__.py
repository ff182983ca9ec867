"""What a decoded code says, whoever issued it: GS1 element strings and Digital Link URIs, MA
(IDcode), HIBC, ISBT 128 and AHM (a configured pattern).

:func:`parse` detects the issuer (symbology identifier first, then the content) and hands the
text to that issuer's strict parser. Every parser returns the same immutable
:class:`ParsedCode`: the elements as encoded, the UDI-DI and the production identifiers (lot,
serial, production date, expiry) normalised across issuers, and every problem as a
:class:`~gateway.rules.Finding` with a stable reason code (gateway/reasons.py) and a message a
line operator understands. Problems that make a field untrustworthy put it in ``suspect``: the
production-order and product-master rules leave such fields alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from ..reasons import Finding

GS = "\x1d"


@dataclass(frozen=True)
class CodePolicy:
    """How strict the parsers are; from the line's ``[content]`` configuration."""

    day_zero: Literal["accept", "warn", "reject"] = "warn"  # GS1 dates with day 00 (GSCN 21-040)
    ma_check: Literal["ignore", "warn", "reject"] = "warn"  # the MA check character is unconfirmed
    ahm_pattern: str = ""  # regular expression with named groups di, lot, serial, production, expiry
    required_ais: tuple[str, ...] = ()  # GS1 AIs every code must carry


@dataclass(frozen=True)
class ParsedCode:
    input: str
    issuer: str  # "GS1", "GS1 Digital Link", "MA", "HIBC", "ISBT 128", "AHM" or "unknown"
    fields: dict[str, str]  # element → value as encoded, in code order (GS1: AI; MA: unit letter …)
    errors: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    di: str | None = None  # the UDI-DI (GTIN, MA DI, HIBC LIC + product + unit of measure …)
    lot: str | None = None
    serial: str | None = None
    production: date | None = None
    expiry: date | None = None
    # elements whose value cannot be trusted (swallowed separator, bad check digit)
    suspect: frozenset[str] = field(default_factory=frozenset)

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def agency(self) -> str:
        """The issuing agency: "GS1" for element strings and Digital Link URIs alike."""
        return "GS1" if self.issuer.startswith("GS1") else self.issuer

    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "valid": self.valid,
            "issuer": self.issuer,
            "di": self.di,
            "fields": dict(self.fields),
            "pi": {
                "lot": self.lot,
                "serial": self.serial,
                "production_date": self.production.isoformat() if self.production else None,
                "expiry": self.expiry.isoformat() if self.expiry else None,
            },
            "errors": [{"code": f.code, "message": f.message} for f in self.errors],
            "warnings": [{"code": f.code, "message": f.message} for f in self.warnings],
        }


def parse_date(value: str) -> date | None:
    """A YYMMDD (20YY) or YYYYMMDD date, as MA, HIBC and AHM codes print them; None when invalid."""
    try:
        if len(value) == 6 and value.isdigit():
            return date(2000 + int(value[:2]), int(value[2:4]), int(value[4:6]))
        if len(value) == 8 and value.isdigit():
            return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None
    return None


GS1_IDENTIFIERS = ("]d2", "]C1", "]Q3", "]e0", "]J1")


def parse(data: str, symbology_identifier: str = "", policy: CodePolicy | None = None, today: date | None = None):
    """Parse one decoded code (GS as the real character; ``symbology_identifier`` as the reader
    transmitted it, e.g. ``]d2``; empty when unknown)."""
    from . import ahm, gs1, hibc, isbt, ma  # the parsers import this module's types

    policy = policy or CodePolicy()
    today = today or date.today()
    if symbology_identifier in GS1_IDENTIFIERS:
        return gs1.parse_element_string(data, policy, today)
    if symbology_identifier and re.match(r"^0[12]\d{14}", data):
        message = f"symbology identifier {symbology_identifier}: GS1 data printed without FNC1 first, not GS1"
        return ParsedCode(data, "unknown", {}, (Finding("not_gs1", message),))
    if policy.ahm_pattern and re.fullmatch(policy.ahm_pattern, data):
        return ahm.parse_ahm(data, policy, today)
    if not symbology_identifier and re.match(r"^\d{2}", data):  # typed or transmitted without identifier
        return gs1.parse_element_string(data, policy, today)
    if not symbology_identifier and re.match(r"^\(\d{2,4}\)", data):  # the HRI form, (01)…(10)…
        return gs1.parse_element_string(gs1.from_hri(data), policy, today)
    if re.match(r"https?://", data, re.IGNORECASE):
        return gs1.parse_digital_link(data, policy, today)
    if data.startswith("MA."):
        return ma.parse_ma(data, policy, today)
    if data.startswith("+"):
        return hibc.parse_hibc(data, today)
    if data[:1] in ("=", "&"):
        return isbt.parse_isbt(data)
    if policy.ahm_pattern:
        return ahm.parse_ahm(data, policy, today)
    return ParsedCode(
        data,
        "unknown",
        {},
        (Finding("unknown_issuer", "not a GS1, MA, HIBC or ISBT 128 code, and no AHM pattern is configured"),),
    )


def split_input(text: str) -> tuple[str, str]:
    """Command-line input → (symbology identifier, data): a leading ``]d2``-style identifier is
    split off; GS may be written as the real character, ``\\x1d``, ``<GS>`` or ``{GS}``."""
    data = text.replace("\\x1d", GS).replace("\\x1D", GS).replace("<GS>", GS).replace("{GS}", GS)
    if re.match(r"^\][A-Za-z][0-9A-Za-z]", data):
        return data[:3], data[3:]
    return "", data
