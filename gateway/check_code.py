"""``udigate check-code``: parse and check UDI texts without a camera, one result per text."""

from __future__ import annotations

import json
import tomllib
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from .codes import split_input
from .config import ConfigError, ContentSection, JobSection, _describe
from .rules import check_content


def load_job(path: Path) -> JobSection:
    """A production order from a TOML file: its ``[job]`` table (a line configuration) or, without
    one, the file's top level."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the job: {exc}"]) from None
    table = raw.get("job", raw)
    try:
        return JobSection.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(str(path), [f"job.{_describe(e)}" for e in exc.errors()]) from None


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
