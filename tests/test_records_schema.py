"""The item record schema (docs/schema/udigate-item-1.schema.json) pinned against real records.

A short simulated line runs in-process with the Modbus interface (a simulated PLC on loopback),
the product master (a synthetic UDID release) and the reject log, and with defects printed so
that rejects of several kinds occur. Two real paths give records: ``item_record`` called on every
verdict the pipeline hands to the gateway's sink (what MQTT publishes), and the reject log's JSON
files (what ``Gateway._emit`` built, with the ``plc`` object). Every one must validate, and every
key they hold must be documented in the schema, and every schema field in docs/mqtt.md.
"""

from __future__ import annotations

import base64
import copy
import json
import threading

import pytest
from jsonschema import Draft202012Validator, ValidationError

from gateway.app import Gateway
from gateway.records import SCHEMA, item_record
from gateway.udid import import_releases

from .conftest import REPO, line_config
from .udid_release import synthetic_device, write_full_release

SCHEMA_FILE = REPO / "docs" / "schema" / "udigate-item-1.schema.json"
DOC_FILE = REPO / "docs" / "mqtt.md"
ITEMS = 60
# A synthetic UDID device with a GS1 unit DI, an insurance code, not withdrawn, declaring lot,
# serial, production and expiry date: exactly what the simulator prints, so its packs can pass.
DEVICE = 6
DEFECTS = {
    "low_contrast": 0.06,
    "damaged_finder": 0.06,
    "no_code": 0.06,
    "wrong_lot": 0.06,
    "expired": 0.06,
    "duplicate_serial": 0.06,
    "bad_check_digit": 0.06,
    "missing_separator": 0.06,
}
# Only the reject log's copy has these; MQTT never carries them.
REJECT_LOG_ONLY = {"image", "crop", "grade_report", "thumb", "plc"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def line_run(tmp_path_factory) -> tuple[list[dict], list[dict]]:
    """(the record of every verdict in item order, the reject log's records)."""
    tmp = tmp_path_factory.mktemp("records")
    device = synthetic_device(DEVICE)
    assert device.coding_system == "GS1" and device.ybbm and not device.withdrawn
    (tmp / "udid").mkdir()
    (tmp / "data").mkdir()
    import_releases([write_full_release(tmp / "udid", DEVICE + 1, parts=1)], tmp / "data" / "udigate.db")
    config = line_config(
        tmp,
        **{
            "mqtt.enabled": False,
            "plc.modbus.enabled": True,
            "plc.modbus.host": "127.0.0.1",
            "plc.simulator.enabled": True,
            "source.trigger": "timer",
            "source.simulator.items": ITEMS,
            "source.simulator.rate_ppm": 0,
            "source.simulator.seed": 7,
            "source.simulator.defects": DEFECTS,
            "job.gtin": device.unit_di,
            "udid.enabled": True,
            "rejects.enabled": True,
        },
    )
    gateway = Gateway(config)
    records: list[dict] = []
    emit = gateway.pipeline.sink  # the gateway's own sink: PLC registers, reject log

    def sink(verdict) -> None:
        records.append(item_record(verdict, gateway.context))
        emit(verdict)

    gateway.pipeline.sink = sink
    gateway.start()
    try:
        assert gateway.run(threading.Event()) == ITEMS
    finally:
        summary = gateway.close()
    assert summary.rejects_failed == 0 and summary.source_error is None
    logged = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((tmp / "data" / "rejects").rglob("*.json"))]
    return records, logged


def errors(validator: Draft202012Validator, record: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(record)'}: {e.message}" for e in validator.iter_errors(record)]


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        assert node["$ref"].startswith("#/$defs/"), node["$ref"]
        node = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def undocumented(schema: dict, node: dict, value, path: str = "") -> set[str]:
    """Keys of ``value`` (recursively) that the schema ``node`` does not describe."""
    node = resolve(schema, node)
    missing: set[str] = set()
    if isinstance(value, dict):
        properties, additional = node.get("properties"), node.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                missing |= undocumented(schema, properties[key], item, f"{path}{key}.")
            elif isinstance(additional, dict):  # a map such as fields or grade.parameters
                missing |= undocumented(schema, additional, item, f"{path}*.")
            else:
                missing.add(path + key)
    elif isinstance(value, list) and "items" in node:
        for item in value:
            missing |= undocumented(schema, node["items"], item, f"{path}[].")
    return missing


def test_the_run_produced_every_kind_of_record(line_run):
    records, logged = line_run
    assert [r["item_id"] for r in records] == list(range(1, ITEMS + 1))
    assert {r["verdict"] for r in records} == {"pass", "reject"}
    rejects = [r for r in records if r["verdict"] == "reject"]
    codes = {reason["code"] for r in rejects for reason in r["reasons"]}
    assert len(codes) >= 4, codes
    assert {"no_read", "wrong_lot", "expired", "gs1_check_digit"} <= codes
    assert any("data" not in r for r in rejects)  # the bare record of a pack without a readable code
    assert any("grade" in r for r in records) and any("product" in r for r in records)
    assert any("digital_link" in r for r in rejects)  # a GS1 reject (e.g. expired) still has its link
    assert any(r["pi"]["serial"] is None for r in rejects if "pi" in r)  # a missing separator loses the serial
    logged_rejects = [r for r in logged if r["verdict"] == "reject"]  # and every 20th pass, for comparison
    assert len(logged_rejects) == len(rejects) and all("plc" in r for r in logged)


def test_every_record_validates_against_the_schema(line_run, validator):
    records, logged = line_run
    problems = {r["record_id"]: errors(validator, r) for r in records + logged}
    assert not {k: v for k, v in problems.items() if v}


def test_the_schema_documents_every_key_a_real_record_has(line_run, schema):
    records, logged = line_run
    keys = set().union(*(r.keys() for r in records + logged))
    assert keys <= set(schema["properties"]), keys - set(schema["properties"])
    assert set().union(*(undocumented(schema, schema, r) for r in records + logged)) == set()
    assert set(schema["required"]) <= set().union(*(r.keys() for r in records)) - REJECT_LOG_ONLY
    for name, field in schema["properties"].items():
        assert field.get("description"), f"{name} has no description"


def test_the_mqtt_doc_lists_every_schema_field(schema):
    text = DOC_FILE.read_text(encoding="utf-8")
    table = {line.split("|")[1].strip().strip("`") for line in text.splitlines() if line.startswith("| `")}
    assert set(schema["properties"]) <= table, set(schema["properties"]) - table
    assert "schema/udigate-item-1.schema.json" in text


def test_records_carry_their_identity(line_run):
    records, _ = line_run
    for record in records:
        assert record["schema"] == SCHEMA
        assert record["record_id"] == f"{record['run_id']}/{record['item_id']}"
    assert len({r["record_id"] for r in records}) == ITEMS


def test_gs1_passes_carry_di_pi_digital_link_and_the_raw_bytes(line_run):
    records, _ = line_run
    passes = [r for r in records if r["verdict"] == "pass"]
    assert len(passes) >= ITEMS // 3
    for record in passes:
        fields, pi = record["fields"], record["pi"]
        assert record["issuer"] == "GS1" and record["symbology_identifier"] == "]d2"
        assert record["di"] == fields["01"] and len(record["di"]) == 14
        assert (pi["lot"], pi["serial"]) == (fields["10"], fields["21"])
        assert pi["expiry"] == record["expiry"] and pi["production_date"] is not None
        assert record["digital_link"].startswith(f"https://id.gs1.org/01/{record['di']}/")
        assert f"/21/{pi['serial']}" in record["digital_link"]
        raw = base64.b64decode(record["data_b64"], validate=True)
        assert raw == record["data"].encode("latin-1")
        assert b"\x1d" in raw  # the variable-length lot is followed by a GS before the serial
        assert record["result_code"] == 1 and record["reasons"] == []
        assert record["insurance_code"] == record["product"]["ybbm"] and record["product"]["package_level"] == "unit"


def test_the_reject_log_keeps_the_published_record_plus_what_the_plc_was_told(line_run):
    records, logged = line_run
    by_id = {r["record_id"]: r for r in records}
    for entry in logged:
        published = by_id[entry["record_id"]]
        assert entry["plc"]["reject"] is (entry["verdict"] == "reject") and entry["plc"]["item_id"] == entry["item_id"]
        assert 1 <= entry["plc"]["seq"] <= ITEMS
        ignore = REJECT_LOG_ONLY | {"decided_at"}  # the two records were built a moment apart
        assert {k: v for k, v in entry.items() if k not in ignore} == {
            k: v for k, v in published.items() if k not in ignore
        }


def tampered(record: dict, path: str, value) -> dict:
    copied = copy.deepcopy(record)
    *parents, leaf = path.split(".")
    node = copied
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return copied


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("item_id", "7"),
        ("item_id", 0),
        ("verdict", "maybe"),
        ("timestamp", "yesterday"),
        ("timestamp", "2026-11-23T25:00:00.000Z"),
        ("decided_at", 1763884800),
        ("pi.expiry", "2026-13-01"),
        ("pi.lot", 2611),
        ("record_id", KeyError),
        ("schema", "udigate.item/2"),
        ("result_code", 4),  # a pass with a reject's result code
        ("reasons", [{"code": "wrong_lot", "text": "the lot is not the production order's", "detail": "x"}]),
        ("digital_link", "http://example.com/01/06901234567892"),
        ("grade.method", "2016"),
        ("data", KeyError),  # a pass always has its code
        ("product.units_per_package", "1"),
    ],
)
def test_a_tampered_record_is_refused(line_run, validator, path, value):
    records, _ = line_run
    record = next(r for r in records if r["verdict"] == "pass")
    assert errors(validator, record) == []
    with pytest.raises(ValidationError):
        validator.validate(tampered(record, path, value))


def test_a_tampered_reject_is_refused(line_run, validator):
    records, logged = line_run
    reject = next(r for r in logged if r["verdict"] == "reject")
    for path, value in (("reasons", []), ("result_code", 1), ("plc.seq", 0), ("plc.reject", "yes")):
        with pytest.raises(ValidationError):
            validator.validate(tampered(reject, path, value))
