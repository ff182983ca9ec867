import threading
from collections import Counter
from datetime import date, datetime, timedelta
from statistics import mean

from gateway.config import Config, JobSection, SimulatorSection, override
from gateway.pipeline import Pipeline, line_reader
from gateway.rules import check_content
from gateway.sources import open_source
from gateway.sources.simulator import DEFECTS, LineSimulator
from gateway.trends import TrendPoint, drift_warnings

TODAY = date(2026, 11, 23)
ALL_DEFECTS = {d: 0.1 for d in DEFECTS}
VISION_DEFECTS = {"low_contrast", "damaged_finder", "no_code"}


def simulate(items, job=None, **settings):
    config = SimulatorSection(rate_ppm=0, items=items, seed=7, defects=ALL_DEFECTS, **settings)
    job = job or JobSection(gtin="06901234567892", lot="A2611")
    return list(LineSimulator(config, job, today=TODAY).frames(threading.Event()))


def test_items_are_numbered_and_carry_their_truth():
    frames = simulate(120, width=640, height=480, module_px=4)
    assert [f.item_id for f in frames] == list(range(1, 121))
    assert all(f.image.shape == (480, 640) and f.image.dtype.name == "uint8" for f in frames)
    defects = Counter(f.truth.defect for f in frames)
    assert set(defects) == {"good", *DEFECTS}
    assert all(bool(f.truth.expected_reasons) == (f.truth.defect != "good") for f in frames)
    assert all((f.truth.element_string is None) == (f.truth.defect == "no_code") for f in frames)


def test_printed_content_gives_the_expected_content_reasons():
    """The rules, applied to what was printed, reach the simulator's expected verdict for every
    defect that is not about print quality (those need the image)."""
    job = JobSection(gtin="06901234567892", lot="A2611")
    serials = set()
    for frame in simulate(300, job, width=640, height=480, module_px=4):
        truth = frame.truth
        if truth.defect in VISION_DEFECTS:
            continue
        content = check_content(truth.element_string, "]d2", job, TODAY)
        reasons = {f.code for f in content.findings}
        if content.serial and (content.gtin, content.serial) in serials:
            reasons.add("duplicate_serial")
        assert reasons == set(truth.expected_reasons), (truth, content.findings)
        if not reasons:
            serials.add((content.gtin, content.serial))


def test_without_an_order_lot_the_wrong_lot_is_not_a_defect():
    frames = simulate(80, JobSection(), width=640, height=480, module_px=4)
    assert all(f.truth.expected_reasons == () for f in frames if f.truth.defect == "wrong_lot")


def test_seed_repeats_the_line():
    first = [f.truth.defect for f in simulate(40, width=320, height=240, module_px=3)]
    second = [f.truth.defect for f in simulate(40, width=320, height=240, module_px=3)]
    assert first == second


def test_fading_ink_has_no_ground_truth_once_it_shows():
    steady = simulate(120, width=320, height=240, module_px=3)
    assert all(f.truth is not None for f in steady)
    faded = simulate(120, width=320, height=240, module_px=3, ink_fade_per_1000=10)  # 1 grey level at item 101
    assert all(f.truth is not None for f in faded[:100]) and all(f.truth is None for f in faded[100:])
    assert [f.truth for f in faded[:100]] == [f.truth for f in steady[:100]]  # the same items until then


def test_fading_ink_lowers_the_grades_over_the_run_and_drift_warns_before_the_first_reject(tmp_path):
    """Ink 255 grey levels lighter per 1000 items: over 400 good labels the symbol contrast falls
    from A to D and items are rejected; the drift warning on SC comes before the first reject."""
    config = override(
        Config(),
        **{
            "line.data_dir": str(tmp_path),
            "job.gtin": "06901234567892",
            "job.lot": "A2611",
            "source.simulator.rate_ppm": 0,
            "source.simulator.items": 400,
            "source.simulator.seed": 4,
            "source.simulator.width": 640,
            "source.simulator.height": 480,
            "source.simulator.ink_fade_per_1000": 255,
        },
    )
    verdicts = []
    pipeline = Pipeline(config, line_reader(config), verdicts.append, today=lambda: TODAY)
    pipeline.warm_up()
    pipeline.run(open_source(config, today=TODAY), threading.Event())
    verdicts.sort(key=lambda v: v.item_id)
    assert len(verdicts) == 400 and all(v.grade.overall is not None for v in verdicts)

    quarters = [verdicts[i : i + 100] for i in range(0, 400, 100)]
    sc_means = [mean(v.grade.parameters["SC"].grade for v in q) for q in quarters]
    overall_means = [mean(v.grade.overall for v in q) for q in quarters]
    assert sc_means == sorted(sc_means, reverse=True) and sc_means[0] >= 3 and sc_means[-1] < 1.5
    assert overall_means == sorted(overall_means, reverse=True) and overall_means[-1] < 1.5
    assert all(v.passed for v in quarters[0])
    rejected = [v for v in verdicts if not v.passed]
    assert {v.reasons for v in rejected} == {("grade_below_min",)}
    assert all(v.grade.parameters["SC"].grade < 1.5 for v in rejected)

    # The first 100 items, 20 a minute as the store sums them, all still passing: SC and the
    # overall grade already warn, about 150 items before the first reject.
    start = datetime(2026, 11, 23, 8, 0)
    points = []
    for minute in range(5):
        items = verdicts[20 * minute : 20 * minute + 20]
        stamp = (start + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M")
        for name in ("SC", "overall"):
            grades = [v.grade.parameters["SC"].grade if name == "SC" else v.grade.overall for v in items]
            points.append(TrendPoint(stamp, name, len(grades), mean(grades), min(grades), 0.0))
    assert all(v.passed for v in verdicts[:100]) and rejected[0].item_id > 200
    warnings = drift_warnings(points, {"SC": 1.5, "overall": 1.5}, points[-1].minute)
    assert {w.parameter for w in warnings} == {"SC", "overall"}
    assert all(w.current > 2.5 and 5 < w.minutes_to_minimum < 30 for w in warnings)
