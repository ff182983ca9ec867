"""The UDID product master: real SQLite files and real ZIPs written by tests/udid_release.py."""

import io
import re
import sqlite3
import struct
import threading
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from datetime import date

import pytest

from gateway.udid import ProductMaster, SanitisingReader, UdidImportError, import_releases
from tests.udid_release import (
    CHANGED,
    Packing,
    changed,
    deleted,
    iter_devices,
    synthetic_device,
    write_day_update,
    write_full_release,
    write_release,
    write_xml,
)

N = 240  # devices in the small full release: every kind of device of the generator occurs


@pytest.fixture
def full(tmp_path):
    return write_full_release(tmp_path, N, parts=3)


@pytest.fixture
def master(tmp_path):
    masters = []

    def make(db):
        masters.append(ProductMaster(db))
        return masters[-1]

    yield make
    for m in masters:
        m.close()


def ma_device():
    """The real MA DI from the reference notes, with a box of 10 and a case of 6 boxes."""
    unit = "MA.156.M0.100350.01004YA10017"
    return replace(
        synthetic_device(99_999),
        record_key="MA-0001",
        unit_di=unit,
        coding_system="MA码（IDcode）",
        packings=(
            Packing("MA.156.M0.100350.11004YA10016", "盒", 10, unit),
            Packing("MA.156.M0.100350.21004YA10015", "箱", 6, "MA.156.M0.100350.11004YA10016"),
        ),
    )


def test_full_release_lookups_unit_box_and_case(tmp_path, full, master):
    db = tmp_path / "udigate.db"
    progress = []
    report = import_releases([full], db, progress=lambda source, n: progress.append((source, n)))
    assert (report.records, report.devices_added, report.skipped, report.problems) == (N, N, 0, ())
    assert [s.split("!")[1].split("_Of")[0] for s, _ in progress] == [
        "UDID_FULL_DOWNLOAD_PART1",
        "UDID_FULL_DOWNLOAD_PART2",
        "UDID_FULL_DOWNLOAD_PART3",
    ]  # PART order, although the ZIP stores part 3 first
    assert progress[-1][1] == N
    m = master(db)
    assert m.count() == N
    seen_levels = set()
    for d in iter_devices(0, N):
        unit = m.lookup(d.unit_di)
        assert unit is not None, d.unit_di
        assert (unit.di, unit.primary_di, unit.package_level, unit.units_per_package) == (
            d.unit_di,
            d.unit_di,
            "unit",
            1,
        )
        assert (unit.name, unit.model, unit.ybbm or "", unit.coding_system) == (
            d.name,
            d.model,
            d.ybbm,
            d.coding_system,
        )
        assert (unit.pi_lot, unit.pi_serial, unit.pi_production_date, unit.pi_expiry) == (
            d.pi_lot,
            d.pi_serial,
            d.pi_production_date,
            d.pi_expiry,
        )
        assert (unit.registration, unit.registrant, unit.record_key, unit.version) == (
            d.registration,
            d.registrant,
            d.record_key,
            d.version,
        )
        for p in d.packings:
            package = m.lookup(p.di)
            assert (package.di, package.primary_di, package.package_level) == (p.di, d.unit_di, p.level)
            assert package.units_per_package == d.units_in(p.di)
            seen_levels.add(p.level)
        if d.use_unit_di:
            use = m.lookup(d.use_unit_di)
            assert (use.package_level, use.units_per_package, use.primary_di) == ("use_unit", None, d.unit_di)
    assert seen_levels == {"盒", "箱"}
    # one concrete chain, spelled out: a case of 10 boxes of 20 units
    d = synthetic_device(2)
    assert [(p.level, p.quantity) for p in d.packings] == [("盒", 20), ("箱", 10)]
    assert [(p.level, m.lookup(p.di).units_per_package) for p in d.packings] == [("盒", 20), ("箱", 200)]
    assert m.lookup(synthetic_device(3).unit_di).ybbm is None  # empty ybbm
    assert m.lookup("06901234567892") is None
    assert m.lookup(f" {d.unit_di} ").di == d.unit_di  # stray whitespace from a scanner
    [record] = m.last_imports()
    assert (record.file, record.kind, record.status, record.added, record.error) == (full.name, "full", "done", N, None)
    assert len(record.sha256) == 64


def test_ma_di_and_its_packages(tmp_path, master):
    release = write_release(tmp_path / "UDID_FULL_RELEASE_20250630.zip", [ma_device(), synthetic_device(1)])
    import_releases([release], tmp_path / "u.db")
    m = master(tmp_path / "u.db")
    unit, box, case = (m.lookup(di) for di in ("MA.156.M0.100350.01004YA10017", *(p.di for p in ma_device().packings)))
    assert (unit.coding_system, unit.package_level, unit.units_per_package) == ("MA码（IDcode）", "unit", 1)
    assert (box.package_level, box.units_per_package, case.package_level, case.units_per_package) == (
        "盒",
        10,
        "箱",
        60,
    )


def test_withdrawn_device_reports_its_date(tmp_path, full, master):
    import_releases([full], tmp_path / "u.db")
    d = synthetic_device(11)
    assert d.withdrawn
    p = master(tmp_path / "u.db").lookup(d.packings[0].di)
    assert p.withdrawn == date.fromisoformat(d.withdrawn)
    assert p.is_withdrawn(date(2030, 1, 1)) and not p.is_withdrawn(date(2020, 1, 1))
    assert master(tmp_path / "u.db").lookup(synthetic_device(12).unit_di).withdrawn is None


def test_incremental_changed_deleted_and_older_versions(tmp_path, full, master):
    db = tmp_path / "u.db"
    import_releases([full], db)
    renamed = changed(synthetic_device(5), model="新型号 X", ybbm="", pi_serial=True)
    gone = deleted(synthetic_device(6))  # has a box and a case: their DIs go too
    new = replace(synthetic_device(N + 1), status=CHANGED)  # 变更 of a record never seen: added
    day1 = write_day_update(tmp_path, [renamed, gone, new], day=date(2025, 7, 1))
    report = import_releases([day1], db)
    assert (report.devices_added, report.devices_changed, report.devices_deleted, report.ignored) == (1, 1, 1, 0)
    m = master(db)
    p = m.lookup(renamed.unit_di)
    assert (p.model, p.ybbm, p.pi_serial, p.version) == ("新型号 X", None, True, renamed.version)
    assert all(m.lookup(di) is None for di in (gone.unit_di, *(pk.di for pk in gone.packings)))
    assert m.lookup(new.unit_di).record_key == new.record_key
    assert m.count() == N

    # a stale update (older version than stored) and the old full release again change nothing
    stale = replace(renamed, version=renamed.version - 1, model="旧型号")
    day0 = write_day_update(tmp_path, [stale], day=date(2025, 6, 1))
    report = import_releases([day0, full], db)
    assert (report.devices_added, report.devices_changed, report.devices_deleted) == (0, 0, 0)
    assert report.ignored == N + 1
    assert m.lookup(renamed.unit_di).model == "新型号 X"
    assert m.lookup(gone.unit_di) is None  # the tombstone outranks the older version in the full release
    # a newer version than the deletion brings it back
    revived = changed(gone, days=60, model="恢复")
    import_releases([write_day_update(tmp_path, [revived], day=date(2025, 8, 1))], db)
    assert m.lookup(gone.packings[-1].di).model == "恢复"
    assert [r.kind for r in m.last_imports()] == ["incremental", "full", "incremental", "incremental", "full"]


def test_versions_decide_within_one_file_too(tmp_path, master):
    d = synthetic_device(4)
    newer = changed(d, model="新")
    path = write_day_update(tmp_path, [newer, d, changed(synthetic_device(5)), deleted(synthetic_device(5))])
    report = import_releases([path], tmp_path / "u.db")
    assert (report.devices_added, report.ignored, report.devices_deleted, report.records) == (2, 1, 1, 4)
    m = master(tmp_path / "u.db")
    assert m.lookup(d.unit_di).model == "新"
    assert m.lookup(synthetic_device(5).unit_di) is None


def test_out_of_order_deletion_then_older_release(tmp_path, full, master):
    """A deletion imported before the release that holds the device: the device never appears."""
    db = tmp_path / "u.db"
    gone = deleted(synthetic_device(7))
    import_releases([write_day_update(tmp_path, [gone])], db)
    report = import_releases([full], db)
    assert (report.devices_added, report.ignored) == (N - 1, 1)
    assert master(db).lookup(gone.unit_di) is None


def test_reimport_is_idempotent(tmp_path, full):
    db = tmp_path / "u.db"

    def dump():
        with sqlite3.connect(db) as c:
            return [c.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in ("udid_devices", "udid_packages")]

    import_releases([full], db)
    first = dump()
    report = import_releases([full, full], db)
    assert (report.devices_added, report.devices_changed, report.ignored) == (0, 0, 2 * N)
    assert dump() == first


def test_stray_control_characters_and_bare_ampersands(tmp_path, master):
    devices = list(iter_devices(0, 30))
    release = write_release(tmp_path / "UDID_FULL_RELEASE_20250630.zip", devices, parts=2, dirt_every=1)
    report = import_releases([release], tmp_path / "u.db")
    assert (report.devices_added, report.skipped) == (30, 0)
    assert report.warnings == 2 and all("repaired" in p for p in report.problems)
    assert master(tmp_path / "u.db").lookup(devices[4].unit_di).name == devices[4].name + "   & Co"


DIRTY = (
    '<?xml version="1.0" encoding="UTF-8"?><udid><a>A&B &amp; &lt;&#x4E2D;&#20013;&#1;&#x1F;&nbsp;&</a>'
    "<b>\x00\x01\x08\x0b\x0c\x0e\x1f\t\r\n医疗器械\x7f</b><c>&#x;&#;&am&amp</c><d>&#x1F600; ok</d>"
).encode() + b"<e>\xff\xfe bad utf-8 \xe4\xb8</e></udid>"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 11, 13, 64, 1 << 20])
def test_sanitising_reader_does_not_depend_on_chunk_boundaries(chunk):
    reader = SanitisingReader(io.BytesIO(DIRTY), chunk_size=chunk)
    out = b"".join(iter(lambda: reader.read(chunk), b""))
    root = ET.fromstring(out)
    assert root.find("a").text == "A&B & <中中  &nbsp;&"
    assert root.find("b").text == "       \t\n医疗器械\x7f"  # \r\n normalised to \n by the parser
    assert root.find("c").text == "&#x;&#;&am&amp"
    assert root.find("d").text == "\U0001f600 ok"
    assert root.find("e").text == "\ufffd\ufffd bad utf-8 \ufffd"
    assert reader.repairs == 19


def write_parts(path, parts):
    """A ZIP with the given member bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts:
            zf.writestr(name, data)
    return path


def part_bytes(devices, dirt_every=0):
    out = io.BytesIO()
    write_xml(out, devices, len(devices), dirt_every)
    return out.getvalue()


def three_parts(second: bytes):
    names = [f"UDID_FULL_DOWNLOAD_PART{k}_Of_3_2025-06-30.xml" for k in (1, 2, 3)]
    first, third = part_bytes(list(iter_devices(0, 10))), part_bytes(list(iter_devices(20, 30)))
    return list(zip(names, [first, second, third], strict=True))


def test_broken_xml_names_the_member_and_record_and_rolls_the_member_back(tmp_path, master):
    db = tmp_path / "u.db"
    good = part_bytes(list(iter_devices(10, 20)))
    cut = good[: [m.start() for m in re.finditer(b"<device>", good)][8] + 400]  # inside record 9 of 10
    release = write_parts(tmp_path / "UDID_FULL_RELEASE_20250630.zip", three_parts(cut))
    with pytest.raises(UdidImportError) as error:
        import_releases([release], db)
    message = str(error.value)
    assert "UDID_FULL_RELEASE_20250630.zip!UDID_FULL_DOWNLOAD_PART2_Of_3_2025-06-30.xml" in message
    assert "record 9" in message and "line" in message
    assert error.value.record == 9
    m = master(db)
    assert m.count() == 10  # part 1 applied, part 2 rolled back, part 3 not read
    assert m.lookup(synthetic_device(15).unit_di) is None
    [record] = m.last_imports()
    assert (record.status, record.records, record.added) == ("failed", 10, 10)
    assert "PART2" in record.error
    # the repaired download completes the import; what was applied before is unchanged
    write_parts(release, three_parts(good))
    report = import_releases([release], db)
    assert (report.devices_added, report.ignored) == (20, 10)
    assert m.count() == 30 and m.last_imports()[0].status == "done"


def test_broken_xml_in_a_bare_file(tmp_path):
    path = tmp_path / "UDID_INCREMENTAL_DOWNLOAD_PART1_Of_1_2025-07-01.xml"
    path.write_bytes(part_bytes(list(iter_devices(0, 3))).replace(b"</ggxh>", b"</ggxhh>", 2))
    with pytest.raises(UdidImportError, match=r"UDID_INCREMENTAL_DOWNLOAD_PART1_Of_1_2025-07-01\.xml: .*record 1"):
        import_releases([path], tmp_path / "u.db")


def test_bare_xml_file(tmp_path, master):
    path = tmp_path / "UDID_INCREMENTAL_DOWNLOAD_PART1_Of_1_2025-07-01.xml"
    path.write_bytes(part_bytes(list(iter_devices(0, 5)), dirt_every=2))
    report = import_releases([path], tmp_path / "u.db")
    assert report.devices_added == 5
    assert master(tmp_path / "u.db").last_imports()[0].kind == "incremental"


def test_corrupt_zip_member_is_refused_before_anything_is_written(tmp_path, master):
    db = tmp_path / "u.db"
    release = write_parts(
        tmp_path / "UDID_FULL_RELEASE_20250630.zip", three_parts(part_bytes(list(iter_devices(10, 20))))
    )
    with zipfile.ZipFile(release) as zf:
        info = zf.getinfo("UDID_FULL_DOWNLOAD_PART2_Of_3_2025-06-30.xml")
    data = bytearray(release.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    for k in range(start + info.compress_size // 2, start + info.compress_size // 2 + 16):
        data[k] ^= 0x5A
    release.write_bytes(bytes(data))
    good = write_full_release(tmp_path, 5, day=date(2025, 5, 1))  # a good file first: nothing at all is imported either
    with pytest.raises(UdidImportError, match=r"UDID_FULL_DOWNLOAD_PART2_Of_3_2025-06-30\.xml: corrupt ZIP member"):
        import_releases([good, release], db)
    assert master(db).count() == 0 and master(db).last_imports() == []


def test_truncated_zip_and_missing_part(tmp_path):
    release = write_full_release(tmp_path, 30)
    release.write_bytes(release.read_bytes()[: release.stat().st_size // 2])
    with pytest.raises(UdidImportError, match="UDID_FULL_RELEASE_20250630.zip: not a ZIP"):
        import_releases([release], tmp_path / "u.db")
    parts = three_parts(part_bytes([]))
    incomplete = write_parts(tmp_path / "UDID_FULL_RELEASE_20250701.zip", [parts[0], parts[2]])
    with pytest.raises(UdidImportError, match=r"PART numbers incomplete .*missing \[2\]"):
        import_releases([incomplete], tmp_path / "u.db")


def edit_record(data: bytes, index: int, old: bytes, new: bytes) -> bytes:
    head, *records = data.split(b"<device>")
    records[index] = records[index].replace(old, new, 1)
    return b"<device>".join([head, *records])


def test_malformed_records_are_skipped_and_reported(tmp_path, master):
    devices = list(iter_devices(0, 6))
    data = part_bytes(devices)
    data = edit_record(data, 0, b"<scbssfbhxlh>", b"<scbssfbhxlh>maybe")
    data = edit_record(data, 1, b"<versionNumber>", b"<versionNumber>v")
    data = edit_record(data, 3, devices[3].unit_di.encode(), b"")
    data = edit_record(data, 5, b"<tsrq></tsrq>", b"<tsrq>2024-13-45</tsrq>")
    path = tmp_path / "UDID_INCREMENTAL_DOWNLOAD_PART1_Of_1_2025-07-01.xml"
    path.write_bytes(data)
    report = import_releases([path], tmp_path / "u.db")
    assert (report.devices_added, report.skipped, report.warnings) == (2, 4, 0)
    assert [p.split(": skipped: ")[1] for p in report.problems] == [
        "scbssfbhxlh is 'maybe是', not 是/否",
        f"versionNumber 'v{devices[1].version}' is not a number",
        "no zxxsdycpbs (primary DI)",
        "tsrq is '2024-13-45', not a date",
    ]
    assert report.problems[0].startswith(f"{path.name} record 1 ({devices[0].record_key})")
    assert " record 6 " in report.problems[3]
    assert master(tmp_path / "u.db").last_imports()[0].skipped == 4


def test_broken_package_chain_is_imported_with_unknown_units(tmp_path, master):
    d = synthetic_device(2)
    broken = replace(d, packings=(d.packings[0], replace(d.packings[1], next_di="06999999999990")))
    report = import_releases([write_release(tmp_path / "UDID_FULL_RELEASE_20250630.zip", [broken])], tmp_path / "u.db")
    assert report.warnings == 1 and "chain" in report.problems[0]
    m = master(tmp_path / "u.db")
    assert m.lookup(d.packings[0].di).units_per_package == 20
    assert m.lookup(d.packings[1].di).units_per_package is None


def test_shares_the_gateway_database_with_the_reject_log(tmp_path, full):
    from gateway.rejects import SCHEMA_VERSION, open_database

    db = tmp_path / "udigate.db"
    open_database(db).close()
    import_releases([full], db)
    open_database(db).close()  # the reject log still accepts the file: user_version is left to it
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("SELECT value FROM udid_meta WHERE key='schema_version'").fetchone() == ("1",)
        assert c.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        c.execute("UPDATE udid_meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(RuntimeError, match="newer udigate"):
        ProductMaster(db)


def test_lookups_from_several_threads_during_an_import(tmp_path, full, master):
    db = tmp_path / "u.db"
    import_releases([full], db)
    m = master(db)
    dis = [d.unit_di for d in iter_devices(0, N)] + [p.di for d in iter_devices(0, N) for p in d.packings]
    failures = []

    def look():
        for di in dis:
            if m.lookup(di) is None:
                failures.append(di)

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    import_releases([write_day_update(tmp_path, [changed(d) for d in iter_devices(0, 50)])], db)
    for t in threads:
        t.join()
    assert failures == []
    assert m.lookup(synthetic_device(0).unit_di).model.endswith(" 改")
