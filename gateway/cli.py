"""The ``udigate`` command."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import systemd
from .config import (
    ISSUERS,
    Config,
    ConfigError,
    ContentSection,
    demo_config_text,
    dump_config,
    load_config,
    override,
    parse_config,
)

if TYPE_CHECKING:
    from .app import Gateway, Summary
    from .stats import Snapshot

log = logging.getLogger("udigate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="udigate", description="UDI Data Matrix inspection gateway for packaging lines"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a simulated line with broker, PLC simulator and live status")
    demo.add_argument(
        "--duration", type=_positive, metavar="SECONDS", help="stop after this time (default: until Ctrl-C)"
    )
    demo.add_argument(
        "--rate", type=_positive, metavar="PPM", help="items per minute (default: 300 = a belt at 250 mm/s)"
    )
    demo.add_argument("--config", type=Path, metavar="FILE", help="run this configuration instead of the built-in demo")
    demo.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="where the reject log goes (default: ./udigate-demo)"
    )

    run = commands.add_parser("run", help="run a configured line until stopped (SIGINT/SIGTERM drain and stop)")
    run.add_argument("--config", type=Path, required=True, metavar="FILE")
    run.add_argument("--duration", type=_positive, metavar="SECONDS", help="stop after this time")

    check = commands.add_parser("check-config", help="validate a configuration file and print it resolved")
    check.add_argument("file", type=Path, metavar="FILE")

    read = commands.add_parser("read", help="decode the Data Matrix symbols in image files")
    read.add_argument("--json", action="store_true", help="one JSON line per image")
    read.add_argument("--decoder", choices=("udigate", "zxing", "libdmtx"), default="udigate")
    read.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="search only this region of each image")
    read.add_argument("images", type=Path, nargs="+", metavar="IMAGE")

    grade = commands.add_parser("grade", help="grade the print quality of the Data Matrix symbols in image files")
    grade.add_argument("--json", action="store_true", help="one JSON line per image")
    grade.add_argument("--method", choices=("2011", "2024", "dpm"), help="ISO/IEC 15415 edition or TR 29158 (dpm)")
    grade.add_argument("--aperture", type=_positive, metavar="MIL", help="synthetic aperture (default 8)")
    grade.add_argument("--report", type=Path, metavar="DIR", help="also write a report picture per symbol here")
    grade.add_argument(
        "--config", type=Path, metavar="FILE", help="take the [grading] settings and the calibration from this line"
    )
    grade.add_argument("images", type=Path, nargs="+", metavar="IMAGE")

    calibrate = commands.add_parser(
        "calibrate", help="measure a reflectance calibration card and store the calibration for grading"
    )
    calibrate.add_argument("--card-rmax", type=_reflectance, required=True, metavar="R", help="light patch, %%")
    calibrate.add_argument("--card-rmin", type=_reflectance, required=True, metavar="R", help="dark patch, %%")
    calibrate.add_argument("--config", type=Path, metavar="FILE", help="store where this line's grading reads it")
    calibrate.add_argument("--output", type=Path, metavar="FILE", help="store here instead")
    calibrate.add_argument("image", type=Path, metavar="IMAGE")

    check_code = commands.add_parser(
        "check-code", help="parse and check UDI texts (GS1, Digital Link, MA, HIBC, ISBT 128, AHM)"
    )
    check_code.add_argument("--json", action="store_true", help="one JSON line per text")
    check_code.add_argument("--job", type=Path, metavar="FILE", help="also check against this production order")
    check_code.add_argument(
        "--config", type=Path, metavar="FILE", help="use this line's [content] policy (and its [job] without --job)"
    )
    check_code.add_argument(
        "data", nargs="+", metavar="DATA", help="code text, optionally starting with ]d2; GS as \\x1d or <GS>"
    )

    job = commands.add_parser("job", help="start, stop or show the production order of a line (running or not)")
    actions = job.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("start", "start an order"), ("stop", "stop the order"), ("show", "show the order")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--config", type=Path, required=True, metavar="FILE", help="the line's configuration")
        if action == "start":
            sub.add_argument("file", type=Path, metavar="JOB_FILE", help="a TOML file with a [job] table")

    udid = commands.add_parser("udid", help="the product master: import national UDI database downloads")
    udid_actions = udid.add_subparsers(dest="action", required=True, metavar="ACTION")
    udid_import = udid_actions.add_parser("import", help="import full and incremental releases (ZIP or XML), in order")
    udid_import.add_argument("--config", type=Path, metavar="FILE", help="the line whose database to fill")
    udid_import.add_argument("--db", type=Path, metavar="FILE", help="this SQLite file instead")
    udid_import.add_argument("paths", type=Path, nargs="+", metavar="PATH")

    rejects = commands.add_parser("rejects", help="the review store: list, show and export rejects")
    rejects_actions = rejects.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = rejects_actions.add_parser("list", help="the newest stored items matching the filters")
    show = rejects_actions.add_parser("show", help="one stored item in full")
    export = rejects_actions.add_parser("export", help="a time range or production order to CSV, HTML or PDF")
    for sub in (listing, show, export):
        sub.add_argument("--config", type=Path, required=True, metavar="FILE", help="the line's configuration")
    for sub in (listing, export):
        sub.add_argument("--since", metavar="TIME", help="from this time (2026-11-23 or 2026-11-23T08:00, local)")
        sub.add_argument("--until", metavar="TIME", help="before this time")
        sub.add_argument("--job", metavar="ID", help='this production order ("" = none active)')
        sub.add_argument("--all", action="store_true", help="rejects and the kept passes")
    listing.add_argument("--reason", metavar="CODE", help="with this reason among its reasons")
    listing.add_argument("--max-grade", type=_number, metavar="GRADE", help="overall grade at most this")
    listing.add_argument("--passes", action="store_true", help="only the kept passes")
    listing.add_argument("--open", action="store_true", help="only rejects without a disposition")
    listing.add_argument("--limit", type=int, default=50, metavar="N")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show.add_argument("id", type=int, metavar="ID", help="the item's number in the store (first column of list)")
    show.add_argument("--json", action="store_true")
    export.add_argument("--format", choices=("csv", "html", "pdf"), required=True)
    export.add_argument("--output", type=Path, required=True, metavar="FILE")

    user = commands.add_parser("user", help="review UI users: make a password hash for [[web.users]]")
    user_actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    hashing = user_actions.add_parser("hash", help="print the argon2id hash of a password")
    hashing.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    args = parser.parse_args(argv)
    try:
        if args.command == "rejects":
            from .review_command import rejects_command

            return rejects_command(args)
        if args.command == "user":
            from .review_command import hash_command

            return hash_command(args.password_stdin)
        if args.command == "udid":
            return _udid_import(args)
        if args.command == "job":
            return _job_command(args)
        if args.command == "check-code":
            from .check_code import check_codes
            from .jobs import load_job

            line = load_config(args.config) if args.config else None
            job = load_job(args.job) if args.job else (line.job if line else None)
            # without a line, any issuing agency is accepted
            policy = line.content if line else ContentSection(issuers=ISSUERS)
            return check_codes(args.data, job, policy, args.json)
        if args.command in ("grade", "calibrate"):
            return _grading_command(args)
        if args.command == "check-config":
            print(dump_config(load_config(args.file)), end="")
            return 0
        if args.command == "read":
            from .read import read_images  # vision imports only for this command

            return read_images(args.images, args.decoder, args.roi, args.json)
        if args.command == "demo":
            config = load_config(args.config) if args.config else parse_config(demo_config_text(), "demo.toml")
            changes = {}
            if args.rate:
                changes["source.simulator.rate_ppm"] = args.rate
                # with PLC triggers the simulated belt sets the pace: its speed over the mean spacing
                changes["plc.simulator.speed_mm_s"] = args.rate / 60 * sum(config.plc.simulator.pitch_mm) / 2
            if args.data_dir:
                changes["line.data_dir"] = str(args.data_dir)
            return _run_line(override(config, **changes) if changes else config, args.duration, live=True)
        return _run_line(load_config(args.config), args.duration, live=False)
    except ConfigError as exc:
        print(f"udigate: configuration {exc.source} is not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _udid_import(args: argparse.Namespace) -> int:
    from .udid import UdidImportError, import_releases

    db = args.db or (load_config(args.config) if args.config else Config()).line.data_dir / "udigate.db"
    last = [0.0]

    def progress(source: str, records: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2:
            last[0] = now
            print(f"  {source}: {records} records", file=sys.stderr, flush=True)

    try:
        report = import_releases(args.paths, db, progress)
    except (UdidImportError, OSError) as exc:
        print(f"udigate udid import: {exc}", file=sys.stderr)
        return 1
    print(
        f"imported {', '.join(report.files)} into {db}: {report.records} records, {report.devices_added} added, "
        f"{report.devices_changed} changed, {report.devices_deleted} deleted, {report.ignored} older versions "
        f"ignored, {report.skipped} skipped, in {report.seconds:.1f} s (peak {report.peak_rss_mb:.0f} MB)"
    )
    for problem in report.problems:
        print(f"  skipped: {problem}")
    return 0


def _job_command(args: argparse.Namespace) -> int:
    """Writes ``<data_dir>/job.json``; a running line picks it up within a second."""
    from .jobs import JOB_FILE, JobError, load_job, read_job_file, write_job_file

    config = load_config(args.config)
    path = config.line.data_dir / JOB_FILE
    order = load_job(args.file) if args.action == "start" else None  # a bad job file: exit 2, like a config
    try:
        if args.action == "start":
            write_job_file(path, order, by="cli")
        elif args.action == "stop":
            write_job_file(path, None, by="cli")
        exists, active = read_job_file(path)
    except (JobError, OSError) as exc:
        print(f"udigate job: {exc}", file=sys.stderr)
        return 1
    if not exists:
        active = config.job
    shown = active.model_dump(mode="json", exclude_none=True) if active is not None else None
    print(json.dumps({"active": shown, "source": str(path) if exists else str(args.config)}, ensure_ascii=False))
    return 0


def _grading_command(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else Config()
    from .grade_command import calibrate, grade_images  # vision imports only for these commands
    from .grading import CalibrationError, calibration_age_warning, grading_settings, load_calibration

    if args.command == "calibrate":
        if args.card_rmin >= args.card_rmax:
            print(
                f"udigate calibrate: --card-rmin {args.card_rmin:g} must be below --card-rmax {args.card_rmax:g}",
                file=sys.stderr,
            )
            return 2
        return calibrate(args.image, args.card_rmax, args.card_rmin, args.output or config.calibration_path())
    section = config.grading
    changes = {"method": args.method, "aperture_mil": args.aperture}
    section = section.model_copy(update={k: v for k, v in changes.items() if v is not None})
    try:
        calibration = load_calibration(config.calibration_path())
    except CalibrationError as exc:
        print(f"udigate grade: {exc}", file=sys.stderr)
        return 2
    warning = calibration_age_warning(calibration, section.calibration_max_age_days, date.today())
    if warning and calibration is not None:
        print(f"udigate grade: warning: {warning}", file=sys.stderr)
    return grade_images(args.images, grading_settings(section, calibration), args.json, args.report)


def _reflectance(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a reflectance in percent, 0 to 100")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _roi(text: str):
    from vision.symbol import Roi

    parts = text.split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y,W,H (four integers)") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: X and Y must be >= 0, W and H > 0")
    return Roi(x, y, w, h)


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _run_line(config: Config, duration: float | None, live: bool) -> int:
    from .app import Gateway  # heavy imports (OpenCV, numba, pymodbus) only when running a line

    console = Console(soft_wrap=True)
    logging.basicConfig(
        level=logging.WARNING if live else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    stop = threading.Event()

    def request_stop(signum, frame):
        if not stop.is_set():
            log.warning("%s: finishing the items in progress, then stopping", signal.Signals(signum).name)
            systemd.stopping()
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    try:
        gateway = Gateway(config)
        gateway.start()
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        print(f"udigate: cannot start the line: {exc}", file=sys.stderr)
        return 1
    systemd.ready()
    _print_endpoints(console, gateway)

    failures: list[Exception] = []

    def inspect_until_stopped() -> None:
        try:
            gateway.run(stop)
        except Exception as exc:  # reported, and the outputs still get closed and flushed
            log.exception("the line stopped on an internal error")
            failures.append(exc)

    pipeline = threading.Thread(target=inspect_until_stopped, name="pipeline")
    pipeline.start()
    watchdog = systemd.Watchdog(systemd.line_liveness(pipeline, gateway.registers, config.source.trigger))
    watchdog.start()
    deadline_timer = threading.Timer(duration, stop.set) if duration else None
    if deadline_timer:
        deadline_timer.daemon = True
        deadline_timer.start()
    if live and console.is_terminal:
        with Live(_status_table(gateway.stats.snapshot()), console=console, refresh_per_second=4) as view:
            while pipeline.is_alive():
                pipeline.join(0.25)
                view.update(_status_table(gateway.stats.snapshot()))
    else:
        prints_every = 1 if live else 12  # systemctl status shows the counters every 5 s, the log every minute
        for tick in itertools.count(1):
            pipeline.join(5.0)
            if not pipeline.is_alive():
                break
            status = _status_line(gateway.stats.snapshot())
            systemd.status(status)
            if tick % prints_every == 0:
                console.print(status)
    watchdog.stop()
    if deadline_timer:
        deadline_timer.cancel()
    systemd.stopping()
    summary = gateway.close()
    _print_summary(console, summary)
    return 0 if summary.clean and not failures else 1


def _print_endpoints(console: Console, gateway: Gateway) -> None:
    ep = gateway.endpoints
    config = gateway.config
    console.print(
        f"[bold]udigate[/bold] line {config.line.site}/{config.line.name}, source {config.source.kind}, "
        f"reject log in {config.line.data_dir}"
    )
    if ep.mqtt:
        host, port = ep.mqtt
        kind = f"embedded {ep.mqtt_broker} broker" if ep.mqtt_broker else "broker"
        console.print(f"  MQTT ({kind}):  mosquitto_sub -h {host} -p {port} -t '{ep.topic_root}/#' -v")
    if ep.modbus:
        console.print(f"  {ep.modbus}")
    if ep.web:
        users = ", ".join(config.web.all_users()) or "none configured: read-only"
        console.print(f"  review UI:   {ep.web}  (users: {users}; Prometheus: {ep.web}metrics)")
    console.print("  Ctrl-C (or SIGTERM) finishes the items in progress and stops.")


def _fmt(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f}"


def _status_line(s: Snapshot) -> str:
    total = s.latency_ms["total"]
    reasons = ", ".join(f"{k} {v}" for k, v in s.by_reason.items()) or "none"
    return (
        f"{s.items} items ({s.items_per_s:.1f}/s): {s.passed} passed, {s.rejected} rejected ({reasons}); "
        f"latency p50 {_fmt(total['p50'])} p95 {_fmt(total['p95'])} p99 {_fmt(total['p99'])} ms"
        + (f"; grade mean {s.grade_mean:.1f}" if s.grade_mean is not None else "")
        + (f"; WARNING {s.grade_warning}" if s.grade_warning else "")
    )


def _status_table(s: Snapshot) -> Table:
    table = Table(
        title=f"udigate: {s.items} items in {s.elapsed_s:.0f} s, {s.items_per_s:.1f} items/s",
        show_header=False,
        title_justify="left",
    )
    table.add_column(justify="left")
    table.add_column(justify="right")
    table.add_row("passed", str(s.passed))
    table.add_row("rejected", str(s.rejected))
    for reason, count in s.by_reason.items():
        table.add_row(f"  {reason}", str(count))
    total = s.latency_ms["total"]
    table.add_row("latency p50 / p95 / p99 ms", f"{_fmt(total['p50'])} / {_fmt(total['p95'])} / {_fmt(total['p99'])}")
    if s.grade_mean is not None:
        table.add_row(f"grade mean / lowest (last {s.grade_count})", f"{s.grade_mean:.1f} / {s.grade_lowest:.1f}")
        table.add_row("  weakest parameter", s.grade_weakest)
    if s.grade_warning:
        table.add_row("[bold red]warning[/]", f"[bold red]{s.grade_warning}[/]")
    if s.truth_checked:
        table.add_row("verdicts = ground truth", f"{s.truth_agreed} / {s.truth_checked}")
    return table


def _print_summary(console: Console, summary: Summary) -> None:
    s = summary.stats
    console.print()
    console.print(_status_table(s))
    stages = Table(title="latency per stage (ms)", title_justify="left")
    for column in ("stage", "p50", "p95", "p99"):
        stages.add_column(column, justify="right" if column != "stage" else "left")
    for stage, q in s.latency_ms.items():
        stages.add_row(stage, _fmt(q["p50"]), _fmt(q["p95"]), _fmt(q["p99"]))
    console.print(stages)
    for mismatch in s.truth_mismatches:
        console.print(f"  ground truth mismatch: {mismatch}")
    console.print(
        f"MQTT: {summary.mqtt_committed} records committed, {summary.mqtt_acknowledged} acknowledged by the broker"
        + (f", {summary.mqtt_pending} kept in the outbox for the next start" if summary.mqtt_pending else "")
        + (f", [red]{summary.mqtt_refused} NOT KEPT (outbox full)[/red]" if summary.mqtt_refused else "")
    )
    if summary.plc is not None:
        plc = summary.plc
        console.print(f"PLC simulator: {plc.results} results read, {plc.rejects} rejects, {plc.missed} missed")
        if plc.items:
            console.print(
                f"  belt: {plc.items} items triggered, {len(plc.ejected)} ejected "
                f"({plc.no_result} without a result in time), {len(plc.kept)} kept"
            )
    console.print(
        f"PLC delivery: {summary.plc_delivered} results taken in time, {summary.plc_undelivered} not"
        + (" (see MQTT …/plc/undelivered)" if summary.plc_undelivered else "")
    )
    console.print(
        f"reject log: {summary.rejects_logged} rejects stored"
        + (f", {summary.passes_kept} passes kept for comparison" if summary.passes_kept else "")
        + (f", {summary.rejects_failed} FAILED" if summary.rejects_failed else "")
        + (
            f", {summary.pictures_skipped} without pictures (the writer fell behind)"
            if summary.pictures_skipped
            else ""
        )
    )
    if summary.source_error:
        console.print(f"[red]the source failed: {summary.source_error}[/red]")


if __name__ == "__main__":
    sys.exit(main())
