"""The active production order (job).

At start the line takes the job persisted in ``<data_dir>/job.json`` when there is one (set by
the MES or ``udigate job``), else the configuration's ``[job]``. The MES starts and stops jobs
with an MQTT command on ``…/job/set`` and gets an acknowledgement on ``…/job/ack``; an operator
uses ``udigate job start|stop|show``, which writes the same file that the running line checks
every second. The file is replaced atomically (temporary file, fsync, rename), so a kill never
leaves half a job; a restart resumes the order the line was packing.

Command payload (JSON)::

    {"command": "start", "request_id": "42", "job": {"id": "PO-7", "gtin": "06901234567892", "lot": "B7"}}
    {"command": "stop", "request_id": "43"}

Acknowledgement: ``{"request_id", "ok", "error", "job"}`` (``error`` names the problem, as
``udigate check-config`` does).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from .config import ConfigError, JobSection, _describe

log = logging.getLogger(__name__)

JOB_FILE = "job.json"


class JobError(ConfigError):
    """A job file or command that cannot be used: where it came from, and one line per problem."""


def job_from_dict(raw: object, source: str) -> JobSection:
    if not isinstance(raw, dict):
        raise JobError(source, ["job: expected a table of job fields (id, gtin, lot, …)"])
    try:
        return JobSection.model_validate(raw)
    except ValidationError as exc:
        raise JobError(source, [f"job.{_describe(e)}" for e in exc.errors()]) from None


def load_job(path: Path) -> JobSection:
    """A production order from a TOML file: its ``[job]`` table (a line configuration) or, without
    one, the file's top level."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise JobError(str(path), [f"cannot read the job: {exc}"]) from None
    return job_from_dict(raw.get("job", raw), str(path))


def read_job_file(path: Path) -> tuple[bool, JobSection | None]:
    """(whether the file exists, the active job or None when stopped)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JobError(str(path), [f"cannot read the job: {exc}"]) from None
    active = raw.get("active") if isinstance(raw, dict) else None
    return True, (job_from_dict(active, str(path)) if active is not None else None)


def write_job_file(path: Path, job: JobSection | None, by: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "active": job.model_dump(mode="json", exclude_none=True) if job is not None else None,
        "changed": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "by": by,
    }
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


class JobControl:
    """Holds the active job and tells ``on_change`` (the pipeline, the serial store) about changes."""

    def __init__(self, configured: JobSection, data_dir: Path, on_change: Callable[[JobSection | None], None]):
        self.path = data_dir / JOB_FILE
        self._on_change = on_change
        self._lock = threading.Lock()
        exists, persisted = read_job_file(self.path)
        self.active: JobSection | None = persisted if exists else configured
        if exists:
            log.info("resuming the persisted job %s", persisted.id if persisted else "(stopped)")
        self._mtime = self._file_mtime()

    def start(self, job: JobSection, by: str) -> None:
        with self._lock:
            write_job_file(self.path, job, by)
            self._mtime = self._file_mtime()
            self._set(job)

    def stop(self, by: str) -> None:
        with self._lock:
            write_job_file(self.path, None, by)
            self._mtime = self._file_mtime()
            self._set(None)

    def poll_file(self) -> None:
        """Pick up a job written by ``udigate job`` while the line runs."""
        with self._lock:
            mtime = self._file_mtime()
            if mtime == self._mtime:
                return
            self._mtime = mtime
            try:
                exists, job = read_job_file(self.path)
            except JobError as exc:
                log.error("%s", exc)
                return
            if exists:
                self._set(job)

    def command(self, payload: bytes) -> dict:
        """Carry out an MES job command; returns the acknowledgement."""
        request_id = None
        try:
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise JobError("job command", ["expected a JSON object with command start or stop"])
            request_id = message.get("request_id")
            command = message.get("command")
            if command == "start":
                self.start(job_from_dict(message.get("job"), "job command"), by="mqtt")
            elif command == "stop":
                self.stop(by="mqtt")
            else:
                raise JobError("job command", [f"command = {command!r}: expected 'start' or 'stop'"])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return {"request_id": None, "ok": False, "error": f"not JSON: {exc}", "job": self.describe()}
        except (JobError, OSError) as exc:
            return {"request_id": request_id, "ok": False, "error": str(exc), "job": self.describe()}
        return {"request_id": request_id, "ok": True, "error": None, "job": self.describe()}

    def describe(self) -> dict | None:
        return self.active.model_dump(mode="json", exclude_none=True) if self.active is not None else None

    def _set(self, job: JobSection | None) -> None:
        self.active = job
        log.warning("job %s", f"{job.id or '(no id)'} started" if job is not None else "stopped")
        self._on_change(job)

    def _file_mtime(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
