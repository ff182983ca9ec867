"""gateway/epcis.py: item records → EPCIS 2.0 ObjectEvents and documents, checked field by field
and against the EPCIS 2.0 JSON schema vendored in tests/data/epcis/ (see the README there)."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest

from gateway import epcis
from gateway.epcis import EpcisError, document, event_id, object_event

SCHEMA_FILE = Path(__file__).parent / "data" / "epcis" / "EPCISDocument.schema.json"
READ_POINT = "urn:epc:id:sgln:6901234.00001.1"
BIZ_LOCATION = "urn:epc:id:sgln:6901234.00001.0"
GTIN = "06901234567892"  # check digit 2 is right


def record(**overrides) -> dict:
    """A passed, serialised GS1 item as gateway/records.py publishes it; keyword arguments
    replace top-level fields, ``pi={...}`` is merged into the production identifiers."""
    base = {
        "schema": "udigate.item/1",
        "record_id": "20261123T080000.123456Z/17",
        "site": "suzhou",
        "line": "line-2",
        "job": "MO-2026-0042",
        "run_id": "20261123T080000.123456Z",
        "item_id": 17,
        "timestamp": "2026-11-23T08:00:01.250Z",
        "decided_at": "2026-11-23T08:00:01.262Z",
        "verdict": "pass",
        "result_code": 1,
        "reasons": [],
        "issuer": "GS1",
        "di": GTIN,
        "pi": {"lot": "LOT1", "serial": "SER0001", "production_date": "2026-11-01", "expiry": "2028-12-31"},
        "hri": "(01)06901234567892(17)281231(10)LOT1(21)SER0001",
        "fields": {"01": GTIN, "17": "281231", "10": "LOT1", "21": "SER0001"},
        "digital_link": f"https://id.gs1.org/01/{GTIN}/10/LOT1/21/SER0001",
        "grade": {"overall": 3.5, "letter": "B", "quality": "3.5/08/660", "method": "iso15415", "parameters": {}},
        "data_b64": "XWQyMDEwNjkwMTIzNDU2Nzg5Mg==",
    }
    pi = overrides.pop("pi", {})
    base.update(overrides)
    base["pi"] = {**base["pi"], **pi}
    return base


def rejected(**overrides) -> dict:
    reasons = [{"code": "grade_below_min", "text": "print quality grade below the line's minimum", "detail": "C < B"}]
    return record(**{"verdict": "reject", "result_code": 4, "reasons": reasons, **overrides})


def no_code() -> dict:
    """A pack with no readable code: no di, pi, fields or digital_link."""
    rec = rejected(reasons=[{"code": "no_read", "text": "no readable Data Matrix on the pack", "detail": ""}])
    for key in ("issuer", "di", "pi", "hri", "fields", "digital_link", "grade", "data_b64"):
        rec.pop(key)
    return rec


def event(rec: dict, **kwargs) -> dict:
    result = object_event(rec, read_point=READ_POINT, **kwargs)
    assert result is not None
    return result


# --- why: verdict → action, business step, disposition


def test_passed_item_is_commissioned_active():
    ev = event(record())
    assert ev["type"] == "ObjectEvent"
    assert (ev["action"], ev["bizStep"], ev["disposition"]) == ("ADD", "commissioning", "active")


def test_rejected_item_is_inspected_non_conformant():
    ev = event(rejected())
    assert (ev["action"], ev["bizStep"], ev["disposition"]) == ("OBSERVE", "inspecting", "non_conformant")


def test_step_table_is_data_and_immutable():
    assert set(epcis.STEPS) == {"pass", "reject"}
    with pytest.raises(TypeError):
        epcis.STEPS["rework"] = epcis.STEPS["reject"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        epcis.STEPS["pass"].action = "OBSERVE"  # type: ignore[misc]
    with pytest.raises(TypeError):
        epcis.PRIVATE_AGENCIES["IFA"] = "ifa"  # type: ignore[index]


# --- when and where


def test_time_where_and_context_fields():
    ev = event(record(), biz_location=BIZ_LOCATION)
    assert ev["eventTime"] == "2026-11-23T08:00:01.250Z"
    assert ev["eventTimeZoneOffset"] == "+00:00"
    assert ev["readPoint"] == {"id": READ_POINT}
    assert ev["bizLocation"] == {"id": BIZ_LOCATION}
    assert ev["bizTransactionList"] == [
        {"type": "prodorder", "bizTransaction": "urn:udigate:prodorder:suzhou:MO-2026-0042"}
    ]
    assert "@context" not in ev  # the document carries it


def test_optional_location_and_order_are_left_out():
    ev = event(record(job=None))
    assert "bizLocation" not in ev
    assert "bizTransactionList" not in ev


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-23T08:00:01.250+00:00", "2026-11-23T08:00:01.250Z"),
        ("2026-11-23T16:00:01.25+08:00", "2026-11-23T08:00:01.250Z"),
        ("2026-11-23T08:00:01Z", "2026-11-23T08:00:01.000Z"),
    ],
)
def test_event_time_is_utc_with_milliseconds(timestamp, expected):
    assert event(record(timestamp=timestamp))["eventTime"] == expected


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [("2026-11-23T08:00:01.250", "no UTC offset"), ("yesterday", "not an ISO 8601"), (None, "date-time string")],
)
def test_bad_timestamp_is_refused_with_reason(timestamp, reason):
    with pytest.raises(EpcisError, match=reason) as caught:
        event(record(timestamp=timestamp))
    assert "20261123T080000.123456Z/17" in str(caught.value)  # the record is named


@pytest.mark.parametrize("read_point", ["line 2 station", "", "station-3", None])
def test_read_point_must_be_a_uri(read_point):
    with pytest.raises(EpcisError, match="read point must be an absolute URI"):
        object_event(record(), read_point=read_point)  # type: ignore[arg-type]


def test_business_location_must_be_a_uri():
    with pytest.raises(EpcisError, match="business location"):
        object_event(record(), read_point=READ_POINT, biz_location="hall 4")


# --- what: GS1 items


def test_serialised_gs1_item_is_its_sgtin_digital_link_without_lot():
    ev = event(record())
    assert ev["epcList"] == [f"https://id.gs1.org/01/{GTIN}/21/SER0001"]
    assert "quantityList" not in ev


def test_gs1_digital_link_issuer_maps_like_an_element_string():
    assert event(record(issuer="GS1 Digital Link"))["epcList"] == event(record())["epcList"]


def test_gs1_item_with_lot_only_is_one_unit_of_its_lgtin():
    ev = event(record(pi={"serial": None}))
    assert "epcList" not in ev
    assert ev["quantityList"] == [{"epcClass": f"https://id.gs1.org/01/{GTIN}/10/LOT1", "quantity": 1}]


def test_gs1_item_without_lot_or_serial_is_one_unit_of_its_gtin():
    ev = event(record(pi={"serial": None, "lot": None}))
    assert ev["quantityList"] == [{"epcClass": f"https://id.gs1.org/01/{GTIN}", "quantity": 1}]


def test_short_gtin_is_padded_to_14_digits():
    ev = event(record(di="6901234567892"))  # GTIN-13
    assert ev["epcList"] == [f"https://id.gs1.org/01/{GTIN}/21/SER0001"]


def test_reserved_characters_in_serial_and_lot_are_percent_encoded():
    ev = event(record(pi={"serial": "A/1%2&b+c"}))
    assert ev["epcList"] == [f"https://id.gs1.org/01/{GTIN}/21/A%2F1%252%26b%2Bc"]
    ev = event(record(pi={"serial": None, "lot": "L 1/2"}))
    assert ev["quantityList"][0]["epcClass"] == f"https://id.gs1.org/01/{GTIN}/10/L%201%2F2"


@pytest.mark.parametrize(
    ("di", "reason"),
    [("06901234567891", "check digit is wrong"), ("06901234567", "not a GTIN"), ("ABC", "not a GTIN")],
)
def test_gs1_di_that_is_not_a_valid_gtin_is_refused(di, reason):
    with pytest.raises(EpcisError, match=reason):
        event(record(di=di))


# --- what: other issuing agencies


@pytest.mark.parametrize(
    ("issuer", "agency", "di"),
    [
        ("MA", "ma", "MA.156.M0.100001.1"),
        ("HIBC", "hibc", "A123PROD1"),
        ("AHM", "ahm", "AHM-0042"),
        ("ISBT 128", "isbt128", "E0713V00"),
    ],
)
def test_non_gs1_serialised_item_is_a_private_urn(issuer, agency, di):
    rec = record(issuer=issuer, di=di, fields={}, digital_link=None, pi={"serial": "S-77"})
    ev = event(rec)
    assert ev["epcList"] == [f"urn:udigate:udi:{agency}:{di}:ser:S-77"]
    assert event(copy.deepcopy(rec)) == ev  # deterministic


def test_non_gs1_item_without_serial_is_one_unit_of_its_class():
    ev = event(record(issuer="HIBC", di="A123PROD1", pi={"serial": None}))
    assert ev["quantityList"] == [{"epcClass": "urn:udigate:udi:hibc:A123PROD1:lot:LOT1", "quantity": 1}]
    ev = event(record(issuer="HIBC", di="A123PROD1", pi={"serial": None, "lot": None}))
    assert ev["quantityList"] == [{"epcClass": "urn:udigate:udi:hibc:A123PROD1", "quantity": 1}]


def test_private_urn_fields_cannot_run_together():
    ev = event(record(issuer="MA", di="MA:1", pi={"serial": "ser:2"}))
    assert ev["epcList"] == ["urn:udigate:udi:ma:MA%3A1:ser:ser%3A2"]


def test_issuer_without_identifier_scheme_is_refused():
    with pytest.raises(EpcisError, match="issuer 'unknown' has no identifier scheme"):
        event(record(issuer="unknown"))


# --- no code, no event


def test_item_without_a_code_has_no_event():
    assert object_event(no_code(), read_point=READ_POINT) is None
    assert object_event(record(di=None), read_point=READ_POINT) is None


# --- ILMD


def test_commissioning_carries_lot_and_expiry_as_ilmd():
    assert event(record())["ilmd"] == {"cbvmda:lotNumber": "LOT1", "cbvmda:itemExpirationDate": "2028-12-31"}


def test_ilmd_holds_only_what_the_code_has():
    assert event(record(pi={"lot": None}))["ilmd"] == {"cbvmda:itemExpirationDate": "2028-12-31"}
    assert event(record(pi={"expiry": None}))["ilmd"] == {"cbvmda:lotNumber": "LOT1"}
    assert "ilmd" not in event(record(pi={"lot": None, "expiry": None}))


def test_rejected_item_has_no_ilmd():
    assert "ilmd" not in event(rejected())


@pytest.mark.parametrize("expiry", ["281231", "2028-02-30", "31.12.2028"])
def test_bad_expiry_is_refused(expiry):
    with pytest.raises(EpcisError, match="pi.expiry"):
        event(record(pi={"expiry": expiry}))


# --- user extensions


def test_udigate_extension_fields():
    ev = event(rejected())
    assert ev["udigate:recordID"] == "20261123T080000.123456Z/17"
    assert ev["udigate:verdict"] == "reject"
    assert ev["udigate:resultCode"] == 4
    assert ev["udigate:reasons"] == [
        {
            "udigate:code": "grade_below_min",
            "udigate:text": "print quality grade below the line's minimum",
            "udigate:detail": "C < B",
        }
    ]
    assert ev["udigate:grade"] == {
        "udigate:overall": 3.5,
        "udigate:letter": "B",
        "udigate:quality": "3.5/08/660",
        "udigate:method": "iso15415",
    }


def test_every_extension_key_is_prefixed():
    ev = event(rejected())
    standard = {"type", "eventID", "eventTime", "eventTimeZoneOffset", "epcList", "action", "bizStep"}
    standard |= {"disposition", "readPoint", "bizTransactionList"}
    assert all(key.startswith("udigate:") for key in set(ev) - standard)
    nested = [*ev["udigate:reasons"], ev["udigate:grade"]]
    assert all(key.startswith("udigate:") for part in nested for key in part)


def test_record_without_grade_has_no_grade_extension():
    rec = record()
    del rec["grade"]
    assert "udigate:grade" not in event(rec)


# --- event ID


def test_event_id_is_the_documented_name_based_uuid():
    ev = event(record())
    name = "urn:udigate:record:suzhou:line-2:20261123T080000.123456Z%2F17"
    namespace = uuid.UUID("61d8283c-b5a3-44c5-bff2-7922f05ca34d")  # changing it changes every event ID
    assert ev["eventID"] == f"urn:uuid:{uuid.uuid5(namespace, name)}"
    assert epcis.EVENT_ID_NAMESPACE == namespace
    parsed = uuid.UUID(ev["eventID"].removeprefix("urn:uuid:"))
    assert (parsed.version, parsed.variant) == (5, uuid.RFC_4122)
    assert not ev["eventID"].startswith("ni:")  # not to be taken for a CBV event hash


def test_replayed_record_gets_the_same_event_id():
    original = record()
    replay = json.loads(json.dumps(original))  # as read back from the broker or the outbox
    assert event(replay)["eventID"] == event(original)["eventID"]
    assert event(replay) == event(original)
    # the ID names the record, not the read point the event is published for
    other_station = object_event(replay, read_point="urn:epc:id:sgln:6901234.00001.9")
    assert other_station is not None and other_station["eventID"] == event(original)["eventID"]


def test_different_records_get_different_event_ids():
    ids = {
        event_id(record()),
        event_id(record(record_id="20261123T080000.123456Z/18")),
        event_id(record(site="shanghai")),
        event_id(record(line="line-3")),
        event_id(record(site="suzhou:line-2", line="x")),  # ":" in a value cannot shift the fields
        event_id(record(site="suzhou", line="line-2:x")),
    }
    assert len(ids) == 6


def test_event_id_needs_site_line_and_record_id():
    for key in ("site", "line", "record_id"):
        with pytest.raises(EpcisError, match=f"{key} must be a non-empty string"):
            event(record(**{key: None}))


# --- records that cannot be mapped


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"schema": "udigate.item/2"}, "record schema 'udigate.item/2'"),
        ({"verdict": "maybe"}, "verdict 'maybe' is not one of pass, reject"),
        ({"pi": None}, "needs 'pi'"),
        ({"result_code": "4"}, "result_code must be an integer"),
        ({"job": 42}, "job"),
        ({"reasons": [{"text": "no code"}]}, r"reasons\[0\]"),
        ({"record_id": ""}, "record_id must be a non-empty string"),
    ],
)
def test_unmappable_record_is_refused_with_reason(overrides, reason):
    rec = record()
    rec.update(overrides)
    with pytest.raises(EpcisError, match=reason):
        event(rec)


def test_serial_must_be_text():
    with pytest.raises(EpcisError, match="pi.serial must be a non-empty string"):
        event(record(pi={"serial": ""}))


def test_record_is_not_changed():
    rec = rejected()
    before = copy.deepcopy(rec)
    event(rec, biz_location=BIZ_LOCATION)
    assert rec == before


# --- the document


def test_document_envelope():
    events = [event(record()), event(rejected())]
    doc = document(events, "2026-11-23T16:00:02+08:00")
    assert doc["@context"] == [
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        {"udigate": epcis.NAMESPACE},
    ]
    assert doc["type"] == "EPCISDocument"
    assert doc["schemaVersion"] == "2.0"
    assert doc["creationDate"] == "2026-11-23T08:00:02.000Z"
    assert doc["epcisBody"] == {"eventList": events}
    json.dumps(doc, allow_nan=False)  # JSON-ready


def test_document_copies_its_events():
    events = [event(record())]
    doc = document(events, "2026-11-23T08:00:02Z")
    events[0]["epcList"].append("urn:x:y")
    assert doc["epcisBody"]["eventList"][0]["epcList"] == [f"https://id.gs1.org/01/{GTIN}/21/SER0001"]


def test_document_of_no_events_is_allowed():
    assert document([], "2026-11-23T08:00:02Z")["epcisBody"] == {"eventList": []}


def test_document_refuses_a_missing_event_with_a_hint():
    with pytest.raises(EpcisError, match="event 1 is NoneType.*leave those out"):
        document([event(record()), object_event(no_code(), read_point=READ_POINT)], "2026-11-23T08:00:02Z")


def test_document_needs_a_creation_time_with_offset():
    with pytest.raises(EpcisError, match="creation date .* has no UTC offset"):
        document([], "2026-11-23T08:00:02")


# --- the EPCIS 2.0 JSON schema


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema missing: install the test extra (jsonschema[format-nongpl])"
    )
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    # without its format packages jsonschema skips "uri" and "date-time" silently
    missing = {"uri", "date-time"} - set(checker.checkers)
    assert not missing, f"format checks {missing} unavailable: install jsonschema[format-nongpl]"
    return jsonschema.Draft7Validator(schema, format_checker=checker)


def errors(validator, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def test_document_is_valid_epcis_2(validator):
    events = [
        event(record(), biz_location=BIZ_LOCATION),  # commissioning, SGTIN, ILMD, order
        event(rejected(pi={"serial": None})),  # inspecting, LGTIN quantity
        event(record(pi={"serial": None, "lot": None}, job=None)),  # GTIN quantity, no ILMD lot
        event(record(issuer="HIBC", di="A123PROD1", pi={"serial": "S/77"})),  # private URN
        event(rejected(issuer="MA", di="MA.156.M0.100001.1", pi={"serial": None}, grade=None)),
    ]
    doc = document(events, "2026-11-23T08:00:02Z")
    assert errors(validator, doc) == []
    assert errors(validator, json.loads(json.dumps(doc))) == []


def test_single_event_with_context_is_valid_epcis_2(validator):
    ev = {"@context": epcis.jsonld_context(), **event(record())}
    assert errors(validator, ev) == []
    assert errors(validator, event(record())) == [": '@context' is a required property"]  # alone, it needs one


def _first_event(doc: dict) -> dict:
    return doc["epcisBody"]["eventList"][0]


def _to_quantity(doc: dict, element: dict) -> None:
    del _first_event(doc)["epcList"]
    _first_event(doc)["quantityList"] = [element]


EVENT = ("epcisBody", "eventList", 0)
# (what is wrong, how to break a valid document, where in the document the schema must object, the end
# of the schema path of that objection: the keyword, with the rule it belongs to where that tells more)
TAMPERS = [
    ("ILMD with OBSERVE", lambda d: _first_event(d).update(action="OBSERVE"), EVENT, "anyOf"),
    ("extension without namespace", lambda d: _first_event(d).update(verdict="pass"), EVENT, "propertyNames/anyOf"),
    (
        "ILMD attribute without namespace",
        lambda d: _first_event(d)["ilmd"].update(lotNumber="L"),
        (*EVENT, "ilmd"),
        "propertyNames/format",
    ),
    ("document field without namespace", lambda d: d.update(gateway="udigate"), (), "propertyNames/anyOf"),
    ("no @context", lambda d: d.pop("@context"), (), "required"),
    ("no epcList or quantityList", lambda d: _first_event(d).pop("epcList"), EVENT, "anyOf"),
    ("EPC that is not a URI", lambda d: _first_event(d).update(epcList=["SER 0001"]), (*EVENT, "epcList", 0), "format"),
    (
        "quantity as text",
        lambda d: _to_quantity(d, {"epcClass": "urn:x:y", "quantity": "1"}),
        (*EVENT, "quantityList", 0, "quantity"),
        "type",
    ),
    (
        "eventTime not ISO 8601",
        lambda d: _first_event(d).update(eventTime="23.11.2026 08:00"),
        (*EVENT, "eventTime"),
        "format",
    ),
    ("no eventTimeZoneOffset", lambda d: _first_event(d).pop("eventTimeZoneOffset"), EVENT, "required"),
    ("unknown action", lambda d: _first_event(d).update(action="COMMISSION"), (*EVENT, "action"), "enum"),
    ("unknown bare bizStep", lambda d: _first_event(d).update(bizStep="grading"), (*EVENT, "bizStep"), "anyOf"),
    (
        "bizStep as EPCIS 1.x URN",
        lambda d: _first_event(d).update(bizStep="urn:epcglobal:cbv:bizstep:commissioning"),
        (*EVENT, "bizStep"),
        "anyOf",
    ),
    (
        "unknown bare disposition",
        lambda d: _first_event(d).update(disposition="faulty"),
        (*EVENT, "disposition"),
        "anyOf",
    ),
    (
        "transaction type as EPCIS 1.x URN",
        lambda d: _first_event(d)["bizTransactionList"][0].update(type="urn:epcglobal:cbv:btt:prodorder"),
        (*EVENT, "bizTransactionList", 0, "type"),
        "anyOf",
    ),
    (
        "readPoint that is not a URI",
        lambda d: _first_event(d).update(readPoint={"id": "station 3"}),
        (*EVENT, "readPoint", "id"),
        "format",
    ),
    ("eventID that is not a URI", lambda d: _first_event(d).update(eventID="event 17"), (*EVENT, "eventID"), "format"),
    ("schemaVersion not a version", lambda d: d.update(schemaVersion="two"), ("schemaVersion",), "pattern"),
]


@pytest.mark.parametrize(("change", "where", "rule"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS])
def test_schema_rejects_each_tampered_document(validator, change, where, rule):
    """The vendored schema really enforces the rules the mapping is built around: each change alone
    makes a valid document invalid, and the schema objects at the changed place for that reason."""
    doc = document([event(record(), biz_location=BIZ_LOCATION)], "2026-11-23T08:00:02Z")
    assert errors(validator, doc) == []  # the control
    change(doc)
    found = [(tuple(e.absolute_path), "/".join(map(str, e.schema_path))) for e in validator.iter_errors(doc)]
    assert any(path == where and schema_path.endswith(rule) for path, schema_path in found), found


def test_schema_objects_to_ilmd_only_because_of_the_action(validator):
    """The OBSERVE tamper above fails for the ILMD: the same event without ILMD passes."""
    doc = document([event(record())], "2026-11-23T08:00:02Z")
    _first_event(doc).update(action="OBSERVE")
    del _first_event(doc)["ilmd"]
    assert errors(validator, doc) == []
