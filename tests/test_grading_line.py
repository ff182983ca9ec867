"""Grading on the line and from the command line: reject decisions from grades, per-parameter
minimums, refused grades, the calibration file and its age, `udigate grade` and
`udigate calibrate`."""

import json
import logging
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.config import Config, override
from gateway.grading import CalibrationError, line_grading, load_calibration
from gateway.pipeline import Pipeline, line_reader
from gateway.reasons import result_code
from gateway.sources import open_source
from gateway.stats import LineStats
from plc.registers import ResultCode

from .symbols import camera, render, zxing_modules

UDIGATE = [sys.executable, "-m", "gateway.cli"]
TODAY = date(2026, 11, 23)
HRI = "(01)06901234567892(17)281123(10)A2611(21)SER0001"


def line(tmp_path, **changes):
    return override(
        Config(),
        **{
            "line.data_dir": str(tmp_path),
            "job.gtin": "06901234567892",
            "job.lot": "A2611",
            "source.simulator.rate_ppm": 0,
            "source.simulator.items": 30,
            "source.simulator.seed": 4,
            "source.simulator.defects": {"low_contrast": 0.3},
            **changes,
        },
    )


def run(config):
    verdicts = []
    pipeline = Pipeline(config, line_reader(config), verdicts.append, today=lambda: TODAY)
    pipeline.warm_up()
    pipeline.run(open_source(config, today=TODAY), threading.Event())
    return verdicts


def test_every_item_is_graded_and_pale_print_is_rejected_naming_the_parameter(tmp_path):
    verdicts = run(line(tmp_path))
    pale = [v for v in verdicts if v.frame.truth.defect == "low_contrast"]
    good = [v for v in verdicts if v.frame.truth.defect == "good"]
    assert pale and good
    for verdict in good:
        assert verdict.passed and verdict.grade.overall >= 1.5
        assert verdict.grade.quality == f"{verdict.grade.overall:.1f}/08/660"
    for verdict in pale:
        assert verdict.reasons == ("grade_below_min",)
        assert result_code(verdict.reasons) == ResultCode.GRADE_FAIL
        (finding,) = verdict.findings
        assert verdict.grade.parameters["SC"].grade < 1.5
        assert f"SC {verdict.grade.parameters['SC'].value:g} (grade" in finding.message


def test_a_parameter_minimum_rejects_on_its_own(tmp_path):
    """SC must reach A (4.0) on this line: good labels whose contrast grades B are rejected
    although their overall grade passes the line minimum."""
    verdicts = run(line(tmp_path, **{"grading.min_parameters": {"SC": 4.0}, "source.simulator.defects": {}}))
    below = [v for v in verdicts if v.grade.parameters["SC"].grade < 4.0]
    assert below and len(below) < len(verdicts)
    for verdict in verdicts:
        if verdict in below:
            assert verdict.reasons == ("grade_below_min",) and "< 4)" in verdict.findings[0].message
        else:
            assert verdict.passed


def test_too_few_pixels_per_module_is_refused_with_its_reason(tmp_path):
    config = line(tmp_path, **{"source.simulator.module_px": 4.0, "source.simulator.defects": {}})
    verdicts = run(config)
    for verdict in verdicts:
        assert verdict.reasons == ("insufficient_resolution",)
        assert verdict.grade.overall is None
        assert verdict.findings[0].message.startswith("insufficient resolution: ")
    assert {v.reasons for v in run(override(config, **{"grading.min_module_px": 3.0}))} == {()}


def test_grading_can_be_switched_off(tmp_path):
    verdicts = run(line(tmp_path, **{"grading.enabled": False}))
    assert all(v.grade is None for v in verdicts)
    assert {v.reasons for v in verdicts} == {()}  # pale print passes when nobody grades it


def write_calibration(data_dir: Path, day: str, **values) -> None:
    record = {"card_rmax": 80.0, "card_rmin": 5.0, "grey_light": 220.0, "grey_dark": 20.0, "date": day, **values}
    (data_dir / "calibration.json").write_text(json.dumps(record))


def test_the_line_uses_its_calibration_and_warns_when_it_is_old(tmp_path, caplog):
    config = line(tmp_path)
    caplog.set_level(logging.WARNING, "gateway.grading")
    assert line_grading(config, TODAY).calibration is None
    assert "no reflectance calibration" in caplog.text

    write_calibration(tmp_path, "2026-10-01")
    caplog.clear()
    settings = line_grading(config, TODAY)
    assert settings.calibration.grey_light == 220.0 and not caplog.text

    write_calibration(tmp_path, "2026-01-02")
    line_grading(config, TODAY)
    assert "the reflectance calibration is 325 days old (from 2026-01-02; limit 180 days)" in caplog.text


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{", "cannot read the calibration"),
        ('{"card_rmax": 80, "date": "2026-01-01"}', "expected card_rmax, card_rmin, grey_light, grey_dark"),
        (
            '{"card_rmax": 80, "card_rmin": 5, "grey_light": 20, "grey_dark": 220, "date": "2026-01-01"}',
            "lighter than the dark one",
        ),
        ('{"card_rmax": 80, "card_rmin": 5, "grey_light": 220, "grey_dark": 20, "date": "soon"}', "YYYY-MM-DD"),
    ],
)
def test_a_bad_calibration_file_is_refused_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "calibration.json"
    path.write_text(content)
    with pytest.raises(CalibrationError, match=expected) as raised:
        load_calibration(path)
    assert str(path) in str(raised.value)


def test_rolling_grade_warns_before_rejects_start(tmp_path):
    verdicts = run(line(tmp_path, **{"source.simulator.defects": {}}))
    mean = np.mean([v.grade.overall for v in verdicts])
    calm = LineStats(min_grade=1.5, warn_margin=0.5)
    worried = LineStats(min_grade=mean - 0.2, warn_margin=0.5)  # the mean is within the margin
    for verdict in verdicts:
        calm.record(verdict)
        worried.record(verdict)
    assert calm.snapshot().grade_warning is None
    assert calm.snapshot().grade_mean == pytest.approx(mean, abs=0.01)
    warning = worried.snapshot().grade_warning
    assert warning.startswith(f"print quality falling: mean grade {mean:.1f} over the last {len(verdicts)} items")


# -- the command line ---------------------------------------------------------------------------


def label(path: Path, ink=30, paper=220, **kwargs) -> Path:
    cv2.imwrite(str(path), camera(render(zxing_modules(HRI), ink=ink, paper=paper, **kwargs)))
    return path


def udigate(*args, cwd=None):
    return subprocess.run([*UDIGATE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_grade_command_json_lines_and_report_pictures(tmp_path):
    good = label(tmp_path / "good.png")
    pale = label(tmp_path / "pale.png", ink=120, paper=200)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    reports = tmp_path / "reports"
    result = udigate("grade", "--json", "--report", reports, good, pale, broken)
    assert result.returncode == 1  # one image could not be loaded
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(good), str(pale), str(broken)]
    assert "not a readable PNG" in lines[2]["error"]
    (first,) = lines[0]["symbols"]
    assert set(first["parameters"]) == {"Decode", "SC", "MOD", "RM", "FPD", "AN", "GN", "UEC", "PG"}
    assert first["parameters"]["SC"]["value"] == pytest.approx((220 - 30) / 2.55, abs=2)
    assert first["overall"] == 4.0 and first["quality"] == "4.0/08/660"
    (second,) = lines[1]["symbols"]
    assert second["parameters"]["SC"]["value"] == pytest.approx(80 / 2.55, abs=2)
    assert second["overall"] == 1.0 and second["quality"] == "1.0/08/660"
    for symbols in (first, second):
        picture = cv2.imread(symbols["report"])
        assert picture is not None and picture.shape[0] > 300 and picture.ndim == 3


def test_grade_command_methods_aperture_and_readable_report(tmp_path):
    image = label(tmp_path / "label.png", ink=50, paper=160)  # SC 43 %: grade C
    dpm = json.loads(udigate("grade", "--json", "--method", "dpm", image).stdout)["symbols"][0]
    assert set(dpm["parameters"]) == {"Decode", "CC", "CM", "MR", "FPD", "AN", "GN", "UEC"}
    assert dpm["quality"].startswith("DPM") and dpm["method"] == "dpm"
    assert dpm["parameters"]["CC"]["value"] == pytest.approx(100 * 110 / 160, abs=1.5)
    wide = json.loads(udigate("grade", "--json", "--aperture", "20", "--method", "2024", image).stdout)
    assert wide["symbols"][0]["quality"].endswith("/20/660") and wide["symbols"][0]["method"] == "2024"

    text = udigate("grade", image, image).stdout
    assert "grade 2.0/08/660" in text and "SC" in text and "warning: uncalibrated" in text
    assert "overall grade over 2 scans: 2.0 (C)" in text


def test_calibrate_then_grade_in_calibrated_reflectance(tmp_path):
    card = np.full((200, 300), 30, np.uint8)
    card[:, 150:] = 210
    cv2.imwrite(str(tmp_path / "card.png"), camera(card))
    config = tmp_path / "line.toml"
    config.write_text(f'[line]\ndata_dir = "{tmp_path / "data"}"\n')
    done = udigate("calibrate", "--card-rmax", 85, "--card-rmin", 5, "--config", config, tmp_path / "card.png")
    assert done.returncode == 0, done.stderr
    stored = json.loads((tmp_path / "data" / "calibration.json").read_text())
    assert stored["date"] == date.today().isoformat()
    assert stored["grey_light"] == pytest.approx(210, abs=2) and stored["grey_dark"] == pytest.approx(30, abs=2)

    image = label(tmp_path / "label.png", ink=30, paper=210)
    graded = json.loads(udigate("grade", "--json", "--config", config, image).stdout)["symbols"][0]
    assert graded["parameters"]["SC"]["value"] == pytest.approx(80, abs=2)  # 85 % − 5 %, not 180 / 255
    assert graded["warnings"] == []

    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((100, 100), 128, np.uint8))
    refused = udigate("calibrate", "--card-rmax", 85, "--card-rmin", 5, "--output", tmp_path / "c.json", flat)
    assert refused.returncode == 2 and "does not show a light and a dark patch" in refused.stderr
    backwards = udigate("calibrate", "--card-rmax", 5, "--card-rmin", 85, flat)
    assert backwards.returncode == 2 and "must be below --card-rmax" in backwards.stderr
