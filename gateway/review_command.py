"""``udigate rejects list|show|export`` and ``udigate user hash``: the review store from a shell,
with the line running or not (SQLite WAL: reading never blocks the line's writer)."""

from __future__ import annotations

import argparse
import getpass
import json
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vision.report import grade_letter

from . import exports
from .config import load_config
from .reasons import REASONS
from .review import Filters, ReviewError, ReviewIndex, normalise_time

MIN_PASSWORD = 8


def rejects_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    data_dir = config.line.data_dir
    if not (data_dir / "udigate.db").exists():  # reading must not create an empty store
        print(f"udigate rejects: no review store in {data_dir} (the line has not stored any item yet)", file=sys.stderr)
        return 1
    try:
        index = ReviewIndex(data_dir)
    except (RuntimeError, sqlite3.Error) as exc:  # written by a newer udigate, not a database …
        print(f"udigate rejects: cannot read the review store {data_dir / 'udigate.db'}: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "show":
            return _show(index, args.id, args.json)
        filters = _filters(args)
        if args.action == "list":
            return _list(index, filters, args.limit, args.json)
        return _export(index, filters, config, args.format, args.output)
    except ReviewError as exc:
        print(f"udigate rejects {args.action}: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # locked longer than the timeout, damaged …
        print(f"udigate rejects {args.action}: cannot read the review store: {exc}", file=sys.stderr)
        return 1
    finally:
        index.close()


def _filters(args: argparse.Namespace) -> Filters:
    verdict = None if args.all else "reject"
    if getattr(args, "passes", False):
        verdict = "pass"
    return Filters(
        # normalised here so that a bad time names the option the user typed
        since=normalise_time(args.since, "--since") if args.since else None,
        until=normalise_time(args.until, "--until") if args.until else None,
        job=args.job,
        verdict=verdict,
        reason=getattr(args, "reason", None),
        max_grade=getattr(args, "max_grade", None),
        disposition="open" if getattr(args, "open", False) else None,
    )


def _list(index: ReviewIndex, filters: Filters, limit: int, as_json: bool) -> int:
    page = index.search(filters, limit=max(1, limit))
    if as_json:
        for item in page.items:
            print(json.dumps(asdict(item), ensure_ascii=False))
        return 0
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)  # piped: no wrapped cells
    table = Table(title_justify="left")
    for column in ("id", "time", "item", "job", "reasons", "grade", "disposition"):
        table.add_column(column, justify="right" if column in ("id", "item") else "left")
    for item in page.items:
        disposition = item.disposition.label if item.disposition else ("open" if item.verdict == "reject" else "")
        table.add_row(
            str(item.id),
            exports.local_time(item.timestamp),
            str(item.item_id),
            item.job or "–",
            ", ".join(item.reasons) or "pass",
            item.quality or "–",
            disposition,
        )
    console.print(table)
    console.print(f"{len(page.items)} of {page.total} matching, newest first")
    return 0


def _show(index: ReviewIndex, item_id: int, as_json: bool) -> int:
    detail = index.get(item_id)
    if detail is None:
        print(f"udigate rejects show: no item {item_id} in {index.data_dir / 'udigate.db'}", file=sys.stderr)
        return 1
    item, record = detail.item, detail.record or {}
    files = {kind: str((index.data_dir / path).resolve()) for kind, path in item.files.items()}
    if as_json:
        shown = {
            **asdict(item),
            "files": files,
            "record": detail.record,
            "history": [asdict(d) for d in detail.history],
        }
        print(json.dumps(shown, ensure_ascii=False, indent=1))
        return 0
    console = Console(soft_wrap=True, highlight=False, markup=False)  # stored text shown as it is, [ ] included
    console.print(f"item {item.item_id} ({item.verdict}), store id {item.id}, record {item.record_id}", style="bold")
    console.print(
        f"  captured {exports.local_time(item.timestamp, milliseconds=True)}"
        f", decided {exports.local_time(item.decided_at, milliseconds=True) or '–'}"
        f", line {item.site}/{item.line}, job {item.job or '–'}, run {item.run_id}"
    )
    if detail.record_problem:
        console.print(f"  {detail.record_problem}", style="red")
    for reason in record.get("reasons") or [{"code": c, "text": "", "detail": ""} for c in item.reasons]:
        known = REASONS.get(reason["code"])
        text = reason["text"] or (known.text if known else "")
        console.print(f"  reason {reason['code']}: {text}" + (f": {reason['detail']}" if reason["detail"] else ""))
    grade = record.get("grade")
    if grade:
        overall = grade.get("overall")
        console.print(
            f"  grade {grade_letter(overall) + ' ' if overall is not None else ''}{grade['quality']}"
            f" ({grade.get('method') or 'method unknown'}{f', weakest {item.weakest}' if item.weakest else ''})"
            + (f", not graded: {grade['refused']}" if grade.get("refused") else "")
        )
        for name, p in grade["parameters"].items():
            console.print(f"    {name:<7} {p['value']:>9.3g}  grade {grade_letter(p['grade'])} {p['grade']:.1f}")
        if grade.get("damaged_codewords"):
            console.print(f"    damaged codewords: {', '.join(map(str, grade['damaged_codewords']))}")
        for warning in grade.get("warnings") or ():
            console.print(f"    warning: {warning}")
    console.print(f"  data {item.hri or '(not read)'}")
    if record.get("hri"):
        console.print(f"  HRI  {record['hri']}")
    for key, value in (record.get("fields") or {}).items():
        console.print(f"    {key:<5} {value}")
    if record.get("di"):
        console.print(f"  DI   {record['di']}" + "".join(f", {k} {v}" for k, v in (record.get("pi") or {}).items()))
    for kind, path in files.items():
        console.print(f"  {kind:<8} {path}")
    for d in detail.history:
        console.print(
            f"  disposition {d.label} by {d.user}, {exports.local_time(d.at)}" + (f": {d.comment}" if d.comment else "")
        )
    if not detail.history and item.verdict == "reject":
        console.print("  disposition: open")
    return 0


def _export(index: ReviewIndex, filters: Filters, config, fmt: str, output: Path) -> int:
    totals = index.totals(filters)
    temporary = output.with_name(output.name + ".part")  # a failed export leaves no half file under the name
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            with open(temporary, "wb") as f:
                for chunk in exports.csv_chunks(index, filters, index.data_dir):
                    f.write(chunk)
        else:
            charts = exports.report_charts(index, config, filters)
            by = f"{getpass.getuser()} (udigate rejects export)"
            # pictures straight from the store (the file opens on this machine; the PDF embeds them)
            root = index.data_dir.resolve().as_uri() + "/"
            html = exports.report_html(index, filters, config, charts, by, image_root=root)
            if fmt == "html":
                temporary.write_text(html, encoding="utf-8")
            else:
                temporary.write_bytes(exports.report_pdf(html, index.data_dir))
        temporary.replace(output)
    except (OSError, exports.ExportError) as exc:
        if temporary.is_file():
            temporary.unlink()
        print(f"udigate rejects export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {totals.items} items to {output}")
    return 0


def hash_command(from_stdin: bool) -> int:
    from .web.auth import hash_password

    try:
        if from_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                print("udigate user hash: the two passwords differ", file=sys.stderr)
                return 2
    except EOFError:
        password = ""
    if len(password) < MIN_PASSWORD:
        print(f"udigate user hash: a password of at least {MIN_PASSWORD} characters, please", file=sys.stderr)
        return 2
    hashed = hash_password(password)
    print(hashed)
    print(
        "for the line configuration (in a web.users_file: [[users]]):\n"
        f'[[web.users]]\nname = "…"\npassword_hash = "{hashed}"\nrole = "engineer"  # or "admin"',
        file=sys.stderr,
    )
    return 0
