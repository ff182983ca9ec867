"""GS1 EPCIS 2.0 events (JSON-LD) from udigate item records: one ObjectEvent per identified pack.

A pure module: no I/O, no clock, no configuration. :func:`object_event` turns one item record
(the ``udigate.item/1`` JSON published on MQTT, see gateway/records.py) into one ObjectEvent,
:func:`document` wraps events in an EPCISDocument. Anything that cannot be mapped raises
:class:`EpcisError` naming the record and the reason; nothing is guessed.

Mapping (record → ObjectEvent)
------------------------------
- ``type`` "ObjectEvent"; ``eventTime`` the record's ``timestamp`` (the capture time) in UTC with
  milliseconds, ``eventTimeZoneOffset`` "+00:00" (the gateway records UTC).
- Why (the :data:`STEPS` table): a passed item is commissioned — ``action`` ADD, ``bizStep``
  commissioning, ``disposition`` active, with ILMD. A rejected item is inspected and found
  faulty — ``action`` OBSERVE, ``bizStep`` inspecting, ``disposition`` non_conformant (new in
  CBV 2.0), no ILMD. Commissioning is ADD, not OBSERVE: CBV 2.0 defines commissioning as an ADD
  step, and EPCIS 2.0 allows ``ilmd`` on an ObjectEvent only when the action is ADD (the JSON
  schema rejects ILMD with OBSERVE). Values are the bare CBV 2.0 names, which the EPCIS context
  expands to the web vocabulary (https://ref.gs1.org/cbv/BizStep-commissioning …).
- What, GS1 codes (issuer "GS1" or "GS1 Digital Link"; ``di`` is the GTIN): a serialised item is
  one ``epcList`` entry, the canonical GS1 Digital Link of its SGTIN,
  ``https://id.gs1.org/01/<gtin14>/21/<serial>`` — GTIN and serial only: the lot is not part of
  the key (it goes to ILMD), and the record's own ``digital_link`` (which may carry the lot) is
  not used. An item without serial is one unit of its class: ``quantityList`` with
  ``https://id.gs1.org/01/<gtin14>/10/<lot>`` (LGTIN), or ``…/01/<gtin14>`` without lot, and
  quantity 1 (no uom: a count of trade items). GTIN-8/12/13 are zero-padded to 14 digits; a
  GTIN whose check digit is wrong is an error, not a key.
- What, other issuing agencies (MA, HIBC, AHM, ISBT 128): no GS1 Digital Link or EPC URI exists
  for their keys, and EPCIS accepts any URI as an object identifier. We use a private URN in
  udigate's namespace, built only from the issuer, the DI and the serial (or lot), so the same
  pack always gets the same identifier and two agencies' DIs cannot collide:
  ``urn:udigate:udi:<agency>:<di>:ser:<serial>`` (instance, ``epcList``) and
  ``urn:udigate:udi:<agency>:<di>[:lot:<lot>]`` (class, ``quantityList``), ``<agency>`` from
  :data:`PRIVATE_AGENCIES`; every value is percent-encoded (RFC 3986, nothing but unreserved
  characters kept), so ``:`` inside a DI cannot shift the fields. The labels ``ser``/``lot``
  play the part of the Digital Link's ``21``/``10``.
- No code: a record without ``di`` (nothing readable on the pack) has no identifier EPCIS could
  carry, so :func:`object_event` returns ``None``: no event. The udigate record itself still
  reports the reject to the MES.
- Where: ``readPoint`` is ``{"id": read_point}``, ``bizLocation`` ``{"id": biz_location}`` when
  given; both must be URIs (an SGLN, a GS1 Digital Link for a GLN with extension, …).
- Why, transactions: when ``job`` is set, ``bizTransactionList`` holds the production order, type
  "prodorder" (the CBV 2.0 bare name; the EPCIS 2.0 context expands it to
  https://ref.gs1.org/cbv/BTT-prodorder; ``urn:epcglobal:cbv:btt:prodorder`` is the EPCIS 1.x
  form). Its identifier must be a URI; we have no GLN for the legacy CBV form
  ``urn:epcglobal:cbv:bt:<gln>:<id>``, so it is ``urn:udigate:prodorder:<site>:<job>``.
- ILMD (commissioning only): ``cbvmda:lotNumber`` and ``cbvmda:itemExpirationDate`` (the CBV
  master-data attributes urn:epcglobal:cbv:mda:…; the prefix ``cbvmda`` is declared by the EPCIS
  2.0 context) from ``pi.lot`` and ``pi.expiry``; absent values are left out, and so is ``ilmd``
  when both are.
- User extensions, namespace prefix ``udigate:`` = :data:`NAMESPACE` declared in the document's
  ``@context``: ``udigate:recordID``, ``udigate:verdict``, ``udigate:resultCode``,
  ``udigate:reasons`` (a list of ``{udigate:code, udigate:text, udigate:detail}``) and
  ``udigate:grade`` (``udigate:overall``, ``udigate:letter``, ``udigate:quality``,
  ``udigate:method``, ``udigate:refused`` where the record has them; the per-parameter detail
  stays in the udigate record). Nested keys carry the prefix too: the EPCIS context has no
  ``@vocab``, so a JSON-LD processor would drop bare ones.

Event ID
--------
``eventID`` is ``urn:uuid:<uuid>``, a name-based UUID version 5 (RFC 9562, SHA-1) in udigate's
namespace :data:`EVENT_ID_NAMESPACE`, of the name ``urn:udigate:record:<site>:<line>:<record_id>``
(each value percent-encoded like the private URNs, so ``:`` in a value cannot shift the fields).
It identifies the record: a replayed record (read back from the outbox or the broker) gets the
same event ID, so an EPCIS repository can refuse or ignore the duplicate, and site and line keep
two gateways' record ids apart. EPCIS 2.0 asks of an event ID only that it be a globally unique
URI.

It is deliberately not the CBV 2.0 event hash (``ni:///sha-256;…?ver=CBV2.0``, a digest of the
canonical pre-hash string of the event's contents): computing that needs a JSON-LD expansion and
the CBV canonicalisation rules (GS1 Digital Link normalisation, …), and its reference
implementation (PyPI ``epcis-event-hash-generator``) declares itself prototype software and
depends on Flask, PyLD and lxml. An ID of the ``ni:`` form that is not the CBV hash would make
consumers that verify hashes reject it, so the ID says what it is: a UUID.

The ``@context`` of a document is :func:`jsonld_context`: the EPCIS 2.0 context and the
``udigate`` prefix. An event published on its own needs the same ``@context`` added.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import MappingProxyType
from urllib.parse import quote

RECORD_SCHEMA = "udigate.item/1"  # the only record version this module maps
EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
NAMESPACE = "urn:udigate:epcis:"  # the IRI behind the ``udigate:`` prefix of the extension fields
SCHEMA_VERSION = "2.0"
TIME_ZONE_OFFSET = "+00:00"
DIGITAL_LINK = "https://id.gs1.org"  # the canonical GS1 Digital Link domain
PRIVATE_UDI = "urn:udigate:udi"
PRODUCTION_ORDER = "urn:udigate:prodorder"
RECORD_NAME = "urn:udigate:record"  # the name an event ID is derived from: RECORD_NAME:<site>:<line>:<record_id>
# namespace of the name-based (version 5) event IDs; a fixed random UUID, never to change
EVENT_ID_NAMESPACE = uuid.UUID("61d8283c-b5a3-44c5-bff2-7922f05ca34d")


class EpcisError(ValueError):
    """A record that cannot be mapped to an EPCIS event; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Step:
    """The "why" of an event: what the gateway's verdict means in EPCIS/CBV terms."""

    action: str  # EPCIS action: ADD, OBSERVE or DELETE
    biz_step: str  # CBV 2.0 business step (bare name)
    disposition: str  # CBV 2.0 disposition (bare name)
    ilmd: bool  # whether the event carries instance/lot master data (EPCIS: only with ADD)


STEPS: Mapping[str, Step] = MappingProxyType(
    {
        "pass": Step(action="ADD", biz_step="commissioning", disposition="active", ilmd=True),
        "reject": Step(action="OBSERVE", biz_step="inspecting", disposition="non_conformant", ilmd=False),
    }
)

GS1_ISSUERS = frozenset({"GS1", "GS1 Digital Link"})

# issuing agency (the record's ``issuer``) → the agency label in the private URN
PRIVATE_AGENCIES: Mapping[str, str] = MappingProxyType(
    {"MA": "ma", "HIBC": "hibc", "AHM": "ahm", "ISBT 128": "isbt128"}
)

# ILMD attribute of each production identifier (CBV master data, prefix declared by the EPCIS context)
ILMD_ATTRIBUTES: Mapping[str, str] = MappingProxyType(
    {"lot": "cbvmda:lotNumber", "expiry": "cbvmda:itemExpirationDate"}
)

# grade keys of the record carried in ``udigate:grade`` (record key → extension local name)
GRADE_FIELDS: Mapping[str, str] = MappingProxyType(
    {"overall": "overall", "letter": "letter", "quality": "quality", "method": "method", "refused": "refused"}
)

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


def jsonld_context() -> list:
    """The ``@context`` of a udigate EPCIS document (a new list on each call)."""
    return [EPCIS_CONTEXT, {"udigate": NAMESPACE}]


def event_id(record: Mapping) -> str:
    """The event ID of a record's event: ``urn:uuid:`` and the UUIDv5 of site, line and record id
    in :data:`EVENT_ID_NAMESPACE` (see the module docstring; not the CBV 2.0 event hash)."""
    name = ":".join([RECORD_NAME, *(_encode(_text(record, key)) for key in ("site", "line", "record_id"))])
    return uuid.uuid5(EVENT_ID_NAMESPACE, name).urn


def object_event(record: Mapping, *, read_point: str, biz_location: str | None = None) -> dict | None:
    """The ObjectEvent of one item record, or None when the pack had no readable code (no ``di``).

    ``read_point``: URI of the inspection station; ``biz_location``: URI of the business
    location (the packaging line or plant), optional. Raises :class:`EpcisError` when the
    record cannot be mapped, rejected packs included: a code whose key is unusable (a GS1 DI
    with a wrong check digit, an issuer without identifier scheme) has no identifier to report
    it under, so the caller logs the error and publishes no event for that pack.
    """
    if not isinstance(record, Mapping):
        raise EpcisError(f"an item record is a JSON object, not {type(record).__name__}")
    name = record.get("record_id")
    try:
        return _object_event(record, read_point, biz_location)
    except EpcisError as error:
        raise EpcisError(f"record {name!r}: {error}") from None


def document(events: list[dict], created: str) -> dict:
    """An EPCISDocument holding ``events`` (copied), created at ``created`` (ISO 8601 with offset).

    :func:`object_event` returns None for packs without a code: leave those out.
    """
    if not isinstance(events, list):
        raise EpcisError(f"events must be a list, not {type(events).__name__}")
    for index, event in enumerate(events):
        if not isinstance(event, Mapping):
            hint = " (object_event returns None for packs without a code: leave those out)" if event is None else ""
            raise EpcisError(f"event {index} is {type(event).__name__}, not an event{hint}")
    return {
        "@context": jsonld_context(),
        "type": "EPCISDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": _utc_time(created, "creation date"),
        "epcisBody": {"eventList": [copy.deepcopy(dict(event)) for event in events]},
    }


def _object_event(record: Mapping, read_point: str, biz_location: str | None) -> dict | None:
    schema = record.get("schema")
    if schema != RECORD_SCHEMA:
        raise EpcisError(f"record schema {schema!r} is not {RECORD_SCHEMA!r}")
    if record.get("di") is None:
        return None  # nothing readable on the pack: no identifier, no event
    verdict = record.get("verdict")
    step = STEPS.get(verdict) if isinstance(verdict, str) else None
    if step is None:
        raise EpcisError(f"verdict {verdict!r} is not one of {', '.join(STEPS)}")
    pi = _production_identifiers(record)
    instance, epc_class = _identifiers(record, pi)

    event: dict = {
        "type": "ObjectEvent",
        "eventID": event_id(record),
        "eventTime": _utc_time(record.get("timestamp"), "timestamp"),
        "eventTimeZoneOffset": TIME_ZONE_OFFSET,
    }
    if instance is not None:
        event["epcList"] = [instance]
    else:
        event["quantityList"] = [{"epcClass": epc_class, "quantity": 1}]
    event.update(action=step.action, bizStep=step.biz_step, disposition=step.disposition)
    event["readPoint"] = {"id": _uri(read_point, "read point")}
    if biz_location is not None:
        event["bizLocation"] = {"id": _uri(biz_location, "business location")}
    job = record.get("job")
    if job is not None:
        event["bizTransactionList"] = [{"type": "prodorder", "bizTransaction": _production_order(record, job)}]
    if step.ilmd:
        ilmd = {attribute: pi[key] for key, attribute in ILMD_ATTRIBUTES.items() if pi[key] is not None}
        if ilmd:
            event["ilmd"] = ilmd
    event.update(_extensions(record))
    return event


def _production_identifiers(record: Mapping) -> dict[str, str | None]:
    """lot, serial and expiry (ISO date) of ``pi``; None where the code has none."""
    pi = record.get("pi")
    if not isinstance(pi, Mapping):
        raise EpcisError(f"a record with a DI needs 'pi' (lot, serial, expiry …), not {pi!r}")
    values = {key: _optional_text(pi, key, "pi.") for key in ("lot", "serial")}
    expiry = pi.get("expiry")
    values["expiry"] = None if expiry is None else _iso_date(expiry, "pi.expiry")
    return values


def _identifiers(record: Mapping, pi: Mapping) -> tuple[str | None, str]:
    """(instance URI or None when the item has no serial, class URI)."""
    issuer = record.get("issuer")
    if not isinstance(issuer, str):
        raise EpcisError(f"a record with a DI needs its issuer, not {issuer!r}")
    di = _text(record, "di")
    lot, serial = pi["lot"], pi["serial"]
    if issuer in GS1_ISSUERS:
        key = f"{DIGITAL_LINK}/01/{_gtin14(di)}"
        instance = None if serial is None else f"{key}/21/{_encode(serial)}"
        return instance, key if lot is None else f"{key}/10/{_encode(lot)}"
    agency = PRIVATE_AGENCIES.get(issuer)
    if agency is None:
        known = ", ".join(sorted(GS1_ISSUERS | set(PRIVATE_AGENCIES)))
        raise EpcisError(f"issuer {issuer!r} has no identifier scheme (known: {known})")
    key = f"{PRIVATE_UDI}:{agency}:{_encode(di)}"
    instance = None if serial is None else f"{key}:ser:{_encode(serial)}"
    return instance, key if lot is None else f"{key}:lot:{_encode(lot)}"


def _production_order(record: Mapping, job: object) -> str:
    if not isinstance(job, str) or not job.strip():
        raise EpcisError(f"job (the production order) must be a non-empty string or null, not {job!r}")
    return f"{PRODUCTION_ORDER}:{_encode(_text(record, 'site'))}:{_encode(job)}"


def _extensions(record: Mapping) -> dict:
    result_code = record.get("result_code")
    if not isinstance(result_code, int) or isinstance(result_code, bool):
        raise EpcisError(f"result_code must be an integer, not {result_code!r}")
    reasons = record.get("reasons", [])
    if not isinstance(reasons, list):
        raise EpcisError(f"reasons must be a list, not {type(reasons).__name__}")
    extensions = {
        "udigate:recordID": _text(record, "record_id"),
        "udigate:verdict": record["verdict"],
        "udigate:resultCode": result_code,
        "udigate:reasons": [_reason(reason, index) for index, reason in enumerate(reasons)],
    }
    grade = record.get("grade")
    if grade is not None:
        if not isinstance(grade, Mapping):
            raise EpcisError(f"grade must be an object, not {type(grade).__name__}")
        extensions["udigate:grade"] = {
            f"udigate:{name}": grade[key] for key, name in GRADE_FIELDS.items() if grade.get(key) is not None
        }
    return extensions


def _reason(reason: object, index: int) -> dict:
    if not isinstance(reason, Mapping) or not isinstance(reason.get("code"), str):
        raise EpcisError(f"reasons[{index}] must be an object with a string 'code', not {reason!r}")
    return {f"udigate:{key}": reason[key] for key in ("code", "text", "detail") if reason.get(key) is not None}


def _text(mapping: Mapping, key: str, prefix: str = "") -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value.strip():
        raise EpcisError(f"{prefix}{key} must be a non-empty string, not {value!r}")
    return value


def _optional_text(mapping: Mapping, key: str, prefix: str = "") -> str | None:
    return None if mapping.get(key) is None else _text(mapping, key, prefix)


def _utc_time(value: object, what: str) -> str:
    """An ISO 8601 date-time with an offset, as UTC with milliseconds and ``Z``."""
    if not isinstance(value, str):
        raise EpcisError(f"{what} must be an ISO 8601 date-time string, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EpcisError(f"{what} {value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise EpcisError(f"{what} {value!r} has no UTC offset (use Z or +00:00)")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_date(value: object, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise EpcisError(f"{what} must be an ISO date YYYY-MM-DD, not {value!r}")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise EpcisError(f"{what} {value!r} is not a valid date") from None


def _uri(value: object, what: str) -> str:
    if not isinstance(value, str) or not _URI.fullmatch(value):
        raise EpcisError(f"the {what} must be an absolute URI (scheme:…, no spaces), not {value!r}")
    return value


def _gtin14(di: str) -> str:
    """The GTIN as 14 digits; its check digit verified (GS1 General Specifications 7.9.1)."""
    if not di.isascii() or not di.isdigit() or len(di) not in (8, 12, 13, 14):
        raise EpcisError(f"GS1 DI {di!r} is not a GTIN (8, 12, 13 or 14 digits)")
    gtin = di.zfill(14)
    total = sum(int(digit) * (3 if position % 2 == 0 else 1) for position, digit in enumerate(gtin[:13]))
    if (10 - total % 10) % 10 != int(gtin[13]):
        raise EpcisError(f"GS1 DI {di!r}: the GTIN check digit is wrong")
    return gtin


def _encode(value: str) -> str:
    """Percent-encode everything but the RFC 3986 unreserved characters, as GS1 Digital Link
    requires for AI values (``/``, ``%``, ``&``, ``+`` … in serials and lots)."""
    return quote(value, safe="")
