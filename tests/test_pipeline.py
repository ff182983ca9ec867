import random
import threading
from datetime import date

import cv2
import numpy as np
import pytest

from gateway.config import Config, override
from gateway.pipeline import Inspection, Pipeline, ReorderBuffer
from gateway.sources import Frame, open_source
from gateway.sources.simulator import LineSimulator
from gateway.stats import LatencyHistogram
from vision.reader import open_reader

TODAY = date(2026, 11, 23)


def frame(item_id):
    return Frame(item_id, None, 0.0, None, "test")


def test_reorder_buffer_releases_in_item_order():
    buffer = ReorderBuffer()
    ids = list(range(1, 201))
    random.Random(3).shuffle(ids)
    released = []
    consumer = threading.Thread(target=lambda: released.extend(i.frame.item_id for i in buffer))
    consumer.start()
    for item_id in ids:
        buffer.put(Inspection(frame(item_id), 0, 0, 0))
    buffer.close(200)
    consumer.join(5)
    assert released == list(range(1, 201))


def test_reorder_buffer_ends_after_the_last_item():
    buffer = ReorderBuffer()
    buffer.close(0)
    assert list(buffer) == []


def run_pipeline(config, **kwargs):
    verdicts = []
    pipeline = Pipeline(config, open_reader("zxing"), verdicts.append, today=lambda: TODAY, grading=None, **kwargs)
    pipeline.run(open_source(config, today=TODAY), threading.Event())
    return pipeline, verdicts


def recorded_frames(folder, count, seed=11, suffix="png"):
    """Simulated frames written to ``folder`` as image files, named in item order."""
    config = override(
        Config(),
        **{
            "job.gtin": "06901234567892",
            "job.lot": "A2611",
            "source.simulator.rate_ppm": 0,
            "source.simulator.items": count,
            "source.simulator.seed": seed,
        },
    )
    sim = LineSimulator(config.source.simulator, config.job, today=TODAY)
    truths = []
    for f in sim.frames(threading.Event()):
        cv2.imwrite(str(folder / f"frame-{f.item_id:03d}.{suffix}"), f.image)
        truths.append(f.truth)
    return config, truths


def test_folder_replay_with_broken_files(tmp_path):
    config, _ = recorded_frames(tmp_path, 4)
    (tmp_path / "frame-002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "frame-003b.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    config = override(config, **{"source.kind": "folder", "source.folder": {"path": str(tmp_path)}})
    pipeline, verdicts = run_pipeline(config)
    assert [v.frame.origin.rsplit("/", 1)[1] for v in verdicts] == [
        "frame-001.png",
        "frame-002.png",
        "frame-003.png",
        "frame-003b.jpg",
        "frame-004.png",
    ]
    assert [v.reasons for v in verdicts] == [(), ("image_error",), (), ("image_error",), ()]
    assert "frame-002.png is not a readable PNG, JPEG or BMP image" in verdicts[1].findings[0].message
    assert pipeline.source_error is None


def test_folder_replay_loops(tmp_path):
    config, _ = recorded_frames(tmp_path, 2)
    config = override(
        config, **{"source.kind": "folder", "source.folder": {"path": str(tmp_path), "loop": True, "rate_ppm": 6000}}
    )
    stop = threading.Event()
    verdicts = []
    pipeline = Pipeline(config, open_reader("zxing"), verdicts.append, today=lambda: TODAY, grading=None)
    threading.Timer(0.5, stop.set).start()
    pipeline.run(open_source(config), stop)
    assert len(verdicts) >= 4
    assert [v.frame.origin for v in verdicts[:4]] == [verdicts[0].frame.origin, verdicts[1].frame.origin] * 2


def test_a_line_faster_than_the_station_gets_not_inspected_items(tmp_path):
    config, _ = recorded_frames(tmp_path, 6, suffix="bmp")  # BMP: reading costs far less than decoding
    config = override(
        config,
        **{
            "source.kind": "folder",
            "source.folder": {"path": str(tmp_path), "loop": True, "rate_ppm": 60000},  # 1000 items/s
            "vision.workers": 1,
            "vision.queue_size": 1,
        },
    )
    stop = threading.Event()
    verdicts = []
    pipeline = Pipeline(config, open_reader("zxing"), verdicts.append, today=lambda: TODAY, grading=None)
    threading.Timer(1.0, stop.set).start()
    pipeline.run(open_source(config), stop)
    reasons = [v.reasons for v in verdicts]
    assert [v.item_id for v in verdicts] == list(range(1, len(verdicts) + 1))  # every trigger decided once, in order
    assert ("not_inspected",) in reasons
    assert () in reasons  # while others were inspected
    skipped = next(v for v in verdicts if v.reasons == ("not_inspected",))
    assert "vision workers busy" in skipped.findings[0].message


def test_a_failing_source_ends_the_run_but_decides_what_was_triggered(tmp_path):
    config, _ = recorded_frames(tmp_path, 3)
    config = override(config, **{"source.kind": "folder", "source.folder": {"path": str(tmp_path)}})
    source = open_source(config)

    class Unplugged:  # a camera whose cable is pulled after two frames
        realtime = False

        def frames(self, stop):
            yield from list(source.frames(stop))[:2]
            raise OSError("camera disconnected")

    verdicts = []
    pipeline = Pipeline(config, open_reader("zxing"), verdicts.append, today=lambda: TODAY, grading=None)
    assert pipeline.run(Unplugged(), threading.Event()) == 2
    assert [v.item_id for v in verdicts] == [1, 2]
    assert isinstance(pipeline.source_error, OSError)


def test_latency_histogram_percentiles_within_two_percent():
    values = np.random.default_rng(1).lognormal(2, 1, 20000)
    histogram = LatencyHistogram()
    for v in values:
        histogram.add(float(v))
    for q in (50, 95, 99):
        assert histogram.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.02)
    assert LatencyHistogram().percentile(50) is None


def test_an_output_failure_stops_the_line_and_reaches_the_caller(tmp_path):
    config, _ = recorded_frames(tmp_path, 3)
    config = override(config, **{"source.kind": "folder", "source.folder": {"path": str(tmp_path), "loop": True}})

    def sink(verdict):
        if verdict.item_id == 3:
            raise OSError("disk full")

    stop = threading.Event()
    pipeline = Pipeline(config, open_reader("zxing"), sink, today=lambda: TODAY, grading=None)
    with pytest.raises(OSError, match="disk full"):
        pipeline.run(open_source(config), stop)
    assert stop.is_set()


def test_a_result_later_than_the_deadline_is_a_timeout_reject(tmp_path):
    """On a line that does not wait, an item decided after its deadline is rejected with its own
    reason (PLC result code TIMEOUT), never passed late or dropped."""
    from gateway.reasons import result_code
    from plc.registers import ResultCode

    config = override(
        Config(),
        **{
            "line.data_dir": str(tmp_path),
            "source.simulator.rate_ppm": 3000,
            "source.simulator.items": 10,
            "source.simulator.defects": {},
            "plc.deadline_ms": 1,
        },
    )
    _, verdicts = run_pipeline(config)
    assert len(verdicts) == 10
    for verdict in verdicts:
        assert "deadline_missed" in verdict.reasons and result_code(verdict.reasons) == ResultCode.TIMEOUT
        assert any(f.message.endswith("ms after the trigger; the deadline is 1 ms") for f in verdict.findings)
    relaxed = override(config, **{"plc.deadline_ms": 60000})
    assert all(v.passed for v in run_pipeline(relaxed)[1])
