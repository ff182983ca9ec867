"""A camera line whose photo-eye, encoder and ejector are the I/O board (firmware/ running under
CPython on the far end of a pseudo-terminal, fakes only for the Pico's pins): every pack the
station rejects is ejected at the configured encoder distance, no pass is, and every verdict is in
time (no fail-safe ejection)."""

import random
import threading
from datetime import date

import numpy as np

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.sources.simulator import LineSimulator

from .conftest import line_config, wait_for
from .test_cameras import write_video
from .test_firmware import Belt, BoardRunner, Hardware, Pack, WallClock

PACKS = 12
EJECT_COUNTS = 1200  # 0.3 s of belt at 4000 counts/s: the station's time to decide


def test_the_board_ejects_what_the_station_rejects(tmp_path, monkeypatch, pty_pair):
    master, port = pty_pair
    simulated = parse_config(
        "[source.simulator]\nseed = 8\nitems = 10\nrate_ppm = 0\nwidth = 800\nheight = 600\n"
        "[source.simulator.defects]\nwrong_lot = 0.3\n"
    )
    simulator = LineSimulator(simulated.source.simulator, simulated.job, today=date.today())
    labels = [f.image for f in simulator.frames(threading.Event())]
    video = tmp_path / "labels.avi"
    write_video(video, labels)  # the camera runs free over these, looping

    config = line_config(
        tmp_path,
        **{
            "source.kind": "opencv",
            "source.trigger": "ioboard",
            "source.camera.device": str(video),
            "source.camera.fps": 100,
            "source.camera.loop": True,
            "plc.modbus.enabled": False,
            "mqtt.enabled": False,
            "web.enabled": False,
            "ioboard.enabled": True,
            "ioboard.port": port,
            "ioboard.debounce_ms": 2,
            "ioboard.eject_counts": EJECT_COUNTS,
            "ioboard.heartbeat_ms": 100,
        },
    )
    hw = Hardware(monkeypatch, WallClock())
    belt = Belt(hw, random.Random(3))
    packs = [Pack(200 + 400 * i, 80) for i in range(PACKS)]
    with BoardRunner(hw, master, belt, end=packs[-1].lead + EJECT_COUNTS + 200):
        gateway = Gateway(config)
        gateway.start()
        ejections = []
        gateway.board.on_ejected = ejections.append
        stop = threading.Event()
        verdicts = []
        emit = gateway.pipeline.sink

        def sink(verdict):
            verdicts.append(verdict)
            emit(verdict)
            if len(verdicts) == PACKS:
                stop.set()

        gateway.pipeline.sink = sink
        line = threading.Thread(target=gateway.run, args=(stop,))
        line.start()
        belt.packs = packs
        line.join(30)
        assert not line.is_alive(), f"{len(verdicts)} of {PACKS} packs decided"
        rejected = {v.frame.plc_item_id for v in verdicts if not v.passed}
        assert wait_for(lambda: len(ejections) == len(rejected), timeout=10)
        summary = gateway.close()

    assert [v.frame.plc_item_id for v in verdicts] == list(range(1, PACKS + 1))
    assert [v.frame.encoder for v in verdicts] == [p.lead for p in packs]  # tied to the board's count
    # the video loops: a label seen again is a duplicate serial, a reject like the wrong lots
    assert 0 < len(rejected) < PACKS and {r for v in verdicts for r in v.reasons} <= {"wrong_lot", "duplicate_serial"}
    assert sorted((e.item_id, e.encoder, e.reason) for e in ejections) == [
        (i, packs[i - 1].lead + EJECT_COUNTS, "verdict") for i in sorted(rejected)
    ]
    assert summary.stats.items == PACKS and np.all([v.frame.image is not None for v in verdicts])
