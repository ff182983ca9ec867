"""The item record: one JSON document per decided item, published to the MES and kept in the
reject log. Its shape is versioned by ``schema``; fields are only ever added within a version.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

from .codes.gs1 import digital_link
from .pipeline import Verdict
from .reasons import REASONS, result_code

SCHEMA = "udigate.item/1"


@dataclass(frozen=True, slots=True)
class LineContext:
    site: str
    line: str
    run_id: str  # unique per gateway start: record ids stay unique across restarts

    @staticmethod
    def new_run_id() -> str:
        return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def item_record(verdict: Verdict, context: LineContext) -> dict:
    """The record of one verdict (JSON-ready)."""
    symbol, content, grade = verdict.symbol, verdict.content, verdict.grade
    record = {
        "schema": SCHEMA,
        "record_id": f"{context.run_id}/{verdict.item_id}",  # idempotency key for consumers
        "site": context.site,
        "line": context.line,
        "job": verdict.job_id,
        "run_id": context.run_id,
        "item_id": verdict.item_id,
        "timestamp": _iso(verdict.frame.timestamp),  # capture
        "decided_at": _iso(datetime.now(UTC)),
        "verdict": "pass" if verdict.passed else "reject",
        "result_code": int(result_code(verdict.reasons)),
        "reasons": [{"code": f.code, "text": REASONS[f.code].text, "detail": f.message} for f in verdict.findings],
        "source": verdict.frame.origin,
        "latency_ms": verdict.timings_ms["total"],
    }
    if symbol is not None:
        record.update(
            decoder=symbol.decoder,
            symbology_identifier=symbol.symbology_identifier,
            data=symbol.text,  # GS separators kept (JSON escapes them as \u001d)
            data_b64=base64.b64encode(symbol.data).decode("ascii"),
            symbol_size=f"{symbol.rows}x{symbol.cols}",
        )
    if content is not None:
        record.update(issuer=content.issuer, hri=content.hri, fields=content.fields, di=content.di)
        record["pi"] = {
            "lot": content.lot,
            "serial": content.serial,
            "production_date": content.production.isoformat() if content.production else None,
            "expiry": content.expiry.isoformat() if content.expiry else None,
        }
        if content.expiry is not None:
            record["expiry"] = content.expiry.isoformat()  # schema 1.0 had only this one
        link = digital_link(content.fields) if content.issuer.startswith("GS1") and not content.suspect else None
        if link is not None:
            record["digital_link"] = link
    if grade is not None:
        record["grade"] = grade.to_dict()
    product = verdict.product
    if product is not None:  # the two-code mapping: UDI-DI with the medical insurance code
        record["insurance_code"] = product.ybbm
        record["product"] = {
            "name": product.name,
            "model": product.model,
            "ybbm": product.ybbm,
            "package_level": product.package_level,
            "units_per_package": product.units_per_package,
            "registration": product.registration,
        }
    return record


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
