from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import JobSection, gtin_check_digit
from gateway.rules import check_content

GS = "\x1d"
TODAY = date(2026, 11, 23)
JOB = JobSection(id="PO-1", gtin="06901234567892", lot="A2611")
GOOD = f"0106901234567892112611231728112310A2611{GS}21SER0001"


def codes(data, job=JOB, si="]d2"):
    return [f.code for f in check_content(data, si, job, TODAY).findings]


@pytest.mark.parametrize(
    "data, expected",
    [
        (GOOD, []),
        # the fields may come in any order; the last variable field needs no GS
        (f"0106901234567892172811232112{GS}10A2611", []),
        (GOOD.replace("06901234567892", "06901234567893"), ["gs1_check_digit"]),
        (GOOD.replace(f"A2611{GS}21", "A261121"), ["gs1_missing_separator"]),
        # lot + serial longer than the 20 characters (10) allows: cut off at 20, no GS follows
        (f"01069012345678921728112310A2611{'7' * 16}{GS}21SER0001", ["gs1_missing_separator"]),
        (GOOD.replace(f"{GS}21SER0001", ""), ["gs1_missing_ai"]),
        (GOOD.replace("10A2611", "10B9999"), ["wrong_lot"]),
        (GOOD.replace("06901234567892", "06901234567908"), ["wrong_di"]),
        (GOOD.replace("17281123", "17261122"), ["expired"]),
        (GOOD.replace("17281123", "17280231"), ["date_invalid"]),
        (GOOD + f"{GS}99", ["gs1_syntax"]),
        # an AI repeated with the same value is tolerated (a warning), with another value it is not
        (f"0106901234567892010690123456789217281123{GS}10A2611{GS}21S", []),
        (f"0106901234567892010690123456789017281123{GS}10A2611{GS}21S", ["gs1_repeated_ai", "gs1_check_digit"]),
    ],
)
def test_gs1_findings(data, expected):
    assert sorted(codes(data)) == sorted(expected)


def test_content_fields_and_hri():
    content = check_content(GOOD, "]d2", JOB, TODAY)
    assert content.issuer == "GS1"
    assert content.fields == {"01": "06901234567892", "11": "261123", "17": "281123", "10": "A2611", "21": "SER0001"}
    assert content.hri == "(01)06901234567892(11)261123(17)281123(10)A2611(21)SER0001"
    assert content.expiry == date(2028, 11, 23)
    assert (content.gtin, content.serial) == ("06901234567892", "SER0001")


def test_not_gs1_without_fnc1():
    assert codes(GOOD, si="]d1") == ["not_gs1"]


def test_a_swallowed_serial_is_not_a_serial():
    content = check_content(GOOD.replace(f"A2611{GS}21", "A261121"), "]d2", JOB, TODAY)
    assert content.serial is None
    assert [f.code for f in content.findings] == ["gs1_missing_separator"]  # not also wrong_lot


def test_order_expiry():
    job = JobSection(gtin="06901234567892", lot="A2611", expiry=date(2028, 11, 30))
    assert codes(GOOD, job) == ["wrong_expiry"]
    assert codes(GOOD.replace("17281123", "17281130"), job) == []


def test_without_an_order_only_syntax_is_checked():
    assert codes(GOOD.replace("10A2611", "10ZZ"), JobSection()) == []


CSET82 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-./_", min_size=1, max_size=20)


@given(gtin_body=st.text(alphabet="0123456789", min_size=13, max_size=13), lot=CSET82, serial=CSET82)
def test_generated_codes(gtin_body, lot, serial):
    gtin = gtin_body + str(gtin_check_digit(gtin_body))
    job = JobSection(gtin=gtin, lot=lot)
    good = f"01{gtin}1728112310{lot}{GS}21{serial}"
    assert codes(good, job) == []
    # a wrong check digit is always caught
    bad_gtin = gtin[:13] + str((int(gtin[13]) + 1) % 10)
    assert "gs1_check_digit" in codes(good.replace(gtin, bad_gtin, 1), job)
    # a dropped separator is never accepted
    assert codes(good.replace(GS, ""), job) == ["gs1_missing_separator"]


@pytest.mark.parametrize(
    "job, data, expected",
    [
        (JobSection(production_date=date(2026, 11, 23)), GOOD, []),
        (JobSection(production_date=date(2026, 11, 22)), GOOD, ["wrong_production_date"]),
        (JobSection(max_production_age_days=30), GOOD.replace("11261123", "11261001"), ["production_date_window"]),
        (JobSection(max_production_age_days=30), GOOD.replace("11261123", "11261124"), ["production_date_window"]),
        (JobSection(min_shelf_life_days=365), GOOD, []),
        (JobSection(min_shelf_life_days=800), GOOD, ["short_shelf_life"]),
        (JobSection(serial_pattern=r"SER\d{4}"), GOOD, []),
        (JobSection(serial_pattern=r"SER\d{5}"), GOOD, ["serial_pattern"]),
    ],
)
def test_order_dates_and_serial_form(job, data, expected):
    assert codes(data, job) == expected


def test_other_issuers_against_the_order():
    from gateway.config import ContentSection

    ma = "MA.156.M0.100350.01004YA10017.SLMSAGAAAC.M210628.LAY21062803.E300628.V300627.C3"
    job = JobSection(di="MA.156.M0.100350.01004YA10017", lot="AY21062803", required_ais=())
    anyone = ContentSection(issuers=("GS1", "MA"))
    assert [f.code for f in check_content(ma, "]Q1", job, TODAY, anyone).findings] == []
    other = JobSection(di="MA.156.M0.100204.13351764", required_ais=())
    assert [f.code for f in check_content(ma, "]Q1", other, TODAY, anyone).findings] == ["wrong_di"]
    assert [f.code for f in check_content(ma, "]Q1", job, TODAY).findings] == ["issuer_not_allowed"]
