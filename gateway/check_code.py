"""``udigate check-code``: parse and check UDI texts without a camera, one result per text."""

from __future__ import annotations

import json
from datetime import date

from .codes import split_input
from .config import ContentSection, JobSection
from .rules import check_content


def check_codes(texts: list[str], job: JobSection | None, content: ContentSection, as_json: bool) -> int:
    """Print one result per text; 0 when every code is valid, 1 otherwise."""
    status = 0
    order = job or JobSection(required_ais=())
    for text in texts:
        identifier, data = split_input(text)
        result = check_content(data, identifier, order, date.today(), content)
        errors = [{"code": f.code, "message": f.message} for f in result.findings]
        warnings = [{"code": f.code, "message": f.message} for f in result.warnings]
        status = status or int(bool(errors))
        if as_json:
            line = {
                "input": text,
                "valid": not errors,
                "issuer": result.issuer,
                "di": result.di,
                "fields": result.fields,
                "errors": errors,
                "warnings": warnings,
            }
            print(json.dumps(line, ensure_ascii=False), flush=True)
            continue
        print(f"{text}: {'valid' if not errors else 'INVALID'} {result.issuer} code")
        for name, value in result.fields.items():
            print(f"  {name:>4}  {value}")
        for finding in errors:
            print(f"  error   {finding['code']}: {finding['message']}")
        for finding in warnings:
            print(f"  warning {finding['code']}: {finding['message']}")
    return status
