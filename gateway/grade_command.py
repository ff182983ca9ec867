"""``udigate grade`` and ``udigate calibrate``: print-quality grading of image files, and the
reflectance calibration from an image of a calibration card."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import cv2

from vision.grade import Grade, GradingSettings, grade_symbol, measure_calibration, overall_grade
from vision.reader import DataMatrixReader
from vision.report import grade_letter, report_image

from .grading import save_calibration
from .sources.folder import read_grayscale


def grade_images(paths: list[Path], settings: GradingSettings, as_json: bool, report_dir: Path | None) -> int:
    """Grade every symbol of every image: one JSON line or a readable report per image; when
    several images show the same symbol (same data), the readable output ends with its overall
    grade, the mean of the scan grades (ISO/IEC 15415 grades a symbol over several scans).
    Returns 1 when an image could not be loaded or a report not written, else 0."""
    reader = DataMatrixReader(max_symbols=4)
    reader.warm_up()
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
    status = 0
    scans: list[Grade] = []
    texts: set[str] = set()
    for path in paths:
        image, error = read_grayscale(path)
        if image is None:
            status = 1
            _emit({"file": str(path), "error": error}, as_json)
            continue
        results = []
        for index, symbol in enumerate(reader.read(image)):
            grade = grade_symbol(image, symbol, settings)
            scans.append(grade)
            texts.add(symbol.text)
            result = {"text": symbol.text, "size": f"{symbol.rows}x{symbol.cols}", **grade.to_dict()}
            if report_dir is not None:
                target = report_dir / f"{path.stem}-{index + 1}-grade.png"
                if cv2.imwrite(str(target), report_image(image, symbol, grade)):
                    result["report"] = str(target)
                else:
                    status = 1
                    result["report_error"] = f"cannot write {target}"
            results.append(result)
        _emit({"file": str(path), "symbols": results}, as_json)
    mean = overall_grade(scans)
    if not as_json and len(scans) > 1 and len(texts) == 1 and mean is not None:
        graded = sum(g.overall is not None for g in scans)
        print(f"overall grade over {graded} scans: {mean:.1f} ({grade_letter(mean)})")
    return status


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
        return
    if "error" in result:
        print(f"{result['file']}: {result['error']}", file=sys.stderr)
        return
    symbols = result["symbols"]
    if not symbols:
        print(f"{result['file']}: no Data Matrix decoded, nothing to grade")
    for s in symbols:
        text = s["text"].replace("\x1d", "<GS>")
        print(f"{result['file']}: {s['size']} {text}")
        if s["refused"]:
            print(f"  not graded: {s['refused']}")
            continue
        print(f"  grade {s['quality']}  ({grade_letter(s['overall'])}, method {s['method']})")
        for name, p in s["parameters"].items():
            value = "pass" if name == "Decode" else f"{p['value']:g}" + (" %" if name in ("SC", "CC", "MR") else "")
            print(f"  {name:7} {value:>10}   {p['grade']:.1f} {grade_letter(p['grade'])}")
        info = s["informative"]
        extras = [f"{k} {v:g}" for k, v in info.items() if not k.startswith("FPD.")]
        print(f"  informative: {', '.join(extras)}")
        segments = [f"{k[4:]} {grade_letter(v)}" for k, v in info.items() if k.startswith("FPD.")]
        print(f"  fixed pattern segments: {', '.join(segments)}")
        if s["damaged_codewords"]:
            print(f"  damaged codewords: {', '.join(map(str, s['damaged_codewords']))}")
        for warning in s["warnings"]:
            print(f"  warning: {warning}")
        if "report" in s:
            print(f"  report: {s['report']}")


def calibrate(path: Path, card_rmax: float, card_rmin: float, output: Path, today: date | None = None) -> int:
    """Measure the calibration card in ``path`` and store it at ``output``."""
    image, error = read_grayscale(path)
    if image is None:
        print(f"udigate calibrate: {path}: {error}", file=sys.stderr)
        return 1
    try:
        calibration = measure_calibration(image, card_rmax, card_rmin, (today or date.today()).isoformat())
    except ValueError as exc:
        print(f"udigate calibrate: {path}: {exc}", file=sys.stderr)
        return 2
    try:
        save_calibration(output, calibration, str(path))
    except OSError as exc:
        print(f"udigate calibrate: cannot write {output}: {exc}", file=sys.stderr)
        return 1
    print(
        f"calibration {calibration.date}: light patch grey {calibration.grey_light:.1f} = {card_rmax:g} %, "
        f"dark patch grey {calibration.grey_dark:.1f} = {card_rmin:g} %; written to {output}"
    )
    return 0
