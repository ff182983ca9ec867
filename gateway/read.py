"""``udigate read``: decode the symbols in image files, one result per image."""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

from vision.reader import open_reader
from vision.symbol import Roi

from .sources.folder import read_grayscale


def read_images(paths: list[Path], decoder: str, roi: Roi | None, as_json: bool) -> int:
    """Print one line per image; returns 1 when an image could not be loaded, else 0.

    ``ms`` is the time spent reading the image, after the image is loaded and the reader is
    warmed up (its compiled code loaded), so it is what a running line spends per frame.
    """
    reader = open_reader(decoder, second_opinion="off")
    reader.warm_up()
    status = 0
    for path in paths:
        image, error = read_grayscale(path)
        if image is None:
            status = 1
            _emit({"file": str(path), "error": error}, as_json, error=True)
            continue
        start = time.perf_counter()
        symbols = reader.read(image, roi)
        ms = (time.perf_counter() - start) * 1000
        _emit(
            {
                "file": str(path),
                "ms": round(ms, 3),
                "symbols": [
                    {
                        "text": s.text,
                        "bytes_b64": base64.b64encode(s.data).decode("ascii"),
                        "symbology_identifier": s.symbology_identifier,
                        "size": f"{s.rows}x{s.cols}",
                        "corners": [[round(x, 2), round(y, 2)] for x, y in s.corners],
                        "decoder": s.decoder,
                    }
                    for s in symbols
                ],
            },
            as_json,
        )
    return status


def _emit(result: dict, as_json: bool, error: bool = False) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    elif error:
        print(f"{result['file']}: {result['error']}", file=sys.stderr)
    else:
        symbols = result["symbols"]
        print(f"{result['file']}: {len(symbols)} symbol(s) in {result['ms']:.1f} ms")
        for s in symbols:
            text = s["text"].replace("\x1d", "<GS>")
            print(f"  {s['symbology_identifier']} {s['size']} {text}")
