"""Synthetic UDID (national UDI database) downloads in the real shape, for tests and the bench.

The devices are a pure function of their index (:func:`synthetic_device`), so a test or the bench
can write a million of them as a stream and later recompute what any one of them should look like
without keeping the release in memory. Shape as in the public download: ``<udid><header>
<numberRkeyecordXML>N</numberRkeyecordXML></header><devices><device>…</device></devices></udid>``
(both misspellings, ``numberRkeyecordXML`` and ``versionStauts``, are the real tag names), flat
Chinese fields, 是/否 booleans, ``packingList/packing`` chaining case → box → unit, and the lists a
line does not use (storage, clinical size, contact) so that records have a realistic size
(about 2.3 KB of XML each, likely more than the real average: a pessimistic bench).

Deterministic mix by index ``i``: every 10th device has an MA (IDcode) DI, the others GS1 GTINs
with Chinese prefixes 690–699 and valid check digits; ``i % 4`` gives no package level, a box, or
box and case; ``i % 7 == 3`` has an empty ``ybbm``; ``i % 50 == 11`` is withdrawn (``tsrq``);
``i % 6 == 5`` has a separate use-unit DI (5 use units per sales unit).
"""

from __future__ import annotations

import string
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

ADDED, CHANGED, DELETED = "新增", "变更", "删除"

_M64 = (1 << 64) - 1
_NAMES = ("一次性使用无菌注射器", "医用外科口罩", "一次性使用输液器", "血糖试纸", "医用脱脂纱布", "导尿管", "留置针")
_FORMS = ("带针", "非灭菌型", "精密过滤", "独立包装", "儿童型", "加强型")
_REGISTRANTS = ("山东威高集团医用高分子制品股份有限公司", "江西洪达医疗器械集团有限公司", "稳健医疗用品股份有限公司")
_LEVELS = ("盒", "箱")
_MA_CHARS = {
    **{c: i for i, c in enumerate(string.digits)},
    **{c: 10 + i for i, c in enumerate(string.ascii_uppercase)},
    **{c: 36 + i for i, c in enumerate("abcdefg")},
    **{c: 45 + i for i, c in enumerate("hijklmnopqrstuvwxyz")},
    **{c: 64 + i for i, c in enumerate("-.@$,*+%/#!^~")},
}
# A realistic amount of text a line never reads (product description, storage, contact).
_DESCRIPTION = "本产品由外套、芯杆、活塞、针座、针管和护套组成，经环氧乙烷灭菌，无菌、无热原，一次性使用。"


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10: weights 3,1,3,… from the right of the body (the digits before the check digit)."""
    total = sum(int(d) * (3 if k % 2 == 0 else 1) for k, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def gtin14(indicator: int, body12: str) -> str:
    return f"{indicator}{body12}{gs1_check_digit(f'{indicator}{body12}')}"


def ma_check_character(di_without_check: str) -> str:
    """The MA (IDcode) check character as reconstructed in the reference notes (unconfirmed, but it
    reproduces ``MA.156.M0.100350.01004YA10017`` and ``MA.156.M0.100204.13351764``)."""
    digits = "".join(str(_MA_CHARS[c]) for c in di_without_check)
    total = 0
    for k, d in enumerate(reversed(digits)):
        v = int(d) * (2 if k % 2 == 1 else 1)
        total += v - 9 if v > 9 else v
    return str((10 - total % 10) % 10)


def ma_di(registrant: int, level: int, item: str) -> str:
    stem = f"MA.156.M0.{registrant:06d}.{level}{item}"
    return stem + ma_check_character(stem)


@dataclass(frozen=True)
class Packing:
    di: str
    level: str  # cpbzjb: 盒 box, 箱 case
    quantity: int  # bznhxyjcpbssl: items of the next level down
    next_di: str  # bznhxyjbzcpbs


@dataclass(frozen=True)
class SyntheticDevice:
    record_key: str
    unit_di: str
    coding_system: str
    name: str
    model: str
    ybbm: str
    withdrawn: str  # tsrq, "" when on the market
    pi_lot: bool
    pi_serial: bool
    pi_production_date: bool
    pi_expiry: bool
    registration: str
    registrant: str
    use_unit_di: str
    use_units: int
    packings: tuple[Packing, ...]
    version: int
    version_time: str
    status: str = ADDED

    def units_in(self, di: str) -> int:
        """Minimum sales units in the package ``di`` (1 for the unit DI), by walking the chain."""
        by_di = {p.di: p for p in self.packings}
        units = 1
        while di != self.unit_di:
            units *= by_di[di].quantity
            di = by_di[di].next_di
        return units


def synthetic_device(i: int) -> SyntheticDevice:
    """Device number ``i`` (0 ≤ i < 10⁹) of a synthetic full release, as first published."""
    h = (i * 0x9E3779B97F4A7C15) & _M64  # a bijection: keys and DIs unique, in random order
    body = f"{690 + i % 10}{(i * 7919) % 10**9:09d}"
    if i % 10 == 9:
        item = f"{h % 36**6:06X}"[:6] + f"{i % 10**6:06d}"
        unit, box, case = (ma_di(100000 + i % 900000, level, item) for level in (0, 1, 2))
        coding = "MA码（IDcode）"
        use_unit = ma_di(100000 + i % 900000, 5, item) if i % 6 == 5 else ""
    else:
        unit, box, case = (gtin14(indicator, body) for indicator in (0, 1, 2))
        coding = "GS1"
        use_unit = gtin14(5, body) if i % 6 == 5 else ""
    per_box = (5, 10, 20, 50)[h % 4]
    per_case = (4, 10, 12)[h % 3]
    packings: tuple[Packing, ...] = ()
    if i % 4 >= 1:
        packings = (Packing(box, "盒", per_box, unit),)
    if i % 4 >= 2:
        packings += (Packing(case, "箱", per_case, box),)
    published = date(2020, 1, 1) + timedelta(days=i % 1500)
    return SyntheticDevice(
        record_key=f"{h:016x}{i:010d}",
        unit_di=unit,
        coding_system=coding,
        name=_NAMES[i % len(_NAMES)],
        model=f"{_FORMS[h % len(_FORMS)]} {1 + i % 50}ml×{(h >> 8) % 30 + 1}G-{i}",
        ybbm="" if i % 7 == 3 else f"C{(h >> 3) % 10**14:014d}{i % 10**12:012d}",
        withdrawn=(published + timedelta(days=700)).isoformat() if i % 50 == 11 else "",
        pi_lot=i % 8 != 0,
        pi_serial=i % 3 == 0,
        pi_production_date=i % 2 == 0,
        pi_expiry=i % 5 != 0,
        registration=f"国械注准{2017 + i % 8}3{(h >> 16) % 10**6:06d}",
        registrant=_REGISTRANTS[i % len(_REGISTRANTS)],
        use_unit_di=use_unit,
        use_units=5 if use_unit else 1,
        packings=packings,
        version=1 + i % 3,
        version_time=f"{published.isoformat()} 10:{i % 60:02d}:00",
    )


def changed(device: SyntheticDevice, days: int = 30, **changes) -> SyntheticDevice:
    """The next version of ``device`` (变更), published ``days`` later, with ``changes``."""
    when = date.fromisoformat(device.version_time[:10]) + timedelta(days=days)
    fields = {"model": device.model + " 改", **changes}
    return replace(device, version=device.version + 1, version_time=f"{when} 09:00:00", status=CHANGED, **fields)


def deleted(device: SyntheticDevice, days: int = 30) -> SyntheticDevice:
    """The deletion (删除) of ``device``, one version up."""
    return replace(changed(device, days, model=device.model), status=DELETED)


def _yes_no(flag: bool) -> str:
    return "是" if flag else "否"


def device_xml(d: SyntheticDevice, dirt: str = "") -> str:
    """One ``<device>`` element; ``dirt`` is appended raw (unescaped) to the name: pass stray control
    characters or a bare ``&`` to imitate real files."""
    packing = "".join(
        f"<packing><bzcpbs>{p.di}</bzcpbs><cpbzjb>{p.level}</cpbzjb><bznhxyjcpbssl>{p.quantity}</bznhxyjcpbssl>"
        f"<bznhxyjbzcpbs>{p.next_di}</bznhxyjbzcpbs></packing>"
        for p in d.packings
    )
    return (
        f"<device><zxxsdycpbs>{d.unit_di}</zxxsdycpbs><cpbsbmtxmc>{d.coding_system}</cpbsbmtxmc>"
        f"<cpbsfbrq>{d.version_time[:10]}</cpbsfbrq><zxxsdyzsydydsl>{d.use_units}</zxxsdyzsydydsl>"
        f"<sydycpbs>{d.use_unit_di}</sydycpbs><bszt>已发布</bszt><sfyzcbayz>是</sfyzcbayz><zcbacpbs></zcbacpbs>"
        f"<sfybtzjbs>否</sfybtzjbs><btcpbsyzxxsdycpbssfyz></btcpbsyzxxsdycpbssfyz><btcpbs></btcpbs>"
        f"<cpmctymc>{escape(d.name)}{dirt}</cpmctymc><spmc>{escape(d.name)}</spmc><ggxh>{escape(d.model)}</ggxh>"
        f"<sfwblztlcp>否</sfwblztlcp><cpms>{_DESCRIPTION}</cpms><cphhhbh>{d.record_key[:8]}</cphhhbh>"
        f"<yflbm></yflbm><qxlb>器械</qxlb><flbm>14-01-01</flbm><tyshxydm>91371000{d.record_key[-10:]}</tyshxydm>"
        f"<zczbhhzbapzbh>{d.registration}</zczbhhzbapzbh><ylqxzcrbarmc>{d.registrant}</ylqxzcrbarmc>"
        f"<ylqxzcrbarywmc>Weigao Group Medical Polymer Co., Ltd.</ylqxzcrbarywmc><ybbm>{d.ybbm}</ybbm>"
        f"<cplb>器械</cplb><cgzmraqxgxx>MR不安全</cgzmraqxgxx><sfbjwycxsy>是</sfbjwycxsy><zdcfsycs>1</zdcfsycs>"
        f"<sfwwjbz>是</sfwwjbz><syqsfxyjxmj>否</syqsfxyjxmj><mjfs>环氧乙烷灭菌</mjfs>"
        f"<qtxxdwzlj>https://udi.example.cn/{d.record_key}</qtxxdwzlj><tsrq>{d.withdrawn}</tsrq>"
        f"<scbssfbhph>{_yes_no(d.pi_lot)}</scbssfbhph><scbssfbhxlh>{_yes_no(d.pi_serial)}</scbssfbhxlh>"
        f"<scbssfbhscrq>{_yes_no(d.pi_production_date)}</scbssfbhscrq>"
        f"<scbssfbhsxrq>{_yes_no(d.pi_expiry)}</scbssfbhsxrq><tscchcztj>避光</tscchcztj><tsccsm></tsccsm>"
        f"<packingList>{packing}</packingList>"
        f"<storageList><storage><cchcztj>常温</cchcztj><zdz>10</zdz><zgz>30</zgz><jldw>℃</jldw></storage>"
        f"</storageList><clinicalList><clinical><lcsycclx>长度</lcsycclx><ccz>32</ccz><ccdw>mm</ccdw>"
        f"</clinical></clinicalList><contactList><contact><qylxrcz>0631-5620000</qylxrcz>"
        f"<qylxryx>udi@example.cn</qylxryx><qylxrdh>400-000-0000</qylxrdh></contact></contactList>"
        f"<deviceRecordKey>{d.record_key}</deviceRecordKey><versionNumber>{d.version}</versionNumber>"
        f"<versionTime>{d.version_time}</versionTime><versionStauts>{d.status}</versionStauts>"
        f"<correctionNumber>0</correctionNumber><correctionRemark></correctionRemark>"
        f"<correctionTime></correctionTime></device>\n"
    )


# What ``dirt_every`` adds: a vertical tab and a unit separator (illegal in XML 1.0) and a bare &.
DIRT = "\x0b\x1f & Co"


def write_xml(out, devices: Iterable[SyntheticDevice], count: int, dirt_every: int = 0) -> None:
    """One UDID XML document with ``count`` devices taken from ``devices``, streamed to the binary
    file ``out`` (about 1,000 devices per write)."""
    out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<udid><header><numberRkeyecordXML>{count}'.encode())
    out.write(b"</numberRkeyecordXML></header>\n<devices>\n")
    chunk: list[str] = []
    it = iter(devices)
    for n in range(count):
        d = next(it)
        chunk.append(device_xml(d, DIRT if dirt_every and n % dirt_every == 0 else ""))
        if len(chunk) == 1000:
            out.write("".join(chunk).encode())
            chunk.clear()
    out.write("".join(chunk).encode())
    out.write(b"</devices></udid>\n")


def write_release(
    path: Path,
    devices: Sequence[SyntheticDevice],
    parts: int = 1,
    incremental: bool = False,
    day: date = date(2025, 6, 30),
    dirt_every: int = 0,
) -> Path:
    """A ZIP of the given devices split into ``parts`` members named like the real ones
    (``UDID_FULL_DOWNLOAD_PART{n}_Of_{m}_YYYY-MM-DD.xml`` or ``UDID_INCREMENTAL_DOWNLOAD_…``).
    Members are stored last part first, so an importer that trusts the ZIP order instead of the
    part numbers is caught."""
    stem = "UDID_INCREMENTAL_DOWNLOAD" if incremental else "UDID_FULL_DOWNLOAD"
    bounds = _split(len(devices), parts)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k in reversed(range(parts)):
            start, stop = bounds[k]
            with zf.open(f"{stem}_PART{k + 1}_Of_{parts}_{day.isoformat()}.xml", "w", force_zip64=True) as out:
                write_xml(out, devices[start:stop], stop - start, dirt_every)
    return path


def _split(count: int, parts: int) -> list[tuple[int, int]]:
    sizes = [count // parts + (1 if k < count % parts else 0) for k in range(parts)]
    return [(sum(sizes[:k]), sum(sizes[: k + 1])) for k in range(parts)]


def full_release_name(day: date = date(2025, 6, 30)) -> str:
    return f"UDID_FULL_RELEASE_{day:%Y%m%d}.zip"


def write_full_release(
    folder: Path, count: int, parts: int = 3, day: date = date(2025, 6, 30), dirt_every: int = 0
) -> Path:
    """Devices 0 … count-1 of :func:`synthetic_device` as ``UDID_FULL_RELEASE_YYYYMMDD.zip``, streamed:
    memory does not grow with ``count``."""
    path = folder / full_release_name(day)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, (start, stop) in reversed(list(enumerate(_split(count, parts)))):
            name = f"UDID_FULL_DOWNLOAD_PART{k + 1}_Of_{parts}_{day.isoformat()}.xml"
            with zf.open(name, "w", force_zip64=True) as out:
                write_xml(out, iter_devices(start, stop), stop - start, dirt_every)
    return path


def write_day_update(folder: Path, devices: list[SyntheticDevice], day: date = date(2025, 7, 1)) -> Path:
    """``UDID_DAY_UPDATE_YYYYMMDD.zip`` with one ``UDID_INCREMENTAL_DOWNLOAD_PART1_Of_1_…xml`` member."""
    return write_release(folder / f"UDID_DAY_UPDATE_{day:%Y%m%d}.zip", devices, incremental=True, day=day)


def iter_devices(start: int, stop: int) -> Iterator[SyntheticDevice]:
    return map(synthetic_device, range(start, stop))
