import threading
from collections import Counter
from datetime import date

from gateway.config import JobSection, SimulatorSection
from gateway.rules import check_content
from gateway.sources.simulator import DEFECTS, LineSimulator

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
