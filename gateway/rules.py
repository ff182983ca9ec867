"""Content rules: is the decoded code a well-formed UDI for the production order?

The code is parsed by its issuer's strict parser (:mod:`gateway.codes`); the production order
(job) then checks the DI, lot and dates. Fields a syntax fault makes untrustworthy (a lot that
swallowed the serial, a GTIN with a bad check digit) are not compared with the order: the item
gets the syntax reason, not a misleading ``wrong_lot`` as well. Serial uniqueness is kept by
:class:`gateway.serials.SerialStore`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from .codes import CodePolicy, ParsedCode, parse
from .config import ContentSection, JobSection
from .reasons import Finding
from .udid import Product


@dataclass(frozen=True, slots=True)
class Content:
    issuer: str  # "GS1", "GS1 Digital Link", "MA", "HIBC", "ISBT 128", "AHM" or "unknown"
    fields: dict[str, str]  # element → value as encoded, in code order
    findings: tuple[Finding, ...]
    expiry: date | None = None
    suspect: frozenset[str] = field(default_factory=frozenset)
    di: str | None = None
    serial: str | None = None
    warnings: tuple[Finding, ...] = ()
    text: str = ""
    lot: str | None = None
    production: date | None = None

    @property
    def hri(self) -> str:
        """Human-readable interpretation: ``(01)…(17)…(10)…(21)…`` for GS1, the text otherwise."""
        if self.issuer.startswith("GS1"):
            return "".join(f"({ai}){value}" for ai, value in self.fields.items())
        return self.text

    @property
    def gtin(self) -> str | None:
        """The UDI-DI (a GTIN for GS1 codes); kept under this name for the MES records."""
        return self.di


def code_policy(content: ContentSection, job: JobSection) -> CodePolicy:
    return CodePolicy(content.day_zero, content.ma_check, content.ahm_pattern, tuple(job.required_ais))


def check_content(
    data: str, symbology_identifier: str, job: JobSection, today: date, content: ContentSection | None = None
) -> Content:
    """Check the message ``data`` (GS as separator, no symbology identifier) of one code."""
    content = content or ContentSection()
    code = parse(data, symbology_identifier, code_policy(content, job), today)
    findings = list(code.errors)
    if code.issuer != "unknown" and code.agency not in content.issuers:
        message = f"{code.issuer} code; this line prints {', '.join(content.issuers)}"
        findings.insert(0, Finding("issuer_not_allowed", message))
    findings += job_findings(code, job, today)
    return Content(
        code.issuer,
        code.fields,
        tuple(findings),
        code.expiry,
        code.suspect,
        code.di,
        code.serial,
        code.warnings,
        data,
        code.lot,
        code.production,
    )


def job_findings(code: ParsedCode, job: JobSection, today: date) -> list[Finding]:
    """What the production order says about a parsed code (untrustworthy fields are left out by
    the parser: their own finding says what is wrong)."""
    findings = []
    expected_di = job.gtin if code.agency == "GS1" else job.di
    if code.di is not None and expected_di and code.di != expected_di:
        findings.append(Finding("wrong_di", f"DI {code.di}, the order is for {expected_di}"))
    if code.lot is not None and job.lot and code.lot != job.lot:
        findings.append(Finding("wrong_lot", f"lot {code.lot!r}, the order is lot {job.lot!r}"))
    made = code.production
    if made is not None and job.production_date and made != job.production_date:
        message = f"production date {made.isoformat()}, the order says {job.production_date.isoformat()}"
        findings.append(Finding("wrong_production_date", message))
    elif made is not None and (
        made > today or (job.max_production_age_days is not None and (today - made).days > job.max_production_age_days)
    ):
        window = "in the future" if made > today else f"more than {job.max_production_age_days} days ago"
        findings.append(Finding("production_date_window", f"production date {made.isoformat()} is {window}"))
    if code.expiry is not None and code.expiry < today:
        findings.append(Finding("expired", f"expiry {code.expiry.isoformat()} has passed"))
    elif code.expiry is not None and job.expiry and code.expiry != job.expiry:
        message = f"expiry {code.expiry.isoformat()}, the order says {job.expiry.isoformat()}"
        findings.append(Finding("wrong_expiry", message))
    elif code.expiry is not None and job.min_shelf_life_days is not None:
        left = (code.expiry - today).days
        if left < job.min_shelf_life_days:
            message = f"expiry {code.expiry.isoformat()}: {left} days left, the order needs {job.min_shelf_life_days}"
            findings.append(Finding("short_shelf_life", message))
    if code.serial is not None and job.serial_pattern and re.fullmatch(job.serial_pattern, code.serial) is None:
        message = f"serial {code.serial!r} does not match the order's pattern {job.serial_pattern!r}"
        findings.append(Finding("serial_pattern", message))
    return findings


def product_findings(content: Content, product: Product | None, package_level: str, today: date) -> list[Finding]:
    """What the product master says: the DI is registered and on the market, the code carries
    the production identifiers the registration declares (and no others), and it is the
    package level this line packs."""
    if content.di is None or content.di in content.suspect:
        return []
    if product is None:
        return [Finding("udid_unknown_di", f"DI {content.di} is not in the imported UDID")]
    findings = []
    if product.is_withdrawn(today):
        findings.append(Finding("udid_withdrawn", f"DI {content.di} withdrawn on {product.withdrawn.isoformat()}"))
    declared = {
        "lot": (product.pi_lot, content.lot),
        "serial": (product.pi_serial, content.serial),
        "production date": (product.pi_production_date, content.production),
        "expiry": (product.pi_expiry, content.expiry),
    }
    missing = [name for name, (wanted, present) in declared.items() if wanted and present is None]
    extra = [name for name, (wanted, present) in declared.items() if not wanted and present is not None]
    if missing or extra:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"not registered: {', '.join(extra)}"] if extra else []
        findings.append(Finding("udid_pi_mismatch", f"the UDID registration of {content.di}: {'; '.join(parts)}"))
    if package_level and product.package_level != package_level:
        message = f"DI {content.di} is the {product.package_level} level; this line packs {package_level}"
        findings.append(Finding("udid_wrong_level", message))
    return findings
