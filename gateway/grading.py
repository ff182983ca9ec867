"""Grading on the line: the settings from the config, the reflectance calibration file and
the decision a grade leads to. The measurements themselves are :mod:`vision.grade`.

The calibration file is JSON written by ``udigate calibrate`` (temp file + rename, so a kill
mid-write leaves the old file)::

    {"card_rmax": 87.0, "card_rmin": 5.0, "grey_light": 231.5, "grey_dark": 18.0,
     "date": "2026-11-23", "image": "card.png"}
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from datetime import date
from pathlib import Path

from vision.grade import Calibration, Grade, GradingSettings

from .config import Config, GradingSection
from .reasons import Finding

log = logging.getLogger(__name__)


class CalibrationError(RuntimeError):
    """A calibration file that cannot be used, with the reason."""


def load_calibration(path: Path) -> Calibration | None:
    """The calibration stored at ``path``; None when there is no file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read the calibration: {exc}") from None
    try:
        calibration = Calibration(
            card_rmax=float(raw["card_rmax"]),
            card_rmin=float(raw["card_rmin"]),
            grey_light=float(raw["grey_light"]),
            grey_dark=float(raw["grey_dark"]),
            date=str(raw["date"]),
        )
        date.fromisoformat(calibration.date)
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(
            f"{path}: expected card_rmax, card_rmin, grey_light, grey_dark (numbers) and date (YYYY-MM-DD): {exc}"
        ) from None
    if calibration.grey_light <= calibration.grey_dark or calibration.card_rmax <= calibration.card_rmin:
        raise CalibrationError(f"{path}: the light patch must be lighter than the dark one")
    return calibration


def save_calibration(path: Path, calibration: Calibration, image: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({**asdict(calibration), "image": image}, indent=2) + "\n", encoding="utf-8")
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, path)


def calibration_age_warning(calibration: Calibration | None, max_age_days: int, today: date) -> str | None:
    """Why the grades may be off because of the calibration, or None."""
    if calibration is None:
        return "no reflectance calibration: grades use grey level / 255 (run udigate calibrate)"
    age = (today - date.fromisoformat(calibration.date)).days
    if age > max_age_days:
        return f"the reflectance calibration is {age} days old (from {calibration.date}; limit {max_age_days} days)"
    return None


def grading_settings(section: GradingSection, calibration: Calibration | None) -> GradingSettings:
    return GradingSettings(
        method=section.method,
        aperture_mil=section.aperture_mil,
        x_dimension_mm=section.x_dimension_mm,
        wavelength_nm=section.wavelength_nm,
        min_module_px=section.min_module_px,
        fpd_damage=section.fpd_damage,
        print_growth=section.print_growth,
        calibration=calibration,
    )


def line_grading(config: Config, today: date | None = None) -> GradingSettings | None:
    """The grading settings of the line, with its calibration (warned about when missing or
    old); None when grading is off or the decoder has no grid to grade on."""
    section = config.grading
    if not section.enabled:
        return None
    if config.vision.decoder != "udigate":
        log.warning('grading is off: it needs vision.decoder = "udigate" (decoder is %r)', config.vision.decoder)
        return None
    calibration = load_calibration(config.calibration_path())
    warning = calibration_age_warning(calibration, section.calibration_max_age_days, today or date.today())
    if warning:
        log.warning("%s", warning)
    return grading_settings(section, calibration)


def grade_findings(grade: Grade, section: GradingSection) -> list[Finding]:
    """The reject reasons a grade gives: refused for resolution, overall grade below the line's
    minimum, or a parameter below its own minimum. The detail names every failing parameter
    with its measured value, for the quality engineer."""
    if grade.refused is not None:
        code = "insufficient_resolution" if grade.refused.startswith("insufficient resolution") else "not_graded"
        return [Finding(code, grade.refused)]
    failing = {name: section.min_grade for name in grade.below(section.min_grade)}
    for name, minimum in section.min_parameters.items():
        parameter = grade.parameters.get(name)
        if parameter is not None and parameter.grade < minimum:
            failing[name] = max(minimum, failing.get(name, 0.0))
    if not failing:
        return []
    detail = ", ".join(
        f"{name} {grade.parameters[name].value:g} (grade {grade.parameters[name].grade:g} < {minimum:g})"
        for name, minimum in failing.items()
    )
    return [Finding("grade_below_min", f"grade {grade.quality}: {detail}")]
